#include "wsp_cli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ei.h>

#include "ws_codec.h"
#include "wsp_backoff.h"
#include "wsp_buf.h"
#include "wsp_conn.h"
#include "wsp_dns.h"
#include "wsp_lines.h"
#include "wsp_link.h"
#include "wsp_log.h"
#include "wsp_proto.h"
#include "wsp_text.h"
#include "wsp_tls.h"

#define CLI_ID 1u                       /* the one connection's id */
#define CLI_READ_CHUNK (64u * 1024)     /* bytes read from stdin per event */
#define CLI_OUT_FLUSH (256u * 1024)     /* stdout is written at this size */

struct cli_opts {
    int binary;        /* send lines as binary */
    int hex;           /* print binary messages as hex (else base64) */
    int echo;
    int quiet;
    int timestamps;
    uint64_t count;    /* 0 = unlimited */
    uint32_t ping_ms;  /* 0 = off */
    uint32_t drain_ms; /* at the end of stdin: quiet time before the close */
};

#define CLI_DEFAULT_DRAIN_MS 1000u
#define CLI_DRAIN_MAX_FACTOR 10  /* the close goes out at the latest 10 x drain after */

static struct {
    struct cli_opts o;
    struct wsp_backoff retry;   /* copy of the policy, to classify the end */
    char *url;                  /* for messages */
    struct wsp_watch in_watch;
    struct wsp_watch *in_w;
    struct wsp_lines line;      /* stdin bytes not yet sent (a partial line) */
    struct wsp_buf out;         /* stdout bytes not yet written */
    struct wsp_buf echo;        /* <<Opcode:8, Len:32, Payload>> to send back */
    lws_sorted_usec_list_t ping_sul;
    lws_sorted_usec_list_t defer_sul; /* runs run_deferred soon (from timers too) */
    lws_sorted_usec_list_t drain_sul; /* sends the close once the server is quiet */
    lws_usec_t drain_end;       /* the close goes out by then whatever comes */
    uint64_t received;
    uint64_t downs;             /* down events since the last up */
    int up;                     /* the handshake is done and not lost since */
    int reading;                /* stdin polled for input */
    int link_paused;            /* the connection's send queue is over its mark */
    int stdin_eof;
    int in_hup;                 /* lws dropped stdin on a hang-up: the rest is read from fd 0 */
    int draining;               /* stdin is over: waiting for replies, then close */
    int line_refused;           /* a stdin line was refused: no more are read */
    int closing;                /* we asked for the close */
    int close_pending;          /* close after this loop round (--count, output gone) */
    int out_broken;             /* stdout cannot be written any more */
    int done;
    int exit_code;
} C;

static volatile sig_atomic_t g_signal;

/* ---- output --------------------------------------------------------------- */

static void ev_vprint(int always, const char *fmt, va_list ap)
{
    if (C.o.quiet && !always) {
        return;
    }
    char line[1536];
    size_t n = 0;
    if (C.o.timestamps) {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
        int k = snprintf(line + n, sizeof line - n, ".%03ldZ ", ts.tv_nsec / 1000000);
        n += k > 0 ? (size_t)k : 0;
    }
    int k = snprintf(line + n, sizeof line - n, "ws_port: ");
    n += k > 0 ? (size_t)k : 0;
    k = vsnprintf(line + n, sizeof line - n, fmt, ap);
    n = k < 0 ? n : (n + (size_t)k >= sizeof line - 1 ? sizeof line - 2 : n + (size_t)k);
    line[n++] = '\n';
    line[n] = 0;
    fputs(line, stderr);
}

/* a connection event (silenced by --quiet) */
static void event(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void event(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ev_vprint(0, fmt, ap);
    va_end(ap);
}

/* a warning or error (always printed) */
static void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ev_vprint(1, fmt, ap);
    va_end(ap);
}

/* Writes everything buffered for stdout, waiting when it is full (a slow
 * reader of our stdout slows down the reading of the socket, not memory). */
static void out_flush(void)
{
    while (wsp_buf_pending(&C.out) > 0 && !C.out_broken) {
        ssize_t w = write(1, C.out.data + C.out.off, wsp_buf_pending(&C.out));
        if (w > 0) {
            wsp_buf_consume(&C.out, (size_t)w);
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {.fd = 1, .events = POLLOUT};
            (void)poll(&pfd, 1, 1000);
        } else {
            /* the reader is gone (EPIPE): nothing more can be shown */
            C.out_broken = 1;
            C.close_pending = 1;
        }
    }
    if (C.out_broken) {
        wsp_buf_consume(&C.out, wsp_buf_pending(&C.out));
    }
    wsp_buf_shrink(&C.out, 4 * CLI_OUT_FLUSH);
}

static void out_append(const void *p, size_t n)
{
    if (C.out_broken) {
        return;
    }
    if (wsp_buf_append(&C.out, p, n) < 0) {
        warn("out of memory for a %zu-byte message: not printed", n);
    }
}

static void out_base64(const uint8_t *p, size_t n)
{
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint8_t *d = wsp_buf_reserve(&C.out, (n + 2) / 3 * 4);
    if (!d) {
        warn("out of memory for a %zu-byte message: not printed", n);
        return;
    }
    size_t k = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = ((uint32_t)p[i] << 16) | ((uint32_t)p[i + 1] << 8) | p[i + 2];
        d[k++] = (uint8_t)A[v >> 18];
        d[k++] = (uint8_t)A[(v >> 12) & 63];
        d[k++] = (uint8_t)A[(v >> 6) & 63];
        d[k++] = (uint8_t)A[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        d[k++] = (uint8_t)A[v >> 18];
        d[k++] = (uint8_t)A[(v >> 12) & 63];
        d[k++] = '=';
        d[k++] = '=';
    } else if (n - i == 2) {
        uint32_t v = ((uint32_t)p[i] << 16) | ((uint32_t)p[i + 1] << 8);
        d[k++] = (uint8_t)A[v >> 18];
        d[k++] = (uint8_t)A[(v >> 12) & 63];
        d[k++] = (uint8_t)A[(v >> 6) & 63];
        d[k++] = '=';
    }
    wsp_buf_commit(&C.out, k);
}

