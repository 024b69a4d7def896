/* See fake_sock.h. */
#include "fake_sock.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

struct ep {
    int used;
    int peer;    /* index of the other end, -1: none (never connected, or gone) */
    int gone;    /* the peer was closed */
    int shut_wr; /* shutdown(SHUT_WR) on this end */
    int err;     /* pending error (ECONNRESET), given once */
    size_t head; /* ring: rx[head .. head + len) modulo FAKE_SOCK_CAP */
    size_t len;
};

static struct ep g_ep[FAKE_SOCK_MAX];
/* the receive buffers, apart from the state so that a scan of the state
 * touches no buffer page */
static uint8_t g_rx[FAKE_SOCK_MAX][FAKE_SOCK_CAP];
static int g_queue[FAKE_SOCK_SERVERS + 1][FAKE_SOCK_BACKLOG];
static int g_nqueue[FAKE_SOCK_SERVERS + 1];

int fake_sock_is(int fd) { return fd >= FAKE_SOCK_FD_BASE && fd < FAKE_SOCK_FD_BASE + FAKE_SOCK_MAX; }

static struct ep *ep_of(int fd)
{
    if (!fake_sock_is(fd) || !g_ep[fd - FAKE_SOCK_FD_BASE].used) {
        return NULL;
    }
    return &g_ep[fd - FAKE_SOCK_FD_BASE];
}

static int ep_alloc(void)
{
    for (int i = 0; i < FAKE_SOCK_MAX; i++) {
        if (!g_ep[i].used) {
            g_ep[i] = (struct ep){.used = 1, .peer = -1};
            return i;
        }
    }
    return -1;
}

/* the peer's write side is shut: what is buffered, then EOF */
static int rcv_shut(const struct ep *e)
{
    return e->gone || (e->peer >= 0 && g_ep[e->peer].shut_wr);
}

static size_t room_at_peer(const struct ep *e)
{
    return e->peer >= 0 ? FAKE_SOCK_CAP - g_ep[e->peer].len : 0;
}

short fake_sock_revents(int fd, short events)
{
    const struct ep *e = ep_of(fd);
    if (!e) {
        return POLLNVAL;
    }
    short re = 0;
    if (e->len || rcv_shut(e) || e->err) {
        re |= POLLIN;
    }
    if (e->shut_wr || e->gone || room_at_peer(e) > 0) {
        re |= POLLOUT;
    }
    if (rcv_shut(e) && (e->shut_wr || e->gone)) {
        re |= POLLHUP;
    }
    if (e->err) {
        re |= POLLERR;
    }
    return (short)(re & (events | POLLHUP | POLLERR));
}

socklen_t fake_sock_addr(int n, void *sa, socklen_t cap)
{
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    int len = snprintf(a.sun_path + 1, sizeof a.sun_path - 1, "fuzz.%d", n);
    socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)len);
    memcpy(sa, &a, alen < cap ? alen : cap);
    return alen;
}

static int server_of(const struct sockaddr *sa, socklen_t salen)
{
    const struct sockaddr_un *a = (const struct sockaddr_un *)sa;
    int n = 0;
    if (salen <= offsetof(struct sockaddr_un, sun_path) + 1 || sa->sa_family != AF_UNIX ||
        a->sun_path[0] != 0 || sscanf(a->sun_path + 1, "fuzz.%d", &n) != 1 || n < 1 ||
        n > FAKE_SOCK_SERVERS) {
        return 0;
    }
    return n;
}

int fake_sock_accept(int n)
{
    if (n < 1 || n > FAKE_SOCK_SERVERS || g_nqueue[n] == 0) {
        return -1;
    }
    int fd = g_queue[n][0];
    memmove(&g_queue[n][0], &g_queue[n][1], (size_t)(--g_nqueue[n]) * sizeof g_queue[n][0]);
    return fd;
}

int fake_sock_backlog(int n) { return n >= 1 && n <= FAKE_SOCK_SERVERS ? g_nqueue[n] : 0; }

