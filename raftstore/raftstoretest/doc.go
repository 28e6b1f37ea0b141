// Package raftstoretest runs real raftstore clusters in one process for
// tests and benchmarks: real bolt files in temporary directories, real
// mutual TLS with node certificates from a real embedded site CA (package
// pki), loopback listeners.
package raftstoretest
