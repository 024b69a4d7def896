/*
 * libFuzzer harness: the server's HTTP response to the upgrade request
 * (wsc_parse_response, then wsc_check_upgrade on a 101).
 *
 * Input layout:
 *   byte 0   bits 0-2: which of "chat", "superchat", "v1.x" were offered;
 *            bits 3-7 with byte 1: seed of the split points (see below)
 *   byte 1   picks the prefix length re-parsed (see below)
 *   rest     the bytes the server sent (copied to an exact-size heap buffer)
 *
 * The resumable reader (wsc_read_response) gets the same bytes twice: all at
 * once, and in pieces whose lengths a small PRNG draws from the seed (1 to
 * 64 bytes, or a run of 1-byte pieces, or the rest), each call with an
 * exact-size heap copy of the bytes so far (ASan catches a read past them).
 * Checked: every call before the last answer wants more; the last answer is
 * the one-shot answer (code, errstr, status, headers at the same offsets,
 * interim count); no terminator starts in buf[head, scanned); a final head
 * ends with CRLFCRLF and is 101 or >= 200; without interim responses the
 * reader agrees with wsc_parse_response.
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

static struct wsc_response resp, resp2, resp3; /* large: keep off the stack */

static uint32_t prng(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

static void same_response(const struct wsc_response *a, const char *abuf,
                          const struct wsc_response *b, const char *bbuf)
{
    CHECK(a->status == b->status && a->version_minor == b->version_minor);
    CHECK(a->nheaders == b->nheaders && a->header_bytes == b->header_bytes);
    for (size_t i = 0; i < a->nheaders; i++) {
        CHECK(a->headers[i].name - abuf == b->headers[i].name - bbuf);
        CHECK(a->headers[i].name_len == b->headers[i].name_len);
        CHECK(a->headers[i].value - abuf == b->headers[i].value - bbuf);
        CHECK(a->headers[i].value_len == b->headers[i].value_len);
    }
}

/* The resumable reader on buf[0..len): all at once, then in pieces. */
static void check_reader(const char *buf, size_t len, uint32_t seed)
{
    struct wsc_response_reader rd, rd2;
    const char *err = "unset";
    wsc_response_reader_init(&rd);
    int whole = wsc_read_response(&rd, buf, len, &resp3, &err);
    if (whole > 0) {
        size_t end = (size_t)whole;
        CHECK(err == NULL);
        CHECK(end <= len && end <= WSC_MAX_RESPONSE_BYTES && end >= 16);
        CHECK(memcmp(buf + end - 4, "\r\n\r\n", 4) == 0);
        CHECK(resp3.status == 101 || resp3.status >= 200);
        CHECK(resp3.header_bytes <= end);
        CHECK(rd.head + resp3.header_bytes == end);
    } else if (whole == WSC_ENEED_MORE) {
        CHECK(len < WSC_MAX_RESPONSE_BYTES);
    } else {
        CHECK(whole == WSC_EHTTP || whole == WSC_EHTTP_TOO_BIG);
        CHECK(err != NULL && strcmp(err, "unset") != 0);
    }
    /* without interim heads it is wsc_parse_response */
    if (rd.interim == 0) {
        const char *perr = "unset";
        int p = wsc_parse_response(buf, len, &resp2, &perr);
        CHECK(p == whole);
        CHECK(perr == err || (perr && err && strcmp(perr, err) == 0));
        if (p > 0)
            same_response(&resp2, buf, &resp3, buf);
    }

    /* in pieces */
    uint32_t x = seed * 2654435761u + 1;
    size_t have = 0;
    int r = WSC_ENEED_MORE;
    wsc_response_reader_init(&rd2);
    while (have < len) {
        uint32_t k = prng(&x);
        size_t step;
        switch (k & 3) {
        case 0: step = 1; break;
        case 1: step = 1 + (k >> 8) % 64; break;
        case 2: step = 1 + (k >> 8) % 8; break;
        default: step = (k >> 8) % 16 == 0 ? len - have : 1 + (k >> 8) % 4096; break;
        }
        if (step > len - have)
            step = len - have;
        have += step;
        char *piece = malloc(have);
        CHECK(piece != NULL);
        memcpy(piece, buf, have);
        const char *perr = "unset";
        r = wsc_read_response(&rd2, piece, have, &resp2, &perr);
        CHECK(rd2.head <= rd2.scanned && rd2.scanned <= have);
        if (r == WSC_ENEED_MORE) {
            /* what was searched holds no terminator */
            size_t upto = rd2.scanned + 3 < have ? rd2.scanned + 3 : have;
            CHECK(memmem(piece + rd2.head, upto - rd2.head, "\r\n\r\n", 4) == NULL);
            free(piece);
            continue;
        }
        /* the first answer is the one-shot answer */
        CHECK(r == whole);
        CHECK(perr == err || (perr && err && strcmp(perr, err) == 0));
        if (r > 0) {
            CHECK(rd2.interim == rd.interim);
            same_response(&resp2, piece, &resp3, buf);
        }
        free(piece);
        break;
    }
    if (r == WSC_ENEED_MORE)
        CHECK(whole == WSC_ENEED_MORE);
}

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
        CHECK(err != NULL && strcmp(err, "unset") != 0);
    }
    /* errstr may be NULL */
    (void)wsc_parse_response(buf, len, &resp2, NULL);
    check_reader(buf, len, (uint32_t)(data[0] >> 3) << 8 | data[1]);
    free(buf);
    return 0;
}
