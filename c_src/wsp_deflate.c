#include "wsp_deflate.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

struct wsp_pmd_stream {
    z_stream z;
};

void wsp_pmd_config_default(struct wsp_pmd_config *c)
{
    memset(c, 0, sizeof *c);
    c->level = WSP_PMD_DEFAULT_LEVEL;
    c->threshold = WSP_PMD_DEFAULT_THRESHOLD;
}

int wsp_pmd_config_parse(const char *spec, struct wsp_pmd_config *c, char *err, size_t errcap)
{
    static const struct {
        const char *name;
        long lo, hi; /* lo > hi: a flag, no value */
    } keys[] = {
        {"client_max_window_bits", 9, 15}, {"server_max_window_bits", 8, 15},
        {"client_no_context_takeover", 1, 0}, {"server_no_context_takeover", 1, 0},
        {"level", 0, 9}, {"mem_level", 1, 9}, {"threshold", 0, 4294967295L},
    };
    wsp_pmd_config_default(c);
    c->enabled = 1;
    const char *p = spec;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        size_t kn = eq ? (size_t)(eq - p) : n;
        size_t k;
        for (k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            if (strlen(keys[k].name) == kn && !strncmp(keys[k].name, p, kn)) {
                break;
            }
        }
        if (k == sizeof keys / sizeof keys[0]) {
            snprintf(err, errcap, "unknown compression parameter '%.*s'", (int)kn, p);
            return -1;
        }
        long v = 1;
        if (keys[k].lo > keys[k].hi) {
            if (eq) {
                snprintf(err, errcap, "%s takes no value", keys[k].name);
                return -1;
            }
        } else {
            char num[16];
            size_t vn = eq ? n - kn - 1 : 0;
            char *rest = NULL;
            if (vn) {
                memcpy(num, eq + 1, vn < sizeof num - 1 ? vn : sizeof num - 1);
                num[vn < sizeof num - 1 ? vn : sizeof num - 1] = 0;
                v = strtol(num, &rest, 10);
            }
            if (!vn || vn >= sizeof num || *rest || num[0] == '-' || num[0] == '+' ||
                v < keys[k].lo || v > keys[k].hi) {
                snprintf(err, errcap, "%s needs an integer from %ld to %ld", keys[k].name,
                         keys[k].lo, keys[k].hi);
                return -1;
            }
        }
        switch (k) {
        case 0: c->client_max_window_bits = (int)v; break;
        case 1: c->server_max_window_bits = (int)v; break;
        case 2: c->client_no_context_takeover = 1; break;
        case 3: c->server_no_context_takeover = 1; break;
        case 4: c->level = (int)v; break;
        case 5: c->mem_level = (int)v; break;
        default: c->threshold = (uint32_t)v; break;
        }
        p = end ? end + 1 : p + n;
    }
    return 0;
}

/* ---- the offer ----------------------------------------------------------- */

int wsp_pmd_offer(const struct wsp_pmd_config *c, char *out, size_t cap)
{
    char cmw[32] = "", smw[32] = "";
    if (c->client_max_window_bits) {
        snprintf(cmw, sizeof cmw, "=%d", c->client_max_window_bits);
    }
    if (c->server_max_window_bits) {
        snprintf(smw, sizeof smw, "; server_max_window_bits=%d", c->server_max_window_bits);
    }
    /* client_max_window_bits is always offered: it tells the server we can
     * use a window it picks (RFC 7692 7.1.2.2) */
    int n = snprintf(out, cap, "permessage-deflate; client_max_window_bits%s%s%s%s", cmw, smw,
                     c->client_no_context_takeover ? "; client_no_context_takeover" : "",
                     c->server_no_context_takeover ? "; server_no_context_takeover" : "");
    if (n < 0 || (size_t)n >= cap) {
        return -1;
    }
    return n;
}

/* ---- the answer ------------------------------------------------------------ */

static int is_tchar(unsigned char ch)
{
    if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')) {
        return 1;
    }
    return ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static int is_ows(unsigned char ch) { return ch == ' ' || ch == '\t'; }

static int ieq(const char *a, size_t n, const char *z)
{
    size_t zn = strlen(z);
    if (n != zn) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)z[i];
        if (x >= 'A' && x <= 'Z') {
            x = (unsigned char)(x + 32);
        }
        if (x != y) {
            return 0;
        }
    }
    return 1;
}

enum { P_SNCT, P_CNCT, P_SMWB, P_CMWB, P_N };

static const char *const param_name[P_N] = {
    "server_no_context_takeover", "client_no_context_takeover",
    "server_max_window_bits", "client_max_window_bits",
};

