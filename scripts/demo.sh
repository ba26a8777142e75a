#!/bin/sh
# Runs asset-gateway for real against the bundled Connectly sandbox on
# loopback (memory store), shows a create answered MISS and then the same
# create answered HIT, prints curl lines to try, and serves until Ctrl-C.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
GW_PORT=${GW_PORT:-8080}
SB_PORT=${SB_PORT:-9000}
BUSINESS=550e8400-e29b-41d4-a716-446655440000

sh "$top/scripts/deps.sh"
echo "building (first time takes a minute)..."
sh "$top/scripts/build.sh" "$top/build/plain"
bin=$top/build/plain

run=$(mktemp -d /tmp/asset-gateway-demo.XXXXXX)
sb_pid="" gw_pid=""
cleanup() {
    [ -n "$gw_pid" ] && kill "$gw_pid" 2>/dev/null && wait "$gw_pid" 2>/dev/null
    [ -n "$sb_pid" ] && kill "$sb_pid" 2>/dev/null && wait "$sb_pid" 2>/dev/null
    rm -rf "$run"
    echo "stopped."
}
trap cleanup EXIT
trap 'exit 0' INT TERM

umask 077
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$run/api-key"
cat >"$run/asset-gateway.conf" <<CONF
[server]
listen = 127.0.0.1:$GW_PORT
[upstream]
base_url = http://127.0.0.1:$SB_PORT
api_key_file = $run/api-key
[store]
backend = memory
[auth]
mode = none
[security]
allow_private_sources = yes
[log]
format = text
CONF

"$bin/connectly-sandbox" --listen "127.0.0.1:$SB_PORT" \
    --api-key-file "$run/api-key" >"$run/sandbox.out" 2>"$run/sandbox.log" &
sb_pid=$!
"$bin/asset-gateway" -c "$run/asset-gateway.conf" >"$run/gateway.out" 2>"$run/gateway.log" &
gw_pid=$!

wait_for() { # wait_for URL: up to 10 s
    i=0
    until curl -fsS -o /dev/null "$1" 2>/dev/null; do
        i=$((i + 1))
        if [ "$i" -gt 100 ]; then
            echo "not answering: $1"; cat "$run"/*.log; exit 1
        fi
        sleep 0.1
    done
}
wait_for "http://127.0.0.1:$SB_PORT/samples/ping.png"
wait_for "http://127.0.0.1:$GW_PORT/healthz"

URL="http://127.0.0.1:$GW_PORT/v1/businesses/$BUSINESS/assets"
BODY="{\"uri\":\"http://127.0.0.1:$SB_PORT/samples/product-photo.png\"}"
CREATE="curl -sS -i -X POST '$URL' -H 'Content-Type: application/json' -d '$BODY'"

echo
echo "== first create: the gateway calls Connectly (X-Cache: MISS)"
echo "\$ $CREATE"
sh -c "$CREATE"
echo
echo
echo "== the same create again: answered from the cache (X-Cache: HIT)"
sh -c "$CREATE"
echo
echo
echo "asset-gateway  http://127.0.0.1:$GW_PORT  (log: $run/gateway.log)"
echo "sandbox        http://127.0.0.1:$SB_PORT  (log: $run/sandbox.log)"
echo "Try:"
echo "  $CREATE"
echo "  curl -sS -i -X POST '$URL' -H 'Content-Type: application/json' -d '{\"uri\":\"ftp://example.com/x\"}'"
echo "  curl -sS http://127.0.0.1:$GW_PORT/readyz"
echo "  curl -sS http://127.0.0.1:$SB_PORT/_sandbox/stats"
echo "Ctrl-C stops both."
wait "$gw_pid"
