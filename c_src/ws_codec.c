/*
 * ws_codec: the client side of RFC 6455. See ws_codec.h for the contract of
 * every function. Pure: no I/O, no mutable globals, no allocation on the hot
 * paths (the frame parser, masking and UTF-8 never allocate).
 */
#include "ws_codec.h"

#include <arpa/inet.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

/* ======================================================================
 * small helpers
 * ====================================================================== */

static int lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static int ieq(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return 0;
    for (size_t i = 0; i < alen; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return 0;
    return 1;
}

static int ieq_z(const char *a, size_t alen, const char *z)
{
    return ieq(a, alen, z, strlen(z));
}

/* RFC 7230 3.2.6 tchar */
static int is_tchar(int c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int is_token(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i]))
            return 0;
    return 1;
}

/* 1 if s[0..n) holds no CR, LF or NUL */
static int is_line_safe(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
            return 0;
    return 1;
}

/* ======================================================================
 * URL (RFC 6455 3, RFC 3986)
 *   ws-URI  = "ws:" "//" host [ ":" port ] path [ "?" query ]
 *   wss-URI = "wss:" "//" host [ ":" port ] path [ "?" query ]
 * The fragment is not part of a WebSocket URI; we strip it.
 * ====================================================================== */

static int url_fail(const char **errstr, const char *msg)
{
    if (errstr)
        *errstr = msg;
    return WSC_EURL;
}

/* reg-name characters we accept in a DNS host name */
static int is_host_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}

/* characters allowed in path + query: visible ASCII (RFC 3986 pchar, '/' and
 * '?' and the characters browsers pass through); never SP, CTL or 8-bit */
static int is_path_char(int c)
{
    return c > 0x20 && c < 0x7f;
}

int wsc_parse_url(const char *url, size_t len, struct wsc_url *out,
                  const char **errstr)
{
    const char *s = url, *end = url + len;

    memset(out, 0, sizeof *out);
    if (len >= 5 && ieq(s, 5, "ws://", 5)) {
        out->tls = 0;
        s += 5;
    } else if (len >= 6 && ieq(s, 6, "wss://", 6)) {
        out->tls = 1;
        s += 6;
    } else {
        return url_fail(errstr, "scheme must be ws or wss");
    }

    /* authority = up to the first '/', '?' or '#' */
    const char *auth = s;
    while (s < end && *s != '/' && *s != '?' && *s != '#')
        s++;
    const char *auth_end = s;
    if (memchr(auth, '@', (size_t)(auth_end - auth)))
        return url_fail(errstr, "userinfo (user@) is not supported");

    const char *h = auth, *h_end, *port_s = NULL;
    if (h < auth_end && *h == '[') {
        const char *rb = memchr(h, ']', (size_t)(auth_end - h));
        if (!rb)
            return url_fail(errstr, "unterminated IPv6 literal");
        h_end = rb;
        h++;
        if (rb + 1 < auth_end) {
            if (rb[1] != ':')
                return url_fail(errstr, "junk after IPv6 literal");
            port_s = rb + 2;
        }
        size_t hl = (size_t)(h_end - h);
        if (hl == 0)
            return url_fail(errstr, "empty host");
        if (hl >= 64) /* longest textual IPv6 address is 45 */
            return url_fail(errstr, "bad IPv6 literal");
        char tmp[64];
        unsigned char bin[16];
        memcpy(tmp, h, hl);
        tmp[hl] = '\0';
        if (inet_pton(AF_INET6, tmp, bin) != 1)
            return url_fail(errstr, "bad IPv6 literal");
        for (size_t i = 0; i < hl; i++) /* lowercased like names ("::1F") */
            out->host[i] = (char)lower((unsigned char)h[i]);
        out->host[hl] = '\0';
        out->host_is_ip = 1;
        out->host_is_ipv6 = 1;
    } else {
        const char *colon = memchr(h, ':', (size_t)(auth_end - h));
        h_end = colon ? colon : auth_end;
        if (colon)
            port_s = colon + 1;
        size_t hl = (size_t)(h_end - h);
        if (hl == 0)
            return url_fail(errstr, "empty host");
        if (hl >= sizeof out->host)
            return url_fail(errstr, "host too long");
        for (size_t i = 0; i < hl; i++) {
            if (!is_host_char((unsigned char)h[i]))
                return url_fail(errstr, "bad character in host");
            out->host[i] = (char)lower((unsigned char)h[i]);
        }
        out->host[hl] = '\0';
        unsigned char bin[4];
        out->host_is_ip = inet_pton(AF_INET, out->host, bin) == 1;
    }

    out->port = out->tls ? 443 : 80;
    if (port_s && port_s < auth_end) { /* "host:" alone means the default */
        unsigned long v = 0;
        for (const char *q = port_s; q < auth_end; q++) {
            if (*q < '0' || *q > '9')
                return url_fail(errstr, "bad port");
            v = v * 10 + (unsigned long)(*q - '0');
            if (v > 65535)
                return url_fail(errstr, "bad port");
        }
        if (v == 0)
            return url_fail(errstr, "bad port");
        out->port = (uint16_t)v;
        out->port_explicit = 1;
    }

    /* path [ "?" query ], fragment dropped */
    const char *path = auth_end;
    const char *frag = memchr(path, '#', (size_t)(end - path));
    const char *path_end = frag ? frag : end;
    size_t pl = (size_t)(path_end - path);
    size_t o = 0;
    if (pl == 0 || *path != '/')
        out->path[o++] = '/';
    if (o + pl >= sizeof out->path)
        return url_fail(errstr, "path too long");
    for (size_t i = 0; i < pl; i++) {
        if (!is_path_char((unsigned char)path[i]))
            return url_fail(errstr, "bad character in path");
        out->path[o++] = path[i];
    }
    out->path[o] = '\0';
    if (errstr)
        *errstr = NULL;
    return WSC_OK;
}

