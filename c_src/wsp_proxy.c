/* wsp_proxy: see wsp_proxy.h. */
#include "wsp_proxy.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <string.h>

static int bad(struct wsp_proxy_fail *f, const char *detail)
{
    f->kind = WSP_PXF_BAD;
    f->detail = detail;
    f->atom = NULL;
    return WSP_PX_FAIL;
}

static int socks_fail(struct wsp_proxy_fail *f, const char *atom)
{
    f->kind = WSP_PXF_SOCKS;
    f->atom = atom;
    f->detail = NULL;
    return WSP_PX_FAIL;
}

static size_t base64(const uint8_t *in, size_t n, char *out)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = t[v >> 18 & 63];
        out[o++] = t[v >> 12 & 63];
        out[o++] = t[v >> 6 & 63];
        out[o++] = t[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = t[v >> 18 & 63];
        out[o++] = t[v >> 12 & 63];
        out[o++] = i + 1 < n ? t[v >> 6 & 63] : '=';
        out[o++] = '=';
    }
    return o;
}

static int has_crlf(const char *s)
{
    return strpbrk(s, "\r\n") != NULL;
}

static int http_start(struct wsp_proxy_hs *hs, uint8_t *out, size_t cap, size_t *outlen,
                      struct wsp_proxy_fail *fail)
{
    const struct wsp_proxy_conf *cf = hs->conf;
    size_t hl = strlen(hs->target_host);
    if (hl == 0 || hl > 255 || has_crlf(hs->target_host) || strchr(hs->target_host, ' '))
        return bad(fail, "the target host cannot go in a CONNECT request");
    char authority[270];
    snprintf(authority, sizeof authority, strchr(hs->target_host, ':') ? "[%s]:%u" : "%s:%u",
             hs->target_host, (unsigned)hs->target_port);
    int n = snprintf((char *)out, cap, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n", authority,
                     authority);
    if (n < 0 || (size_t)n >= cap)
        return WSP_PX_NOSPC;
    size_t o = (size_t)n;
    if (cf->username) {
        size_t ul = strlen(cf->username), pl = cf->password ? strlen(cf->password) : 0;
        if (ul > 255 || pl > 255)
            return bad(fail, "proxy credentials longer than 255 bytes");
        uint8_t cred[512];
        memcpy(cred, cf->username, ul);
        cred[ul] = ':';
        if (pl)
            memcpy(cred + ul + 1, cf->password, pl);
        static const char pre[] = "Proxy-Authorization: Basic ";
        size_t b64 = (ul + 1 + pl + 2) / 3 * 4;
        if (o + sizeof pre - 1 + b64 + 2 > cap)
            return WSP_PX_NOSPC;
        memcpy(out + o, pre, sizeof pre - 1);
        o += sizeof pre - 1;
        o += base64(cred, ul + 1 + pl, (char *)out + o);
        memset(cred, 0, sizeof cred);
        out[o++] = '\r';
        out[o++] = '\n';
    }
    if (o + 2 > cap)
        return WSP_PX_NOSPC;
    out[o++] = '\r';
    out[o++] = '\n';
    *outlen = o;
    hs->step = WSP_PX_HTTP_RESPONSE;
    wsc_response_reader_init(&hs->rr);
    return WSP_PX_MORE;
}

static int socks_request(struct wsp_proxy_hs *hs, uint8_t *out, size_t cap, size_t *outlen,
                         struct wsp_proxy_fail *fail)
{
    uint8_t a[16];
    size_t o = 0;
    size_t hl = strlen(hs->target_host);
    if (cap < 4 + 1 + 255 + 2)
        return WSP_PX_NOSPC;
    out[o++] = 5;
    out[o++] = 1; /* CONNECT */
    out[o++] = 0;
    if (inet_pton(AF_INET, hs->target_host, a) == 1) {
        out[o++] = 1;
        memcpy(out + o, a, 4);
        o += 4;
    } else if (inet_pton(AF_INET6, hs->target_host, a) == 1) {
        out[o++] = 4;
        memcpy(out + o, a, 16);
        o += 16;
    } else {
        if (hl == 0 || hl > 255)
            return bad(fail, "the target host name is longer than SOCKS5 allows (255 bytes)");
        out[o++] = 3;
        out[o++] = (uint8_t)hl;
        memcpy(out + o, hs->target_host, hl);
        o += hl;
    }
    out[o++] = (uint8_t)(hs->target_port >> 8);
    out[o++] = (uint8_t)(hs->target_port & 0xff);
    *outlen = o;
    hs->step = WSP_PX_SOCKS_REPLY;
    return WSP_PX_MORE;
}

