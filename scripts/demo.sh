#!/usr/bin/env bash
# make demo: two fedgate sites, each in its own network namespace, joined by
# a veth underlay (192.168.77.0/24). Each runs one fedgated (netctl on,
# userspace WireGuard) and site B a small HTTP backend. The demo walks the
# federation lifecycle: invite -> accept -> enrolled -> active -> calls
# through the proxy over WireGuard (10.78.0.0/24 overlay) -> audit on both
# sides -> revoke -> teardown, printing each step and its evidence.
# Everything it creates is removed on exit (trap), also on failure.
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "demo: needs root (network namespaces, TUN)"; exit 1; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/bin
[ -x "$BIN/fedgated" ] && [ -x "$BIN/fedgate" ] || { echo "demo: run 'make build' first"; exit 1; }
WORK=$(mktemp -d /tmp/fedgate-demo.XXXXXX)
SFX=$(printf '%04x' $((RANDOM)))
NSA=fgdemo-a-$SFX
NSB=fgdemo-b-$SFX
IFA=fg-d$SFX-a
IFB=fg-d$SFX-b
KEEP=${FEDGATE_DEMO_KEEP:-}

bold=$(tput bold 2>/dev/null || true)
norm=$(tput sgr0 2>/dev/null || true)
n=0
step() { n=$((n + 1)); printf '\n%s== %d. %s ==%s\n' "$bold" "$n" "$*" "$norm"; }
show() { printf '%s$ %s%s\n' "$bold" "$*" "$norm"; "$@"; }
die() { echo "demo: FAILED: $*"; for s in a b; do echo "--- site $s log (tail) ---"; tail -n 30 "$WORK/$s.log" 2>/dev/null || true; done; exit 1; }

cleanup() {
	local rc=$?
	set +e
	printf '\n%s== teardown ==%s\n' "$bold" "$norm"
	for ns in "$NSA" "$NSB"; do
		if [ -e "/run/netns/$ns" ]; then
			# Every process in the demo namespaces is the demo's: the agents,
			# their userspace WireGuard devices (own session) and the backend.
			for pid in $(ip netns pids "$ns"); do kill "$pid" 2>/dev/null; done
		fi
	done
	sleep 1
	for ns in "$NSA" "$NSB"; do
		if [ -e "/run/netns/$ns" ]; then
			for pid in $(ip netns pids "$ns"); do kill -9 "$pid" 2>/dev/null; done
			ip netns del "$ns" && echo "namespace $ns removed"
		fi
	done
	rm -f "/var/run/wireguard/$IFA.sock" "/var/run/wireguard/$IFB.sock"
	if [ -n "$KEEP" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
	exit $rc
}
trap cleanup EXIT INT TERM

A() { "$BIN/fedgate" --socket "$WORK/a.sock" "$@"; }
B() { "$BIN/fedgate" --socket "$WORK/b.sock" "$@"; }

# wait_for DESC SECONDS CMD...: retry CMD until it succeeds.
wait_for() {
	local what=$1 secs=$2
	shift 2
	local end=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] || die "$what not within ${secs}s"
		sleep 0.3
	done
}

peer_status() { "$BIN/fedgate" --socket "$1" peers show "$2" --json | jq -r .status; }
is_status() { [ "$(peer_status "$1" "$2")" = "$3" ]; }

site_config() { # name underlay overlay iface routes
	cat <<EOF
node:
  data_dir: $WORK/$1/data
  site_name: demo-site-$1
log:
  level: info
api:
  socket: $WORK/$1.sock
raft:
  listen: $2:7400
  bootstrap: true
cluster:
  listen: $2:7401
metrics:
  listen: ""
netctl:
  mode: "on"
  backend: userspace
  device_log_dir: $WORK/$1/run
  interfaces:
    - name: $4
      listen_port: 51820
      addresses: [$3/24]
proxy:
  inbound: 0.0.0.0:8443
  outbound: 127.0.0.1:8081
  resource_kinds: [workspace]
$5
lifecycle:
  bootstrap_listen: $2:7443
  listen: $2:7444
  operator_contact: ops@site-$1.example
  jurisdiction: EU
  last_known_good_release: v1.0.0
  data_residency: eu-west
  heartbeat_interval: 2s
  stale_after: 30s
  wireguard_interface: $4
  wireguard_endpoint: $2:51820
  wireguard_allowed_ips: [$3/32]
  endpoints:
    - url: https://$3:8443
      scope: sdwan
      priority: 1
EOF
}