/* ======================================================================
 * handshake (RFC 6455 4.1, 4.2.2)
 * ====================================================================== */

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

void wsc_make_key(const uint8_t random16[16], char key_out[25])
{
    EVP_EncodeBlock((unsigned char *)key_out, random16, 16);
}

void wsc_accept_for_key(const char *key, char accept_out[29])
{
    unsigned char md[SHA_DIGEST_LENGTH];
    size_t kl = strlen(key);
    char buf[128];

    if (kl + sizeof ws_guid <= sizeof buf) {
        memcpy(buf, key, kl);
        memcpy(buf + kl, ws_guid, sizeof ws_guid - 1);
        SHA1((const unsigned char *)buf, kl + sizeof ws_guid - 1, md);
    } else { /* not a key we made; still answer correctly */
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        unsigned int mdl = 0;
        if (!c || !EVP_DigestInit_ex(c, EVP_sha1(), NULL) ||
            !EVP_DigestUpdate(c, key, kl) ||
            !EVP_DigestUpdate(c, ws_guid, sizeof ws_guid - 1) ||
            !EVP_DigestFinal_ex(c, md, &mdl))
            memset(md, 0, sizeof md);
        EVP_MD_CTX_free(c);
    }
    EVP_EncodeBlock((unsigned char *)accept_out, md, SHA_DIGEST_LENGTH);
}

struct outbuf {
    char *p;
    size_t cap, len;
    int full;
};

