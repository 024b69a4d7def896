/*
 * wsp_proto: the BEAM <-> port term protocol (see docs/protocol.md).
 * Pure: decodes one {packet,4} payload into a command, encodes events into
 * ei_x_buff. No I/O. The grammar is written out at the top of ws_port.c.
 */
#ifndef WSP_PROTO_H
#define WSP_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <ei.h>

#include "ws_codec.h"
#include "wsp_backoff.h"
#include "wsp_deflate.h"
#include "wsp_proxy.h"

#define WSP_RAW_SEND 1      /* first byte of a raw send command */
#define WSP_RAW_DATA 1      /* first byte of a data event packet */
#define WSP_DATA_ENTRY_HDR 9 /* Id:32 Opcode:8 Len:32 */

#define WSP_DEFAULT_CONNECT_TIMEOUT_MS 15000u
#define WSP_DEFAULT_MAX_MESSAGE_SIZE (64ull * 1024 * 1024)
/* a data packet carries 1 + 9 header bytes and the message in a 32-bit length */
#define WSP_MAX_MESSAGE_SIZE (4294967295ull - 16)

enum wsp_cmd_type {
    WSP_CMD_CONNECT = 1,
    WSP_CMD_SEND,
    WSP_CMD_CLOSE,
    WSP_CMD_ACTIVE,
    WSP_CMD_STATS,
    WSP_CMD_RECONNECT,
};

/* Active mode, as gen_tcp's {active, _}. */
enum wsp_active_kind {
    WSP_ACTIVE_TRUE = 1,   /* unlimited */
    WSP_ACTIVE_FALSE,      /* credit := 0 */
    WSP_ACTIVE_ONCE,       /* credit := 1, no passive event */
    WSP_ACTIVE_N,          /* credit += n (n may be negative) */
};

struct wsp_connect_opts {          /* every pointer owned (malloc) */
    char *url;                     /* NUL-terminated */
    size_t url_len;
    struct wsc_header *headers;    /* name/value owned, NUL-terminated */
    size_t nheaders;
    char **protocols;              /* NUL-terminated strings */
    size_t nprotocols;
    uint32_t connect_timeout_ms;   /* default WSP_DEFAULT_CONNECT_TIMEOUT_MS */
    uint64_t max_message_size;     /* default WSP_DEFAULT_MAX_MESSAGE_SIZE */
    enum wsp_active_kind active;   /* default WSP_ACTIVE_TRUE */
    int64_t active_n;
    int verify;                    /* 1 = verify_peer (default), 0 = verify_none */
    char *cacertfile, *certfile, *keyfile, *server_name; /* NULL if absent */
    uint32_t ping_interval_ms;     /* 0 = off (default) */
    uint32_t idle_timeout_ms;      /* 0 = off (default) */
    struct wsp_backoff retry;      /* enabled = 0 unless {retry, [...]} given */
    uint32_t send_queue;           /* frames kept while reconnecting; 0 = off */
    struct wsp_pmd_config compress; /* permessage-deflate; enabled = 0: off */
    struct wsp_proxy_conf proxy;   /* type WSP_PROXY_NONE unless {proxy, ...} */
    int no_sni;                    /* {server_name_indication, disable} */
    uint8_t (*pins)[32];           /* {pins, [<<SHA256:32/binary>>]}: the SHA-256
                                      of an SPKI in the server's chain must be one */
    size_t npins;
    uint8_t **cacerts;             /* {cacerts, [DER]}: trusted CAs in memory */
    size_t *cacert_lens;
    size_t ncacerts;
    int min_version, max_version;  /* {versions, [...]}: TLS1_2_VERSION / TLS1_3_VERSION; 0 = default */
    char *ciphers, *ciphersuites;  /* OpenSSL lists for TLS 1.2 / 1.3; NULL = default */
    uint8_t **certs;               /* {cert, [DER]}: client certificate (leaf first,
                                      the rest sent as its chain) */
    size_t *cert_lens;
    size_t ncerts;
    uint8_t *key;                  /* {key, PEM | DER}: client private key (wiped
                                      when freed) */
    size_t key_len;
    uint8_t *password;             /* {password, Bin}: for an encrypted key or
                                      keyfile (wiped when freed); NULL: none */
    size_t password_len;
    int no_session_reuse;          /* {reuse_sessions, false}: no TLS resumption */
};

