#include "wsp_loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>
#if WSP_HAVE_EPOLL
#include <sys/epoll.h>
#endif

#include "wsp_cli.h"
#include "wsp_conn.h"
#include "wsp_dns.h"
#include "wsp_link.h"
#include "wsp_log.h"
#include "wsp_timers.h"

int wsp_log_level = 1;
struct lws_context *wsp_ctx;
struct lws_vhost *wsp_vhost;

static struct {
    struct wsp_watch *cur_w; /* the watch whose callback is running */
    int kill_cur;            /* lws: close cur_w's wsi when its callback returns */
    int kill_fd;             /* direct: close this fd when cur_w's callback returns */
    enum wsp_loop_kind kind;
    uv_loop_t uv;            /* WSP_LOOP_EPOLL: ours, lent to lws (a "foreign"
                                loop: lws_service would uv_run it until it
                                stops, never coming back to the main loop) */
    int in_run;              /* inside uv_run */
    int kick;                /* a timer was set outside uv_run */
    int destroying;
    lws_dll2_owner_t soon;   /* WSP_LOOP_EPOLL: 0-delay work (wsp_loop_schedule) */
    uv_idle_t *lws_idle;     /* WSP_LOOP_EPOLL: lws' idle handle (run_lws_idle) */
    struct wsp_timers timers; /* the other timers of wsp_loop_schedule */
    lws_sorted_usec_list_t wake; /* lws' one timer for them: the earliest */
    lws_usec_t wake_at;      /* when wake is due (while it is armed) */
#if WSP_HAVE_EPOLL
    int epfd;                /* the connection sockets' epoll set (-1: none) */
    struct wsp_watch ep_w;   /* epfd, adopted into lws */
    struct epoll_event evs[64]; /* the batch being dispatched */
    int nev, ev_i;
    struct wsp_watch *dcur;  /* the watch of evs[ev_i] */
    int dgone;               /* dcur was closed (may be freed) */
#endif
} G = {.kill_fd = -1
#if WSP_HAVE_EPOLL
       , .epfd = -1
#endif
};

/* An fd lws watches: its wsi, and the timer that re-asks for POLLOUT. */
struct wsp_lwatch {
    struct lws *wsi;
    lws_sorted_usec_list_t rearm;
    struct wsp_watch *w;
};

static struct lws *wsi_of(const struct wsp_watch *w)
{
    return w->lw ? ((struct wsp_lwatch *)w->lw)->wsi : NULL;
}

#if WSP_HAVE_EPOLL
static void direct_batch(void);
#endif

/* Runs the watcher's handler for one event; -1 if the fd is to be closed. */
static int deliver(struct wsp_watch *w, enum wsp_io io)
{
    struct wsp_watch *prev = G.cur_w;
    int prev_kill = G.kill_cur, prev_fd = G.kill_fd;
    G.cur_w = w;
    G.kill_cur = 0;
    G.kill_fd = -1;
    int r = 0;
    switch (w->kind) {
    case WSP_W_STDIN:
    case WSP_W_STDOUT: r = wsp_link_on_io(w, io); break;
    case WSP_W_CONN: r = wsp_conn_on_io(w, io); break;
    case WSP_W_DNS: r = wsp_dns_on_io(w, io); break;
    case WSP_W_CLI: r = wsp_cli_on_io(w, io); break;
    case WSP_W_EPOLL:
#if WSP_HAVE_EPOLL
        if (io == WSP_IO_READABLE) {
            direct_batch();
        } else if (io == WSP_IO_CLOSED) {
            if (!G.destroying) {
                WARN("the epoll set of connection sockets was closed");
            }
            G.epfd = -1; /* lws closed it; new sockets go through lws */
        }
#endif
        break;
    }
    int kill = G.kill_cur, kfd = G.kill_fd;
    G.cur_w = prev;
    G.kill_cur = prev_kill;
    G.kill_fd = prev_fd;
    if (kfd >= 0) {
        close(kfd); /* wsp_loop_close from inside its own callback */
    }
    return (kill || r < 0) ? -1 : 0;
}

