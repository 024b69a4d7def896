/*
 * wsp_deflate: permessage-deflate (RFC 7692) for the client side, as a
 * transform between the codec (frames) and the connection (messages).
 * Pure apart from zlib: no I/O, no globals.
 *
 * - the offer (the Sec-WebSocket-Extensions value of the upgrade request)
 * - the server's answer, checked against the offer (RFC 7692 section 7)
 * - inflate of a message's compressed bytes as they come (fragments, the
 *   0x00 0x00 0xff 0xff tail), bounded by max_message_size: no more than
 *   max_message_size + 1 bytes are ever produced for one message, however
 *   small its compressed form (decompression bombs end with 1009)
 * - deflate of a message to send, with the negotiated window
 *
 * Memory: no zlib stream exists until it is needed. The inflate stream is
 * created by the first compressed message and, when the server does not
 * take its context over, freed after each message; the deflate stream is
 * created by the first compressed send and, when we do not take context
 * over, freed after each message. windowBits and memLevel follow the
 * agreement (a smaller window costs less).
 */
#ifndef WSP_DEFLATE_H
#define WSP_DEFLATE_H

#include <stddef.h>
#include <stdint.h>

#include "ws_codec.h"
#include "wsp_buf.h"

/* What the user asked for (the compress option). */
struct wsp_pmd_config {
    int enabled;                      /* 0: no offer */
    int client_max_window_bits;       /* 0: offered without a value; else 9..15 */
    int server_max_window_bits;       /* 0: not offered; else 8..15 */
    int client_no_context_takeover;   /* offered if 1 */
    int server_no_context_takeover;   /* offered if 1 */
    int level;                        /* zlib level 0..9, default 6 */
    int mem_level;                    /* zlib memLevel 1..9; 0: from the window */
    uint32_t threshold;               /* messages shorter go uncompressed */
};

#define WSP_PMD_DEFAULT_LEVEL 6
#define WSP_PMD_DEFAULT_THRESHOLD 64u

void wsp_pmd_config_default(struct wsp_pmd_config *c);

/* Parses a comma-separated list of parameters as the CLI takes them
 * ("server_no_context_takeover,client_max_window_bits=10,level=1"; empty:
 * the defaults) into c, turning compression on. Keys and ranges as the
 * compress option's. Returns 0, or -1 with a message in err (errcap bytes)
 * naming the parameter. */
int wsp_pmd_config_parse(const char *spec, struct wsp_pmd_config *c, char *err, size_t errcap);

/* What was negotiated (the answer, checked). */
struct wsp_pmd_agreed {
    int server_max_window_bits;       /* the server's window: 8..15 */
    int client_max_window_bits;       /* ours: 8..15 */
    int server_no_context_takeover;
    int client_no_context_takeover;
};

/* Writes the offer, e.g. "permessage-deflate; client_max_window_bits", into
 * out (cap bytes, NUL-terminated). Returns its length, or -1 if cap is too
 * small. */
int wsp_pmd_offer(const struct wsp_pmd_config *c, char *out, size_t cap);

/* Checks the server's Sec-WebSocket-Extensions value v[0..n) against the
 * offer c (RFC 7692 7.1): one extension, permessage-deflate, each parameter
 * known, at most once, with a value only where one belongs (a decimal
 * 8..15 without leading zeroes, bare or quoted), server_max_window_bits
 * no larger than offered, and server_max_window_bits and
 * server_no_context_takeover present when offered (a server accepts them by
 * answering them). client_max_window_bits is always offered.
 * Returns 0 with *out filled, or -1 with *errstr a static text naming the
 * parameter ("permessage-deflate answer: client_max_window_bits was not
 * offered"). */
int wsp_pmd_parse_answer(const struct wsp_pmd_config *c, const char *v, size_t n,
                         struct wsp_pmd_agreed *out, const char **errstr);

struct wsp_pmd_stream; /* a zlib stream, allocated lazily */

struct wsp_pmd {
    struct wsp_pmd_agreed agreed;
    int level, mem_level;
    uint32_t threshold;
    uint64_t max_message_size;        /* 0 = unlimited */
    struct wsp_pmd_stream *inf, *def;
    /* the message being inflated */
    uint64_t msg_out;                 /* bytes produced so far */
    int msg_text;
    wsc_utf8 utf8;
    /* counters: compressed (wire payload) and uncompressed bytes */
    uint64_t in_wire, in_plain, out_wire, out_plain;
};

void wsp_pmd_init(struct wsp_pmd *p, const struct wsp_pmd_config *c,
                  const struct wsp_pmd_agreed *a, uint64_t max_message_size);
/* Frees the zlib streams (safe twice). */
void wsp_pmd_free(struct wsp_pmd *p);

/* Starts inflating a message (its first frame had RSV1). */
void wsp_pmd_inflate_begin(struct wsp_pmd *p, int text);

/* Inflates in[0..n) of the message, appending to out; last = this is the
 * message's final piece (the 00 00 ff ff tail is added). Text is UTF-8
 * checked on the inflated bytes as they come. Returns 0, or -1 with *code
 * (1007: corrupt or truncated deflate data or invalid UTF-8; 1009: the
 * message inflates past max_message_size, or out of memory) and *errstr. */
int wsp_pmd_inflate(struct wsp_pmd *p, const uint8_t *in, size_t n, int last,
                    struct wsp_buf *out, unsigned *code, const char **errstr);

/* 1 if a message of len bytes is to be sent compressed (>= threshold). */
int wsp_pmd_should_compress(const struct wsp_pmd *p, size_t len);

/* Deflates one whole message in[0..n) into out (appended; the trailing
 * 00 00 ff ff removed, RFC 7692 7.2.1). Returns 0, or -1 (out of memory). */
int wsp_pmd_deflate(struct wsp_pmd *p, const uint8_t *in, size_t n, struct wsp_buf *out);

/* 1 if a zlib stream is allocated (for tests and stats). */
int wsp_pmd_has_inflater(const struct wsp_pmd *p);
int wsp_pmd_has_deflater(const struct wsp_pmd *p);

#endif
