/*
 * libFuzzer harness: the CLI's stdin line splitting (wsp_lines) fed the
 * same bytes whole and in pieces.
 *
 * Input layout:
 *   byte 0     the line limit (0..255)
 *   byte 1     bit 0: binary mode; the rest seeds the piece sizes
 *   rest       the stdin bytes
 *
 * Checked on every input:
 *   - fed whole, fed in pieces of random sizes (1..64), and fed one byte at
 *     a time, the lines and refusal taken are the same, and are those of an
 *     independent reference (split on '\n', the last line at the end of
 *     input if not empty, a line over the limit or (text) not UTF-8 refused
 *     and nothing after it);
 *   - memory stays bounded: after taking the lines of a piece, at most the
 *     limit is left buffered, and the buffer never holds more than the limit
 *     plus the piece.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wsp_lines.h"

#define CHECK(c)                                                          \
    do {                                                                  \
        if (!(c))                                                         \
            fuzz_fail(__LINE__, #c);                                      \
    } while (0)

static void fuzz_fail(int line, const char *what)
{
    fprintf(stderr, "fuzz_lines: invariant violated at line %d: %s\n", line, what);
    abort();
}

/* what was taken: each line as <len:4><bytes>, a refusal as 0xFFFFFFFF,
 * its kind and number */
struct log {
    uint8_t *b;
    size_t n, cap;
};

static void log_put(struct log *g, const void *p, size_t n)
{
    if (g->n + n > g->cap) {
        size_t cap = g->cap ? g->cap : 256;
        while (cap < g->n + n)
            cap *= 2;
        g->b = realloc(g->b, cap);
        CHECK(g->b);
        g->cap = cap;
    }
    memcpy(g->b + g->n, p, n);
    g->n += n;
}

static void log_line(struct log *g, const uint8_t *p, size_t n)
{
    uint32_t k = (uint32_t)n;
    log_put(g, &k, 4);
    log_put(g, p, n);
}

static void log_refusal(struct log *g, uint32_t kind, uint64_t line_no)
{
    uint32_t k = 0xFFFFFFFFu;
    log_put(g, &k, 4);
    log_put(g, &kind, 4);
    log_put(g, &line_no, 8);
}

/* Reference UTF-8 check (RFC 3629): 0 valid, -1 not. */
static int ref_utf8(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!len || i + len > n)
            return -1;
        if (len > 1) {
            c &= 0x7F >> len;
            for (size_t k = 1; k < len; k++) {
                if ((s[i + k] & 0xC0) != 0x80)
                    return -1;
                c = (c << 6) | (s[i + k] & 0x3F);
            }
            static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
            if (c < min[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
                return -1;
        }
        i += len;
    }
    return 0;
}

static void reference(struct log *g, const uint8_t *s, size_t n, uint64_t max, int binary)
{
    uint64_t line_no = 0;
    size_t i = 0;
    while (i < n) {
        const uint8_t *nl = memchr(s + i, '\n', n - i);
        size_t len = nl ? (size_t)(nl - (s + i)) : n - i;
        line_no++;
        if (len > max) {
            log_refusal(g, WSP_LINES_TOO_LONG, line_no);
            return;
        }
        if (!binary && ref_utf8(s + i, len) < 0) {
            log_refusal(g, WSP_LINES_BAD_UTF8, line_no);
            return;
        }
        log_line(g, s + i, len);
        i += len + (nl ? 1 : 0);
    }
}

static void take(struct wsp_lines *l, struct log *g, int at_eof)
{
    const uint8_t *p;
    size_t n;
    enum wsp_lines_result r;
    while ((r = wsp_lines_next(l, at_eof, &p, &n)) != WSP_LINES_NONE) {
        if (r == WSP_LINES_LINE) {
            CHECK(n <= l->max);
            log_line(g, p, n);
        } else {
            CHECK(r == WSP_LINES_TOO_LONG || r == WSP_LINES_BAD_UTF8);
            CHECK(l->refused);
            log_refusal(g, (uint32_t)r, l->line_no);
        }
    }
}

/* step 0: pieces of random sizes from seed; else pieces of step bytes */
static void feed(struct log *g, const uint8_t *s, size_t n, uint64_t max, int binary,
                 size_t step, uint32_t seed)
{
    struct wsp_lines l;
    wsp_lines_init(&l, max, binary, 4096);
    size_t i = 0;
    while (i < n) {
        size_t k = step;
        if (!k) {
            seed = seed * 1103515245u + 12345u;
            k = 1 + (seed >> 16) % 64;
        }
        if (k > n - i)
            k = n - i;
        /* the way the CLI reads: reserve, read into it, commit */
        uint8_t *dst = wsp_lines_reserve(&l, k);
        CHECK(dst);
        memcpy(dst, s + i, k);
        wsp_lines_commit(&l, k);
        i += k;
        CHECK(wsp_lines_pending(&l) <= max + k);
        take(&l, g, 0);
        CHECK(wsp_lines_pending(&l) <= max);
        /* the buffer: the limit plus two pieces (one not yet compacted away),
         * rounded up by its doubling */
        CHECK(l.buf.cap <= 2 * (max + 64 + k) + 4096);
    }
    take(&l, g, 1);
    CHECK(wsp_lines_pending(&l) == 0);
    wsp_lines_free(&l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint64_t max = data[0];
    int binary = data[1] & 1;
    uint32_t seed = data[1] >> 1;
    const uint8_t *s = data + 2;
    size_t n = size - 2;

    struct log ref = {0}, whole = {0}, bytes = {0}, pieces = {0};
    reference(&ref, s, n, max, binary);
    feed(&whole, s, n, max, binary, n ? n : 1, 0);
    feed(&bytes, s, n, max, binary, 1, 0);
    feed(&pieces, s, n, max, binary, 0, seed);

    CHECK(whole.n == ref.n && (ref.n == 0 || memcmp(whole.b, ref.b, ref.n) == 0));
    CHECK(bytes.n == ref.n && (ref.n == 0 || memcmp(bytes.b, ref.b, ref.n) == 0));
    CHECK(pieces.n == ref.n && (ref.n == 0 || memcmp(pieces.b, ref.b, ref.n) == 0));

    free(ref.b);
    free(whole.b);
    free(bytes.b);
    free(pieces.b);
    return 0;
}
