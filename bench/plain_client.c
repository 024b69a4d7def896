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
 *
 *   plain_client --echo N [--size B] 'ws://127.0.0.1:P/?mode=echo'
 *   msgs=N size=B rtt_p50_us=.. rtt_p99_us=.. rtt_mean_us=.. cpu_user=.. cpu_sys=..
 *
 * one binary message of B bytes (default 100) in flight, N round trips
 * timed after N/10 (at least 100) warm-up ones, against firehose's echo mode.
 *
 *   plain_client --connect N 'ws://127.0.0.1:P/?mode=idle'
 *   conns=N secs=S conns_per_s=R cpu_user=.. cpu_sys=..
 *
 * N connections opened one after the other (TCP + TLS + upgrade) and kept
 * open until all are up, then closed.
 *
 *   plain_client --fanin N [--warm S] [--window S] 'ws://127.0.0.1:P/'
 *
 * N connections to bench/out/fanin_server read in one epoll loop: see
 * fanin_mode below.
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
#include <fcntl.h>
#include <sys/epoll.h>
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

/* Opens one connection (TCP, TLS when ctx, the upgrade): sets fd and ssl.
 * Returns the number of bytes after the response headers, left at the
 * start of rbuf. */
static size_t ws_open(const char *host, const char *port, const char *path, SSL_CTX *ctx)
{
    int tls = ctx != NULL;
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
    ssl = NULL;
    if (tls) {
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

    memmove(rbuf, rbuf + hdr_end, have - hdr_end);
    return have - hdr_end;
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void print_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf(" cpu_user=%.3f cpu_sys=%.3f\n", tv(ru.ru_utime), tv(ru.ru_stime));
}

/* --echo N: one binary message of size bytes in flight at a time, N times
 * (after N/10 warm-up round trips, not counted); the echo server sends each
 * one back. Prints the round-trip percentiles. */
static int echo_mode(uint64_t n, size_t size)
{
    uint64_t warm = n / 10 > 100 ? n / 10 : 100;
    size_t flen = 2 + (size < 126 ? 0 : size < 65536 ? 2 : 8) + 4 + size;
    uint8_t *f = calloc(1, flen);
    uint64_t *rtt = malloc(n * sizeof *rtt);
    if (!f || !rtt || size > RBUF_SIZE - 16)
        die("echo: bad size or out of memory");
    f[0] = 0x82;
    size_t hl = 2;
    if (size < 126)
        f[1] = (uint8_t)(0x80 | size);
    else if (size < 65536) {
        f[1] = 0x80 | 126;
        f[2] = (uint8_t)(size >> 8);
        f[3] = (uint8_t)size;
        hl = 4;
    } else {
        f[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            f[2 + i] = (uint8_t)((uint64_t)size >> (56 - 8 * i));
        hl = 10;
    }
    /* mask key 0: the payload goes as is */
    memset(f + hl + 4, 'e', size);
    for (uint64_t i = 0; i < warm + n; i++) {
        uint64_t t0 = now_ns();
        wr(f, flen);
        size_t have = 0, need = 2;
        for (;;) {
            while (have < need) {
                size_t r = rd(rbuf + have, RBUF_SIZE - have);
                if (!r)
                    die("echo: EOF");
                have += r;
            }
            uint64_t len = rbuf[1] & 0x7f;
            size_t h = len == 126 ? 4 : len == 127 ? 10 : 2;
            if (have < h) {
                need = h;
                continue;
            }
            if (len == 126)
                len = (uint64_t)rbuf[2] << 8 | rbuf[3];
            else if (len == 127)
                for (int k = 0; k < 8; k++)
                    len = (k ? len << 8 : 0) | rbuf[2 + k];
            if (have < h + len) {
                need = h + (size_t)len;
                continue;
            }
            if ((rbuf[0] & 0x0f) != 2 || len != size)
                die("echo: unexpected frame");
            break;
        }
        if (i >= warm)
            rtt[i - warm] = now_ns() - t0;
    }
    qsort(rtt, n, sizeof *rtt, cmp_u64);
    double sum = 0;
    for (uint64_t i = 0; i < n; i++)
        sum += (double)rtt[i];
    static const uint8_t cl[] = {0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8};
    wr(cl, sizeof(cl));
    printf("msgs=%llu size=%zu rtt_p50_us=%.1f rtt_p99_us=%.1f rtt_mean_us=%.1f",
           (unsigned long long)n, size, rtt[n / 2] / 1e3, rtt[n * 99 / 100] / 1e3,
           sum / (double)n / 1e3);
    print_cpu();
    return 0;
}

/* --connect N: N connections opened one after the other (TCP, TLS, upgrade)
 * and kept open; prints the rate, then closes them all. */
static int connect_mode(const char *host, const char *port, const char *path, SSL_CTX *ctx,
                        int n)
{
    int *fds = malloc((size_t)n * sizeof *fds);
    SSL **ssls = malloc((size_t)n * sizeof *ssls);
    if (!fds || !ssls)
        die("out of memory");
    double t0 = now();
    for (int i = 0; i < n; i++) {
        ws_open(host, port, path, ctx);
        fds[i] = fd;
        ssls[i] = ssl;
    }
    double secs = now() - t0;
    printf("conns=%d secs=%.4f conns_per_s=%.0f", n, secs, secs > 0 ? n / secs : 0.0);
    print_cpu();
    fflush(stdout);
    for (int i = 0; i < n; i++) {
        if (ssls[i])
            SSL_free(ssls[i]);
        close(fds[i]);
    }
    return 0;
}

/* ---- --fanin N: the plain side of the fan-in bench (bench/fanin_server.c):
 * N connections (opened non-blocking, at most 500 handshakes under way) in
 * one epoll loop, each receiving small binary messages that
 * start with the server's CLOCK_REALTIME send time (8 bytes, big-endian, ns)
 * and a per-connection sequence number (4 bytes). After the last connection
 * is up and WARM seconds, WINDOW seconds are measured: messages, sequence
 * gaps, latency (receive time - send time, both CLOCK_REALTIME, in a
 * histogram: 1 µs buckets below 2048 µs, 64 µs buckets above, the last one
 * open-ended at 264 ms) and this process's CPU (getrusage). Prints:
 *
 *   conns=N window_s=W msgs=M msgs_per_s=R gaps=G lat_p50_us=.. lat_p99_us=..
 *     lat_p999_us=.. lat_max_us=.. cpu_s=.. cpu_s_per_m=..
 *
 * (cpu_s_per_m: CPU seconds per million messages). Same histogram as
 * bench/fanin_bench.escript. */
#define HIST_N (2048 + 4096)
#define FPART_MAX 1024

struct fconn {
    int fd;
    uint32_t next_seq;
    uint16_t plen;
    uint8_t hs; /* 1 connecting, 2 upgrade sent, 0 open */
    uint8_t part[FPART_MAX];
};

static uint64_t hist[HIST_N], f_msgs, f_gaps, f_max_ns;
static int f_measure;

static uint64_t realtime_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static size_t hist_bucket(uint64_t ns)
{
    uint64_t us = ns / 1000;
    if (us < 2048)
        return (size_t)us;
    uint64_t b = 2048 + (us - 2048) / 64;
    return b < HIST_N ? (size_t)b : HIST_N - 1;
}

static double hist_value_us(size_t b)
{
    return b < 2048 ? (double)b : 2048.0 + (double)(b - 2048) * 64.0;
}

static double hist_pct(uint64_t total, double q)
{
    uint64_t want = (uint64_t)((double)total * q), acc = 0;
    for (size_t b = 0; b < HIST_N; b++) {
        acc += hist[b];
        if (acc > want)
            return hist_value_us(b);
    }
    return hist_value_us(HIST_N - 1);
}

/* Parses the frames in p[0..len) (after c->part): complete ones are
 * counted, the incomplete tail kept in c->part. */
static void fanin_consume(struct fconn *c, const uint8_t *p, size_t len, uint64_t now)
{
    static uint8_t scratch[RBUF_SIZE + FPART_MAX];
    if (c->plen) {
        if (len > RBUF_SIZE)
            die("fanin: read too large");
        memcpy(scratch, c->part, c->plen);
        memcpy(scratch + c->plen, p, len);
        p = scratch;
        len += c->plen;
        c->plen = 0;
    }
    size_t off = 0;
    for (;;) {
        if (len - off < 2)
            break;
        uint64_t plen = p[off + 1] & 0x7f;
        size_t h = plen == 126 ? 4 : plen == 127 ? 10 : 2;
        if (len - off < h)
            break;
        if (plen == 126)
            plen = (uint64_t)p[off + 2] << 8 | p[off + 3];
        else if (plen == 127)
            die("fanin: unexpected large frame");
        if (len - off < h + plen)
            break;
        const uint8_t *pl = p + off + h;
        int op = p[off] & 0x0f;
        if (op == 8)
            die("fanin: the server closed a connection");
        if (op == 2 && plen >= 12) {
            uint64_t ts = 0;
            uint32_t seq = 0;
            for (int i = 0; i < 8; i++)
                ts = ts << 8 | pl[i];
            for (int i = 8; i < 12; i++)
                seq = seq << 8 | pl[i];
            if (f_measure) {
                uint64_t lat = now > ts ? now - ts : 0;
                hist[hist_bucket(lat)]++;
                if (lat > f_max_ns)
                    f_max_ns = lat;
                f_msgs++;
                if (seq != c->next_seq)
                    f_gaps += seq - c->next_seq;
            }
            c->next_seq = seq + 1;
        }
        off += h + (size_t)plen;
    }
    if (len - off > FPART_MAX)
        die("fanin: frame too large");
    memcpy(c->part, p + off, len - off);
    c->plen = (uint16_t)(len - off);
}

/* Starts a non-blocking connect of cs[i] (127.0.0.1 or any IPv4 host). */
static void fanin_start(struct fconn *c, uint32_t i, const struct sockaddr *sa, socklen_t sl,
                        int ep)
{
    c->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0)
        die("fanin: socket failed");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, sa, sl) && errno != EINPROGRESS)
        die("fanin: connect failed");
    c->hs = 1;
    struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = i};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev))
        die("fanin: epoll_ctl failed");
}

