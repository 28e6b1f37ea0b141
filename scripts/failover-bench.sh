#!/usr/bin/env bash
# failover-bench.sh — HA failover table: three fedgated nodes in network
# namespaces, a client probing the site VIP every 20 ms twice over — a plain
# TCP connect, and an HTTPS request with a federated peer's certificate
# through fedgate's inbound proxy (a second site, paired by invite/accept) —
# faults injected N times (SIGSTOP/SIGCONT, partition, follower cut, manual
# failover, SIGKILL + restart, SIGTERM + restart, member remove + re-add),
# each held 3 s. Prints the median and max failover per fault by each probe
# and the dual-answer counts (TCP, proxy, ARP, kernel).
#
#   sudo scripts/failover-bench.sh [RUNS]        (default RUNS=10)
#
# Needs root (network namespaces, nftables). Environment:
#   FEDGATE_CHAOS_FAULTS=partitioned,SIGKILL   only these faults
#   FEDGATE_CHAOS_LOGDIR=DIR                   keep every node's log
set -euo pipefail
runs="${1:-${FEDGATE_CHAOS_RUNS:-10}}"
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	echo "failover-bench: needs root (network namespaces); run with sudo" >&2
	exit 1
fi
table="$(mktemp)"
trap 'rm -f "$table"' EXIT # the .log is kept on failure
# Each run takes about 35 s plus 15 s of set-up (more on a loaded machine).
timeout_s=$((180 + runs * 120))
FEDGATE_CHAOS_RUNS="$runs" FEDGATE_CHAOS_TABLE="$table" \
	go test -count=1 -timeout "${timeout_s}s" -run '^TestPrivilegedChaos$' ./e2e/ >"$table.log" 2>&1 || {
	status=$?
	# The test's own lines (not the nodes' logs), then where the rest is.
	grep -E '^\s+chaos_[a-z_]*test\.go:[0-9]+: |^\s+(tcp|proxy|kernel|arp): |^(---|FAIL|ok)' "$table.log" | grep -vE -- '--- (n[0-9]|peersite) log' >&2 || true
	echo "failover-bench: the chaos test failed (exit $status); full output in $table.log" >&2
	exit "$status"
}
rm -f "$table.log"
cat "$table"
