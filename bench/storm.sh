#!/usr/bin/env bash
# The reconnect storm (issue 16): STORM_N wss connections held by ws_port on
# one driver (default retry: 1 s, full jitter), the server killed and
# started again on the same port with the same TLS ticket keys; how long
# until every connection is back, what it costs in CPU (port program, BEAM,
# server) and how the handshakes spread over time, with
# tls reuse_sessions => true and => false in the same run (alternating), or
# (STORM_VARY=jitter) with two retry jitters, STORM_JITTERS (default
# "0.1 default": the old default +-10% and the library's default) at
# STORM_REUSE (default true).
# Appends a table to RESULTS.md (unless NO_RESULTS is set).
#
#   bench/storm.sh                          # STORM_N=10000, RUNS=1
#   STORM_N=1000 RUNS=3 NO_RESULTS=1 bench/storm.sh
#   STORM_TLS=12 bench/storm.sh             # the server at TLS 1.2 at most
#   STORM_VARY=jitter STORM_N=2000 bench/storm.sh   # old vs new jitter
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
STORM_VARY=${STORM_VARY:-reuse}
STORM_JITTER=${STORM_JITTER:-default}
STORM_JITTERS=${STORM_JITTERS:-0.1 default}
STORM_REUSE=${STORM_REUSE:-true}
case $STORM_VARY in
    reuse) VARIANTS="true false" ;;
    jitter) VARIANTS=$STORM_JITTERS ;;
    *) echo "storm.sh: STORM_VARY must be reuse or jitter" >&2; exit 2 ;;
esac
read -r V1 V2 _ <<<"$VARIANTS"
CMD="STORM_N=$STORM_N RUNS=$RUNS STORM_TLS=$STORM_TLS STORM_VARY=$STORM_VARY${STORM_CONNECT_TIMEOUT:+ STORM_CONNECT_TIMEOUT=$STORM_CONNECT_TIMEOUT}"
if [[ $STORM_VARY == jitter ]]; then CMD+=" STORM_JITTERS=\"$STORM_JITTERS\" STORM_REUSE=$STORM_REUSE"; else CMD+=" STORM_JITTER=$STORM_JITTER"; fi
CMD+=" $0 $*"

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

KEYS="all_up_ms p50_up_ms p99_up_ms port_cpu_s port_peak_pct beam_cpu_s beam_peak_pct server_cpu_s server_peak_pct peak_hs_per_100ms hs_slots server_full server_resumed client_resumed retry1_peak_per_100ms"
declare -A M=() HIST=() DOWNS=() D1=()
for r in $(seq "$RUNS"); do
    for var in $V1 $V2; do
        if [[ $STORM_VARY == reuse ]]; then reuse=$var; jitter=$STORM_JITTER; else reuse=$STORM_REUSE; jitter=$var; fi
        line=$(STORM_JITTER=$jitter timeout 900 escript "$HERE/storm_bench.escript" "$OUT/storm_server" "$TMP/cert.pem" \
            "$TMP/key.pem" "$TMP/ticket.key" "$STORM_N" "$reuse" "$STORM_TLS" 2>"$TMP/err" | tail -1) || line=FAIL
        echo "storm reuse=$reuse jitter=$jitter run=$r: $line" >&2
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

if [[ $STORM_VARY == reuse ]]; then
    POLICY="default retry$([[ $STORM_JITTER != default ]] && echo ", jitter $STORM_JITTER")"
    COL=reuse_sessions
else
    POLICY="retry 1 s factor 2, jitter $V1 against $V2 (default = the library's: full), reuse_sessions $STORM_REUSE"
    COL=jitter
fi
TABLE="Reconnect storm: $STORM_N wss connections (TLS 1.${STORM_TLS#1}, verified), one driver, $POLICY, connect_timeout $((${STORM_CONNECT_TIMEOUT:-60000} / 1000)) s; the server killed and restarted with the same ticket keys. Times from the kill; CPU seconds over the storm (kill to the last connection up) and the largest 100 ms sample (% of one CPU); first retries: the most connections whose first retry delay fell in one 100 ms slot; median of $RUNS run(s)"$'\n\n'
TABLE+="| $COL | all up (ms) | p50 up (ms) | p99 up (ms) | port CPU s | port peak % | BEAM CPU s | BEAM peak % | server CPU s | server peak % | peak handshakes / 100 ms | slots with handshakes | first retries / 100 ms (peak) | server: full / resumed |"$'\n'
TABLE+="|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"$'\n'
for var in $V1 $V2; do
    TABLE+="| $var | $(v "$var,all_up_ms") | $(v "$var,p50_up_ms") | $(v "$var,p99_up_ms") | $(v "$var,port_cpu_s") | $(v "$var,port_peak_pct") | $(v "$var,beam_cpu_s") | $(v "$var,beam_peak_pct") | $(v "$var,server_cpu_s") | $(v "$var,server_peak_pct") | $(v "$var,peak_hs_per_100ms") | $(v "$var,hs_slots") | $(v "$var,retry1_peak_per_100ms") | $(v "$var,server_full") / $(v "$var,server_resumed") |"$'\n'
done
rr() { ratio "${R[$V1,$1]:-}" "${R[$V2,$1]:-}"; }
TABLE+="| $V1/$V2 | $(rr all_up_ms) | $(rr p50_up_ms) | $(rr p99_up_ms) | $(rr port_cpu_s) | $(rr port_peak_pct) | $(rr beam_cpu_s) | $(rr beam_peak_pct) | $(rr server_cpu_s) | $(rr server_peak_pct) | $(rr peak_hs_per_100ms) | | $(rr retry1_peak_per_100ms) | |"$'\n'
TABLE+=$'\n'"Server handshakes per 100 ms slot (ms from the kill: count), last run:"$'\n\n'
for var in $V1 $V2; do
    TABLE+="- $COL $var (client downs by reason: ${DOWNS[$var]:--}): \`${HIST[$var]:--}\`"$'\n'
done
TABLE+=$'\n'"First retry delays as the port program drew them (delay_ms of attempt 1, 100 ms slot: connections), last run:"$'\n\n'
for var in $V1 $V2; do
    TABLE+="- $COL $var: \`${D1[$var]:--}\`"$'\n'
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
