#!/usr/bin/env bash
# failover-bench.sh — HA failover table: three fedgated nodes in network
# namespaces, a client probing the site VIP, faults injected N times
# (SIGSTOP/SIGCONT, partition, follower cut, manual failover, SIGKILL +
# restart, SIGTERM + restart, member remove + re-add). Prints the median
# and max failover per fault and the dual-answer counts.
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
# Each run takes about 25 s plus 15 s of set-up.
timeout_s=$((120 + runs * 60))
FEDGATE_CHAOS_RUNS="$runs" FEDGATE_CHAOS_TABLE="$table" \
	go test -count=1 -timeout "${timeout_s}s" -run '^TestPrivilegedChaos$' ./e2e/ >"$table.log" 2>&1 || {
	status=$?
	# The test's own lines (not the nodes' logs), then where the rest is.
	grep -E '^\s+chaos_[a-z_]*test\.go:[0-9]+: |^\s+(tcp|kernel|arp): |^(---|FAIL|ok)' "$table.log" | grep -v -- '--- n[0-9] log' >&2 || true
	echo "failover-bench: the chaos test failed (exit $status); full output in $table.log" >&2
	exit "$status"
}
rm -f "$table.log"
cat "$table"