step "network: namespaces $NSA and $NSB joined by a veth underlay"
ip netns add "$NSA"
ip netns add "$NSB"
ip link add "vd$SFX-a" type veth peer name "vd$SFX-b"
ip link set "vd$SFX-a" netns "$NSA" name eth0
ip link set "vd$SFX-b" netns "$NSB" name eth0
for ns in "$NSA:192.168.77.1" "$NSB:192.168.77.2"; do
	ip -n "${ns%%:*}" link set lo up
	ip -n "${ns%%:*}" addr add "${ns##*:}/24" dev eth0
	ip -n "${ns%%:*}" link set eth0 up
done
show ip -n "$NSA" -br addr show eth0
show ip -n "$NSB" -br addr show eth0

step "site B's backend: a small HTTP server on 127.0.0.1:9000 inside $NSB"
mkdir -p "$WORK/www/v1/workspaces"
echo '{"workspace":"1","served_by":"site B backend"}' >"$WORK/www/v1/workspaces/1"
ip netns exec "$NSB" python3 -m http.server 9000 --bind 127.0.0.1 --directory "$WORK/www" >"$WORK/backend.log" 2>&1 &

step "start fedgated in each namespace (netctl on, userspace WireGuard)"
mkdir -p "$WORK/a" "$WORK/b"
site_config a 192.168.77.1 10.78.0.1 "$IFA" "" >"$WORK/a.yaml"
site_config b 192.168.77.2 10.78.0.2 "$IFB" "  routes:
    - name: workspaces
      path_prefix: /
      backend: http://127.0.0.1:9000
      resource_kind: workspace" >"$WORK/b.yaml"
ip netns exec "$NSA" "$BIN/fedgated" --config "$WORK/a.yaml" >"$WORK/a.log" 2>&1 &
ip netns exec "$NSB" "$BIN/fedgated" --config "$WORK/b.yaml" >"$WORK/b.log" 2>&1 &
ready() { [ "$("$BIN/fedgate" --socket "$1" status --json 2>/dev/null | jq -r .ready)" = true ]; }
wait_for "site A ready" 60 ready "$WORK/a.sock"
wait_for "site B ready" 60 ready "$WORK/b.sock"
show A status

step "invite: site A creates a proposed peer and a single-use acceptance token"
A peers invite --token-file "$WORK/token" --json >"$WORK/invite.json"
ID_AB=$(jq -r .peer_id "$WORK/invite.json")
URL=$(jq -r .url "$WORK/invite.json")
echo "bootstrap URL: $URL"
show ls -l "$WORK/token"
echo "A's record of B: $(peer_status "$WORK/a.sock" "$ID_AB")"

step "accept: site B redeems the token (contract version 1) over A's pinned bootstrap listener"
show B peers accept "$URL" --token-file "$WORK/token" --contract-version 1
ID_BA=$(B peers list --json | jq -r '.[0].id')
echo "ids: A knows B as $ID_AB; B knows A as $ID_BA"
echo "a second use of the token:"
B peers accept "$URL" --token-file "$WORK/token" --contract-version 1 && die "token reused" || true

step "handshake over mTLS (contract digest, N-1 platform version, disclosure, WireGuard keys) -> enrolled; first heartbeat -> active"
wait_for "A sees B active" 60 is_status "$WORK/a.sock" "$ID_AB" active
wait_for "B sees A active" 60 is_status "$WORK/b.sock" "$ID_BA" active
show A peers list
show B peers list
A peers show "$ID_AB" --json | jq '{status, contract_version_agreed, operator_contact, jurisdiction, platform_version, data_residency, wireguard_public_key, last_heartbeat_at, outbound_subject}'

step "tunnel: netctl built the WireGuard peer from the handshake"
wait_for "tunnel on A" 30 sh -c "'$BIN/fedgate' --socket '$WORK/a.sock' tunnels --json | jq -e '[.status.interfaces[].peers[]] | length == 1'"
show A tunnels
show B tunnels