static void out_hex(const uint8_t *p, size_t n)
{
    static const char H[] = "0123456789abcdef";
    if (n > SIZE_MAX / 2) {
        return;
    }
    uint8_t *d = wsp_buf_reserve(&C.out, 2 * n);
    if (!d) {
        warn("out of memory for a %zu-byte message: not printed", n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        d[2 * i] = (uint8_t)H[p[i] >> 4];
        d[2 * i + 1] = (uint8_t)H[p[i] & 15];
    }
    wsp_buf_commit(&C.out, 2 * n);
}

/* ---- events from the connection layer (through the wsp_link sink) ---------- */

struct reason {
    char kind[MAXATOMLEN_UTF8];  /* the atom, or the tuple's tag */
    long code;                   /* close code or HTTP status, -1 if none */
    char text[800];              /* human-readable, escaped */
};

/* snprintf that truncates silently (texts shown to a person) */
static void fmt(char *dst, size_t cap, const char *f, ...) __attribute__((format(printf, 3, 4)));
static void fmt(char *dst, size_t cap, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    (void)vsnprintf(dst, cap, f, ap);
    va_end(ap);
}

/* Decodes a binary (or an atom) at *i into out, NUL-terminated, truncated,
 * escaped for the terminal (wsp_text_escape). */
static int dec_text(const char *b, int *i, char *out, size_t cap)
{
    int type, size;
    out[0] = 0;
    if (ei_get_type(b, i, &type, &size) < 0) {
        return -1;
    }
    if (type == ERL_BINARY_EXT) {
        char *tmp = malloc((size_t)size + 1);
        long got = 0;
        if (!tmp || ei_decode_binary(b, i, tmp, &got) < 0) {
            free(tmp);
            return -1;
        }
        wsp_text_escape((const uint8_t *)tmp, (size_t)got, out, cap);
        free(tmp);
        return 0;
    }
    char atom[MAXATOMLEN_UTF8];
    if (ei_decode_atom(b, i, atom) == 0) {
        wsp_text_escape((const uint8_t *)atom, strlen(atom), out, cap);
        return 0;
    }
    return ei_skip_term(b, i);
}

static const char *atom_text(const char *a)
{
    static const struct {
        const char *atom, *text;
    } T[] = {
        {"econnrefused", "connection refused"},
        {"econnreset", "connection reset"},
        {"ehostunreach", "host unreachable"},
        {"enetunreach", "network unreachable"},
        {"timeout", "connect timeout"},
        {"eof", "connection closed without a close frame"},
        {"idle_timeout", "idle timeout: nothing received"},
        {"closed", "closed"},
    };
    for (size_t k = 0; k < sizeof T / sizeof T[0]; k++) {
        if (!strcmp(a, T[k].atom)) {
            return T[k].text;
        }
    }
    return a;
}

static int dec_reason(const char *b, int *i, struct reason *r)
{
    int type, size, arity;
    r->kind[0] = 0;
    r->code = -1;
    r->text[0] = 0;
    if (ei_get_type(b, i, &type, &size) < 0) {
        return -1;
    }
    if (type != ERL_SMALL_TUPLE_EXT && type != ERL_LARGE_TUPLE_EXT) {
        if (ei_decode_atom(b, i, r->kind) < 0) {
            return -1;
        }
        fmt(r->text, sizeof r->text, "%s (%s)", atom_text(r->kind), r->kind);
        return 0;
    }
    if (ei_decode_tuple_header(b, i, &arity) < 0 || arity < 2 || ei_decode_atom(b, i, r->kind) < 0) {
        return -1;
    }
    if (arity == 2 && !strcmp(r->kind, "proxy")) {
        /* {proxy, Atom | {http_status, S, H} | {Kind, Atom} | {Kind, Detail}} */
        struct reason in;
        int j = *i, t2, s2, a2;
        char k2[MAXATOMLEN_UTF8], a[MAXATOMLEN_UTF8];
        if (ei_get_type(b, &j, &t2, &s2) < 0) {
            return -1;
        }
        if (t2 == ERL_SMALL_TUPLE_EXT && ei_decode_tuple_header(b, &j, &a2) == 0 && a2 == 2 &&
            ei_decode_atom(b, &j, k2) == 0 && ei_decode_atom(b, &j, a) == 0) {
            *i = j;
            fmt(r->text, sizeof r->text, "proxy: %s %s", k2, a);
            return 0;
        }
        if (dec_reason(b, i, &in) < 0) {
            return -1;
        }
        r->code = in.code;
        fmt(r->text, sizeof r->text, "proxy: %s", in.text);
        return 0;
    }
    char detail[640]; /* a close reason (123 bytes) escaped: 4 x 123 */
    if (arity == 3 && !strcmp(r->kind, "http_status")) {
        if (ei_decode_long(b, i, &r->code) < 0 || ei_skip_term(b, i) < 0) {
            return -1;
        }
        fmt(r->text, sizeof r->text, "upgrade refused: HTTP %ld", r->code);
        return 0;
    }
    if (arity == 3) {
        if (ei_decode_long(b, i, &r->code) < 0 || dec_text(b, i, detail, sizeof detail) < 0) {
            return -1;
        }
        if (!strcmp(r->kind, "remote")) {
            fmt(r->text, sizeof r->text, "closed by the server with %ld%s%s%s", r->code,
                     *detail ? " \"" : "", detail, *detail ? "\"" : "");
        } else if (!strcmp(r->kind, "local")) {
            fmt(r->text, sizeof r->text, "closed with %ld%s%s%s", r->code,
                     *detail ? " \"" : "", detail, *detail ? "\"" : "");
        } else if (!strcmp(r->kind, "protocol_error")) {
            fmt(r->text, sizeof r->text, "protocol error: %s (closed with %ld)", detail,
                     r->code);
        } else {
            fmt(r->text, sizeof r->text, "%s %ld %s", r->kind, r->code, detail);
        }
        return 0;
    }
    if (dec_text(b, i, detail, sizeof detail) < 0) {
        return -1;
    }
    for (int k = 2; k < arity; k++) {
        if (ei_skip_term(b, i) < 0) {
            return -1;
        }
    }
    static const struct {
        const char *kind, *text;
    } T[] = {
        {"tls", "TLS failure"},         {"dns", "DNS lookup failed"},
        {"bad_handshake", "bad handshake"}, {"invalid_url", "invalid URL"},
        {"bad_option", "bad option"},   {"socket", "socket error"},
    };
    const char *what = r->kind;
    for (size_t k = 0; k < sizeof T / sizeof T[0]; k++) {
        if (!strcmp(r->kind, T[k].kind)) {
            what = T[k].text;
        }
    }
    fmt(r->text, sizeof r->text, "%s: %s", what, detail);
    return 0;
}

/* The failure class of a reason, as the connection layer classifies it. */
static unsigned reason_class(const struct reason *r)
{
    const char *k = r->kind;
    if (!strcmp(k, "remote")) return WSP_FC_REMOTE_CLOSE;
    if (!strcmp(k, "protocol_error")) return WSP_FC_PROTOCOL;
    if (!strcmp(k, "http_status")) return wsp_backoff_http_class((int)r->code);
    if (!strcmp(k, "proxy")) return r->code > 0 ? wsp_backoff_http_class((int)r->code) : WSP_FC_NETWORK;
    if (!strcmp(k, "bad_handshake")) return WSP_FC_HTTP_OTHER;
    if (!strcmp(k, "tls")) return WSP_FC_TLS;
    if (!strcmp(k, "timeout") || !strcmp(k, "idle_timeout")) return WSP_FC_TIMEOUT;
    if (!strcmp(k, "local") || !strcmp(k, "invalid_url") || !strcmp(k, "bad_option") ||
        !strcmp(k, "closed"))
        return 0;
    return WSP_FC_NETWORK;
}

/* The exit status for a final reason; was_up: the connection was open. */
static int reason_exit(const struct reason *r, int was_up)
{
    const char *k = r->kind;
    if (!strcmp(k, "local")) return WSP_EXIT_OK;
    int retried = !strcmp(k, "remote") ? wsp_backoff_retries_close(&C.retry, (unsigned)r->code)
                                       : wsp_backoff_retries(&C.retry, reason_class(r));
    if (C.downs > 0 && C.retry.enabled && retried)
        return WSP_EXIT_RETRIES;
    if (!strcmp(k, "remote"))
        return r->code == 1000 || r->code == 1005 ? WSP_EXIT_OK : WSP_EXIT_REMOTE_CODE;
    if (!strcmp(k, "protocol_error") || !strcmp(k, "bad_handshake")) return WSP_EXIT_PROTOCOL;
    if (!strcmp(k, "http_status")) return WSP_EXIT_UPGRADE;
    if (!strcmp(k, "tls")) return WSP_EXIT_TLS;
    if (!strcmp(k, "invalid_url") || !strcmp(k, "bad_option")) return WSP_EXIT_USAGE;
    if (!strcmp(k, "closed")) return WSP_EXIT_INTERNAL;
    if (was_up && (!strcmp(k, "eof") || !strcmp(k, "econnreset") || !strcmp(k, "idle_timeout") ||
                   !strcmp(k, "socket")))
        return WSP_EXIT_LOST;
    return WSP_EXIT_CONNECT;
}

static void on_defer(lws_sorted_usec_list_t *sul);
static void drain_rearm(void);

/* Work that must not run inside the connection layer's callbacks (sending,
 * closing) is done by run_deferred, from a 0-delay timer: events may come
 * from the connection's own timers, after which lws would go on polling. */
static void defer(void)
{
    wsp_loop_schedule(&C.defer_sul, on_defer, 0);
}

static void update_reading(void)
{
    int want = C.in_w && C.up && !C.closing && !C.stdin_eof && !C.link_paused;
    if (C.in_w && want != C.reading) {
        wsp_loop_want_read(C.in_w, want);
    }
    C.reading = want;
}

static void on_ping(lws_sorted_usec_list_t *sul)
{
    (void)sul;
    if (!C.up || C.closing || !C.o.ping_ms) {
        return;
    }
    static const char payload[] = "ws_port";
    wsp_conn_send(CLI_ID, WSC_OP_PING, (const uint8_t *)payload, sizeof payload - 1);
    wsp_loop_schedule(&C.ping_sul, on_ping, (lws_usec_t)C.o.ping_ms * 1000);
    wsp_conn_flush_all(); /* lws polls next, without returning to the main loop */
}

static void ev_up(const char *b, int *i)
{
    int arity;
    long status = 0;
    char proto[256] = "";
    if (ei_decode_map_header(b, i, &arity) == 0) {
        for (int k = 0; k < arity; k++) {
            char key[MAXATOMLEN_UTF8];
            if (ei_decode_atom(b, i, key) < 0) {
                break;
            }
            if (!strcmp(key, "status")) {
                (void)ei_decode_long(b, i, &status);
            } else if (!strcmp(key, "protocol")) {
                int type, size;
                if (ei_get_type(b, i, &type, &size) == 0 && type == ERL_BINARY_EXT) {
                    (void)dec_text(b, i, proto, sizeof proto);
                } else {
                    (void)ei_skip_term(b, i);
                }
            } else {
                (void)ei_skip_term(b, i);
            }
        }
    }
    C.up = 1;
    C.downs = 0;
    if (C.in_hup) {
        defer();
    }
    if (*proto) {
        event("connected to %s (HTTP %ld, subprotocol %s)", C.url, status, proto);
    } else {
        event("connected to %s (HTTP %ld)", C.url, status);
    }
    if (C.o.ping_ms && !C.closing) {
        wsp_loop_schedule(&C.ping_sul, on_ping, (lws_usec_t)C.o.ping_ms * 1000);
    }
    update_reading();
}

static void ev_down(const char *b, int *i)
{
    struct reason r;
    if (dec_reason(b, i, &r) < 0) {
        warn("undecodable down event");
        return;
    }
    long long attempt = 0, delay = -1, unsent = 0;
    int arity;
    if (ei_decode_map_header(b, i, &arity) == 0) {
        for (int k = 0; k < arity; k++) {
            char key[MAXATOMLEN_UTF8];
            long long v = -1;
            if (ei_decode_atom(b, i, key) < 0) {
                break;
            }
            if (ei_decode_longlong(b, i, &v) < 0) {
                (void)ei_skip_term(b, i);
            }
            if (!strcmp(key, "attempt")) attempt = v;
            else if (!strcmp(key, "delay_ms")) delay = v;
            else if (!strcmp(key, "unsent_bytes")) unsent = v;
        }
    }
    C.up = 0;
    C.downs++;
    lws_sul_cancel(&C.ping_sul);
    update_reading();
    char lost[64] = "";
    if (unsent > 0) {
        snprintf(lost, sizeof lost, ", %lld unsent bytes dropped", unsent);
    }
    event("disconnected: %s; retrying in %lld ms (attempt %lld%s)", r.text, delay, attempt, lost);
}

/* The run is over: the main loop exits at its next check. The event may
 * come from a timer (a DNS answer, the connect timeout, a retry), which lws
 * runs just before it polls in the same lws_service call: without a wake-up
 * that poll would sleep until lws' next own timer (30 s). */
static void finish_now(void)
{
    C.done = 1;
    lws_cancel_service(wsp_ctx);
}

static void ev_closed(const char *b, int *i)
{
    struct reason r;
    if (dec_reason(b, i, &r) < 0) {
        warn("undecodable closed event");
        C.exit_code = WSP_EXIT_INTERNAL;
        finish_now();
        return;
    }
    int code = reason_exit(&r, C.up);
    if (code == WSP_EXIT_RETRIES) {
        event("closed: %s; giving up after %llu %s", r.text, (unsigned long long)C.downs,
              C.downs == 1 ? "retry" : "retries");
    } else {
        event("closed: %s", r.text);
    }
    C.up = 0;
    lws_sul_cancel(&C.ping_sul);
    lws_sul_cancel(&C.drain_sul);
    update_reading();
    if (!C.exit_code) {
        C.exit_code = code;
    }
    finish_now();
}

static void sink_event(const uint8_t *term, size_t len)
{
    (void)len; /* encoded by wsp_proto, whole */
    const char *b = (const char *)term;
    int i = 0, ver, arity;
    char tag[MAXATOMLEN_UTF8];
    unsigned long id;
    if (ei_decode_version(b, &i, &ver) < 0 || ei_decode_tuple_header(b, &i, &arity) < 0 ||
        arity < 2 || ei_decode_atom(b, &i, tag) < 0 || ei_decode_ulong(b, &i, &id) < 0) {
        warn("undecodable event from the connection layer");
        return;
    }
    if (!strcmp(tag, "up") && arity == 3) {
        ev_up(b, &i);
    } else if (!strcmp(tag, "down") && arity == 4) {
        ev_down(b, &i);
    } else if (!strcmp(tag, "closed") && arity == 3) {
        ev_closed(b, &i);
    } else if (!strcmp(tag, "pong") && arity == 3) {
        long long rtt = 0;
        (void)ei_decode_longlong(b, &i, &rtt);
        event("pong: rtt %lld.%03lld ms", rtt / 1000, rtt % 1000);
    } else if (!strcmp(tag, "error") && arity == 3) {
        char what[MAXATOMLEN_UTF8] = "error", detail[640] = "";
        if (ei_decode_tuple_header(b, &i, &arity) == 0 && arity == 2) {
            (void)ei_decode_atom(b, &i, what);
            (void)dec_text(b, &i, detail, sizeof detail);
        }
        warn("error: %s: %s", what, detail);
    }
    /* passive and stats are not used here */
}

static void sink_data(uint32_t id, int opcode, const uint8_t *p, size_t n)
{
    (void)id;
    if (C.o.count && C.received >= C.o.count) {
        return; /* past --count: closing, not shown */
    }
    C.received++;
    if (opcode == WSC_OP_TEXT) {
        out_append(p, n);
    } else if (C.o.hex) {
        out_hex(p, n);
    } else {
        out_base64(p, n);
    }
    out_append("\n", 1);
    if (C.o.echo) {
        uint8_t hdr[5] = {(uint8_t)opcode, (uint8_t)(n >> 24), (uint8_t)(n >> 16),
                          (uint8_t)(n >> 8), (uint8_t)n};
        if (n > UINT32_MAX || wsp_buf_append(&C.echo, hdr, 5) < 0 ||
            wsp_buf_append(&C.echo, p, n) < 0) {
            warn("out of memory: a %zu-byte message not echoed", n);
        }
    }
    if (C.o.count && C.received == C.o.count) {
        C.close_pending = 1;
    }
    if (C.draining && !C.closing) {
        drain_rearm(); /* still talking: wait on */
    }
    if (C.o.echo || C.close_pending) {
        defer();
    }
    if (wsp_buf_pending(&C.out) >= CLI_OUT_FLUSH) {
        out_flush();
    }
}

static void sink_pause(int paused)
{
    C.link_paused = paused;
    update_reading();
}

/* ---- actions (run from the main loop, outside the connection's callbacks) - */

static void begin_close(void)
{
    if (C.closing || C.done) {
        return;
    }
    C.closing = 1;
    lws_sul_cancel(&C.ping_sul);
    update_reading();
    wsp_conn_close(CLI_ID, 1000, (const uint8_t *)"", 0);
}

static void on_drain(lws_sorted_usec_list_t *sul)
{
    (void)sul;
    begin_close();
    wsp_conn_flush_all();
}

/* (Re)arms the drain timer: the close goes out after drain_ms with nothing
 * received, and by drain_end at the latest (a server that never stops). */
static void drain_rearm(void)
{
    lws_usec_t left = C.drain_end - wsp_now();
    lws_usec_t quiet = (lws_usec_t)C.o.drain_ms * 1000;
    wsp_loop_schedule(&C.drain_sul, on_drain, left < quiet ? (left > 0 ? left : 0) : quiet);
}

/* No more lines will be sent (the end of stdin, a refused line): replies may
 * still be on their way, and many servers drop what they would send once
 * our close has arrived. So the close waits until the server has been quiet
 * for drain_ms; messages are printed until the server answers the close. */
static void start_drain(void)
{
    if (C.draining || C.closing || C.done) {
        return;
    }
    if (C.o.drain_ms == 0) {
        begin_close();
        return;
    }
    C.draining = 1;
    C.drain_end = wsp_now() + (lws_usec_t)C.o.drain_ms * 1000 * CLI_DRAIN_MAX_FACTOR;
    drain_rearm();
}

static void drain_hup(void);

static void run_deferred(void)
{
    if (g_signal && !C.closing) {
        C.exit_code = g_signal == SIGTERM ? WSP_EXIT_SIGTERM : WSP_EXIT_SIGINT;
        begin_close();
    }
    if (C.in_hup && C.up && !C.closing && !C.link_paused) {
        drain_hup();
    }
    while (wsp_buf_pending(&C.echo) >= 5) {
        const uint8_t *h = C.echo.data + C.echo.off;
        size_t n = ((size_t)h[1] << 24) | ((size_t)h[2] << 16) | ((size_t)h[3] << 8) | h[4];
        if (C.up && !C.closing) {
            wsp_conn_send(CLI_ID, h[0], h + 5, n);
        }
        wsp_buf_consume(&C.echo, 5 + n);
    }
    wsp_buf_shrink(&C.echo, 1024 * 1024);
    if (C.close_pending) {
        C.close_pending = 0;
        begin_close();
    }
}

static void on_defer(lws_sorted_usec_list_t *sul)
{
    (void)sul;
    run_deferred();
    wsp_conn_flush_all();
    out_flush();
}

/* ---- stdin ----------------------------------------------------------------- */

static void stop_stdin(void)
{
    C.stdin_eof = 1;
    update_reading();
    if (C.in_w) {
        C.in_w = NULL;
        wsp_loop_close(&C.in_watch);
    }
}

/* A line that cannot be sent ends the input: the lines before it were sent,
 * their replies are still printed (start_drain), then the program closes
 * and exits WSP_EXIT_INPUT. Nothing more is read, so --count cannot wait
 * for replies that will never come. */
static void refuse_line(const char *why)
{
    warn("stdin line %llu %s: not sent; closing", (unsigned long long)C.line.line_no, why);
    C.line_refused = 1;
    if (!C.exit_code) {
        C.exit_code = WSP_EXIT_INPUT;
    }
    stop_stdin();
    start_drain();
}

/* Sends the whole lines buffered (and at EOF the last one without its
 * newline). A line longer than --max-message-size is refused as soon as
 * that many bytes are buffered without a newline: the buffer stays bounded
 * by the limit plus one read (wsp_lines). */
static void send_lines(int at_eof)
{
    const uint8_t *p;
    size_t n;
    enum wsp_lines_result r;
    while (!C.line_refused && (r = wsp_lines_next(&C.line, at_eof, &p, &n)) != WSP_LINES_NONE) {
        if (r == WSP_LINES_LINE) {
            wsp_conn_send(CLI_ID, C.o.binary ? WSC_OP_BINARY : WSC_OP_TEXT, p, n);
        } else if (r == WSP_LINES_TOO_LONG) {
            char why[96];
            snprintf(why, sizeof why, "is longer than --max-message-size (%llu bytes)",
                     (unsigned long long)C.line.max);
            refuse_line(why);
        } else {
            refuse_line("is not valid UTF-8 (--binary sends lines as binary messages)");
        }
    }
}

static void stdin_ended(void)
{
    send_lines(1);
    stop_stdin();
    if (!C.o.echo && !C.o.count) {
        start_drain();
    }
}

/* After a hang-up every byte left is in the pipe already: read it all. */
static void drain_hup(void)
{
    C.in_hup = 0;
    for (;;) {
        uint8_t *dst = wsp_lines_reserve(&C.line, CLI_READ_CHUNK);
        if (!dst) {
            warn("out of memory reading stdin");
            break;
        }
        ssize_t r = read(0, dst, CLI_READ_CHUNK);
        if (r > 0) {
            wsp_lines_commit(&C.line, (size_t)r);
            send_lines(0);
            if (C.line_refused) {
                return;
            }
        } else if (r < 0 && errno == EINTR) {
            continue;
        } else {
            break;
        }
    }
    stdin_ended();
}

int wsp_cli_on_io(struct wsp_watch *w, enum wsp_io io)
{
    if (io == WSP_IO_CLOSED) {
        /* a hang-up (the writer of a pipe is gone), maybe before we read
         * anything: lws closed our duplicate, the pipe still holds the rest,
         * which drain_hup reads from fd 0 once the connection is open */
        C.in_w = NULL;
        C.reading = 0;
        if (!C.stdin_eof) {
            C.in_hup = 1;
        }
        return 0;
    }
    if (io != WSP_IO_READABLE || !C.reading) {
        return 0;
    }
    uint8_t *dst = wsp_lines_reserve(&C.line, CLI_READ_CHUNK);
    if (!dst) {
        warn("out of memory reading stdin");
        stdin_ended();
        return 0;
    }
    ssize_t r = read(wsp_loop_fd(w), dst, CLI_READ_CHUNK);
    if (r > 0) {
        wsp_lines_commit(&C.line, (size_t)r);
        send_lines(0);
    } else if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        if (r < 0) {
            warn("reading stdin: %s", strerror(errno));
        }
        stdin_ended();
    }
    return 0;
}

