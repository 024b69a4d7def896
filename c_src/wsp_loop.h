/*
 * wsp_loop: the one event loop (libwebsockets), shared by every layer.
 * Every file descriptor the program watches (stdin, stdout, connection
 * sockets, DNS sockets) is adopted into lws as a raw file; the wsi's opaque
 * user data points at a struct whose first member is a struct wsp_watch, so
 * the one protocol callback can route events by kind.
 */
#ifndef WSP_LOOP_H
#define WSP_LOOP_H

#include <libwebsockets.h>

#include "wsp_compat.h"

enum wsp_watch_kind {
    WSP_W_STDIN = 1,
    WSP_W_STDOUT,
    WSP_W_CONN,
    WSP_W_DNS,
    WSP_W_CLI,       /* the command line client's stdin (wsp_cli) */
};

struct wsp_watch {
    enum wsp_watch_kind kind;
    struct lws *wsi;                 /* set by wsp_loop_adopt */
    lws_sorted_usec_list_t rearm;    /* private: writable re-arm timer */
    int no_read;                     /* private: input polling is off */
    int read_set;                    /* private: no_read was set by us */
};

/* Loop events delivered to a watcher. */
enum wsp_io {
    WSP_IO_READABLE = 1,
    WSP_IO_WRITABLE,
    WSP_IO_CLOSED,   /* lws closed the wsi and the fd on its own (hang-up):
                        forget the wsi; wsp_loop_close is not needed */
};

extern struct lws_context *wsp_ctx;

/* Loop flavours (wsp_loop_init). */
enum wsp_loop_kind {
    WSP_LOOP_POLL = 0,   /* lws' own poll(2) loop: every wake-up walks every fd */
    WSP_LOOP_EPOLL,      /* libuv (epoll) through lws' evlib plugin; falls back
                            to poll when the plugin or libuv is missing */
};

/* Creates the lws context and its one vhost; -1 on failure. */
int wsp_loop_init(enum wsp_loop_kind kind);
void wsp_loop_destroy(void);
extern struct lws_vhost *wsp_vhost;

/* Waits for events (and due timers) and handles them: one loop iteration.
 * -1 when the loop cannot go on. */
int wsp_loop_run_once(void);

/* Calls cb(sul) in us microseconds. Use this rather than lws_sul_schedule:
 * with libuv, lws only looks at its timer list after loop events, so a timer
 * set between two wsp_loop_run_once (outside any loop callback) must wake it;
 * and timers with a delay go to wsp_timers (O(1) to arm, where lws' sorted
 * list is O(timers)), rounded up to the millisecond. lws_sul_cancel cancels
 * any of them. */
void wsp_loop_schedule(lws_sorted_usec_list_t *sul, sul_cb_t cb, lws_usec_t us);

/* Adopts fd (set non-blocking by the caller) into the loop, polled for input.
 * Returns the wsi, or NULL (then the fd has been closed by lws). */
struct lws *wsp_loop_adopt(int fd, struct wsp_watch *w);

/* Asks for one WSP_IO_WRITABLE event. Safe from inside any callback
 * (including the writable one itself: re-armed from a 0-delay timer). */
void wsp_loop_want_write(struct lws *wsi);

/* Enables or disables input polling for the wsi. */
void wsp_loop_want_read(struct lws *wsi, int on);

/* Detaches the watcher from its wsi and closes the wsi (and the fd): no
 * event reaches the watcher afterwards, so it may be freed at once. Safe from
 * any callback, including the wsi's own. */
void wsp_loop_close(struct wsp_watch *w);

/* Monotonic microseconds. */
static inline lws_usec_t wsp_now(void) { return lws_now_usecs(); }

#endif