static int on_lws(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len)
{
    (void)user;
    (void)in;
    (void)len;
    enum wsp_io io;
    switch (reason) {
    case LWS_CALLBACK_RAW_RX_FILE: io = WSP_IO_READABLE; break;
    case LWS_CALLBACK_RAW_WRITEABLE_FILE: io = WSP_IO_WRITABLE; break;
    case LWS_CALLBACK_RAW_CLOSE_FILE: io = WSP_IO_CLOSED; break;
    default: return 0;
    }
    struct wsp_watch *w = lws_get_opaque_user_data(wsi);
    if (!w) {
        /* detached by wsp_loop_close: lws is closing it */
        return io == WSP_IO_CLOSED ? 0 : -1;
    }
    if (io != WSP_IO_CLOSED) {
        return deliver(w, io);
    }
    if (G.kind == WSP_LOOP_EPOLL && !G.destroying && !w->no_read) {
        /* libuv hands a socket error (EPOLLERR) to lws as UV_EBADF, which
         * lws takes for a hang-up: it closes the wsi unread. poll(2) said
         * "readable" too, and the read told the watcher what happened
         * (ECONNRESET, ECONNREFUSED, the data before a reset). Do that read
         * first: the fd is still open during this callback. */
        (void)deliver(w, WSP_IO_READABLE);
        if (lws_get_opaque_user_data(wsi) != w) {
            return 0; /* the watcher let go of it (wsp_loop_close) */
        }
    }
    struct wsp_lwatch *lw = w->lw;
    if (lw) {
        lws_sul_cancel(&lw->rearm);
        free(lw);
        w->lw = NULL;
    }
    w->fd = -1;
    /* lws may call back CLOSE again for this wsi (a raw file's close always
     * does; the Debian build, with _DEBUG, closes twice on the libuv path to
     * test that): the watcher may be freed by then */
    lws_set_opaque_user_data(wsi, NULL);
    (void)deliver(w, io);
    /* this may run in libuv's close phase, after lws last looked at its
     * timers: have it look again */
    G.kick = 1;
    return 0;
}

static struct wsp_watch *lws_adopt(int fd, struct wsp_watch *w)
{
    struct wsp_lwatch *lw = calloc(1, sizeof *lw);
    if (!lw) {
        close(fd);
        return NULL;
    }
    lws_adopt_desc_t d;
    memset(&d, 0, sizeof d);
    d.vh = wsp_vhost;
    d.type = LWS_ADOPT_RAW_FILE_DESC;
    d.fd.filefd = fd;
    d.vh_prot_name = "ws-port";
    d.opaque = w;
    lw->w = w;
    w->lw = lw;
    lw->wsi = lws_adopt_descriptor_vhost_via_info(&d);
    if (!lw->wsi) {
        free(lw);
        w->lw = NULL;
        w->fd = -1;
        return NULL;
    }
    return w;
}

static void on_rearm(lws_sorted_usec_list_t *sul)
{
    struct wsp_lwatch *lw = lws_container_of(sul, struct wsp_lwatch, rearm);
    lws_callback_on_writable(lw->wsi);
}

/* ---- connection sockets without a wsi: our own epoll set ------------------ */

#if WSP_HAVE_EPOLL
/* Makes the epoll registration match what the watcher asks for. With no
 * interest the fd leaves the set (as libuv does it): a hang-up or an error
 * would otherwise be reported on every turn; it is seen when it asks again. */
static void direct_sync(struct wsp_watch *w)
{
    unsigned in = !w->no_read, out = w->want_out;
    if (!in && !out) {
        if (w->ep_reg) {
            (void)epoll_ctl(G.epfd, EPOLL_CTL_DEL, w->fd, NULL);
            w->ep_reg = 0;
        }
        return;
    }
    if (w->ep_reg && w->ep_in == in && w->ep_out == out) {
        return;
    }
    struct epoll_event ev = {.events = (in ? EPOLLIN : 0u) | (out ? EPOLLOUT : 0u),
                             .data.ptr = w};
    if (epoll_ctl(G.epfd, w->ep_reg ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, w->fd, &ev) < 0) {
        WARN("epoll_ctl(fd %d): %s", w->fd, strerror(errno));
        return;
    }
    w->ep_reg = 1;
    w->ep_in = in;
    w->ep_out = out;
}

/* Stops watching w's fd (the caller closes it); w's pending events in the
 * current batch are dropped. */
static void direct_forget(struct wsp_watch *w)
{
    if (w->ep_reg) {
        (void)epoll_ctl(G.epfd, EPOLL_CTL_DEL, w->fd, NULL);
    }
    w->ep_reg = 0;
    w->direct = 0;
    w->fd = -1;
    for (int i = G.ev_i + 1; i < G.nev; i++) {
        if (G.evs[i].data.ptr == w) {
            G.evs[i].data.ptr = NULL;
        }
    }
    if (w == G.dcur) {
        G.dgone = 1;
    }
}