/* ---- arguments ------------------------------------------------------------- */

static void usage_body(FILE *f)
{
    fprintf(f,
        "ws_port connect URL [options]\n"
        "  Connects to URL (ws://HOST[:PORT]/PATH or wss://...). Each line read on\n"
        "  stdin is sent as one text message (without its newline); each message\n"
        "  received is printed on stdout on one line: text as is, binary as base64\n"
        "  (or hex). Connection events go to stderr (control characters in what the\n"
        "  server sent escaped as \\xNN). At the end of stdin, messages are still\n"
        "  printed until the server has been quiet for --drain ms; then the\n"
        "  connection is closed with 1000 and the program exits once it is closed.\n"
        "  Lines are read only while the connection is open. A line that is not\n"
        "  valid UTF-8 (without --binary) or is longer than --max-message-size is\n"
        "  not sent and ends the input (exit 10).\n"
        "\n"
        "  -H, --header 'Name: value'  extra request header (repeatable)\n"
        "  --subprotocol P             offer subprotocol P (repeatable)\n"
        "  --cacert FILE               CA certificates for the server (default: system store)\n"
        "  --cert FILE --key FILE      client certificate and its private key\n"
        "  --key-password SOURCE       the password of an encrypted --key (PEM or\n"
        "                              PKCS#8), as openssl's -passin: pass:TEXT,\n"
        "                              env:VAR or file:PATH (its first line)\n"
        "  --insecure                  do not verify the server's certificate (verify_none)\n"
        "  --server-name NAME          SNI and the name checked (default: the URL's host)\n"
        "  --proxy URL                 through a proxy: http://[user:pass@]host[:port]\n"
        "                              (CONNECT) or socks5://... (socks5h://: the same;\n"
        "                              the proxy resolves the URL's host)\n"
        "  --connect-timeout MS        DNS + TCP + TLS + upgrade (default 15000)\n"
        "  --ping-interval MS          ping every MS ms while open; prints the pong RTT\n"
        "  --idle-timeout MS           drop the connection after MS ms with nothing received\n"
        "  --compress[=P,P,...]        offer permessage-deflate; P: server_no_context_takeover,\n"
        "                              client_no_context_takeover, server_max_window_bits=N,\n"
        "                              client_max_window_bits=N, level=N, mem_level=N, threshold=N\n"
        "  --retry POLICY              reconnect on failure (default off):\n"
        "                                off\n"
        "                                constant:DELAY[:MAX_RETRIES]\n"
        "                                exponential:DELAY:MAX_DELAY[:FACTOR[:MAX_RETRIES]]\n"
        "                              milliseconds, +-10%% jitter, FACTOR default 2,\n"
        "                              MAX_RETRIES default infinity; retried: network\n"
        "                              failures, timeouts, HTTP 5xx and 429, protocol\n"
        "                              errors, server closes with 1001, 1011-1014 or\n"
        "                              no code (1000 and other codes end it)\n"
        "  --max-message-size N        larger messages received close with 1009; a\n"
        "                              longer stdin line is refused (default %llu)\n"
        "  --drain MS                  at the end of stdin, wait until nothing has come\n"
        "                              for MS ms (at most 10 x MS) before closing\n"
        "                              (default 1000; 0 closes at once)\n"
        "  --binary                    send stdin lines as binary messages\n"
        "  --binary-format base64|hex  how binary messages are printed (default base64)\n"
        "  --echo                      send every message received back, same type; the\n"
        "                              end of stdin does not close (a conformance testee)\n"
        "  --count N                   exit after N messages received (closing with 1000);\n"
        "                              the end of stdin does not close\n"
        "  -q, --quiet                 no connection events on stderr\n"
        "  --timestamps                events prefixed with the UTC time\n"
        "\n"
        "  Exit status:\n"
        "    0  closed normally: by us, or by the server with 1000 (or no code)\n"
        "    1  internal error\n"
        "    2  usage error (bad option or URL)\n"
        "    3  could not connect: refused, DNS, unreachable, connect timeout\n"
        "    4  TLS failure (handshake, certificate verification)\n"
        "    5  upgrade refused: the server answered with an HTTP status\n"
        "    6  protocol error: bad handshake response, RFC 6455 violation,\n"
        "       message over --max-message-size\n"
        "    7  --retry gave up: the last allowed attempt failed too\n"
        "    8  closed by the server with a code other than 1000\n"
        "    9  connection lost: no close frame, reset, idle timeout\n"
        "    10 a stdin line was refused: not valid UTF-8 (text), or longer than\n"
        "       --max-message-size (the lines before it were sent)\n"
        "    130, 143  interrupted by SIGINT, SIGTERM (the connection is closed\n"
        "       with 1000 first; a second signal exits at once)\n",
        (unsigned long long)WSP_DEFAULT_MAX_MESSAGE_SIZE);
}

