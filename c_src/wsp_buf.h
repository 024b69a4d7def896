/* wsp_buf: a growable byte queue (append at the end, consume at the front). */
#ifndef WSP_BUF_H
#define WSP_BUF_H

#include <stddef.h>
#include <stdint.h>

struct wsp_buf {
    uint8_t *data;
    size_t off;   /* first unconsumed byte */
    size_t len;   /* end of valid bytes */
    size_t cap;
};

/* Bytes waiting to be consumed. */
static inline size_t wsp_buf_pending(const struct wsp_buf *b) { return b->len - b->off; }

/* Makes room for n more bytes at the end (compacting or growing); returns a
 * pointer to them or NULL on allocation failure. Commit with wsp_buf_commit. */
uint8_t *wsp_buf_reserve(struct wsp_buf *b, size_t n);
static inline void wsp_buf_commit(struct wsp_buf *b, size_t n) { b->len += n; }
/* Appends n bytes; returns 0 or -1 on allocation failure. */
int wsp_buf_append(struct wsp_buf *b, const void *p, size_t n);
/* Consumes n bytes from the front; resets to empty when all are consumed. */
void wsp_buf_consume(struct wsp_buf *b, size_t n);
/* Releases the memory if the buffer is empty and larger than keep bytes. */
void wsp_buf_shrink(struct wsp_buf *b, size_t keep);
void wsp_buf_free(struct wsp_buf *b);

#endif