/* One epoll event of a connection socket, delivered as lws delivers a raw
 * file's on the libuv loop: a socket error (EPOLLERR) is a read (if input is
 * polled) then WSP_IO_CLOSED; a hang-up is readable / writable as asked;
 * WRITABLE before READABLE; POLLOUT is dropped before WRITABLE is delivered
 * (asked again, it comes on a later turn). */
static void direct_io(struct wsp_watch *w, uint32_t ev)
{
    G.dcur = w;
    G.dgone = 0;
    unsigned in = !w->no_read, out = w->want_out;
    if (!in && !out) {
        direct_sync(w); /* a hang-up or error with nothing asked: see above */
        return;
    }
    if (ev & EPOLLERR) {
        if (in) {
            (void)deliver(w, WSP_IO_READABLE);
            if (G.dgone) {
                return;
            }
        }
        int fd = w->fd;
        direct_forget(w);
        close(fd);
        (void)deliver(w, WSP_IO_CLOSED);
        return;
    }
    if (ev & EPOLLHUP) {
        ev |= (in ? (uint32_t)EPOLLIN : 0u) | (out ? (uint32_t)EPOLLOUT : 0u);
    }
    int r = 0;
    if ((ev & EPOLLOUT) && out) {
        w->want_out = 0;
        r = deliver(w, WSP_IO_WRITABLE);
        if (G.dgone) {
            return;
        }
    }
    if (r == 0 && (ev & EPOLLIN) && !w->no_read) {
        r = deliver(w, WSP_IO_READABLE);
        if (G.dgone) {
            return;
        }
    }
    if (r < 0) {
        /* the watcher asked for the fd to be closed (as lws does it) */
        int fd = w->fd;
        direct_forget(w);
        close(fd);
        (void)deliver(w, WSP_IO_CLOSED);
        return;
    }
    direct_sync(w);
}

/* The epoll set is readable: dispatch what is ready (a batch per turn; the
 * set stays readable while more is). */
static void direct_batch(void)
{
    int n = epoll_wait(G.epfd, G.evs, (int)(sizeof G.evs / sizeof G.evs[0]), 0);
    G.nev = n > 0 ? n : 0;
    for (G.ev_i = 0; G.ev_i < G.nev; G.ev_i++) {
        struct wsp_watch *w = G.evs[G.ev_i].data.ptr;
        if (w) {
            direct_io(w, G.evs[G.ev_i].events);
        }
    }
    G.nev = 0;
    G.ev_i = 0;
    G.dcur = NULL;
}

static struct wsp_watch *direct_adopt(int fd, struct wsp_watch *w)
{
    w->direct = 1;
    w->want_out = 0;
    w->ep_reg = 0;
    direct_sync(w);
    if (!w->ep_reg) {
        w->direct = 0;
        w->fd = -1;
        close(fd);
        return NULL;
    }
    return w;
}

/* The epoll set, itself watched by lws (on either loop flavour). */
static void direct_init(void)
{
    G.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (G.epfd < 0) {
        WARN("epoll_create1: %s: connection sockets go through lws", strerror(errno));
        return;
    }
    G.ep_w.kind = WSP_W_EPOLL;
    G.ep_w.fd = G.epfd;
    if (!lws_adopt(G.epfd, &G.ep_w)) {
        WARN("cannot watch the epoll set: connection sockets go through lws");
        G.epfd = -1; /* lws closed it */
    }
}
#endif

struct wsp_watch *wsp_loop_adopt(int fd, struct wsp_watch *w)
{
    w->fd = fd;
    w->no_read = 0;
    w->read_set = 0;
    w->direct = 0;
    w->lw = NULL;
#if WSP_HAVE_EPOLL
    if (w->kind == WSP_W_CONN && G.epfd >= 0) {
        return direct_adopt(fd, w);
    }
#endif
    return lws_adopt(fd, w);
}

int wsp_loop_fd(const struct wsp_watch *w) { return w->fd; }

void wsp_loop_want_write(struct wsp_watch *w)
{
#if WSP_HAVE_EPOLL
    if (w->direct) {
        w->want_out = 1;
        direct_sync(w);
        return;
    }
#endif
    struct wsp_lwatch *lw = w->lw;
    if (!lw) {
        return;
    }
    if (w == G.cur_w) {
        /* lws clears POLLOUT after a writable callback returns: a request
         * made inside any callback of this wsi is re-made from a timer */
        wsp_loop_schedule(&lw->rearm, on_rearm, 0);
    }
    lws_callback_on_writable(lw->wsi);
}

