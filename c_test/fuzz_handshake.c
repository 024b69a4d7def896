/*
 * libFuzzer harness: the server's HTTP response to the upgrade request
 * (wsc_parse_response, then wsc_check_upgrade on a 101).
 *
 * Input layout:
 *   byte 0   bits 0-2: which of "chat", "superchat", "v1.x" were offered
 *   byte 1   picks the prefix length re-parsed (see below)
 *   rest     the bytes the server sent (copied to an exact-size heap buffer)
 *
 * The request key is fixed (RFC 6455's sample "dGhlIHNhbXBsZSBub25jZQ==",
 * accept "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") so seeds can carry a valid accept.
 * Checked: return values and errstr as documented; a parsed head ends with
 * CRLFCRLF at header_bytes; every header points inside the head, has a token
 * name and a value without CTLs (tab aside) or surrounding OWS; a shorter
 * prefix of a parsed head gives WSC_ENEED_MORE; WSC_ENEED_MORE only when no
 * CRLFCRLF arrived; an accepted upgrade really carries the expected accept
 * and an offered subprotocol pointing into the buffer.
 */
#define _GNU_SOURCE 1
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_codec.h"

#define CHECK(c)                                                          \
    do {                                                                  \
        if (!(c)) {                                                       \
            fprintf(stderr, "fuzz_handshake: invariant violated at line %d: %s\n", \
                    __LINE__, #c);                                        \
            abort();                                                      \
        }                                                                 \
    } while (0)

static const char KEY[] = "dGhlIHNhbXBsZSBub25jZQ==";
static const char ACCEPT[] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
static const char *const ALL_PROTOS[] = {"chat", "superchat", "v1.x"};

static int tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int within(const char *p, size_t n, const char *buf, size_t len)
{
    return p >= buf && n <= len && p - buf <= (ptrdiff_t)(len - n);
}

static int ieq(const char *a, size_t n, const char *z)
{
    if (strlen(z) != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)z[i];
        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x + 32);
        if (x != y)
            return 0;
    }
    return 1;
}

static struct wsc_response resp, resp2; /* large: keep off the stack */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    const char *protos[3];
    size_t np = 0;
    for (int i = 0; i < 3; i++)
        if (data[0] >> i & 1)
            protos[np++] = ALL_PROTOS[i];
    size_t len = size - 2;
    char *buf = malloc(len ? len : 1);
    CHECK(buf != NULL);
    if (len)
        memcpy(buf, data + 2, len);

    const char *err = "unset";
    int r = wsc_parse_response(buf, len, &resp, &err);
    if (r > 0) {
        size_t hb = (size_t)r;
        CHECK(err == NULL);
        CHECK(resp.header_bytes == hb && hb <= len && hb >= 16);
        CHECK(memcmp(buf + hb - 4, "\r\n\r\n", 4) == 0);
        CHECK(memmem(buf, hb - 4, "\r\n\r\n", 4) == NULL ||
              memmem(buf, hb, "\r\n\r\n", 4) == buf + hb - 4);
        CHECK(resp.status >= 100 && resp.status <= 999);
        CHECK(resp.nheaders <= WSC_MAX_RESPONSE_HEADERS);
        for (size_t i = 0; i < resp.nheaders; i++) {
            const struct wsc_header *h = &resp.headers[i];
            CHECK(h->name_len > 0 && within(h->name, h->name_len, buf, hb));
            CHECK(within(h->value, h->value_len, buf, hb));
            for (size_t k = 0; k < h->name_len; k++)
                CHECK(tchar((unsigned char)h->name[k]));
            for (size_t k = 0; k < h->value_len; k++) {
                unsigned char c = (unsigned char)h->value[k];
                CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
            }
            if (h->value_len) {
                CHECK(h->value[0] != ' ' && h->value[0] != '\t');
                CHECK(h->value[h->value_len - 1] != ' ' &&
                      h->value[h->value_len - 1] != '\t');
            }
            CHECK(wsc_find_header(&resp, "x-never-sent-by-anyone") == NULL ||
                  ieq(h->name, h->name_len, "x-never-sent-by-anyone"));
        }
        /* any shorter prefix is incomplete */
        size_t k = (size_t)data[1] * hb / 256;
        char *pre = malloc(k ? k : 1);
        CHECK(pre != NULL);
        if (k)
            memcpy(pre, buf, k);
        CHECK(wsc_parse_response(pre, k, &resp2, NULL) == WSC_ENEED_MORE);
        free(pre);

        if (resp.status == 101) {
            const char *proto = (const char *)1;
            size_t plen = 99;
            err = "unset";
            int u = wsc_check_upgrade(&resp, KEY, protos, np, &proto, &plen, &err);
            if (u == 0) {
                CHECK(err == NULL);
                const struct wsc_header *acc = wsc_find_header(&resp, "sec-websocket-accept");
                CHECK(acc && acc->value_len == 28 && memcmp(acc->value, ACCEPT, 28) == 0);
                if (proto) {
                    CHECK(within(proto, plen, buf, hb));
                    size_t j;
                    for (j = 0; j < np; j++)
                        if (strlen(protos[j]) == plen && memcmp(protos[j], proto, plen) == 0)
                            break;
                    CHECK(j < np);
                } else {
                    CHECK(plen == 0);
                }
            } else {
                CHECK(u == WSC_EHANDSHAKE);
                CHECK(err != NULL && strcmp(err, "unset") != 0);
                CHECK(proto == NULL && plen == 0);
            }
        }
    } else if (r == WSC_ENEED_MORE) {
        CHECK(len < WSC_MAX_RESPONSE_BYTES);
        CHECK(memmem(buf, len, "\r\n\r\n", 4) == NULL);
    } else if (r == WSC_EHTTP) {
        CHECK(err != NULL && strcmp(err, "unset") != 0);
    } else {
        CHECK(r == WSC_EHTTP_TOO_BIG);
    }
    /* errstr may be NULL */
    (void)wsc_parse_response(buf, len, &resp2, NULL);
    free(buf);
    return 0;
}