ssize_t fake_sock_send(int fd, const void *p, size_t n)
{
    struct ep *e = ep_of(fd);
    if (!e) {
        errno = EBADF;
        return -1;
    }
    if (e->shut_wr || e->gone || e->peer < 0) {
        errno = e->peer < 0 && !e->gone && !e->shut_wr ? ENOTCONN : EPIPE;
        return -1;
    }
    struct ep *d = &g_ep[e->peer];
    size_t k = FAKE_SOCK_CAP - d->len;
    if (k == 0) {
        errno = EAGAIN;
        return -1;
    }
    if (k > n) {
        k = n;
    }
    uint8_t *rx = g_rx[e->peer];
    size_t tail = (d->head + d->len) % FAKE_SOCK_CAP;
    size_t first = FAKE_SOCK_CAP - tail < k ? FAKE_SOCK_CAP - tail : k;
    memcpy(rx + tail, p, first);
    memcpy(rx, (const uint8_t *)p + first, k - first);
    d->len += k;
    return (ssize_t)k;
}

ssize_t fake_sock_recv(int fd, void *p, size_t n)
{
    struct ep *e = ep_of(fd);
    if (!e) {
        errno = EBADF;
        return -1;
    }
    if (e->len == 0) {
        if (e->err) {
            errno = e->err;
            e->err = 0;
            return -1;
        }
        if (rcv_shut(e)) {
            return 0;
        }
        errno = e->peer < 0 && !e->gone ? ENOTCONN : EAGAIN;
        return -1;
    }
    if (n == 0) {
        return 0;
    }
    size_t k = e->len < n ? e->len : n;
    const uint8_t *rx = g_rx[e - g_ep];
    size_t first = FAKE_SOCK_CAP - e->head < k ? FAKE_SOCK_CAP - e->head : k;
    memcpy(p, rx + e->head, first);
    memcpy((uint8_t *)p + first, rx, k - first);
    e->head = (e->head + k) % FAKE_SOCK_CAP;
    e->len -= k;
    if (e->len == 0) {
        e->head = 0;
    }
    return (ssize_t)k;
}

int fake_sock_close(int fd)
{
    struct ep *e = ep_of(fd);
    if (!e) {
        errno = EBADF;
        return -1;
    }
    int i = (int)(e - g_ep);
    if (e->peer >= 0) {
        struct ep *p = &g_ep[e->peer];
        p->peer = -1;
        p->gone = 1;
        if (e->len) {
            p->err = ECONNRESET; /* closed with unread data */
        }
    }
    for (int n = 1; n <= FAKE_SOCK_SERVERS; n++) {
        for (int q = 0; q < g_nqueue[n]; q++) {
            if (g_queue[n][q] == fd) { /* a queued end closed: off the queue */
                memmove(&g_queue[n][q], &g_queue[n][q + 1],
                        (size_t)(g_nqueue[n] - q - 1) * sizeof g_queue[n][0]);
                g_nqueue[n]--;
                q--;
            }
        }
    }
    g_ep[i] = (struct ep){.peer = -1};
    return 0;
}

size_t fake_sock_open(void)
{
    size_t n = 0;
    for (int i = 0; i < FAKE_SOCK_MAX; i++) {
        n += g_ep[i].used != 0;
    }
    return n;
}

void fake_sock_reset(void)
{
    for (int i = 0; i < FAKE_SOCK_MAX; i++) {
        if (g_ep[i].used) {
            fake_sock_close(FAKE_SOCK_FD_BASE + i);
        }
    }
    memset(g_nqueue, 0, sizeof g_nqueue);
}

/* ---- the wrapped system calls (-Wl,--wrap=...) ------------------------------ */

int __real_socket(int domain, int type, int protocol);
int __real_connect(int fd, const struct sockaddr *sa, socklen_t salen);
int __real_setsockopt(int fd, int level, int name, const void *v, socklen_t len);
int __real_getsockopt(int fd, int level, int name, void *v, socklen_t *len);
ssize_t __real_send(int fd, const void *p, size_t n, int flags);
ssize_t __real_recv(int fd, void *p, size_t n, int flags);
int __real_shutdown(int fd, int how);
int __real_close(int fd);

