/*
 * libFuzzer harness: the RFC 6455 frame parser (wsc_parser_next) fed
 * arbitrary server bytes.
 *
 * Input layout:
 *   byte 0     max_message_size: (b & 0xC0) == 0xC0 -> 0 (unlimited), else
 *              1 + (b & 0x3F) * 8 (1..505, so the 1009 path is hit often)
 *   bytes 1-4  seed of the split positions (chunk sizes 1..2^k, k from byte 1)
 *   rest       the byte stream from the server
 *
 * The stream is parsed twice: once in one piece and once split into chunks,
 * each chunk in its own exact-size heap buffer (so ASan catches any read
 * past a chunk). Checked on every call:
 *   - consumed <= len; WSC_ENEED_MORE consumes everything (or nothing, once
 *     a close frame was parsed); WSC_EPROTO sets close_code in
 *     {1002, 1007, 1009} and an errstr, and the parser stays dead;
 *   - DATA slices lie within the bytes consumed by that call, control
 *     payloads within the parser's own buffer, control payloads <= 125;
 *   - message_start / message_end / opcode sequencing, a message never
 *     longer than max_message_size, every complete text message and close
 *     reason valid UTF-8 (checked by an independent reference validator),
 *     close codes 1005 (empty) or valid;
 *   - no event without progress twice in a row (no endless loop);
 * and both runs must produce the same log of complete messages, control
 * frames and the same final error code (split invariance).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_codec.h"

#define CHECK(c)                                                          \
    do {                                                                  \
        if (!(c))                                                         \
            fuzz_fail(__LINE__, #c);                                      \
    } while (0)

#include <stdio.h>
static void fuzz_fail(int line, const char *what)
{
    fprintf(stderr, "fuzz_parser: invariant violated at line %d: %s\n", line, what);
    abort();
}

/* ---- growable byte buffer --------------------------------------------- */
struct gbuf {
    uint8_t *p;
    size_t n, cap;
};

static void gput(struct gbuf *b, const void *s, size_t n)
{
    if (!n)
        return;
    if (b->n + n > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + n)
            c *= 2;
        uint8_t *q = realloc(b->p, c);
        CHECK(q != NULL);
        b->p = q;
        b->cap = c;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void gput_u64(struct gbuf *b, uint64_t v)
{
    gput(b, &v, sizeof v);
}

/* ---- reference UTF-8 validator (RFC 3629), written plainly ------------ */
static int ref_utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        uint32_t cp;
        size_t k;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            k = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            k = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (n - i - 1 < k)
            return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += k + 1;
    }
    return 1;
}

static int close_code_ok(unsigned c)
{
    return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) ||
           (c >= 3000 && c <= 4999);
}

/* ---- one run ----------------------------------------------------------- */
struct run {
    struct wsc_parser p;
    uint64_t max;
    struct gbuf log;      /* complete messages, control frames, end state */
    struct gbuf msg;      /* the message being assembled */
    int in_msg, msg_op;
    int stopped;          /* close parsed or protocol error */
    int zero_events;      /* consecutive events that consumed nothing */
};

static void run_init(struct run *r, uint64_t max)
{
    memset(r, 0, sizeof *r);
    r->max = max;
    wsc_parser_init(&r->p, max);
}

static void on_event(struct run *r, const uint8_t *buf, size_t consumed,
                     const struct wsc_event *ev)
{
    switch (ev->type) {
    case WSC_EV_DATA:
        CHECK(ev->opcode == WSC_OP_TEXT || ev->opcode == WSC_OP_BINARY);
        CHECK(ev->len <= consumed);
        if (ev->len)
            CHECK(ev->data >= buf && ev->data + ev->len <= buf + consumed);
        CHECK(ev->message_start == !r->in_msg);
        if (r->in_msg)
            CHECK(ev->opcode == r->msg_op);
        r->in_msg = 1;
        r->msg_op = ev->opcode;
        gput(&r->msg, ev->data, ev->len);
        if (r->max)
            CHECK(r->msg.n <= r->max);
        if (ev->message_end) {
            if (ev->opcode == WSC_OP_TEXT)
                CHECK(ref_utf8_valid(r->msg.p, r->msg.n));
            gput(&r->log, "M", 1);
            gput(&r->log, &r->msg_op, sizeof r->msg_op);
            gput_u64(&r->log, r->msg.n);
            gput(&r->log, r->msg.p, r->msg.n);
            r->msg.n = 0;
            r->in_msg = 0;
        }
        break;
    case WSC_EV_PING:
    case WSC_EV_PONG:
    case WSC_EV_CLOSE:
        CHECK(ev->len <= 125);
        /* in the fed bytes, or gathered in the parser's 125-byte buffer */
        if (ev->len)
            CHECK((ev->data >= buf && ev->data + ev->len <= buf + consumed) ||
                  (r->p.ctl && ev->data >= r->p.ctl && ev->data + ev->len <= r->p.ctl + 125));
        if (ev->type == WSC_EV_CLOSE) {
            if (ev->close_code == 1005)
                CHECK(ev->len == 0);
            else
                CHECK(close_code_ok(ev->close_code));
            CHECK(ev->len <= 123);
            CHECK(ref_utf8_valid(ev->data, ev->len));
            CHECK(r->p.closed);
        }
        gput(&r->log, ev->type == WSC_EV_PING ? "P" : ev->type == WSC_EV_PONG ? "O" : "C", 1);
        gput(&r->log, &ev->close_code, sizeof ev->close_code);
        gput_u64(&r->log, ev->len);
        gput(&r->log, ev->data, ev->len);
        break;
    default:
        fuzz_fail(__LINE__, "unknown event type");
    }
}