/* A handshake step of c on an event: 1 when it is open now. */
static int fanin_handshake(struct fconn *c, uint32_t i, int ep, const char *req, size_t reql)
{
    if (c->hs == 1) { /* connected: send the upgrade (small: one write) */
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err || write(c->fd, req, reql) != (ssize_t)reql)
            die("fanin: connect or upgrade request failed");
        c->hs = 2;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        return 0;
    }
    ssize_t r = read(c->fd, c->part + c->plen, FPART_MAX - c->plen);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (r <= 0)
        die("fanin: EOF or error during the handshake");
    c->plen += (uint16_t)r;
    uint8_t *end = memmem(c->part, c->plen, "\r\n\r\n", 4);
    if (!end) {
        if (c->plen == FPART_MAX)
            die("fanin: response headers too long");
        return 0;
    }
    if (memcmp(c->part, "HTTP/1.1 101", 12))
        die("fanin: server did not answer 101");
    size_t hl = (size_t)(end + 4 - c->part), rest = c->plen - hl;
    memcpy(rbuf, c->part + hl, rest);
    c->plen = 0;
    c->hs = 0;
    fanin_consume(c, rbuf, rest, realtime_ns());
    return 1;
}

static int fanin_mode(const char *host, const char *port, const char *path, int n, double warm,
                      double window)
{
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl)) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    struct fconn *cs = calloc((size_t)n, sizeof *cs);
    int ep = epoll_create1(0);
    if (!cs || ep < 0)
        die("fanin: out of memory");
    struct addrinfo hints = {0}, *ai;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &ai))
        die("getaddrinfo failed");
    /* the connections: at most FANIN_WINDOW handshakes under way (as
     * fanin_bench.escript), read as they come up; the server's Accept key
     * is not checked (it is bench/fanin_server) */
    char req[1024];
    int reql = snprintf(req, sizeof(req),
                        "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n",
                        path, host, port);
    if (reql <= 0 || (size_t)reql >= sizeof(req))
        die("request too long");
    int started = 0, up = 0, pending = 0;
    struct epoll_event evs[512];
    while (up < n) {
        while (started < n && pending < 500) {
            fanin_start(&cs[started], (uint32_t)started, ai->ai_addr, ai->ai_addrlen, ep);
            started++;
            pending++;
        }
        int k = epoll_wait(ep, evs, 512, 1000);
        for (int i = 0; i < k; i++) {
            uint32_t ix = evs[i].data.u32;
            struct fconn *c = &cs[ix];
            if (c->hs) {
                if (fanin_handshake(c, ix, ep, req, (size_t)reql)) {
                    up++;
                    pending--;
                }
                continue;
            }
            ssize_t r = read(c->fd, rbuf, RBUF_SIZE);
            if (r == 0)
                die("fanin: EOF");
            if (r > 0)
                fanin_consume(c, rbuf, (size_t)r, realtime_ns());
        }
    }
    freeaddrinfo(ai);
    double t_start = now() + warm, t_end = t_start + window;
    struct rusage r0, r1;
    for (;;) {
        double t = now();
        if (!f_measure && t >= t_start) {
            getrusage(RUSAGE_SELF, &r0);
            f_measure = 1;
        }
        if (t >= t_end)
            break;
        int k = epoll_wait(ep, evs, 512, 50);
        for (int i = 0; i < k; i++) {
            struct fconn *c = &cs[evs[i].data.u32];
            ssize_t r = read(c->fd, rbuf, RBUF_SIZE);
            if (r == 0)
                die("fanin: EOF");
            if (r < 0) {
                if (errno == EAGAIN || errno == EINTR)
                    continue;
                die(strerror(errno));
            }
            fanin_consume(c, rbuf, (size_t)r, realtime_ns());
        }
    }
    getrusage(RUSAGE_SELF, &r1);
    double cpu = tv(r1.ru_utime) + tv(r1.ru_stime) - tv(r0.ru_utime) - tv(r0.ru_stime);
    printf("conns=%d window_s=%.1f msgs=%llu msgs_per_s=%.0f gaps=%llu lat_p50_us=%.0f "
           "lat_p99_us=%.0f lat_p999_us=%.0f lat_max_us=%.0f cpu_s=%.3f cpu_s_per_m=%.3f\n",
           n, window, (unsigned long long)f_msgs, (double)f_msgs / window,
           (unsigned long long)f_gaps, hist_pct(f_msgs, 0.5), hist_pct(f_msgs, 0.99),
           hist_pct(f_msgs, 0.999), (double)f_max_ns / 1e3, cpu,
           f_msgs ? cpu / ((double)f_msgs / 1e6) : 0.0);
    fflush(stdout);
    for (int i = 0; i < n; i++)
        close(cs[i].fd);
    return 0;
}

