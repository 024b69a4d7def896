/*
 * wsp_link: the port link to the BEAM. {packet,4} framing on stdin/stdout,
 * an output queue with high/low watermarks, and batching of data events
 * (several messages in one packet, see docs/protocol.md).
 * Knows nothing of connections: packets in go to a handler, events out come
 * from whoever calls the wsp_link_* emitters.
 */
#ifndef WSP_LINK_H
#define WSP_LINK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <ei.h>

#include "wsp_buf.h"
#include "wsp_loop.h"

struct wsp_link_hooks {
    /* one packet from the BEAM (payload without its 4-byte length) */
    void (*on_packet)(const uint8_t *p, size_t len);
    /* stdin reached EOF (or failed): the BEAM is gone */
    void (*on_eof)(void);
    /* the output queue crossed the high (congested = 1) or low (0) mark */
    void (*on_congestion)(int congested);
    /* optional (NULL: off): the first bytes on stdin are not {packet,4}
     * commands from the BEAM: a length prefix over WSP_LINK_MAX_PACKET, an
     * empty packet, a payload starting with neither 131 (a term) nor 1 (a
     * raw packet), or EOF inside the first packet. Called instead of
     * answering with an error event (a person typing, or a pipe of text);
     * stdin is not read any more. head: the first bytes read (up to 8). */
    void (*on_not_protocol)(const uint8_t *head, size_t n);
};

/* Reading from sockets stops once this much waits for the BEAM, and goes on
 * when it has all been written: data then waits in the kernel's socket
 * buffers (TCP pushes back) rather than in ours, and most large messages go
 * to the pipe straight from the receive buffer. */
#define WSP_LINK_HIGH_WATER (256u * 1024)
#define WSP_LINK_LOW_WATER 0u
#define WSP_LINK_MAX_PACKET (1u << 30)       /* larger commands are refused */
#define WSP_LINK_BATCH_BYTES (64u * 1024)    /* data packets grow to this */
#define WSP_LINK_DIRECT_BYTES (16u * 1024)   /* larger messages skip the queue */
#define WSP_LINK_FLUSH_BYTES (16u * 1024)    /* see wsp_link_flush_batched */

/* Sets up stdin and the event output. With events_socket (a unix socket
 * path, or '@' first for the abstract namespace) the first packet on stdout
 * is {hello, socket} and every later event goes to that socket, or {hello,
 * stdout} if it cannot be reached, or {hello, no_abstract} for an abstract
 * name in a build without them (WSP_HAVE_ABSTRACT 0: events on stdout);
 * without, events go to stdout and no hello is sent. Without splice
 * (WSP_HAVE_SPLICE 0) there is no pipe: wsp_link_splice_room is always 0. */
int wsp_link_init(const struct wsp_link_hooks *hooks, const char *events_socket);
int wsp_link_on_io(struct wsp_watch *w, enum wsp_io io);

/* Queues one term event (x->buff[0..x->index)). */
void wsp_link_event(const ei_x_buff *x);
/* Queues one message as a data entry, batched with neighbours. */
int wsp_link_data(uint32_t id, int opcode, const uint8_t *payload, size_t len);
/* Writes what it can now; asks the loop for more when stdout is full. */
void wsp_link_flush(void);
/* After one connection's I/O, inside a loop turn: flushes only once
 * WSP_LINK_FLUSH_BYTES are queued (or a splice is under way); the rest goes
 * with the wsp_link_flush at the end of the turn. Many connections waking
 * with a small message each then cost one write per batch, not one write
 * (and one wake-up of the BEAM) per message. */
void wsp_link_flush_batched(void);
/* 1 while the output queue is above the high watermark (until below low). */
int wsp_link_congested(void);
/* Bytes queued for stdout. */
size_t wsp_link_queued(void);
/* Pauses/resumes reading commands from stdin (input backpressure). */
void wsp_link_pause_input(int paused);
/* Blocks until everything queued is written (used at exit). */
void wsp_link_drain_blocking(void);
/* Stops reading stdin (at exit). */
void wsp_link_close(void);

/* Zero-copy messages. A connection that has the rest of one large binary
 * message still in its (plain TCP) socket moves it into the link's pipe
 * with splice(2) behind the packet header and the bytes it had already
 * read; once the message is whole the pipe's bytes are spliced to the BEAM
 * after what is queued before them. The payload never passes through our
 * memory. One message at a time is in the pipe, and nothing of it leaves
 * before all of it is there: a connection that fails half-way corrupts
 * nothing.
 *
 * wsp_link_splice_room: how many bytes the pipe can take for a new message
 * (0: not possible now: pipe busy, in-process sink, no pipe). A claimant
 * only waiting for more of its message is preempted by this call (see
 * wsp_link_splice_claim): call it only with a message to splice. Then
 * wsp_link_splice_claim (len: the whole message), wsp_link_splice_in until
 * it is whole, and wsp_link_splice_commit; or wsp_link_splice_take (the
 * pipe filled up before the message did: the payload bytes in it are read
 * back into a buffer, the caller goes on the ordinary way) or
 * wsp_link_splice_abort (drop them). */
#define WSP_LINK_SPLICE_MAX (1024u * 1024)
#define WSP_SPLICE_AGAIN (-1)   /* socket empty for now */
#define WSP_SPLICE_FULL (-2)    /* the pipe took all it can */
#define WSP_SPLICE_ERROR (-3)   /* socket error: errno */
size_t wsp_link_splice_room(void);
/* Returns 0, or -1 if the header did not fit (nothing claimed then).
 * preempt(owner) is called (from wsp_link_splice_room, by another
 * connection) to make the claimant give the pipe up while it waits for more
 * of its message: it must call wsp_link_splice_take there. */
int wsp_link_splice_claim(uint32_t id, int opcode, const uint8_t *have, size_t nhave,
                          size_t len, void (*preempt)(void *), void *owner);
/* Moves up to n bytes from fd; returns how many, 0 at EOF, or WSP_SPLICE_* */
ssize_t wsp_link_splice_in(int fd, size_t n);
void wsp_link_splice_commit(void);
int wsp_link_splice_take(struct wsp_buf *into);
void wsp_link_splice_abort(void);

/* In-process delivery, for the command line client (wsp_cli): when a sink is
 * set, wsp_link_event and wsp_link_data hand each event to it at once instead
 * of queueing it for stdout, and wsp_link_pause_input is forwarded to
 * on_pause_input; stdin and stdout are never touched (do not call
 * wsp_link_init then). The callbacks run inside the connection layer: they
 * must not call back into wsp_conn (defer that to after lws_service). */
struct wsp_link_sink {
    /* one term event, version byte included (as a packet's payload) */
    void (*on_event)(const uint8_t *term, size_t len);
    /* one whole message (opcode WSC_OP_TEXT or WSC_OP_BINARY) */
    void (*on_data)(uint32_t id, int opcode, const uint8_t *payload, size_t len);
    /* input backpressure from the connection layer; may be NULL */
    void (*on_pause_input)(int paused);
};
/* Sets the sink (copied), or clears it with NULL. */
void wsp_link_set_sink(const struct wsp_link_sink *sink);

#endif
