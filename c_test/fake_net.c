/* See fake_net.h. */
#include "fake_net.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <ei.h>

#include "wsp_conn.h"
#include "wsp_dns.h"
#include "wsp_link.h"
#include "wsp_log.h"

int wsp_log_level = -1; /* silent */
struct lws_context *wsp_ctx;
struct lws_vhost *wsp_vhost;

static struct fake_net_hooks g_hooks;
static int g_listeners[FAKE_NET_SERVERS + 1];
static struct sockaddr_un g_addrs[FAKE_NET_SERVERS + 1];
static socklen_t g_addrlens[FAKE_NET_SERVERS + 1];
static int g_hangup_close;

lws_usec_t fake_net_now = 1000000;

lws_usec_t lws_now_usecs(void) { return fake_net_now; }

/* ---- timers ------------------------------------------------------------- */

#define MAX_TIMERS 256
static lws_sorted_usec_list_t *g_timers[MAX_TIMERS];
static size_t g_ntimers;

void lws_sul_cancel(lws_sorted_usec_list_t *sul)
{
    for (size_t i = 0; i < g_ntimers; i++) {
        if (g_timers[i] == sul) {
            g_timers[i] = g_timers[--g_ntimers];
            return;
        }
    }
}

void wsp_loop_schedule(lws_sorted_usec_list_t *sul, sul_cb_t cb, lws_usec_t us)
{
    lws_sul_cancel(sul);
    if (g_ntimers == MAX_TIMERS) {
        fprintf(stderr, "fake_net: too many timers\n");
        abort();
    }
    sul->cb = cb;
    sul->us = fake_net_now + us;
    g_timers[g_ntimers++] = sul;
}

static int run_timers(void)
{
    int ran = 0;
    for (int guard = 0; guard < 1000; guard++) {
        size_t best = g_ntimers;
        for (size_t i = 0; i < g_ntimers; i++) {
            if (g_timers[i]->us <= fake_net_now &&
                (best == g_ntimers || g_timers[i]->us < g_timers[best]->us)) {
                best = i;
            }
        }
        if (best == g_ntimers) {
            break;
        }
        lws_sorted_usec_list_t *sul = g_timers[best];
        g_timers[best] = g_timers[--g_ntimers];
        sul->cb(sul);
        ran++;
    }
    return ran;
}

void fake_net_advance(lws_usec_t us) { fake_net_now += us; }

lws_usec_t fake_net_next_due(void)
{
    lws_usec_t best = 0;
    for (size_t i = 0; i < g_ntimers; i++) {
        if (!best || g_timers[i]->us < best) {
            best = g_timers[i]->us;
        }
    }
    return best;
}
size_t fake_net_timers(void) { return g_ntimers; }

/* ---- adopted fds ---------------------------------------------------------- */

struct fake_wsi {
    struct wsp_watch *w;
    int fd;
    int want_read;
    int want_write;
};

#define MAX_WSI 32
static struct fake_wsi g_wsi[MAX_WSI];

struct lws *wsp_loop_adopt(int fd, struct wsp_watch *w)
{
    for (size_t i = 0; i < MAX_WSI; i++) {
        if (!g_wsi[i].w) {
            g_wsi[i] = (struct fake_wsi){.w = w, .fd = fd, .want_read = 1};
            w->wsi = (struct lws *)&g_wsi[i];
            return w->wsi;
        }
    }
    close(fd);
    return NULL;
}

void wsp_loop_want_write(struct lws *wsi) { ((struct fake_wsi *)wsi)->want_write = 1; }
void wsp_loop_want_read(struct lws *wsi, int on) { ((struct fake_wsi *)wsi)->want_read = on; }

void wsp_loop_close(struct wsp_watch *w)
{
    struct fake_wsi *f = (struct fake_wsi *)w->wsi;
    w->wsi = NULL;
    if (!f) {
        return;
    }
    if (f->w != w) {
        fprintf(stderr, "fake_net: wsp_loop_close of a watch that is not the wsi's\n");
        abort();
    }
    close(f->fd);
    *f = (struct fake_wsi){0};
}

