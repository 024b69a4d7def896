/*
 * firehose: a WebSocket server that streams pre-encoded frames as fast as the
 * client takes them. Benchmark peer for ws_port (see bench/README.md).
 *
 *   firehose [--port P] [--tls CERT KEY] [--progress MS] [--verbose]
 *
 * Prints "PORT <n>" on stdout once listening (port 0, the default, lets the
 * kernel choose). Binds 127.0.0.1 only. Every connection chooses what it
 * gets with the query string of the upgrade request:
 *
 *   ws://127.0.0.1:P/?n=1000000&size=100&type=binary
 *
 *   mode  stream (default): n messages of size bytes, as fast as the client
 *               takes them, then close 1000
 *         echo: every data message the client sends is sent back
 *         idle: nothing is sent; the connection stays open until the client
 *               closes it (memory per idle connection)
 *         sink: reads what the client sends; with seq=1 checks the sequence
 *               numbers and the pattern (see below)
 *   n     number of messages (stream; default 1000)
 *   size  payload bytes per message (stream, and what sink expects; default
 *         100, at most 64 MiB)
 *   type  binary | text (stream; default binary; text payloads are ASCII)
 *   seq   1: every payload is <<Seq:64/big, Pattern>>, Seq = 0, 1, 2, ...
 *         and byte k of Pattern is (Seq mod 251 + k) mod 251 (binary only,
 *         size >= 8). A reordered, lost or corrupted byte shows.
 *   slow_ms, slow_secs (sink): during the first slow_secs seconds, stop
 *         reading the socket for slow_ms ms after every chunk read (a slow
 *         server); then read at full speed
 *   tag   a label for the lines below (default: the connection's number)
 *
 * After n messages the server sends a close frame 1000 and waits for the
 * client's close. One line of statistics per connection goes to stderr, and
 * one to stdout when the connection ends:
 *
 *   DONE tag=T mode=M sent_msgs=N sent_bytes=B recv_msgs=N recv_bytes=B
 *        errors=E complete=0|1
 *
 * (errors: sequence or pattern mismatches seen by sink; complete: stream
 * wrote all n messages). With --progress MS, every MS milliseconds each
 * connection prints PROGRESS with the same fields (bytes written to the
 * socket, or read from it), so a test can see a stream stall.
 *
 * libwebsockets does the accept, the TLS handshake and the HTTP upgrade. The
 * data frames are built once into a buffer holding many frames and written
 * straight to the socket (write(2) on the non-blocking fd for ws, SSL_write
 * on the connection's SSL for wss), paced by lws_callback_on_writable.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#define MAX_PAYLOAD (64u * 1024u * 1024u)
#define TARGET_BUF (1024u * 1024u) /* pre-encoded buffer: 1 MiB measured
                                       * faster than 256 KiB and 2 MiB */
#define WRITES_PER_TURN 64        /* bound the time spent on one connection */
#define SEQ_MOD 251                /* pattern period of seq mode (prime) */

enum mode { M_STREAM, M_ECHO, M_IDLE, M_SINK };
static const char *const mode_names[] = {"stream", "echo", "idle", "sink"};

struct echo_msg { /* echo: one message waiting to be sent back */
    struct echo_msg *next;
    int binary;
    size_t len;
    uint8_t data[]; /* LWS_PRE bytes, then the payload */
};

struct session {
    struct session *prev, *next; /* every open session, for --progress */
    struct lws *wsi;
    enum mode mode;
    char tag[48];
    uint8_t *buf;          /* nframes frames, back to back */
    size_t buflen;         /* nframes * framelen */
    size_t framelen;
    size_t hdrlen;
    size_t nframes;
    uint64_t nmsgs;
    size_t size;
    uint64_t remaining;    /* bytes still to send */
    size_t pos;            /* offset in buf of the next byte to send */
    int seq;               /* seq mode */
    uint64_t next_seq;     /* stream: seq of the first frame of buf; sink:
                            * seq expected of the message being read */
    uint64_t sent_bytes, sent_msgs, recv_bytes, recv_msgs, errors;
    size_t msg_off;        /* sink/echo: bytes of the current message so far */
    uint8_t *rx;           /* echo: the message being assembled */
    size_t rx_cap;
    struct echo_msg *q_head, *q_tail;
    int tls;
    int done;              /* all frames written, close under way */
    int paused;            /* sink: reading stopped for slow_ms */
    unsigned slow_ms;
    double slow_until;     /* monotonic seconds */
    lws_sorted_usec_list_t sul; /* sink: resume reading */
    struct timespec t0, t1;
};

