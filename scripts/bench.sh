#!/usr/bin/env bash
# make bench: every benchmark beside a baseline measured in the same run
# (this machine is shared and noisy: read the ratios, not the absolutes).
# BENCH_QUICK=1 shortens every run.
set -uo pipefail
cd "$(dirname "$0")/.."
quick=${BENCH_QUICK:-}
bt() { if [ -n "$quick" ]; then echo "$2"; else echo "$1"; fi; }
status=0
section() { printf '\n== %s ==\n' "$*"; }
run() { echo "\$ $*"; "$@" || status=1; }

section "raft: replicated write latency and throughput, 3-node loopback cluster vs 1-node (same run)"
run go test -run '^$' -bench 'BenchmarkReplicatedWrite' -benchtime "$(bt 3s 1s)" ./raftstore/

section "audit: durable appends/s and p99 at 1/16/256 appenders vs one write+fsync per record"
run go test -run '^$' -bench 'BenchmarkAppend' -benchtime "$(bt 3s 1s)" ./audit/

section "federation: Authorize + grant token check vs a bare HMAC-SHA256"
run go test -run '^$' -bench 'BenchmarkAuthorize|BenchmarkVerifyToken' -benchtime "$(bt 1s 200ms)" ./federation/

section "pki: per-peer verification and node mTLS handshakes"
run go test -run '^$' -bench 'BenchmarkPeerVerify|BenchmarkNodeHandshake' -benchtime "$(bt 1s 200ms)" ./pki/

section "netctl: reconcile 1,000 WireGuard peers + 1,000 VIPs, cold and no-op (fakes)"
run go test -run '^$' -bench 'BenchmarkReconcile1000$' -benchtime "$(bt 3s 1s)" ./netctl/

if [ "$(id -u)" = 0 ]; then
  section "netctl: the same against the real kernel, userspace WireGuard (root)"
  run go test -run '^$' -bench 'BenchmarkReconcile1000Kernel' -benchtime "$(bt 8x 2x)" ./netctl/
  section "WireGuard: TCP through a userspace tunnel between two namespaces vs the raw veth"
  run go test -run '^$' -bench 'BenchmarkTunnelThroughput' -benchtime "$(bt 3x 1x)" ./netctl/
fi

section "proxy: two-hop federation path, fedgate pair vs nginx pair vs backend direct"
run go test -run '^$' -bench 'BenchmarkPair|BenchmarkHTTP1Server' -benchtime "$(bt 3s 1s)" ./proxy/
if [ -x bench/proxy/run.sh ]; then
  run bench/proxy/run.sh
fi

if [ -x scripts/failover-bench.sh ] && [ "$(id -u)" = 0 ]; then
  section "HA: VIP failover per fault type (median, max) and intervals with two holders"
  run scripts/failover-bench.sh "${FAILOVER_RUNS:-$(bt 10 3)}"
fi
exit $status
