/*
 * fake_loop: a link-time stand-in for the event loop (wsp_loop.c and the
 * bits of lws its users call: lws_now_usecs, lws_sul_cancel, lws_dll2_remove,
 * lws_dll2_add_tail), for the fuzz harnesses: a fake clock and timer list,
 * and poll(2) with a zero timeout on the adopted fds (or an in-memory
 * socket layer's readiness, see fake_loop_set_revents), whose events go to
 * the dispatch function the harness sets. The fds are the kernel's unless
 * the revents hook claims them.
 */
#ifndef FAKE_LOOP_H
#define FAKE_LOOP_H

#include <poll.h>
#include <stddef.h>

#include "wsp_loop.h"

typedef int (*fake_loop_dispatch_fn)(struct wsp_watch *w, enum wsp_io io);
void fake_loop_set_dispatch(fake_loop_dispatch_fn fn);
/* For fds that are not the kernel's (in-memory sockets): a function that
 * gives an fd's revents, or -1 for an fd it does not know (polled). */
typedef short (*fake_loop_revents_fn)(int fd, short events);
void fake_loop_set_revents(fake_loop_revents_fn fn);

extern lws_usec_t fake_loop_now;

/* Due timers, then one poll(2) of every adopted fd (readable / writable
 * as asked) with its events dispatched. Returns how many callbacks ran. */
int fake_loop_turn(void);
int fake_loop_timers_run(void);
int fake_loop_poll(void);
/* The same, with up to FAKE_LOOP_MAX_EXTRA fds of the caller's in the same
 * poll(2) (their revents set, nothing dispatched for them). */
#define FAKE_LOOP_MAX_EXTRA 16
int fake_loop_turn_with(struct pollfd *extra, size_t nextra);
int fake_loop_poll_with(struct pollfd *extra, size_t nextra);
/* Moves the clock on (timers fall due on the next turn). */
void fake_loop_advance(lws_usec_t us);
/* When the earliest timer falls due (0: none). */
lws_usec_t fake_loop_next_due(void);
/* When on, a hang-up (POLLHUP) is delivered as lws does it: the fd is
 * closed and WSP_IO_CLOSED sent, instead of a readable event. */
void fake_loop_set_hangup_close(int on);
/* Adopted fds and pending timers. */
size_t fake_loop_adopted(void);
size_t fake_loop_timers(void);
/* Forgets everything, closing fds still adopted. */
void fake_loop_reset(void);

#endif