static volatile sig_atomic_t interrupted;
static struct session *sessions;
static unsigned long conn_counter;
static struct lws_context *g_ctx;
static lws_sorted_usec_list_t progress_sul;
static unsigned progress_ms;
static uint8_t *pattern;   /* SEQ_MOD + 64 MiB bytes: pattern[k] = k mod 251 */
static size_t pattern_len;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* pattern[] covers offsets up to need bytes past any start 0..250. */
static int ensure_pattern(size_t need)
{
    if (pattern_len >= need + SEQ_MOD)
        return 0;
    uint8_t *p = realloc(pattern, need + SEQ_MOD);
    if (!p)
        return -1;
    for (size_t k = pattern_len; k < need + SEQ_MOD; k++)
        p[k] = (uint8_t)(k % SEQ_MOD);
    pattern = p;
    pattern_len = need + SEQ_MOD;
    return 0;
}

/* Writes the seq-mode payload of message seq into p (size >= 8 bytes). */
static void seq_payload(uint8_t *p, uint64_t seq, size_t size)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(seq >> (56 - 8 * i));
    memcpy(p + 8, pattern + seq % SEQ_MOD, size - 8);
}

/* Expected byte at offset k of seq-mode message seq. */
static uint8_t seq_byte(uint64_t seq, size_t k)
{
    if (k < 8)
        return (uint8_t)(seq >> (56 - 8 * k));
    return pattern[seq % SEQ_MOD + (k - 8)];
}

static void print_stats(const char *what, const struct session *s)
{
    printf("%s tag=%s mode=%s sent_msgs=%llu sent_bytes=%llu recv_msgs=%llu "
           "recv_bytes=%llu errors=%llu complete=%d\n",
           what, s->tag, mode_names[s->mode], (unsigned long long)s->sent_msgs,
           (unsigned long long)s->sent_bytes, (unsigned long long)s->recv_msgs,
           (unsigned long long)s->recv_bytes, (unsigned long long)s->errors,
           s->mode == M_STREAM && s->done);
}

static void on_progress(lws_sorted_usec_list_t *sul)
{
    (void)sul;
    for (struct session *s = sessions; s; s = s->next)
        print_stats("PROGRESS", s);
    fflush(stdout);
    lws_sul_schedule(g_ctx, 0, &progress_sul, on_progress,
                     (lws_usec_t)progress_ms * LWS_US_PER_MS);
}

