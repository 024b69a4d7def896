/* wsp_proxy: see wsp_proxy.h. */
#include "wsp_proxy.h"

#include <arpa/inet.h>
#include <stdio.h>
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
