#!/usr/bin/env bash
# cpu-per-req.sh URL HOST PID... — run wrk -t2 -c32 for 4 s against URL with
# "Host: HOST" and print req/s and the CPU (user+system, from /proc/PID/stat)
# the given processes spent per 1,000 requests. On a shared, CPU-bound
# machine CPU per request is steadier than req/s, and comparing it between
# the nginx pair and the fedgate pair shows where a throughput gap comes
# from. Example (processes started by bench/proxy/run.sh or by hand):
#   bench/proxy/cpu-per-req.sh http://127.0.0.1:18091/ "$HOST" $(pgrep -f fedgate-pair)
set -euo pipefail
url=$1 host=$2; shift 2
[ $# -gt 0 ] || { echo "usage: $0 URL HOST PID..." >&2; exit 2; }
ticks() { local s=0 p f; for p in "$@"; do read -r -a f <"/proc/$p/stat"; s=$((s + f[13] + f[14])); done; echo "$s"; }
hz=$(getconf CLK_TCK)
c0=$(ticks "$@")
out=$(wrk -t2 -c32 -d4s -H "Host: $host" "$url")
c1=$(ticks "$@")
rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
awk -v r="$rps" -v c=$((c1 - c0)) -v hz="$hz" 'BEGIN {printf "rps=%.0f cpu_us_per_req=%.1f\n", r, c / hz * 1e6 / (r * 4)}'
