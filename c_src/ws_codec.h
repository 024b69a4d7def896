/*
 * ws_codec: the client side of RFC 6455, pure (no I/O, no globals).
 *
 * - URL parsing (ws:// and wss://)
 * - the upgrade request and the checks on the server's response
 * - an incremental frame parser that accepts bytes split anywhere
 * - frame headers and masking for sends
 * - incremental UTF-8 validation and close-payload checks
 *
 * Return conventions: functions returning int give >= 0 on success and a
 * negative WSC_E* code on failure; the meaning of a positive value is
 * documented on each prototype.
 */
#ifndef WS_CODEC_H
#define WS_CODEC_H

#include <stddef.h>
#include <stdint.h>

/* ---- errors (negative) ------------------------------------------------ */
enum {
    WSC_OK = 0,
    WSC_ENEED_MORE = -1,     /* not an error: feed more bytes */
    WSC_ENOSPC = -2,         /* output buffer too small */
    WSC_EURL = -100,         /* malformed URL: see errstr */
    WSC_EHTTP = -200,        /* malformed HTTP response */
    WSC_EHTTP_TOO_BIG = -201, /* response headers exceed the limit */
    WSC_EHANDSHAKE = -202,   /* 101 but the upgrade is invalid */
    WSC_EPROTO = -300,       /* frame protocol violation: see close_code */
};

/* WebSocket opcodes */
enum {
    WSC_OP_CONT = 0x0,
    WSC_OP_TEXT = 0x1,
    WSC_OP_BINARY = 0x2,
    WSC_OP_CLOSE = 0x8,
    WSC_OP_PING = 0x9,
    WSC_OP_PONG = 0xA,
};

/* ---- URL -------------------------------------------------------------- */
struct wsc_url {
    int tls;              /* 1 for wss:// */
    char host[256];       /* without brackets for IPv6 literals */
    int host_is_ip;       /* 1 if host is an IPv4 or IPv6 literal */
    int host_is_ipv6;     /* 1 if host was written as [v6] */
    uint16_t port;        /* explicit or 80 / 443 */
    int port_explicit;    /* 1 if the URL named the port */
    char path[4096];      /* path + '?' + query, at least "/"; no fragment */
};

/* Parses `url` (len bytes, need not be NUL-terminated).
 * Returns 0, or WSC_EURL with a static message in *errstr naming the
 * problem ("scheme must be ws or wss", "empty host", "bad port", ...).
 * Scheme is case-insensitive; host is lowercased; userinfo ("user@") is
 * refused; "host:" with an empty port means the default port; the path may
 * hold only visible ASCII (percent-encode the rest); "#fragment" is dropped. */
int wsc_parse_url(const char *url, size_t len, struct wsc_url *out,
                  const char **errstr);

/* ---- handshake -------------------------------------------------------- */
struct wsc_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

/* Base64 of 16 random bytes: 24 chars + NUL. */
void wsc_make_key(const uint8_t random16[16], char key_out[25]);

/* base64(SHA1(key + GUID)): 28 chars + NUL. */
void wsc_accept_for_key(const char *key, char accept_out[29]);

/* Writes the GET upgrade request into out (cap bytes).
 * host_header: value of Host ("example.com", "example.com:8080", "[::1]:9000").
 * protocols: offered subprotocols (may be 0 of them).
 * headers: extra headers; each name/value must be free of CR, LF and NUL
 * (checked: returns WSC_EHTTP with *errstr set if not) and must not be one the
 * handshake sets itself (Host, Upgrade, Connection, Sec-WebSocket-Key,
 * Sec-WebSocket-Version; checked case-insensitively, WSC_EHTTP).
 * Returns the request length (> 0), WSC_ENOSPC, or WSC_EHTTP.
 * Also refused (WSC_EHTTP): a path not starting with '/' or holding SP, CTL
 * or 8-bit bytes, a Host value with CR/LF/NUL, a key that is not visible
 * ASCII, a protocol or header name that is not an HTTP token. When cap is
 * larger than the request a NUL follows it (not counted). */
