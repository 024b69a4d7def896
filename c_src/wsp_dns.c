#include "wsp_dns.h"

#include <ares.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wsp_log.h"

struct wsp_dns_req {
    lws_sorted_usec_list_t deliver;  /* results always reach cb from a timer */
    wsp_dns_cb cb;                   /* NULL = cancelled */
    void *arg;
    struct wsp_dns_result res;
};

struct dns_sock {
    struct wsp_watch watch;   /* first member */
    struct dns_sock *next;
    ares_socket_t fd;         /* c-ares' own fd */
    struct wsp_watch *w;      /* &watch: polls a dup of it (NULL if the loop dropped it) */
};

static struct {
    ares_channel channel;
    int ready;
    struct dns_sock *socks;
    lws_sorted_usec_list_t timer;
} D;

static void schedule_timeout(void);

static struct dns_sock *find_sock(ares_socket_t fd)
{
    for (struct dns_sock *s = D.socks; s; s = s->next) {
        if (s->fd == fd) {
            return s;
        }
    }
    return NULL;
}

static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    (void)data;
    struct dns_sock *s = find_sock(fd);
    if (!readable && !writable) {
        if (s) {
            /* unlink now; the watched dup is closed by the loop */
            for (struct dns_sock **pp = &D.socks; *pp; pp = &(*pp)->next) {
                if (*pp == s) {
                    *pp = s->next;
                    break;
                }
            }
            if (s->w) {
                wsp_loop_close(&s->watch);
            }
            free(s);
        }
        return;
    }
    if (!s) {
        int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (dfd < 0) {
            WARN("dns: cannot watch socket: %s", strerror(errno));
            return;
        }
        s = calloc(1, sizeof *s);
        if (!s) {
            close(dfd);
            return;
        }
        s->watch.kind = WSP_W_DNS;
        s->fd = fd;
        s->next = D.socks;
        D.socks = s;
        s->w = wsp_loop_adopt(dfd, &s->watch);
        if (!s->w) {
            D.socks = s->next;
            free(s);
            return;
        }
    }
    if (!s->w) {
        return;
    }
    wsp_loop_want_read(s->w, readable);
    if (writable) {
        wsp_loop_want_write(s->w);
    }
}

int wsp_dns_on_io(struct wsp_watch *w, enum wsp_io io)
{
    struct dns_sock *s = (struct dns_sock *)w;
    switch (io) {
    case WSP_IO_READABLE:
        if (s->fd != ARES_SOCKET_BAD) {
            ares_process_fd(D.channel, s->fd, ARES_SOCKET_BAD);
        }
        break;
    case WSP_IO_WRITABLE:
        if (s->fd != ARES_SOCKET_BAD) {
            ares_process_fd(D.channel, ARES_SOCKET_BAD, s->fd);
        }
        break;
    case WSP_IO_CLOSED:
        s->w = NULL; /* lws dropped the dup: c-ares still owns fd */
        return 0;
    }
    schedule_timeout();
    return 0;
}

static void on_timer(lws_sorted_usec_list_t *sul)
{
    (void)sul;
    ares_process_fd(D.channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    schedule_timeout();
}

static void schedule_timeout(void)
{
    struct timeval tv, *t = ares_timeout(D.channel, NULL, &tv);
    if (t) {
        lws_usec_t us = (lws_usec_t)t->tv_sec * 1000000 + t->tv_usec;
        wsp_loop_schedule(&D.timer, on_timer, us);
    } else {
        lws_sul_cancel(&D.timer);
    }
}

int wsp_dns_init(void)
{
    if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS) {
        return -1;
    }
    struct ares_options o;
    memset(&o, 0, sizeof o);
    o.sock_state_cb = sock_state_cb;
    o.timeout = 2000;
    o.tries = 2;
    if (ares_init_options(&D.channel, &o,
                          ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES) !=
        ARES_SUCCESS) {
        return -1;
    }
    D.ready = 1;
    return 0;
}

static void deliver(lws_sorted_usec_list_t *sul)
{
    struct wsp_dns_req *req = lws_container_of(sul, struct wsp_dns_req, deliver);
    if (req->cb) {
        req->cb(req->arg, &req->res);
    }
    free(req);
}

static void on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
    (void)timeouts;
    struct wsp_dns_req *req = arg;
    struct wsp_dns_result res;
    memset(&res, 0, sizeof res);
    if (status == ARES_EDESTRUCTION) {
        if (ai) {
            ares_freeaddrinfo(ai);
        }
        free(req);
        return;
    }
    res.status = status;
    if (status != ARES_SUCCESS) {
        res.nxdomain = status == ARES_ENOTFOUND || status == ARES_ENONAME;
        res.error = ares_strerror(status);
    } else if (ai) {
        for (struct ares_addrinfo_node *n = ai->nodes; n && res.naddrs < WSP_DNS_MAX_ADDRS;
             n = n->ai_next) {
            if ((size_t)n->ai_addrlen > sizeof res.addrs[0]) {
                continue;
            }
            memcpy(&res.addrs[res.naddrs], n->ai_addr, (size_t)n->ai_addrlen);
            res.addrlens[res.naddrs] = (socklen_t)n->ai_addrlen;
            res.naddrs++;
        }
        if (res.naddrs == 0) {
            res.status = ARES_ENODATA;
            res.nxdomain = 1;
            res.error = "no addresses";
        }
    }
    if (ai) {
        ares_freeaddrinfo(ai);
    }
    /* c-ares may answer from inside ares_getaddrinfo (hosts file): deliver
     * from the loop so callers never see their callback re-entered */
    req->res = res;
    wsp_loop_schedule(&req->deliver, deliver, 0);
}

struct wsp_dns_req *wsp_dns_resolve(const char *host, uint16_t port, wsp_dns_cb cb, void *arg)
{
    if (!D.ready) {
        return NULL;
    }
    struct wsp_dns_req *req = calloc(1, sizeof *req);
    if (!req) {
        return NULL;
    }
    req->cb = cb;
    req->arg = arg;
    struct ares_addrinfo_hints hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    char service[8];
    snprintf(service, sizeof service, "%u", port);
    ares_getaddrinfo(D.channel, host, service, &hints, on_addrinfo, req);
    schedule_timeout();
    return req;
}

void wsp_dns_cancel(struct wsp_dns_req *req)
{
    if (req) {
        req->cb = NULL;
    }
}

void wsp_dns_shutdown(void)
{
    if (!D.ready) {
        return;
    }
    lws_sul_cancel(&D.timer);
    ares_destroy(D.channel);
    ares_library_cleanup();
    D.ready = 0;
}
