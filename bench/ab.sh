#!/usr/bin/env bash
# A/B of port programs on one receive stream, in the same run: the plain C
# client and each given port program read the same firehose stream, taking
# turns, RUNS times; medians and ratios to the plain client are printed (a
# markdown table; nothing is written to RESULTS.md). See bench/README.md.
#
#   bench/ab.sh NAME=PROGRAM ...     e.g. before=/tmp/ws_port.before after=priv/ws_port
#   RUNS=5 TRANSPORT=wss SIZE=65536 N=20000 bench/ab.sh ...
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
OUT="$HERE/out"
RUNS=${RUNS:-5}
TRANSPORT=${TRANSPORT:-wss}
SIZE=${SIZE:-65536}
N=${N:-20000}
[[ $# -ge 1 ]] || { echo "usage: bench/ab.sh NAME=PROGRAM ..." >&2; exit 2; }
for spec in "$@"; do
    [[ $spec == *=* && -x ${spec#*=} ]] || { echo "ab.sh: not NAME=PROGRAM (executable): $spec" >&2; exit 2; }
done
make -s -C "$HERE" build
. "$HERE/common.sh"
port=$WS_PORTNUM; [[ $TRANSPORT == wss ]] && port=$WSS_PORTNUM
url="$TRANSPORT://127.0.0.1:$port/?n=$N&size=$SIZE&type=binary"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $url" >&2

declare -A MB CPU BEAM
names=(plain)
for spec in "$@"; do names+=("${spec%%=*}"); done
for run in $(seq "$RUNS"); do
    line=$(timeout 120 "$OUT/plain_client" --quiet "$url" | grep '^msgs=') || line=
    MB[plain]+=" $(field "$line" mb_per_s)"
    echo "run $run plain: $line" >&2
    for spec in "$@"; do
        name=${spec%%=*}
        line=$(cd "$ROOT" && WS_PORT_PROGRAM=${spec#*=} timeout 120 escript "$HERE/recv_bench.escript" "$url" 2>/dev/null | grep '^msgs=') || line=
        MB[$name]+=" $(field "$line" mb_per_s)"
        CPU[$name]+=" $(field "$line" cpu_port)"
        BEAM[$name]+=" $(field "$line" cpu_beam)"
        echo "run $run $name: $line" >&2
    done
done

# shellcheck disable=SC2086
plain=$(median ${MB[plain]})
gb=$(awk -v n="$N" -v s="$SIZE" 'BEGIN{print n*s/1e9}')
echo
echo "$TRANSPORT $SIZE B, N=$N, median of $RUNS runs (MB/s; CPU seconds per GB of payload)"
echo
echo "| client | MB/s | of plain | port CPU s/GB | BEAM CPU s/GB | all MB/s runs |"
echo "|---|---:|---:|---:|---:|---|"
echo "| plain | $plain | 1.00 | | | ${MB[plain]# } |"
for name in "${names[@]:1}"; do
    # shellcheck disable=SC2086
    m=$(median ${MB[$name]}); c=$(median ${CPU[$name]}); b=$(median ${BEAM[$name]})
    awk -v n="$name" -v m="$m" -v p="$plain" -v c="$c" -v b="$b" -v g="$gb" -v all="${MB[$name]# }" \
        'BEGIN{printf "| %s | %s | %.2f | %.2f | %.2f | %s |\n", n, m, m/p, c/g, b/g, all}'
done
