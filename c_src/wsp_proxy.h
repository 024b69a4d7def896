/*
 * wsp_proxy: the handshake with a proxy before the WebSocket's own (HTTP
 * CONNECT with Basic auth, SOCKS5 of RFC 1928 with the username/password
 * method of RFC 1929). Pure: builds the bytes to send, parses what comes
 * back; no I/O. wsp_conn drives it between "TCP connected to the proxy" and
 * the TLS handshake / upgrade with the target, which then run inside the
 * tunnel.
 *
 * SOCKS5 asks the proxy to connect to the target by name (ATYP 3): the name
 * is resolved by the proxy, never here (socks5h:// and socks5:// are the
 * same). An IP literal target is sent as ATYP 1 or 4.
 */
#ifndef WSP_PROXY_H
#define WSP_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include "ws_codec.h"

enum wsp_proxy_type {
    WSP_PROXY_NONE = 0,
    WSP_PROXY_HTTP,      /* HTTP CONNECT */
    WSP_PROXY_SOCKS5,
};

/* A proxy as the connect option gives it (strings owned by the options). */
struct wsp_proxy_conf {
    enum wsp_proxy_type type;
    char *host;          /* NUL-terminated; an IPv6 literal without brackets */
    uint16_t port;
    char *username;      /* NULL: no authentication */
    char *password;      /* NULL only when username is */
};

enum wsp_proxy_step {
    WSP_PX_HTTP_RESPONSE = 1, /* CONNECT sent, reading the response head */
    WSP_PX_SOCKS_METHOD,      /* greeting sent, reading the chosen method */
    WSP_PX_SOCKS_AUTH,        /* username/password sent, reading the status */
    WSP_PX_SOCKS_REPLY,       /* CONNECT request sent, reading the reply */
    WSP_PX_DONE,
};

struct wsp_proxy_hs {
    enum wsp_proxy_step step;
    const struct wsp_proxy_conf *conf;
    const char *target_host;  /* as in the URL (IPv6 without brackets) */
    uint16_t target_port;
    struct wsc_response_reader rr;
};

/* Return values of wsp_proxy_start / wsp_proxy_input. */
enum {
    WSP_PX_OK = 0,            /* done: the tunnel is up */
    WSP_PX_MORE = 1,          /* out holds bytes to send (maybe none); then
                                 feed what comes back */
    WSP_PX_FAIL = -1,         /* see struct wsp_proxy_fail */
    WSP_PX_NOSPC = -2,        /* out too small (WSP_PROXY_OUT_MAX is enough) */
};

/* The largest request: CONNECT with a 255-byte name and 255+255-byte
 * credentials in base64, or SOCKS5 auth of 1 + 1 + 255 + 1 + 255 bytes. */
#define WSP_PROXY_OUT_MAX 1400

enum wsp_proxy_fail_kind {
    WSP_PXF_HTTP = 1,   /* the proxy answered CONNECT with a non-2xx status:
                           resp holds it (pointers into the input) */
    WSP_PXF_SOCKS,      /* a SOCKS5 refusal: atom names it (host_unreachable,
                           auth_failed, no_acceptable_methods, ...) */
    WSP_PXF_BAD,        /* malformed answer or a request that cannot be
                           made: detail says what */
};

struct wsp_proxy_fail {
    enum wsp_proxy_fail_kind kind;
    const char *atom;        /* WSP_PXF_SOCKS, static */
    const char *detail;      /* WSP_PXF_BAD, static */
    struct wsc_response resp; /* WSP_PXF_HTTP */
};

/* Starts the handshake: writes the first request into out (cap bytes),
 * *outlen its length. Returns WSP_PX_MORE, or WSP_PX_FAIL (kind BAD: the
 * target name or credentials are too long for the protocol, or hold CR/LF
 * for HTTP) or WSP_PX_NOSPC. conf and target_host must outlive hs. */
int wsp_proxy_start(struct wsp_proxy_hs *hs, const struct wsp_proxy_conf *conf,
                    const char *target_host, uint16_t target_port, uint8_t *out,
                    size_t cap, size_t *outlen, struct wsp_proxy_fail *fail);

/* in[0..len) is every byte received since the last call that consumed any
 * (for HTTP: since the start; the caller keeps the unconsumed bytes and
 * feeds them again with what arrives next). Returns:
 *  WSP_PX_MORE with *consumed = 0 and *outlen = 0: incomplete, feed more;
 *  WSP_PX_MORE with *consumed > 0: one answer taken, out holds the next
 *    request (*outlen bytes) to send; bytes after *consumed are the caller's;
 *  WSP_PX_OK with *consumed: the tunnel is up; bytes after *consumed came
 *    from the target through the tunnel;
 *  WSP_PX_FAIL: *fail says why. */
int wsp_proxy_input(struct wsp_proxy_hs *hs, const uint8_t *in, size_t len, size_t *consumed,
                    uint8_t *out, size_t cap, size_t *outlen, struct wsp_proxy_fail *fail);

/* Parses a proxy URL as the CLI's --proxy takes it (ws_port_proxy.erl does
 * the same for the BEAM): "http://[user[:pass]@]host[:port]",
 * "socks5://..." or "socks5h://..." (the same), scheme any case, port 1080
 * by default, user and password percent-decoded (at most 255 bytes each),
 * host a name or an IPv6 literal in brackets; nothing after the port but an
 * optional "/". Fills *out with malloc'ed strings (free them with
 * wsp_proxy_conf_free) and returns 0, or -1 with *err naming the problem
 * (static; never quoting the password). */
int wsp_proxy_parse_url(const char *url, struct wsp_proxy_conf *out, const char **err);
void wsp_proxy_conf_free(struct wsp_proxy_conf *c);

/* The atom naming a SOCKS5 reply code (RFC 1928 section 6), e.g. 4 ->
 * "host_unreachable"; unassigned codes -> "unknown_reply". */
const char *wsp_proxy_socks5_reply_atom(unsigned rep);

#endif