#define ANS "permessage-deflate answer: "
static const char *const err_twice[P_N] = {
    ANS "server_no_context_takeover given twice", ANS "client_no_context_takeover given twice",
    ANS "server_max_window_bits given twice", ANS "client_max_window_bits given twice",
};
static const char *const err_value[P_N] = {
    ANS "server_no_context_takeover takes no value", ANS "client_no_context_takeover takes no value",
    ANS "server_max_window_bits needs a value 8..15", ANS "client_max_window_bits needs a value 8..15",
};
static const char *const err_bad[P_N] = {
    NULL, NULL, ANS "server_max_window_bits is not a number 8..15",
    ANS "client_max_window_bits is not a number 8..15",
};

static int afail(const char **errstr, const char *msg)
{
    *errstr = msg;
    return -1;
}

/* 8..15 written without leading zeroes: "8", "9", "10" .. "15" */
static int window_value(const char *v, size_t n)
{
    if (n == 1 && (v[0] == '8' || v[0] == '9')) {
        return v[0] - '0';
    }
    if (n == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5') {
        return 10 + (v[1] - '0');
    }
    return -1;
}

int wsp_pmd_parse_answer(const struct wsp_pmd_config *c, const char *v, size_t n,
                         struct wsp_pmd_agreed *out, const char **errstr)
{
    size_t i = 0;
    int seen[P_N] = {0}, val[P_N] = {0};
    *errstr = NULL;
    if (!c->enabled) {
        return afail(errstr, ANS "the server chose an extension we did not offer");
    }
    while (i < n && is_ows((unsigned char)v[i])) {
        i++;
    }
    size_t s = i;
    while (i < n && is_tchar((unsigned char)v[i])) {
        i++;
    }
    if (i == s) {
        return afail(errstr, ANS "no extension named");
    }
    if (!ieq(v + s, i - s, "permessage-deflate")) {
        return afail(errstr, ANS "the server chose an extension we did not offer");
    }
    for (;;) {
        while (i < n && is_ows((unsigned char)v[i])) {
            i++;
        }
        if (i == n) {
            break;
        }
        if (v[i] == ',') {
            return afail(errstr, ANS "more than one extension (only permessage-deflate was offered)");
        }
        if (v[i] != ';') {
            return afail(errstr, ANS "malformed parameter list (expected ';')");
        }
        i++;
        while (i < n && is_ows((unsigned char)v[i])) {
            i++;
        }
        s = i;
        while (i < n && is_tchar((unsigned char)v[i])) {
            i++;
        }
        if (i == s) {
            return afail(errstr, ANS "empty parameter name");
        }
        int which = -1;
        for (int k = 0; k < P_N; k++) {
            if (ieq(v + s, i - s, param_name[k])) {
                which = k;
            }
        }
        if (which < 0) {
            return afail(errstr, ANS "unknown parameter");
        }
        if (seen[which]) {
            return afail(errstr, err_twice[which]);
        }
        seen[which] = 1;
        while (i < n && is_ows((unsigned char)v[i])) {
            i++;
        }
        if (i < n && v[i] == '=') {
            if (which == P_SNCT || which == P_CNCT) {
                return afail(errstr, err_value[which]);
            }
            i++;
            while (i < n && is_ows((unsigned char)v[i])) {
                i++;
            }
            char buf[4];
            size_t bl = 0;
            if (i < n && v[i] == '"') { /* quoted-string form (RFC 7692 7.1) */
                i++;
                while (i < n && v[i] != '"') {
                    if (v[i] == '\\') {
                        i++;
                    }
                    if (i < n) {
                        if (bl < sizeof buf) {
                            buf[bl] = v[i];
                        }
                        bl++;
                        i++;
                    }
                }
                if (i == n) {
                    return afail(errstr, err_bad[which]);
                }
                i++;
            } else {
                while (i < n && is_tchar((unsigned char)v[i])) {
                    if (bl < sizeof buf) {
                        buf[bl] = v[i];
                    }
                    bl++;
                    i++;
                }
            }
            int w = bl <= sizeof buf ? window_value(buf, bl) : -1;
            if (w < 0) {
                return afail(errstr, err_bad[which]);
            }
            val[which] = w;
        } else if (which == P_SMWB) {
            /* the server's window must be stated */
            return afail(errstr, err_value[which]);
        }
    }
    if (seen[P_CMWB] && val[P_CMWB] == 0) {
        return afail(errstr, err_value[P_CMWB]);
    }
    if (seen[P_SMWB] && c->server_max_window_bits && val[P_SMWB] > c->server_max_window_bits) {
        return afail(errstr, ANS "server_max_window_bits larger than offered");
    }
    /* RFC 7692 7.1.1.1, 7.1.2.1: a server accepts an offer holding these
     * by answering them; our one offer held them, so they must be there */
    if (c->server_max_window_bits && !seen[P_SMWB]) {
        return afail(errstr, ANS "server_max_window_bits was offered but not answered");
    }
    if (c->server_no_context_takeover && !seen[P_SNCT]) {
        return afail(errstr, ANS "server_no_context_takeover was offered but not answered");
    }
    out->server_no_context_takeover = seen[P_SNCT];
    out->client_no_context_takeover = seen[P_CNCT];
    out->server_max_window_bits = seen[P_SMWB] ? val[P_SMWB] : 15;
    int cw = seen[P_CMWB] ? val[P_CMWB] : 15;
    if (c->client_max_window_bits && c->client_max_window_bits < cw) {
        cw = c->client_max_window_bits;
    }
    out->client_max_window_bits = cw;
    return 0;
}

