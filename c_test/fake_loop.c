/* See fake_loop.h. */
#include "fake_loop.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int wsp_log_level = -1; /* silent */
struct lws_context *wsp_ctx;
struct lws_vhost *wsp_vhost;

static int g_hangup_close;

lws_usec_t fake_loop_now = 1000000;

lws_usec_t lws_now_usecs(void) { return fake_loop_now; }

/* ---- timers ------------------------------------------------------------- */

#define MAX_TIMERS 256
static lws_sorted_usec_list_t *g_timers[MAX_TIMERS];
static size_t g_ntimers;

/* lws' doubly linked list, for the lists users keep of their own
 * (wsp_conn parks attempts waiting for a slot by a timer node): same
 * behaviour as lws' (remove from whatever list holds it, a no-op when
 * detached). */
void lws_dll2_remove(struct lws_dll2 *d)
{
    if (!d->owner) {
        return;
    }
    if (d->prev) {
        d->prev->next = d->next;
    } else {
        d->owner->head = d->next;
    }
    if (d->next) {
        d->next->prev = d->prev;
    } else {
        d->owner->tail = d->prev;
    }
    d->owner->count--;
    d->owner = NULL;
    d->prev = d->next = NULL;
}

void lws_dll2_add_tail(struct lws_dll2 *d, lws_dll2_owner_t *owner)
{
    lws_dll2_remove(d);
    d->owner = owner;
    d->next = NULL;
    d->prev = owner->tail;
    if (owner->tail) {
        owner->tail->next = d;
    } else {
        owner->head = d;
    }
    owner->tail = d;
    owner->count++;
}

void lws_sul_cancel(lws_sorted_usec_list_t *sul)
{
    lws_dll2_remove(&sul->list); /* as lws: off any list it is on */
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
        fprintf(stderr, "fake_loop: too many timers\n");
        abort();
    }
    sul->cb = cb;
    sul->us = fake_loop_now + us;
    g_timers[g_ntimers++] = sul;
}

