/*
 * plain_client: the reference WebSocket reader for the benchmarks: what a
 * plain blocking C client gets out of this machine.
 *
 *   plain_client [--quiet] ws://127.0.0.1:PORT/PATH?QUERY
 *   plain_client [--quiet] wss://127.0.0.1:PORT/PATH?QUERY   (no verification)
 *
 * One blocking socket (plus OpenSSL for wss), the upgrade written and checked
 * by hand, then frames parsed in place in one read buffer: payload bytes are
 * counted, never copied. Whole messages (FIN) are counted. When the server's
 * close frame arrives, a masked close 1000 is sent back and the program
 * prints one line:
 *
 *   msgs=N bytes=B secs=S msgs_per_s=R mb_per_s=M cpu_user=U cpu_sys=Y close=C
 *
 * secs runs from the end of the handshake to the close frame; MB = 10^6
 * bytes of payload; cpu_* is getrusage(RUSAGE_SELF) over the whole run.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>

#define RBUF_SIZE (256 * 1024)

static int fd = -1;
static SSL *ssl;
static uint8_t rbuf[RBUF_SIZE];

static void die(const char *what)
{
    fprintf(stderr, "plain_client: %s\n", what);
    if (ssl)
        ERR_print_errors_fp(stderr);
    exit(1);
}

/* Blocking read of up to len bytes; returns > 0, or 0 on EOF. */
static size_t rd(uint8_t *p, size_t len)
{
    if (ssl) {
        size_t got = 0;
        if (SSL_read_ex(ssl, p, len, &got) == 1)
            return got;
        int e = SSL_get_error(ssl, 0);
        if (e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL)
            return 0;
        die("SSL_read failed");
    }
    for (;;) {
        ssize_t r = read(fd, p, len);
        if (r >= 0)
            return (size_t)r;
        if (errno != EINTR)
            die(strerror(errno));
    }
}