/* ---- the streams ------------------------------------------------------------ */

void wsp_pmd_init(struct wsp_pmd *p, const struct wsp_pmd_config *c,
                  const struct wsp_pmd_agreed *a, uint64_t max_message_size)
{
    memset(p, 0, sizeof *p);
    p->agreed = *a;
    p->level = c->level;
    p->mem_level = c->mem_level;
    p->threshold = c->threshold;
    p->max_message_size = max_message_size;
}

static void free_inf(struct wsp_pmd *p)
{
    if (p->inf) {
        inflateEnd(&p->inf->z);
        free(p->inf);
        p->inf = NULL;
    }
}

static void free_def(struct wsp_pmd *p)
{
    if (p->def) {
        deflateEnd(&p->def->z);
        free(p->def);
        p->def = NULL;
    }
}

void wsp_pmd_free(struct wsp_pmd *p)
{
    free_inf(p);
    free_def(p);
}

int wsp_pmd_has_inflater(const struct wsp_pmd *p) { return p->inf != NULL; }
int wsp_pmd_has_deflater(const struct wsp_pmd *p) { return p->def != NULL; }

void wsp_pmd_inflate_begin(struct wsp_pmd *p, int text)
{
    p->msg_out = 0;
    p->msg_text = text;
    p->utf8.state = 0;
}

#define INFLATE_CHUNK (16 * 1024)

static int ifail(unsigned *code, const char **errstr, unsigned c, const char *msg)
{
    *code = c;
    *errstr = msg;
    return -1;
}

/* Runs the inflater over src[0..len). */
static int inflate_some(struct wsp_pmd *p, const uint8_t *src, size_t len, struct wsp_buf *out,
                        unsigned *code, const char **errstr)
{
    z_stream *z = &p->inf->z;
    while (len > 0) {
        size_t part = len > (1u << 30) ? (1u << 30) : len;
        z->next_in = (Bytef *)(uintptr_t)src;
        z->avail_in = (uInt)part;
        src += part;
        len -= part;
        for (;;) {
            size_t room = INFLATE_CHUNK;
            if (p->max_message_size) {
                /* one byte past the limit is enough to know: the work and
                 * the memory of a bomb end there */
                uint64_t left = p->max_message_size - p->msg_out + 1;
                if (left < room) {
                    room = (size_t)left;
                }
            }
            uint8_t *dst = wsp_buf_reserve(out, room);
            if (!dst) {
                return ifail(code, errstr, 1009, "out of memory inflating a message");
            }
            z->next_out = dst;
            z->avail_out = (uInt)room;
            int r = inflate(z, Z_SYNC_FLUSH);
            size_t got = room - z->avail_out;
            wsp_buf_commit(out, got);
            p->msg_out += got;
            p->in_plain += got;
            if (p->msg_text && wsc_utf8_feed(&p->utf8, dst, got) < 0) {
                return ifail(code, errstr, 1007, "invalid UTF-8 in text message");
            }
            if (p->max_message_size && p->msg_out > p->max_message_size) {
                return ifail(code, errstr, 1009, "message exceeds max_message_size once inflated");
            }
            if (r == Z_STREAM_END) {
                /* BFINAL was set (RFC 7692 7.2.3.4): what follows starts
                 * a new deflate stream */
                inflateReset(z);
                if (z->avail_in == 0) {
                    break;
                }
                continue;
            }
            if (r == Z_MEM_ERROR) {
                return ifail(code, errstr, 1009, "out of memory inflating a message");
            }
            if (r != Z_OK && r != Z_BUF_ERROR) {
                return ifail(code, errstr, 1007, "invalid deflate data in a compressed message");
            }
            if (z->avail_out != 0 || r == Z_BUF_ERROR) {
                if (z->avail_in != 0 && got == 0) {
                    /* cannot happen with room left; never loop */
                    return ifail(code, errstr, 1007, "invalid deflate data in a compressed message");
                }
                if (z->avail_in == 0) {
                    break;
                }
            }
        }
    }
    return 0;
}

