#!/usr/bin/env bash
# Receive-throughput benchmark: plain C client vs ws_port, one connection,
# firehose server on 127.0.0.1. See bench/README.md.
#
#   bench/run.sh                 every case, RUNS runs each, table appended
#                                to bench/RESULTS.md
#   RUNS=5 bench/run.sh          more runs per case (median reported)
#   CLIENTS=plain bench/run.sh   only the plain C client (default: plain ws_port beam;
#                                beam = bench/beam_raw_bench.escript, the BEAM's own
#                                gen_tcp / ssl reading the raw stream, no parsing)
#   SIZES="1024" TRANSPORTS=ws bench/run.sh
#   N_100=2000000 N_1024=500000 N_65536=20000   messages per case
#   NO_RESULTS=1                 print the table, do not touch RESULTS.md
#   NOTE="text"                  a note line for the RESULTS.md entry
#   SKIP_BUILD=1                 do not run rebar3/mix compile first
#   WS_PORT_PROGRAM=path         port program to run instead of priv/ws_port
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
OUT="$HERE/out"
RUNS=${RUNS:-5}
SIZES=${SIZES:-"100 1024 65536"}
TRANSPORTS=${TRANSPORTS:-"ws wss"}
CLIENTS=${CLIENTS:-"plain ws_port beam"}
N_100=${N_100:-2000000}
N_1024=${N_1024:-500000}
N_65536=${N_65536:-20000}
CMD="$0 $*"
for v in RUNS SIZES TRANSPORTS CLIENTS N_100 N_1024 N_65536 ${WS_PORT_PROGRAM:+WS_PORT_PROGRAM}; do
    CMD="$v=\"${!v}\" $CMD"
done

LOAD0=$(cut -d" " -f1-3 /proc/loadavg)
make -s -C "$HERE" build

have_ws_port=0
if [[ " $CLIENTS " == *" ws_port "* ]]; then
    if [[ -f "$ROOT/src/ws_port.erl" ]]; then
        if [[ -z "${SKIP_BUILD:-}" ]]; then
            # rebar3's pre-hook builds priv/ws_port; mix when there is no rebar.config
            if [[ -f "$ROOT/rebar.config" ]] && command -v rebar3 >/dev/null; then
                (cd "$ROOT" && rebar3 compile >&2) || echo "run.sh: rebar3 compile failed; using what is built" >&2
            elif [[ -f "$ROOT/mix.exs" ]]; then
                (cd "$ROOT" && mix compile >&2) || echo "run.sh: mix compile failed; using what is built" >&2
            fi
        fi
        if [[ -x "${WS_PORT_PROGRAM:-$ROOT/priv/ws_port}" ]]; then
            have_ws_port=1
        fi
    fi
    if [[ $have_ws_port == 0 ]]; then
        echo "run.sh: ws_port is not built: plain client only" >&2
        CLIENTS=plain
    fi
fi

. "$HERE/common.sh"

run_client() { # client url -> result line, or "FAIL"
    local line err="$TMP/client.err"
    case $1 in
        plain) line=$(timeout 120 "$OUT/plain_client" --quiet "$2" 2>"$err" | grep '^msgs=') || line=FAIL ;;
        ws_port) line=$(timeout 120 escript "$HERE/recv_bench.escript" "$2" 2>"$err" | grep '^msgs=') || line=FAIL ;;
        beam) line=$(timeout 120 escript "$HERE/beam_raw_bench.escript" "$2" 2>"$err" | grep '^msgs=') || line=FAIL ;;
    esac
    if [[ $line == FAIL || $line != *close=1000* ]]; then
        sed 's/^/    /' "$err" | tail -5 >&2
    fi
    echo "$line"
}

declare -A R  # R[client,transport,size,metric] = median
for tr in $TRANSPORTS; do
    port=$WS_PORTNUM; [[ $tr == wss ]] && port=$WSS_PORTNUM
    for size in $SIZES; do
        nvar="N_$size"; n=${!nvar:-100000}
        url="$tr://127.0.0.1:$port/?n=$n&size=$size&type=binary"
        declare -A M=()
        for run in $(seq "$RUNS"); do
            for c in $CLIENTS; do
                line=$(run_client "$c" "$url")
                echo "$c $tr size=$size n=$n run=$run: $line" >&2
                if [[ $line == FAIL || $(field "$line" msgs) != "$n" || $(field "$line" close) != 1000 ]]; then
                    M[$c,fail]=$(( ${M[$c,fail]:-0} + 1 ))
                    continue
                fi
                M[$c,msgs]+=" $(field "$line" msgs_per_s)"
                M[$c,mb]+=" $(field "$line" mb_per_s)"
                if [[ $c == plain ]]; then
                    cpu=$(awk -v u="$(field "$line" cpu_user)" -v s="$(field "$line" cpu_sys)" 'BEGIN{printf "%.3f", u+s}')
                    M[$c,cpu]+=" $cpu"
                elif [[ $c == beam ]]; then
                    M[$c,cpu]+=" $(field "$line" cpu_beam)"
                else
                    M[$c,cpu]+=" $(field "$line" cpu_port)"
                    M[$c,beam]+=" $(field "$line" cpu_beam)"
                fi
            done
        done
        for c in $CLIENTS; do
            R[$c,$tr,$size,fail]=${M[$c,fail]:-0}
            if [[ -z "${M[$c,msgs]:-}" ]]; then
                R[$c,$tr,$size,msgs]=FAIL; continue
            fi
            # shellcheck disable=SC2086
            {
                R[$c,$tr,$size,msgs]=$(median ${M[$c,msgs]})
                R[$c,$tr,$size,mb]=$(median ${M[$c,mb]})
                R[$c,$tr,$size,cpu]=$(median ${M[$c,cpu]})
                [[ -n "${M[$c,beam]:-}" ]] && R[$c,$tr,$size,beam]=$(median ${M[$c,beam]})
            }
        done
        R[n,$size]=$n
        unset M
    done