void wsp_cli_usage(FILE *f)
{
    fprintf(f, "       ws_port connect URL [options]\n"
               "                          a WebSocket client for the command line\n\n");
    usage_body(f);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ws_port connect: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n(ws_port --help for the options)\n", stderr);
    va_end(ap);
    return -1;
}

static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+') {
        return -1;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi) {
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_u32_opt(const char *opt, const char *s, uint64_t lo, uint32_t *out)
{
    uint64_t v;
    if (parse_u64(s, lo, UINT32_MAX, &v) < 0) {
        return usage_error("%s needs an integer from %llu to %u, got '%s'", opt,
                           (unsigned long long)lo, UINT32_MAX, s);
    }
    *out = (uint32_t)v;
    return 0;
}

static int is_token(const char *s)
{
    if (!*s) {
        return 0;
    }
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch <= 32 || ch >= 127 || strchr("()<>@,;:\\\"/[]?={}", ch)) {
            return 0;
        }
    }
    return 1;
}

static int set_string(const char *opt, const char *v, char **dst)
{
    if (!*v) {
        return usage_error("%s needs a non-empty value", opt);
    }
    free(*dst);
    *dst = strdup(v);
    return *dst ? 0 : usage_error("out of memory");
}

/* memset through a volatile pointer: not optimised away */
static void *(*const volatile cli_wipe)(void *, int, size_t) = memset;

