#!/usr/bin/env bash
# The benchmarks other than receive throughput (that is run.sh): echo
# round-trip latency, connection setup rate, memory per idle connection. See
# README.md. Appends a table to RESULTS.md (unless NO_RESULTS is set).
#
#   bench/suite.sh                     # everything, RUNS runs each, medians
#   BENCHES="echo setup" bench/suite.sh
#   BENCHES=idle_pmd TRANSPORTS=ws bench/suite.sh   # idle memory with compression
#   BENCHES=stream_pmd TRANSPORTS=ws bench/suite.sh # a compressible stream, with and without
#   BENCHES=storm TRANSPORTS=wss bench/suite.sh     # reconnect storm (runs bench/storm.sh)
#   BENCHES=fanin TRANSPORTS=ws bench/suite.sh      # 10,000 connections x 10 small msgs/s: CPU, latency
#   BEFORE=/path/to/old/ws_port BENCHES="echo fanin" bench/suite.sh  # also that port program (echo, fanin), same run
#   BEFORE_EBIN=/path/to/old/ebin BENCHES=fanin bench/suite.sh  # fanin: also that build of the BEAM code
#                                      # (with BEFORE's program if set, else this tree's), same run
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
OUT="$HERE/out"
RUNS=${RUNS:-3}
TRANSPORTS=${TRANSPORTS:-"ws wss"}
BENCHES=${BENCHES:-"echo setup idle"}
ECHO_N=${ECHO_N:-20000}
ECHO_SIZE=${ECHO_SIZE:-100}
SETUP_N=${SETUP_N:-1000}
IDLE_N=${IDLE_N:-10000}
STREAM_N=${STREAM_N:-500000}
CMD="$0 $*"
# fanin's *_before rows: BEFORE's program, or this tree's with BEFORE_EBIN
BEF=${BEFORE:-${BEFORE_EBIN:+${WS_PORT_PROGRAM:-$ROOT/priv/ws_port}}}
# fanin: FANIN_N connections from bench/out/fanin_server, FANIN_RATE messages
# of FANIN_SIZE bytes per second each; FANIN_WARM s warm-up, FANIN_WINDOW s measured
FANIN_N=${FANIN_N:-10000}
FANIN_RATE=${FANIN_RATE:-10}
FANIN_SIZE=${FANIN_SIZE:-200}
FANIN_WARM=${FANIN_WARM:-5}
FANIN_WINDOW=${FANIN_WINDOW:-20}
if [[ " $BENCHES " == *" fanin "* ]]; then
    for v in FANIN_N FANIN_RATE FANIN_SIZE FANIN_WARM FANIN_WINDOW; do CMD="$v=\"${!v}\" $CMD"; done
fi
for v in RUNS TRANSPORTS BENCHES ECHO_N ECHO_SIZE SETUP_N IDLE_N STREAM_N ${WS_PORT_PROGRAM:+WS_PORT_PROGRAM} ${BEFORE:+BEFORE} ${BEFORE_EBIN:+BEFORE_EBIN}; do
    CMD="$v=\"${!v}\" $CMD"
done

# 10,000 connections: the server and the port program each need an fd per
# connection (the port program raises its soft limit to the hard one itself)
ulimit -n "$(ulimit -Hn)"
if (( $(ulimit -n) < IDLE_N + 100 )); then
    echo "suite.sh: ulimit -n is $(ulimit -n), below IDLE_N=$IDLE_N + 100" >&2
    exit 1
fi

LOAD0=$(cut -d" " -f1-3 /proc/loadavg)
make -s -C "$HERE" build
if [[ -z "${SKIP_BUILD:-}" ]]; then
    if [[ -f "$ROOT/rebar.config" ]] && command -v rebar3 >/dev/null; then
        (cd "$ROOT" && rebar3 compile >&2) || echo "suite.sh: rebar3 compile failed; using what is built" >&2
    elif [[ -f "$ROOT/mix.exs" ]]; then
        (cd "$ROOT" && mix compile >&2) || echo "suite.sh: mix compile failed; using what is built" >&2
    fi
