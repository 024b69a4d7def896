#!/usr/bin/env bash
# The reconnect storm (issue 16): STORM_N wss connections held by ws_port on
# one driver (default retry: 1 s, full jitter), the server killed and
# started again on the same port with the same TLS ticket keys; how long
# until every connection is back, what it costs in CPU (port program, BEAM,
# server) and how the handshakes spread over time, with
# tls reuse_sessions => true and => false in the same run (alternating), or
# (STORM_VARY=jitter) with two retry jitters, STORM_JITTERS (default
# "0.1 default": the old default +-10% and the library's default) at
# STORM_REUSE (default true). STORM_JITTER sets the jitter of the reuse runs.
# Appends a table to RESULTS.md (unless NO_RESULTS is set).
#
#   bench/storm.sh                          # STORM_N=10000, RUNS=1
#   STORM_N=1000 RUNS=3 NO_RESULTS=1 bench/storm.sh
#   STORM_TLS=12 bench/storm.sh             # the server at TLS 1.2 at most
#   STORM_VARY=jitter STORM_N=2000 bench/storm.sh   # old vs new jitter
#
#   BEFORE=/tmp/old/ws_port bench/storm.sh  # also that port program (e.g. a
#                                           # copy of priv/ws_port from before
#                                           # a change), same server, same run,
#                                           # with the reuse modes in
#                                           # BEFORE_REUSE (default: false);
#                                           # adds its rows and after/before
#                                           # ratios
#   REUSE_MODES="false" bench/storm.sh      # default "true false"
#                                           # (BEFORE and REUSE_MODES: only
#                                           # with STORM_VARY=reuse)
#
# Server: bench/out/storm_server (TLS handshake + upgrade, then idle; RSA
# 2048 self-signed certificate, also the client's cacertfile: verification
# on, as in production). Client: bench/storm_bench.escript.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
OUT="$HERE/out"
STORM_N=${STORM_N:-10000}
RUNS=${RUNS:-1}
STORM_TLS=${STORM_TLS:-13}
REUSE_MODES=${REUSE_MODES:-true false}
BEFORE=${BEFORE:-}
BEFORE_REUSE=${BEFORE_REUSE:-false}
STORM_VARY=${STORM_VARY:-reuse}
STORM_JITTER=${STORM_JITTER:-default}
STORM_JITTERS=${STORM_JITTERS:-0.1 default}
STORM_REUSE=${STORM_REUSE:-true}
CMD="STORM_N=$STORM_N RUNS=$RUNS STORM_TLS=$STORM_TLS STORM_VARY=$STORM_VARY${STORM_CONNECT_TIMEOUT:+ STORM_CONNECT_TIMEOUT=$STORM_CONNECT_TIMEOUT}"
case $STORM_VARY in
    reuse) CMD+=" STORM_JITTER=$STORM_JITTER${BEFORE:+ BEFORE=$BEFORE BEFORE_REUSE=\"$BEFORE_REUSE\"} REUSE_MODES=\"$REUSE_MODES\"" ;;
    jitter)
        CMD+=" STORM_JITTERS=\"$STORM_JITTERS\" STORM_REUSE=$STORM_REUSE"
        if [[ -n $BEFORE ]]; then
            echo "storm.sh: BEFORE is for STORM_VARY=reuse" >&2
            exit 2
        fi
        ;;
    *) echo "storm.sh: STORM_VARY must be reuse or jitter" >&2; exit 2 ;;
esac
CMD+=" $0 $*"
if [[ -n $BEFORE && ! -x $BEFORE ]]; then
    echo "storm.sh: BEFORE=$BEFORE is not an executable" >&2
    exit 1
fi

# the server and the port program each need an fd per connection
ulimit -n "$(ulimit -Hn)"
if (( $(ulimit -n) < STORM_N + 100 )); then
    echo "storm.sh: ulimit -n is $(ulimit -n), below STORM_N=$STORM_N + 100" >&2
    exit 1
fi

