#!/usr/bin/env bash
# Proxy benchmark (BENCH.md): the whole federation path, two hops,
#   wrk --HTTP--> outbound --mTLS 1.3--> inbound --HTTP--> backend
# for (a) the backend directly, (b) the nginx pair (shared/bench/nginx-pair.sh),
# (c) the fedgate pair (bench/proxy/cmd/fedgate-pair, real pki CAs, durable
# audit on both sites), interleaved a b c a b c ..., median of ROUNDS runs.
# Then one-hop figures with a Go load generator that presents client
# certificates (the issue's "fedgate inbound L7" against nginx as an mTLS
# reverse proxy): keep-alive throughput, full and resumed handshake rates,
# open-loop latency at 1,000 req/s minus direct (one hop and two hops), and
# memory per idle mTLS connection.
#
# Usage: bench/proxy/run.sh [ROUNDS] [DURATION]   (defaults 5, 10s)
# Env: WORK (scratch dir, default mktemp), AUDIT=false to turn audit off,
#      FG_GOGC (GOGC for the fedgate processes; default unset, Go's 100, as
#      fedgated runs: 400 measured no different, 3 paired cpu-per-req runs).
set -euo pipefail
ROUNDS=${1:-5}
DUR=${2:-10s}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PAIR_SH=${PAIR_SH:-$ROOT/../shared/bench/nginx-pair.sh}
[ -f "$PAIR_SH" ] || PAIR_SH=/work/shared/bench/nginx-pair.sh
WORK=${WORK:-$(mktemp -d /tmp/fedgate-bench.XXXXXX)}
AUDIT=${AUDIT:-true}
FG_GOGC=${FG_GOGC:-}

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need wrk; then
  echo "installing nginx and wrk (Debian packages)..." >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk >/dev/null
fi

echo "work dir: $WORK" >&2
mkdir -p "$WORK/bin" "$WORK/fg"
(cd "$ROOT" && go build -o "$WORK/bin/fedgate-pair" ./bench/proxy/cmd/fedgate-pair && go build -o "$WORK/bin/loadgen" ./bench/proxy/cmd/loadgen)

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  bash "$PAIR_SH" stop "$WORK/nginx" >/dev/null 2>&1 || true
}
trap cleanup EXIT

bash "$PAIR_SH" start "$WORK/nginx"

wait_ready() { for _ in $(seq 150); do grep -qs '^ready' "$1" && return 0; sleep 0.2; done; echo "not ready: $1" >&2; cat "$1" >&2; exit 1; }
# fg_start ROLE TAG ARGS...: one fedgate process (site a or b) on the shared
# work dir (same CAs, ids and certificates), audit dir suffixed with TAG.
fg_start() {
  local role=$1 tag=$2; shift 2
  env ${FG_GOGC:+GOGC=$FG_GOGC} "$WORK/bin/fedgate-pair" -dir "$WORK/fg" -role "$role" -tag "$tag" "$@" >"$WORK/fg-$role$tag.out" 2>&1 &
  PIDS+=($!); LAST_PID=$!
  wait_ready "$WORK/fg-$role$tag.out"
}
# fedgate: the default audit order (safe methods: append overlapped with the
# forward, response released only once durable; other methods strictly
# before), audit on both sites.
fg_start b "" -audit="$AUDIT" -inbound 127.0.0.1:18453; FG_B_PID=$LAST_PID
fg_start a "" -audit="$AUDIT" -inbound 127.0.0.1:18453 -outbound 127.0.0.1:18091; FG_A_PID=$LAST_PID
# fg-strict: every call audited strictly before it is forwarded (AuditStrictAll).
fg_start b strict -audit="$AUDIT" -strict -inbound 127.0.0.1:18454
fg_start a strict -audit="$AUDIT" -strict -inbound 127.0.0.1:18454 -outbound 127.0.0.1:18092
# fg-noaudit: the same pair without audit, to show what the log costs.
fg_start b noaudit -audit=false -inbound 127.0.0.1:18455; NA_B_PID=$LAST_PID
fg_start a noaudit -audit=false -inbound 127.0.0.1:18455 -outbound 127.0.0.1:18093; NA_A_PID=$LAST_PID
HOST=$(sed -n 's/^host=//p' "$WORK/fg-a.out")