int wsp_proxy_start(struct wsp_proxy_hs *hs, const struct wsp_proxy_conf *conf,
                    const char *target_host, uint16_t target_port, uint8_t *out, size_t cap,
                    size_t *outlen, struct wsp_proxy_fail *fail)
{
    memset(hs, 0, sizeof *hs);
    hs->conf = conf;
    hs->target_host = target_host;
    hs->target_port = target_port;
    *outlen = 0;
    if (conf->type == WSP_PROXY_HTTP)
        return http_start(hs, out, cap, outlen, fail);
    if (conf->type != WSP_PROXY_SOCKS5)
        return bad(fail, "no proxy");
    if (conf->username &&
        (strlen(conf->username) > 255 || (conf->password && strlen(conf->password) > 255)))
        return bad(fail, "proxy credentials longer than 255 bytes");
    if (cap < 4)
        return WSP_PX_NOSPC;
    out[0] = 5;
    if (conf->username) {
        out[1] = 2;
        out[2] = 0; /* no authentication */
        out[3] = 2; /* username/password */
        *outlen = 4;
    } else {
        out[1] = 1;
        out[2] = 0;
        *outlen = 3;
    }
    hs->step = WSP_PX_SOCKS_METHOD;
    return WSP_PX_MORE;
}

const char *wsp_proxy_socks5_reply_atom(unsigned rep)
{
    switch (rep) {
    case 1: return "general_failure";
    case 2: return "not_allowed";
    case 3: return "network_unreachable";
    case 4: return "host_unreachable";
    case 5: return "connection_refused";
    case 6: return "ttl_expired";
    case 7: return "command_not_supported";
    case 8: return "address_type_not_supported";
    default: return "unknown_reply";
    }
}

int wsp_proxy_input(struct wsp_proxy_hs *hs, const uint8_t *in, size_t len, size_t *consumed,
                    uint8_t *out, size_t cap, size_t *outlen, struct wsp_proxy_fail *fail)
{
    *consumed = 0;
    *outlen = 0;
    switch (hs->step) {
    case WSP_PX_HTTP_RESPONSE: {
        const char *err = NULL;
        int r = wsc_read_response(&hs->rr, (const char *)in, len, &fail->resp, &err);
        if (r == WSC_ENEED_MORE)
            return WSP_PX_MORE;
        if (r < 0)
            return bad(fail, err ? err : "malformed HTTP response from the proxy");
        if (fail->resp.status < 200 || fail->resp.status > 299) {
            fail->kind = WSP_PXF_HTTP;
            fail->atom = fail->detail = NULL;
            return WSP_PX_FAIL;
        }
        *consumed = (size_t)r;
        hs->step = WSP_PX_DONE;
        return WSP_PX_OK;
    }
    case WSP_PX_SOCKS_METHOD:
        if (len < 2)
            return WSP_PX_MORE;
        if (in[0] != 5)
            return bad(fail, "not a SOCKS5 proxy (wrong version in its answer)");
        *consumed = 2;
        if (in[1] == 0)
            return socks_request(hs, out, cap, outlen, fail);
        if (in[1] == 2 && hs->conf->username) {
            size_t ul = strlen(hs->conf->username);
            size_t pl = hs->conf->password ? strlen(hs->conf->password) : 0;
            if (ul > 255 || pl > 255)
                return bad(fail, "proxy credentials longer than 255 bytes");
            if (cap < 3 + ul + pl)
                return WSP_PX_NOSPC;
            size_t o = 0;
            out[o++] = 1;
            out[o++] = (uint8_t)ul;
            memcpy(out + o, hs->conf->username, ul);
            o += ul;
            out[o++] = (uint8_t)pl;
            if (pl)
                memcpy(out + o, hs->conf->password, pl);
            o += pl;
            *outlen = o;
            hs->step = WSP_PX_SOCKS_AUTH;
            return WSP_PX_MORE;
        }
        if (in[1] == 0xff)
            return socks_fail(fail, hs->conf->username ? "no_acceptable_methods" : "auth_required");
        return bad(fail, "the SOCKS5 proxy chose a method that was not offered");
    case WSP_PX_SOCKS_AUTH:
        if (len < 2)
            return WSP_PX_MORE;
        if (in[0] != 1 && in[0] != 5)
            return bad(fail, "malformed SOCKS5 authentication answer");
        *consumed = 2;
        if (in[1] != 0)
            return socks_fail(fail, "auth_failed");
        return socks_request(hs, out, cap, outlen, fail);
    case WSP_PX_SOCKS_REPLY: {
        if (len < 5)
            return WSP_PX_MORE;
        if (in[0] != 5)
            return bad(fail, "malformed SOCKS5 reply (wrong version)");
        if (in[1] != 0)
            return socks_fail(fail, wsp_proxy_socks5_reply_atom(in[1]));
        size_t need;
        switch (in[3]) {
        case 1: need = 4 + 4 + 2; break;
        case 4: need = 4 + 16 + 2; break;
        case 3: need = 4 + 1 + (size_t)in[4] + 2; break;
        default: return bad(fail, "malformed SOCKS5 reply (unknown address type)");
        }
        if (len < need)
            return WSP_PX_MORE;
        *consumed = need;
        hs->step = WSP_PX_DONE;
        return WSP_PX_OK;
    }
    case WSP_PX_DONE:
        return WSP_PX_OK;
    }
    return bad(fail, "proxy handshake not started");
}