/* Feeds one chunk (its own buffer). */
static void feed(struct run *r, const uint8_t *buf, size_t len)
{
    size_t pos = 0;
    while (!r->stopped) {
        size_t consumed = (size_t)-1;
        struct wsc_event ev;
        memset(&ev, 0xA5, sizeof ev);
        int rc = wsc_parser_next(&r->p, buf + pos, len - pos, &consumed, &ev);
        CHECK(consumed <= len - pos);
        if (rc == 1) {
            on_event(r, buf + pos, consumed, &ev);
            if (consumed == 0)
                CHECK(++r->zero_events < 2);
            else
                r->zero_events = 0;
            pos += consumed;
            continue;
        }
        if (rc == WSC_ENEED_MORE) {
            if (r->p.closed) {
                CHECK(consumed == 0);
                r->stopped = 1;
                gput(&r->log, "E", 1);
            } else {
                CHECK(consumed == len - pos);
            }
            return;
        }
        CHECK(rc == WSC_EPROTO);
        CHECK(r->p.close_code == 1002 || r->p.close_code == 1007 ||
              r->p.close_code == 1009);
        CHECK(r->p.errstr != NULL);
        /* dead: stays dead and reads nothing */
        size_t c2 = (size_t)-1;
        CHECK(wsc_parser_next(&r->p, buf, len, &c2, &ev) == WSC_EPROTO);
        CHECK(c2 == 0);
        r->stopped = 1;
        gput(&r->log, "X", 1);
        gput(&r->log, &r->p.close_code, sizeof r->p.close_code);
        return;
    }
}

static void run_free(struct run *r)
{
    free(r->log.p);
    free(r->msg.p);
    wsc_parser_free(&r->p);
}

static uint32_t xorshift(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5)
        return 0;
    uint8_t cfg = data[0];
    uint64_t max = (cfg & 0xC0) == 0xC0 ? 0 : 1 + (uint64_t)(cfg & 0x3F) * 8;
    uint32_t seed = (uint32_t)data[1] << 24 | (uint32_t)data[2] << 16 |
                    (uint32_t)data[3] << 8 | data[4];
    unsigned maxchunk = 1u << (data[1] & 7); /* 1..128 */
    if (!seed)
        seed = 0x9E3779B9u;
    const uint8_t *stream = data + 5;
    size_t n = size - 5;

    /* run A: one piece */
    struct run a, b;
    run_init(&a, max);
    uint8_t *whole = malloc(n ? n : 1);
    CHECK(whole != NULL);
    if (n)
        memcpy(whole, stream, n);
    feed(&a, whole, n);
    free(whole);

    /* run B: split at positions derived from the input */
    run_init(&b, max);
    size_t off = 0;
    while (off < n && !b.stopped) {
        size_t c = 1 + xorshift(&seed) % maxchunk;
        if (c > n - off)
            c = n - off;
        uint8_t *chunk = malloc(c);
        CHECK(chunk != NULL);
        memcpy(chunk, stream + off, c);
        feed(&b, chunk, c);
        free(chunk);
        off += c;
    }
    /* an empty feed changes nothing */
    if (!b.stopped) {
        static const uint8_t dummy[1];
        size_t consumed = 1;
        struct wsc_event ev;
        CHECK(wsc_parser_next(&b.p, dummy, 0, &consumed, &ev) == WSC_ENEED_MORE ||
              b.p.closed);
        CHECK(consumed == 0);
    }

    /* split invariance: same messages, control frames and end state */
    CHECK(a.log.n == b.log.n);
    CHECK(a.log.n == 0 || memcmp(a.log.p, b.log.p, a.log.n) == 0);
    CHECK(a.stopped == b.stopped);

    run_free(&a);
    run_free(&b);
    return 0;
}