int main(int argc, char **argv)
{
    int quiet = 0, connect_n = 0, fanin_n = 0;
    double fanin_warm = 5, fanin_window = 20;
    uint64_t echo_n = 0;
    size_t echo_size = 100;
    const char *url = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quiet"))
            quiet = 1;
        else if (!strcmp(argv[i], "--echo") && i + 1 < argc)
            echo_n = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc)
            echo_size = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--connect") && i + 1 < argc)
            connect_n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--fanin") && i + 1 < argc)
            fanin_n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warm") && i + 1 < argc)
            fanin_warm = atof(argv[++i]);
        else if (!strcmp(argv[i], "--window") && i + 1 < argc)
            fanin_window = atof(argv[++i]);
        else
            url = argv[i];
    }
    if (!url) {
        fprintf(stderr, "usage: plain_client [--quiet] [--echo N [--size B] | --connect N | "
                        "--fanin N [--warm S] [--window S]] "
                        "ws[s]://host:port/path?query\n");
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

    SSL_CTX *ctx = NULL;
    if (tls) {
        ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx)
            die("SSL_CTX_new failed");
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    if (fanin_n) {
        if (tls)
            die("--fanin: ws:// only");
        return fanin_mode(host, port, path, fanin_n, fanin_warm, fanin_window);
    }
    if (connect_n)
        return connect_mode(host, port, path, ctx, connect_n);
    size_t have = ws_open(host, port, path, ctx);
    if (echo_n)
        return echo_mode(echo_n, echo_size);

    /* ---- frames */
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
