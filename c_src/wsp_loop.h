/*
 * wsp_loop: the one event loop (libwebsockets), shared by every layer.
 * Every file descriptor the program watches (stdin, stdout, connection
 * sockets, DNS sockets) is watched through a struct wsp_watch, the first
 * member of its owner's struct, so events can be routed by kind.
 *
 * How an fd is watched is private to wsp_loop.c: stdin, stdout, DNS and the
 * command line client's stdin are adopted into lws as raw files (a wsi, some
 * 900 bytes each). Connection sockets (WSP_W_CONN), of which there may be
 * tens of thousands, are watched without a wsi where the build has epoll
 * (WSP_HAVE_EPOLL): they sit in one epoll set of our own, whose fd is the
 * one adopted into lws (issue 16); elsewhere they are lws raw files too.
 * Either way the events a watcher sees are the same (see enum wsp_io).
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
    WSP_W_EPOLL,     /* private: the epoll set of connection sockets */
};

struct wsp_watch {
    enum wsp_watch_kind kind;
    int fd;                          /* private: the fd while watched */
    unsigned no_read : 1;            /* private: input polling is off */
    unsigned read_set : 1;           /* private: no_read was set by us */
    unsigned direct : 1;             /* private: in our epoll set, no wsi */
    unsigned want_out : 1;           /* private (direct): one WRITABLE asked */
    unsigned ep_reg : 1;             /* private (direct): in the epoll set */
    unsigned ep_in : 1, ep_out : 1;  /* private (direct): what it is polled for */
    void *lw;                        /* private: the lws side (wsi, re-arm
                                        timer) of an fd lws watches */
};

/* Loop events delivered to a watcher. */
enum wsp_io {
    WSP_IO_READABLE = 1,
    WSP_IO_WRITABLE,
    WSP_IO_CLOSED,   /* the loop closed the fd on its own (hang-up, socket
                        error): no longer watched, wsp_loop_close is not
                        needed */
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

/* Starts watching fd (set non-blocking by the caller), polled for input;
 * w->kind must be set. Returns w, or NULL (then the fd has been closed). */
struct wsp_watch *wsp_loop_adopt(int fd, struct wsp_watch *w);

/* Asks for one WSP_IO_WRITABLE event. Safe from inside any callback
 * (including the writable one itself: the event comes on a later turn). */
void wsp_loop_want_write(struct wsp_watch *w);

/* Enables or disables input polling for the watched fd. */
void wsp_loop_want_read(struct wsp_watch *w, int on);

/* The watched fd. */
int wsp_loop_fd(const struct wsp_watch *w);

/* Stops watching and closes the fd: no event reaches the watcher
 * afterwards, so it may be freed at once. Safe from any callback, including
 * the fd's own (the fd itself is closed when that callback returns). */
void wsp_loop_close(struct wsp_watch *w);

/* Monotonic microseconds. */
static inline lws_usec_t wsp_now(void) { return lws_now_usecs(); }

#endif