struct wsp_cmd {
    enum wsp_cmd_type type;
    uint32_t id;
    /* SEND: payload points into the decoded packet (valid while it is) */
    int opcode;                    /* WSC_OP_TEXT/BINARY/PING/PONG */
    const uint8_t *payload;
    size_t payload_len;
    /* CLOSE: reason points into the packet */
    unsigned close_code;
    const uint8_t *reason;
    size_t reason_len;
    /* ACTIVE */
    enum wsp_active_kind active;
    int64_t active_n;
    /* RECONNECT */
    uint32_t delay_ms;
    /* CONNECT: owned, release with wsp_cmd_free */
    struct wsp_connect_opts *connect;
};

/* Decodes one packet (without its 4-byte length). Returns 0 with *out
 * filled, or -1 with: *what = "badarg" (malformed), "bad_option" (a connect
 * option is unknown or has a bad value); err (NUL-terminated, errcap bytes)
 * naming the problem, e.g. "connect: option connect_timeout must be a
 * positive integer, got -5" or "unknown command foo/2"; out->id set to the
 * command's id when it could be read (0 otherwise). Never crashes on any
 * input: lengths are checked before every read.
 * Details of the implementation others may rely on:
 * - what may be NULL; err may be NULL when errcap is 0. On success *what is
 *   NULL. Messages longer than errcap are truncated (still NUL-terminated).
 * - The whole term is validated first (bounded walk, nesting deeper than
 *   WSP_MAX_TERM_DEPTH refused); pids, refs, funs, bitstrings, compressed
 *   terms etc. are refused as badarg "unsupported term type (tag N) ...".
 * - Strings always arrive as binaries: an Erlang string/list where a binary
 *   is expected is refused. url, protocols, cacertfile, certfile, keyfile and
 *   server_name must be non-empty and free of NUL; protocols must be HTTP
 *   tokens; header names non-empty (CR/LF/NUL in headers is left to
 *   wsc_build_request).
 * - cert: a list of 1..16 non-empty binaries; key: a non-empty binary of at
 *   most WSP_MAX_KEY_LEN bytes; password: 1..WSP_MAX_PASSWORD_LEN bytes.
 *   Error messages never quote the value of key or password.
 * - A connect option given twice: the later one wins.
 * - active integers (option and command) must lie in INT32 range.
 * - close: Code must satisfy wsc_close_code_valid; Reason <= 123 bytes and
 *   valid UTF-8. ping/pong payloads (term or raw) <= 125 bytes. Text
 *   payloads are not UTF-8 checked here.
 * - On failure out->connect is NULL (nothing to free); on success call
 *   wsp_cmd_free (a no-op for commands other than CONNECT). */
#define WSP_MAX_TERM_DEPTH 16
#define WSP_MAX_KEY_LEN 65536
#define WSP_MAX_PASSWORD_LEN 1024
#define WSP_MAX_CERT_CHAIN 16
int wsp_decode_command(const uint8_t *buf, size_t len, struct wsp_cmd *out,
                       const char **what, char *err, size_t errcap);

/* Frees what a decoded CONNECT owns (safe on any decoded cmd, and twice). */
void wsp_cmd_free(struct wsp_cmd *cmd);
void wsp_connect_opts_free(struct wsp_connect_opts *o);

/* ---- events: each resets x (ei_x_new_with_version) and encodes one term --
 * x must be zeroed (ei_x_buff x = {0}) or initialised with ei_x_new; its
 * buffer is reused, so one ei_x_buff can serve every event. Return 0:
 * x->buff[0..x->index) is the packet (version byte included). Return -1: out
 * of memory or a length beyond INT_MAX; x->index is 0. ei_x_free(x) when
 * done with it. */
/* {up, Id, #{status => S, headers => [{N, V}], protocol => P | undefined}},
 * plus tls_resumed => true | false when tls_resumed >= 0 (wss: whether the
 * handshake resumed a TLS session) */
int wsp_enc_up(ei_x_buff *x, uint32_t id, int status,
               const struct wsc_header *headers, size_t nheaders,
               const char *protocol, size_t protocol_len, int tls_resumed);
/* {closed, Id, Atom} e.g. econnrefused, eof, timeout, idle_timeout */
int wsp_enc_closed_atom(ei_x_buff *x, uint32_t id, const char *atom);
/* {closed, Id, {Kind, Code, Text}}: Kind = remote | local | protocol_error */
int wsp_enc_closed_code(ei_x_buff *x, uint32_t id, const char *kind,
                        unsigned code, const char *text, size_t text_len);