static void wr(const void *p, size_t len)
{
    const uint8_t *b = p;
    while (len) {
        size_t n = 0;
        if (ssl) {
            if (SSL_write_ex(ssl, b, len, &n) != 1)
                die("SSL_write failed");
        } else {
            ssize_t r = write(fd, b, len);
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                die(strerror(errno));
            }
            n = (size_t)r;
        }
        b += n;
        len -= n;
    }
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double tv(struct timeval t)
{
    return (double)t.tv_sec + (double)t.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
    int quiet = 0;
    const char *url = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quiet"))
            quiet = 1;
        else
            url = argv[i];
    }
    if (!url) {
        fprintf(stderr, "usage: plain_client [--quiet] ws[s]://host:port/path?query\n");
        return 2;
    }

    /* ---- URL: scheme://host:port/rest (no IPv6 literals; bench only) */
    int tls;
    const char *p;
    if (!strncmp(url, "ws://", 5)) {
        tls = 0;
        p = url + 5;
    } else if (!strncmp(url, "wss://", 6)) {
        tls = 1;
        p = url + 6;
    } else
        die("URL must start with ws:// or wss://");
    char host[256], port[16];
    const char *path = strchr(p, '/');
    if (!path)
        path = p + strlen(p);
    const char *colon = memchr(p, ':', (size_t)(path - p));
    const char *hend = colon ? colon : path;
    if (hend == p || (size_t)(hend - p) >= sizeof(host))
        die("bad host");
    memcpy(host, p, (size_t)(hend - p));
    host[hend - p] = 0;
    if (colon) {
        if ((size_t)(path - colon - 1) >= sizeof(port) || path == colon + 1)
            die("bad port");
        memcpy(port, colon + 1, (size_t)(path - colon - 1));
        port[path - colon - 1] = 0;
    } else
        strcpy(port, tls ? "443" : "80");
    if (!*path)
        path = "/";

    /* ---- TCP */
    struct addrinfo hints = {0}, *ai;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &ai))
        die("getaddrinfo failed");
    fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen))
        die("connect failed");
    freeaddrinfo(ai);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    /* ---- TLS, verification off */
    SSL_CTX *ctx = NULL;
    if (tls) {
        ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx)
            die("SSL_CTX_new failed");
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        ssl = SSL_new(ctx);
        if (!ssl)
            die("SSL_new failed");
        SSL_set_fd(ssl, fd);
        SSL_set_tlsext_host_name(ssl, host);
        if (SSL_connect(ssl) != 1)
            die("TLS handshake failed");
    }

    /* ---- upgrade */
    uint8_t rnd[16];
    char key[32], expect[64];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        die("RAND_bytes failed");
    EVP_EncodeBlock((unsigned char *)key, rnd, sizeof(rnd));
    {
        char cat[128];
        uint8_t dig[SHA_DIGEST_LENGTH];
        snprintf(cat, sizeof(cat), "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
        SHA1((const unsigned char *)cat, strlen(cat), dig);
        EVP_EncodeBlock((unsigned char *)expect, dig, sizeof(dig));
    }
    char req[8192];
    int rl = snprintf(req, sizeof(req),
                      "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n",
                      path, host, port, key);
    if (rl <= 0 || (size_t)rl >= sizeof(req))
        die("request too long");
    wr(req, (size_t)rl);

    size_t have = 0, hdr_end = 0;
    while (!hdr_end) {
        if (have == 16384)
            die("response headers too long");
        size_t n = rd(rbuf + have, 16384 - have);
        if (!n)
            die("EOF during handshake");
        size_t from = have > 3 ? have - 3 : 0;
        have += n;
        for (size_t i = from; i + 4 <= have; i++)
            if (!memcmp(rbuf + i, "\r\n\r\n", 4)) {
                hdr_end = i + 4;
                break;
            }
    }
    if (memcmp(rbuf, "HTTP/1.1 101", 12))
        die("server did not answer 101");
    {
        /* find Sec-WebSocket-Accept, case-insensitively */
        int ok = 0;
        const char *h = (const char *)rbuf;
        const char *end = h + hdr_end;
        while (h < end) {
            const char *eol = memchr(h, '\n', (size_t)(end - h));
            if (!eol)
                break;
            static const char name[] = "sec-websocket-accept:";
            if ((size_t)(eol - h) > sizeof(name) - 1 &&
                !strncasecmp(h, name, sizeof(name) - 1)) {
                const char *v = h + sizeof(name) - 1;
                while (*v == ' ')
                    v++;
                ok = !strncmp(v, expect, strlen(expect));
            }
            h = eol + 1;
        }
        if (!ok)
            die("bad Sec-WebSocket-Accept");
    }

    /* ---- frames */
    memmove(rbuf, rbuf + hdr_end, have - hdr_end);
    have -= hdr_end;
    size_t off = 0;
    uint64_t msgs = 0, bytes = 0, payload_left = 0;
    int in_data = 0, fin = 0, close_code = -1;
    double t0 = now(), t1 = 0;

    for (;;) {
        if (payload_left) {
            size_t avail = have - off;
            size_t take = avail < payload_left ? avail : (size_t)payload_left;
            off += take;
            bytes += take;
            payload_left -= take;
            if (!payload_left && fin)
                msgs++;
        }
        if (!payload_left && have - off >= 2) {
            const uint8_t *h = rbuf + off;
            size_t avail = have - off;
            int op = h[0] & 0x0f;
            int f = h[0] & 0x80;
            if (h[1] & 0x80)
                die("masked frame from server");
            uint64_t len = h[1] & 0x7f;
            size_t hl = 2;
            if (len == 126)
                hl = 4;
            else if (len == 127)
                hl = 10;
            if (avail >= hl) {
                if (hl == 4)
                    len = (uint64_t)h[2] << 8 | h[3];
                else if (hl == 10) {
                    len = 0;
                    for (int i = 0; i < 8; i++)
                        len = len << 8 | h[2 + i];
                }
                if (op >= 8) {
                    /* control frame: wait until it is whole */
                    if (avail >= hl + len) {
                        if (op == 8) {
                            t1 = now();
                            close_code = len >= 2 ? (h[hl] << 8 | h[hl + 1]) : 1005;
                            break;
                        }
                        /* ping/pong: ignored (the firehose sends none) */
                        off += hl + (size_t)len;
                        continue;
                    }
                } else {
                    if (op == 0 && !in_data)
                        die("continuation without a message");
                    in_data = !f;
                    fin = f;
                    off += hl;
                    payload_left = len;
                    if (!len && f)
                        msgs++;
                    continue;
                }
            }
        }
        /* need more bytes: keep a partial header, drop what is consumed */
        if (off == have)
            off = have = 0;
        else if (off) { /* at most a header or a control frame: small */
            memmove(rbuf, rbuf + off, have - off);
            have -= off;
            off = 0;
        }
        size_t n = rd(rbuf + have, RBUF_SIZE - have);
        if (!n) {
            t1 = now();
            break;
        }
        have += n;
    }

    if (close_code >= 0) {
        /* masked close 1000, mask 0: the payload bytes are sent as is */
        static const uint8_t cl[] = {0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8};
        wr(cl, sizeof(cl));
    }
    if (ssl)
        SSL_shutdown(ssl);
    close(fd);

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double secs = t1 - t0;
    printf("msgs=%llu bytes=%llu secs=%.4f msgs_per_s=%.0f mb_per_s=%.1f "
           "cpu_user=%.3f cpu_sys=%.3f close=%d\n",
           (unsigned long long)msgs, (unsigned long long)bytes, secs,
           secs > 0 ? (double)msgs / secs : 0.0,
           secs > 0 ? (double)bytes / secs / 1e6 : 0.0, tv(ru.ru_utime),
           tv(ru.ru_stime), close_code);
    if (!quiet)
        fprintf(stderr, "plain_client: %s done\n", url);
    if (ssl) {
        SSL_free(ssl);
        SSL_CTX_free(ctx);
    }
    return close_code == 1000 ? 0 : 1;
}
