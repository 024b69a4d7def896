#include "wsp_text.h"

#include <string.h>

/* Length of the valid UTF-8 sequence at p[0..n) (1 to 4), or 0 if invalid
 * (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF). */
static size_t utf8_seq(const uint8_t *p, size_t n, uint32_t *cp)
{
    uint8_t b = p[0];
    size_t len;
    uint32_t v, min;
    if (b < 0x80) {
        *cp = b;
        return 1;
    } else if (b >= 0xC2 && b <= 0xDF) {
        len = 2, v = b & 0x1Fu, min = 0x80;
    } else if (b >= 0xE0 && b <= 0xEF) {
        len = 3, v = b & 0x0Fu, min = 0x800;
    } else if (b >= 0xF0 && b <= 0xF4) {
        len = 4, v = b & 0x07u, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len) {
        return 0;
    }
    for (size_t k = 1; k < len; k++) {
        if ((p[k] & 0xC0) != 0x80) {
            return 0;
        }
        v = (v << 6) | (p[k] & 0x3Fu);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        return 0;
    }
    *cp = v;
    return len;
}

size_t wsp_text_escape(const uint8_t *p, size_t n, char *out, size_t cap)
{
    static const char H[] = "0123456789abcdef";
    if (cap == 0) {
        return 0;
    }
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp = 0;
        size_t len = utf8_seq(p + i, n - i, &cp);
        int backslash = len == 1 && cp == '\\';
        int plain = len > 0 && !backslash && cp >= 0x20 && cp != 0x7F &&
                    !(cp >= 0x80 && cp <= 0x9F);
        size_t bytes = len ? len : 1;
        size_t need = plain ? len : backslash ? 2 : 4 * bytes;
        if (need >= cap - o) {
            break;
        }
        if (plain) {
            memcpy(out + o, p + i, len);
            o += len;
        } else if (backslash) {
            out[o++] = '\\';
            out[o++] = '\\';
        } else {
            for (size_t k = 0; k < bytes; k++) {
                out[o++] = '\\';
                out[o++] = 'x';
                out[o++] = H[p[i + k] >> 4];
                out[o++] = H[p[i + k] & 15];
            }
        }
        i += bytes;
    }
    out[o] = 0;
    return o;
}
