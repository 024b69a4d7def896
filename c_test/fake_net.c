/* See fake_net.h. */
#include "fake_net.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <ei.h>

#include "fake_sock.h"
#include "wsp_conn.h"
#include "wsp_dns.h"
#include "wsp_link.h"
#include "wsp_log.h"

static struct fake_net_hooks g_hooks;
static int g_init;
static struct sockaddr_un g_addrs[FAKE_NET_SERVERS + 1];
static socklen_t g_addrlens[FAKE_NET_SERVERS + 1];

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

int fake_net_turn(void) { return answer_lookups() + fake_loop_turn(); }

int fake_net_turn_with(struct pollfd *extra, size_t nextra)
{
    return answer_lookups() + fake_loop_turn_with(extra, nextra);
}

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
void wsp_link_flush_batched(void) {}
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

static short sock_revents(int fd, short events)
{
    return fake_sock_is(fd) ? fake_sock_revents(fd, events) : -1;
}

void fake_net_init(const struct fake_net_hooks *hooks)
{
    g_hooks = *hooks;
    fake_loop_set_dispatch(wsp_conn_on_io);
    fake_loop_set_revents(sock_revents);
    if (g_init) {
        return;
    }
    g_init = 1;
    for (int n = 1; n <= FAKE_NET_SERVERS; n++) {
        g_addrlens[n] = fake_sock_addr(n, &g_addrs[n], sizeof g_addrs[n]);
    }
}

void fake_net_reset(void)
{
    fake_loop_reset();
    fake_sock_reset();
    while (g_lookups) {
        struct wsp_dns_req *r = g_lookups;
        g_lookups = r->next;
        free(r);
    }
}
