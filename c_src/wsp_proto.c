/*
 * wsp_proto: decoding of BEAM -> port commands and encoding of port -> BEAM
 * events (see docs/protocol.md and wsp_proto.h).
 *
 * Safety: ei's decoders take no buffer length, so before any of them runs
 * the whole term is walked by a bounded validator (term_skip) that checks
 * every length against the packet, accepts only the tags we can meet in a
 * command, bounds atom lengths (so ei_decode_atom_as can never overflow its
 * MAXATOMLEN_UTF8 buffer) and limits nesting. After that, every ei call only
 * touches bytes the validator has seen.
 */
#include "wsp_proto.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WSP_MAX_DEPTH WSP_MAX_TERM_DEPTH /* deepest real command needs 6 */
#define WSP_MAX_CTL_PAYLOAD 125   /* ping / pong payload */
#define WSP_MAX_CLOSE_REASON 123  /* 125 - 2 bytes of code */

/* External term format tags. */
enum {
    TAG_VERSION = 131,
    TAG_NEW_FLOAT = 70,
    TAG_SMALL_INTEGER = 97,
    TAG_INTEGER = 98,
    TAG_ATOM = 100,
    TAG_SMALL_TUPLE = 104,
    TAG_LARGE_TUPLE = 105,
    TAG_NIL = 106,
    TAG_STRING = 107,
    TAG_LIST = 108,
    TAG_BINARY = 109,
    TAG_SMALL_BIG = 110,
    TAG_LARGE_BIG = 111,
    TAG_SMALL_ATOM = 115,
    TAG_MAP = 116,
    TAG_ATOM_UTF8 = 118,
    TAG_SMALL_ATOM_UTF8 = 119,
};

/* ------------------------------------------------------------------------ */
/* errors                                                                    */

struct dctx {
    const uint8_t *b;   /* whole packet; b[0] == 131 for terms */
    size_t len;
    const char *eb;     /* same, as ei wants it */
    const char **what;
    char *err;
    size_t errcap;
};

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int fail(struct dctx *c, const char *what, const char *fmt, ...)
{
    *c->what = what;
    if (c->err && c->errcap > 0) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(c->err, c->errcap, fmt, ap);
        va_end(ap);
        if (n < 0)
            c->err[0] = '\0';
    }
    return -1;
}

/* ------------------------------------------------------------------------ */
/* bounded validator                                                         */

static uint32_t rd16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

enum { V_OK = 0, V_TRUNC = -1, V_TAG = -2, V_DEEP = -3, V_ATOM = -4 };

/* Skips the term at b[*i], never reading at or past len. On failure *i is
 * the offset where the problem was found. */
static int term_skip(const uint8_t *b, size_t len, size_t *i, int depth)
{
    if (depth > WSP_MAX_DEPTH)
        return V_DEEP;
    if (*i >= len)
        return V_TRUNC;
    size_t avail = len - *i - 1;      /* bytes after the tag */
    const uint8_t *p = b + *i + 1;
    uint64_t need;                    /* bytes after the tag, flat part */
    uint64_t nsub = 0;                /* nested terms that follow */
    int list_tail = 0;

    switch (b[*i]) {
    case TAG_SMALL_INTEGER: need = 1; break;
    case TAG_INTEGER: need = 4; break;
    case TAG_NEW_FLOAT: need = 8; break;
    case TAG_NIL: need = 0; break;
    case TAG_SMALL_ATOM:
    case TAG_SMALL_ATOM_UTF8:
        if (avail < 1) return V_TRUNC;
        need = 1 + (uint64_t)p[0];
        break;
    case TAG_ATOM:
    case TAG_ATOM_UTF8: {
        if (avail < 2) return V_TRUNC;
        uint32_t n = rd16(p);
        /* Erlang atoms have at most 255 characters; bounding the bytes keeps
         * ei_decode_atom_as inside a MAXATOMLEN_UTF8 buffer. */
        if (n > (b[*i] == TAG_ATOM ? 255u : (uint32_t)(MAXATOMLEN_UTF8 - 1)))
            return V_ATOM;
        need = 2 + (uint64_t)n;
        break;
    }
    case TAG_STRING:
        if (avail < 2) return V_TRUNC;
        need = 2 + (uint64_t)rd16(p);
        break;
    case TAG_BINARY:
        if (avail < 4) return V_TRUNC;
        need = 4 + (uint64_t)rd32(p);
        break;
    case TAG_SMALL_BIG:
        if (avail < 1) return V_TRUNC;
        need = 2 + (uint64_t)p[0];
        break;
    case TAG_LARGE_BIG:
        if (avail < 4) return V_TRUNC;
        need = 5 + (uint64_t)rd32(p);
        break;
    case TAG_SMALL_TUPLE:
        if (avail < 1) return V_TRUNC;
        need = 1;
        nsub = p[0];
        break;
    case TAG_LARGE_TUPLE:
        if (avail < 4) return V_TRUNC;
        need = 4;
        nsub = rd32(p);
        break;
    case TAG_LIST:
        if (avail < 4) return V_TRUNC;
        need = 4;
        nsub = rd32(p);
        list_tail = 1;
        break;
    case TAG_MAP:
        if (avail < 4) return V_TRUNC;
        need = 4;
        nsub = 2 * (uint64_t)rd32(p);
        break;
    default:
        return V_TAG;
    }
    if (need > avail)
        return V_TRUNC;
    /* every nested term takes at least one byte: fail fast on huge counts */
    if (nsub + (uint64_t)list_tail > avail - need)
        return V_TRUNC;
    *i += 1 + (size_t)need;
    for (uint64_t k = 0; k < nsub + (uint64_t)list_tail; k++) {
        int r = term_skip(b, len, i, depth + 1);
        if (r != V_OK)
            return r;
    }
    return V_OK;
}

/* ------------------------------------------------------------------------ */
/* term helpers (run only on validated bytes)                                */

static int tag_at(const struct dctx *c, int idx) { return c->b[idx]; }

static int is_atom_tag(int t)
{
    return t == TAG_ATOM || t == TAG_SMALL_ATOM || t == TAG_ATOM_UTF8 ||
           t == TAG_SMALL_ATOM_UTF8;
}
static int is_int_tag(int t)
{
    return t == TAG_SMALL_INTEGER || t == TAG_INTEGER || t == TAG_SMALL_BIG ||
           t == TAG_LARGE_BIG;
}

/* Reads an atom into out (MAXATOMLEN_UTF8 bytes). 0 ok, -1 not an atom. */
static int get_atom(const struct dctx *c, int *idx, char out[MAXATOMLEN_UTF8])
{
    if (!is_atom_tag(tag_at(c, *idx)))
        return -1;
    erlang_char_encoding was, res;
    int i = *idx;
    if (ei_decode_atom_as(c->eb, &i, out, MAXATOMLEN_UTF8, ERLANG_UTF8, &was, &res) < 0)
        return -1;
    *idx = i;
    return 0;
}

/* Describes the term at idx for error messages ("-5", "atom foo",
 * "a binary of 3 bytes", "a 2-tuple", ...). */
static const char *describe(const struct dctx *c, int idx, char *buf, size_t cap)
{
    int t = tag_at(c, idx);
    if (is_atom_tag(t)) {
        char a[MAXATOMLEN_UTF8];
        int i = idx;
        if (get_atom(c, &i, a) == 0) {
            snprintf(buf, cap, "atom %.40s%s", a, strlen(a) > 40 ? "..." : "");
            return buf;
        }
        return "an atom";
    }
    switch (t) {
    case TAG_SMALL_INTEGER:
    case TAG_INTEGER:
    case TAG_SMALL_BIG:
    case TAG_LARGE_BIG: {
        long long v;
        int i = idx;
        if (ei_decode_longlong(c->eb, &i, &v) == 0) {
            snprintf(buf, cap, "%lld", v);
            return buf;
        }
        return "a big integer";
    }
    case TAG_NEW_FLOAT: return "a float";
    case TAG_NIL: return "[]";
    case TAG_STRING: return "a string (list)";
    case TAG_LIST: return "a list";
    case TAG_MAP: return "a map";
    case TAG_BINARY:
        snprintf(buf, cap, "a binary of %u bytes", (unsigned)rd32(c->b + idx + 1));
        return buf;
    case TAG_SMALL_TUPLE:
    case TAG_LARGE_TUPLE: {
        int i = idx, n;
        if (ei_decode_tuple_header(c->eb, &i, &n) == 0) {
            snprintf(buf, cap, "a %d-tuple", n);
            return buf;
        }
        return "a tuple";
    }
    default: return "an unsupported term";
    }
}

/* Integer in [lo, hi]. 0 ok, -1 not an integer or out of range. */
static int get_int(const struct dctx *c, int *idx, long long lo, long long hi,
                   long long *v)
{
    if (!is_int_tag(tag_at(c, *idx)))
        return -1;
    int i = *idx;
    long long x;
    if (ei_decode_longlong(c->eb, &i, &x) < 0)
        return -1; /* beyond 64 bits */
    if (x < lo || x > hi)
        return -1;
    *v = x;
    *idx = i;
    return 0;
}