/* --key-password SOURCE, as openssl's -passin: pass:TEXT, env:VAR or
 * file:PATH (its first line, without the line end). The password itself is
 * never printed; pass:TEXT is wiped from our argv once copied (it shows in
 * ps until then: env: and file: do not). */
static int set_key_password(struct wsp_connect_opts *o, const char *val)
{
    char buf[WSP_MAX_PASSWORD_LEN + 2];
    const char *src;
    size_t len;
    if (!strncmp(val, "pass:", 5)) {
        src = val + 5;
        len = strlen(src);
    } else if (!strncmp(val, "env:", 4)) {
        if (!val[4]) {
            return usage_error("--key-password env: needs a variable name");
        }
        src = getenv(val + 4);
        if (!src) {
            return usage_error("--key-password: the environment variable %s is not set", val + 4);
        }
        len = strlen(src);
    } else if (!strncmp(val, "file:", 5)) {
        FILE *f = fopen(val + 5, "rb");
        if (!f) {
            return usage_error("--key-password: cannot open %s: %s", val + 5, strerror(errno));
        }
        len = fread(buf, 1, sizeof buf - 1, f);
        int bad = ferror(f);
        fclose(f);
        if (bad) {
            cli_wipe(buf, 0, sizeof buf);
            return usage_error("--key-password: cannot read %s", val + 5);
        }
        const char *nl = memchr(buf, '\n', len);
        if (nl) {
            len = (size_t)(nl - buf);
        } else if (len > WSP_MAX_PASSWORD_LEN) {
            len = WSP_MAX_PASSWORD_LEN + 1; /* too long: refused below */
        }
        if (len > 0 && buf[len - 1] == '\r') {
            len--;
        }
        src = buf;
    } else {
        /* the value is not quoted: it may be the password itself */
        return usage_error("--key-password needs pass:TEXT, env:VAR or file:PATH");
    }
    if (len == 0 || len > WSP_MAX_PASSWORD_LEN) {
        cli_wipe(buf, 0, sizeof buf);
        return usage_error("--key-password: the password must be 1 to %d bytes",
                           WSP_MAX_PASSWORD_LEN);
    }
    uint8_t *pw = malloc(len + 1);
    if (!pw) {
        cli_wipe(buf, 0, sizeof buf);
        return usage_error("out of memory");
    }
    memcpy(pw, src, len);
    pw[len] = 0;
    cli_wipe(buf, 0, sizeof buf);
    if (src == val + 5 && !strncmp(val, "pass:", 5)) {
        cli_wipe((char *)val + 5, 0, len); /* argv: the rest of ps' view */
    }
    if (o->password) {
        cli_wipe(o->password, 0, o->password_len);
        free(o->password);
    }
    o->password = pw;
    o->password_len = len;
    return 0;
}