fi
[[ -x "${WS_PORT_PROGRAM:-$ROOT/priv/ws_port}" ]] || { echo "suite.sh: no port program" >&2; exit 1; }

. "$HERE/common.sh"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a==""||b==""||b==0) print "-"; else printf "%.2f", a/b }'; }
run() { # label command... -> result line or FAIL
    local line
    shift
    line=$(timeout 300 "$@" 2>"$TMP/err" | tail -1) || line=FAIL
    if [[ $line == FAIL || -z $line ]]; then
        sed 's/^/    /' "$TMP/err" | tail -5 >&2
        line=FAIL
    fi
    echo "$line"
}

declare -A R
for tr in $TRANSPORTS; do
    port=$WS_PORTNUM; [[ $tr == wss ]] && port=$WSS_PORTNUM
    base="$tr://127.0.0.1:$port"
    for b in $BENCHES; do
        declare -A M=()
        for r in $(seq "$RUNS"); do
            case $b in
            echo)
                for c in plain ws_port ${BEFORE:+before} pipe; do
                    if [[ $c == plain ]]; then
                        line=$(run "$c" "$OUT/plain_client" --echo "$ECHO_N" --size "$ECHO_SIZE" "$base/?mode=echo")
                    elif [[ $c == pipe ]]; then
                        # the floor of a port program: BEAM -> /bin/cat -> BEAM, no socket
                        line=$(run "$c" escript "$HERE/ws_bench.escript" pipe "$ECHO_N" "$ECHO_SIZE")
                    elif [[ $c == before ]]; then
                        line=$(WS_PORT_PROGRAM=$BEFORE run "$c" escript "$HERE/ws_bench.escript" echo "$base/?mode=echo" "$ECHO_N" "$ECHO_SIZE")
                    else
                        line=$(run "$c" escript "$HERE/ws_bench.escript" echo "$base/?mode=echo" "$ECHO_N" "$ECHO_SIZE")
                    fi
                    echo "echo $tr $c run=$r: $line" >&2
                    [[ $line == FAIL ]] && continue
                    M[$c,p50]+=" $(field "$line" rtt_p50_us)"
                    M[$c,p99]+=" $(field "$line" rtt_p99_us)"
                    # CPU µs per round trip: the plain client's, the port program's
                    case $c in
                        plain) M[$c,cpu]+=" $(awk -v u="$(field "$line" cpu_user)" -v s="$(field "$line" cpu_sys)" -v n="$ECHO_N" 'BEGIN{printf "%.1f", (u+s)*1e6/n}')" ;;
                        ws_port|before) M[$c,cpu]+=" $(awk -v c="$(field "$line" cpu_port)" -v n="$ECHO_N" 'BEGIN{printf "%.1f", c*1e6/n}')" ;;
                    esac
                done
                ;;
            setup)
                for c in plain ws_port; do
                    if [[ $c == plain ]]; then
                        line=$(run "$c" "$OUT/plain_client" --connect "$SETUP_N" "$base/?mode=idle")
                    else
                        line=$(run "$c" escript "$HERE/ws_bench.escript" setup "$base/?mode=idle" "$SETUP_N")
                    fi
                    echo "setup $tr $c run=$r: $line" >&2
                    [[ $line == FAIL ]] && continue
                    M[$c,rate]+=" $(field "$line" conns_per_s)"
                done
                ;;
            stream_pmd)
                # STREAM_N JSON-like 1 KiB text messages from bench/pmd_firehose.py
                # (precompressed, no context takeover) into one process, with
                # and without permessage-deflate
                [[ $tr == ws ]] || continue
                if [[ -z "${PF_PORT:-}" ]]; then
                    /usr/bin/python3 "$HERE/pmd_firehose.py" >"$TMP/pf.out" 2>"$TMP/pf.log" &
                    PIDS+=($!)
                    for _ in $(seq 100); do
                        PF_PORT=$(awk '/^PORT /{print $2}' "$TMP/pf.out")
                        [[ -n $PF_PORT ]] && break
                        sleep 0.1
                    done
                fi
                for c in plain pmd; do
                    opts="#{compress => false}"; [[ $c == pmd ]] && opts="#{compress => true}"
                    line=$(RECV_OPTS="$opts" run "$c" escript "$HERE/recv_bench.escript" \
                        "ws://127.0.0.1:$PF_PORT/?n=$STREAM_N&size=1024")
                    echo "stream_pmd $c run=$r: $line" >&2
                    [[ $line == FAIL ]] && continue
                    sleep 0.2
                    wire=$(awk '/^DONE/{w=$5} END{sub("wire_bytes=","",w); print w}' "$TMP/pf.out")
                    M[$c,rate]+=" $(field "$line" msgs_per_s)"
                    M[$c,cpugb]+=" $(awk -v c="$(field "$line" cpu_port)" -v b="$(field "$line" bytes)" 'BEGIN{printf "%.3f", c/(b/1e9)}')"
                    M[$c,wire]+=" $wire"
                done
                ;;
            idle_pmd)
                # permessage-deflate: IDLE_N connections to python3-websockets
                # (test/peers/ws_server.py --deflate), each receives one
                # compressible 1 KiB text message, then idles. Reference: the
                # same without compression, in the same run.
                [[ $tr == ws ]] || continue
                if [[ -z "${PMD_PORT:-}" ]]; then
                    /usr/bin/python3 "$ROOT/test/peers/ws_server.py" --deflate '{}' >"$TMP/pmd.port" 2>"$TMP/pmd.log" &
                    PIDS+=($!)
                    for _ in $(seq 100); do
                        PMD_PORT=$(awk '/^PORT /{print $2}' "$TMP/pmd.port")
                        [[ -n $PMD_PORT ]] && break
                        sleep 0.1
                    done
                fi
                for c in plain pmd_nct pmd_takeover; do
                    case $c in
                    plain) opts="#{compress => false}" ;;
                    pmd_nct) opts="#{compress => #{server_no_context_takeover => true, client_no_context_takeover => true}}" ;;
                    pmd_takeover) opts="#{compress => true}" ;;
                    esac
                    line=$(IDLE_OPTS="$opts" IDLE_RECV=1 run "$c" escript "$HERE/ws_bench.escript" idle \
                        "ws://127.0.0.1:$PMD_PORT/send?n=1&size=1024" "$IDLE_N")
                    echo "idle_pmd $c run=$r: $line" >&2
                    [[ $line == FAIL || $(field "$line" conns) != "$IDLE_N" ]] && continue
                    M[$c,port]+=" $(field "$line" port_kib_per_conn)"
                    M[$c,total]+=" $(field "$line" total_kib_per_conn)"
                done
                ;;
            fanin)
                # FANIN_N connections, each FANIN_RATE messages/s of
                # FANIN_SIZE bytes carrying the server's send time (bench/
                # fanin_server.c): plain_client --fanin (one epoll loop),
                # ws_port into FANIN_N owner processes (procs) and into one
                # owner holding all (one), bench/fanin_bench.escript
                [[ $tr == ws ]] || continue
                if [[ -z "${FANIN_PORT:-}" ]]; then
                    "$OUT/fanin_server" --rate "$FANIN_RATE" --size "$FANIN_SIZE" >"$TMP/fanin.port" 2>"$TMP/fanin.log" &
                    PIDS+=($!)
                    for _ in $(seq 100); do
                        FANIN_PORT=$(awk '/^PORT /{print $2}' "$TMP/fanin.port")
                        [[ -n $FANIN_PORT ]] && break
                        sleep 0.05
                    done
                fi
                for c in plain procs one ${BEF:+procs_before one_before}; do
                    furl="ws://127.0.0.1:$FANIN_PORT/"
                    if [[ $c == plain ]]; then
                        line=$(run "$c" "$OUT/plain_client" --fanin "$FANIN_N" --warm "$FANIN_WARM" --window "$FANIN_WINDOW" "$furl")
                    elif [[ $c == *_before ]]; then
                        line=$(WS_PORT_EBIN=${BEFORE_EBIN:-${WS_PORT_EBIN:-}} WS_PORT_PROGRAM=$BEF run "$c" escript "$HERE/fanin_bench.escript" "${c%_before}" "$furl" "$FANIN_N" "$FANIN_WARM" "$FANIN_WINDOW")
                    else
                        line=$(run "$c" escript "$HERE/fanin_bench.escript" "$c" "$furl" "$FANIN_N" "$FANIN_WARM" "$FANIN_WINDOW")
                    fi
                    echo "fanin $c run=$r: $line" >&2
                    sleep 2 # the server closes the last run's connections
                    [[ $line == FAIL ]] && continue
                    M[$c,rate]+=" $(field "$line" msgs_per_s)"
                    M[$c,gaps]+=" $(field "$line" gaps)"
                    for q in p50 p99 p999; do M[$c,$q]+=" $(field "$line" lat_${q}_us)"; done
                    if [[ $c == plain ]]; then
                        M[$c,cpu]+=" $(field "$line" cpu_s_per_m)"
                    else
                        M[$c,cpu]+=" $(field "$line" port_s_per_m)"
                        M[$c,beam]+=" $(field "$line" beam_s_per_m)"
                    fi
                done
                ;;
            idle)
                line=$(run ws_port escript "$HERE/ws_bench.escript" idle "$base/?mode=idle" "$IDLE_N")
                echo "idle $tr run=$r: $line" >&2
                [[ $line == FAIL || $(field "$line" conns) != "$IDLE_N" ]] && continue
                M[beam]+=" $(field "$line" beam_kib_per_conn)"
                M[port]+=" $(field "$line" port_kib_per_conn)"
                M[total]+=" $(field "$line" total_kib_per_conn)"
                ;;
            storm)
                # the reconnect storm (issue 16): its own script and table
                if [[ $tr == wss && $r == 1 ]]; then "$HERE/storm.sh"; fi
                ;;
            esac
        done
        # shellcheck disable=SC2086
        for k in "${!M[@]}"; do R[$tr,$b,$k]=$(median ${M[$k]}); done
        unset M
    done