/* Binary: pointer into the packet. 0 ok, -1 not a binary. */
static int get_bin(const struct dctx *c, int *idx, const uint8_t **p, size_t *n)
{
    int type, size;
    if (tag_at(c, *idx) != TAG_BINARY)
        return -1;
    if (ei_get_type(c->eb, idx, &type, &size) < 0 || type != ERL_BINARY_EXT ||
        size < 0)
        return -1;
    *p = c->b + *idx + 5;
    *n = (size_t)size;
    *idx += 5 + size;
    return 0;
}

/* Start of a list: *n elements follow (0 for []). STRING_EXT is refused
 * (the BEAM side sends binaries, never strings). */
static int get_list(const struct dctx *c, int *idx, int *n)
{
    int t = tag_at(c, *idx);
    if (t != TAG_LIST && t != TAG_NIL)
        return -1;
    return ei_decode_list_header(c->eb, idx, n) < 0 ? -1 : 0;
}

/* Tail after the last element of a non-empty list must be []. */
static int list_end(const struct dctx *c, int *idx)
{
    if (tag_at(c, *idx) != TAG_NIL)
        return -1;
    *idx += 1;
    return 0;
}

static char *dup_bytes(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        if (n)
            memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

/* RFC 7230 tchar, for subprotocol tokens. */
static int is_tchar(uint8_t ch)
{
    if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
        return 1;
    return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* ------------------------------------------------------------------------ */
/* free                                                                      */

/* memset through a volatile pointer: not optimised away before free */
static void *(*const volatile wipe_memset)(void *, int, size_t) = memset;

static void wipe_free(void *p, size_t n)
{
    if (p) {
        wipe_memset(p, 0, n);
        free(p);
    }
}

void wsp_connect_opts_free(struct wsp_connect_opts *o)
{
    if (!o)
        return;
    free(o->url);
    for (size_t k = 0; k < o->nheaders; k++) {
        free((char *)o->headers[k].name);
        free((char *)o->headers[k].value);
    }
    free(o->headers);
    for (size_t k = 0; k < o->nprotocols; k++)
        free(o->protocols[k]);
    free(o->protocols);
    free(o->cacertfile);
    free(o->certfile);
    free(o->keyfile);
    free(o->server_name);
    free(o->pins);
    for (size_t k = 0; k < o->ncacerts; k++)
        free(o->cacerts[k]);
    free(o->cacerts);
    free(o->cacert_lens);
    for (size_t k = 0; k < o->ncerts; k++)
        free(o->certs[k]);
    free(o->certs);
    free(o->cert_lens);
    wipe_free(o->key, o->key_len);
    wipe_free(o->password, o->password_len);
    free(o->ciphers);
    free(o->ciphersuites);
    free(o->proxy.host);
    if (o->proxy.username)
        memset(o->proxy.username, 0, strlen(o->proxy.username));
    if (o->proxy.password)
        memset(o->proxy.password, 0, strlen(o->proxy.password));
    free(o->proxy.username);
    free(o->proxy.password);
    free(o);
}

void wsp_cmd_free(struct wsp_cmd *cmd)
{
    if (!cmd)
        return;
    wsp_connect_opts_free(cmd->connect);
    cmd->connect = NULL;
}

/* ------------------------------------------------------------------------ */
/* commands                                                                  */

#define ID_MSG "id must be an integer 1..4294967295"

static int decode_id(struct dctx *c, int *idx, const char *cmd, struct wsp_cmd *out)
{
    long long v;
    char d[96];
    int at = *idx;
    if (get_int(c, idx, 1, 4294967295LL, &v) < 0)
        return fail(c, "badarg", "%s: " ID_MSG ", got %s", cmd,
                    describe(c, at, d, sizeof d));
    out->id = (uint32_t)v;
    return 0;
}

static int parse_active(struct dctx *c, int *idx, enum wsp_active_kind *kind,
                        int64_t *n)
{
    char a[MAXATOMLEN_UTF8];
    int i = *idx;
    if (get_atom(c, &i, a) == 0) {
        if (strcmp(a, "true") == 0) *kind = WSP_ACTIVE_TRUE;
        else if (strcmp(a, "false") == 0) *kind = WSP_ACTIVE_FALSE;
        else if (strcmp(a, "once") == 0) *kind = WSP_ACTIVE_ONCE;
        else return -1;
        *n = 0;
        *idx = i;
        return 0;
    }
    long long v;
    if (get_int(c, &i, INT32_MIN, INT32_MAX, &v) == 0) {
        *kind = WSP_ACTIVE_N;
        *n = v;
        *idx = i;
        return 0;
    }
    return -1;
}

#define ACTIVE_MSG "must be true, false, once or an integer -2147483648..2147483647"

/* A binary copied as a NUL-terminated string; empty/NUL-containing refused. */
static int opt_string(struct dctx *c, int *idx, const char *name, char **dst)
{
    const uint8_t *p;
    size_t n;
    char d[96];
    int at = *idx;
    if (get_bin(c, idx, &p, &n) < 0)
        return fail(c, "bad_option", "connect: option %s must be a binary, got %s",
                    name, describe(c, at, d, sizeof d));
    if (n == 0)
        return fail(c, "bad_option", "connect: option %s must not be empty", name);
    if (memchr(p, 0, n))
        return fail(c, "bad_option", "connect: option %s must not contain NUL bytes",
                    name);
    char *s = dup_bytes(p, n);
    if (!s)
        return fail(c, "badarg", "connect: out of memory");
    free(*dst); /* a later occurrence overrides an earlier one */
    *dst = s;
    return 0;
}

static int opt_uint(struct dctx *c, int *idx, const char *name, long long lo,
                    long long hi, long long *v)
{
    char d[96];
    int at = *idx;
    if (get_int(c, idx, lo, hi, v) < 0)
        return fail(c, "bad_option", "connect: option %s must be %s integer <= %lld, got %s",
                    name, lo > 0 ? "a positive" : "a non-negative", hi,
                    describe(c, at, d, sizeof d));
    return 0;
}

static void free_headers(struct wsc_header *h, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        free((char *)h[k].name);
        free((char *)h[k].value);
    }
    free(h);
}

static int opt_headers(struct dctx *c, int *idx, struct wsp_connect_opts *o)
{
    char d[96];
    int at = *idx, n;
    if (get_list(c, idx, &n) < 0)
        return fail(c, "bad_option",
                    "connect: option headers must be a list of {Name, Value} binaries, got %s",
                    describe(c, at, d, sizeof d));
    struct wsc_header *h = NULL;
    if (n > 0) {
        h = calloc((size_t)n, sizeof *h);
        if (!h)
            return fail(c, "badarg", "connect: out of memory");
    }
    size_t got = 0;
    for (int k = 0; k < n; k++) {
        int ar;
        const uint8_t *np, *vp;
        size_t nl, vl;
        at = *idx;
        if (tag_at(c, *idx) != TAG_SMALL_TUPLE ||
            ei_decode_tuple_header(c->eb, idx, &ar) < 0 || ar != 2 ||
            get_bin(c, idx, &np, &nl) < 0 || get_bin(c, idx, &vp, &vl) < 0) {
            free_headers(h, got);
            return fail(c, "bad_option",
                        "connect: option headers: each header must be a {Name, Value} "
                        "tuple of binaries, got %s", describe(c, at, d, sizeof d));
        }
        if (nl == 0) {
            free_headers(h, got);
            return fail(c, "bad_option", "connect: option headers: empty header name");
        }
        h[got].name = dup_bytes(np, nl);
        h[got].value = dup_bytes(vp, vl);
        h[got].name_len = nl;
        h[got].value_len = vl;
        got++;
        if (!h[got - 1].name || !h[got - 1].value) {
            free_headers(h, got);
            return fail(c, "badarg", "connect: out of memory");
        }
    }
    if (n > 0 && list_end(c, idx) < 0) {
        free_headers(h, got);
        return fail(c, "bad_option", "connect: option headers must be a proper list");
    }
    free_headers(o->headers, o->nheaders);
    o->headers = h;
    o->nheaders = got;
    return 0;
}

static void free_strv(char **v, size_t n)
{
    for (size_t k = 0; k < n; k++)
        free(v[k]);
    free(v);
}

static int opt_protocols(struct dctx *c, int *idx, struct wsp_connect_opts *o)
{
    char d[96];
    int at = *idx, n;
    if (get_list(c, idx, &n) < 0)
        return fail(c, "bad_option",
                    "connect: option protocols must be a list of binaries, got %s",
                    describe(c, at, d, sizeof d));
    char **v = NULL;
    if (n > 0) {
        v = calloc((size_t)n, sizeof *v);
        if (!v)
            return fail(c, "badarg", "connect: out of memory");
    }
    size_t got = 0;
    for (int k = 0; k < n; k++) {
        const uint8_t *p;
        size_t l;
        at = *idx;
        if (get_bin(c, idx, &p, &l) < 0) {
            free_strv(v, got);
            return fail(c, "bad_option",
                        "connect: option protocols must be a list of binaries, got %s "
                        "in it", describe(c, at, d, sizeof d));
        }
        int ok = l > 0;
        for (size_t j = 0; ok && j < l; j++)
            ok = is_tchar(p[j]);
        if (!ok) {
            free_strv(v, got);
            return fail(c, "bad_option",
                        "connect: option protocols: each protocol must be a non-empty "
                        "HTTP token");
        }
        v[got] = dup_bytes(p, l);
        if (!v[got]) {
            free_strv(v, got);
            return fail(c, "badarg", "connect: out of memory");
        }
        got++;
    }
    if (n > 0 && list_end(c, idx) < 0) {
        free_strv(v, got);
        return fail(c, "bad_option", "connect: option protocols must be a proper list");
    }
    free_strv(o->protocols, o->nprotocols);
    o->protocols = v;
    o->nprotocols = got;
    return 0;
}

/* A number (integer or float) in [lo, hi]. 0 ok, -1 otherwise. */
static int get_number(const struct dctx *c, int *idx, double lo, double hi, double *v)
{
    int t = tag_at(c, *idx);
    double x;
    int i = *idx;
    if (t == TAG_NEW_FLOAT) {
        if (ei_decode_double(c->eb, &i, &x) < 0)
            return -1;
    } else if (is_int_tag(t)) {
        long long l;
        if (ei_decode_longlong(c->eb, &i, &l) < 0)
            return -1;
        x = (double)l;
    } else {
        return -1;
    }
    if (!(x >= lo && x <= hi))
        return -1;
    *v = x;
    *idx = i;
    return 0;
}

static const struct {
    const char *name;
    unsigned bit;
} retry_classes[] = {
    {"network", WSP_FC_NETWORK},     {"timeout", WSP_FC_TIMEOUT},
    {"http_5xx", WSP_FC_HTTP_5XX},   {"http_429", WSP_FC_HTTP_429},
    {"http_4xx", WSP_FC_HTTP_4XX},   {"tls", WSP_FC_TLS},
    {"protocol", WSP_FC_PROTOCOL},   {"remote_close", WSP_FC_REMOTE_CLOSE},
    {"http_other", WSP_FC_HTTP_OTHER},
};

#define RETRY_ON_MSG                                                            \
    "default, stay_connected or a list of network, timeout, http_5xx, "         \
    "http_429, http_4xx, tls, protocol, remote_close, {remote_close, Codes}, "  \
    "{remote_close, {except, Codes}}, http_other"

/* Codes of {remote_close, Codes}: a proper list of integers 1000..4999. */
static int retry_on_codes(struct dctx *c, int *idx, uint16_t *codes, size_t *ncodes)
{
    char d[96];
    int at = *idx, n;
    if (get_list(c, idx, &n) < 0)
        return fail(c, "bad_option", "connect: option retry_on: remote_close codes must be "
                    "a list of close codes, got %s", describe(c, at, d, sizeof d));
    if (n > WSP_MAX_CLOSE_CODES)
        return fail(c, "bad_option", "connect: option retry_on: at most %d remote_close "
                    "codes, got %d", WSP_MAX_CLOSE_CODES, n);
    for (int k = 0; k < n; k++) {
        long long v;
        at = *idx;
        if (get_int(c, idx, 1000, 4999, &v) < 0)
            return fail(c, "bad_option", "connect: option retry_on: a remote_close code must "
                        "be an integer 1000..4999, got %s", describe(c, at, d, sizeof d));
        codes[k] = (uint16_t)v;
    }
    if (n > 0 && list_end(c, idx) < 0)
        return fail(c, "bad_option", "connect: option retry_on: remote_close codes must be "
                    "a proper list");
    *ncodes = (size_t)n;
    return 0;
}

/* One {remote_close, Codes} | {remote_close, {except, Codes}} entry. */
static int retry_on_close_tuple(struct dctx *c, int *idx, enum wsp_close_retry *mode,
                                uint16_t *codes, size_t *ncodes)
{
    char a[MAXATOMLEN_UTF8];
    int ar, at = *idx;
    if (tag_at(c, *idx) == TAG_SMALL_TUPLE && ei_decode_tuple_header(c->eb, idx, &ar) == 0 &&
        ar == 2 && get_atom(c, idx, a) == 0 && strcmp(a, "except") == 0) {
        *mode = WSP_CLOSE_RETRY_EXCEPT;
    } else {
        *idx = at;
        *mode = WSP_CLOSE_RETRY_ONLY;
    }
    return retry_on_codes(c, idx, codes, ncodes);
}

/* default | stay_connected | [Class | {remote_close, Codes}
 *                             | {remote_close, {except, Codes}}] */
static int opt_retry_on(struct dctx *c, int *idx, struct wsp_connect_opts *o)
{
    char d[96], a[MAXATOMLEN_UTF8];
    int at = *idx, n;
    if (get_atom(c, idx, a) == 0) {
        if (strcmp(a, "default") == 0) {
            wsp_backoff_default_retry_on(&o->retry);
            return 0;
        }
        if (strcmp(a, "stay_connected") == 0) {
            wsp_backoff_stay_connected_retry_on(&o->retry);
            return 0;
        }
        *idx = at;
    }
    if (get_list(c, idx, &n) < 0)
        return fail(c, "bad_option", "connect: option retry_on must be " RETRY_ON_MSG
                    ", got %s", describe(c, at, d, sizeof d));
    unsigned bits = 0;
    enum wsp_close_retry mode = WSP_CLOSE_RETRY_NONE;
    uint16_t codes[WSP_MAX_CLOSE_CODES];
    size_t ncodes = 0;
    int closes = 0;
    for (int k = 0; k < n; k++) {
        at = *idx;
        int ar, is_close = 0;
        size_t j = 0, nc = sizeof retry_classes / sizeof retry_classes[0];
        if (get_atom(c, idx, a) == 0) {
            while (j < nc && strcmp(a, retry_classes[j].name) != 0)
                j++;
            if (j < nc && retry_classes[j].bit == WSP_FC_REMOTE_CLOSE) {
                is_close = 1;
                mode = WSP_CLOSE_RETRY_ALL;
            }
        } else if (tag_at(c, *idx) == TAG_SMALL_TUPLE &&
                   ei_decode_tuple_header(c->eb, idx, &ar) == 0 && ar == 2 &&
                   get_atom(c, idx, a) == 0 && strcmp(a, "remote_close") == 0) {
            if (retry_on_close_tuple(c, idx, &mode, codes, &ncodes) < 0)
                return -1;
            is_close = 1;
        } else {
            j = nc;
        }
        if (!is_close && j == nc)
            return fail(c, "bad_option", "connect: option retry_on must be " RETRY_ON_MSG
                        ", got %s in it", describe(c, at, d, sizeof d));
        if (is_close && closes++)
            return fail(c, "bad_option", "connect: option retry_on names remote_close more "
                        "than once");
        if (!is_close)
            bits |= retry_classes[j].bit;
    }
    if (n > 0 && list_end(c, idx) < 0)
        return fail(c, "bad_option", "connect: option retry_on must be a proper list");
    o->retry.retry_on = bits;
    (void)wsp_backoff_set_close_retry(&o->retry, mode, codes, ncodes);
    return 0;
}

/* {retry, false} | {retry, [{max_retries, N | infinity}, {delay, Ms},
 *  {max_delay, Ms}, {backoff_factor, Num}, {jitter, full | equal | Num},
 *  {manual, Bool}]} */
static int opt_retry(struct dctx *c, int *idx, struct wsp_connect_opts *o)
{
    char d[96], a[MAXATOMLEN_UTF8];
    int at = *idx, n;
    if (get_atom(c, idx, a) == 0) {
        if (strcmp(a, "false") == 0) {
            o->retry.enabled = 0;
            return 0;
        }
        *idx = at;
    }
    if (get_list(c, idx, &n) < 0)
        return fail(c, "bad_option",
                    "connect: option retry must be false or a list of {Key, Value}, got %s",
                    describe(c, at, d, sizeof d));
    /* what is retried (retry_on, or its default) is not the policy's */
    struct wsp_backoff keep = o->retry;
    wsp_backoff_default(&o->retry);
    o->retry.retry_on = keep.retry_on;
    (void)wsp_backoff_set_close_retry(&o->retry, keep.close_retry, keep.close_codes,
                                      keep.nclose_codes);
    for (int k = 0; k < n; k++) {
        int ar;
        at = *idx;
        if (tag_at(c, *idx) != TAG_SMALL_TUPLE || ei_decode_tuple_header(c->eb, idx, &ar) < 0 ||
            ar != 2 || get_atom(c, idx, a) < 0)
            return fail(c, "bad_option",
                        "connect: option retry: each entry must be a {Key, Value} tuple, got %s",
                        describe(c, at, d, sizeof d));
        long long v;
        double x;
        at = *idx;
        if (strcmp(a, "max_retries") == 0) {
            char inf[MAXATOMLEN_UTF8];
            if (get_atom(c, idx, inf) == 0 && strcmp(inf, "infinity") == 0)
                o->retry.max_retries = -1;
            else if ((*idx = at, get_int(c, idx, 0, INT64_MAX, &v)) == 0)
                o->retry.max_retries = v;
            else
                return fail(c, "bad_option", "connect: option retry: max_retries must be a "
                            "non-negative integer or infinity, got %s",
                            describe(c, at, d, sizeof d));
        } else if (strcmp(a, "delay") == 0 || strcmp(a, "max_delay") == 0) {
            if (get_int(c, idx, 0, UINT32_MAX, &v) < 0)
                return fail(c, "bad_option", "connect: option retry: %s must be a "
                            "non-negative integer (ms), got %s", a,
                            describe(c, at, d, sizeof d));
            if (a[0] == 'd')
                o->retry.delay_ms = (uint32_t)v;
            else
                o->retry.max_delay_ms = (uint32_t)v;
        } else if (strcmp(a, "backoff_factor") == 0) {
            if (get_number(c, idx, 1.0, 1000.0, &x) < 0)
                return fail(c, "bad_option", "connect: option retry: backoff_factor must be "
                            "a number from 1 to 1000, got %s", describe(c, at, d, sizeof d));
            o->retry.factor = x;
        } else if (strcmp(a, "jitter") == 0) {
            char m[MAXATOMLEN_UTF8];
            int full = 0, equal = 0, num = 0;
            if (get_atom(c, idx, m) == 0) {
                full = strcmp(m, "full") == 0;
                equal = strcmp(m, "equal") == 0;
            } else {
                num = get_number(c, idx, 0.0, 1.0, &x) == 0;
            }
            if (!full && !equal && !num)
                return fail(c, "bad_option", "connect: option retry: jitter must be full, "
                            "equal or a fraction from 0 to 1, got %s",
                            describe(c, at, d, sizeof d));
            o->retry.jitter_mode = full ? WSP_JITTER_FULL
                                 : equal ? WSP_JITTER_EQUAL : WSP_JITTER_SPREAD;
            if (num)
                o->retry.jitter = x;
        } else if (strcmp(a, "manual") == 0) {
            char b[MAXATOMLEN_UTF8];
            if (get_atom(c, idx, b) < 0 || (strcmp(b, "true") && strcmp(b, "false")))
                return fail(c, "bad_option", "connect: option retry: manual must be true "
                            "or false, got %s", describe(c, at, d, sizeof d));
            o->retry.manual = b[0] == 't';
        } else {
            return fail(c, "bad_option", "connect: option retry: unknown key %.64s", a);
        }
    }
    if (n > 0 && list_end(c, idx) < 0)
        return fail(c, "bad_option", "connect: option retry must be a proper list");
    if (o->retry.max_delay_ms < o->retry.delay_ms)
        o->retry.max_delay_ms = o->retry.delay_ms;
    return 0;
}

/* {compress, false} | {compress, [{Key, Value}]}: Key one of
 * client_max_window_bits (true | 9..15), server_max_window_bits (8..15),
 * client_no_context_takeover, server_no_context_takeover (booleans),
 * level (0..9), mem_level (1..9), threshold (bytes). The list (maybe
 * empty) turns compression on. */
static int opt_compress(struct dctx *c, int *idx, struct wsp_connect_opts *o)
{
    char d[96], a[MAXATOMLEN_UTF8];
    int at = *idx, n;
    wsp_pmd_config_default(&o->compress);
    if (get_atom(c, idx, a) == 0) {
        if (strcmp(a, "false") == 0)
            return 0;
        *idx = at;
    }
    if (get_list(c, idx, &n) < 0)
        return fail(c, "bad_option",
                    "connect: option compress must be false or a list of {Key, Value}, got %s",
                    describe(c, at, d, sizeof d));
    o->compress.enabled = 1;
    for (int k = 0; k < n; k++) {
        int ar;
        at = *idx;
        if (tag_at(c, *idx) != TAG_SMALL_TUPLE || ei_decode_tuple_header(c->eb, idx, &ar) < 0 ||
            ar != 2 || get_atom(c, idx, a) < 0)
            return fail(c, "bad_option",
                        "connect: option compress: each entry must be a {Key, Value} tuple, "
                        "got %s", describe(c, at, d, sizeof d));
        long long v;
        char b[MAXATOMLEN_UTF8];
        at = *idx;
        if (strcmp(a, "client_no_context_takeover") == 0 ||
            strcmp(a, "server_no_context_takeover") == 0) {
            if (get_atom(c, idx, b) < 0 || (strcmp(b, "true") && strcmp(b, "false")))
                return fail(c, "bad_option", "connect: option compress: %s must be true or "
                            "false, got %s", a, describe(c, at, d, sizeof d));
            if (a[0] == 'c')
                o->compress.client_no_context_takeover = b[0] == 't';
            else
                o->compress.server_no_context_takeover = b[0] == 't';
        } else if (strcmp(a, "client_max_window_bits") == 0) {
            if (get_atom(c, idx, b) == 0 && strcmp(b, "true") == 0)
                o->compress.client_max_window_bits = 0;
            else if ((*idx = at, get_int(c, idx, 9, 15, &v)) == 0)
                o->compress.client_max_window_bits = (int)v;
            else
                return fail(c, "bad_option", "connect: option compress: client_max_window_bits "
                            "must be true or an integer from 9 to 15, got %s",
                            describe(c, at, d, sizeof d));
        } else if (strcmp(a, "server_max_window_bits") == 0) {
            if (get_int(c, idx, 8, 15, &v) < 0)
                return fail(c, "bad_option", "connect: option compress: server_max_window_bits "
                            "must be an integer from 8 to 15, got %s",
                            describe(c, at, d, sizeof d));
            o->compress.server_max_window_bits = (int)v;
        } else if (strcmp(a, "level") == 0) {
            if (get_int(c, idx, 0, 9, &v) < 0)
                return fail(c, "bad_option", "connect: option compress: level must be an "
                            "integer from 0 to 9, got %s", describe(c, at, d, sizeof d));
            o->compress.level = (int)v;
        } else if (strcmp(a, "mem_level") == 0) {
            if (get_int(c, idx, 1, 9, &v) < 0)
                return fail(c, "bad_option", "connect: option compress: mem_level must be an "
                            "integer from 1 to 9, got %s", describe(c, at, d, sizeof d));
            o->compress.mem_level = (int)v;
        } else if (strcmp(a, "threshold") == 0) {
            if (get_int(c, idx, 0, UINT32_MAX, &v) < 0)
                return fail(c, "bad_option", "connect: option compress: threshold must be a "
                            "non-negative integer (bytes), got %s", describe(c, at, d, sizeof d));
            o->compress.threshold = (uint32_t)v;
        } else {
            return fail(c, "bad_option", "connect: option compress: unknown key %.64s", a);
        }
    }
    if (n > 0 && list_end(c, idx) < 0)
        return fail(c, "bad_option", "connect: option compress must be a proper list");
    return 0;
}

/* {proxy, {http | socks5, Host, Port, Username, Password}}: Username <<>>
 * means no authentication. The credentials are never named in errors. */
static int proxy_string(struct dctx *c, int *idx, const char *part, size_t maxlen,
                        int empty_ok, char **dst)
{
    const uint8_t *p;
    size_t n;
    if (get_bin(c, idx, &p, &n) < 0)
        return fail(c, "bad_option", "connect: option proxy: the %s must be a binary", part);
    if ((!empty_ok && n == 0) || n > maxlen || memchr(p, 0, n))
        return fail(c, "bad_option",
                    "connect: option proxy: the %s must be %s1..%zu bytes without NUL", part,
                    empty_ok ? "empty or " : "", maxlen);
    if (n == 0)
        return 0;
    char *s = dup_bytes(p, n);
    if (!s)
        return fail(c, "badarg", "connect: out of memory");
    *dst = s;
    return 0;
}

static int opt_proxy(struct dctx *c, int *idx, struct wsp_connect_opts *o)
{
    char d[96], type[MAXATOMLEN_UTF8];
    int at = *idx, ar;
    struct wsp_proxy_conf p = {0};
    long long port;
    if (tag_at(c, *idx) != TAG_SMALL_TUPLE || ei_decode_tuple_header(c->eb, idx, &ar) < 0 ||
        ar != 5)
        return fail(c, "bad_option",
                    "connect: option proxy must be {Type, Host, Port, Username, Password}, "
                    "got %s", describe(c, at, d, sizeof d));
    if (get_atom(c, idx, type) < 0 ||
        (strcmp(type, "http") != 0 && strcmp(type, "socks5") != 0))
        return fail(c, "bad_option", "connect: option proxy: the type must be http or socks5");
    p.type = strcmp(type, "http") == 0 ? WSP_PROXY_HTTP : WSP_PROXY_SOCKS5;
    if (proxy_string(c, idx, "host", 255, 0, &p.host) < 0)
        goto bad;
    if (get_int(c, idx, 1, 65535, &port) < 0) {
        fail(c, "bad_option", "connect: option proxy: the port must be an integer 1..65535");
        goto bad;
    }
    p.port = (uint16_t)port;
    if (proxy_string(c, idx, "username", 255, 1, &p.username) < 0 ||
        proxy_string(c, idx, "password", 255, 1, &p.password) < 0)
        goto bad;
    if (!p.username && p.password) {
        fail(c, "bad_option", "connect: option proxy: a password without a username");
        goto bad;
    }
    if (p.username && !p.password) {
        p.password = dup_bytes((const uint8_t *)"", 0);
        if (!p.password) {
            fail(c, "badarg", "connect: out of memory");
            goto bad;
        }
    }
    free(o->proxy.host); /* a later occurrence overrides an earlier one */
    free(o->proxy.username);
    free(o->proxy.password);
    o->proxy = p;
    return 0;
bad:
    free(p.host);
    free(p.username);
    free(p.password);
    return -1;
}

/* {cacerts, [DER]} (1..4096) or {cert, [DER]} (1..WSP_MAX_CERT_CHAIN):
 * non-empty binaries, parsed when a TLS context is made (a bad one is a
 * {tls, ...} failure naming it) */
static int opt_der_list(struct dctx *c, int *idx, const char *name, int max,
                        uint8_t ***dst, size_t **dst_lens, size_t *dst_n)
{
    char d[96];
    int at = *idx, n;
    if (get_list(c, idx, &n) < 0 || n < 1 || n > max)
        return fail(c, "bad_option", "connect: option %s must be a list of 1 to %d "
                    "DER certificates, got %s", name, max, describe(c, at, d, sizeof d));
    uint8_t **certs = calloc((size_t)n, sizeof *certs);
    size_t *lens = calloc((size_t)n, sizeof *lens);
    int k = 0;
    if (!certs || !lens)
        goto oom;
    for (; k < n; k++) {
        const uint8_t *p;
        size_t len;
        at = *idx;
        if (get_bin(c, idx, &p, &len) < 0 || len == 0) {
            fail(c, "bad_option", "connect: option %s: each must be a non-empty binary "
                 "(DER), got %s", name, describe(c, at, d, sizeof d));
            goto bad;
        }
        certs[k] = malloc(len);
        if (!certs[k])
            goto oom;
        memcpy(certs[k], p, len);
        lens[k] = len;
    }
    if (list_end(c, idx) < 0) {
        fail(c, "bad_option", "connect: option %s must be a proper list", name);
        goto bad;
    }
    for (size_t j = 0; j < *dst_n; j++)
        free((*dst)[j]);
    free(*dst);
    free(*dst_lens);
    *dst = certs;
    *dst_lens = lens;
    *dst_n = (size_t)n;
    return 0;
oom:
    fail(c, "badarg", "connect: out of memory");
bad:
    if (certs)
        for (int j = 0; j < k; j++)
            free(certs[j]);
    free(certs);
    free(lens);
    return -1;
}

/* {key, PEM | DER} or {password, Bin}: a secret copied (NUL-terminated, the
 * length kept: a password may hold any byte); its value is never quoted in
 * an error, only its type or size */
static int opt_secret(struct dctx *c, int *idx, const char *name, size_t max,
                      uint8_t **dst, size_t *dst_len)
{
    const uint8_t *p;
    size_t n;
    if (get_bin(c, idx, &p, &n) < 0)
        return fail(c, "bad_option", "connect: option %s must be a binary", name);
    if (n == 0 || n > max)
        return fail(c, "bad_option", "connect: option %s must be 1 to %zu bytes, got %zu",
                    name, max, n);
    uint8_t *s = malloc(n + 1);
    if (!s)
        return fail(c, "badarg", "connect: out of memory");
    memcpy(s, p, n);
    s[n] = 0;
    wipe_free(*dst, *dst_len); /* a later occurrence overrides an earlier one */
    *dst = s;
    *dst_len = n;
    return 0;
}

/* {versions, ['tlsv1.2' | 'tlsv1.3']}: the lowest and highest given */
static int opt_versions(struct dctx *c, int *idx, struct wsp_connect_opts *o)
{
    char d[96], a[MAXATOMLEN_UTF8];
    int at = *idx, n, lo = 0, hi = 0;
    if (get_list(c, idx, &n) < 0 || n < 1 || n > 2)
        return fail(c, "bad_option", "connect: option versions must be a list of 'tlsv1.2' "
                    "and/or 'tlsv1.3', got %s", describe(c, at, d, sizeof d));
    for (int k = 0; k < n; k++) {
        at = *idx;
        int v;
        if (get_atom(c, idx, a) < 0)
            v = 0;
        else if (strcmp(a, "tlsv1.2") == 0)
            v = 0x0303;
        else if (strcmp(a, "tlsv1.3") == 0)
            v = 0x0304;
        else
            v = 0;
        if (!v)
            return fail(c, "bad_option", "connect: option versions: 'tlsv1.2' or 'tlsv1.3' "
                        "(TLS 1.2 is the minimum), got %s", describe(c, at, d, sizeof d));
        lo = lo && lo < v ? lo : v;
        hi = hi > v ? hi : v;
    }
    if (list_end(c, idx) < 0)
        return fail(c, "bad_option", "connect: option versions must be a proper list");
    o->min_version = lo;
    o->max_version = hi;
    return 0;
}

/* {pins, [<<Sha256:32/binary>>]}: at most 64, none empty */
static int opt_pins(struct dctx *c, int *idx, struct wsp_connect_opts *o)
{
    char d[96];
    int at = *idx, n;
    if (get_list(c, idx, &n) < 0 || n < 1 || n > 64)
        return fail(c, "bad_option", "connect: option pins must be a list of 1 to 64 "
                    "32-byte SHA-256 digests, got %s", describe(c, at, d, sizeof d));
    uint8_t (*pins)[32] = calloc((size_t)n, sizeof *pins);
    if (!pins)
        return fail(c, "badarg", "connect: out of memory");
    for (int k = 0; k < n; k++) {
        const uint8_t *p;
        size_t len;
        at = *idx;
        if (get_bin(c, idx, &p, &len) < 0 || len != 32) {
            free(pins);
            return fail(c, "bad_option", "connect: option pins: each pin must be a 32-byte "
                        "SHA-256 digest, got %s", describe(c, at, d, sizeof d));
        }
        memcpy(pins[k], p, 32);
    }
    if (list_end(c, idx) < 0) {
        free(pins);
        return fail(c, "bad_option", "connect: option pins must be a proper list");
    }
    free(o->pins); /* a later occurrence overrides an earlier one */
    o->pins = pins;
    o->npins = (size_t)n;
    return 0;
}

static int decode_option(struct dctx *c, int *idx, struct wsp_connect_opts *o)
{
    char d[96], name[MAXATOMLEN_UTF8];
    int at = *idx, ar;
    if (tag_at(c, *idx) != TAG_SMALL_TUPLE ||
        ei_decode_tuple_header(c->eb, idx, &ar) < 0 || ar != 2 ||
        get_atom(c, idx, name) < 0) {
        return fail(c, "badarg",
                    "connect: each option must be a {Name, Value} tuple with an atom "
                    "name, got %s", describe(c, at, d, sizeof d));
    }
    long long v;
    at = *idx;
    if (strcmp(name, "headers") == 0)
        return opt_headers(c, idx, o);
    if (strcmp(name, "protocols") == 0)
        return opt_protocols(c, idx, o);
    if (strcmp(name, "connect_timeout") == 0) {
        if (opt_uint(c, idx, name, 1, UINT32_MAX, &v) < 0)
            return -1;
        o->connect_timeout_ms = (uint32_t)v;
        return 0;
    }
    if (strcmp(name, "max_message_size") == 0) {
        if (opt_uint(c, idx, name, 1, WSP_MAX_MESSAGE_SIZE, &v) < 0)
            return -1;
        o->max_message_size = (uint64_t)v;
        return 0;
    }
    if (strcmp(name, "ping_interval") == 0) {
        if (opt_uint(c, idx, name, 0, UINT32_MAX, &v) < 0)
            return -1;
        o->ping_interval_ms = (uint32_t)v;
        return 0;
    }
    if (strcmp(name, "idle_timeout") == 0) {
        if (opt_uint(c, idx, name, 0, UINT32_MAX, &v) < 0)
            return -1;
        o->idle_timeout_ms = (uint32_t)v;
        return 0;
    }
    if (strcmp(name, "active") == 0) {
        if (parse_active(c, idx, &o->active, &o->active_n) < 0)
            return fail(c, "bad_option", "connect: option active " ACTIVE_MSG ", got %s",
                        describe(c, at, d, sizeof d));
        return 0;
    }
    if (strcmp(name, "verify") == 0) {
        char a[MAXATOMLEN_UTF8];
        int ok = get_atom(c, idx, a) == 0;
        if (ok && strcmp(a, "verify_peer") == 0)
            o->verify = 1;
        else if (ok && strcmp(a, "verify_none") == 0)
            o->verify = 0;
        else
            return fail(c, "bad_option",
                        "connect: option verify must be verify_peer or verify_none, got %s",
                        describe(c, at, d, sizeof d));
        return 0;
    }
    if (strcmp(name, "retry") == 0)
        return opt_retry(c, idx, o);
    if (strcmp(name, "compress") == 0)
        return opt_compress(c, idx, o);
    if (strcmp(name, "retry_on") == 0)
        return opt_retry_on(c, idx, o);
    if (strcmp(name, "send_queue") == 0) {
        if (opt_uint(c, idx, name, 0, UINT32_MAX, &v) < 0)
            return -1;
        o->send_queue = (uint32_t)v;
        return 0;
    }
    if (strcmp(name, "cacertfile") == 0)
        return opt_string(c, idx, name, &o->cacertfile);
    if (strcmp(name, "certfile") == 0)
        return opt_string(c, idx, name, &o->certfile);
    if (strcmp(name, "keyfile") == 0)
        return opt_string(c, idx, name, &o->keyfile);
    if (strcmp(name, "server_name") == 0)
        return opt_string(c, idx, name, &o->server_name);
    if (strcmp(name, "proxy") == 0)
        return opt_proxy(c, idx, o);
    if (strcmp(name, "server_name_indication") == 0) {
        char a[MAXATOMLEN_UTF8];
        if (get_atom(c, idx, a) < 0 || strcmp(a, "disable") != 0)
            return fail(c, "bad_option",
                        "connect: option server_name_indication must be disable, got %s",
                        describe(c, at, d, sizeof d));
        o->no_sni = 1;
        return 0;
    }
    if (strcmp(name, "pins") == 0)
        return opt_pins(c, idx, o);
    if (strcmp(name, "cacerts") == 0)
        return opt_der_list(c, idx, name, 4096, &o->cacerts, &o->cacert_lens, &o->ncacerts);
    if (strcmp(name, "cert") == 0)
        return opt_der_list(c, idx, name, WSP_MAX_CERT_CHAIN, &o->certs, &o->cert_lens,
                            &o->ncerts);
    if (strcmp(name, "key") == 0)
        return opt_secret(c, idx, name, WSP_MAX_KEY_LEN, &o->key, &o->key_len);
    if (strcmp(name, "password") == 0)
        return opt_secret(c, idx, name, WSP_MAX_PASSWORD_LEN, &o->password,
                          &o->password_len);
    if (strcmp(name, "versions") == 0)
        return opt_versions(c, idx, o);
    if (strcmp(name, "ciphers") == 0)
        return opt_string(c, idx, name, &o->ciphers);
    if (strcmp(name, "ciphersuites") == 0)
        return opt_string(c, idx, name, &o->ciphersuites);
    if (strcmp(name, "reuse_sessions") == 0) {
        char a[MAXATOMLEN_UTF8];
        int ok = get_atom(c, idx, a) == 0;
        if (ok && strcmp(a, "true") == 0)
            o->no_session_reuse = 0;
        else if (ok && strcmp(a, "false") == 0)
            o->no_session_reuse = 1;
        else
            return fail(c, "bad_option",
                        "connect: option reuse_sessions must be true or false, got %s",
                        describe(c, at, d, sizeof d));
        return 0;
    }
    return fail(c, "bad_option", "connect: unknown option %.64s", name);
}

static int decode_connect(struct dctx *c, int *idx, int arity, struct wsp_cmd *out)
{
    char d[96];
    if (arity != 4)
        return fail(c, "badarg", "connect: expected {connect, Id, Url, Opts}, got a %d-tuple",
                    arity);
    if (decode_id(c, idx, "connect", out) < 0)
        return -1;
    const uint8_t *up;
    size_t ul;
    int at = *idx;
    if (get_bin(c, idx, &up, &ul) < 0)
        return fail(c, "badarg", "connect: url must be a binary, got %s",
                    describe(c, at, d, sizeof d));
    if (ul == 0)
        return fail(c, "badarg", "connect: url must not be empty");
    if (memchr(up, 0, ul))
        return fail(c, "badarg", "connect: url must not contain NUL bytes");

    struct wsp_connect_opts *o = calloc(1, sizeof *o);
    if (!o)
        return fail(c, "badarg", "connect: out of memory");
    o->connect_timeout_ms = WSP_DEFAULT_CONNECT_TIMEOUT_MS;
    o->max_message_size = WSP_DEFAULT_MAX_MESSAGE_SIZE;
    o->active = WSP_ACTIVE_TRUE;
    o->verify = 1;
    wsp_backoff_default_retry_on(&o->retry); /* retry itself is off unless given */
    o->url = dup_bytes(up, ul);
    o->url_len = ul;
    if (!o->url) {
        wsp_connect_opts_free(o);
        return fail(c, "badarg", "connect: out of memory");
    }

    int n;
    at = *idx;
    if (get_list(c, idx, &n) < 0) {
        wsp_connect_opts_free(o);
        return fail(c, "badarg", "connect: options must be a list, got %s",
                    describe(c, at, d, sizeof d));
    }
    for (int k = 0; k < n; k++) {
        if (decode_option(c, idx, o) < 0) {
            wsp_connect_opts_free(o);
            return -1;
        }
    }
    if (n > 0 && list_end(c, idx) < 0) {
        wsp_connect_opts_free(o);
        return fail(c, "badarg", "connect: options must be a proper list");
    }
    out->connect = o;
    return 0;
}

static int send_opcode(const char *a)
{
    if (strcmp(a, "text") == 0) return WSC_OP_TEXT;
    if (strcmp(a, "binary") == 0) return WSC_OP_BINARY;
    if (strcmp(a, "ping") == 0) return WSC_OP_PING;
    if (strcmp(a, "pong") == 0) return WSC_OP_PONG;
    return -1;
}

static int check_ctl_len(struct dctx *c, int opcode, size_t n)
{
    if ((opcode == WSC_OP_PING || opcode == WSC_OP_PONG) && n > WSP_MAX_CTL_PAYLOAD)
        return fail(c, "badarg", "send: %s payload must be at most 125 bytes, got %zu",
                    opcode == WSC_OP_PING ? "ping" : "pong", n);
    return 0;
}

static int decode_send(struct dctx *c, int *idx, int arity, struct wsp_cmd *out)
{
    char d[96], a[MAXATOMLEN_UTF8];
    if (arity != 4)
        return fail(c, "badarg", "send: expected {send, Id, Type, Payload}, got a %d-tuple",
                    arity);
    if (decode_id(c, idx, "send", out) < 0)
        return -1;
    int at = *idx;
    if (get_atom(c, idx, a) < 0 || (out->opcode = send_opcode(a)) < 0) {
        out->opcode = 0;
        return fail(c, "badarg", "send: type must be text, binary, ping or pong, got %s",
                    describe(c, at, d, sizeof d));
    }
    at = *idx;
    if (get_bin(c, idx, &out->payload, &out->payload_len) < 0)
        return fail(c, "badarg", "send: payload must be a binary, got %s",
                    describe(c, at, d, sizeof d));
    return check_ctl_len(c, out->opcode, out->payload_len);
}

static int decode_close(struct dctx *c, int *idx, int arity, struct wsp_cmd *out)
{
    char d[96];
    if (arity != 4)
        return fail(c, "badarg", "close: expected {close, Id, Code, Reason}, got a %d-tuple",
                    arity);
    if (decode_id(c, idx, "close", out) < 0)
        return -1;
    long long code;
    int at = *idx;
    if (get_int(c, idx, 0, 65535, &code) < 0 || !wsc_close_code_valid((unsigned)code))
        return fail(c, "badarg",
                    "close: code must be a valid close code (1000-1003, 1007-1014, "
                    "3000-4999), got %s", describe(c, at, d, sizeof d));
    out->close_code = (unsigned)code;
    at = *idx;
    if (get_bin(c, idx, &out->reason, &out->reason_len) < 0)
        return fail(c, "badarg", "close: reason must be a binary, got %s",
                    describe(c, at, d, sizeof d));
    if (out->reason_len > WSP_MAX_CLOSE_REASON)
        return fail(c, "badarg", "close: reason must be at most 123 bytes, got %zu",
                    out->reason_len);
    wsc_utf8 u = {0};
    if (wsc_utf8_feed(&u, out->reason, out->reason_len) < 0 || !wsc_utf8_complete(&u))
        return fail(c, "badarg", "close: reason must be valid UTF-8");
    return 0;
}

static int decode_active(struct dctx *c, int *idx, int arity, struct wsp_cmd *out)
{
    char d[96];
    if (arity != 3)
        return fail(c, "badarg", "active: expected {active, Id, Active}, got a %d-tuple",
                    arity);
    if (decode_id(c, idx, "active", out) < 0)
        return -1;
    int at = *idx;
    if (parse_active(c, idx, &out->active, &out->active_n) < 0)
        return fail(c, "badarg", "active: Active " ACTIVE_MSG ", got %s",
                    describe(c, at, d, sizeof d));
    return 0;
}

static int decode_reconnect(struct dctx *c, int *idx, int arity, struct wsp_cmd *out)
{
    char d[96];
    if (arity != 3)
        return fail(c, "badarg",
                    "reconnect: expected {reconnect, Id, DelayMs}, got a %d-tuple", arity);
    if (decode_id(c, idx, "reconnect", out) < 0)
        return -1;
    int at = *idx;
    long long v;
    if (get_int(c, idx, 0, UINT32_MAX, &v) < 0)
        return fail(c, "badarg", "reconnect: DelayMs must be a non-negative integer, got %s",
                    describe(c, at, d, sizeof d));
    out->delay_ms = (uint32_t)v;
    return 0;
}

/* {stats, Id}; {stats, 0} asks for the program's own figures */
static int decode_stats(struct dctx *c, int *idx, int arity, struct wsp_cmd *out)
{
    if (arity != 2)
        return fail(c, "badarg", "stats: expected {stats, Id}, got a %d-tuple", arity);
    long long v;
    int i = *idx;
    if (get_int(c, &i, 0, 0, &v) == 0) {
        *idx = i;
        out->id = 0;
        return 0;
    }
    return decode_id(c, idx, "stats", out);
}

static int decode_raw(struct dctx *c, struct wsp_cmd *out)
{
    const uint8_t *b = c->b;
    if (b[0] != WSP_RAW_SEND)
        return fail(c, "badarg", "unknown packet type %u (expected 131 or %d)",
                    (unsigned)b[0], WSP_RAW_SEND);
    if (c->len < 6)
        return fail(c, "badarg", "truncated packet: raw send needs at least 6 bytes, got %zu",
                    c->len);
    uint32_t id = rd32(b + 1);
    if (id == 0)
        return fail(c, "badarg", "send: " ID_MSG ", got 0");
    out->id = id;
    int op = b[5];
    if (op != WSC_OP_TEXT && op != WSC_OP_BINARY && op != WSC_OP_PING && op != WSC_OP_PONG)
        return fail(c, "badarg", "send: raw opcode must be 1, 2, 9 or 10, got %d", op);
    out->type = WSP_CMD_SEND;
    out->opcode = op;
    out->payload = b + 6;
    out->payload_len = c->len - 6;
    return check_ctl_len(c, op, out->payload_len);
}

static int decode_term(struct dctx *c, struct wsp_cmd *out)
{
    if (c->len > INT_MAX)
        return fail(c, "badarg", "packet too large for a term (%zu bytes)", c->len);
    size_t end = 1;
    int r = term_skip(c->b, c->len, &end, 0);
    switch (r) {
    case V_OK: break;
    case V_TRUNC: return fail(c, "badarg", "truncated packet (%zu bytes)", c->len);
    case V_DEEP:
        return fail(c, "badarg", "term nested deeper than %d levels", WSP_MAX_DEPTH);
    case V_ATOM: return fail(c, "badarg", "atom too long at byte %zu", end);
    default:
        return fail(c, "badarg", "unsupported term type (tag %u) at byte %zu",
                    (unsigned)c->b[end], end);
    }
    if (end != c->len)
        return fail(c, "badarg", "%zu trailing bytes after the term", c->len - end);

    int idx = 0, ver, arity;
    if (ei_decode_version(c->eb, &idx, &ver) < 0)
        return fail(c, "badarg", "bad term version");
    int t = tag_at(c, idx);
    if ((t != TAG_SMALL_TUPLE && t != TAG_LARGE_TUPLE) ||
        ei_decode_tuple_header(c->eb, &idx, &arity) < 0) {
        char d[96];
        return fail(c, "badarg", "packet is not a tuple, got %s",
                    describe(c, idx, d, sizeof d));
    }
    char name[MAXATOMLEN_UTF8];
    if (arity < 1 || get_atom(c, &idx, name) < 0)
        return fail(c, "badarg", "command must be a tuple starting with an atom");
    /* read the id early, so that even refused commands can be answered */
    if (arity >= 2) {
        int i = idx;
        long long v;
        if (get_int(c, &i, 1, 4294967295LL, &v) == 0)
            out->id = (uint32_t)v;
    }
    if (strcmp(name, "connect") == 0) {
        out->type = WSP_CMD_CONNECT;
        return decode_connect(c, &idx, arity, out);
    }
    if (strcmp(name, "send") == 0) {
        out->type = WSP_CMD_SEND;
        return decode_send(c, &idx, arity, out);
    }
    if (strcmp(name, "close") == 0) {
        out->type = WSP_CMD_CLOSE;
        return decode_close(c, &idx, arity, out);
    }
    if (strcmp(name, "active") == 0) {
        out->type = WSP_CMD_ACTIVE;
        return decode_active(c, &idx, arity, out);
    }
    if (strcmp(name, "reconnect") == 0) {
        out->type = WSP_CMD_RECONNECT;
        return decode_reconnect(c, &idx, arity, out);
    }
    if (strcmp(name, "stats") == 0) {
        out->type = WSP_CMD_STATS;
        return decode_stats(c, &idx, arity, out);
    }
    return fail(c, "badarg", "unknown command %.64s/%d", name, arity);
}

int wsp_decode_command(const uint8_t *buf, size_t len, struct wsp_cmd *out,
                       const char **what, char *err, size_t errcap)
{
    const char *dummy_what = NULL;
    struct dctx c = {
        .b = buf, .len = len, .eb = (const char *)buf,
        .what = what ? what : &dummy_what, .err = err, .errcap = errcap,
    };
    memset(out, 0, sizeof *out);
    *c.what = NULL;
    if (err && errcap)
        err[0] = '\0';
    if (!buf || len == 0)
        return fail(&c, "badarg", "empty packet");
    int r = buf[0] == TAG_VERSION ? decode_term(&c, out) : decode_raw(&c, out);
    if (r < 0) {
        wsp_cmd_free(out);
        return -1;
    }
    *c.what = NULL;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* events                                                                    */

static int enc_bin(ei_x_buff *x, const void *p, size_t n)
{
    if (n > INT_MAX)
        return -1;
    return ei_x_encode_binary(x, p ? p : "", (int)n);
}

static int enc_headers(ei_x_buff *x, const struct wsc_header *h, size_t n)
{
    if (n > LONG_MAX)
        return -1;
    if (n > 0) {
        if (ei_x_encode_list_header(x, (long)n) < 0)
            return -1;
        for (size_t k = 0; k < n; k++) {
            if (ei_x_encode_tuple_header(x, 2) < 0 ||
                enc_bin(x, h[k].name, h[k].name_len) < 0 ||
                enc_bin(x, h[k].value, h[k].value_len) < 0)
                return -1;
        }
    }
    return ei_x_encode_empty_list(x);
}

/* Starts {Tag, Id, ...} of the given arity. */
static int enc_start(ei_x_buff *x, int arity, const char *tag, uint32_t id)
{
    if (x->buff == NULL) {
        if (ei_x_new_with_version(x) < 0)
            return -1;
    } else {
        x->index = 0; /* reuse the buffer: no allocation per event */
        if (ei_x_encode_version(x) < 0)
            return -1;
    }
    if (ei_x_encode_tuple_header(x, arity) < 0 || ei_x_encode_atom(x, tag) < 0 ||
        ei_x_encode_ulong(x, id) < 0) {
        x->index = 0;
        return -1;
    }
    return 0;
}

static int enc_done(ei_x_buff *x, int r)
{
    if (r < 0) {
        x->index = 0;
        return -1;
    }
    return 0;
}

int wsp_enc_up(ei_x_buff *x, uint32_t id, int status,
               const struct wsc_header *headers, size_t nheaders,
               const char *protocol, size_t protocol_len, int tls_resumed)
{
    if (enc_start(x, 3, "up", id) < 0)
        return -1;
    int r = ei_x_encode_map_header(x, tls_resumed < 0 ? 3 : 4);
    if (tls_resumed >= 0) {
        r = r < 0 ? r : ei_x_encode_atom(x, "tls_resumed");
        r = r < 0 ? r : ei_x_encode_boolean(x, tls_resumed);
    }
    r = r < 0 ? r : ei_x_encode_atom(x, "status");
    r = r < 0 ? r : ei_x_encode_long(x, status);
    r = r < 0 ? r : ei_x_encode_atom(x, "headers");
    r = r < 0 ? r : enc_headers(x, headers, nheaders);
    r = r < 0 ? r : ei_x_encode_atom(x, "protocol");
    if (r >= 0)
        r = protocol ? enc_bin(x, protocol, protocol_len) : ei_x_encode_atom(x, "undefined");
    return enc_done(x, r);
}

int wsp_enc_closed_atom(ei_x_buff *x, uint32_t id, const char *atom)
{
    if (enc_start(x, 3, "closed", id) < 0)
        return -1;
    return enc_done(x, ei_x_encode_atom(x, atom));
}

int wsp_enc_closed_code(ei_x_buff *x, uint32_t id, const char *kind,
                        unsigned code, const char *text, size_t text_len)
{
    if (enc_start(x, 3, "closed", id) < 0)
        return -1;
    int r = ei_x_encode_tuple_header(x, 3);
    r = r < 0 ? r : ei_x_encode_atom(x, kind);
    r = r < 0 ? r : ei_x_encode_ulong(x, code);
    r = r < 0 ? r : enc_bin(x, text, text_len);
    return enc_done(x, r);
}

int wsp_enc_closed_detail(ei_x_buff *x, uint32_t id, const char *kind,
                          const char *detail, size_t detail_len)
{
    if (enc_start(x, 3, "closed", id) < 0)
        return -1;
    int r = ei_x_encode_tuple_header(x, 2);
    r = r < 0 ? r : ei_x_encode_atom(x, kind);
    r = r < 0 ? r : enc_bin(x, detail, detail_len);
    return enc_done(x, r);
}

int wsp_enc_closed_tag_atom(ei_x_buff *x, uint32_t id, const char *kind,
                            const char *atom)
{
    if (enc_start(x, 3, "closed", id) < 0)
        return -1;
    int r = ei_x_encode_tuple_header(x, 2);
    r = r < 0 ? r : ei_x_encode_atom(x, kind);
    r = r < 0 ? r : ei_x_encode_atom(x, atom);
    return enc_done(x, r);
}

int wsp_enc_closed_http(ei_x_buff *x, uint32_t id, int status,
                        const struct wsc_header *headers, size_t nheaders)
{
    if (enc_start(x, 3, "closed", id) < 0)
        return -1;
    int r = ei_x_encode_tuple_header(x, 3);
    r = r < 0 ? r : ei_x_encode_atom(x, "http_status");
    r = r < 0 ? r : ei_x_encode_long(x, status);
    r = r < 0 ? r : enc_headers(x, headers, nheaders);
    return enc_done(x, r);
}

static int enc_proxy_start(ei_x_buff *x, uint32_t id)
{
    if (enc_start(x, 3, "closed", id) < 0)
        return -1;
    int r = ei_x_encode_tuple_header(x, 2);
    return r < 0 ? r : ei_x_encode_atom(x, "proxy");
}

int wsp_enc_closed_proxy_atom(ei_x_buff *x, uint32_t id, const char *atom)
{
    if (enc_proxy_start(x, id) < 0)
        return enc_done(x, -1);
    return enc_done(x, ei_x_encode_atom(x, atom));
}

int wsp_enc_closed_proxy_tag(ei_x_buff *x, uint32_t id, const char *kind, const char *atom,
                             const char *detail, size_t detail_len)
{
    if (enc_proxy_start(x, id) < 0)
        return enc_done(x, -1);
    int r = ei_x_encode_tuple_header(x, 2);
    r = r < 0 ? r : ei_x_encode_atom(x, kind);
    if (atom)
        r = r < 0 ? r : ei_x_encode_atom(x, atom);
    else
        r = r < 0 ? r : enc_bin(x, detail, detail_len);
    return enc_done(x, r);
}

int wsp_enc_closed_proxy_http(ei_x_buff *x, uint32_t id, int status,
                              const struct wsc_header *headers, size_t nheaders)
{
    if (enc_proxy_start(x, id) < 0)
        return enc_done(x, -1);
    int r = ei_x_encode_tuple_header(x, 3);
    r = r < 0 ? r : ei_x_encode_atom(x, "http_status");
    r = r < 0 ? r : ei_x_encode_long(x, status);
    r = r < 0 ? r : enc_headers(x, headers, nheaders);
    return enc_done(x, r);
}

int wsp_enc_error(ei_x_buff *x, uint32_t id, const char *what,
                  const char *detail, size_t detail_len)
{
    if (enc_start(x, 3, "error", id) < 0)
        return -1;
    int r = ei_x_encode_tuple_header(x, 2);
    r = r < 0 ? r : ei_x_encode_atom(x, what);
    r = r < 0 ? r : enc_bin(x, detail, detail_len);
    return enc_done(x, r);
}

int wsp_enc_passive(ei_x_buff *x, uint32_t id)
{
    return enc_start(x, 2, "passive", id);
}

int wsp_enc_tag_id(ei_x_buff *x, const char *tag, uint32_t id)
{
    return enc_start(x, 2, tag, id);
}

int wsp_enc_pong(ei_x_buff *x, uint32_t id, int64_t rtt_us)
{
    if (enc_start(x, 3, "pong", id) < 0)
        return -1;
    return enc_done(x, ei_x_encode_longlong(x, rtt_us));
}

int wsp_enc_stats(ei_x_buff *x, uint32_t id, const struct wsp_stats *s)
{
    if (enc_start(x, 3, "stats", id) < 0)
        return -1;
    int r = ei_x_encode_map_header(x, 13);
    r = r < 0 ? r : ei_x_encode_atom(x, "tls_resumed");
    if (r >= 0)
        r = s->tls_resumed < 0 ? ei_x_encode_atom(x, "undefined")
                               : ei_x_encode_boolean(x, s->tls_resumed);
    r = r < 0 ? r : ei_x_encode_atom(x, "attempt");
    r = r < 0 ? r : ei_x_encode_ulonglong(x, s->attempt);
    r = r < 0 ? r : ei_x_encode_atom(x, "reconnects");
    r = r < 0 ? r : ei_x_encode_ulonglong(x, s->reconnects);
    r = r < 0 ? r : ei_x_encode_atom(x, "state");
    r = r < 0 ? r : ei_x_encode_atom(x, s->state ? s->state : "undefined");
    r = r < 0 ? r : ei_x_encode_atom(x, "bytes_in");
    r = r < 0 ? r : ei_x_encode_ulonglong(x, s->bytes_in);
    r = r < 0 ? r : ei_x_encode_atom(x, "bytes_out");
    r = r < 0 ? r : ei_x_encode_ulonglong(x, s->bytes_out);
    r = r < 0 ? r : ei_x_encode_atom(x, "msgs_in");
    r = r < 0 ? r : ei_x_encode_ulonglong(x, s->msgs_in);
    r = r < 0 ? r : ei_x_encode_atom(x, "msgs_out");
    r = r < 0 ? r : ei_x_encode_ulonglong(x, s->msgs_out);
    r = r < 0 ? r : ei_x_encode_atom(x, "rtt_us");
    if (r >= 0)
        r = s->last_rtt_us < 0 ? ei_x_encode_atom(x, "undefined")
                               : ei_x_encode_longlong(x, s->last_rtt_us);
    r = r < 0 ? r : ei_x_encode_atom(x, "connected_us");
    if (r >= 0)
        r = s->connected_us < 0 ? ei_x_encode_atom(x, "undefined")
                                : ei_x_encode_longlong(x, s->connected_us);
    r = r < 0 ? r : ei_x_encode_atom(x, "credit");
    if (r >= 0)
        r = s->credit < 0 ? ei_x_encode_atom(x, "infinity")
                          : ei_x_encode_longlong(x, s->credit);
    r = r < 0 ? r : ei_x_encode_atom(x, "msgs_spliced");
    r = r < 0 ? r : ei_x_encode_ulonglong(x, s->msgs_spliced);
    r = r < 0 ? r : ei_x_encode_atom(x, "compression");
    if (r >= 0 && !s->pmd) {
        r = ei_x_encode_atom(x, "false");
    } else if (r >= 0) {
        const struct wsp_pmd *p = s->pmd;
        r = ei_x_encode_map_header(x, 8);
        r = r < 0 ? r : ei_x_encode_atom(x, "server_max_window_bits");
        r = r < 0 ? r : ei_x_encode_long(x, p->agreed.server_max_window_bits);
        r = r < 0 ? r : ei_x_encode_atom(x, "client_max_window_bits");
        r = r < 0 ? r : ei_x_encode_long(x, p->agreed.client_max_window_bits);
        r = r < 0 ? r : ei_x_encode_atom(x, "server_no_context_takeover");
        r = r < 0 ? r : ei_x_encode_boolean(x, p->agreed.server_no_context_takeover);
        r = r < 0 ? r : ei_x_encode_atom(x, "client_no_context_takeover");
        r = r < 0 ? r : ei_x_encode_boolean(x, p->agreed.client_no_context_takeover);
        r = r < 0 ? r : ei_x_encode_atom(x, "bytes_in_wire");
        r = r < 0 ? r : ei_x_encode_ulonglong(x, p->in_wire);
        r = r < 0 ? r : ei_x_encode_atom(x, "bytes_in_plain");
        r = r < 0 ? r : ei_x_encode_ulonglong(x, p->in_plain);
        r = r < 0 ? r : ei_x_encode_atom(x, "bytes_out_wire");
        r = r < 0 ? r : ei_x_encode_ulonglong(x, p->out_wire);
        r = r < 0 ? r : ei_x_encode_atom(x, "bytes_out_plain");
        r = r < 0 ? r : ei_x_encode_ulonglong(x, p->out_plain);
    }
    return enc_done(x, r);
}

int wsp_enc_program_stats(ei_x_buff *x, uint64_t connections, uint64_t lingering)
{
    if (enc_start(x, 3, "stats", 0) < 0)
        return -1;
    int r = ei_x_encode_map_header(x, 2);
    r = r < 0 ? r : ei_x_encode_atom(x, "connections");
    r = r < 0 ? r : ei_x_encode_ulonglong(x, connections);
    r = r < 0 ? r : ei_x_encode_atom(x, "lingering");
    r = r < 0 ? r : ei_x_encode_ulonglong(x, lingering);
    return enc_done(x, r);
}

int wsp_enc_closed_to_down(const ei_x_buff *closed, ei_x_buff *x, uint64_t attempt,
                           int64_t delay_ms, uint64_t unsent_bytes)
{
    int i = 0, ver, arity;
    const char *b = closed->buff;
    if (!b || ei_decode_version(b, &i, &ver) < 0 || ei_decode_tuple_header(b, &i, &arity) < 0 ||
        arity != 3 || ei_skip_term(b, &i) < 0)
        return -1;
    unsigned long id;
    if (ei_decode_ulong(b, &i, &id) < 0)
        return -1;
    if (enc_start(x, 4, "down", (uint32_t)id) < 0)
        return -1;
    int r = ei_x_append_buf(x, b + i, closed->index - i);
    r = r < 0 ? r : ei_x_encode_map_header(x, 3);
    r = r < 0 ? r : ei_x_encode_atom(x, "attempt");
    r = r < 0 ? r : ei_x_encode_ulonglong(x, attempt);
    r = r < 0 ? r : ei_x_encode_atom(x, "delay_ms");
    if (r >= 0)
        r = delay_ms < 0 ? ei_x_encode_atom(x, "manual") : ei_x_encode_longlong(x, delay_ms);
    r = r < 0 ? r : ei_x_encode_atom(x, "unsent_bytes");
    r = r < 0 ? r : ei_x_encode_ulonglong(x, unsent_bytes);
    return enc_done(x, r);
}

void wsp_data_entry_header(uint8_t out[WSP_DATA_ENTRY_HDR], uint32_t id,
                           int opcode, uint32_t len)
{
    out[0] = (uint8_t)(id >> 24);
    out[1] = (uint8_t)(id >> 16);
    out[2] = (uint8_t)(id >> 8);
    out[3] = (uint8_t)id;
    out[4] = (uint8_t)opcode;
    out[5] = (uint8_t)(len >> 24);
    out[6] = (uint8_t)(len >> 16);
    out[7] = (uint8_t)(len >> 8);
    out[8] = (uint8_t)len;
}