void wsp_loop_want_read(struct wsp_watch *w, int on)
{
    if (w->no_read == !on && w->read_set) {
        return; /* no change: lws would still redo the epoll_ctl */
    }
    w->no_read = !on;
    w->read_set = 1;
#if WSP_HAVE_EPOLL
    if (w->direct) {
        direct_sync(w);
        return;
    }
#endif
    struct lws *wsi = wsi_of(w);
    if (wsi) {
        lws_rx_flow_control(wsi, on ? 1 : 0);
    }
}

void wsp_loop_close(struct wsp_watch *w)
{
#if WSP_HAVE_EPOLL
    if (w->direct) {
        int fd = w->fd;
        direct_forget(w);
        if (w == G.cur_w) {
            G.kill_fd = fd; /* still open while its callback runs */
        } else {
            close(fd);
        }
        return;
    }
#endif
    struct wsp_lwatch *lw = w->lw;
    w->fd = -1;
    if (!lw) {
        return;
    }
    struct lws *wsi = lw->wsi;
    lws_sul_cancel(&lw->rearm);
    free(lw);
    w->lw = NULL;
    lws_set_opaque_user_data(wsi, NULL);
    if (w == G.cur_w) {
        G.kill_cur = 1;
    } else {
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
    }
}

static void on_wake(lws_sorted_usec_list_t *sul);

/* Keeps lws' one timer for G.timers at their earliest (or off). */
static void arm_wake(void)
{
    lws_usec_t next = wsp_timers_next(&G.timers);
    if (next < 0) {
        lws_sul_cancel(&G.wake);
        return;
    }
    if (!lws_dll2_is_detached(&G.wake.list) && G.wake_at <= next) {
        return; /* armed early enough (a wake with nothing due re-arms) */
    }
    lws_usec_t now = wsp_now();
    G.wake_at = next;
    lws_sul_schedule(wsp_ctx, 0, &G.wake, on_wake, next > now ? next - now : 0);
    if (!G.in_run) {
        G.kick = 1;
    }
}

static void on_wake(lws_sorted_usec_list_t *sul)
{
    (void)sul;
    (void)wsp_timers_run(&G.timers, wsp_now());
    arm_wake();
}

void wsp_loop_schedule(lws_sorted_usec_list_t *sul, sul_cb_t cb, lws_usec_t us)
{
    if (G.kind == WSP_LOOP_EPOLL && us == 0) {
        /* "go on soon" (a connection's next read, a re-arm): our own list,
         * run between two loop turns. Through lws' timers they would run
         * in libuv's timer phase, which (libuv 1.44) keeps running 0 ms
         * timers without polling: one busy connection would starve stdin
         * and every other socket. lws_sul_cancel still works on it (it
         * unlinks the node from whatever list holds it). */
        lws_dll2_remove(&sul->list);
        sul->cb = cb;
        sul->us = 0;
        lws_dll2_add_tail(&sul->list, &G.soon);
        return;
    }
    /* Not in lws' timer list: lws inserts by walking that sorted list from
     * its head, and with thousands of connections each arming a retry
     * timer and a connect deadline a reconnect storm spent most of its
     * CPU there (issue 16). G.timers arms in O(1) (wsp_timers.h); lws
     * keeps one timer for their earliest. lws_sul_cancel works on these
     * too. 0-delay work of the poll loop stays with lws (it goes to the
     * head of its list, and G.timers rounds up to the millisecond). */
    if (us > 0 && wsp_timers_add(&G.timers, sul, cb, wsp_now() + us) == 0) {
        arm_wake();
        return;
    }
    lws_sul_schedule(wsp_ctx, 0, sul, cb, us);
    if (!G.in_run) {
        G.kick = 1;
    }
}

/* Runs what was in the "soon" list when called; what is added meanwhile
 * waits for the next turn (after the loop has polled). */
static void run_soon(void)
{
    for (uint32_t n = (uint32_t)G.soon.count; n > 0; n--) {
        struct lws_dll2 *d = lws_dll2_get_head(&G.soon);
        if (!d) {
            break;
        }
        lws_sorted_usec_list_t *sul = (lws_sorted_usec_list_t *)d; /* list is first */
        lws_dll2_remove(d);
        sul->cb(sul);
    }
}

