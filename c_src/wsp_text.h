/*
 * wsp_text: text the server chose (a close reason, a handshake detail)
 * made safe to print on a terminal. Pure, no I/O.
 */
#ifndef WSP_TEXT_H
#define WSP_TEXT_H

#include <stddef.h>
#include <stdint.h>

/* Writes p[0..n) into out[0..cap) NUL-terminated: valid UTF-8 printable
 * characters as they are; control characters (C0, DEL and the C1 range
 * U+0080..U+009F, which move the cursor, retitle or reset a terminal) and
 * the bytes of invalid UTF-8 as \xNN (lower-case hex, one per byte); the
 * backslash as \\. Truncates on a whole character or escape when out is
 * too small (4 * n + 1 always suffices). Returns the length written
 * (without the NUL); cap 0 writes nothing. */
size_t wsp_text_escape(const uint8_t *p, size_t n, char *out, size_t cap);

#endif