/* {closed, Id, {Kind, Detail}}: Kind = tls | dns | bad_handshake |
 * invalid_url | bad_option | socket (detail as binary) */
int wsp_enc_closed_detail(ei_x_buff *x, uint32_t id, const char *kind,
                          const char *detail, size_t detail_len);
/* {closed, Id, {dns, nxdomain}} style: {Kind, Atom} */
int wsp_enc_closed_tag_atom(ei_x_buff *x, uint32_t id, const char *kind,
                            const char *atom);
/* {closed, Id, {http_status, Status, [{N, V}]}} */
int wsp_enc_closed_http(ei_x_buff *x, uint32_t id, int status,
                        const struct wsc_header *headers, size_t nheaders);
/* {closed, Id, {proxy, Atom}} e.g. econnrefused, eof */
int wsp_enc_closed_proxy_atom(ei_x_buff *x, uint32_t id, const char *atom);
/* {closed, Id, {proxy, {Kind, Atom}}} if atom, else {closed, Id, {proxy,
 * {Kind, Detail}}} (Kind e.g. socks5, dns, bad_response; Detail a binary) */
int wsp_enc_closed_proxy_tag(ei_x_buff *x, uint32_t id, const char *kind, const char *atom,
                             const char *detail, size_t detail_len);
/* {closed, Id, {proxy, {http_status, Status, [{N, V}]}}} */
int wsp_enc_closed_proxy_http(ei_x_buff *x, uint32_t id, int status,
                              const struct wsc_header *headers, size_t nheaders);
/* {error, Id, {What, Detail}} */
int wsp_enc_error(ei_x_buff *x, uint32_t id, const char *what,
                  const char *detail, size_t detail_len);
/* {Tag, Id}: busy, ready */
int wsp_enc_tag_id(ei_x_buff *x, const char *tag, uint32_t id);
/* {passive, Id} */
int wsp_enc_passive(ei_x_buff *x, uint32_t id);
/* {pong, Id, RttMicros} */
int wsp_enc_pong(ei_x_buff *x, uint32_t id, int64_t rtt_us);

struct wsp_stats {
    const char *state;             /* atom: connecting | open | closing */
    uint64_t bytes_in, bytes_out, msgs_in, msgs_out;
    int64_t last_rtt_us;           /* -1 if none */
    int64_t connected_us;          /* time since up, -1 if not up */
    int64_t credit;                /* -1 = unlimited */
    uint64_t attempt;              /* failed attempts since the last up */
    uint64_t reconnects;           /* times it came back up after a loss */
    uint64_t msgs_spliced;         /* of msgs_in: moved socket -> BEAM by splice(2) */
    const struct wsp_pmd *pmd;     /* permessage-deflate negotiated, or NULL */
    int tls_resumed;               /* 1/0: the open TLS connection resumed a
                                      session or not; -1: no TLS connection */
};
/* Turns an encoded {closed, Id, Reason} into
 * {down, Id, Reason, #{attempt => A, delay_ms => D | manual, unsent_bytes => U}}
 * (delay_ms < 0 encodes manual: the port waits for {reconnect, Id, Ms}). */
int wsp_enc_closed_to_down(const ei_x_buff *closed, ei_x_buff *x, uint64_t attempt,
                           int64_t delay_ms, uint64_t unsent_bytes);
/* {stats, Id, #{tls_resumed, attempt, reconnects, state, bytes_in, bytes_out, msgs_in,
 *               msgs_out, rtt_us, connected_us, credit, msgs_spliced, compression}}
 * (tls_resumed, rtt_us / connected_us undefined when -1; credit infinity when -1; compression false, or
 * #{server_max_window_bits, client_max_window_bits, server_no_context_takeover,
 *   client_no_context_takeover, bytes_in_wire, bytes_in_plain, bytes_out_wire,
 *   bytes_out_plain} when permessage-deflate was negotiated) */
int wsp_enc_stats(ei_x_buff *x, uint32_t id, const struct wsp_stats *s);

/* {stats, 0, #{connections => C, lingering => L}}: the program's answer to
 * {stats, 0}. C: connections whose final event is not sent yet (their ids
 * are in use); L: finished ones whose socket still drains (at most 1 s). */
int wsp_enc_program_stats(ei_x_buff *x, uint64_t connections, uint64_t lingering);

/* Writes the 9-byte data entry header <<Id:32, Opcode:8, Len:32>>. */
void wsp_data_entry_header(uint8_t out[WSP_DATA_ENTRY_HDR], uint32_t id,
                           int opcode, uint32_t len);

#endif