int wsp_pmd_inflate(struct wsp_pmd *p, const uint8_t *in, size_t n, int last,
                    struct wsp_buf *out, unsigned *code, const char **errstr)
{
    static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
    if (!p->inf) {
        p->inf = calloc(1, sizeof *p->inf);
        if (!p->inf) {
            return ifail(code, errstr, 1009, "out of memory inflating a message");
        }
        int wb = p->agreed.server_max_window_bits ? p->agreed.server_max_window_bits : 15;
        if (inflateInit2(&p->inf->z, -wb) != Z_OK) {
            free(p->inf);
            p->inf = NULL;
            return ifail(code, errstr, 1009, "out of memory inflating a message");
        }
    }
    p->in_wire += n;
    if (inflate_some(p, in, n, out, code, errstr) < 0) {
        return -1;
    }
    if (!last) {
        return 0;
    }
    if (inflate_some(p, tail, sizeof tail, out, code, errstr) < 0) {
        return -1;
    }
    /* the tail ends an empty stored block: the inflater must now stand
     * between blocks with nothing left over (data_type bit 128), else the
     * message's deflate data stopped short */
    if (p->inf->z.avail_in != 0 || !(p->inf->z.data_type & 128)) {
        return ifail(code, errstr, 1007, "truncated deflate data in a compressed message");
    }
    if (p->msg_text && !wsc_utf8_complete(&p->utf8)) {
        return ifail(code, errstr, 1007, "invalid UTF-8 in text message");
    }
    if (p->agreed.server_no_context_takeover) {
        free_inf(p); /* nothing to keep: an idle connection holds no stream */
    }
    return 0;
}

int wsp_pmd_should_compress(const struct wsp_pmd *p, size_t len)
{
    /* zlib cannot deflate with a 256-byte window: with 8 agreed, send
     * every message uncompressed (RFC 7692 6: compression is per message) */
    return p->agreed.client_max_window_bits >= 9 && len >= p->threshold;
}

int wsp_pmd_deflate(struct wsp_pmd *p, const uint8_t *in, size_t n, struct wsp_buf *out)
{
    if (!p->def) {
        p->def = calloc(1, sizeof *p->def);
        if (!p->def) {
            return -1;
        }
        int wb = p->agreed.client_max_window_bits;
        int ml = p->mem_level ? p->mem_level : (wb - 7 < 1 ? 1 : wb - 7);
        if (deflateInit2(&p->def->z, p->level, Z_DEFLATED, -wb, ml, Z_DEFAULT_STRATEGY) != Z_OK) {
            free(p->def);
            p->def = NULL;
            return -1;
        }
    }
    z_stream *z = &p->def->z;
    size_t start = wsp_buf_pending(out);
    const uint8_t *src = in;
    size_t len = n;
    for (;;) {
        size_t part = len > (1u << 30) ? (1u << 30) : len;
        z->next_in = (Bytef *)(uintptr_t)src;
        z->avail_in = (uInt)part;
        src += part;
        len -= part;
        int flush = len ? Z_NO_FLUSH : Z_SYNC_FLUSH;
        do {
            size_t room = deflateBound(z, z->avail_in) + 16;
            if (room > (1u << 30)) {
                room = 1u << 30;
            }
            uint8_t *dst = wsp_buf_reserve(out, room);
            if (!dst) {
                free_def(p);
                return -1;
            }
            z->next_out = dst;
            z->avail_out = (uInt)room;
            int r = deflate(z, flush);
            if (r != Z_OK && r != Z_BUF_ERROR) {
                free_def(p);
                return -1;
            }
            wsp_buf_commit(out, room - z->avail_out);
        } while (z->avail_out == 0 || z->avail_in != 0);
        if (!len) {
            break;
        }
    }
    /* RFC 7692 7.2.1: drop the 00 00 ff ff the sync flush ended with */
    size_t got = wsp_buf_pending(out) - start;
    if (got >= 4) {
        out->len -= 4;
        got -= 4;
    }
    if (got == 0) {
        /* nothing new to flush (an empty message): zlib wrote nothing, but
         * the receiver needs a block to end (RFC 7692 7.2.3.6) */
        static const uint8_t empty = 0x00;
        if (wsp_buf_append(out, &empty, 1) < 0) {
            free_def(p);
            return -1;
        }
        got = 1;
    }
    p->out_plain += n;
    p->out_wire += got;
    if (p->agreed.client_no_context_takeover) {
        free_def(p);
    }
    return 0;
}