void wsp_proxy_conf_free(struct wsp_proxy_conf *c)
{
    free(c->host);
    if (c->username)
        memset(c->username, 0, strlen(c->username));
    if (c->password)
        memset(c->password, 0, strlen(c->password));
    free(c->username);
    free(c->password);
    memset(c, 0, sizeof *c);
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes p[0..n) into a new string; NULL if malformed, holding a
 * NUL, longer than 255 bytes or out of memory. */
static char *pct_decode(const char *p, size_t n)
{
    char *o = malloc(n + 1);
    size_t k = 0;
    if (!o)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '%') {
            if (i + 2 >= n) {
                free(o);
                return NULL;
            }
            int a = hexval(p[i + 1]), b = hexval(p[i + 2]);
            if (a < 0 || b < 0 || (a == 0 && b == 0)) {
                free(o);
                return NULL;
            }
            o[k++] = (char)(a << 4 | b);
            i += 2;
        } else {
            o[k++] = p[i];
        }
    }
    o[k] = 0;
    if (k > 255) {
        free(o);
        return NULL;
    }
    return o;
}

int wsp_proxy_parse_url(const char *url, struct wsp_proxy_conf *out, const char **err)
{
    memset(out, 0, sizeof *out);
    const char *p = strstr(url, "://");
    if (!p) {
        *err = "the proxy URL needs a scheme: http://, socks5:// or socks5h://";
        return -1;
    }
    size_t sl = (size_t)(p - url);
    if (sl == 4 && strncasecmp(url, "http", 4) == 0)
        out->type = WSP_PROXY_HTTP;
    else if ((sl == 6 && strncasecmp(url, "socks5", 6) == 0) ||
             (sl == 7 && strncasecmp(url, "socks5h", 7) == 0))
        out->type = WSP_PROXY_SOCKS5;
    else {
        *err = "the proxy's scheme must be http://, socks5:// or socks5h://";
        return -1;
    }
    p += 3;
    const char *end = p + strcspn(p, "/?#");
    if (*end == '?' || *end == '#' || (*end == '/' && end[1] != 0)) {
        *err = "the proxy URL must have no path, query or fragment";
        return -1;
    }
    /* userinfo: up to the last '@' before the end of the authority */
    const char *at = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == '@')
            at = q;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        size_t ul = colon ? (size_t)(colon - p) : (size_t)(at - p);
        out->username = pct_decode(p, ul);
        out->password = colon ? pct_decode(colon + 1, (size_t)(at - colon - 1)) : pct_decode("", 0);
        if (!out->username || !out->username[0]) {
            *err = "the proxy's username must be 1..255 bytes (percent-encoded), without NUL";
            goto bad;
        }
        if (!out->password) {
            *err = "the proxy's password must be at most 255 bytes (percent-encoded), without NUL";
            goto bad;
        }
        p = at + 1;
    }
    const char *hs = p, *he;
    if (*p == '[') {
        hs = p + 1;
        he = memchr(hs, ']', (size_t)(end - hs));
        if (!he) {
            *err = "the proxy's IPv6 address needs its closing ]";
            goto bad;
        }
        p = he + 1;
    } else {
        he = memchr(p, ':', (size_t)(end - p));
        if (!he)
            he = end;
        p = he;
    }
    if (he == hs || he - hs > 255 || memchr(hs, '@', (size_t)(he - hs))) {
        *err = "the proxy URL needs a host (at most 255 bytes)";
        goto bad;
    }
    out->port = 1080;
    if (p < end) {
        if (*p != ':' || p + 1 == end) {
            *err = "the proxy's port must be an integer 1..65535";
            goto bad;
        }
        unsigned long v = 0;
        for (const char *q = p + 1; q < end; q++) {
            if (*q < '0' || *q > '9' || v > 65535) {
                v = 0;
                break;
            }
            v = v * 10 + (unsigned long)(*q - '0');
        }
        if (v == 0 || v > 65535) {
            *err = "the proxy's port must be an integer 1..65535";
            goto bad;
        }
        out->port = (uint16_t)v;
    }
    out->host = malloc((size_t)(he - hs) + 1);
    if (!out->host) {
        *err = "out of memory";
        goto bad;
    }
    memcpy(out->host, hs, (size_t)(he - hs));
    out->host[he - hs] = 0;
    return 0;
bad:
    wsp_proxy_conf_free(out);
    return -1;
}