done

v() { echo "${R[$1]:--}"; }
floor_ratio() { # transport client -> client p50 / (plain p50 + pipe p50)
    local p=${R[$1,echo,plain,p50]:-} q=${R[$1,echo,pipe,p50]:-}
    if [[ -z $p || -z $q ]]; then echo -; else ratio "${R[$1,echo,$2,p50]:-}" "$(awk -v a="$p" -v b="$q" 'BEGIN{print a+b}')"; fi
}
TABLE=""
if [[ " $BENCHES " == *" echo "* ]]; then
    TABLE+="Echo round trip, $ECHO_SIZE B binary, one message in flight, $ECHO_N round trips (µs; lower is better)"$'\n\n'
    TABLE+="| transport | plain p50 | plain p99 | ws_port p50 | ws_port p99 | ws_port/plain p50 | ws_port/plain p99 | pipe p50 | ws_port/(plain+pipe) p50 | plain CPU µs/rt | port CPU µs/rt |"$'\n'
    TABLE+="|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"$'\n'
    for tr in $TRANSPORTS; do
        TABLE+="| $tr | $(v "$tr,echo,plain,p50") | $(v "$tr,echo,plain,p99") | $(v "$tr,echo,ws_port,p50") | $(v "$tr,echo,ws_port,p99") | $(ratio "${R[$tr,echo,ws_port,p50]:-}" "${R[$tr,echo,plain,p50]:-}") | $(ratio "${R[$tr,echo,ws_port,p99]:-}" "${R[$tr,echo,plain,p99]:-}") | $(v "$tr,echo,pipe,p50") | $(floor_ratio "$tr" ws_port) | $(v "$tr,echo,plain,cpu") | $(v "$tr,echo,ws_port,cpu") |"$'\n'
    done
    if [[ -n "${BEFORE:-}" ]]; then
        for tr in $TRANSPORTS; do
            TABLE+="| $tr, BEFORE | $(v "$tr,echo,plain,p50") | $(v "$tr,echo,plain,p99") | $(v "$tr,echo,before,p50") | $(v "$tr,echo,before,p99") | $(ratio "${R[$tr,echo,before,p50]:-}" "${R[$tr,echo,plain,p50]:-}") | $(ratio "${R[$tr,echo,before,p99]:-}" "${R[$tr,echo,plain,p99]:-}") | $(v "$tr,echo,pipe,p50") | $(floor_ratio "$tr" before) | $(v "$tr,echo,plain,cpu") | $(v "$tr,echo,before,cpu") |"$'\n'
        done
    fi
    TABLE+=$'\n'"pipe: the same loop through /bin/cat as the port (BEAM -> program -> BEAM, no socket): what any port program adds at least; plain + pipe is the floor of a port-based client"$'\n\n'