static int add_header(struct wsp_connect_opts *o, const char *v)
{
    const char *colon = strchr(v, ':');
    if (!colon || colon == v) {
        return usage_error("-H needs 'Name: value', got '%s'", v);
    }
    size_t nl = (size_t)(colon - v);
    const char *val = colon + 1;
    while (*val == ' ' || *val == '\t') {
        val++;
    }
    char *name = strndup(v, nl);
    char *value = strdup(val);
    struct wsc_header *h = realloc(o->headers, (o->nheaders + 1) * sizeof *h);
    if (!name || !value || !h) {
        free(name);
        free(value);
        if (h) {
            o->headers = h;
        }
        return usage_error("out of memory");
    }
    o->headers = h;
    if (!is_token(name) || strpbrk(value, "\r\n")) {
        free(name);
        free(value);
        return usage_error("bad header '%s': the name must be a token and the value one line", v);
    }
    h[o->nheaders].name = name;
    h[o->nheaders].name_len = nl;
    h[o->nheaders].value = value;
    h[o->nheaders].value_len = strlen(value);
    o->nheaders++;
    return 0;
}

static int add_protocol(struct wsp_connect_opts *o, const char *v)
{
    if (!is_token(v)) {
        return usage_error("--subprotocol needs an HTTP token, got '%s'", v);
    }
    char **p = realloc(o->protocols, (o->nprotocols + 1) * sizeof *p);
    if (!p) {
        return usage_error("out of memory");
    }
    o->protocols = p;
    p[o->nprotocols] = strdup(v);
    if (!p[o->nprotocols]) {
        return usage_error("out of memory");
    }
    o->nprotocols++;
    return 0;
}

