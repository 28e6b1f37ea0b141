// Package agent is fedgate's composition root: it loads the config, opens the
// data dir (one instance per dir, enforced by a lock file), starts the site CA
// and the node identity, the replicated store, the audit log, netctl and the
// proxy, serves the local API on a unix socket and the cluster API over mTLS,
// and runs the lifecycle: ready (sd_notify), reload (SIGHUP), drain and stop
// (SIGTERM). It holds no policy of its own: the contract lives in federation,
// state in raftstore.
package agent