static void on_resume(lws_sorted_usec_list_t *sul)
{
    struct session *s = lws_container_of(sul, struct session, sul);
    s->paused = 0;
    lws_rx_flow_control(s->wsi, 1);
}

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static double elapsed(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static size_t frame_header(uint8_t *h, int opcode, uint64_t len)
{
    h[0] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        h[1] = (uint8_t)len;
        return 2;
    }
    if (len < 65536) {
        h[1] = 126;
        h[2] = (uint8_t)(len >> 8);
        h[3] = (uint8_t)len;
        return 4;
    }
    h[1] = 127;
    for (int i = 0; i < 8; i++)
        h[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 10;
}

/* Reads one query argument ("n=") as text into out; returns 1 if present. */
static int query_arg(struct lws *wsi, const char *name, char *out, int outlen)
{
    char tmp[128];
    const char *v = lws_get_urlarg_by_name(wsi, name, tmp, (int)sizeof(tmp));
    if (!v)
        return 0;
    snprintf(out, (size_t)outlen, "%s", v);
    return 1;
}

static int session_init(struct lws *wsi, struct session *s)
{
    char v[128];
    unsigned long long n = 1000, size = 100, seq = 0, slow_ms = 0, slow_secs = 0;
    int opcode = 2;
    char *end;

    memset(s, 0, sizeof(*s));
    s->wsi = wsi;
    s->tls = lws_is_ssl(wsi);
    snprintf(s->tag, sizeof(s->tag), "%lu", ++conn_counter);
    if (query_arg(wsi, "tag=", v, sizeof(v)))
        snprintf(s->tag, sizeof(s->tag), "%.47s", v);
    s->mode = M_STREAM;
    if (query_arg(wsi, "mode=", v, sizeof(v))) {
        int found = 0;
        for (int m = 0; m < 4; m++)
            if (!strcmp(v, mode_names[m])) {
                s->mode = (enum mode)m;
                found = 1;
            }
        if (!found)
            return -1;
    }
    if (query_arg(wsi, "seq=", v, sizeof(v)))
        seq = strtoull(v, NULL, 10);
    if (query_arg(wsi, "slow_ms=", v, sizeof(v)))
        slow_ms = strtoull(v, NULL, 10);
    if (query_arg(wsi, "slow_secs=", v, sizeof(v)))
        slow_secs = strtoull(v, NULL, 10);
    if (query_arg(wsi, "n=", v, sizeof(v))) {
        errno = 0;
        n = strtoull(v, &end, 10);
        if (errno || *end || end == v)
            return -1;
    }
    if (query_arg(wsi, "size=", v, sizeof(v))) {
        errno = 0;
        size = strtoull(v, &end, 10);
        if (errno || *end || end == v || size > MAX_PAYLOAD)
            return -1;
    }
    if (query_arg(wsi, "type=", v, sizeof(v))) {
        if (!strcmp(v, "text"))
            opcode = 1;
        else if (strcmp(v, "binary"))
            return -1;
    }

    if (seq && (opcode != 2 || size < 8))
        return -1;
    s->seq = seq != 0;
    s->size = (size_t)size;
    clock_gettime(CLOCK_MONOTONIC, &s->t0);
    if (s->seq && ensure_pattern((size_t)size))
        return -1;
    if (s->mode == M_SINK) {
        s->slow_ms = (unsigned)slow_ms;
        s->slow_until = now_s() + (double)slow_secs;
        return 0;
    }
    if (s->mode != M_STREAM)
        return 0;

    uint8_t hdr[10];
    size_t hl = frame_header(hdr, opcode, size);
    s->framelen = hl + (size_t)size;
    size_t nframes = TARGET_BUF / s->framelen;
    if (nframes < 1)
        nframes = 1;
    if (n && nframes > n)
        nframes = (size_t)n;
    if (nframes < 1)
        nframes = 1;
    s->buflen = nframes * s->framelen;
    s->buf = malloc(s->buflen);
    if (!s->buf)
        return -1;
    s->nframes = nframes;
    s->hdrlen = hl;
    for (size_t f = 0; f < nframes; f++) {
        uint8_t *p = s->buf + f * s->framelen;
        memcpy(p, hdr, hl);
        if (s->seq)
            seq_payload(p + hl, f, (size_t)size);
        else
            for (size_t i = 0; i < size; i++)
                p[hl + i] = (uint8_t)('a' + (i % 26));
    }
    s->nmsgs = n;
    s->remaining = (uint64_t)n * s->framelen;
    return 0;
}

/* seq mode: the whole buffer went out; number its frames for the next turn.
 * (Only then: a partial SSL_write retry must see the same bytes.) */
static void renumber(struct session *s)
{
    s->next_seq += s->nframes;
    for (size_t f = 0; f < s->nframes; f++)
        seq_payload(s->buf + f * s->framelen + s->hdrlen, s->next_seq + f, s->size);
}

/* Writes as much as the socket takes. Returns 0 to go on, 1 when all frames
 * are out, -1 on a socket error. */
static int pump(struct lws *wsi, struct session *s)
{
    SSL *ssl = s->tls ? (SSL *)lws_get_ssl(wsi) : NULL;
    int fd = (int)lws_get_socket_fd(wsi);

    for (int i = 0; i < WRITES_PER_TURN && s->remaining; i++) {
        size_t chunk = s->buflen - s->pos;
        if (chunk > s->remaining)
            chunk = (size_t)s->remaining;
        size_t wrote;
        if (ssl) {
            /* After SSL_ERROR_WANT_WRITE the retry must use the same buffer
             * and length: pos and remaining are unchanged, so it does. */
            int r = SSL_write(ssl, s->buf + s->pos, (int)chunk);
            if (r <= 0) {
                int e = SSL_get_error(ssl, r);
                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
                    return 0;
                fprintf(stderr, "firehose: SSL_write error %d\n", e);
                ERR_print_errors_fp(stderr);
                return -1;
            }
            wrote = (size_t)r;
        } else {
            ssize_t r = write(fd, s->buf + s->pos, chunk);
            if (r < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                    return 0;
                fprintf(stderr, "firehose: write: %s\n", strerror(errno));
                return -1;
            }
            wrote = (size_t)r;
        }
        s->pos += wrote;
        s->sent_bytes += wrote;
        if (s->pos == s->buflen) {
            s->pos = 0;
            if (s->seq)
                renumber(s);
        }
        s->remaining -= wrote;
    }
    return s->remaining ? 0 : 1;
}

static void unlink_session(struct session *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else if (sessions == s)
        sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
}

/* sink: one chunk of a message read from the client. */
static void sink_rx(struct session *s, const uint8_t *p, size_t len, int final)
{
    if (s->seq) {
        for (size_t i = 0; i < len; i++)
            if (p[i] != seq_byte(s->next_seq, s->msg_off + i)) {
                if (!s->errors)
                    fprintf(stderr, "firehose: sink %s: message %llu byte %zu is %u, "
                            "expected %u\n", s->tag, (unsigned long long)s->recv_msgs,
                            s->msg_off + i, p[i], seq_byte(s->next_seq, s->msg_off + i));
                s->errors++;
                break;
            }
    }
    s->msg_off += len;
    s->recv_bytes += len;
    if (final) {
        if (s->seq && s->msg_off != s->size) {
            if (!s->errors)
                fprintf(stderr, "firehose: sink %s: message %llu has %zu bytes, expected %zu\n",
                        s->tag, (unsigned long long)s->recv_msgs, s->msg_off, s->size);
            s->errors++;
        }
        s->recv_msgs++;
        s->next_seq++;
        s->msg_off = 0;
    }
    if (s->slow_ms && now_s() < s->slow_until) {
        s->paused = 1;
        lws_rx_flow_control(s->wsi, 0);
        lws_sul_schedule(g_ctx, 0, &s->sul, on_resume, (lws_usec_t)s->slow_ms * LWS_US_PER_MS);
    }
}

/* echo: one chunk of a message; a whole message is queued to go back. */
static int echo_rx(struct session *s, const uint8_t *p, size_t len, int final, int binary)
{
    if (s->msg_off + len > s->rx_cap) {
        size_t cap = s->rx_cap ? s->rx_cap : 4096;
        while (cap < s->msg_off + len)
            cap *= 2;
        uint8_t *n = realloc(s->rx, cap);
        if (!n)
            return -1;
        s->rx = n;
        s->rx_cap = cap;
    }
    memcpy(s->rx + s->msg_off, p, len);
    s->msg_off += len;
    s->recv_bytes += len;
    if (!final)
        return 0;
    struct echo_msg *m = malloc(sizeof(*m) + LWS_PRE + s->msg_off);
    if (!m)
        return -1;
    m->next = NULL;
    m->binary = binary;
    m->len = s->msg_off;
    memcpy(m->data + LWS_PRE, s->rx, s->msg_off);
    if (s->q_tail)
        s->q_tail->next = m;
    else
        s->q_head = m;
    s->q_tail = m;
    s->recv_msgs++;
    s->msg_off = 0;
    lws_callback_on_writable(s->wsi);
    return 0;
}

static int echo_tx(struct session *s)
{
    struct echo_msg *m = s->q_head;
    if (!m)
        return 0;
    int r = lws_write(s->wsi, m->data + LWS_PRE, m->len,
                      m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
    if (r < (int)m->len)
        return -1;
    s->sent_bytes += m->len;
    s->sent_msgs++;
    s->q_head = m->next;
    if (!s->q_head)
        s->q_tail = NULL;
    free(m);
    if (s->q_head)
        lws_callback_on_writable(s->wsi);
    return 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                    void *in, size_t len)
{
    struct session *s = user;

    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        if (session_init(wsi, s)) {
            fprintf(stderr, "firehose: bad query string\n");
            lws_close_reason(wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION,
                             (unsigned char *)"bad query", 9);
            return -1;
        }
        s->next = sessions;
        if (sessions)
            sessions->prev = s;
        sessions = s;
        if (s->mode == M_STREAM)
            lws_callback_on_writable(wsi);
        break;

    case LWS_CALLBACK_RECEIVE: {
        int final = lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi);
        if (s->mode == M_SINK)
            sink_rx(s, in, len, final);
        else if (s->mode == M_ECHO)
            return echo_rx(s, in, len, final, lws_frame_is_binary(wsi));
        break;
    }

    case LWS_CALLBACK_SERVER_WRITEABLE: {
        if (s->mode == M_ECHO)
            return echo_tx(s);
        if (s->mode != M_STREAM || s->done)
            break;
        int r = pump(wsi, s);
        s->sent_msgs = s->sent_bytes / s->framelen;
        if (r < 0)
            return -1;
        if (r == 0) {
            lws_callback_on_writable(wsi);
            break;
        }
        s->done = 1;
        clock_gettime(CLOCK_MONOTONIC, &s->t1);
        /* lws sends the close frame with this code and waits for the ack. */
        lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
        return -1;
    }

    case LWS_CALLBACK_CLOSED:
        if (s->wsi != wsi) /* session_init never ran */
            break;
        unlink_session(s);
        lws_sul_cancel(&s->sul);
        print_stats("DONE", s);
        fflush(stdout);
        if (s->buf) {
            if (!s->done)
                clock_gettime(CLOCK_MONOTONIC, &s->t1);
            double secs = elapsed(&s->t0, &s->t1);
            uint64_t sent = s->nmsgs - s->remaining / s->framelen;
            fprintf(stderr,
                    "firehose: %s n=%llu size=%zu sent=%llu %s in %.3f s "
                    "(%.0f msgs/s, %.1f MB/s)\n",
                    s->tls ? "wss" : "ws", (unsigned long long)s->nmsgs, s->size,
                    (unsigned long long)sent, s->done ? "complete" : "ABORTED",
                    secs, secs > 0 ? (double)sent / secs : 0.0,
                    secs > 0 ? (double)sent * (double)s->size / secs / 1e6 : 0.0);
            free(s->buf);
            s->buf = NULL;
        } else if (s->mode == M_SINK) {
            clock_gettime(CLOCK_MONOTONIC, &s->t1);
            fprintf(stderr, "firehose: sink %s: %llu msgs, %llu bytes, %llu errors in %.3f s\n",
                    s->tag, (unsigned long long)s->recv_msgs,
                    (unsigned long long)s->recv_bytes, (unsigned long long)s->errors,
                    elapsed(&s->t0, &s->t1));
        }
        while (s->q_head) {
            struct echo_msg *m = s->q_head;
            s->q_head = m->next;
            free(m);
        }
        s->q_tail = NULL;
        free(s->rx);
        s->rx = NULL;
        s->wsi = NULL;
        break;

    default:
        break;
    }
    return 0;
}

