/* wsp_lines: the CLI's stdin split into lines (c_src/wsp_cli.c).
 *
 * Bytes are fed in pieces of any size; wsp_lines_next hands out the complete
 * lines (without their '\n'; a '\r' before it is kept, the CLI sends it) or
 * refuses one: longer than max bytes, or (text mode) not valid UTF-8. A
 * line longer than max is refused as soon as max + 1 of its bytes are
 * buffered, without waiting for its newline, so the buffer never holds more
 * than max bytes plus the last piece fed. After a refusal nothing more is
 * taken. At the end of input the last line without a newline is a line too
 * (an empty one is not). Lines are numbered from 1 (the refused one too). */
#ifndef WSP_LINES_H
#define WSP_LINES_H

#include <stddef.h>
#include <stdint.h>

#include "wsp_buf.h"

enum wsp_lines_result {
    WSP_LINES_NONE = 0,     /* no complete line buffered (or one refused already) */
    WSP_LINES_LINE = 1,     /* *p, *n: the next line */
    WSP_LINES_TOO_LONG = 2, /* line number wsp_lines.line_no is longer than max */
    WSP_LINES_BAD_UTF8 = 3, /* text mode: line number line_no is not UTF-8 */
};

struct wsp_lines {
    struct wsp_buf buf;
    uint64_t max;     /* the longest line taken */
    int binary;       /* no UTF-8 check */
    size_t keep;      /* an empty buffer larger than this is freed */
    size_t taken;     /* bytes of the line handed out last, consumed on the next call */
    uint64_t line_no; /* lines handed out or refused so far */
    int refused;      /* a line was refused: nothing more is taken */
};

void wsp_lines_init(struct wsp_lines *l, uint64_t max, int binary, size_t keep);
void wsp_lines_free(struct wsp_lines *l);

/* Room for n more bytes (NULL when out of memory); then wsp_lines_commit. */
uint8_t *wsp_lines_reserve(struct wsp_lines *l, size_t n);
void wsp_lines_commit(struct wsp_lines *l, size_t n);
/* Copies n bytes in; 0, or -1 when out of memory. */
int wsp_lines_feed(struct wsp_lines *l, const void *p, size_t n);

/* The next line (valid until the next call) or refusal; at_eof: no more
 * bytes will come, so the rest is the last line. Call until WSP_LINES_NONE
 * after each piece fed. A refusal drops everything buffered. */
enum wsp_lines_result wsp_lines_next(struct wsp_lines *l, int at_eof, const uint8_t **p, size_t *n);

/* Bytes buffered and not handed out. */
size_t wsp_lines_pending(const struct wsp_lines *l);

#endif
