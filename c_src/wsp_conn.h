/*
 * wsp_conn: one WebSocket connection's life, driven by the event loop:
 * resolving -> connecting -> tls -> upgrading -> open -> closing -> done.
 * Owns the socket, the TLS session, the send queue, the receive buffer and
 * message assembly, the credit window and the timers. Reports to the BEAM
 * through wsp_link. Uses ws_codec for everything RFC 6455.
 */
#ifndef WSP_CONN_H
#define WSP_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "wsp_loop.h"
#include "wsp_proto.h"

/* Starts connection `id`; takes ownership of opts. Failures are reported as
 * a {closed, Id, Reason} event (or {error, Id, ...} if id is in use). */
void wsp_conn_connect(uint32_t id, struct wsp_connect_opts *opts);
void wsp_conn_send(uint32_t id, int opcode, const uint8_t *payload, size_t len);
void wsp_conn_close(uint32_t id, unsigned code, const uint8_t *reason, size_t len);
void wsp_conn_active(uint32_t id, enum wsp_active_kind kind, int64_t n);
void wsp_conn_stats(uint32_t id);
/* Manual retry mode: the BEAM's answer to {down, Id, _, #{delay_ms := manual}}. */
void wsp_conn_reconnect(uint32_t id, uint32_t delay_ms);

int wsp_conn_on_io(struct wsp_watch *w, enum wsp_io io);

/* Writes what commands queued on connections (called after a batch of
 * commands, so several sends go out in one write). */
void wsp_conn_flush_all(void);
/* The output link is congested (1) or drained (0): stop/resume reading. */
void wsp_conn_link_congested(int congested);
/* Closes every connection with 1001 (the BEAM went away). */
void wsp_conn_close_all(void);
/* Connections still alive (including ones finishing their close). */
size_t wsp_conn_count(void);
/* Frees everything at once (at exit). */
void wsp_conn_free_all(void);

#endif