int wsc_build_request(char *out, size_t cap, const char *path,
                      const char *host_header, const char *key,
                      const char *const *protocols, size_t nprotocols,
                      const struct wsc_header *headers, size_t nheaders,
                      const char **errstr);

#define WSC_MAX_RESPONSE_HEADERS 100
#define WSC_MAX_RESPONSE_BYTES (64 * 1024)

struct wsc_response {
    int status;                 /* e.g. 101 */
    int version_minor;          /* the d of "HTTP/1.d" */
    size_t nheaders;
    struct wsc_header headers[WSC_MAX_RESPONSE_HEADERS]; /* point into buf */
    size_t header_bytes;        /* bytes of the head up to and including CRLFCRLF */
};

/* Parses one HTTP/1.x response head from buf[0..len). Pointers in *out point
 * into buf. Returns the number of bytes the head took (> 0) once
 * "\r\n\r\n" has arrived, WSC_ENEED_MORE before that, WSC_EHTTP_TOO_BIG when
 * len reaches WSC_MAX_RESPONSE_BYTES without an end ("response headers too
 * large ...") or the head holds more than WSC_MAX_RESPONSE_HEADERS headers
 * ("too many headers ..."), WSC_EHTTP on malformed input. *errstr says what
 * (NULL on success). Searches all of buf at every call: to read a response
 * as it arrives, use wsc_read_response. Bytes after the head are the
 * caller's. */
int wsc_parse_response(const char *buf, size_t len, struct wsc_response *out,
                       const char **errstr);

/* Reads the response to the upgrade request as it arrives, in pieces split
 * anywhere: where the previous call stopped searching for the end of the
 * head, the next one goes on (a terminator split across calls included), so
 * reading a head of n bytes costs O(n) in all, however it trickles in. The
 * head is parsed once, when its end has arrived. Interim 1xx responses other
 * than 101 (100 Continue, 103 Early Hints, ...) are parsed and skipped (RFC
 * 9110 15.2); the limits apply to each head's headers and to all the heads'
 * bytes together (WSC_MAX_RESPONSE_BYTES). */
struct wsc_response_reader {
    size_t head;        /* where the head being read starts in buf */
    size_t scanned;     /* no "\r\n\r\n" starts in buf[head..scanned) */
    unsigned interim;   /* interim responses skipped */
};

void wsc_response_reader_init(struct wsc_response_reader *rd);

/* buf[0..len) is every byte received so far (the bytes of the previous call
 * and maybe more; buf may have moved). Returns, once the final response's
 * head has arrived, the bytes it and the interim heads before it took
 * (> 0; *out describes the final head and points into buf); WSC_ENEED_MORE
 * before that; or the errors of wsc_parse_response (*errstr set; for the
 * first head that failed). The status line is checked as its bytes come
 * (WSC_EHTTP as soon as it cannot be "HTTP/1.d ddd"). */
int wsc_read_response(struct wsc_response_reader *rd, const char *buf, size_t len,
                      struct wsc_response *out, const char **errstr);

/* Checks a parsed 101 response against the request: HTTP/1.1 or later
 * (RFC 6455 4.1 needs an HTTP/1.1 upgrade), Upgrade: websocket,
 * Connection: upgrade (token list, case-insensitive), Sec-WebSocket-Accept
 * matching key, Sec-WebSocket-Protocol one of those offered (or absent),
 * no Sec-WebSocket-Extensions (none offered). On success returns 0 and sets
 * *protocol / *protocol_len to the chosen subprotocol (NULL/0 if none).
 * Returns WSC_EHANDSHAKE with *errstr naming the problem otherwise.
 * Call only when status == 101. */
int wsc_check_upgrade(const struct wsc_response *r, const char *key,
                      const char *const *protocols, size_t nprotocols,
                      const char **protocol, size_t *protocol_len,
                      const char **errstr);

