#!/usr/bin/env bash
# A server trickling its upgrade response one byte per send (issue 11): the
# port program's CPU per attempt, and the echo latency of another connection
# on the same port program meanwhile, BEFORE (a commit built in a temporary
# git worktree, removed at exit) and AFTER (this tree) in the same run. See
# README.md. Appends a table to RESULTS.md (unless NO_RESULTS is set).
#
#   bench/handshake.sh
#   RUNS=5 ATTEMPTS=3 TRANSPORTS=wss BEFORE=cb6c14e bench/handshake.sh
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
OUT="$HERE/out"
PY=/usr/bin/python3
RUNS=${RUNS:-3}
ATTEMPTS=${ATTEMPTS:-3}
TRANSPORTS=${TRANSPORTS:-"ws wss"}
BEFORE=${BEFORE:-cb6c14e}
GAP_US=${GAP_US:-0}
ECHO_SIZE=${ECHO_SIZE:-100}
CMD="$0 $*"
for v in RUNS ATTEMPTS TRANSPORTS BEFORE GAP_US ECHO_SIZE; do
    CMD="$v=\"${!v}\" $CMD"
done

LOAD0=$(cut -d" " -f1-3 /proc/loadavg)
make -s -C "$HERE" build
if [[ -z "${SKIP_BUILD:-}" ]]; then
    make -s -C "$ROOT" >&2
    (cd "$ROOT" && rebar3 compile >&2)
fi
export WS_PORT_EBIN=${WS_PORT_EBIN:-$ROOT/_build/default/lib/ws_port/ebin}
AFTER_PROG=$ROOT/priv/ws_port
[[ -x $AFTER_PROG ]] || { echo "handshake.sh: no $AFTER_PROG" >&2; exit 1; }
AFTER_COMMIT=$(git -C "$ROOT" rev-parse --short HEAD)
if [[ -n $(git -C "$ROOT" status --porcelain -- c_src) ]]; then
    AFTER_COMMIT="$AFTER_COMMIT (+ uncommitted changes in c_src)"
fi

. "$HERE/common.sh" # TMP, PIDS, cleanup, the certificate, firehose ws/wss

# BEFORE: its port program, built in a temporary worktree
BEFORE_DIR="$TMP/before"
BEFORE_COMMIT=$(git -C "$ROOT" rev-parse --short "$BEFORE")
cleanup_all() {
    cleanup_worktree
    cleanup
}
cleanup_worktree() {
    if [[ -d $BEFORE_DIR ]]; then
        git -C "$ROOT" worktree remove --force "$BEFORE_DIR" >/dev/null 2>&1 || true
    fi
    git -C "$ROOT" worktree prune >/dev/null 2>&1 || true
}
trap cleanup_all EXIT
git -C "$ROOT" worktree add --detach "$BEFORE_DIR" "$BEFORE" >/dev/null 2>&1
make -s -C "$BEFORE_DIR" priv/ws_port >&2
BEFORE_PROG=$TMP/ws_port.before
cp "$BEFORE_DIR/priv/ws_port" "$BEFORE_PROG" # named ws_port*: the escript finds it
cleanup_worktree

# the tricklers: test/peers/evil_server.py, plain and TLS
start_evil() { # name args... -> sets SERVER_PORT
    local name=$1; shift
    "$PY" "$ROOT/test/peers/evil_server.py" "$@" >"$TMP/$name.port" 2>"$TMP/$name.log" &
    PIDS+=($!)
    SERVER_PORT=
    for _ in $(seq 100); do
        SERVER_PORT=$(awk '/^PORT /{print $2}' "$TMP/$name.port")
        [[ -n $SERVER_PORT ]] && break
        sleep 0.05
    done
    [[ -n $SERVER_PORT ]] || { echo "handshake.sh: evil_server.py did not start" >&2; exit 1; }
}
start_evil evil; EVIL_WS=$SERVER_PORT
start_evil evil_tls --tls "$TMP/cert.pem" "$TMP/key.pem"; EVIL_WSS=$SERVER_PORT

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a==""||b==""||b==0) print "-"; else printf "%.2f", a/b }'; }
KEYS="cpu_per_attempt_ms user_per_attempt_ms sys_per_attempt_ms wall_per_attempt_ms ref_p50_us ref_p99_us trickle_p50_us trickle_p99_us trickle_max_us echoes_during"
declare -A M R
for r in $(seq "$RUNS"); do
    for tr in $TRANSPORTS; do
        port=$EVIL_WS; [[ $tr == wss ]] && port=$EVIL_WSS
        url="$tr://127.0.0.1:$port/trickle_headers?gap_us=$GAP_US"
        for which in before after; do
            prog=$AFTER_PROG; [[ $which == before ]] && prog=$BEFORE_PROG
            line=$(WS_PORT_PROGRAM=$prog timeout 600 escript "$HERE/handshake_bench.escript" \
                "$url" "ws://127.0.0.1:$WS_PORTNUM/?mode=echo" "$ATTEMPTS" "$ECHO_SIZE" \
                2>"$TMP/err" | tail -1) || line=FAIL
            echo "handshake $tr $which run=$r: $line" >&2
            if [[ $line == FAIL || -z $line ]]; then
                sed 's/^/    /' "$TMP/err" | tail -5 >&2
                continue
            fi
            R[$tr,$which,reason]=$(field "$line" reason)
            for k in $KEYS; do M[$tr,$which,$k]+=" $(field "$line" "$k")"; done
        done
    done