KINDS="direct nginx fedgate fg-strict fg-noaudit"
declare -A URL=([direct]=http://127.0.0.1:18080/ [nginx]=http://127.0.0.1:18081/ [fedgate]=http://127.0.0.1:18091/
  [fg-strict]=http://127.0.0.1:18092/ [fg-noaudit]=http://127.0.0.1:18093/)
for k in $KINDS; do
  curl -sf -H "Host: $HOST" "${URL[$k]}" >/dev/null || { echo "$k path does not answer 200" >&2; exit 1; }
done

# wrk_run NAME -> appends "rps p50_ms p99_ms" to $WORK/NAME.txt
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); print v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v); print v} else if (v ~ /s$/) {sub(/s$/,"",v); print v*1000} else print v}'; }
wrk_run() {
  local out; out=$(wrk -t2 -c32 -d"$DUR" --latency -H "Host: $HOST" "${URL[$1]}")
  local rps p50 p99 errs
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  # wrk counts non-2xx answers as requests: a run with any is void.
  if grep -q 'Non-2xx' <<<"$out"; then echo "  $1: $(grep Non-2xx <<<"$out") -- run void" >&2; rps=0; fi
  p50=$(awk '$1=="50%" {print $2}' <<<"$out" | to_ms)
  p99=$(awk '$1=="99%" {print $2}' <<<"$out" | to_ms)
  errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out")
  [ -n "$errs" ] && echo "  $1: $errs" >&2
  echo "$rps $p50 $p99" >>"$WORK/$1.txt"
  printf '  %-10s %10.1f req/s  p50 %7.3f ms  p99 %8.3f ms\n' "$1" "$rps" "$p50" "$p99"
}
echo "== two hops, wrk -t2 -c32 -d$DUR, keep-alive, $ROUNDS interleaved rounds (audit on fedgate: $AUDIT)"
echo "   fedgate = default audit order, both sites audit; fg-strict = AuditStrictAll; fg-noaudit = no audit log"
for r in $(seq "$ROUNDS"); do
  echo " round $r (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  for k in $KINDS; do wrk_run "$k"; done
