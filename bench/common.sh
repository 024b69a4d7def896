# Shared by bench/run.sh and bench/suite.sh (sourced; needs OUT set): a temp
# dir and cleanup of what was started, a self-signed certificate, the ws and
# wss firehose servers (WS_PORTNUM, WSS_PORTNUM), and small helpers.

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null

start_server() { # name args... -> sets SERVER_PORT
    local name=$1; shift
    "$OUT/firehose" "$@" >"$TMP/$name.port" 2>"$TMP/$name.log" &
    PIDS+=($!)
    SERVER_PORT=
    for _ in $(seq 100); do
        SERVER_PORT=$(awk '/^PORT /{print $2}' "$TMP/$name.port")
        [[ -n $SERVER_PORT ]] && break
        sleep 0.05
    done
}
start_server ws; WS_PORTNUM=$SERVER_PORT
start_server wss --tls "$TMP/cert.pem" "$TMP/key.pem"; WSS_PORTNUM=$SERVER_PORT
[[ -n "$WS_PORTNUM" && -n "$WSS_PORTNUM" ]] || { echo "$(basename "$0"): firehose did not start" >&2; exit 1; }

field() { # line key
    tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1==k{print $2}'
}
median() { # numbers...
    printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'
}
