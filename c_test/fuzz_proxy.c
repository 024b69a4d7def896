/*
 * libFuzzer harness: the proxy handshakes of c_src/wsp_proxy.c, i.e. what
 * an HTTP CONNECT proxy or a SOCKS5 proxy answers.
 *
 * Input layout:
 *   byte 0   bit 0: HTTP CONNECT (0) or SOCKS5 (1); bit 1: with credentials;
 *            bits 2-3: target host (name, IPv4, IPv6, 255-byte name);
 *            bits 4-7: seed of the piece lengths
 *   rest     the proxy's bytes, fed as they would arrive: in pieces, each
 *            call with an exact-size heap copy of every byte not consumed
 *            yet (ASan catches a read past them)
 *
 * Checked: return values as documented; *consumed never beyond the input and
 * 0 whenever the answer is "more" without a request; a request only with
 * consumed bytes and within WSP_PROXY_OUT_MAX; OK ends it for good (a later
 * call is OK with nothing consumed); a failure has a kind and its atom,
 * detail or a 2xx-excluded HTTP status; feeding the same bytes all at once
 * reaches the same end as in pieces. The same bytes (as a string) go to
 * wsp_proxy_parse_url too (the CLI's --proxy): a parsed URL has a host of
 * 1..255 bytes, a port, credentials of at most 255 bytes; a refused one an
 * error message and nothing allocated.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wsp_proxy.h"

static int run(const uint8_t *data, size_t size, uint8_t flags, int pieces, int *nreq)
{
    static char name255[256];
    memset(name255, 'n', 255);
    const char *targets[] = {"example.com", "10.0.0.1", "::1", name255};
    struct wsp_proxy_conf cf = {
        .type = (flags & 1) ? WSP_PROXY_SOCKS5 : WSP_PROXY_HTTP,
        .host = "proxy",
        .port = 1080,
        .username = (flags & 2) ? "user" : NULL,
        .password = (flags & 2) ? "pass" : NULL,
    };
    struct wsp_proxy_hs hs;
    struct wsp_proxy_fail fail;
    uint8_t out[WSP_PROXY_OUT_MAX];
    size_t outlen = 0;
    int r = wsp_proxy_start(&hs, &cf, targets[(flags >> 2) & 3], 443, out, sizeof out,
                            &outlen, &fail);
    if (r != WSP_PX_MORE || outlen == 0 || outlen > sizeof out)
        abort();
    unsigned seed = flags >> 4;
    size_t have = 0, off = 0; /* data[off, have) not consumed yet */
    *nreq = 0;
    while (1) {
        size_t piece = pieces ? 1 + (seed = seed * 1103515245u + 12345u, (seed >> 16) % 7) : size;
        have = have + piece > size ? size : have + piece;
        size_t n = have - off;
        uint8_t *buf = malloc(n ? n : 1);
        if (!buf)
            abort();
        memcpy(buf, data + off, n);
        size_t used = 0;
        r = wsp_proxy_input(&hs, buf, n, &used, out, sizeof out, &outlen, &fail);
        free(buf);
        if (used > n || outlen > sizeof out)
            abort();
        if (r == WSP_PX_FAIL) {
            if (fail.kind == WSP_PXF_HTTP) {
                if (fail.resp.status >= 200 && fail.resp.status <= 299)
                    abort();
            } else if (fail.kind == WSP_PXF_SOCKS) {
                if (!fail.atom)
                    abort();
            } else if (fail.kind != WSP_PXF_BAD || !fail.detail) {
                abort();
            }
            return 100 + (int)fail.kind;
        }
        if (r == WSP_PX_OK) {
            size_t u2;
            if (wsp_proxy_input(&hs, data, 0, &u2, out, sizeof out, &outlen, &fail) != WSP_PX_OK ||
                u2 != 0)
                abort();
            return 1;
        }
        if (r != WSP_PX_MORE)
            abort();
        if (used == 0) {
            if (outlen != 0)
                abort();
            if (have == size)
                return 0; /* wants more than there is */
            continue;
        }
        if (outlen == 0)
            abort();
        (*nreq)++;
        off += used;
    }
}

static void parse_url(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    memcpy(s, data, size);
    s[size] = 0;
    struct wsp_proxy_conf c;
    const char *err = NULL;
    if (wsp_proxy_parse_url(s, &c, &err) == 0) {
        size_t hl = strlen(c.host);
        if (hl == 0 || hl > 255 || c.port == 0 || (c.username && strlen(c.username) > 255) ||
            (c.password && strlen(c.password) > 255) || (!c.username != !c.password))
            abort();
        wsp_proxy_conf_free(&c);
    } else if (!err || c.host || c.username || c.password) {
        abort();
    }
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    parse_url(data, size);
    if (size < 1)
        return 0;
    int n1, n2;
    int a = run(data + 1, size - 1, data[0], 1, &n1);
    int b = run(data + 1, size - 1, data[0], 0, &n2);
    /* HTTP: the whole input at once may hold a head that pieces reach too;
     * SOCKS: answers are fixed-size, so both ends agree */
    if (a != b || n1 != n2)
        abort();
    return 0;
}