step "calls through A's outbound proxy -> WireGuard -> B's inbound proxy -> backend"
echo "B's only declared endpoint is its overlay address: $(A peers show "$ID_AB" --json | jq -c .endpoints)"
call() { ip netns exec "$NSA" curl -s -o "$WORK/resp" -w '%{http_code}' -H "Host: $ID_AB.peer.fedgate" http://127.0.0.1:8081/v1/workspaces/1; }
wait_for "a call through the proxy" 30 sh -c "[ \"\$(ip netns exec '$NSA' curl -s -o /dev/null -w '%{http_code}' -H 'Host: $ID_AB.peer.fedgate' http://127.0.0.1:8081/v1/workspaces/1)\" = 200 ]"
echo "HTTP $(call): $(cat "$WORK/resp")"
B tunnels --json | jq -c '.status.interfaces[].peers[] | {endpoint, rx_bytes, tx_bytes, health}'

step "audit on both sides"
show A audit query --peer "$ID_AB" --action proxy.request --limit 3
show B audit query --peer "$ID_BA" --action proxy.request --limit 3
show B audit query --peer "$ID_BA" --action handshake --limit 2

step "revoke: A notifies B (platform.peer.revoked + heartbeat revoked), then tears down"
SERIAL=$(A trust show "$ID_AB" --json | jq -r .our_certificate.serial)
# The lifecycle's revocation route (notice first). `fedgate peers revoke`
# reaches the same once the local API's revokePeer delegates to it; until
# then it revokes first and the lifecycle sends the notice right after.
echo "$ curl --unix-socket $WORK/a.sock -X POST http://fedgate/v1/peers/$ID_AB/revoke-notify -d '{\"reason\":\"demo: parting ways\"}'"
curl -s --unix-socket "$WORK/a.sock" -X POST -H 'Content-Type: application/json' -d '{"reason":"demo: parting ways"}' \
	"http://fedgate/v1/peers/$ID_AB/revoke-notify" | jq '{id, status, notice_delivered, notice_error, revoked_cert_serial}'
wait_for "B marks A revoked" 30 is_status "$WORK/b.sock" "$ID_BA" revoked
echo "A's record of B: $(peer_status "$WORK/a.sock" "$ID_AB"); B's record of A: $(peer_status "$WORK/b.sock" "$ID_BA") ($(B peers show "$ID_BA" --json | jq -r .metadata.revocation_reason))"
wait_for "tunnel gone on A" 30 sh -c "'$BIN/fedgate' --socket '$WORK/a.sock' tunnels --json | jq -e '[.status.interfaces[].peers[]] | length == 0'"
wait_for "tunnel gone on B" 30 sh -c "'$BIN/fedgate' --socket '$WORK/b.sock' tunnels --json | jq -e '[.status.interfaces[].peers[]] | length == 0'"
echo "WireGuard peers left: A $(A tunnels --json | jq '[.status.interfaces[].peers[]] | length'), B $(B tunnels --json | jq '[.status.interfaces[].peers[]] | length')"
code=$(call || true)
echo "a call after the revocation: HTTP $code"
[ "$code" != 200 ] || die "call allowed after revoke"
wait_for "A's federation certificate for B revoked" 20 sh -c "'$BIN/fedgate' --socket '$WORK/a.sock' audit query --peer '$ID_AB' --json | jq -e '[.records[] | select(.metadata.revoked_cert_serial == \"$SERIAL\")] | length > 0'"
echo "A's federation certificate for B (serial $SERIAL) is revoked"
show B audit query --peer "$ID_BA" --action federation.notice --limit 2
echo "order: B received the final notice at $(B audit query --peer "$ID_BA" --action federation.notice --json | jq -r '.records[0].time');" \
	"A revoked at $(A audit query --peer "$ID_AB" --action peer.transition --json | jq -r '[.records[] | select(.metadata.to == "revoked")][0].time')"
echo "audit kept: A has $(A audit query --peer "$ID_AB" --json | jq '.records | length') records for B, B has $(B audit query --peer "$ID_BA" --json | jq '.records | length') for A"
show A audit verify

printf '\n%sdemo complete%s\n' "$bold" "$norm"