done
# shellcheck disable=SC2086
for k in "${!M[@]}"; do R[$k]=$(median ${M[$k]}); done
v() { echo "${R[$1]:--}"; }

TABLE="Port program CPU per trickled attempt (utime+stime from /proc, 10 ms ticks; lower is better) and the
bystander's echo round trip ($ECHO_SIZE B, one in flight, µs) with nothing else going on (ref) and while
attempts run (during); *during/ref* is the ratio of the two in the same run and program"$'\n\n'
TABLE+="| transport | program | CPU ms/attempt | user ms | sys ms | wall ms/attempt | ref p50 | ref p99 | during p50 | during p99 | during max | p50 during/ref | p99 during/ref | echoes during |"$'\n'
TABLE+="|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"$'\n'
for tr in $TRANSPORTS; do
    for which in before after; do
        p="$tr,$which"
        TABLE+="| $tr | $which | $(v $p,cpu_per_attempt_ms) | $(v $p,user_per_attempt_ms) | $(v $p,sys_per_attempt_ms) | $(v $p,wall_per_attempt_ms) | $(v $p,ref_p50_us) | $(v $p,ref_p99_us) | $(v $p,trickle_p50_us) | $(v $p,trickle_p99_us) | $(v $p,trickle_max_us) | $(ratio "${R[$p,trickle_p50_us]:-}" "${R[$p,ref_p50_us]:-}") | $(ratio "${R[$p,trickle_p99_us]:-}" "${R[$p,ref_p99_us]:-}") | $(v $p,echoes_during) |"$'\n'
    done
done
TABLE+=$'\n'"Before/after ratios (same run): "
for tr in $TRANSPORTS; do
    TABLE+="$tr: CPU per attempt $(ratio "${R[$tr,before,cpu_per_attempt_ms]:-}" "${R[$tr,after,cpu_per_attempt_ms]:-}")x, user CPU $(ratio "${R[$tr,before,user_per_attempt_ms]:-}" "${R[$tr,after,user_per_attempt_ms]:-}")x, bystander p99 during $(ratio "${R[$tr,before,trickle_p99_us]:-}" "${R[$tr,after,trickle_p99_us]:-}")x, max $(ratio "${R[$tr,before,trickle_max_us]:-}" "${R[$tr,after,trickle_max_us]:-}")x; "
done
TABLE+=$'\n\n'"How the attempts ended: "
for tr in $TRANSPORTS; do
    TABLE+="$tr before \`$(v $tr,before,reason)\`, after \`$(v $tr,after,reason)\`; "
done
TABLE+=$'\n'

echo
echo "$TABLE"
if [[ -z "${NO_RESULTS:-}" ]]; then
    {
        echo
        echo "## $(date -u '+%Y-%m-%d %H:%M UTC') — trickled handshake (bench/handshake.sh)"
        echo
        echo "- machine: $(nproc) CPUs, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo), $(uname -sr)"
        echo "- load average before the run: $LOAD0 (other work on the machine adds noise)"
        echo "- before: $BEFORE_COMMIT (built in a temporary git worktree); after: $AFTER_COMMIT"
        echo "- command: \`$CMD\`"
        echo "- the trickler: test/peers/evil_server.py /trickle_headers, a 101 status line then short header lines"
        echo "  (\"h123: v\"), one byte per send(2) (ws: one TCP segment each; wss: one TLS record each),"
        echo "  never the end of the head, so each attempt ends at the port program's 64 KiB limit;"
        echo "  $ATTEMPTS attempts alone (CPU, wall) then $ATTEMPTS more beside the bystander (latency);"
        echo "  the bystander echoes against bench/out/firehose; median of $RUNS runs"
        [[ -n "${NOTE:-}" ]] && echo "- note: $NOTE"
        echo
        echo "$TABLE"
    } >>"$HERE/RESULTS.md"
fi
