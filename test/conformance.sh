#!/bin/sh
# RFC 6455 client conformance of ws_port (make conformance).
#
# Starts test/peers/raw_peer.py (python3-autobahn) on 127.0.0.1, runs
# test/conformance_client.exs with mix against it, and exits with the peer's
# status: 0 when every case passed. The peer prints "N passed, N failed" on
# stdout and one line per failed case on stderr.
set -u
cd "$(dirname "$0")/.."

out=$(mktemp)
peer=""
cleanup() {
  if [ -n "$peer" ] && kill -0 "$peer" 2>/dev/null; then kill -TERM "$peer" 2>/dev/null; fi
  rm -f "$out"
}
trap cleanup EXIT INT TERM

/usr/bin/python3 test/peers/raw_peer.py >"$out" </dev/null &
peer=$!

port=""
tries=0
while [ -z "$port" ]; do
  port=$(sed -n 's/^PORT \([0-9][0-9]*\)$/\1/p' "$out" | head -n 1)
  [ -n "$port" ] && break
  if ! kill -0 "$peer" 2>/dev/null; then
    echo "conformance: raw_peer.py exited before listening" >&2
    exit 2
  fi
  tries=$((tries + 1))
  if [ "$tries" -gt 300 ]; then
    echo "conformance: raw_peer.py printed no PORT line" >&2
    exit 2
  fi
  sleep 0.1
done

mix run test/conformance_client.exs "$port"
client=$?

if [ "$client" -ne 0 ]; then
  echo "conformance: client exited with $client; stopping the peer" >&2
  kill -TERM "$peer" 2>/dev/null
fi
wait "$peer"
status=$?
peer=""
grep -v '^PORT ' "$out"
if [ "$status" -eq 0 ] && [ "$client" -ne 0 ]; then status=$client; fi
exit "$status"