UPTIME0=$(uptime)
make -s -C "$HERE" build
if [[ -z "${SKIP_BUILD:-}" ]]; then
    if [[ -f "$ROOT/rebar.config" ]] && command -v rebar3 >/dev/null; then
        (cd "$ROOT" && rebar3 compile >&2) || echo "storm.sh: rebar3 compile failed; using what is built" >&2
    elif [[ -f "$ROOT/mix.exs" ]]; then
        (cd "$ROOT" && mix compile >&2) || echo "storm.sh: mix compile failed; using what is built" >&2
    fi
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
head -c 80 /dev/urandom >"$TMP/ticket.key"

field() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1==k{print $2}'; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a==""||b==""||b==0) print "-"; else printf "%.2f", a/b }'; }

KEYS="first_up_ms all_up_ms p50_up_ms p99_up_ms port_cpu_s port_peak_pct beam_cpu_s beam_peak_pct server_cpu_s server_peak_pct peak_hs_per_100ms hs_slots server_full server_resumed client_resumed retry1_peak_per_100ms"
# variants: "reuse" (this tree's port program), "before:reuse" (BEFORE),
# "jitter=J" (STORM_VARY=jitter)
VARIANTS=()
if [[ $STORM_VARY == jitter ]]; then
    for j in $STORM_JITTERS; do VARIANTS+=("jitter=$j"); done
else
    for reuse in $REUSE_MODES; do VARIANTS+=("$reuse"); done
    if [[ -n $BEFORE ]]; then
        for reuse in $BEFORE_REUSE; do VARIANTS+=("before:$reuse"); done
    fi