/* The same, when extensions were offered (ext_offered = 1): a non-empty
 * Sec-WebSocket-Extensions header is allowed once, and its value returned
 * in *ext / *ext_len (NULL/0 if none) for the caller to check
 * (wsp_pmd_parse_answer). ext/ext_len may be NULL when ext_offered is 0. */
int wsc_check_upgrade_ext(const struct wsc_response *r, const char *key,
                          const char *const *protocols, size_t nprotocols,
                          const char **protocol, size_t *protocol_len,
                          int ext_offered, const char **ext, size_t *ext_len,
                          const char **errstr);

/* Case-insensitive header lookup; returns NULL if absent. */
const struct wsc_header *wsc_find_header(const struct wsc_response *r,
                                         const char *name);

/* ---- UTF-8 ------------------------------------------------------------ */
/* Incremental validator (RFC 3629: no overlongs, no surrogates, <= U+10FFFF).
 * state 0 = at a character boundary. */
typedef struct { uint32_t state; } wsc_utf8;

/* Returns 0 if the bytes are valid so far, -1 at the first invalid byte
 * (fail fast: a sequence that can no longer become valid). */
int wsc_utf8_feed(wsc_utf8 *u, const uint8_t *p, size_t len);
/* 1 if the validator sits at a character boundary. */
static inline int wsc_utf8_complete(const wsc_utf8 *u) { return u->state == 0; }

/* ---- frame parser ----------------------------------------------------- */
enum wsc_event_type {
    WSC_EV_DATA = 1,    /* a slice of a text/binary message's payload */
    WSC_EV_PING,        /* whole ping payload in data/len (<= 125) */
    WSC_EV_PONG,        /* whole pong payload */
    WSC_EV_CLOSE,       /* close: close_code (1005 if none), reason slice */
};

struct wsc_event {
    enum wsc_event_type type;
    int opcode;              /* DATA: WSC_OP_TEXT or WSC_OP_BINARY of the message */
    int message_start;       /* DATA: 1 on the first slice of a message */
    int message_end;         /* DATA: 1 on the last slice of a message
                                (may come with len == 0) */
    int compressed;          /* DATA: the message's first frame had RSV1
                                (permessage-deflate; only with allow_rsv1):
                                data is deflate bytes, not UTF-8 checked */
    const uint8_t *data;     /* DATA: points into the fed buffer; control
                                frames: into it too, or (a payload that came
                                in pieces) into the parser's own buffer,
                                valid until the next wsc_parser_next */
    size_t len;
    uint16_t close_code;     /* CLOSE */
};

struct wsc_parser {
    /* configuration */
    uint64_t max_message_size;   /* 0 = unlimited */
    /* private state (zeroed by wsc_parser_init; narrow types: one parser per
     * connection, and an idle connection's size matters, issue 16) */
    uint64_t remaining;          /* payload bytes of current frame left */
    uint64_t msg_len;            /* bytes of the open message so far */
    uint8_t *ctl;                /* a control frame's payload that came in
                                    pieces, gathered (malloc, 125 bytes; freed
                                    on the next call after its event) */
    const char *errstr;          /* static text naming the violation */
    wsc_utf8 utf8;
    /* set when wsc_parser_next returns WSC_EPROTO */
    uint16_t close_code;         /* 1002, 1007, 1009 (or 1011: out of memory) */
    uint8_t allow_rsv1;          /* permessage-deflate negotiated: RSV1 may
                                    be set on a data message's first frame */
    uint8_t hdr_len;             /* bytes of the current header gathered */
    uint8_t hdr[14];
    uint8_t in_frame;            /* header complete, payload pending */
    uint8_t fin, opcode;
    uint8_t msg_opcode;          /* opcode of the open fragmented message, 0 if none */
    uint8_t msg_started;         /* first slice of message delivered */
    uint8_t msg_compressed;      /* the open message had RSV1 */
    uint8_t closed;              /* a close frame was parsed: stop */
    uint8_t ctl_len;             /* bytes gathered in ctl */
};