/* off | constant:DELAY[:MAX] | exponential:DELAY:MAX_DELAY[:FACTOR[:MAX]] */
static int parse_retry(const char *v, struct wsp_backoff *b)
{
    if (!strcmp(v, "off")) {
        b->enabled = 0;
        return 0;
    }
    char buf[128];
    if (strlen(v) >= sizeof buf) {
        return usage_error("--retry: policy too long");
    }
    strcpy(buf, v);
    char *f[6];
    int nf = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, ":", &save); t && nf < 6; t = strtok_r(NULL, ":", &save)) {
        f[nf++] = t;
    }
    int constant = nf >= 1 && !strcmp(f[0], "constant");
    int expo = nf >= 1 && !strcmp(f[0], "exponential");
    if ((!constant && !expo) || (constant && (nf < 2 || nf > 3)) ||
        (expo && (nf < 3 || nf > 5))) {
        return usage_error("--retry needs off, constant:DELAY[:MAX_RETRIES] or "
                           "exponential:DELAY:MAX_DELAY[:FACTOR[:MAX_RETRIES]], got '%s'", v);
    }
    wsp_backoff_default(b);
    b->jitter_mode = WSP_JITTER_SPREAD; /* one client: no fleet to spread */
    b->jitter = 0.1;
    uint64_t x;
    if (parse_u64(f[1], 0, UINT32_MAX, &x) < 0) {
        return usage_error("--retry: DELAY must be milliseconds, got '%s'", f[1]);
    }
    b->delay_ms = b->max_delay_ms = (uint32_t)x;
    const char *max = NULL;
    if (constant) {
        b->factor = 1.0;
        max = nf == 3 ? f[2] : NULL;
    } else {
        if (parse_u64(f[2], 0, UINT32_MAX, &x) < 0) {
            return usage_error("--retry: MAX_DELAY must be milliseconds, got '%s'", f[2]);
        }
        b->max_delay_ms = x < b->delay_ms ? b->delay_ms : (uint32_t)x;
        if (nf >= 4) {
            char *end;
            errno = 0;
            double fa = strtod(f[3], &end);
            if (errno || *end || !(fa >= 1.0 && fa <= 1000.0)) {
                return usage_error("--retry: FACTOR must be a number from 1 to 1000, got '%s'",
                                   f[3]);
            }
            b->factor = fa;
        }
        max = nf == 5 ? f[4] : NULL;
    }
    if (max && strcmp(max, "infinity") != 0) {
        if (parse_u64(max, 0, INT64_MAX, &x) < 0) {
            return usage_error("--retry: MAX_RETRIES must be an integer or infinity, got '%s'",
                               max);
        }
        b->max_retries = (int64_t)x;
    }
    return 0;
}

enum {
    O_HEADER = 1, O_SUBPROTO, O_CACERT, O_CERT, O_KEY, O_INSECURE, O_SERVER_NAME,
    O_PING, O_IDLE, O_CONNECT_TIMEOUT, O_RETRY, O_MAX_MSG, O_BINARY, O_BIN_FORMAT,
    O_ECHO, O_COUNT, O_QUIET, O_TIMESTAMPS, O_HELP, O_DRAIN, O_COMPRESS, O_PROXY,
    O_KEY_PASSWORD,
};

static const struct {
    const char *name;
    int has_arg;
    int id;
} OPTS[] = {
    {"-H", 1, O_HEADER},           {"--header", 1, O_HEADER},
    {"--subprotocol", 1, O_SUBPROTO}, {"--cacert", 1, O_CACERT},
    {"--cert", 1, O_CERT},         {"--key", 1, O_KEY},
    {"--key-password", 1, O_KEY_PASSWORD},
    {"--insecure", 0, O_INSECURE}, {"--server-name", 1, O_SERVER_NAME},
    {"--ping-interval", 1, O_PING}, {"--idle-timeout", 1, O_IDLE},
    {"--connect-timeout", 1, O_CONNECT_TIMEOUT}, {"--retry", 1, O_RETRY},
    {"--max-message-size", 1, O_MAX_MSG}, {"--binary", 0, O_BINARY},
    {"--binary-format", 1, O_BIN_FORMAT}, {"--echo", 0, O_ECHO},
    {"--count", 1, O_COUNT},       {"-q", 0, O_QUIET},
    {"--quiet", 0, O_QUIET},       {"--timestamps", 0, O_TIMESTAMPS},
    {"--help", 0, O_HELP},         {"-h", 0, O_HELP},
    {"--drain", 1, O_DRAIN},       {"--proxy", 1, O_PROXY},
    {"--compress", 2, O_COMPRESS}, /* 2: a value only as --compress=... */
};

/* 0 ok, 1 help shown, -1 usage error (reported). */
static int parse_args(int argc, char **argv, struct wsp_connect_opts *o, struct cli_opts *co)
{
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (arg[0] != '-' || !strcmp(arg, "-")) {
            if (o->url) {
                return usage_error("one URL only (got '%s' and '%s')", o->url, arg);
            }
            o->url = strdup(arg);
            if (!o->url) {
                return usage_error("out of memory");
            }
            o->url_len = strlen(arg);
            continue;
        }
        const char *val = NULL;
        size_t nlen = strlen(arg);
        const char *eq = !strncmp(arg, "--", 2) ? strchr(arg, '=') : NULL;
        if (eq) {
            nlen = (size_t)(eq - arg);
            val = eq + 1;
        } else if (!strncmp(arg, "-H", 2) && arg[2]) {
            nlen = 2;
            val = arg + 2;
        }
        int id = 0, has_arg = 0;
        for (size_t k = 0; k < sizeof OPTS / sizeof OPTS[0]; k++) {
            if (strlen(OPTS[k].name) == nlen && !strncmp(OPTS[k].name, arg, nlen)) {
                id = OPTS[k].id;
                has_arg = OPTS[k].has_arg;
                break;
            }
        }
        if (!id) {
            return usage_error("unknown option '%s'", arg);
        }
        if (has_arg == 1 && !val) {
            if (a + 1 >= argc) {
                return usage_error("%s needs a value", arg);
            }
            val = argv[++a];
        } else if (!has_arg && val) {
            return usage_error("%.*s takes no value", (int)nlen, arg);
        }
        uint64_t x;
        int r = 0;
        switch (id) {
        case O_HEADER: r = add_header(o, val); break;
        case O_SUBPROTO: r = add_protocol(o, val); break;
        case O_CACERT: r = set_string("--cacert", val, &o->cacertfile); break;
        case O_CERT: r = set_string("--cert", val, &o->certfile); break;
        case O_KEY: r = set_string("--key", val, &o->keyfile); break;
        case O_KEY_PASSWORD: r = set_key_password(o, val); break;
        case O_SERVER_NAME: r = set_string("--server-name", val, &o->server_name); break;
        case O_INSECURE: o->verify = 0; break;
        case O_PROXY: {
            const char *perr = NULL;
            wsp_proxy_conf_free(&o->proxy);
            if (wsp_proxy_parse_url(val, &o->proxy, &perr) < 0) {
                return usage_error("--proxy: %s", perr); /* never the URL: credentials */
            }
            break;
        }
        case O_PING: r = parse_u32_opt("--ping-interval", val, 0, &co->ping_ms); break;
        case O_DRAIN: r = parse_u32_opt("--drain", val, 0, &co->drain_ms); break;
        case O_IDLE: r = parse_u32_opt("--idle-timeout", val, 0, &o->idle_timeout_ms); break;
        case O_CONNECT_TIMEOUT:
            r = parse_u32_opt("--connect-timeout", val, 1, &o->connect_timeout_ms);
            break;
        case O_RETRY: r = parse_retry(val, &o->retry); break;
        case O_MAX_MSG:
            if (parse_u64(val, 1, UINT64_MAX, &x) < 0) {
                return usage_error("--max-message-size needs a positive integer, got '%s'", val);
            }
            o->max_message_size = x;
            break;
        case O_BINARY: co->binary = 1; break;
        case O_BIN_FORMAT:
            if (!strcmp(val, "hex")) {
                co->hex = 1;
            } else if (!strcmp(val, "base64")) {
                co->hex = 0;
            } else {
                return usage_error("--binary-format needs base64 or hex, got '%s'", val);
            }
            break;
        case O_ECHO: co->echo = 1; break;
        case O_COUNT:
            if (parse_u64(val, 1, UINT64_MAX, &x) < 0) {
                return usage_error("--count needs a positive integer, got '%s'", val);
            }
            co->count = x;
            break;
        case O_QUIET: co->quiet = 1; break;
        case O_TIMESTAMPS: co->timestamps = 1; break;
        case O_HELP: return 1;
        case O_COMPRESS: {
            char e[128];
            if (wsp_pmd_config_parse(val ? val : "", &o->compress, e, sizeof e) < 0) {
                return usage_error("--compress: %s", e);
            }
            break;
        }
        }
        if (r < 0) {
            return -1;
        }
    }
    if (!o->url) {
        return usage_error("a URL is needed (ws://... or wss://...)");
    }
    if (strncmp(o->url, "ws://", 5) != 0 && strncmp(o->url, "wss://", 6) != 0) {
        return usage_error("the URL must start with ws:// or wss://, got '%s'", o->url);
    }
    if (!o->certfile != !o->keyfile) {
        return usage_error("--cert and --key go together");
    }
    if (o->password && !o->keyfile) {
        return usage_error("--key-password goes with --cert and --key");
    }
    return 0;
}