size_t fake_net_adopted(void)
{
    size_t n = 0;
    for (size_t i = 0; i < MAX_WSI; i++) {
        n += g_wsi[i].w != NULL;
    }
    return n;
}

void fake_net_set_hangup_close(int on) { g_hangup_close = on; }

static int dispatch(struct wsp_watch *w, struct lws *wsi, enum wsp_io io)
{
    if (w->kind != WSP_W_CONN) {
        fprintf(stderr, "fake_net: a watch of kind %d\n", (int)w->kind);
        abort();
    }
    return wsp_conn_on_io(w, wsi, io);
}

static int poll_fds(void)
{
    int ran = 0;
    for (size_t i = 0; i < MAX_WSI; i++) {
        struct fake_wsi *f = &g_wsi[i];
        if (!f->w || (!f->want_read && !f->want_write)) {
            continue;
        }
        struct pollfd p = {.fd = f->fd,
                           .events = (short)((f->want_read ? POLLIN : 0) |
                                             (f->want_write ? POLLOUT : 0))};
        if (poll(&p, 1, 0) <= 0) {
            continue;
        }
        struct wsp_watch *w = f->w;
        if ((p.revents & POLLHUP) && g_hangup_close && f->want_read) {
            close(f->fd);
            *f = (struct fake_wsi){0};
            w->wsi = NULL;
            dispatch(w, NULL, WSP_IO_CLOSED);
            ran++;
            continue;
        }
        if ((p.revents & POLLOUT) && f->want_write) {
            f->want_write = 0;
            dispatch(w, (struct lws *)f, WSP_IO_WRITABLE);
            ran++;
        }
        /* the callback may have closed (and reused) the slot */
        if (f->w == w && f->want_read && (p.revents & (POLLIN | POLLHUP | POLLERR))) {
            dispatch(w, (struct lws *)f, WSP_IO_READABLE);
            ran++;
        }
    }
    return ran;
}

/* ---- DNS ------------------------------------------------------------------ */

struct wsp_dns_req {
    wsp_dns_cb cb;
    void *arg;
    int server; /* 0: nxdomain */
    struct wsp_dns_req *next;
};

static struct wsp_dns_req *g_lookups;

struct wsp_dns_req *wsp_dns_resolve(const char *host, uint16_t port, wsp_dns_cb cb, void *arg)
{
    (void)port;
    struct wsp_dns_req *r = calloc(1, sizeof *r);
    if (!r) {
        return NULL;
    }
    int n = 0;
    if (sscanf(host, "h%d.fuzz", &n) != 1 || n < 1 || n > FAKE_NET_SERVERS) {
        n = 0;
    }
    r->cb = cb;
    r->arg = arg;
    r->server = n;
    r->next = g_lookups;
    g_lookups = r;
    if (g_hooks.on_resolve) {
        g_hooks.on_resolve(n);
    }
    return r;
}

void wsp_dns_cancel(struct wsp_dns_req *req)
{
    for (struct wsp_dns_req **p = &g_lookups; *p; p = &(*p)->next) {
        if (*p == req) {
            *p = req->next;
            free(req);
            return;
        }
    }
    fprintf(stderr, "fake_net: wsp_dns_cancel of an unknown lookup\n");
    abort();
}

static int answer_lookups(void)
{
    int ran = 0;
    while (g_lookups) {
        struct wsp_dns_req *r = g_lookups;
        g_lookups = r->next;
        struct wsp_dns_result res;
        memset(&res, 0, sizeof res);
        if (r->server == 0) {
            res.status = 4; /* ARES_ENOTFOUND */
            res.nxdomain = 1;
            res.error = "not found";
        } else {
            res.naddrs = 1;
            memcpy(&res.addrs[0], &g_addrs[r->server], g_addrlens[r->server]);
            res.addrlens[0] = g_addrlens[r->server];
        }
        wsp_dns_cb cb = r->cb;
        void *arg = r->arg;
        free(r);
        cb(arg, &res);
        ran++;
    }
    return ran;
}