static const struct lws_protocols protocols[] = {
    {"firehose", callback, sizeof(struct session), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void usage(void)
{
    fprintf(stderr, "usage: firehose [--port P] [--tls CERT KEY] [--progress MS] [--verbose]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    struct lws_context_creation_info info;
    int port = 0, verbose = 0;
    const char *cert = NULL, *key = NULL;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tls") && i + 2 < argc) {
            cert = argv[++i];
            key = argv[++i];
        } else if (!strcmp(argv[i], "--progress") && i + 1 < argc)
            progress_ms = (unsigned)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--verbose"))
            verbose = 1;
        else
            usage();
    }

    lws_set_log_level(verbose ? (LLL_ERR | LLL_WARN | LLL_NOTICE) : LLL_ERR, NULL);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);

    memset(&info, 0, sizeof(info));
    info.port = port;
    info.iface = "127.0.0.1";
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    info.pt_serv_buf_size = 256 * 1024;
    if (cert) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = cert;
        info.ssl_private_key_filepath = key;
    }

    struct lws_context *ctx = lws_create_context(&info);
    if (!ctx) {
        fprintf(stderr, "firehose: lws_create_context failed\n");
        return 1;
    }
    struct lws_vhost *vh = lws_get_vhost_by_name(ctx, "default");
    int bound = vh ? lws_get_vhost_listen_port(vh) : -1;
    if (bound <= 0) {
        fprintf(stderr, "firehose: no listening port\n");
        lws_context_destroy(ctx);
        return 1;
    }
    printf("PORT %d\n", bound);
    fflush(stdout);
    g_ctx = ctx;
    if (progress_ms)
        lws_sul_schedule(ctx, 0, &progress_sul, on_progress,
                         (lws_usec_t)progress_ms * LWS_US_PER_MS);

    while (!interrupted)
        if (lws_service(ctx, 0) < 0)
            break;

    lws_context_destroy(ctx);
    return 0;
}