/* ---- main ------------------------------------------------------------------ */

static void on_signal(int sig)
{
    if (g_signal) {
        _exit(sig == SIGTERM ? WSP_EXIT_SIGTERM : WSP_EXIT_SIGINT);
    }
    g_signal = sig;
}

static void cli_lws_log(int level, const char *line)
{
    (void)level;
    if (wsp_log_level >= 1) {
        fprintf(stderr, "ws_port lws: %s", line);
    }
}

int wsp_cli_main(int argc, char **argv)
{
    struct wsp_connect_opts *o = calloc(1, sizeof *o);
    if (!o) {
        return WSP_EXIT_INTERNAL;
    }
    /* the defaults wsp_proto gives a connect command; retry off */
    o->connect_timeout_ms = WSP_DEFAULT_CONNECT_TIMEOUT_MS;
    o->max_message_size = WSP_DEFAULT_MAX_MESSAGE_SIZE;
    o->active = WSP_ACTIVE_TRUE;
    o->verify = 1;
    wsp_backoff_default_retry_on(&o->retry);
    memset(&C, 0, sizeof C);
    C.o.drain_ms = CLI_DEFAULT_DRAIN_MS;
    int r = parse_args(argc, argv, o, &C.o);
    if (r != 0) {
        wsp_connect_opts_free(o);
        if (r > 0) {
            printf("usage: ws_port connect URL [options]\n\n");
            usage_body(stdout);
            return WSP_EXIT_OK;
        }
        return WSP_EXIT_USAGE;
    }
    C.retry = o->retry;
    wsp_lines_init(&C.line, o->max_message_size, C.o.binary, 4 * CLI_READ_CHUNK);
    C.url = strdup(o->url);
    if (!C.url) {
        wsp_connect_opts_free(o);
        return WSP_EXIT_INTERNAL;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: poll returns at once */
    sigemptyset(&sa.sa_mask);
    static const int sigs[] = {SIGINT, SIGTERM};
    for (size_t k = 0; k < 2; k++) {
        struct sigaction old;
        /* a signal ignored by whoever started us (nohup, sh &) stays ignored */
        if (sigaction(sigs[k], NULL, &old) == 0 && old.sa_handler != SIG_IGN) {
            sigaction(sigs[k], &sa, NULL);
        }
    }

    lws_set_log_level(LLL_ERR, cli_lws_log);
    /* one connection: poll(2) is as good as epoll, copes with any stdin (a
     * file, /dev/null) and returns at once on a signal */
    if (wsp_loop_init(WSP_LOOP_POLL) < 0) {
        ERR("cannot create the event loop");
        wsp_connect_opts_free(o);
        free(C.url);
        return WSP_EXIT_INTERNAL;
    }
    if (wsp_dns_init() < 0) {
        ERR("cannot start the DNS resolver (c-ares)");
        wsp_loop_destroy();
        wsp_connect_opts_free(o);
        free(C.url);
        return WSP_EXIT_INTERNAL;
    }
    struct wsp_link_sink sink = {
        .on_event = sink_event,
        .on_data = sink_data,
        .on_pause_input = sink_pause,
    };
    wsp_link_set_sink(&sink);

    /* stdin stays blocking (it may share its open file with the terminal's
     * stdout); one read per readable event never blocks. lws closes what it
     * adopts: give it a duplicate. */
    C.in_watch.kind = WSP_W_CLI;
    int in_fd = fcntl(0, F_DUPFD_CLOEXEC, 3);
    if (in_fd >= 0) {
        C.in_w = wsp_loop_adopt(in_fd, &C.in_watch);
    }
    if (C.in_w) {
        wsp_loop_want_read(C.in_w, 0);
    } else {
        C.stdin_eof = 1; /* no stdin: behave as at its end once connected */
    }

    wsp_conn_connect(CLI_ID, o); /* owns o now */
    while (!C.done) {
        if (C.stdin_eof && !C.closing && C.up && !C.o.echo && !C.o.count) {
            start_drain();
        }
        run_deferred();
        wsp_conn_flush_all();
        out_flush();
        if (C.done || wsp_loop_run_once() < 0) {
            break;
        }
        run_deferred();
        wsp_conn_flush_all();
        out_flush();
    }
    if (!C.done) {
        C.exit_code = WSP_EXIT_INTERNAL;
    }
    out_flush();
    lws_sul_cancel(&C.ping_sul);
    lws_sul_cancel(&C.defer_sul);
    lws_sul_cancel(&C.drain_sul);
    wsp_conn_free_all();
    if (C.in_w) {
        C.in_w = NULL;
        wsp_loop_close(&C.in_watch);
    }
    wsp_dns_shutdown();
    wsp_loop_destroy();
    wsp_tls_free_all();
    wsp_link_set_sink(NULL);
    wsp_lines_free(&C.line);
    wsp_buf_free(&C.out);
    wsp_buf_free(&C.echo);
    free(C.url);
    return C.exit_code;
}
