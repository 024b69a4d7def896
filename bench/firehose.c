/*
 * firehose: a WebSocket server that streams pre-encoded frames as fast as the
 * client takes them. Benchmark peer for ws_port (see bench/README.md).
 *
 *   firehose [--port P] [--tls CERT KEY]
 *
 * Prints "PORT <n>" on stdout once listening (port 0, the default, lets the
 * kernel choose). Binds 127.0.0.1 only. Every connection chooses its stream
 * with the query string of the upgrade request:
 *
 *   ws://127.0.0.1:P/?n=1000000&size=100&type=binary
 *
 *   n     number of messages (default 1000)
 *   size  payload bytes per message (default 100, at most 64 MiB)
 *   type  binary | text (default binary; text payloads are ASCII)
 *
 * After n messages the server sends a close frame 1000 and waits for the
 * client's close. One line of statistics per connection goes to stderr.
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

struct session {
    uint8_t *buf;          /* nframes identical frames, back to back */
    size_t buflen;         /* nframes * framelen */
    size_t framelen;
    uint64_t nmsgs;
    size_t size;
    uint64_t remaining;    /* bytes still to send */
    size_t pos;            /* offset in buf of the next byte to send */
    int tls;
    int done;              /* all frames written, close under way */
    struct timespec t0, t1;
};

static volatile sig_atomic_t interrupted;

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
    unsigned long long n = 1000, size = 100;
    int opcode = 2;
    char *end;

    memset(s, 0, sizeof(*s));
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
    for (size_t f = 0; f < nframes; f++) {
        uint8_t *p = s->buf + f * s->framelen;
        memcpy(p, hdr, hl);
        for (size_t i = 0; i < size; i++)
            p[hl + i] = (uint8_t)('a' + (i % 26));
    }
    s->nmsgs = n;
    s->size = (size_t)size;
    s->remaining = (uint64_t)n * s->framelen;
    s->tls = lws_is_ssl(wsi);
    clock_gettime(CLOCK_MONOTONIC, &s->t0);
    return 0;
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
        if (s->pos == s->buflen)
            s->pos = 0;
        s->remaining -= wrote;
    }
    return s->remaining ? 0 : 1;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                    void *in, size_t len)
{
    struct session *s = user;
    (void)in;
    (void)len;

    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        if (session_init(wsi, s)) {
            fprintf(stderr, "firehose: bad query string\n");
            lws_close_reason(wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION,
                             (unsigned char *)"bad query", 9);
            return -1;
        }
        lws_callback_on_writable(wsi);
        break;

    case LWS_CALLBACK_SERVER_WRITEABLE: {
        if (s->done)
            break;
        int r = pump(wsi, s);
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
        }
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
    fprintf(stderr, "usage: firehose [--port P] [--tls CERT KEY] [--verbose]\n");
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
        } else if (!strcmp(argv[i], "--verbose"))
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

    while (!interrupted)
        if (lws_service(ctx, 0) < 0)
            break;

    lws_context_destroy(ctx);
    return 0;
}
