/*
 * libFuzzer harness: permessage-deflate (wsp_deflate) fed arbitrary bytes.
 *
 * Input layout:
 *   byte 0     bit 0: 0 = the answer parser, 1 = the inflate path
 *   answer:    byte 1 = the offer (bit 0 server_max_window_bits=10 offered,
 *              bit 1 client_max_window_bits=12, bits 2-3 no_context_takeover
 *              flags); the rest is the Sec-WebSocket-Extensions value.
 *   inflate:   byte 1 = server window 8 + (b & 7), bit 3 no context
 *              takeover, bit 4 text, bits 5-7 split step; byte 2 =
 *              max_message_size 1 + b * 64; the rest: messages separated by
 *              the byte 0xA5 (the compressed payloads as the server sent them).
 * Checked: the parser either agrees on windows 8..15 (server window no
 * larger than offered) or names an error; the inflater never produces more
 * than max_message_size + 1 bytes for a message, fails only with 1007 or
 * 1009, a text message it accepts is valid UTF-8, and (with the 15-bit
 * window) the same message split differently gives the same result. Each chunk sits in its own
 * exact-size heap buffer so ASan catches reads past it. Finally our own
 * deflater's output of the input inflates back to it.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wsp_deflate.h"

#define CHECK(c)                                                                   \
    do {                                                                           \
        if (!(c)) {                                                                \
            fprintf(stderr, "fuzz_deflate: check failed line %d: %s\n", __LINE__, #c); \
            abort();                                                               \
        }                                                                          \
    } while (0)

static void fuzz_answer(const uint8_t *d, size_t n)
{
    if (n < 1)
        return;
    struct wsp_pmd_config c;
    wsp_pmd_config_default(&c);
    c.enabled = 1;
    c.server_max_window_bits = (d[0] & 1) ? 10 : 0;
    c.client_max_window_bits = (d[0] & 2) ? 12 : 0;
    c.server_no_context_takeover = !!(d[0] & 4);
    c.client_no_context_takeover = !!(d[0] & 8);
    char *v = malloc(n - 1 ? n - 1 : 1);
    memcpy(v, d + 1, n - 1);
    struct wsp_pmd_agreed a;
    const char *err = NULL;
    int r = wsp_pmd_parse_answer(&c, v, n - 1, &a, &err);
    if (r == 0) {
        CHECK(err == NULL);
        CHECK(a.server_max_window_bits >= 8 && a.server_max_window_bits <= 15);
        CHECK(a.client_max_window_bits >= 8 && a.client_max_window_bits <= 15);
        CHECK(!c.server_max_window_bits || a.server_max_window_bits <= c.server_max_window_bits);
        CHECK(!c.client_max_window_bits || a.client_max_window_bits <= c.client_max_window_bits);
    } else {
        CHECK(r == -1 && err && strncmp(err, "permessage-deflate answer: ", 27) == 0);
    }
    free(v);
}

/* Inflates every message of d[0..n) with pieces of `step` bytes; writes a
 * digest of the outcome into log. */