done
get() { sed -n "s/.*[ ]$1=\([0-9.-]*\).*/\1/p" <<<" $2"; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
col() { awk -v c="$2" '{print $c}' "$WORK/$1.txt" | median; }
echo "== medians"
for k in $KINDS; do
  printf '  %-10s %10.1f req/s  p50 %7.3f ms  p99 %8.3f ms\n' "$k" "$(col $k 1)" "$(col $k 2)" "$(col $k 3)"
done
awk -v f="$(col fedgate 1)" -v s="$(col fg-strict 1)" -v o="$(col fg-noaudit 1)" -v n="$(col nginx 1)" -v d="$(col direct 1)" \
  'BEGIN {printf "  ratio fedgate/nginx     %.2f\n  ratio fedgate/direct    %.2f\n  ratio fg-strict/nginx   %.2f\n  ratio fg-noaudit/nginx  %.2f\n  ratio nginx/direct      %.2f\n", f/n, f/d, s/n, o/n, n/d}'

LG="$WORK/bin/loadgen"
CERT=(-cert "$WORK/fg/a.pem" -key "$WORK/fg/a.key")
NCERT=(-cert "$WORK/nginx/client.pem" -key "$WORK/nginx/client.key")
declare -A URL1=([nginx]=https://127.0.0.1:18443/ [fedgate]=https://127.0.0.1:18453/ [fg-noaudit]=https://127.0.0.1:18455/)
# lg1 KIND ARGS...: the load generator against KIND's inbound listener, with
# the client certificate that listener trusts.
lg1() {
  local k=$1; shift
  if [ "$k" = nginx ]; then "$LG" -url "${URL1[$k]}" "${NCERT[@]}" "$@"; else "$LG" -url "${URL1[$k]}" -host "$HOST" "${CERT[@]}" "$@"; fi
}
echo "== one hop with client certificates (Go load generator, -c 32, keep-alive; $ROUNDS interleaved rounds)"
echo "   the generator shares the 2 cores: its own ceiling is the 'direct' line (plain HTTP to the backend)"
for r in $(seq "$ROUNDS"); do
  for k in direct nginx fedgate fg-noaudit; do
    if [ "$k" = direct ]; then o=$("$LG" -url http://127.0.0.1:18080/ -mode keepalive -c 32 -d "$DUR")
    else o=$(lg1 "$k" -mode keepalive -c 32 -d "$DUR"); fi
    printf '  %-10s %s\n' "$k" "$o"
    echo "$(get rps "$o") $(get p50_ms "$o") $(get p99_ms "$o")" >>"$WORK/1hop-$k.txt"
  done
done
echo "== one hop medians"
for k in direct nginx fedgate fg-noaudit; do
  printf '  %-10s %10.1f req/s  p50 %7.3f ms  p99 %8.3f ms\n' "$k" "$(col 1hop-$k 1)" "$(col 1hop-$k 2)" "$(col 1hop-$k 3)"
done
awk -v f="$(col 1hop-fedgate 1)" -v o="$(col 1hop-fg-noaudit 1)" -v n="$(col 1hop-nginx 1)" \
  'BEGIN {printf "  ratio fedgate/nginx     %.2f\n  ratio fg-noaudit/nginx  %.2f\n", f/n, o/n}'
echo "== handshakes, one hop (new TLS connection per request, -c 8)"
for m in full resumed; do
  "$LG" -url https://127.0.0.1:18443/ -cert "$WORK/nginx/client.pem" -key "$WORK/nginx/client.key" -mode $m -c 8 -d 5s | sed 's/^/  nginx   /'
  "$LG" -url https://127.0.0.1:18453/ -host "$HOST" -cert "$WORK/fg/a.pem" -key "$WORK/fg/a.key" -mode $m -c 8 -d 5s | sed 's/^/  fedgate /'
done
# Open loop: latency counted from each request's intended send time, after a
# 1 s warm-up at the same rate (connections and TLS sessions set up). Each
# round runs direct and every path once, interleaved; the figure is the
# median over rounds of (path minus direct of the same round).
echo "== open loop at 1000 req/s, $ROUNDS rounds of 5 s, minus direct (one hop: client certificate to the inbound; two hops: wrk's path)"
for r in $(seq "$ROUNDS"); do
  D=$("$LG" -url http://127.0.0.1:18080/ -mode rate -rate 1000 -d 5s)
  for k in nginx fedgate fg-noaudit; do
    for hops in 1 2; do
      if [ $hops = 1 ]; then o=$(lg1 "$k" -mode rate -rate 1000 -d 5s)
      else o=$("$LG" -url "${URL[$k]}" -host "$HOST" -mode rate -rate 1000 -d 5s); fi
      echo "$(get p50_ms "$o") $(get p50_ms "$D") $(get p99_ms "$o") $(get p99_ms "$D")" |
        awk '{print $1-$2, $3-$4}' >>"$WORK/ol$hops-$k.txt"
    done
  done
  echo "  round $r: direct $D"
done
for hops in 1 2; do
  for k in nginx fedgate fg-noaudit; do
    printf '  %s hop(s) %-10s minus direct: p50 %+.3f ms, p99 %+.3f ms\n' "$hops" "$k" "$(col ol$hops-$k 1)" "$(col ol$hops-$k 2)"
  done
done
echo "== CPU per request of the two proxy processes (wrk -t2 -c32 4s; user+system from /proc)"
NGINX_WORKERS=$(for f in "$WORK/nginx/inbound.pid" "$WORK/nginx/outbound.pid"; do pgrep -P "$(cat "$f")"; done | tr '\n' ' ')
# shellcheck disable=SC2086
echo "  nginx      $("$HERE/cpu-per-req.sh" "${URL[nginx]}" "$HOST" $NGINX_WORKERS)"
echo "  fedgate    $("$HERE/cpu-per-req.sh" "${URL[fedgate]}" "$HOST" "$FG_A_PID" "$FG_B_PID")"
echo "  fg-noaudit $("$HERE/cpu-per-req.sh" "${URL[fg-noaudit]}" "$HOST" "$NA_A_PID" "$NA_B_PID")"
echo "== memory per idle mTLS connection (fedgate inbound process RSS)"
"$LG" -url https://127.0.0.1:18453/ -cert "$WORK/fg/a.pem" -key "$WORK/fg/a.key" -mode idle -idle 1000 -pid "$FG_B_PID" | sed 's/^/  fedgate /'
echo "== audit records written (all fedgate processes): $(cat "$WORK"/fg/audit-*/*.jsonl 2>/dev/null | wc -l)"
# The issue's targets against this run's figures, stated plainly.
verdict() { awk -v v="$1" -v lim="$2" -v op="$3" 'BEGIN {ok = (op == ">=") ? v >= lim : v < lim; print (ok ? "met" : "NOT met")}'; }
R2=$(awk -v f="$(col fedgate 1)" -v n="$(col nginx 1)" 'BEGIN {printf "%.2f", f/n}')
R1=$(awk -v f="$(col 1hop-fedgate 1)" -v n="$(col 1hop-nginx 1)" 'BEGIN {printf "%.2f", f/n}')
P1=$(col ol1-fedgate 2) P2=$(col ol2-fedgate 2)
echo "== targets (issue #5)"
echo "  req/s with audit on at or above nginx: two hops ${R2}x ($(verdict "$R2" 1 ">=")), one hop ${R1}x ($(verdict "$R1" 1 ">="))"
echo "  p99 added at 1,000 req/s under 1 ms: one hop ${P1} ms ($(verdict "$P1" 1 "<")), two hops ${P2} ms ($(verdict "$P2" 1 "<"))"
