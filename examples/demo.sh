#!/usr/bin/env bash
# make demo: start a local WebSocket echo server (python3-websockets) on a free
# 127.0.0.1 port, run examples/quickstart.exs against it, stop the server.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp)
/usr/bin/python3 test/peers/ws_server.py >"$out" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 1 100); do
  port=$(sed -n 's/^PORT //p' "$out")
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "${port:-}" ] || { echo "the echo server did not start:"; cat "$out"; exit 1; }
echo "local echo server (python3-websockets) on 127.0.0.1:$port"
mix run examples/quickstart.exs "ws://127.0.0.1:$port/echo"
