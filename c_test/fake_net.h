/*
 * fake_net: link-time stand-ins for the layers beside wsp_conn, for the
 * state-machine fuzzer (c_test/fuzz_conn.c), over fake_loop.c's event
 * loop (its dispatch set to wsp_conn_on_io): the BEAM link
 * (wsp_link_*: events decoded and handed to a hook, no splice pipe) and DNS
 * (wsp_dns_*: "hN.fuzz" resolves, later, from the loop, to server N of
 * c_test/fake_sock.c; other names are nxdomain). wsp_conn.c links against
 * these unchanged; its socket system calls are wrapped at link time
 * (-Wl,--wrap) into fake_sock.c's in-memory stream sockets, whose
 * readiness the loop takes instead of poll(2).
 */
#ifndef FAKE_NET_H
#define FAKE_NET_H

#include <stddef.h>
#include <stdint.h>

#include "fake_loop.h"

#define FAKE_NET_SERVERS 3

/* What the link saw: tag is the event's atom ("up", "down", "closed",
 * "frame" for a data message, "passive", "pong", "error", "stats", "busy",
 * "ready"). */
struct fake_net_hooks {
    void (*on_event)(const char *tag, uint32_t id);
    /* a lookup of hN.fuzz started (a new connection attempt of server n) */
    void (*on_resolve)(int n);
};

/* Sets the hooks, the loop's dispatch and its socket readiness. */
void fake_net_init(const struct fake_net_hooks *hooks);

/* One turn: due DNS answers, then fake_loop_turn(). */
int fake_net_turn(void);
/* The same with the caller's extra fds in the loop's one poll(2) (see
 * fake_loop_turn_with). */
int fake_net_turn_with(struct pollfd *extra, size_t nextra);

/* DNS lookups still pending. */
size_t fake_net_lookups(void);
/* Forgets everything (after the checks), fake_loop_reset() included. */
void fake_net_reset(void);

#endif