fi
declare -A M=() HIST=() DOWNS=() D1=()
for r in $(seq "$RUNS"); do
    for var in "${VARIANTS[@]}"; do
        case $var in
            jitter=*) reuse=$STORM_REUSE; jitter=${var#jitter=} ;;
            *) reuse=${var#before:}; jitter=$STORM_JITTER ;;
        esac
        prog=(env "STORM_JITTER=$jitter")
        [[ $var == before:* ]] && prog+=("WS_PORT_PROGRAM=$BEFORE")
        line=$(timeout 900 "${prog[@]}" escript "$HERE/storm_bench.escript" "$OUT/storm_server" "$TMP/cert.pem" \
            "$TMP/key.pem" "$TMP/ticket.key" "$STORM_N" "$reuse" "$STORM_TLS" 2>"$TMP/err" | tail -1) || line=FAIL
        echo "storm $var run=$r: $line" >&2
        if [[ $line == FAIL || -z $line ]]; then
            tail -5 "$TMP/err" >&2
            continue
        fi
        for k in $KEYS; do M[$var,$k]+=" $(field "$line" "$k")"; done
        HIST[$var]=$(field "$line" hist)
        DOWNS[$var]=$(field "$line" downs)
        D1[$var]=$(field "$line" retry1_hist)
    done
done
if (( ${#M[@]} == 0 )); then
    echo "storm.sh: no run finished; nothing appended" >&2
    exit 1
fi
declare -A R=()
for k in "${!M[@]}"; do
    # shellcheck disable=SC2086
    R[$k]=$(median ${M[$k]})
done
v() { echo "${R[$1]:--}"; }

if [[ $STORM_VARY == jitter ]]; then
    POLICY="retry 1 s factor 2, jitter $STORM_JITTERS (default = the library's: full), reuse_sessions $STORM_REUSE"
else
    POLICY="default retry$([[ $STORM_JITTER != default ]] && echo ", jitter $STORM_JITTER")"
fi
TABLE="Reconnect storm: $STORM_N wss connections (TLS 1.${STORM_TLS#1}, verified), one driver, $POLICY, connect_timeout $((${STORM_CONNECT_TIMEOUT:-60000} / 1000)) s; the server killed and restarted with the same ticket keys. Times from the kill (first up: the first connection back, client side); CPU seconds over the storm (kill to the last connection up) and the largest 100 ms sample (% of one CPU); first retries: the most connections whose first retry delay fell in one 100 ms slot; median of $RUNS run(s)"$'\n\n'
COLS="first_up_ms all_up_ms p50_up_ms p99_up_ms port_cpu_s port_peak_pct beam_cpu_s beam_peak_pct server_cpu_s server_peak_pct peak_hs_per_100ms retry1_peak_per_100ms"
row() { # label, then a value per column
    local out="| $1 |"; shift
    for x in "$@"; do out+=" $x |"; done
    echo "$out"
}
TABLE+="| port program, reuse_sessions or jitter | first up (ms) | all up (ms) | p50 up (ms) | p99 up (ms) | port CPU s | port peak % | BEAM CPU s | BEAM peak % | server CPU s | server peak % | peak handshakes / 100 ms | first retries / 100 ms (peak) | slots with handshakes | server: full / resumed |"$'\n'
TABLE+="|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"$'\n'
for var in "${VARIANTS[@]}"; do
    vals=()
    for k in $COLS hs_slots; do vals+=("$(v "$var,$k")"); done
    label="this tree, $var"
    [[ $var == before:* ]] && label="BEFORE, ${var#before:}"
    TABLE+="$(row "$label" "${vals[@]}" "$(v "$var,server_full") / $(v "$var,server_resumed")")"$'\n'
done
if [[ " ${VARIANTS[*]} " == *" true "* && " ${VARIANTS[*]} " == *" false "* ]]; then
    vals=()
    for k in $COLS; do vals+=("$(ratio "${R[true,$k]:-}" "${R[false,$k]:-}")"); done
    TABLE+="$(row "reuse true / false" "${vals[@]}" "" "")"$'\n'
fi
for var in "${VARIANTS[@]}"; do
    [[ $var == before:* ]] || continue
    reuse=${var#before:}
    [[ " ${VARIANTS[*]} " == *" $reuse "* ]] || continue
    vals=()
    for k in $COLS; do vals+=("$(ratio "${R[$reuse,$k]:-}" "${R[$var,$k]:-}")"); done
    TABLE+="$(row "this tree / BEFORE, $reuse" "${vals[@]}" "" "")"$'\n'
done
if [[ $STORM_VARY == jitter && ${#VARIANTS[@]} -ge 2 ]]; then
    vals=()
    for k in $COLS; do vals+=("$(ratio "${R[${VARIANTS[0]},$k]:-}" "${R[${VARIANTS[1]},$k]:-}")"); done
    TABLE+="$(row "${VARIANTS[0]} / ${VARIANTS[1]}" "${vals[@]}" "" "")"$'\n'
fi
TABLE+=$'\n'"Server handshakes per 100 ms slot (ms from the kill: count), last run:"$'\n\n'
for var in "${VARIANTS[@]}"; do
    TABLE+="- $var (client downs by reason: ${DOWNS[$var]:--}): \`${HIST[$var]:--}\`"$'\n'
done
TABLE+=$'\n'"First retry delays as the port program drew them (delay_ms of attempt 1, 100 ms slot: connections), last run:"$'\n\n'
for var in "${VARIANTS[@]}"; do
    TABLE+="- $var: \`${D1[$var]:--}\`"$'\n'
done

echo
echo "$TABLE"
# (before the append below: RESULTS.md itself is not a change to the code)
COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- c_src src bench 2>/dev/null || echo ' (+ uncommitted changes)')"
if [[ -z "${NO_RESULTS:-}" ]]; then
    {
        echo
        echo "## $(date -u '+%Y-%m-%d %H:%M UTC') — reconnect storm (storm.sh)"
        echo
        echo "- machine: $(nproc) CPUs, $(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo), $(uname -sr), $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
        echo "- uptime before the run: \`$UPTIME0\` (other work on the machine adds noise)"
        echo "- commit: $COMMIT"
        echo "- command: \`$CMD\`"
        [[ -n "${NOTE:-}" ]] && echo "- note: $NOTE"
        echo
        echo "$TABLE"
    } >>"$HERE/RESULTS.md"
    echo "appended to bench/RESULTS.md" >&2
fi