fi
if [[ " $BENCHES " == *" setup "* ]]; then
    TABLE+="Connection setup, $SETUP_N connections one after the other, kept open (connections/s; higher is better)"$'\n\n'
    TABLE+="| transport | plain | ws_port | ws_port/plain |"$'\n'
    TABLE+="|---|---:|---:|---:|"$'\n'
    for tr in $TRANSPORTS; do
        TABLE+="| $tr | $(v "$tr,setup,plain,rate") | $(v "$tr,setup,ws_port,rate") | $(ratio "${R[$tr,setup,ws_port,rate]:-}" "${R[$tr,setup,plain,rate]:-}") |"$'\n'
    done
    TABLE+=$'\n'
fi
if [[ " $BENCHES " == *" idle "* ]]; then
    TABLE+="Memory per idle connection, $IDLE_N open at once on one driver (KiB per connection; target ws <= 2.5, wss <= 20)"$'\n\n'
    TABLE+="| transport | BEAM | port RSS | total | target |"$'\n'
    TABLE+="|---|---:|---:|---:|---:|"$'\n'
    for tr in $TRANSPORTS; do
        tgt=2.5; [[ $tr == wss ]] && tgt=20
        TABLE+="| $tr | $(v "$tr,idle,beam") | $(v "$tr,idle,port") | $(v "$tr,idle,total") | $tgt |"$'\n'
    done
