#include "wsp_lines.h"

#include <string.h>

#include "ws_codec.h"

void wsp_lines_init(struct wsp_lines *l, uint64_t max, int binary, size_t keep)
{
    memset(l, 0, sizeof *l);
    l->max = max;
    l->binary = binary;
    l->keep = keep;
}

void wsp_lines_free(struct wsp_lines *l)
{
    wsp_buf_free(&l->buf);
    l->taken = 0;
}

static void settle(struct wsp_lines *l)
{
    if (l->taken) {
        wsp_buf_consume(&l->buf, l->taken);
        l->taken = 0;
    }
}

uint8_t *wsp_lines_reserve(struct wsp_lines *l, size_t n)
{
    settle(l);
    return wsp_buf_reserve(&l->buf, n);
}

void wsp_lines_commit(struct wsp_lines *l, size_t n)
{
    if (l->refused) {
        return; /* nothing more is taken */
    }
    wsp_buf_commit(&l->buf, n);
}

int wsp_lines_feed(struct wsp_lines *l, const void *p, size_t n)
{
    if (l->refused || n == 0) {
        return 0;
    }
    uint8_t *dst = wsp_lines_reserve(l, n);
    if (!dst) {
        return -1;
    }
    memcpy(dst, p, n);
    wsp_lines_commit(l, n);
    return 0;
}

size_t wsp_lines_pending(const struct wsp_lines *l)
{
    return wsp_buf_pending(&l->buf) - l->taken;
}

static enum wsp_lines_result refuse(struct wsp_lines *l, enum wsp_lines_result why)
{
    l->refused = 1;
    wsp_buf_consume(&l->buf, wsp_buf_pending(&l->buf));
    wsp_buf_shrink(&l->buf, l->keep);
    return why;
}

enum wsp_lines_result wsp_lines_next(struct wsp_lines *l, int at_eof, const uint8_t **p, size_t *n)
{
    settle(l);
    size_t avail = wsp_buf_pending(&l->buf);
    if (l->refused || avail == 0) {
        wsp_buf_shrink(&l->buf, l->keep);
        return WSP_LINES_NONE;
    }
    const uint8_t *s = l->buf.data + l->buf.off;
    const uint8_t *nl = memchr(s, '\n', avail);
    size_t len, used;
    if (nl) {
        len = (size_t)(nl - s);
        used = len + 1;
    } else if (at_eof || avail > l->max) {
        len = used = avail; /* the last line, or one too long anyway */
    } else {
        wsp_buf_shrink(&l->buf, l->keep);
        return WSP_LINES_NONE;
    }
    l->line_no++;
    if (len > l->max) {
        return refuse(l, WSP_LINES_TOO_LONG);
    }
    if (!l->binary) {
        wsc_utf8 u = {0};
        if (wsc_utf8_feed(&u, s, len) < 0 || !wsc_utf8_complete(&u)) {
            return refuse(l, WSP_LINES_BAD_UTF8);
        }
    }
    l->taken = used;
    *p = s;
    *n = len;
    return WSP_LINES_LINE;
}