done

fmt_int() { awk -v x="$1" 'BEGIN{ if (x=="") print "-"; else printf "%d", x }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a==""||b==""||b==0||a=="FAIL"||b=="FAIL") print "-"; else printf "%.2f", a/b }'; }

per_gb() { awk -v c="$1" -v g="$2" 'BEGIN{ if (c==""||c=="FAIL"||g==0) print "-"; else printf "%.2f", c/g }'; }

rate_cell() { # client transport size -> "msgs/s" or "msgs/s (k of RUNS failed)" or FAIL
    local v=${R[$1,$2,$3,msgs]:-} f=${R[$1,$2,$3,fail]:-0}
    if [[ $v == FAIL ]]; then echo "FAIL ($f of $RUNS)"; return; fi
    if [[ $f != 0 ]]; then echo "$(fmt_int "$v") ($f of $RUNS failed)"; else fmt_int "$v"; fi
}

have_beam=0
[[ " $CLIENTS " == *" beam "* ]] && have_beam=1

table() {
    if [[ $have_ws_port == 1 ]]; then
        local extra="" extra_sep=""
        if [[ $have_beam == 1 ]]; then
            extra=" beam raw MB/s | ws_port/beam raw |"
            extra_sep="---:|---:|"
        fi
        echo "| case | N | plain msgs/s | plain MB/s | plain CPU s | ws_port msgs/s | ws_port MB/s | ws_port/plain | port CPU s | BEAM CPU s | port CPU s/GB | plain CPU s/GB | port/plain CPU |$extra"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|$extra_sep"
    else
        echo "| case | N | plain msgs/s | plain MB/s | plain CPU s |"
        echo "|---|---:|---:|---:|---:|"
    fi
    for tr in $TRANSPORTS; do
        for size in $SIZES; do
            local p=${R[plain,$tr,$size,msgs]:-} row
            row="| $tr $size B | $(fmt_int "${R[n,$size]}") | $(rate_cell plain "$tr" "$size") | ${R[plain,$tr,$size,mb]:--} | ${R[plain,$tr,$size,cpu]:--} |"
            if [[ $have_ws_port == 1 ]]; then
                local w=${R[ws_port,$tr,$size,msgs]:-}
                local gb pc=${R[ws_port,$tr,$size,cpu]:-} cc=${R[plain,$tr,$size,cpu]:-}
                gb=$(awk -v n="${R[n,$size]}" -v s="$size" 'BEGIN{printf "%.6f", n*s/1e9}')
                row+=" $(rate_cell ws_port "$tr" "$size") | ${R[ws_port,$tr,$size,mb]:--} | $(ratio "$w" "$p") | ${pc:--} | ${R[ws_port,$tr,$size,beam]:--} | $(per_gb "$pc" "$gb") | $(per_gb "$cc" "$gb") | $(ratio "$pc" "$cc") |"
                if [[ $have_beam == 1 ]]; then
                    row+=" ${R[beam,$tr,$size,mb]:--} | $(ratio "$w" "${R[beam,$tr,$size,msgs]:-}") |"
                fi
            fi
            echo "$row"
        done
    done
}

TABLE=$(table)
echo
echo "$TABLE"

if [[ -z "${NO_RESULTS:-}" ]]; then
    {
        echo
        echo "## $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo
        echo "- machine: $(nproc) CPUs, $(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo), $(uname -sr)"
        echo "- load average before the run: $LOAD0 (other work on the machine adds noise)"
        echo "- commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- c_src src 2>/dev/null || echo ' (+ uncommitted changes in c_src/src)')"
        echo "- command: \`$CMD\`"
        [[ -n "${NOTE:-}" ]] && echo "- note: $NOTE"
        echo "- median of $RUNS runs; one connection; payload MB = 10^6 bytes; CPU = user+sys over the receive"
        [[ $have_beam == 1 ]] && echo "- beam raw: bench/beam_raw_bench.escript, one Erlang process reading the same stream with gen_tcp (ws) or OTP ssl (wss), bytes counted, no WebSocket parsing: the ceiling of an Erlang-side client here"
        echo
        echo "$TABLE"
    } >>"$HERE/RESULTS.md"
    echo >&2
    echo "appended to bench/RESULTS.md" >&2
fi
