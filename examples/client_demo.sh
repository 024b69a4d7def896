#!/usr/bin/env bash
# Start the Deribit-like JSON-RPC test server (python3-websockets) on a free
# 127.0.0.1 port, run examples/client_example.exs and client_example.erl
# against it, stop the server.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp)
tmp=$(mktemp -d)
/usr/bin/python3 test/peers/jsonrpc_server.py >"$out" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -rf "$out" "$tmp"' EXIT
for _ in $(seq 1 100); do
  port=$(sed -n 's/^PORT //p' "$out")
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "${port:-}" ] || { echo "the server did not start:"; cat "$out"; exit 1; }
url="ws://127.0.0.1:$port/rpc"
echo "== Elixir (examples/client_example.exs) against $url"
mix run examples/client_example.exs "$url"
echo "== Erlang (examples/client_example.erl) against $url"
rebar3 compile >/dev/null
ebin="${REBAR_BASE_DIR:-_build}/default/lib/ws_port/ebin"
erlc -pa "$ebin" -o "$tmp" examples/client_example.erl
erl -pa "$ebin" -pa "$tmp" -noshell -eval "client_example:main(\"$url\"), halt()."