static void run(const struct wsp_pmd_agreed *a, uint64_t max, int text, const uint8_t *d,
                size_t n, size_t step, uint64_t *log, size_t logcap)
{
    struct wsp_pmd_config c;
    wsp_pmd_config_default(&c);
    c.enabled = 1;
    struct wsp_pmd p;
    wsp_pmd_init(&p, &c, a, max);
    struct wsp_buf out = {0};
    size_t i = 0, k = 0;
    while (i <= n && k < logcap) {
        const uint8_t *e = memchr(d + i, 0xA5, n - i);
        size_t mlen = e ? (size_t)(e - (d + i)) : n - i;
        out.off = out.len = 0;
        wsp_pmd_inflate_begin(&p, text);
        size_t j = 0;
        int r = 0;
        unsigned code = 0;
        const char *err = NULL;
        do {
            size_t take = mlen - j < step ? mlen - j : step;
            uint8_t *piece = malloc(take ? take : 1);
            memcpy(piece, d + i + j, take);
            r = wsp_pmd_inflate(&p, piece, take, j + take == mlen, &out, &code, &err);
            free(piece);
            j += take;
            CHECK(!max || wsp_buf_pending(&out) <= max + 1);
        } while (r == 0 && j < mlen);
        uint64_t h = 1469598103934665603ull;
        if (r < 0) {
            CHECK(code == 1007 || code == 1009);
            CHECK(err != NULL);
            h = code;
        } else {
            CHECK(!max || wsp_buf_pending(&out) <= max);
            if (text) {
                wsc_utf8 u = {0};
                CHECK(wsc_utf8_feed(&u, out.data + out.off, wsp_buf_pending(&out)) == 0);
                CHECK(wsc_utf8_complete(&u));
            }
            for (size_t q = 0; q < wsp_buf_pending(&out); q++)
                h = (h ^ out.data[out.off + q]) * 1099511628211ull;
        }
        log[k++] = h;
        if (r < 0)
            break; /* the connection would end here */
        i += mlen + 1;
    }
    while (k < logcap)
        log[k++] = 0;
    wsp_pmd_free(&p);
    wsp_buf_free(&out);
}

static void fuzz_inflate(const uint8_t *d, size_t n)
{
    if (n < 2)
        return;
    struct wsp_pmd_agreed a = {
        .server_max_window_bits = 8 + (d[0] & 7),
        .client_max_window_bits = 15,
        .server_no_context_takeover = !!(d[0] & 8),
    };
    int text = !!(d[0] & 16);
    size_t step = (size_t)1 << ((d[0] >> 5) & 7);
    uint64_t max = 1 + (uint64_t)d[1] * 64;
    uint64_t l1[16], l2[16];
    run(&a, max, text, d + 2, n - 2, n, l1, 16);
    run(&a, max, text, d + 2, n - 2, step, l2, 16);
    /* zlib (without INFLATE_STRICT) lets a distance beyond a small window
     * through when it points into the same call's output: the split runs
     * agree only with the full 32 KiB window */
    if (a.server_max_window_bits == 15)
        CHECK(memcmp(l1, l2, sizeof l1) == 0);

    /* our deflater's output inflates back to the input */
    struct wsp_pmd_config c;
    wsp_pmd_config_default(&c);
    c.enabled = 1;
    c.level = d[1] % 10;
    struct wsp_pmd_agreed b = {.server_max_window_bits = 8 + (d[0] & 7),
                               .client_max_window_bits = 9 + (d[0] & 7) % 7,
                               .server_no_context_takeover = !!(d[0] & 8),
                               .client_no_context_takeover = !!(d[0] & 8)};
    b.server_max_window_bits = b.client_max_window_bits;
    struct wsp_pmd tx, rx;
    wsp_pmd_init(&tx, &c, &b, 0);
    wsp_pmd_init(&rx, &c, &b, 0);
    struct wsp_buf z = {0}, out = {0};
    for (int round = 0; round < 2; round++) {
        z.off = z.len = out.off = out.len = 0;
        CHECK(wsp_pmd_deflate(&tx, d + 2, n - 2, &z) == 0);
        unsigned code;
        const char *err;
        wsp_pmd_inflate_begin(&rx, 0);
        CHECK(wsp_pmd_inflate(&rx, z.data + z.off, wsp_buf_pending(&z), 1, &out, &code, &err) == 0);
        CHECK(wsp_buf_pending(&out) == n - 2);
        CHECK(n == 2 || memcmp(out.data + out.off, d + 2, n - 2) == 0);
    }
    wsp_pmd_free(&tx);
    wsp_pmd_free(&rx);
    wsp_buf_free(&z);
    wsp_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 1)
        fuzz_inflate(data + 1, size - 1);
    else
        fuzz_answer(data + 1, size - 1);
    return 0;
}