/* lws' libuv glue starts its idle handle after every fd event (to serve
 * buffered input and re-arm its timer). libuv (1.44) decides whether a turn
 * may sleep before it runs the idle handles: with one active, that turn polls
 * with timeout 0 and only the next one sleeps, so every event cost a second
 * loop turn and epoll_wait (two per echo round trip). Running lws' idle
 * callback just before uv_run, as uv_run would first thing, lets the turn
 * sleep at once. */
static void find_idle(uv_handle_t *h, void *arg)
{
    int *n = arg;
    if (h->type == UV_IDLE) {
        G.lws_idle = (uv_idle_t *)h;
        (*n)++;
    }
}

static void run_lws_idle(void)
{
    uv_idle_t *idle = G.lws_idle;
    if (idle && uv_is_active((uv_handle_t *)idle) && idle->idle_cb) {
        idle->idle_cb(idle);
    }
}

int wsp_loop_run_once(void)
{
    if (G.kind != WSP_LOOP_EPOLL) {
        return lws_service(wsp_ctx, 0) < 0 ? -1 : 0;
    }
    if (G.kick) {
        /* lws' libuv glue re-arms its one timer only after an fd event or
         * that timer: a timer set from outside the loop needs an event.
         * The event pipe gives one (lws then runs what is due and re-arms). */
        G.kick = 0;
        lws_cancel_service(wsp_ctx);
    }
    G.in_run = 1;
    if (!G.soon.count) {
        run_lws_idle(); /* (with work waiting, uv_run's NOWAIT turn runs it) */
    }
    /* with work waiting, only look at what is ready, then do the work */
    uv_run(&G.uv, G.soon.count ? UV_RUN_NOWAIT : UV_RUN_ONCE);
    G.in_run = 0;
    run_soon();
    return 0;
}

int wsp_loop_init(enum wsp_loop_kind kind)
{
    static const struct lws_protocols protocols[] = {
        {"ws-port", on_lws, 0, 0, 0, NULL, 0},
        {NULL, NULL, 0, 0, 0, NULL, 0},
    };
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.pt_serv_buf_size = 256 * 1024;
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    G.kind = WSP_LOOP_POLL;
    void *loops[1] = {&G.uv};
    if (kind == WSP_LOOP_EPOLL && uv_loop_init(&G.uv) == 0) {
        info.options |= LWS_SERVER_OPTION_LIBUV;
        info.foreign_loops = loops;
        wsp_ctx = lws_create_context(&info);
        if (wsp_ctx) {
            G.kind = WSP_LOOP_EPOLL;
            int n = 0;
            uv_walk(&G.uv, find_idle, &n);
            if (n != 1) {
                G.lws_idle = NULL; /* not the one handle known: leave it to uv_run */
            }
        } else {
            WARN("no libuv event loop (libwebsockets-evlib-uv missing?): using poll");
            (void)uv_loop_close(&G.uv);
            info.options &= ~LWS_SERVER_OPTION_LIBUV;
            info.foreign_loops = NULL;
        }
    }
    if (!wsp_ctx) {
        wsp_ctx = lws_create_context(&info);
    }
    if (!wsp_ctx) {
        return -1;
    }
    info.vhost_name = "ws-port";
    wsp_vhost = lws_create_vhost(wsp_ctx, &info);
    if (!wsp_vhost) {
        wsp_loop_destroy();
        return -1;
    }
#if WSP_HAVE_EPOLL
    direct_init();
#endif
    return 0;
}

void wsp_loop_destroy(void)
{
    if (!wsp_ctx) {
        return;
    }
    G.destroying = 1;
    G.lws_idle = NULL;
    lws_sul_cancel(&G.wake);
    wsp_timers_clear(&G.timers);
    lws_context_destroy(wsp_ctx);
    if (G.kind == WSP_LOOP_EPOLL) {
        /* on a foreign loop lws only starts the closes (libuv closes its
         * handles asynchronously): let them complete, then the second call
         * frees the context */
        for (int i = 0; i < 1000 && uv_run(&G.uv, UV_RUN_NOWAIT); i++) {
        }
        lws_context_destroy(wsp_ctx);
        (void)uv_loop_close(&G.uv);
        G.kind = WSP_LOOP_POLL;
    }
    G.destroying = 0;
#if WSP_HAVE_EPOLL
    G.epfd = -1; /* closed by lws with its wsi */
#endif
    wsp_ctx = NULL;
    wsp_vhost = NULL;
}
