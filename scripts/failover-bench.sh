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
trap 'rm -f "$table"' EXIT
# Each run takes about 25 s plus 15 s of set-up.
timeout_s=$((120 + runs * 60))
FEDGATE_CHAOS_RUNS="$runs" FEDGATE_CHAOS_TABLE="$table" \
	go test -count=1 -timeout "${timeout_s}s" -run '^TestPrivilegedChaos$' ./e2e/ >"$table.log" 2>&1 || {
	status=$?
	tail -n 80 "$table.log" >&2
	rm -f "$table.log"
	echo "failover-bench: the chaos test failed (exit $status)" >&2
	exit "$status"
}
rm -f "$table.log"
cat "$table"