static void put(struct outbuf *b, const char *s, size_t n)
{
    if (b->full || n > b->cap - b->len) {
        b->full = 1;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void puts_z(struct outbuf *b, const char *s)
{
    put(b, s, strlen(s));
}

static int http_fail(const char **errstr, const char *msg)
{
    if (errstr)
        *errstr = msg;
    return WSC_EHTTP;
}

static const char *const reserved_headers[] = {
    "host", "upgrade", "connection", "sec-websocket-key",
    "sec-websocket-version",
};

int wsc_build_request(char *out, size_t cap, const char *path,
                      const char *host_header, const char *key,
                      const char *const *protocols, size_t nprotocols,
                      const struct wsc_header *headers, size_t nheaders,
                      const char **errstr)
{
    struct outbuf b = {out, cap, 0, 0};
    size_t pl = strlen(path), hl = strlen(host_header), kl = strlen(key);

    if (pl == 0 || path[0] != '/')
        return http_fail(errstr, "path must start with /");
    for (size_t i = 0; i < pl; i++)
        if (!is_path_char((unsigned char)path[i]))
            return http_fail(errstr, "bad character in path");
    if (hl == 0 || !is_line_safe(host_header, hl))
        return http_fail(errstr, "bad Host header");
    if (kl == 0)
        return http_fail(errstr, "bad Sec-WebSocket-Key");
    for (size_t i = 0; i < kl; i++)
        if (!is_path_char((unsigned char)key[i])) /* visible ASCII */
            return http_fail(errstr, "bad Sec-WebSocket-Key");
    for (size_t i = 0; i < nprotocols; i++)
        if (!is_token(protocols[i], strlen(protocols[i])))
            return http_fail(errstr, "subprotocol must be an HTTP token");
    for (size_t i = 0; i < nheaders; i++) {
        const struct wsc_header *x = &headers[i];
        if (!is_line_safe(x->name, x->name_len) || !is_line_safe(x->value, x->value_len))
            return http_fail(errstr, "CR, LF or NUL in header");
        if (!is_token(x->name, x->name_len))
            return http_fail(errstr, "header name must be an HTTP token");
        for (size_t j = 0; j < sizeof reserved_headers / sizeof *reserved_headers; j++)
            if (ieq_z(x->name, x->name_len, reserved_headers[j]))
                return http_fail(errstr, "header is set by the handshake itself");
    }

    puts_z(&b, "GET ");
    put(&b, path, pl);
    puts_z(&b, " HTTP/1.1\r\nHost: ");
    put(&b, host_header, hl);
    puts_z(&b, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: ");
    put(&b, key, kl);
    puts_z(&b, "\r\nSec-WebSocket-Version: 13\r\n");
    if (nprotocols) {
        puts_z(&b, "Sec-WebSocket-Protocol: ");
        for (size_t i = 0; i < nprotocols; i++) {
            if (i)
                puts_z(&b, ", ");
            puts_z(&b, protocols[i]);
        }
        puts_z(&b, "\r\n");
    }
    for (size_t i = 0; i < nheaders; i++) {
        put(&b, headers[i].name, headers[i].name_len);
        puts_z(&b, ": ");
        put(&b, headers[i].value, headers[i].value_len);
        puts_z(&b, "\r\n");
    }
    puts_z(&b, "\r\n");
    if (b.full || b.len > (size_t)INT32_MAX)
        return WSC_ENOSPC;
    if (b.len < cap)
        out[b.len] = '\0'; /* convenience only; not counted */
    if (errstr)
        *errstr = NULL;
    return (int)b.len;
}

/* ---- response head ----------------------------------------------------
 *   status-line = HTTP-version SP status-code SP reason-phrase CRLF
 *   header-field = field-name ":" OWS field-value OWS
 * (RFC 7230 3.1.2, 3.2). Obsolete line folding is refused. */

/* The first "\r\n\r\n" starting in buf[from..len), or NULL. */
static const char *find_crlfcrlf(const char *buf, size_t from, size_t len)
{
    const char *p = buf + from, *end = buf + len;
    while (end - p >= 4) {
        const char *cr = memchr(p, '\r', (size_t)(end - p - 3));
        if (!cr)
            return NULL;
        if (cr[1] == '\n' && cr[2] == '\r' && cr[3] == '\n')
            return cr;
        p = cr + 1;
    }
    return NULL;
}

static int is_ows(int c)
{
    return c == ' ' || c == '\t';
}

/* the numbers in these are the limits of ws_codec.h */
static const char head_too_large[] = "response headers too large (more than 65536 bytes)";
static const char too_many_headers[] = "too many headers (more than 100)";
_Static_assert(WSC_MAX_RESPONSE_BYTES == 65536 && WSC_MAX_RESPONSE_HEADERS == 100,
               "the texts above name the limits");

static int too_big(const char **errstr, const char *msg)
{
    if (errstr)
        *errstr = msg;
    return WSC_EHTTP_TOO_BIG;
}

/* Fail fast: whatever has arrived of a head (buf[0..len)) must be a prefix
 * of "HTTP/1.d ddd". Returns 0 or WSC_EHTTP. */
static int check_status_prefix(const char *buf, size_t len, const char **errstr)
{
    static const char proto[] = "HTTP/1.";
    for (size_t i = 0; i < len && i < 12; i++) {
        int c = (unsigned char)buf[i], ok;
        if (i < 7)
            ok = c == proto[i];
        else if (i == 8)
            ok = c == ' ';
        else
            ok = c >= '0' && c <= '9';
        if (!ok)
            return http_fail(errstr, "bad status line");
    }
    return 0;
}

/* Parses the head buf[0..eoh + 4), eoh pointing at its "\r\n\r\n" (the
 * first one in buf). Returns the head's length or a negative WSC_E*. */
static int parse_head(const char *buf, const char *eoh, struct wsc_response *out,
                      const char **errstr)
{
    const char *end = eoh + 2; /* the last header line's CRLF ends here */

    out->status = 0;
    out->version_minor = 0;
    out->nheaders = 0;
    out->header_bytes = (size_t)(eoh + 4 - buf);

    /* status line (the caller checked "HTTP/1.d ddd" already) */
    const char *p = buf;
    const char *eol = memchr(p, '\r', (size_t)(end - p));
    if ((size_t)(eol - p) < 12 || (eol - p > 12 && p[12] != ' '))
        return http_fail(errstr, "bad status line");
    out->version_minor = p[7] - '0';
    out->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    if (out->status < 100)
        return http_fail(errstr, "bad status line");
    for (const char *q = p + 12; q < eol; q++)
        if (*q != '\t' && ((unsigned char)*q < 0x20 || *q == 0x7f))
            return http_fail(errstr, "bad status line");
    if (eol[1] != '\n')
        return http_fail(errstr, "bad status line");
    p = eol + 2;

    /* header lines */
    while (p < end) {
        eol = memchr(p, '\r', (size_t)(end - p));
        if (eol[1] != '\n')
            return http_fail(errstr, "bare CR in header");
        if (is_ows((unsigned char)*p))
            return http_fail(errstr, "obsolete line folding");
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (!colon || !is_token(p, (size_t)(colon - p)))
            return http_fail(errstr, "bad header line");
        const char *v = colon + 1, *ve = eol;
        while (v < ve && is_ows((unsigned char)*v))
            v++;
        while (ve > v && is_ows((unsigned char)ve[-1]))
            ve--;
        for (const char *q = v; q < ve; q++)
            if (*q != '\t' && ((unsigned char)*q < 0x20 || *q == 0x7f))
                return http_fail(errstr, "bad header value");
        if (out->nheaders == WSC_MAX_RESPONSE_HEADERS)
            return too_big(errstr, too_many_headers);
        struct wsc_header *x = &out->headers[out->nheaders++];
        x->name = p;
        x->name_len = (size_t)(colon - p);
        x->value = v;
        x->value_len = (size_t)(ve - v);
        p = eol + 2;
    }
    if (errstr)
        *errstr = NULL;
    return (int)out->header_bytes;
}

int wsc_parse_response(const char *buf, size_t len, struct wsc_response *out,
                       const char **errstr)
{
    size_t scan = len < WSC_MAX_RESPONSE_BYTES ? len : WSC_MAX_RESPONSE_BYTES;

    if (check_status_prefix(buf, scan, errstr) < 0)
        return WSC_EHTTP;
    const char *eoh = find_crlfcrlf(buf, 0, scan);
    if (!eoh) {
        if (len >= WSC_MAX_RESPONSE_BYTES)
            return too_big(errstr, head_too_large);
        return WSC_ENEED_MORE;
    }
    return parse_head(buf, eoh, out, errstr);
}

void wsc_response_reader_init(struct wsc_response_reader *rd)
{
    rd->head = 0;
    rd->scanned = 0;
    rd->interim = 0;
}

int wsc_read_response(struct wsc_response_reader *rd, const char *buf, size_t len,
                      struct wsc_response *out, const char **errstr)
{
    /* everything up to the final head's end counts against the limit */
    size_t lim = len < WSC_MAX_RESPONSE_BYTES ? len : WSC_MAX_RESPONSE_BYTES;

    for (;;) {
        if (rd->head > lim || rd->scanned < rd->head || rd->scanned > lim)
            return http_fail(errstr, "response reader misused: bytes went missing");
        const char *head = buf + rd->head;
        if (check_status_prefix(head, lim - rd->head, errstr) < 0)
            return WSC_EHTTP;
        /* a terminator may straddle the previous end: rd->scanned stops 3
         * bytes short of it */
        const char *eoh = find_crlfcrlf(buf, rd->scanned, lim);
        if (!eoh) {
            if (lim > rd->scanned + 3)
                rd->scanned = lim - 3;
            if (len >= WSC_MAX_RESPONSE_BYTES)
                return too_big(errstr, head_too_large);
            return WSC_ENEED_MORE;
        }
        int r = parse_head(head, eoh, out, errstr);
        if (r < 0)
            return r;
        size_t end = rd->head + (size_t)r;
        /* RFC 9110 15.2: a client must be able to parse 1xx responses it did
         * not expect before the final one; 101 is ours, the others are
         * skipped (100 Continue, 102 Processing, 103 Early Hints, ...) */
        if (out->status >= 200 || out->status == 101)
            return (int)end;
        rd->head = rd->scanned = end;
        rd->interim++;
    }
}

const struct wsc_header *wsc_find_header(const struct wsc_response *r,
                                         const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < r->nheaders; i++)
        if (ieq(r->headers[i].name, r->headers[i].name_len, name, nl))
            return &r->headers[i];
    return NULL;
}

/* 1 if the comma-separated token list v[0..n) holds tok (case-insensitive) */
static int list_has(const char *v, size_t n, const char *tok)
{
    const char *p = v, *end = v + n;
    while (p < end) {
        const char *c = memchr(p, ',', (size_t)(end - p));
        const char *e = c ? c : end, *s = p;
        while (s < e && is_ows((unsigned char)*s))
            s++;
        while (e > s && is_ows((unsigned char)e[-1]))
            e--;
        if (ieq_z(s, (size_t)(e - s), tok))
            return 1;
        p = c ? c + 1 : end;
    }
    return 0;
}

/* 1 if any header called name holds tok in its token list */
static int any_list_has(const struct wsc_response *r, const char *name,
                        const char *tok)
{
    for (size_t i = 0; i < r->nheaders; i++) {
        const struct wsc_header *x = &r->headers[i];
        if (ieq_z(x->name, x->name_len, name) && list_has(x->value, x->value_len, tok))
            return 1;
    }
    return 0;
}

static int hs_fail(const char **errstr, const char *msg)
{
    if (errstr)
        *errstr = msg;
    return WSC_EHANDSHAKE;
}

int wsc_check_upgrade(const struct wsc_response *r, const char *key,
                      const char *const *protocols, size_t nprotocols,
                      const char **protocol, size_t *protocol_len,
                      const char **errstr)
{
    return wsc_check_upgrade_ext(r, key, protocols, nprotocols, protocol, protocol_len, 0,
                                 NULL, NULL, errstr);
}

int wsc_check_upgrade_ext(const struct wsc_response *r, const char *key,
                          const char *const *protocols, size_t nprotocols,
                          const char **protocol, size_t *protocol_len,
                          int ext_offered, const char **ext, size_t *ext_len,
                          const char **errstr)
{
    const struct wsc_header *exth = NULL;
    *protocol = NULL;
    *protocol_len = 0;
    if (ext) {
        *ext = NULL;
        *ext_len = 0;
    }
    if (r->status != 101)
        return hs_fail(errstr, "status is not 101");
    /* RFC 6455 4.1: the opening handshake is an HTTP/1.1 upgrade (RFC 9110
     * 7.8: Upgrade is for HTTP/1.1); the parser admits only HTTP/1.d, so
     * below 1.1 means 1.0 */
    if (r->version_minor < 1)
        return hs_fail(errstr, "HTTP/1.0 101 response: the upgrade needs HTTP/1.1 or later");
    if (!any_list_has(r, "upgrade", "websocket"))
        return hs_fail(errstr, "missing Upgrade: websocket");
    if (!any_list_has(r, "connection", "upgrade"))
        return hs_fail(errstr, "missing Connection: upgrade");

    const struct wsc_header *acc = NULL, *proto = NULL;
    for (size_t i = 0; i < r->nheaders; i++) {
        const struct wsc_header *x = &r->headers[i];
        if (ieq_z(x->name, x->name_len, "sec-websocket-accept")) {
            if (acc)
                return hs_fail(errstr, "repeated Sec-WebSocket-Accept");
            acc = x;
        } else if (ieq_z(x->name, x->name_len, "sec-websocket-protocol")) {
            if (proto)
                return hs_fail(errstr, "repeated Sec-WebSocket-Protocol");
            proto = x;
        } else if (ieq_z(x->name, x->name_len, "sec-websocket-extensions")) {
            if (x->value_len) {
                if (!ext_offered)
                    return hs_fail(errstr, "server chose an extension we did not offer");
                if (exth)
                    return hs_fail(errstr, "repeated Sec-WebSocket-Extensions "
                                           "(only permessage-deflate was offered)");
                exth = x;
            }
        }
    }
    if (!acc)
        return hs_fail(errstr, "missing Sec-WebSocket-Accept");
    char want[29];
    wsc_accept_for_key(key, want);
    if (acc->value_len != 28 || memcmp(acc->value, want, 28) != 0)
        return hs_fail(errstr, "Sec-WebSocket-Accept does not match the key");
    if (proto) {
        size_t i;
        for (i = 0; i < nprotocols; i++)
            if (strlen(protocols[i]) == proto->value_len &&
                memcmp(protocols[i], proto->value, proto->value_len) == 0)
                break;
        if (i == nprotocols)
            return hs_fail(errstr, "server chose a subprotocol we did not offer");
        *protocol = proto->value;
        *protocol_len = proto->value_len;
    }
    if (exth && ext) {
        *ext = exth->value;
        *ext_len = exth->value_len;
    }
    if (errstr)
        *errstr = NULL;
    return WSC_OK;
}

/* ======================================================================
 * UTF-8 (RFC 3629 4): a DFA over byte classes, in the manner of Bjoern
 * Hoehrmann's decoder but with our own classes and states.
 *
 *   UTF8-2 = %xC2-DF UTF8-tail
 *   UTF8-3 = %xE0 %xA0-BF UTF8-tail / %xE1-EC 2( UTF8-tail ) /
 *            %xED %x80-9F UTF8-tail / %xEE-EF 2( UTF8-tail )
 *   UTF8-4 = %xF0 %x90-BF 2( UTF8-tail ) / %xF1-F3 3( UTF8-tail ) /
 *            %xF4 %x80-8F 2( UTF8-tail )
 * ====================================================================== */

/* byte classes */
enum {
    C_ASCII,  /* 00..7F */
    C_T1,     /* 80..8F tail */
    C_T2,     /* 90..9F tail */
    C_T3,     /* A0..BF tail */
    C_BAD,    /* C0 C1 F5..FF */
    C_L2,     /* C2..DF */
    C_E0,     /* E0 */
    C_L3,     /* E1..EC EE EF */
    C_ED,     /* ED */
    C_F0,     /* F0 */
    C_L4,     /* F1..F3 */
    C_F4,     /* F4 */
    C_N
};

/* states, premultiplied by 16 so a transition is one add and one load.
 * S_OK must be 0 (wsc_utf8_complete). */
enum {
    S_OK = 0,
    S_REJ = 16,
    S_T1 = 32,   /* one tail byte left */
    S_T2 = 48,   /* two tail bytes left */
    S_T3 = 64,   /* three tail bytes left */
    S_E0 = 80,   /* after E0: A0..BF then one tail */
    S_ED = 96,   /* after ED: 80..9F then one tail */
    S_F0 = 112,  /* after F0: 90..BF then two tails */
    S_F4 = 128,  /* after F4: 80..8F then two tails */
    S_N = 144
};

/* the class of every byte (two-letter names keep the table 16 wide) */
enum {
    A_ = C_ASCII, T1 = C_T1, T2 = C_T2, T3 = C_T3, XX = C_BAD, L2 = C_L2,
    E0 = C_E0, L3 = C_L3, ED = C_ED, F0 = C_F0, L4 = C_L4, F4 = C_F4
};
static const uint8_t utf8_class[256] = {
    A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, /* 00..0F */
    A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, /* 10..1F */
    A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, /* 20..2F */
    A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, /* 30..3F */
    A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, /* 40..4F */
    A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, /* 50..5F */
    A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, /* 60..6F */
    A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, /* 70..7F */
    T1, T1, T1, T1, T1, T1, T1, T1, T1, T1, T1, T1, T1, T1, T1, T1, /* 80..8F */
    T2, T2, T2, T2, T2, T2, T2, T2, T2, T2, T2, T2, T2, T2, T2, T2, /* 90..9F */
    T3, T3, T3, T3, T3, T3, T3, T3, T3, T3, T3, T3, T3, T3, T3, T3, /* A0..AF */
    T3, T3, T3, T3, T3, T3, T3, T3, T3, T3, T3, T3, T3, T3, T3, T3, /* B0..BF */
    XX, XX, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, /* C0..CF */
    L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, /* D0..DF */
    E0, L3, L3, L3, L3, L3, L3, L3, L3, L3, L3, L3, L3, ED, L3, L3, /* E0..EF */
    F0, L4, L4, L4, F4, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, /* F0..FF */
};

#define ROW(a, t1, t2, t3, bad, l2, e0, l3, ed, f0, l4, f4) \
    a, t1, t2, t3, bad, l2, e0, l3, ed, f0, l4, f4, S_REJ, S_REJ, S_REJ, S_REJ
static const uint8_t utf8_trans[S_N] = {
    /*      ASCII  T1     T2     T3     BAD    L2    E0    L3    ED    F0    L4    F4 */
    /*OK*/  ROW(S_OK, S_REJ, S_REJ, S_REJ, S_REJ, S_T1, S_E0, S_T2, S_ED, S_F0, S_T3, S_F4),
    /*REJ*/ ROW(S_REJ, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ),
    /*T1*/  ROW(S_REJ, S_OK, S_OK, S_OK, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ),
    /*T2*/  ROW(S_REJ, S_T1, S_T1, S_T1, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ),
    /*T3*/  ROW(S_REJ, S_T2, S_T2, S_T2, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ),
    /*E0*/  ROW(S_REJ, S_REJ, S_REJ, S_T1, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ),
    /*ED*/  ROW(S_REJ, S_T1, S_T1, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ),
    /*F0*/  ROW(S_REJ, S_REJ, S_T2, S_T2, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ),
    /*F4*/  ROW(S_REJ, S_T2, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ, S_REJ),
};
#undef ROW

#define HI8 0x8080808080808080ull

static int is_tail(uint8_t c)
{
    return (c & 0xC0) == 0x80;
}

int wsc_utf8_feed(wsc_utf8 *u, const uint8_t *p, size_t len)
{
    uint32_t s = u->state;

    if (s == S_REJ)
        return -1;
    if (len == 0) /* p may be NULL */
        return 0;
    const uint8_t *end = p + len;
    while (p < end) {
        if (s == S_OK) {
            uint8_t c = *p;
            if (c < 0x80) {
                /* ASCII fast path: 32, then 8 bytes at a time */
                while (end - p >= 32) {
                    uint64_t a, b, d, e;
                    memcpy(&a, p, 8);
                    memcpy(&b, p + 8, 8);
                    memcpy(&d, p + 16, 8);
                    memcpy(&e, p + 24, 8);
                    if ((a | b | d | e) & HI8)
                        break;
                    p += 32;
                }
                while (end - p >= 8) {
                    uint64_t a;
                    memcpy(&a, p, 8);
                    if (a & HI8)
                        break;
                    p += 8;
                }
                while (p < end && *p < 0x80)
                    p++;
                continue;
            }
            if (end - p >= 4) {
                /* a whole character at once, same ranges as the DFA:
                 * no chained table loads per byte */
                if (c >= 0xC2 && c <= 0xDF) {
                    if (!is_tail(p[1]))
                        break;
                    p += 2;
                } else if (c >= 0xE0 && c <= 0xEF) {
                    uint8_t lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
                    if (p[1] < lo || p[1] > hi || !is_tail(p[2]))
                        break;
                    p += 3;
                } else if (c >= 0xF0 && c <= 0xF4) {
                    uint8_t lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
                    if (p[1] < lo || p[1] > hi || !is_tail(p[2]) || !is_tail(p[3]))
                        break;
                    p += 4;
                } else {
                    break;
                }
                continue;
            }
        }
        /* DFA, one byte: near the end of the buffer and across feeds */
        s = utf8_trans[s + utf8_class[*p++]];
        if (s == S_REJ)
            break;
    }
    if (p < end || s == S_REJ) { /* broke out on an invalid sequence */
        u->state = S_REJ;
        return -1;
    }
    u->state = s;
    return 0;
}

/* ======================================================================
 * close codes (RFC 6455 7.4)
 * ====================================================================== */

int wsc_close_code_valid(unsigned code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

/* ======================================================================
 * frame parser (RFC 6455 5.2)
 *
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-+-+-+-+-------+-+-------------+-------------------------------+
 *  |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
 *  |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
 *  |N|V|V|V|       |S|             |   (if payload len==126/127)   |
 *  | |1|2|3|       |K|             |                               |
 *  +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
 * ====================================================================== */

void wsc_parser_init(struct wsc_parser *p, uint64_t max_message_size)
{
    memset(p, 0, sizeof *p);
    p->max_message_size = max_message_size;
}

void wsc_parser_free(struct wsc_parser *p)
{
    free(p->ctl);
    p->ctl = NULL;
    p->ctl_len = 0;
}

static int fail(struct wsc_parser *p, uint16_t code, const char *why)
{
    p->close_code = code;
    p->errstr = why;
    return WSC_EPROTO;
}

static const char *const unknown_opcode[16] = {
    [3] = "unknown opcode 3",   [4] = "unknown opcode 4",
    [5] = "unknown opcode 5",   [6] = "unknown opcode 6",
    [7] = "unknown opcode 7",   [0xB] = "unknown opcode 0xB",
    [0xC] = "unknown opcode 0xC", [0xD] = "unknown opcode 0xD",
    [0xE] = "unknown opcode 0xE", [0xF] = "unknown opcode 0xF",
};

/* Checks the first header byte (fail fast: before the rest arrives). */
static int check_b0(struct wsc_parser *p, uint8_t b0)
{
    int op = b0 & 0x0F;
    if (b0 & 0x30)
        return fail(p, 1002, "reserved bits set");
    if (b0 & 0x40) {
        /* RFC 7692 6: RSV1 only when negotiated, and only on the first
         * frame of a data message */
        if (!p->allow_rsv1)
            return fail(p, 1002, "reserved bits set");
        if (op & 0x8)
            return fail(p, 1002, "RSV1 set on a control frame");
        if (op == WSC_OP_CONT)
            return fail(p, 1002, "RSV1 set on a continuation frame");
    }
    if (unknown_opcode[op])
        return fail(p, 1002, unknown_opcode[op]);
    if (op & 0x8) {
        if (!(b0 & 0x80))
            return fail(p, 1002, "fragmented control frame");
    } else if (op == WSC_OP_CONT) {
        if (!p->msg_opcode)
            return fail(p, 1002, "continuation frame without a message");
    } else if (p->msg_opcode) {
        return fail(p, 1002, "new message inside a fragmented message");
    }
    return 0;
}

static int check_b1(struct wsc_parser *p, uint8_t b1)
{
    if (b1 & 0x80)
        return fail(p, 1002, "masked frame from server");
    return 0;
}

static size_t hdr_size(uint8_t b1)
{
    uint8_t l = b1 & 0x7F;
    return l == 126 ? 4 : l == 127 ? 10 : 2;
}

/* h holds a whole, already checked header. */
static int start_frame(struct wsc_parser *p, const uint8_t *h)
{
    uint64_t n = h[1] & 0x7F;
    if (n == 126) {
        n = (uint64_t)h[2] << 8 | h[3];
    } else if (n == 127) {
        n = 0;
        for (int i = 2; i < 10; i++)
            n = n << 8 | h[i];
        if (n >> 63)
            return fail(p, 1002, "64-bit payload length with the top bit set");
    }
    int op = h[0] & 0x0F;
    p->fin = h[0] >> 7;
    p->opcode = op;
    p->remaining = n;
    if (op & 0x8) {
        /* checked on the length itself: non-minimal encodings are accepted */
        if (n > 125)
            return fail(p, 1002, "control frame payload > 125");
        p->ctl_len = 0;
    } else {
        if (op != WSC_OP_CONT) {
            p->msg_opcode = op;
            p->msg_compressed = (h[0] >> 6) & 1;
            p->msg_started = 0;
            p->msg_len = 0;
            p->utf8.state = 0;
        }
        uint64_t max = p->max_message_size;
        /* a compressed message's inflated size is bounded by the inflater;
         * on the wire it may be slightly larger than that (stored blocks:
         * 5 bytes per 64 KiB), so a message of max_message_size bytes that
         * does not compress still passes */
        if (max && p->msg_compressed && max < UINT64_MAX / 2)
            max += (max >> 8) + 64;
        if (max && (n > max || p->msg_len > max - n))
            return fail(p, 1009, "message exceeds max_message_size");
        p->msg_len += n;
    }
    p->in_frame = 1;
    return 0;
}

/* The control frame's payload is data[0..len) (in the fed buffer, or
 * gathered in p->ctl). */
static int control_event(struct wsc_parser *p, struct wsc_event *ev, const uint8_t *data,
                         size_t len)
{
    memset(ev, 0, sizeof *ev);
    ev->opcode = p->opcode;
    ev->data = data;
    ev->len = len;
    p->in_frame = 0;
    switch (p->opcode) {
    case WSC_OP_PING:
        ev->type = WSC_EV_PING;
        break;
    case WSC_OP_PONG:
        ev->type = WSC_EV_PONG;
        break;
    default: /* WSC_OP_CLOSE: RFC 6455 5.5.1, 7.1.5, 7.1.6 */
        ev->type = WSC_EV_CLOSE;
        if (len == 0) {
            ev->close_code = 1005;
        } else if (len == 1) {
            return fail(p, 1002, "close frame with a 1-byte payload");
        } else {
            unsigned code = (unsigned)data[0] << 8 | data[1];
            if (!wsc_close_code_valid(code))
                return fail(p, 1002, "invalid close code");
            wsc_utf8 u = {0};
            if (wsc_utf8_feed(&u, data + 2, len - 2) < 0 || !wsc_utf8_complete(&u))
                return fail(p, 1007, "invalid UTF-8 in close reason");
            ev->close_code = (uint16_t)code;
            ev->data = data + 2;
            ev->len = len - 2;
        }
        p->closed = 1;
        break;
    }
    return 1;
}

int wsc_parser_next(struct wsc_parser *p, const uint8_t *buf, size_t len,
                    size_t *consumed, struct wsc_event *ev)
{
    size_t pos = 0;
    int r;

    *consumed = 0;
    if (p->ctl && !(p->in_frame && (p->opcode & 0x8))) {
        /* the gathered control frame's event was handed out last time */
        free(p->ctl);
        p->ctl = NULL;
    }
    if (p->close_code)
        return WSC_EPROTO;
    if (p->closed)
        return WSC_ENEED_MORE;

    for (;;) {
        if (!p->in_frame) {
            /* fast path: the whole header is in buf */
            if (p->hdr_len == 0 && len - pos >= 2) {
                const uint8_t *h = buf + pos;
                if ((r = check_b0(p, h[0])) < 0 || (r = check_b1(p, h[1])) < 0)
                    goto out;
                size_t need = hdr_size(h[1]);
                if (len - pos >= need) {
                    if ((r = start_frame(p, h)) < 0)
                        goto out;
                    pos += need;
                }
            }
            /* slow path: gather the header into p->hdr */
            while (!p->in_frame && pos < len) {
                uint8_t c = buf[pos++];
                p->hdr[p->hdr_len++] = c;
                if (p->hdr_len == 1) {
                    if ((r = check_b0(p, c)) < 0)
                        goto out;
                } else {
                    if (p->hdr_len == 2 && (r = check_b1(p, c)) < 0)
                        goto out;
                    if ((size_t)p->hdr_len == hdr_size(p->hdr[1])) {
                        p->hdr_len = 0;
                        if ((r = start_frame(p, p->hdr)) < 0)
                            goto out;
                    }
                }
            }
            if (!p->in_frame) {
                r = WSC_ENEED_MORE;
                goto out;
            }
        }

        size_t avail = len - pos;
        if (p->opcode & 0x8) {
            /* control frame (<= 125 bytes): whole in buf, or gathered */
            size_t take = p->remaining < avail ? (size_t)p->remaining : avail;
            if (p->ctl_len == 0 && take == p->remaining) {
                pos += take;
                p->remaining = 0;
                r = control_event(p, ev, buf + pos - take, take);
                goto out;
            }
            if (take) {
                if (!p->ctl && !(p->ctl = malloc(125))) {
                    r = fail(p, 1011, "out of memory for a control frame");
                    goto out;
                }
                memcpy(p->ctl + p->ctl_len, buf + pos, take);
            }
            p->ctl_len = (uint8_t)(p->ctl_len + take);
            p->remaining -= take;
            pos += take;
            if (p->remaining) {
                r = WSC_ENEED_MORE;
                goto out;
            }
            r = control_event(p, ev, p->ctl, p->ctl_len);
            goto out;
        }

        /* data frame: hand out a slice of buf */
        if (p->remaining && !avail) {
            r = WSC_ENEED_MORE;
            goto out;
        }
        size_t take = p->remaining < avail ? (size_t)p->remaining : avail;
        int last = take == p->remaining && p->fin;
        if (take == 0 && !last) { /* empty non-final fragment: nothing to say */
            p->in_frame = 0;
            continue;
        }
        if (p->msg_opcode == WSC_OP_TEXT && !p->msg_compressed &&
            (wsc_utf8_feed(&p->utf8, buf + pos, take) < 0 ||
             (last && !wsc_utf8_complete(&p->utf8)))) {
            r = fail(p, 1007, "invalid UTF-8 in text message");
            goto out;
        }
        ev->type = WSC_EV_DATA;
        ev->opcode = p->msg_opcode;
        ev->message_start = !p->msg_started;
        ev->message_end = last;
        ev->compressed = p->msg_compressed;
        ev->data = buf + pos;
        ev->len = take;
        ev->close_code = 0;
        pos += take;
        p->remaining -= take;
        p->msg_started = 1;
        if (!p->remaining) {
            p->in_frame = 0;
            if (p->fin) {
                p->msg_opcode = 0;
                p->msg_started = 0;
                p->msg_len = 0;
            }
        }
        r = 1;
        goto out;
    }
out:
    *consumed = pos;
    return r;
}

uint64_t wsc_parser_binary_tail(const struct wsc_parser *p)
{
    if (!p->in_frame || p->closed || p->close_code || (p->opcode & 0x8) || !p->fin ||
        p->msg_opcode != WSC_OP_BINARY || p->msg_compressed)
        return 0;
    return p->remaining;
}

int wsc_parser_skip(struct wsc_parser *p, uint64_t n)
{
    if (n == 0 || n > wsc_parser_binary_tail(p))
        return -1;
    p->remaining -= n;
    p->msg_started = 1;
    if (!p->remaining) {
        p->in_frame = 0;
        p->msg_opcode = 0;
        p->msg_started = 0;
        p->msg_len = 0;
    }
    return 0;
}

/* ======================================================================
 * frame writer and masking (RFC 6455 5.2, 5.3)
 * ====================================================================== */

size_t wsc_frame_header(uint8_t out[14], int opcode, int fin, uint64_t len,
                        const uint8_t mask[4])
{
    size_t n;
    out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0F));
    if (len < 126) {
        out[1] = (uint8_t)(0x80 | len);
        n = 2;
    } else if (len <= 0xFFFF) {
        out[1] = 0x80 | 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        n = 4;
    } else {
        out[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        n = 10;
    }
    memcpy(out + n, mask, 4);
    return n + 4;
}

/* The mask as 8 bytes starting at phase off&3, as a native word: XORing a
 * memcpy'd word with it masks 8 payload bytes whatever the byte order. */
static uint64_t mask_word(const uint8_t mask[4], uint64_t off, uint8_t rot[4])
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = mask[(off + (unsigned)i) & 3];
    memcpy(rot, b, 4);
    uint64_t w;
    memcpy(&w, b, 8);
    return w;
}

void wsc_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset)
{
    /* in place: wsc_mask_copy reads each word before it writes it */
    wsc_mask_copy(data, data, len, mask, offset);
}

void wsc_mask_copy(uint8_t *dst, const uint8_t *src, size_t len,
                   const uint8_t mask[4], uint64_t offset)
{
    uint8_t rot[4];
    uint64_t w = mask_word(mask, offset, rot);
    size_t i = 0;

    for (; len - i >= 32; i += 32) {
        uint64_t a, b, c, d;
        memcpy(&a, src + i, 8);
        memcpy(&b, src + i + 8, 8);
        memcpy(&c, src + i + 16, 8);
        memcpy(&d, src + i + 24, 8);
        a ^= w, b ^= w, c ^= w, d ^= w;
        memcpy(dst + i, &a, 8);
        memcpy(dst + i + 8, &b, 8);
        memcpy(dst + i + 16, &c, 8);
        memcpy(dst + i + 24, &d, 8);
    }
    for (; len - i >= 8; i += 8) {
        uint64_t a;
        memcpy(&a, src + i, 8);
        a ^= w;
        memcpy(dst + i, &a, 8);
    }
    for (; i < len; i++)
        dst[i] = src[i] ^ rot[i & 3];
}
