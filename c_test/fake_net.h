/*
 * fake_net: link-time stand-ins for the layers under and beside wsp_conn,
 * for the state-machine fuzzer (c_test/fuzz_conn.c): the event loop
 * (wsp_loop_*, lws_sul_cancel, lws_now_usecs: a fake clock and timer list,
 * poll(2) with a zero timeout on the adopted fds), the BEAM link
 * (wsp_link_*: events decoded and handed to a hook, no splice pipe) and DNS
 * (wsp_dns_*: "hN.fuzz" resolves, later, from the loop, to the abstract
 * unix socket fake_net_listen(N) listens on; other names are nxdomain).
 * wsp_conn.c links against these unchanged, with real sockets (AF_UNIX
 * stream sockets: socket(2), connect(2), send(2), recv(2) as in production).
 */
#ifndef FAKE_NET_H
#define FAKE_NET_H

#include <stddef.h>
#include <stdint.h>

#include "wsp_loop.h"

#define FAKE_NET_SERVERS 3

/* What the link saw: tag is the event's atom ("up", "down", "closed",
 * "frame" for a data message, "passive", "pong", "error", "stats", "busy",
 * "ready"). */
struct fake_net_hooks {
    void (*on_event)(const char *tag, uint32_t id);
    /* a lookup of hN.fuzz started (a new connection attempt of server n) */
    void (*on_resolve)(int n);
};

/* Opens the listeners (once per process). */
void fake_net_init(const struct fake_net_hooks *hooks);
/* The listening socket of server n (1..FAKE_NET_SERVERS), non-blocking. */
int fake_net_listener(int n);

extern lws_usec_t fake_net_now;

/* One turn: due DNS answers, due timers, then one poll of every adopted fd
 * (readable / writable as asked) with its events dispatched. Returns how
 * many callbacks ran. */
int fake_net_turn(void);
/* Moves the clock on (timers fall due on the next turn). */
void fake_net_advance(lws_usec_t us);
/* When the earliest timer falls due (0: none). */
lws_usec_t fake_net_next_due(void);
/* When on, a hang-up (POLLHUP) is delivered as lws does it: the fd is
 * closed and WSP_IO_CLOSED sent, instead of a readable event. */
void fake_net_set_hangup_close(int on);

/* What is still held: adopted fds, timers, DNS lookups. */
size_t fake_net_adopted(void);
size_t fake_net_timers(void);
size_t fake_net_lookups(void);
/* Forgets everything (after the checks), closing fds still adopted. */
void fake_net_reset(void);

#endif