int fake_loop_timers_run(void)
{
    int ran = 0;
    for (int guard = 0; guard < 1000; guard++) {
        size_t best = g_ntimers;
        for (size_t i = 0; i < g_ntimers; i++) {
            if (g_timers[i]->us <= fake_loop_now &&
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

void fake_loop_advance(lws_usec_t us) { fake_loop_now += us; }

lws_usec_t fake_loop_next_due(void)
{
    lws_usec_t best = 0;
    for (size_t i = 0; i < g_ntimers; i++) {
        if (!best || g_timers[i]->us < best) {
            best = g_timers[i]->us;
        }
    }
    return best;
}
size_t fake_loop_timers(void) { return g_ntimers; }

/* ---- adopted fds ---------------------------------------------------------- */

struct fake_wsi {
    struct wsp_watch *w;
    int fd;
    int want_read;
    int want_write;
    unsigned gen; /* bumped when the slot is taken or freed */
};

#define MAX_WSI 32
static struct fake_wsi g_wsi[MAX_WSI];

struct wsp_watch *wsp_loop_adopt(int fd, struct wsp_watch *w)
{
    for (size_t i = 0; i < MAX_WSI; i++) {
        if (!g_wsi[i].w) {
            g_wsi[i] = (struct fake_wsi){
                .w = w, .fd = fd, .want_read = 1, .gen = g_wsi[i].gen + 1};
            w->lw = &g_wsi[i];
            w->fd = fd;
            return w;
        }
    }
    close(fd);
    return NULL;
}

static void slot_free(struct fake_wsi *f)
{
    *f = (struct fake_wsi){.gen = f->gen + 1};
}

static struct fake_wsi *slot_of(struct wsp_watch *w)
{
    if (!w->lw) {
        fprintf(stderr, "fake_loop: a call on a watch that is not watched\n");
        abort();
    }
    return w->lw;
}

void wsp_loop_want_write(struct wsp_watch *w) { slot_of(w)->want_write = 1; }
void wsp_loop_want_read(struct wsp_watch *w, int on) { slot_of(w)->want_read = on; }
int wsp_loop_fd(const struct wsp_watch *w) { return w->fd; }

void wsp_loop_close(struct wsp_watch *w)
{
    struct fake_wsi *f = w->lw;
    w->lw = NULL;
    w->fd = -1;
    if (!f) {
        return;
    }
    if (f->w != w) {
        fprintf(stderr, "fake_loop: wsp_loop_close of a watch that is not the wsi's\n");
        abort();
    }
    close(f->fd);
    slot_free(f);
}

size_t fake_loop_adopted(void)
{
    size_t n = 0;
    for (size_t i = 0; i < MAX_WSI; i++) {
        n += g_wsi[i].w != NULL;
    }
    return n;
}

void fake_loop_set_hangup_close(int on) { g_hangup_close = on; }

static fake_loop_dispatch_fn g_dispatch;

void fake_loop_set_dispatch(fake_loop_dispatch_fn fn) { g_dispatch = fn; }

static int dispatch(struct wsp_watch *w, enum wsp_io io) { return g_dispatch(w, io); }

static fake_loop_revents_fn g_revents;

void fake_loop_set_revents(fake_loop_revents_fn fn) { g_revents = fn; }

/* One poll(2) over every adopted fd that wants something (and the
 * caller's extra fds), then the events dispatched in slot order, as an
 * epoll loop hands out one epoll_wait's worth. A callback may close a
 * slot and adopt a new fd into it (even the same fd number for the same
 * watch): its generation then differs and the old fd's events are
 * dropped, as a real loop drops events of an fd closed meanwhile. */
int fake_loop_poll_with(struct pollfd *extra, size_t nextra)
{
    struct pollfd p[MAX_WSI + FAKE_LOOP_MAX_EXTRA];
    size_t slot[MAX_WSI];
    unsigned gen[MAX_WSI];
    size_t np = 0;
    if (nextra > FAKE_LOOP_MAX_EXTRA) {
        fprintf(stderr, "fake_loop: too many extra fds\n");
        abort();
    }
    for (size_t i = 0; i < MAX_WSI; i++) {
        struct fake_wsi *f = &g_wsi[i];
        if (!f->w || (!f->want_read && !f->want_write)) {
            continue;
        }
        p[np] = (struct pollfd){.fd = f->fd,
                                .events = (short)((f->want_read ? POLLIN : 0) |
                                                  (f->want_write ? POLLOUT : 0))};
        slot[np] = i;
        gen[np] = f->gen;
        np++;
    }
    for (size_t i = 0; i < nextra; i++) {
        extra[i].revents = 0;
        p[np + i] = extra[i];
    }
    if (np + nextra == 0) {
        return 0;
    }
    /* fds of the revents hook's (in-memory sockets) are answered by it;
     * poll(2) only if some other fd is left */
    int real = 0;
    for (size_t i = 0; i < np + nextra; i++) {
        short re = g_revents ? g_revents(p[i].fd, p[i].events) : -1;
        if (re >= 0) {
            p[i].revents = re;
            p[i].fd = -1 - p[i].fd; /* poll(2) skips it (and zeroes its revents: kept below) */
        } else {
            real = 1;
        }
    }
    if (real) {
        short keep[MAX_WSI + FAKE_LOOP_MAX_EXTRA];
        for (size_t i = 0; i < np + nextra; i++) {
            keep[i] = p[i].fd < 0 ? p[i].revents : 0;
        }
        if (poll(p, (nfds_t)(np + nextra), 0) < 0) {
            return 0;
        }
        for (size_t i = 0; i < np + nextra; i++) {
            if (p[i].fd < 0) {
                p[i].revents = keep[i];
            }
        }
    }
    int any = 0;
    for (size_t i = 0; i < np + nextra; i++) {
        if (p[i].fd < 0) {
            p[i].fd = -1 - p[i].fd;
        }
        any |= p[i].revents != 0;
    }
    if (!any) {
        return 0;
    }
    for (size_t i = 0; i < nextra; i++) {
        extra[i].revents = p[np + i].revents;
    }
    int ran = 0;
    for (size_t k = 0; k < np; k++) {
        struct fake_wsi *f = &g_wsi[slot[k]];
        short re = p[k].revents;
        if (!re || f->gen != gen[k]) {
            continue;
        }
        struct wsp_watch *w = f->w;
        if ((re & POLLHUP) && g_hangup_close && f->want_read) {
            close(f->fd);
            slot_free(f);
            w->lw = NULL;
            w->fd = -1;
            dispatch(w, WSP_IO_CLOSED);
            ran++;
            continue;
        }
        if ((re & POLLOUT) && f->want_write) {
            f->want_write = 0;
            dispatch(w, WSP_IO_WRITABLE);
            ran++;
        }
        /* the callback may have closed (and reused) the slot */
        if (f->gen == gen[k] && f->want_read && (re & (POLLIN | POLLHUP | POLLERR))) {
            dispatch(w, WSP_IO_READABLE);
            ran++;
        }
    }
    return ran;
}

int fake_loop_poll(void) { return fake_loop_poll_with(NULL, 0); }

int fake_loop_turn(void) { return fake_loop_timers_run() + fake_loop_poll(); }

int fake_loop_turn_with(struct pollfd *extra, size_t nextra)
{
    return fake_loop_timers_run() + fake_loop_poll_with(extra, nextra);
}

void fake_loop_reset(void)
{
    for (size_t i = 0; i < MAX_WSI; i++) {
        if (g_wsi[i].w) {
            close(g_wsi[i].fd);
            slot_free(&g_wsi[i]);
        }
    }
    g_ntimers = 0;
    g_hangup_close = 0;
}