fi

if [[ " $BENCHES " == *" stream_pmd "* ]]; then
    TABLE+=$'\n'"A compressible stream: $STREAM_N JSON-like 1 KiB text messages into one process (bench/pmd_firehose.py, precompressed, no context takeover; port CPU per GB of messages; wire = bytes the server wrote; ratios against plain, same run)"$'\n\n'
    TABLE+="| case | msgs/s | port CPU s/GB | wire bytes | msgs/s / plain | CPU / plain | wire / plain |"$'\n'
    TABLE+="|---|---:|---:|---:|---:|---:|---:|"$'\n'
    for c in plain pmd; do
        TABLE+="| $c | $(v "ws,stream_pmd,$c,rate") | $(v "ws,stream_pmd,$c,cpugb") | $(v "ws,stream_pmd,$c,wire") | $(ratio "${R[ws,stream_pmd,$c,rate]:-}" "${R[ws,stream_pmd,plain,rate]:-}") | $(ratio "${R[ws,stream_pmd,$c,cpugb]:-}" "${R[ws,stream_pmd,plain,cpugb]:-}") | $(ratio "${R[ws,stream_pmd,$c,wire]:-}" "${R[ws,stream_pmd,plain,wire]:-}") |"$'\n'
    done
fi
if [[ " $BENCHES " == *" idle_pmd "* ]]; then
    TABLE+=$'\n'"Memory per idle connection with permessage-deflate, $IDLE_N open at once on one driver, each received one 1 KiB text message (python3-websockets --deflate '{}'; KiB per connection; ratio against plain, same run; target pmd_nct <= 2x plain)"$'\n\n'
    TABLE+="| case | port RSS | total (BEAM + port) | port / plain | total / plain |"$'\n'
    TABLE+="|---|---:|---:|---:|---:|"$'\n'
    for c in plain pmd_nct pmd_takeover; do
        TABLE+="| $c | $(v "ws,idle_pmd,$c,port") | $(v "ws,idle_pmd,$c,total") | $(ratio "${R[ws,idle_pmd,$c,port]:-}" "${R[ws,idle_pmd,plain,port]:-}") | $(ratio "${R[ws,idle_pmd,$c,total]:-}" "${R[ws,idle_pmd,plain,total]:-}") |"$'\n'
    done
