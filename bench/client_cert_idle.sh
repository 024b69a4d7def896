#!/bin/bash
# Memory per idle wss connection with the client certificate and key given
# in memory (tls cert/key, issue 14) against the same without a client
# certificate (the reference), in the same run: N connections open at once
# on one driver (bench/ws_bench.escript idle, IDLE_OPTS), to
# bench/out/firehose (wss, RSA 2048 self-signed; it does not ask for the
# client certificate: what is measured is what the options cost to keep).
#
#   bench/client_cert_idle.sh            N=10000 WINDOW=100 RUNS_LIST="1"
#
# Prints one line per case and run; build first (make, rebar3 compile, make
# -C bench build).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-10000}
WINDOW=${WINDOW:-100}
TMP=$(mktemp -d)
ulimit -n "$(ulimit -Hn)"
cd "$TMP"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
    -addext "subjectAltName=IP:127.0.0.1" -keyout key.pem -out cert.pem 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ckey.pem 2>/dev/null
openssl req -x509 -new -key ckey.pem -days 1 -subj /CN=client -out ccert.pem 2>/dev/null
"$ROOT/bench/out/firehose" --tls cert.pem key.pem > fh.port 2> fh.log &
FH=$!
trap 'kill $FH 2>/dev/null; wait $FH 2>/dev/null; rm -rf "$TMP"' EXIT
P=
for _ in $(seq 100); do P=$(awk '/^PORT /{print $2}' fh.port); [[ -n $P ]] && break; sleep 0.05; done
# a file's bytes as an Erlang binary literal (for IDLE_OPTS)
lit() { /usr/bin/python3 -c '
import sys
d = open(sys.argv[1]).read()
print("<<\"" + d.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n") + "\">>")' "$1"; }
REF='#{tls => #{verify => verify_none}}'
MEM="#{tls => #{verify => verify_none, cert => $(lit ccert.pem), key => $(lit ckey.pem)}}"
cd "$ROOT"
for r in ${RUNS_LIST:-1}; do
    for c in ref mem; do
        if [[ $c == ref ]]; then o=$REF; else o=$MEM; fi
        line=$(IDLE_OPTS="$o" WS_PORT_EBIN="$ROOT/_build/default/lib/ws_port/ebin" \
            escript bench/ws_bench.escript idle "wss://127.0.0.1:$P/?mode=idle" "$N" "$WINDOW")
        echo "run=$r case=$c $line"
    done
done