/* Zeroes p (free what a used parser holds with wsc_parser_free first). */
void wsc_parser_init(struct wsc_parser *p, uint64_t max_message_size);
/* Frees what the parser holds (a control frame gathered in pieces). */
void wsc_parser_free(struct wsc_parser *p);

/* Consumes bytes from buf[0..len) until one event is ready.
 * Returns 1 with *ev filled (*consumed bytes used), WSC_ENEED_MORE when all
 * of buf was consumed without completing an event (*consumed == len), or
 * WSC_EPROTO (p->close_code, p->errstr set; parser is dead).
 * An event's data stays valid until the next call.
 * DATA events are emitted for every payload slice available (a frame's
 * payload may come as several slices when bytes arrive split); a message
 * whose frames are all in buf in one piece yields one slice with
 * message_start and message_end both set. Text is UTF-8 checked (fail fast)
 * across fragments. Checks: RSV bits (1002), unknown opcodes (1002), masked
 * frames from the server (1002), control frames fragmented or > 125 bytes
 * (1002), continuation without a message / new message inside one (1002),
 * RSV1 unless allow_rsv1, and then on control and continuation frames (1002),
 * non-minimal length encodings are accepted, 64-bit length with the top bit
 * set (1002), message length > max_message_size (1009; for a compressed
 * message max_message_size + 1/256 + 64 bytes on the wire, its inflated
 * size being the inflater's to bound), invalid UTF-8 in text
 * or close reason (1007), bad close payloads (1 byte, invalid codes: 1002).
 * After a CLOSE event the parser returns WSC_ENEED_MORE consuming nothing.
 * Details: an empty non-final fragment yields no event (message_start then
 * comes with the first slice that has bytes, or with the len 0 last slice);
 * the 125-byte control limit applies to the decoded length, so a control
 * frame with a non-minimal 16/64-bit length <= 125 is accepted; errors are
 * reported as soon as the offending byte arrives (header byte, UTF-8 byte,
 * or a length that would exceed max_message_size), never after buffering. */
int wsc_parser_next(struct wsc_parser *p, const uint8_t *buf, size_t len,
                    size_t *consumed, struct wsc_event *ev);

/* Payload bytes of the current frame not yet consumed (0 between frames). */
static inline uint64_t wsc_parser_frame_left(const struct wsc_parser *p)
{
    return p->in_frame ? p->remaining : 0;
}

/* Bytes still to come of the current frame's payload if that frame ends a
 * binary message (FIN), not compressed, and part of it may be skipped; 0
 * otherwise (a compressed message's bytes must go through the inflater). */
uint64_t wsc_parser_binary_tail(const struct wsc_parser *p);
/* Consumes n of those bytes without looking at them (the caller moved them
 * elsewhere: wsp_link's splice). Returns 0, or -1 if n is more than
 * wsc_parser_binary_tail. */
int wsc_parser_skip(struct wsc_parser *p, uint64_t n);

/* ---- frame writer ----------------------------------------------------- */
/* Writes a client frame header (mask bit set) for a payload of len bytes.
 * Returns its length: 6, 8 or 14. out must hold 14 bytes. */
size_t wsc_frame_header(uint8_t out[14], int opcode, int fin, uint64_t len,
                        const uint8_t mask[4]);

/* XORs data[0..len) with the mask, starting at mask offset `offset`
 * (offset counts payload bytes already masked). Word-at-a-time fast path. */
void wsc_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset);

/* Same, copying src into dst (dst == src is allowed; no other overlap). */
void wsc_mask_copy(uint8_t *dst, const uint8_t *src, size_t len,
                   const uint8_t mask[4], uint64_t offset);

/* 1 if code may be sent or received in a close frame (RFC 6455 7.4:
 * 1000-1003, 1007-1011, 1012-1014, 3000-4999). */
int wsc_close_code_valid(unsigned code);

#endif
