/*
 * libFuzzer harness: wsp_text_escape (server text made safe for a
 * terminal) fed arbitrary bytes.
 *
 * Input layout:
 *   byte 0     output size: 0 -> 4 * n + 1 (always enough), else that many
 *              bytes (1..255, so truncation is hit often)
 *   rest       the text (n bytes)
 *
 * Checked on every input:
 *   - the result is the string's length, NUL-terminated within the buffer
 *     (ASan: an exact-size heap buffer), nothing written past it;
 *   - the output holds no C0 control, DEL or C1 control, and is valid UTF-8
 *     (by an independent reference decoder);
 *   - undoing the escapes (\\ -> \, \xNN -> the byte) gives back a prefix of
 *     the input, the whole input when the buffer was big enough;
 *   - a truncated output is a prefix of the full one.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wsp_text.h"

#define CHECK(c)                                                          \
    do {                                                                  \
        if (!(c))                                                         \
            fuzz_fail(__LINE__, #c);                                      \
    } while (0)

static void fuzz_fail(int line, const char *what)
{
    fprintf(stderr, "fuzz_text: invariant violated at line %d: %s\n", line, what);
    abort();
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Reference decoder: every code point of s[0..n), or -1 if not UTF-8. */
static int check_utf8_printable(const uint8_t *s, size_t n)
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
        if (c < 0x20 || c == 0x7F || (c >= 0x80 && c <= 0x9F))
            return -1;
        i += len;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t n = size - 1;
    const uint8_t *text = data + 1;
    size_t full_cap = 4 * n + 1;
    size_t cap = data[0] ? data[0] : full_cap;

    char *full = malloc(full_cap);
    char *out = malloc(cap);
    uint8_t *back = malloc(n + 1);
    CHECK(full && out && back);

    size_t fk = wsp_text_escape(text, n, full, full_cap);
    CHECK(fk < full_cap && full[fk] == 0 && strlen(full) == fk);
    size_t k = wsp_text_escape(text, n, out, cap);
    CHECK(k < cap && out[k] == 0 && strlen(out) == k);
    CHECK(k <= fk && memcmp(out, full, k) == 0);
    CHECK(check_utf8_printable((const uint8_t *)full, fk) == 0);

    /* undo the escapes */
    size_t b = 0;
    for (size_t i = 0; i < fk;) {
        if (full[i] == '\\') {
            CHECK(i + 1 < fk);
            if (full[i + 1] == '\\') {
                back[b++] = '\\';
                i += 2;
                continue;
            }
            CHECK(full[i + 1] == 'x' && i + 3 < fk);
            int h = hexval(full[i + 2]), l = hexval(full[i + 3]);
            CHECK(h >= 0 && l >= 0);
            back[b++] = (uint8_t)(h * 16 + l);
            i += 4;
        } else {
            CHECK(b < n + 1);
            back[b++] = (uint8_t)full[i++];
        }
        CHECK(b <= n);
    }
    CHECK(b == n && memcmp(back, text, n) == 0);

    free(full);
    free(out);
    free(back);
    return 0;
}