int __wrap_socket(int domain, int type, int protocol);
int __wrap_connect(int fd, const struct sockaddr *sa, socklen_t salen);
int __wrap_setsockopt(int fd, int level, int name, const void *v, socklen_t len);
int __wrap_getsockopt(int fd, int level, int name, void *v, socklen_t *len);
ssize_t __wrap_send(int fd, const void *p, size_t n, int flags);
ssize_t __wrap_recv(int fd, void *p, size_t n, int flags);
int __wrap_shutdown(int fd, int how);
int __wrap_close(int fd);

/* Every stream socket is a fake one: the harness has no other. */
int __wrap_socket(int domain, int type, int protocol)
{
    if ((type & 0xf) != SOCK_STREAM) {
        return __real_socket(domain, type, protocol);
    }
    int i = ep_alloc();
    if (i < 0) {
        errno = EMFILE;
        return -1;
    }
    return FAKE_SOCK_FD_BASE + i;
}

int __wrap_connect(int fd, const struct sockaddr *sa, socklen_t salen)
{
    if (!fake_sock_is(fd)) {
        return __real_connect(fd, sa, salen);
    }
    struct ep *e = ep_of(fd);
    if (!e) {
        errno = EBADF;
        return -1;
    }
    if (e->peer >= 0 || e->gone) {
        errno = EISCONN;
        return -1;
    }
    int n = server_of(sa, salen);
    if (!n) {
        errno = ECONNREFUSED;
        return -1;
    }
    if (g_nqueue[n] == FAKE_SOCK_BACKLOG) {
        errno = EAGAIN; /* unix: a full backlog on a non-blocking connect */
        return -1;
    }
    int s = ep_alloc();
    if (s < 0) {
        errno = ENOBUFS;
        return -1;
    }
    e->peer = s;
    g_ep[s].peer = (int)(e - g_ep);
    g_queue[n][g_nqueue[n]++] = FAKE_SOCK_FD_BASE + s;
    return 0;
}

int __wrap_setsockopt(int fd, int level, int name, const void *v, socklen_t len)
{
    if (!fake_sock_is(fd)) {
        return __real_setsockopt(fd, level, name, v, len);
    }
    if (!ep_of(fd)) {
        errno = EBADF;
        return -1;
    }
    return 0;
}

int __wrap_getsockopt(int fd, int level, int name, void *v, socklen_t *len)
{
    if (!fake_sock_is(fd)) {
        return __real_getsockopt(fd, level, name, v, len);
    }
    struct ep *e = ep_of(fd);
    if (!e) {
        errno = EBADF;
        return -1;
    }
    if (level != SOL_SOCKET || name != SO_ERROR || *len < (socklen_t)sizeof(int)) {
        errno = ENOPROTOOPT;
        return -1;
    }
    memcpy(v, &e->err, sizeof(int));
    *len = sizeof(int);
    e->err = 0;
    return 0;
}

ssize_t __wrap_send(int fd, const void *p, size_t n, int flags)
{
    return fake_sock_is(fd) ? fake_sock_send(fd, p, n) : __real_send(fd, p, n, flags);
}

ssize_t __wrap_recv(int fd, void *p, size_t n, int flags)
{
    return fake_sock_is(fd) ? fake_sock_recv(fd, p, n) : __real_recv(fd, p, n, flags);
}

int __wrap_shutdown(int fd, int how)
{
    if (!fake_sock_is(fd)) {
        return __real_shutdown(fd, how);
    }
    struct ep *e = ep_of(fd);
    if (!e) {
        errno = EBADF;
        return -1;
    }
    if (e->peer < 0 && !e->gone) {
        errno = ENOTCONN;
        return -1;
    }
    if (how == SHUT_WR || how == SHUT_RDWR) {
        e->shut_wr = 1;
    }
    return 0;
}

int __wrap_close(int fd) { return fake_sock_is(fd) ? fake_sock_close(fd) : __real_close(fd); }