fi
if [[ " $BENCHES " == *" fanin "* ]]; then
    TABLE+=$'\n'"Fan-in: $FANIN_N connections on 127.0.0.1, each $FANIN_RATE messages/s of $FANIN_SIZE B (bench/out/fanin_server, paced every 250 µs; expected $((FANIN_N * FANIN_RATE)) msgs/s), $FANIN_WINDOW s measured after $FANIN_WARM s warm-up; latency = receive - send time (CLOCK_REALTIME); CPU s per million messages (plain: the client; ws_port: the port program, and the BEAM apart); procs = one owner process per connection, one = one owner holding all; targets: port/plain CPU <= 2, p99 < 5 ms"$'\n\n'
    TABLE+="| case | msgs/s | gaps | p50 µs | p99 µs | p99.9 µs | CPU s/M (plain or port) | BEAM CPU s/M | port / plain CPU |"$'\n'
    TABLE+="|---|---:|---:|---:|---:|---:|---:|---:|---:|"$'\n'
    for c in plain procs one ${BEF:+procs_before one_before}; do
        TABLE+="| $c | $(v "ws,fanin,$c,rate") | $(v "ws,fanin,$c,gaps") | $(v "ws,fanin,$c,p50") | $(v "ws,fanin,$c,p99") | $(v "ws,fanin,$c,p999") | $(v "ws,fanin,$c,cpu") | $(v "ws,fanin,$c,beam") | $(ratio "${R[ws,fanin,$c,cpu]:-}" "${R[ws,fanin,plain,cpu]:-}") |"$'\n'
    done
fi

echo
echo "$TABLE"
if [[ -z "${NO_RESULTS:-}" ]]; then
    {
        echo
        echo "## $(date -u '+%Y-%m-%d %H:%M UTC') — latency, setup, idle memory (suite.sh)"
        echo
        echo "- machine: $(nproc) CPUs, $(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo), $(uname -sr), $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
        echo "- load average before the run: $LOAD0 (other work on the machine adds noise)"
        echo "- commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- c_src src 2>/dev/null || echo ' (+ uncommitted changes in c_src/src)')"
        echo "- command: \`$CMD\`"
        [[ -n "${NOTE:-}" ]] && echo "- note: $NOTE"
        [[ -s "$TMP/fanin.log" ]] && echo "- fanin_server at the end (cumulative; lagged = messages due that the server, short of CPU, did not send): $(tail -1 "$TMP/fanin.log")"
        echo "- median of $RUNS runs; server: bench/out/firehose (echo / idle modes; wss: RSA 2048 self-signed); plain = bench/out/plain_client; ws_port = bench/ws_bench.escript"
        echo
        echo "$TABLE"
    } >>"$HERE/RESULTS.md"
    echo "appended to bench/RESULTS.md" >&2
fi
