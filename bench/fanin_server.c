/*
 * fanin_server: the server of the fan-in benchmark (bench/suite.sh, bench
 * "fanin"). Many WebSocket connections, each receiving RATE small binary
 * messages per second, paced evenly over time (a timer every TICK_US
 * microseconds sends the messages due since the last tick, round-robin over
 * the open connections), not in bursts.
 *
 *   fanin_server [--rate R] [--size B] [--tick-us T]
 *
 * R messages per second per open connection (default 10), B payload bytes
 * (default 200, at least 16), a tick every T µs (default 250). Listens on
 * 127.0.0.1, port chosen by the kernel, printed on stdout as "PORT n". Any
 * GET with a valid WebSocket upgrade is accepted (path ignored); the server
 * starts sending right after its 101 response.
 *
 * Each message is one unmasked binary frame; its payload starts with
 *   8 bytes  CLOCK_REALTIME at the send, ns, big-endian
 *   4 bytes  the connection's sequence number (0, 1, ...), big-endian
 * then 'x' up to B bytes. A message that does not fit in the socket's send
 * buffer (the client does not keep up) is dropped, its sequence number
 * skipped: a gap the client sees. Reads and discards what the clients send;
 * a close frame or EOF closes the connection. Every 5 s a line on stderr:
 *   t=S open=N sent=M dropped=D lagged=L behind_max=K
 * (behind_max: the most messages that were due at once at one tick; when
 * the server itself falls behind, at most 10 ms worth is sent at once and
 * the rest is not sent at all: lagged, no gap in the sequence, a lower
 * rate the client sees).
 *
 * Plain TCP only. Linux (epoll, timerfd).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#define HS_MAX 4096

struct conn {
    int fd;
    int open_ix;       /* index in opens[], -1 while in the handshake */
    uint32_t seq;
    uint16_t hs_len;
    uint16_t pend_len; /* unsent rest of a partly written frame */
    uint8_t *hs;       /* handshake request buffer, freed once open */
    uint8_t *pend;
};

static struct conn **opens;
static size_t n_open, cap_open, cursor;
static size_t msg_size = 200;
static uint8_t *frame;
static size_t frame_len;
static uint64_t sent, dropped, lagged;
static int ep;

