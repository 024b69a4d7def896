#include "wsp_buf.h"

#include <stdlib.h>
#include <string.h>

uint8_t *wsp_buf_reserve(struct wsp_buf *b, size_t n)
{
    if (b->off == b->len) {
        b->off = b->len = 0;
    }
    if (b->cap - b->len >= n) {
        return b->data + b->len;
    }
    /* compact first if that makes enough room and the move is cheap */
    if (b->off > 0 && b->cap - (b->len - b->off) >= n && b->len - b->off <= b->off) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        return b->data + b->len;
    }
    size_t need = b->len + n;
    if (need < n) {
        return NULL; /* overflow */
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            return NULL;
        }
        cap *= 2;
    }
    uint8_t *d = realloc(b->data, cap);
    if (!d) {
        return NULL;
    }
    b->data = d;
    b->cap = cap;
    return b->data + b->len;
}

int wsp_buf_append(struct wsp_buf *b, const void *p, size_t n)
{
    if (n == 0) {
        return 0;
    }
    uint8_t *dst = wsp_buf_reserve(b, n);
    if (!dst) {
        return -1;
    }
    memcpy(dst, p, n);
    b->len += n;
    return 0;
}

void wsp_buf_consume(struct wsp_buf *b, size_t n)
{
    b->off += n;
    if (b->off >= b->len) {
        b->off = b->len = 0;
    }
}

void wsp_buf_shrink(struct wsp_buf *b, size_t keep)
{
    if (b->off == b->len && b->cap > keep) {
        free(b->data);
        b->data = NULL;
        b->cap = b->off = b->len = 0;
    }
}

void wsp_buf_free(struct wsp_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->cap = b->off = b->len = 0;
}