size_t fake_net_lookups(void)
{
    size_t n = 0;
    for (struct wsp_dns_req *r = g_lookups; r; r = r->next) {
        n++;
    }
    return n;
}

int fake_net_turn(void) { return answer_lookups() + run_timers() + poll_fds(); }

/* ---- the link to the BEAM --------------------------------------------------- */

void wsp_link_event(const ei_x_buff *x)
{
    int idx = 0, version, arity;
    char tag[MAXATOMLEN_UTF8] = "";
    unsigned long id = 0;
    if (ei_decode_version(x->buff, &idx, &version) < 0 ||
        ei_decode_tuple_header(x->buff, &idx, &arity) < 0 || arity < 2 ||
        ei_decode_atom(x->buff, &idx, tag) < 0 || ei_decode_ulong(x->buff, &idx, &id) < 0) {
        fprintf(stderr, "fake_net: an event that is not {Tag, Id, ...}\n");
        abort();
    }
    /* the whole term must decode */
    idx = 0;
    if (ei_decode_version(x->buff, &idx, &version) < 0 || ei_skip_term(x->buff, &idx) < 0 ||
        idx != x->index) {
        fprintf(stderr, "fake_net: event %s is not one whole term\n", tag);
        abort();
    }
    if (g_hooks.on_event) {
        g_hooks.on_event(tag, (uint32_t)id);
    }
}

static volatile uint8_t g_sink;

int wsp_link_data(uint32_t id, int opcode, const uint8_t *payload, size_t len)
{
    (void)opcode;
    uint8_t acc = 0;
    for (size_t i = 0; i < len; i++) {
        acc ^= payload[i]; /* every byte read: ASan sees a bad slice */
    }
    g_sink = acc;
    if (g_hooks.on_event) {
        g_hooks.on_event("frame", id);
    }
    return 0;
}

void wsp_link_flush(void) {}
void wsp_link_pause_input(int paused) { (void)paused; }
size_t wsp_link_splice_room(void) { return 0; }

int wsp_link_splice_claim(uint32_t id, int opcode, const uint8_t *have, size_t nhave,
                          size_t len, void (*preempt)(void *), void *owner)
{
    (void)id, (void)opcode, (void)have, (void)nhave, (void)len, (void)preempt, (void)owner;
    return -1;
}

ssize_t wsp_link_splice_in(int fd, size_t n)
{
    (void)fd, (void)n;
    errno = EINVAL;
    return WSP_SPLICE_ERROR;
}

void wsp_link_splice_commit(void) {}

int wsp_link_splice_take(struct wsp_buf *into)
{
    (void)into;
    return -1;
}

void wsp_link_splice_abort(void) {}

/* ---- set-up ---------------------------------------------------------------- */

void fake_net_init(const struct fake_net_hooks *hooks)
{
    g_hooks = *hooks;
    if (g_listeners[1]) {
        return;
    }
    for (int n = 1; n <= FAKE_NET_SERVERS; n++) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        struct sockaddr_un *a = &g_addrs[n];
        memset(a, 0, sizeof *a);
        a->sun_family = AF_UNIX;
        /* abstract namespace: sun_path[0] = 0 */
        int len = snprintf(a->sun_path + 1, sizeof a->sun_path - 1, "ws_port_fuzz_conn.%d.%d",
                           (int)getpid(), n);
        g_addrlens[n] = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)len);
        if (fd < 0 || bind(fd, (struct sockaddr *)a, g_addrlens[n]) < 0 || listen(fd, 64) < 0) {
            perror("fake_net: listener");
            abort();
        }
        g_listeners[n] = fd;
    }
}

int fake_net_listener(int n) { return g_listeners[n]; }

void fake_net_reset(void)
{
    for (size_t i = 0; i < MAX_WSI; i++) {
        if (g_wsi[i].w) {
            close(g_wsi[i].fd);
            g_wsi[i] = (struct fake_wsi){0};
        }
    }
    g_ntimers = 0;
    while (g_lookups) {
        struct wsp_dns_req *r = g_lookups;
        g_lookups = r->next;
        free(r);
    }
    g_hangup_close = 0;
}