static void die(const char *what)
{
    fprintf(stderr, "fanin_server: %s: %s\n", what, strerror(errno));
    exit(1);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void conn_close(struct conn *c)
{
    if (c->open_ix >= 0) {
        size_t i = (size_t)c->open_ix;
        opens[i] = opens[--n_open];
        opens[i]->open_ix = (int)i;
        if (cursor >= n_open)
            cursor = 0;
    }
    close(c->fd);
    free(c->hs);
    free(c->pend);
    free(c);
}

static int write_all(int fd, const void *p, size_t len)
{
    const uint8_t *b = p;
    while (len) {
        ssize_t r = write(fd, b, len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        b += r;
        len -= (size_t)r;
    }
    return 0;
}

/* The request is complete in c->hs: answers 101 and opens the connection,
 * or closes it. */
static void handshake(struct conn *c)
{
    static const char name[] = "sec-websocket-key:";
    char key[64] = {0};
    const char *h = (const char *)c->hs, *end = h + c->hs_len;
    while (h < end) {
        const char *eol = memchr(h, '\n', (size_t)(end - h));
        if (!eol)
            break;
        if ((size_t)(eol - h) > sizeof(name) - 1 && !strncasecmp(h, name, sizeof(name) - 1)) {
            const char *v = h + sizeof(name) - 1;
            while (*v == ' ')
                v++;
            size_t n = 0;
            while (v + n < eol && v[n] != '\r' && v[n] != ' ' && n < sizeof(key) - 1)
                n++;
            memcpy(key, v, n);
        }
        h = eol + 1;
    }
    if (!key[0]) {
        conn_close(c);
        return;
    }
    char cat[128], acc[64];
    uint8_t dig[SHA_DIGEST_LENGTH];
    snprintf(cat, sizeof(cat), "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
    SHA1((const unsigned char *)cat, strlen(cat), dig);
    EVP_EncodeBlock((unsigned char *)acc, dig, sizeof(dig));
    char resp[256];
    int rl = snprintf(resp, sizeof(resp),
                      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                      acc);
    if (write_all(c->fd, resp, (size_t)rl)) {
        conn_close(c);
        return;
    }
    free(c->hs);
    c->hs = NULL;
    if (n_open == cap_open) {
        cap_open = cap_open ? cap_open * 2 : 1024;
        opens = realloc(opens, cap_open * sizeof *opens);
        if (!opens)
            die("realloc");
    }
    c->open_ix = (int)n_open;
    opens[n_open++] = c;
}

static void on_readable(struct conn *c)
{
    if (c->hs) {
        ssize_t r = read(c->fd, c->hs + c->hs_len, HS_MAX - c->hs_len);
        if (r <= 0) {
            if (r < 0 && errno == EAGAIN)
                return;
            conn_close(c);
            return;
        }
        c->hs_len += (uint16_t)r;
        if (c->hs_len >= 4 && memmem(c->hs, c->hs_len, "\r\n\r\n", 4))
            handshake(c);
        else if (c->hs_len == HS_MAX)
            conn_close(c);
        return;
    }
    uint8_t buf[4096];
    for (;;) {
        ssize_t r = read(c->fd, buf, sizeof(buf));
        if (r > 0) {
            /* a close frame from the client (opcode 8 in a frame start):
             * good enough for a benchmark, the clients send nothing else */
            if ((buf[0] & 0x0f) == 8) {
                conn_close(c);
                return;
            }
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        conn_close(c);
        return;
    }
}

static void on_writable(struct conn *c)
{
    ssize_t r = write(c->fd, c->pend, c->pend_len);
    if (r < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return;
        conn_close(c);
        return;
    }
    memmove(c->pend, c->pend + r, c->pend_len - (size_t)r);
    c->pend_len -= (uint16_t)r;
    if (!c->pend_len) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    }
}

/* Sends one message to c (or drops it). Returns 0. */
static int send_one(struct conn *c)
{
    uint32_t seq = c->seq++;
    if (c->pend_len) {
        dropped++;
        return 0;
    }
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    uint64_t ns = (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
    uint8_t *p = frame + (frame_len - msg_size);
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(ns >> (56 - 8 * i));
    for (int i = 0; i < 4; i++)
        p[8 + i] = (uint8_t)(seq >> (24 - 8 * i));
    ssize_t r = write(c->fd, frame, frame_len);
    if (r == (ssize_t)frame_len) {
        sent++;
        return 0;
    }
    if (r < 0) {
        /* full (the client lags) or broken: dropped; a broken connection
         * is closed by its read event (not here: an event for it may still
         * be in this batch) */
        dropped++;
        return 0;
    }
    /* partly written: keep the rest, send it when writable */
    if (!c->pend && !(c->pend = malloc(frame_len)))
        die("malloc");
    c->pend_len = (uint16_t)(frame_len - (size_t)r);
    memcpy(c->pend, frame + r, c->pend_len);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    sent++;
    return 0;
}

int main(int argc, char **argv)
{
    double rate = 10;
    long tick_us = 250;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rate") && i + 1 < argc)
            rate = atof(argv[++i]);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc)
            msg_size = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--tick-us") && i + 1 < argc)
            tick_us = atol(argv[++i]);
        else {
            fprintf(stderr, "usage: fanin_server [--rate R] [--size B] [--tick-us T]\n");
            return 2;
        }
    }
    if (msg_size < 16 || msg_size > 65535 || rate <= 0 || tick_us < 10) {
        fprintf(stderr, "fanin_server: size must be 16..65535, rate > 0, tick >= 10 us\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl)) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    size_t hl = msg_size < 126 ? 2 : 4;
    frame_len = hl + msg_size;
    frame = malloc(frame_len);
    if (!frame)
        die("malloc");
    frame[0] = 0x82;
    if (hl == 2)
        frame[1] = (uint8_t)msg_size;
    else {
        frame[1] = 126;
        frame[2] = (uint8_t)(msg_size >> 8);
        frame[3] = (uint8_t)msg_size;
    }
    memset(frame + hl, 'x', msg_size);

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) || listen(ls, 4096) ||
        getsockname(ls, (struct sockaddr *)&sa, &sl))
        die("listen");
    printf("PORT %d\n", ntohs(sa.sin_port));
    fflush(stdout);

    ep = epoll_create1(0);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct itimerspec its = {.it_interval = {0, tick_us * 1000}, .it_value = {0, tick_us * 1000}};
    if (ep < 0 || tfd < 0 || timerfd_settime(tfd, 0, &its, NULL))
        die("epoll/timerfd");
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    static int tmark;
    ev.data.ptr = &tmark;
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);

    double t0 = now_s(), last = t0, next_stat = t0 + 5, due = 0;
    uint64_t behind_max = 0;
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == NULL) {
                for (;;) {
                    int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
                    if (fd < 0)
                        break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    struct conn *c = calloc(1, sizeof *c);
                    if (!c || !(c->hs = malloc(HS_MAX)))
                        die("malloc");
                    c->fd = fd;
                    c->open_ix = -1;
                    struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
                }
            } else if (p == &tmark) {
                uint64_t x;
                if (read(tfd, &x, sizeof(x)) < 0) {
                    /* spurious wake-up */
                }
                double t = now_s();
                due += rate * (double)n_open * (t - last);
                last = t;
                if (!n_open)
                    due = 0;
                /* behind (the server did not get the CPU): at most 10 ms
                 * worth at once, the rest is not sent (lagged), no burst */
                double cap = rate * (double)n_open * 0.01 + 1;
                if (due > cap) {
                    lagged += (uint64_t)(due - cap);
                    due = cap;
                }
                uint64_t k = (uint64_t)due;
                due -= (double)k;
                if (k > behind_max)
                    behind_max = k;
                while (k-- && n_open) {
                    if (cursor >= n_open)
                        cursor = 0;
                    struct conn *c = opens[cursor];
                    if (send_one(c) == 0)
                        cursor++;
                }
                if (t >= next_stat) {
                    fprintf(stderr,
                            "t=%.0f open=%zu sent=%llu dropped=%llu lagged=%llu behind_max=%llu\n",
                            t - t0, n_open, (unsigned long long)sent, (unsigned long long)dropped,
                            (unsigned long long)lagged, (unsigned long long)behind_max);
                    behind_max = 0;
                    next_stat = t + 5;
                }
            } else {
                struct conn *c = p;
                if (evs[i].events & EPOLLOUT) {
                    on_writable(c);
                    /* c may be gone: a later event of this batch for the
                     * same fd cannot occur (one event per fd per wait) */
                    continue;
                }
                on_readable(c);
            }
        }
    }
}
