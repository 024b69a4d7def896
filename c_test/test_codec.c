/*
 * Unit tests of ws_codec: scripted byte feeds, no network.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "ws_codec.h"

/* ======================================================================
 * helpers: frames, a recording feeder
 * ====================================================================== */

enum { LEN_MIN = 0, LEN_16 = 16, LEN_64 = 64 };

/* Writes a server (unmasked) frame: b0 = FIN/RSV/opcode byte, payload
 * length encoded minimally or forced to the 16/64-bit form. */
static size_t frame(uint8_t *out, uint8_t b0, const void *payload, size_t len,
                    int form)
{
    size_t n = 0;
    out[n++] = b0;
    if (form == LEN_64 || (form == LEN_MIN && len > 0xFFFF)) {
        out[n++] = 127;
        for (int i = 7; i >= 0; i--)
            out[n++] = (uint8_t)((uint64_t)len >> (8 * i));
    } else if (form == LEN_16 || len >= 126) {
        out[n++] = 126;
        out[n++] = (uint8_t)(len >> 8);
        out[n++] = (uint8_t)len;
    } else {
        out[n++] = (uint8_t)len;
    }
    if (len)
        memcpy(out + n, payload, len);
    return n + len;
}

static size_t frame_s(uint8_t *out, uint8_t b0, const char *s)
{
    return frame(out, b0, s, strlen(s), LEN_MIN);
}

static uint64_t fnv(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* what a run produced, as text: "TEXT:Hello;PING:;CLOSE1000:bye;ERR1002;" */
struct rec {
    char log[8192];
    size_t loglen;
    int err;                 /* 0 or WSC_EPROTO */
    uint16_t close_code;
    const char *errstr;
    uint8_t *msg;            /* message being assembled */
    size_t msg_len, msg_cap;
    int in_msg, msg_op;
    size_t events, data_events;
};

static void logf_(struct rec *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(r->log + r->loglen, sizeof r->log - r->loglen, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof r->log - r->loglen);
    r->loglen += (size_t)n;
}

static void log_payload(struct rec *r, const uint8_t *p, size_t n)
{
    int printable = n <= 40;
    for (size_t i = 0; i < n && printable; i++)
        printable = p[i] >= 0x20 && p[i] < 0x7f && p[i] != ';';
    if (printable)
        logf_(r, "%.*s;", (int)n, (const char *)p);
    else
        logf_(r, "#%zu:%016llx;", n, (unsigned long long)fnv(p, n));
}

static void rec_free(struct rec *r)
{
    free(r->msg);
    r->msg = NULL;
}

static void on_event(struct rec *r, const struct wsc_event *ev,
                     const uint8_t *chunk, size_t clen)
{
    r->events++;
    switch (ev->type) {
    case WSC_EV_DATA:
        r->data_events++;
        /* payload is a slice of the fed buffer, never a copy */
        assert_true(ev->data >= chunk && ev->data + ev->len <= chunk + clen);
        assert_true(ev->opcode == WSC_OP_TEXT || ev->opcode == WSC_OP_BINARY);
        assert_int_equal(ev->message_start, !r->in_msg);
        if (ev->message_start) {
            r->in_msg = 1;
            r->msg_op = ev->opcode;
            r->msg_len = 0;
        }
        assert_int_equal(ev->opcode, r->msg_op);
        /* empty slices only where needed: the end of a message */
        assert_true(ev->len > 0 || ev->message_end);
        if (r->msg_len + ev->len > r->msg_cap) {
            r->msg_cap = (r->msg_len + ev->len) * 2 + 16;
            r->msg = realloc(r->msg, r->msg_cap);
            assert_non_null(r->msg);
        }
        if (ev->len)
            memcpy(r->msg + r->msg_len, ev->data, ev->len);
        r->msg_len += ev->len;
        if (ev->message_end) {
            logf_(r, "%s:", r->msg_op == WSC_OP_TEXT ? "TEXT" : "BIN");
            log_payload(r, r->msg, r->msg_len);
            r->in_msg = 0;
        }
        break;
    case WSC_EV_PING:
    case WSC_EV_PONG:
        assert_true(ev->len <= 125);
        logf_(r, "%s:", ev->type == WSC_EV_PING ? "PING" : "PONG");
        log_payload(r, ev->data, ev->len);
        break;
    case WSC_EV_CLOSE:
        logf_(r, "CLOSE%u:", ev->close_code);
        log_payload(r, ev->data, ev->len);
        break;
    default:
        fail_msg("unknown event type %d", (int)ev->type);
    }
}

/* Feeds bytes[0..n) to p in chunks ending at cuts[] (sorted, < n), each chunk
 * in its own heap buffer so that ASan sees any read past it. */
static void run_cuts(struct wsc_parser *p, const uint8_t *bytes, size_t n,
                     const size_t *cuts, size_t ncuts, struct rec *r)
{
    size_t from = 0;
    for (size_t c = 0; c <= ncuts && !r->err; c++) {
        size_t to = c < ncuts ? cuts[c] : n;
        size_t clen = to - from;
        uint8_t *chunk = malloc(clen ? clen : 1);
        assert_non_null(chunk);
        if (clen)
            memcpy(chunk, bytes + from, clen);
        size_t off = 0;
        for (int guard = 0;; guard++) {
            struct wsc_event ev;
            size_t used = 12345;
            assert_true(guard < 10000000);
            int rc = wsc_parser_next(p, chunk + off, clen - off, &used, &ev);
            assert_true(used <= clen - off);
            off += used;
            if (rc == 1) {
                on_event(r, &ev, chunk, clen);
                continue;
            }
            if (rc == WSC_ENEED_MORE) {
                if (p->closed)
                    assert_int_equal(used, 0);
                else
                    assert_int_equal(off, clen);
                break;
            }
            assert_int_equal(rc, WSC_EPROTO);
            r->err = rc;
            r->close_code = p->close_code;
            r->errstr = p->errstr;
            assert_non_null(p->errstr);
            logf_(r, "ERR%u;", p->close_code);
            /* a dead parser stays dead */
            assert_int_equal(wsc_parser_next(p, chunk, clen, &used, &ev), WSC_EPROTO);
            assert_int_equal(used, 0);
            break;
        }
        free(chunk);
        from = to;
    }
    wsc_parser_free(p);
}

static void run_whole(const uint8_t *bytes, size_t n, uint64_t max, struct rec *r)
{
    struct wsc_parser p;
    memset(r, 0, sizeof *r);
    wsc_parser_init(&p, max);
    run_cuts(&p, bytes, n, NULL, 0, r);
}

/* Runs bytes whole, one byte at a time, at every split point and (for short
 * inputs) at every pair of split points; every run must log `want`. */
static void check_splits(const uint8_t *bytes, size_t n, uint64_t max,
                         const char *want)
{
    struct rec r;
    struct wsc_parser p;

    run_whole(bytes, n, max, &r);
    assert_string_equal(r.log, want);
    rec_free(&r);

    size_t *cuts = malloc((n + 1) * sizeof *cuts);
    assert_non_null(cuts);
    for (size_t i = 0; i + 1 < n; i++)
        cuts[i] = i + 1;
    memset(&r, 0, sizeof r);
    wsc_parser_init(&p, max);
    run_cuts(&p, bytes, n, cuts, n ? n - 1 : 0, &r);
    assert_string_equal(r.log, want);
    rec_free(&r);

    for (size_t k = 0; k <= n; k++) {
        memset(&r, 0, sizeof r);
        wsc_parser_init(&p, max);
        run_cuts(&p, bytes, n, &k, 1, &r);
        assert_string_equal(r.log, want);
        rec_free(&r);
    }
    if (n <= 64) {
        for (size_t i = 0; i <= n; i++)
            for (size_t j = i; j <= n; j++) {
                size_t c2[2] = {i, j};
                memset(&r, 0, sizeof r);
                wsc_parser_init(&p, max);
                run_cuts(&p, bytes, n, c2, 2, &r);
                assert_string_equal(r.log, want);
                rec_free(&r);
            }
    }
    free(cuts);
}

/* what the log shows for a message or control frame (as log_payload) */
static char *want_bin(const char *kind, const uint8_t *p, size_t n)
{
    static char buf[128]; /* test helper only */
    struct rec r;
    memset(&r, 0, sizeof r);
    log_payload(&r, p, n);
    snprintf(buf, sizeof buf, "%.40s:%.80s", kind, r.log);
    return buf;
}

/* ======================================================================
 * frame parser
 * ====================================================================== */

/* wsc_parser_binary_tail / wsc_parser_skip: what wsp_conn splices */
static void test_parser_skip(void **state)
{
    (void)state;
    enum { N = 70000 };
    uint8_t *pl = malloc(N), *b = malloc(2 * N + 64);
    assert_true(pl && b);
    for (size_t i = 0; i < N; i++)
        pl[i] = (uint8_t)(i * 7);
    /* a fragmented binary message (first frame not FIN), then a FIN frame,
     * then a small text message */
    size_t n = frame(b, 0x02, pl, 1000, LEN_MIN);
    size_t fin_at = n;
    n += frame(b + n, 0x80, pl, N, LEN_MIN);
    size_t text_at = n;
    n += frame_s(b + n, 0x81, "after");

    struct wsc_parser p;
    struct wsc_event ev;
    size_t used;
    wsc_parser_init(&p, 0);
    assert_int_equal(wsc_parser_binary_tail(&p), 0);
    assert_int_equal(wsc_parser_skip(&p, 1), -1);
    /* inside the non-final frame: nothing may be skipped */
    assert_int_equal(wsc_parser_next(&p, b, 4 + 500, &used, &ev), 1);
    assert_int_equal(wsc_parser_binary_tail(&p), 0);
    assert_int_equal(wsc_parser_frame_left(&p), 500);
    assert_int_equal(wsc_parser_next(&p, b + 504, fin_at - 504, &used, &ev), 1);
    /* the final frame's header (64-bit length) and 100 payload bytes */
    assert_int_equal(wsc_parser_next(&p, b + fin_at, 10 + 100, &used, &ev), 1);
    assert_int_equal(ev.len, 100);
    assert_false(ev.message_start);
    assert_int_equal(wsc_parser_binary_tail(&p), N - 100);
    assert_int_equal(wsc_parser_frame_left(&p), N - 100);
    assert_int_equal(wsc_parser_skip(&p, N - 99), -1); /* more than is left */
    assert_int_equal(wsc_parser_skip(&p, 0), -1);
    assert_int_equal(wsc_parser_skip(&p, 1000), 0);
    assert_int_equal(wsc_parser_binary_tail(&p), N - 1100);
    /* the parser goes on with the bytes after the skipped ones */
    size_t at = fin_at + 10 + 1100;
    assert_int_equal(wsc_parser_next(&p, b + at, 10, &used, &ev), 1);
    assert_memory_equal(ev.data, pl + 1100, 10);
    assert_false(ev.message_end);
    assert_int_equal(wsc_parser_skip(&p, N - 1110), 0);
    /* message over: a new one parses normally */
    assert_int_equal(wsc_parser_binary_tail(&p), 0);
    assert_int_equal(wsc_parser_frame_left(&p), 0);
    assert_int_equal(wsc_parser_next(&p, b + text_at, n - text_at, &used, &ev), 1);
    assert_int_equal(ev.opcode, WSC_OP_TEXT);
    assert_true(ev.message_start && ev.message_end);
    assert_memory_equal(ev.data, "after", 5);

    /* text is never skippable (it must be UTF-8 checked) */
    wsc_parser_init(&p, 0);
    n = frame(b, 0x81, "abcdefgh", 8, LEN_MIN);
    assert_int_equal(wsc_parser_next(&p, b, 4, &used, &ev), 1);
    assert_int_equal(wsc_parser_binary_tail(&p), 0);
    assert_int_equal(wsc_parser_skip(&p, 1), -1);
    free(pl);
    free(b);
}

static void test_parser_small_text(void **state)
{
    (void)state;
    uint8_t b[32];
    size_t n = frame_s(b, 0x81, "Hello");
    static const uint8_t rfc[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    assert_int_equal(n, sizeof rfc);
    assert_memory_equal(b, rfc, n); /* RFC 6455 5.7 */
    check_splits(b, n, 0, "TEXT:Hello;");

    /* whole in one buffer: exactly one slice with start and end */
    struct wsc_parser p;
    struct wsc_event ev;
    size_t used;
    wsc_parser_init(&p, 0);
    assert_int_equal(wsc_parser_next(&p, b, n, &used, &ev), 1);
    assert_int_equal(used, n);
    assert_int_equal(ev.type, WSC_EV_DATA);
    assert_int_equal(ev.opcode, WSC_OP_TEXT);
    assert_true(ev.message_start && ev.message_end);
    assert_ptr_equal(ev.data, b + 2);
    assert_int_equal(ev.len, 5);
    assert_int_equal(wsc_parser_next(&p, b + n, 0, &used, &ev), WSC_ENEED_MORE);
    assert_int_equal(used, 0);
}

static void check_binary_len(size_t len, int form, int all_splits)
{
    uint8_t *pl = malloc(len ? len : 1), *b = malloc(len + 14);
    assert_true(pl && b);
    for (size_t i = 0; i < len; i++)
        pl[i] = (uint8_t)(i * 7 + 3);
    size_t n = frame(b, 0x82, pl, len, form);
    char want[160];
    snprintf(want, sizeof want, "%s", want_bin("BIN", pl, len));
    if (all_splits) {
        check_splits(b, n, 0, want);
    } else {
        struct rec r;
        struct wsc_parser p;
        run_whole(b, n, 0, &r);
        assert_string_equal(r.log, want);
        assert_int_equal(r.data_events, 1);
        rec_free(&r);
        /* byte at a time */
        size_t *cuts = malloc(n * sizeof *cuts);
        assert_non_null(cuts);
        for (size_t i = 0; i + 1 < n; i++)
            cuts[i] = i + 1;
        memset(&r, 0, sizeof r);
        wsc_parser_init(&p, 0);
        run_cuts(&p, b, n, cuts, n - 1, &r);
        assert_string_equal(r.log, want);
        rec_free(&r);
        free(cuts);
        /* splits through the header and a few in the payload */
        for (size_t k = 0; k <= n; k += (k < 24 || k > n - 24) ? 1 : 997) {
            memset(&r, 0, sizeof r);
            wsc_parser_init(&p, 0);
            run_cuts(&p, b, n, &k, 1, &r);
            assert_string_equal(r.log, want);
            rec_free(&r);
        }
    }
    free(pl);
    free(b);
}

static void test_parser_lengths(void **state)
{
    (void)state;
    /* 7-bit */
    check_binary_len(0, LEN_MIN, 1);
    check_binary_len(1, LEN_MIN, 1);
    check_binary_len(125, LEN_MIN, 1);
    /* 16-bit */
    check_binary_len(126, LEN_MIN, 1);
    check_binary_len(300, LEN_MIN, 1);
    check_binary_len(65535, LEN_MIN, 0);
    /* 64-bit */
    check_binary_len(65536, LEN_MIN, 0);
    check_binary_len(70000, LEN_MIN, 0);
}

static void test_parser_header_forms(void **state)
{
    (void)state;
    uint8_t b[64];
    /* exact header bytes for each form */
    assert_int_equal(frame(b, 0x82, "x", 1, LEN_MIN), 3);
    assert_int_equal(frame(b, 0x82, "x", 1, LEN_16), 5);
    assert_int_equal(frame(b, 0x82, "x", 1, LEN_64), 11);
    /* non-minimal length encodings are accepted */
    size_t n = frame(b, 0x81, "abc", 3, LEN_16);
    check_splits(b, n, 0, "TEXT:abc;");
    n = frame(b, 0x81, "abc", 3, LEN_64);
    check_splits(b, n, 0, "TEXT:abc;");
    n = frame(b, 0x81, "", 0, LEN_64);
    check_splits(b, n, 0, "TEXT:;");
    n = frame(b, 0x89, "p", 1, LEN_16); /* control with 16-bit form, <= 125 */
    check_splits(b, n, 0, "PING:p;");
}

static void test_parser_zero_length(void **state)
{
    (void)state;
    uint8_t b[64];
    struct wsc_parser p;
    struct wsc_event ev;
    size_t used;

    /* an empty message: one DATA event, len 0, start and end */
    size_t n = frame_s(b, 0x81, "");
    wsc_parser_init(&p, 0);
    assert_int_equal(wsc_parser_next(&p, b, n, &used, &ev), 1);
    assert_int_equal(used, 2);
    assert_int_equal(ev.type, WSC_EV_DATA);
    assert_int_equal(ev.opcode, WSC_OP_TEXT);
    assert_int_equal(ev.len, 0);
    assert_true(ev.message_start && ev.message_end);
    check_splits(b, n, 0, "TEXT:;");
    n = frame_s(b, 0x82, "");
    check_splits(b, n, 0, "BIN:;");

    /* empty leading fragments say nothing; the start moves to the data */
    n = frame_s(b, 0x01, "");
    n += frame_s(b + n, 0x00, "");
    n += frame_s(b + n, 0x80, "abc");
    wsc_parser_init(&p, 0);
    assert_int_equal(wsc_parser_next(&p, b, n, &used, &ev), 1);
    assert_int_equal(used, n);
    assert_true(ev.message_start && ev.message_end);
    assert_int_equal(ev.len, 3);
    check_splits(b, n, 0, "TEXT:abc;");

    /* an empty final fragment ends the message with a len 0 slice */
    n = frame_s(b, 0x02, "ab");
    n += frame_s(b + n, 0x80, "");
    wsc_parser_init(&p, 0);
    assert_int_equal(wsc_parser_next(&p, b, n, &used, &ev), 1);
    assert_true(ev.message_start && !ev.message_end);
    assert_int_equal(ev.len, 2);
    size_t off = used;
    assert_int_equal(wsc_parser_next(&p, b + off, n - off, &used, &ev), 1);
    assert_true(!ev.message_start && ev.message_end);
    assert_int_equal(ev.len, 0);
    assert_int_equal(off + used, n);
    check_splits(b, n, 0, "BIN:ab;");

    /* all fragments empty */
    n = frame_s(b, 0x01, "");
    n += frame_s(b + n, 0x00, "");
    n += frame_s(b + n, 0x80, "");
    check_splits(b, n, 0, "TEXT:;");
}

static void test_parser_fragments_and_control(void **state)
{
    (void)state;
    uint8_t b[128];
    size_t n = frame_s(b, 0x01, "Hel");
    n += frame_s(b + n, 0x89, "p1");
    n += frame_s(b + n, 0x00, "lo ");
    n += frame_s(b + n, 0x8A, "");
    n += frame_s(b + n, 0x80, "world");
    n += frame_s(b + n, 0x82, "next");
    check_splits(b, n, 0, "PING:p1;PONG:;TEXT:Hello world;BIN:next;");

    /* slices within a fragment never carry message_start twice */
    struct wsc_parser p;
    struct wsc_event ev;
    size_t used, off = 0;
    int starts = 0, ends = 0, data = 0;
    wsc_parser_init(&p, 0);
    while (wsc_parser_next(&p, b + off, n - off, &used, &ev) == 1) {
        off += used;
        if (ev.type == WSC_EV_DATA) {
            data++;
            starts += ev.message_start;
            ends += ev.message_end;
        }
    }
    assert_int_equal(off, n);
    assert_int_equal(data, 4);
    assert_int_equal(starts, 2);
    assert_int_equal(ends, 2);

    /* a close between fragments ends parsing */
    n = frame_s(b, 0x02, "abc");
    n += frame(b + n, 0x88, "\x03\xe8", 2, LEN_MIN);
    n += frame_s(b + n, 0x80, "def");
    check_splits(b, n, 0, "CLOSE1000:;");
}

static void test_parser_many_messages(void **state)
{
    (void)state;
    uint8_t b[4096];
    size_t n = 0;
    char want[4096] = "";
    for (int i = 0; i < 40; i++) {
        char s[16];
        snprintf(s, sizeof s, "m%d", i);
        n += frame_s(b + n, i % 3 ? 0x81 : 0x82, s);
        strcat(want, i % 3 ? "TEXT:" : "BIN:");
        strcat(want, s);
        strcat(want, ";");
    }
    struct rec r;
    run_whole(b, n, 0, &r);
    assert_string_equal(r.log, want);
    rec_free(&r);
    /* byte at a time */
    struct wsc_parser p;
    size_t cuts[4096];
    for (size_t i = 0; i + 1 < n; i++)
        cuts[i] = i + 1;
    memset(&r, 0, sizeof r);
    wsc_parser_init(&p, 0);
    run_cuts(&p, b, n, cuts, n - 1, &r);
    assert_string_equal(r.log, want);
    rec_free(&r);
}

static void test_parser_ping_pong(void **state)
{
    (void)state;
    uint8_t pl[125], b[256];
    for (int i = 0; i < 125; i++)
        pl[i] = (uint8_t)(255 - i);
    size_t n = frame(b, 0x89, pl, 125, LEN_MIN);
    check_splits(b, n, 0, want_bin("PING", pl, 125));
    n = frame(b, 0x8A, pl, 125, LEN_MIN);
    check_splits(b, n, 0, want_bin("PONG", pl, 125));
    n = frame_s(b, 0x89, "");
    check_splits(b, n, 0, "PING:;");

    /* the control payload lives in the parser, valid after the buffer goes */
    struct wsc_parser p;
    struct wsc_event ev;
    size_t used;
    n = frame_s(b, 0x89, "hi");
    wsc_parser_init(&p, 0);
    assert_int_equal(wsc_parser_next(&p, b, 3, &used, &ev), WSC_ENEED_MORE);
    assert_int_equal(wsc_parser_next(&p, b + 3, 1, &used, &ev), 1);
    assert_int_equal(ev.type, WSC_EV_PING);
    assert_ptr_equal(ev.data, p.ctl);
    assert_memory_equal(ev.data, "hi", 2);
    /* the next call lets it go (nothing more to say) */
    assert_int_equal(wsc_parser_next(&p, b, 0, &used, &ev), WSC_ENEED_MORE);
    assert_null(p.ctl);

    /* whole in the fed buffer: the event points into it, nothing gathered */
    wsc_parser_init(&p, 0);
    assert_int_equal(wsc_parser_next(&p, b, n, &used, &ev), 1);
    assert_int_equal(ev.type, WSC_EV_PING);
    assert_ptr_equal(ev.data, b + 2);
    assert_null(p.ctl);
    wsc_parser_free(&p);
}

static void test_parser_close(void **state)
{
    (void)state;
    uint8_t b[256];
    struct wsc_parser p;
    struct wsc_event ev;
    size_t used;

    size_t n = frame_s(b, 0x88, "");
    check_splits(b, n, 0, "CLOSE1005:;");
    n = frame(b, 0x88, "\x03\xe8" "bye", 5, LEN_MIN);
    check_splits(b, n, 0, "CLOSE1000:bye;");
    n = frame(b, 0x88, "\x0f\xa0" "\xc3\xa9", 4, LEN_MIN); /* 4000, "é" */
    check_splits(b, n, 0, want_bin("CLOSE4000", (const uint8_t *)"\xc3\xa9", 2));

    /* the event, then nothing more, consuming nothing */
    n = frame(b, 0x88, "\x03\xe9" "x", 3, LEN_MIN);
    n += frame_s(b + n, 0x81, "after");
    wsc_parser_init(&p, 0);
    assert_int_equal(wsc_parser_next(&p, b, n, &used, &ev), 1);
    assert_int_equal(used, 5);
    assert_int_equal(ev.type, WSC_EV_CLOSE);
    assert_int_equal(ev.close_code, 1001);
    assert_int_equal(ev.len, 1);
    assert_memory_equal(ev.data, "x", 1);
    assert_true(p.closed);
    assert_int_equal(wsc_parser_next(&p, b + 5, n - 5, &used, &ev), WSC_ENEED_MORE);
    assert_int_equal(used, 0);

    /* 1-byte payload */
    n = frame(b, 0x88, "\x03", 1, LEN_MIN);
    check_splits(b, n, 0, "ERR1002;");

    /* codes */
    static const unsigned bad[] = {0, 1, 999, 1004, 1005, 1006, 1015, 1016,
                                   1100, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        uint8_t pl[2] = {(uint8_t)(bad[i] >> 8), (uint8_t)bad[i]};
        n = frame(b, 0x88, pl, 2, LEN_MIN);
        struct rec r;
        run_whole(b, n, 0, &r);
        assert_string_equal(r.log, "ERR1002;");
        assert_string_equal(r.errstr, "invalid close code");
        rec_free(&r);
    }
    static const unsigned good[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009,
                                    1010, 1011, 1012, 1013, 1014, 3000, 3999,
                                    4000, 4999};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        uint8_t pl[2] = {(uint8_t)(good[i] >> 8), (uint8_t)good[i]};
        n = frame(b, 0x88, pl, 2, LEN_MIN);
        char want[32];
        snprintf(want, sizeof want, "CLOSE%u:;", good[i]);
        struct rec r;
        run_whole(b, n, 0, &r);
        assert_string_equal(r.log, want);
        rec_free(&r);
    }

    /* reason must be complete, valid UTF-8 */
    n = frame(b, 0x88, "\x03\xe8" "\xed\xa0\x80", 5, LEN_MIN);
    check_splits(b, n, 0, "ERR1007;");
    n = frame(b, 0x88, "\x03\xe8" "ok\xe2\x82", 6, LEN_MIN);
    check_splits(b, n, 0, "ERR1007;");
    struct rec r;
    run_whole(b, n, 0, &r);
    assert_string_equal(r.errstr, "invalid UTF-8 in close reason");
    rec_free(&r);

    /* 125-byte close payload is fine */
    uint8_t pl[125];
    pl[0] = 0x03;
    pl[1] = 0xe8;
    memset(pl + 2, 'r', 123);
    n = frame(b, 0x88, pl, 125, LEN_MIN);
    run_whole(b, n, 0, &r);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.events, 1);
    rec_free(&r);
}

struct violation {
    const char *name;
    uint8_t bytes[24];
    size_t len;
    uint16_t code;
    const char *errstr;
    size_t fail_after;  /* fail fast: bytes that must already trigger it */
    const char *log;    /* events before the error, if any */
};

static void test_parser_violations(void **state)
{
    (void)state;
    static const struct violation v[] = {
        {"rsv1", {0xC1, 0x00}, 2, 1002, "reserved bits set", 1, NULL},
        {"rsv2", {0xA2, 0x00}, 2, 1002, "reserved bits set", 1, NULL},
        {"rsv3", {0x91, 0x00}, 2, 1002, "reserved bits set", 1, NULL},
        {"rsv on ping", {0xC9, 0x00}, 2, 1002, "reserved bits set", 1, NULL},
        {"op3", {0x83, 0x00}, 2, 1002, "unknown opcode 3", 1, NULL},
        {"op4", {0x84, 0x00}, 2, 1002, "unknown opcode 4", 1, NULL},
        {"op5", {0x85, 0x00}, 2, 1002, "unknown opcode 5", 1, NULL},
        {"op6", {0x86, 0x00}, 2, 1002, "unknown opcode 6", 1, NULL},
        {"op7", {0x87, 0x00}, 2, 1002, "unknown opcode 7", 1, NULL},
        {"opB", {0x8B, 0x00}, 2, 1002, "unknown opcode 0xB", 1, NULL},
        {"opC", {0x8C, 0x00}, 2, 1002, "unknown opcode 0xC", 1, NULL},
        {"opD", {0x8D, 0x00}, 2, 1002, "unknown opcode 0xD", 1, NULL},
        {"opE", {0x8E, 0x00}, 2, 1002, "unknown opcode 0xE", 1, NULL},
        {"opF", {0x8F, 0x00}, 2, 1002, "unknown opcode 0xF", 1, NULL},
        {"masked", {0x81, 0x81, 1, 2, 3, 4, 'a'}, 7, 1002,
         "masked frame from server", 2, NULL},
        {"masked empty", {0x82, 0x80, 1, 2, 3, 4}, 6, 1002,
         "masked frame from server", 2, NULL},
        {"fragmented ping", {0x09, 0x00}, 2, 1002, "fragmented control frame", 1, NULL},
        {"fragmented close", {0x08, 0x00}, 2, 1002, "fragmented control frame", 1, NULL},
        {"ping 126", {0x89, 0x7E, 0x00, 0x7E}, 4, 1002,
         "control frame payload > 125", 4, NULL},
        {"pong 126 in 64 bits", {0x8A, 0x7F, 0, 0, 0, 0, 0, 0, 0, 0x7E}, 10, 1002,
         "control frame payload > 125", 10, NULL},
        {"close 65535", {0x88, 0x7E, 0xFF, 0xFF}, 4, 1002,
         "control frame payload > 125", 4, NULL},
        {"cont first", {0x80, 0x01, 'a'}, 3, 1002,
         "continuation frame without a message", 1, NULL},
        {"cont after end", {0x81, 0x01, 'a', 0x80, 0x01, 'b'}, 6, 1002,
         "continuation frame without a message", 4, "TEXT:a;ERR1002;"},
        {"new text inside", {0x01, 0x01, 'a', 0x81, 0x01, 'b'}, 6, 1002,
         "new message inside a fragmented message", 4, NULL},
        {"new binary inside", {0x02, 0x01, 'a', 0x02, 0x01, 'b'}, 6, 1002,
         "new message inside a fragmented message", 4, NULL},
        {"len top bit", {0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0}, 10, 1002,
         "64-bit payload length with the top bit set", 10, NULL},
        {"bad utf8", {0x81, 0x02, 0xC0, 0x80}, 4, 1007,
         "invalid UTF-8 in text message", 3, NULL},
        {"surrogate", {0x81, 0x03, 0xED, 0xA0, 0x80}, 5, 1007,
         "invalid UTF-8 in text message", 4, NULL},
        {"truncated utf8", {0x81, 0x02, 'a', 0xE2}, 4, 1007,
         "invalid UTF-8 in text message", 4, NULL},
        {"close 1 byte", {0x88, 0x01, 0x03}, 3, 1002,
         "close frame with a 1-byte payload", 3, NULL},
        {"close bad code", {0x88, 0x02, 0x03, 0xED}, 4, 1002,
         "invalid close code", 4, NULL},
    };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        char want[32];
        snprintf(want, sizeof want, "ERR%u;", v[i].code);
        if (v[i].log)
            snprintf(want, sizeof want, "%s", v[i].log);
        struct rec r;
        run_whole(v[i].bytes, v[i].len, 0, &r);
        if (strcmp(r.log, want) != 0 || strcmp(r.errstr, v[i].errstr) != 0)
            fail_msg("%s: got %s %s", v[i].name, r.log, r.errstr ? r.errstr : "-");
        rec_free(&r);
        check_splits(v[i].bytes, v[i].len, 0, want);

        /* fail fast: the error shows as soon as the offending byte is in */
        struct wsc_parser p;
        struct wsc_event ev;
        size_t used;
        wsc_parser_init(&p, 0);
        int rc = wsc_parser_next(&p, v[i].bytes, v[i].fail_after, &used, &ev);
        if (rc == 1) /* a complete first message comes first */
            rc = wsc_parser_next(&p, v[i].bytes + used, v[i].fail_after - used,
                                 &used, &ev);
        if (rc != WSC_EPROTO)
            fail_msg("%s: not failed after %zu bytes", v[i].name, v[i].fail_after);
        assert_int_equal(p.close_code, v[i].code);
    }
}

static void test_parser_utf8_fragments(void **state)
{
    (void)state;
    uint8_t b[128];
    size_t n;

    /* a character split across fragments, with a ping between */
    n = frame(b, 0x01, "\xe2\x82", 2, LEN_MIN);
    n += frame_s(b + n, 0x89, "");
    n += frame(b + n, 0x80, "\xac!", 2, LEN_MIN);
    char want[160];
    snprintf(want, sizeof want, "PING:;%s",
             want_bin("TEXT", (const uint8_t *)"\xe2\x82\xac!", 4));
    check_splits(b, n, 0, want);
    /* 4-byte character, one byte per fragment */
    n = frame(b, 0x01, "\xf0", 1, LEN_MIN);
    n += frame(b + n, 0x00, "\x9f", 1, LEN_MIN);
    n += frame(b + n, 0x00, "\x98", 1, LEN_MIN);
    n += frame(b + n, 0x80, "\x80", 1, LEN_MIN);
    struct rec r;
    run_whole(b, n, 0, &r);
    assert_int_equal(r.err, 0);
    assert_true(strncmp(r.log, "TEXT:#4:", 8) == 0);
    rec_free(&r);

    /* surrogate split across fragments fails at the first bad byte */
    n = frame(b, 0x01, "\xed", 1, LEN_MIN);
    size_t second = n;
    n += frame(b + n, 0x80, "\xa0\x80", 2, LEN_MIN);
    check_splits(b, n, 0, "ERR1007;");
    struct wsc_parser p;
    struct wsc_event ev;
    size_t used;
    wsc_parser_init(&p, 0);
    assert_int_equal(wsc_parser_next(&p, b, second + 3, &used, &ev), 1);
    assert_int_equal(ev.len, 1); /* ED: fine so far */
    assert_int_equal(wsc_parser_next(&p, b + used, second + 3 - used, &used, &ev),
                     WSC_EPROTO);
    assert_int_equal(p.close_code, 1007);
    assert_string_equal(p.errstr, "invalid UTF-8 in text message");

    /* truncated at the end of the message, with an empty final fragment */
    n = frame(b, 0x01, "a\xe2\x82", 3, LEN_MIN);
    n += frame_s(b + n, 0x80, "");
    check_splits(b, n, 0, "ERR1007;");

    /* binary is not checked */
    n = frame(b, 0x82, "\xff\xfe\xed\xa0\x80", 5, LEN_MIN);
    run_whole(b, n, 0, &r);
    assert_int_equal(r.err, 0);
    rec_free(&r);

    /* fail fast inside a long text frame: before the rest arrives */
    uint8_t big[1100];
    uint8_t pl[1000];
    memset(pl, 'a', sizeof pl);
    pl[10] = 0xff;
    n = frame(big, 0x81, pl, sizeof pl, LEN_MIN);
    wsc_parser_init(&p, 0);
    assert_int_equal(wsc_parser_next(&p, big, 20, &used, &ev), WSC_EPROTO);
    assert_int_equal(p.close_code, 1007);
}

static void test_parser_max_message_size(void **state)
{
    (void)state;
    uint8_t b[256];
    struct wsc_parser p;
    struct wsc_event ev;
    size_t used;
    size_t n;

    n = frame_s(b, 0x81, "0123456789");
    check_splits(b, n, 10, "TEXT:0123456789;");
    n = frame_s(b, 0x81, "0123456789a");
    check_splits(b, n, 10, "ERR1009;");
    /* checked on the header alone, before any payload arrives */
    wsc_parser_init(&p, 10);
    assert_int_equal(wsc_parser_next(&p, b, 2, &used, &ev), WSC_EPROTO);
    assert_int_equal(p.close_code, 1009);
    assert_string_equal(p.errstr, "message exceeds max_message_size");
    /* huge 64-bit announcement */
    static const uint8_t huge[] = {0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
    wsc_parser_init(&p, 1 << 20);
    assert_int_equal(wsc_parser_next(&p, huge, sizeof huge, &used, &ev), WSC_EPROTO);
    assert_int_equal(p.close_code, 1009);
    /* unlimited: waits for the bytes */
    wsc_parser_init(&p, 0);
    assert_int_equal(wsc_parser_next(&p, huge, sizeof huge, &used, &ev), WSC_ENEED_MORE);
    assert_int_equal(used, sizeof huge);

    /* fragments add up; fails at the header of the fragment that overflows */
    n = frame_s(b, 0x01, "012345");
    size_t second = n;
    n += frame_s(b + n, 0x80, "6789a");
    check_splits(b, n, 10, "ERR1009;");
    wsc_parser_init(&p, 10);
    assert_int_equal(wsc_parser_next(&p, b, second + 2, &used, &ev), 1);
    assert_int_equal(wsc_parser_next(&p, b + used, second + 2 - used, &used, &ev), WSC_EPROTO);
    assert_int_equal(p.close_code, 1009);

    /* exact fit over fragments, control frames not counted, count resets */
    n = frame_s(b, 0x01, "01234");
    n += frame_s(b + n, 0x89, "pingpingping");
    n += frame_s(b + n, 0x80, "56789");
    n += frame_s(b + n, 0x82, "abcdefghij");
    check_splits(b, n, 10, "PING:pingpingping;TEXT:0123456789;BIN:abcdefghij;");
}

/* ======================================================================
 * UTF-8
 * ====================================================================== */

/* Reference: -1 if bytes cannot be the start of valid UTF-8, 0 if valid and
 * complete, 1 if valid so far but inside a character. Naive, by code point
 * ranges (RFC 3629). */
static int ref_utf8(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = s[i];
        if (b < 0x80) {
            i++;
            continue;
        }
        int k;
        uint32_t cp;
        if (b >= 0xC0 && b <= 0xDF)
            k = 2, cp = b & 0x1F;
        else if (b >= 0xE0 && b <= 0xEF)
            k = 3, cp = b & 0x0F;
        else if (b >= 0xF0 && b <= 0xF7)
            k = 4, cp = b & 0x07;
        else
            return -1;
        int j = 1;
        for (; j < k && i + (size_t)j < n; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return -1;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        uint32_t lo = cp << (6 * (k - j)), hi = lo | ((1u << (6 * (k - j))) - 1);
        uint32_t min = k == 2 ? 0x80 : k == 3 ? 0x800 : 0x10000;
        uint32_t max = k == 2 ? 0x7FF : k == 3 ? 0xFFFF : 0x10FFFF;
        uint32_t a = lo > min ? lo : min, z = hi < max ? hi : max;
        if (a > z || (a >= 0xD800 && z <= 0xDFFF))
            return -1;
        if (j < k)
            return 1;
        i += (size_t)k;
    }
    return 0;
}

static int codec_utf8(const uint8_t *s, size_t n, int bytewise)
{
    wsc_utf8 u = {0};
    if (bytewise) {
        for (size_t i = 0; i < n; i++)
            if (wsc_utf8_feed(&u, s + i, 1) < 0)
                return -1;
    } else if (wsc_utf8_feed(&u, s, n) < 0) {
        return -1;
    }
    return wsc_utf8_complete(&u) ? 0 : 1;
}

static int utf8_str(const char *s)
{
    return codec_utf8((const uint8_t *)s, strlen(s), 0);
}

static void test_utf8_named(void **state)
{
    (void)state;
    /* valid */
    assert_int_equal(utf8_str(""), 0);
    assert_int_equal(utf8_str("hello"), 0);
    assert_int_equal(utf8_str("\xc2\x80"), 0);          /* U+0080 */
    assert_int_equal(utf8_str("\xdf\xbf"), 0);          /* U+07FF */
    assert_int_equal(utf8_str("\xe0\xa0\x80"), 0);      /* U+0800 */
    assert_int_equal(utf8_str("\xed\x9f\xbf"), 0);      /* U+D7FF */
    assert_int_equal(utf8_str("\xee\x80\x80"), 0);      /* U+E000 */
    assert_int_equal(utf8_str("\xef\xbf\xbf"), 0);      /* U+FFFF */
    assert_int_equal(utf8_str("\xf0\x90\x80\x80"), 0);  /* U+10000 */
    assert_int_equal(utf8_str("\xf0\x9f\x98\x80"), 0);  /* U+1F600 */
    assert_int_equal(utf8_str("\xf4\x8f\xbf\xbf"), 0);  /* U+10FFFF */
    assert_int_equal(utf8_str("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"), 0);
    /* overlongs */
    assert_int_equal(utf8_str("\xc0\x80"), -1);
    assert_int_equal(utf8_str("\xc1\xbf"), -1);
    assert_int_equal(utf8_str("\xe0\x80\x80"), -1);
    assert_int_equal(utf8_str("\xe0\x9f\xbf"), -1);
    assert_int_equal(utf8_str("\xf0\x80\x80\x80"), -1);
    assert_int_equal(utf8_str("\xf0\x8f\xbf\xbf"), -1);
    /* surrogates */
    assert_int_equal(utf8_str("\xed\xa0\x80"), -1);     /* U+D800 */
    assert_int_equal(utf8_str("\xed\xbf\xbf"), -1);     /* U+DFFF */
    assert_int_equal(utf8_str("\xed\xa0\x80\xed\xb0\x80"), -1); /* pair */
    /* beyond U+10FFFF */
    assert_int_equal(utf8_str("\xf4\x90\x80\x80"), -1);
    assert_int_equal(utf8_str("\xf5\x80\x80\x80"), -1);
    assert_int_equal(utf8_str("\xf7\xbf\xbf\xbf"), -1);
    assert_int_equal(utf8_str("\xf8\x88\x80\x80\x80"), -1);
    assert_int_equal(utf8_str("\xff"), -1);
    assert_int_equal(utf8_str("\xfe"), -1);
    /* stray and missing continuation bytes */
    assert_int_equal(utf8_str("\x80"), -1);
    assert_int_equal(utf8_str("\xbf"), -1);
    assert_int_equal(utf8_str("a\x80"), -1);
    assert_int_equal(utf8_str("\xc2" "a"), -1);
    assert_int_equal(utf8_str("\xe2\x82" "a"), -1);
    /* truncated: valid so far, not complete */
    assert_int_equal(utf8_str("\xc2"), 1);
    assert_int_equal(utf8_str("\xe2\x82"), 1);
    assert_int_equal(utf8_str("\xf0\x9f\x98"), 1);
    assert_int_equal(utf8_str("\xf4\x8f"), 1);

    /* fail fast: the second byte already decides */
    wsc_utf8 u = {0};
    assert_int_equal(wsc_utf8_feed(&u, (const uint8_t *)"\xed\xa0", 2), -1);
    u.state = 0;
    assert_int_equal(wsc_utf8_feed(&u, (const uint8_t *)"\xf4\x90", 2), -1);
    u.state = 0;
    assert_int_equal(wsc_utf8_feed(&u, (const uint8_t *)"\xe0\x9f", 2), -1);
    u.state = 0;
    assert_int_equal(wsc_utf8_feed(&u, (const uint8_t *)"\xf0\x8f", 2), -1);
    /* and a rejected validator stays rejected */
    assert_int_equal(wsc_utf8_feed(&u, (const uint8_t *)"a", 1), -1);
    assert_false(wsc_utf8_complete(&u));
    /* state carries across feeds */
    u.state = 0;
    assert_int_equal(wsc_utf8_feed(&u, (const uint8_t *)"ab\xf0\x9f", 4), 0);
    assert_false(wsc_utf8_complete(&u));
    assert_int_equal(wsc_utf8_feed(&u, (const uint8_t *)"\x98", 1), 0);
    assert_int_equal(wsc_utf8_feed(&u, (const uint8_t *)"\x80" "cd", 3), 0);
    assert_true(wsc_utf8_complete(&u));
    assert_int_equal(wsc_utf8_feed(&u, NULL, 0), 0);
}

static void test_utf8_exhaustive(void **state)
{
    (void)state;
    uint8_t s[3];
    for (unsigned a = 0; a < 256; a++) {
        s[0] = (uint8_t)a;
        assert_int_equal(codec_utf8(s, 1, 0), ref_utf8(s, 1));
        for (unsigned b = 0; b < 256; b++) {
            s[1] = (uint8_t)b;
            int want = ref_utf8(s, 2);
            if (codec_utf8(s, 2, 0) != want || codec_utf8(s, 2, 1) != want)
                fail_msg("%02x %02x", a, b);
            if (a < 0x80)
                continue; /* the 3-byte case reduces to the 2-byte one */
            for (unsigned c = 0; c < 256; c++) {
                s[2] = (uint8_t)c;
                want = ref_utf8(s, 3);
                if (codec_utf8(s, 3, 0) != want || codec_utf8(s, 3, 1) != want)
                    fail_msg("%02x %02x %02x", a, b, c);
                /* followed by ASCII, so that whole characters are checked
                 * at once rather than byte by byte */
                uint8_t padded[8] = {s[0], s[1], s[2], 'a', 'a', 'a', 'a', 'a'};
                if (codec_utf8(padded, 8, 0) != ref_utf8(padded, 8))
                    fail_msg("%02x %02x %02x + ascii", a, b, c);
            }
        }
    }
}

/* every sequence of 4 and 5 bytes from the bytes at the class edges */
static void test_utf8_edges(void **state)
{
    (void)state;
    static const uint8_t e[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0,
                                0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xEC,
                                0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5,
                                0xF7, 0xF8, 0xFF};
    const size_t ne = sizeof e;
    uint8_t s[5];
    for (size_t i0 = 0; i0 < ne; i0++)
        for (size_t i1 = 0; i1 < ne; i1++)
            for (size_t i2 = 0; i2 < ne; i2++)
                for (size_t i3 = 0; i3 < ne; i3++) {
                    s[0] = e[i0], s[1] = e[i1], s[2] = e[i2], s[3] = e[i3];
                    int want = ref_utf8(s, 4);
                    if (codec_utf8(s, 4, 0) != want || codec_utf8(s, 4, 1) != want)
                        fail_msg("%02x %02x %02x %02x", s[0], s[1], s[2], s[3]);
                    uint8_t padded[9] = {'a', s[0], s[1], s[2], s[3], 'b', 'c', 'd', 'e'};
                    if (codec_utf8(padded, 9, 0) != ref_utf8(padded, 9))
                        fail_msg("a %02x %02x %02x %02x + ascii", s[0], s[1], s[2], s[3]);
                    if (e[i0] < 0xF0)
                        continue;
                    for (size_t i4 = 0; i4 < ne; i4++) {
                        s[4] = e[i4];
                        want = ref_utf8(s, 5);
                        if (codec_utf8(s, 5, 0) != want)
                            fail_msg("%02x %02x %02x %02x %02x", s[0], s[1],
                                     s[2], s[3], s[4]);
                    }
                }
}

/* the ASCII fast path: a non-ASCII byte at every position and alignment */
static void test_utf8_fast_path(void **state)
{
    (void)state;
    uint8_t *buf = malloc(200);
    assert_non_null(buf);
    for (size_t align = 0; align < 8; align++) {
        for (size_t len = 0; len <= 100; len++) {
            uint8_t *s = buf + align;
            memset(s, 'a', len);
            assert_int_equal(codec_utf8(s, len, 0), 0);
            for (size_t pos = 0; pos < len; pos++) {
                s[pos] = 0xFF; /* never valid */
                assert_int_equal(codec_utf8(s, len, 0), -1);
                s[pos] = 0xC3; /* lead; valid with its tail, truncated at end */
                if (pos + 1 < len) {
                    s[pos + 1] = 0xA9;
                    assert_int_equal(codec_utf8(s, len, 0), 0);
                    s[pos + 1] = 'a';
                    assert_int_equal(codec_utf8(s, len, 0), -1);
                } else {
                    assert_int_equal(codec_utf8(s, len, 0), 1);
                }
                s[pos] = 'a';
            }
        }
    }
    /* long mixed text through every split */
    static const char mixed[] = "plain ascii text of some length, then \xce\xba\xe1\xbd\xb9"
                                "\xcf\x83\xce\xbc\xce\xb5 and \xf0\x9f\x98\x80 more ascii "
                                "0123456789012345678901234567890123456789\xf4\x8f\xbf\xbf";
    size_t n = sizeof mixed - 1;
    for (size_t k = 0; k <= n; k++) {
        wsc_utf8 u = {0};
        assert_int_equal(wsc_utf8_feed(&u, (const uint8_t *)mixed, k), 0);
        assert_int_equal(wsc_utf8_feed(&u, (const uint8_t *)mixed + k, n - k), 0);
        assert_true(wsc_utf8_complete(&u));
    }
    free(buf);
}

/* ======================================================================
 * frame writer, masking, close codes
 * ====================================================================== */

static void test_frame_header(void **state)
{
    (void)state;
    static const uint8_t m[4] = {0x37, 0xfa, 0x21, 0x3d};
    uint8_t h[14];

    assert_int_equal(wsc_frame_header(h, WSC_OP_TEXT, 1, 5, m), 6);
    static const uint8_t h5[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d}; /* RFC 5.7 */
    assert_memory_equal(h, h5, 6);

    assert_int_equal(wsc_frame_header(h, WSC_OP_BINARY, 0, 0, m), 6);
    assert_int_equal(h[0], 0x02);
    assert_int_equal(h[1], 0x80);
    assert_int_equal(wsc_frame_header(h, WSC_OP_CONT, 1, 125, m), 6);
    assert_int_equal(h[0], 0x80);
    assert_int_equal(h[1], 0x80 | 125);

    assert_int_equal(wsc_frame_header(h, WSC_OP_BINARY, 1, 126, m), 8);
    static const uint8_t h126[] = {0x82, 0xFE, 0x00, 0x7E, 0x37, 0xfa, 0x21, 0x3d};
    assert_memory_equal(h, h126, 8);
    assert_int_equal(wsc_frame_header(h, WSC_OP_BINARY, 1, 65535, m), 8);
    assert_int_equal(h[2], 0xFF);
    assert_int_equal(h[3], 0xFF);

    assert_int_equal(wsc_frame_header(h, WSC_OP_BINARY, 1, 65536, m), 14);
    static const uint8_t h64k[] = {0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0,
                                   0x37, 0xfa, 0x21, 0x3d};
    assert_memory_equal(h, h64k, 14);
    assert_int_equal(wsc_frame_header(h, WSC_OP_PING, 1, 0x0102030405060708ull, m), 14);
    static const uint8_t hbig[] = {0x89, 0xFF, 1, 2, 3, 4, 5, 6, 7, 8};
    assert_memory_equal(h, hbig, 10);
    assert_int_equal(wsc_frame_header(h, WSC_OP_CLOSE, 1, 2, m), 6);
    assert_int_equal(h[0], 0x88);

    /* RFC 6455 5.7: masked "Hello" */
    uint8_t hello[5] = {'H', 'e', 'l', 'l', 'o'};
    wsc_mask(hello, 5, m, 0);
    static const uint8_t masked[] = {0x7f, 0x9f, 0x4d, 0x51, 0x58};
    assert_memory_equal(hello, masked, 5);
}

static void naive_mask(uint8_t *d, const uint8_t *s, size_t n,
                       const uint8_t m[4], uint64_t off)
{
    for (size_t i = 0; i < n; i++)
        d[i] = s[i] ^ m[(off + i) & 3];
}

static void test_mask(void **state)
{
    (void)state;
    static const uint8_t m[4] = {0x12, 0x34, 0x56, 0xF8};
    enum { MAXLEN = 300 };
    uint8_t *src = malloc(MAXLEN + 16), *a = malloc(MAXLEN + 16),
            *want = malloc(MAXLEN + 16), *dst = malloc(MAXLEN + 16);
    assert_true(src && a && want && dst);
    for (size_t i = 0; i < MAXLEN + 16; i++)
        src[i] = (uint8_t)(i * 31 + 7);
    static const uint64_t offs[] = {0, 1, 2, 3, 4, 5, 6, 7, 1001,
                                    (1ull << 32) + 3, UINT64_MAX};
    for (size_t al = 0; al < 8; al++)
        for (size_t oi = 0; oi < sizeof offs / sizeof *offs; oi++)
            for (size_t len = 0; len <= MAXLEN; len += len < 80 ? 1 : 37) {
                uint64_t off = offs[oi];
                naive_mask(want, src + al, len, m, off);
                /* in place */
                memcpy(a + al, src + al, len);
                wsc_mask(a + al, len, m, off);
                if (len)
                    assert_memory_equal(a + al, want, len);
                /* copy, with source and destination misaligned differently */
                size_t dal = (al * 3 + 1) & 7;
                memset(dst, 0xEE, MAXLEN + 16);
                wsc_mask_copy(dst + dal, src + al, len, m, off);
                if (len)
                    assert_memory_equal(dst + dal, want, len);
                for (size_t i = 0; i < dal; i++)
                    assert_int_equal(dst[i], 0xEE);
                assert_int_equal(dst[dal + len], 0xEE);
                /* masking twice restores */
                wsc_mask(a + al, len, m, off);
                if (len)
                    assert_memory_equal(a + al, src + al, len);
            }
    /* masking in pieces equals masking at once */
    memcpy(a, src, MAXLEN);
    naive_mask(want, src, MAXLEN, m, 0);
    size_t pos = 0;
    for (size_t step = 1; pos < MAXLEN; step = step * 2 + 1) {
        size_t k = step < MAXLEN - pos ? step : MAXLEN - pos;
        wsc_mask(a + pos, k, m, pos);
        pos += k;
    }
    assert_memory_equal(a, want, MAXLEN);
    free(src);
    free(a);
    free(want);
    free(dst);
}

static void test_close_codes(void **state)
{
    (void)state;
    for (unsigned c = 0; c < 70000; c++) {
        int want = (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) ||
                   (c >= 3000 && c <= 4999);
        assert_int_equal(wsc_close_code_valid(c), want);
    }
    assert_false(wsc_close_code_valid(1004));
    assert_false(wsc_close_code_valid(1005));
    assert_false(wsc_close_code_valid(1006));
    assert_false(wsc_close_code_valid(1015));
}

/* ======================================================================
 * URL
 * ====================================================================== */

static int url(const char *s, struct wsc_url *u, const char **err)
{
    return wsc_parse_url(s, strlen(s), u, err);
}

static void test_url_ok(void **state)
{
    (void)state;
    struct wsc_url u;
    const char *err = "x";

    assert_int_equal(url("ws://example.com", &u, &err), 0);
    assert_int_equal(u.tls, 0);
    assert_string_equal(u.host, "example.com");
    assert_int_equal(u.port, 80);
    assert_int_equal(u.port_explicit, 0);
    assert_int_equal(u.host_is_ip, 0);
    assert_string_equal(u.path, "/");

    assert_int_equal(url("wss://Example.COM/chat?room=1&x=%20#frag", &u, &err), 0);
    assert_int_equal(u.tls, 1);
    assert_string_equal(u.host, "example.com");
    assert_int_equal(u.port, 443);
    assert_string_equal(u.path, "/chat?room=1&x=%20");

    assert_int_equal(url("WSS://h:8443", &u, &err), 0);
    assert_int_equal(u.tls, 1);
    assert_int_equal(u.port, 8443);
    assert_int_equal(u.port_explicit, 1);

    assert_int_equal(url("ws://h?q=1", &u, &err), 0);
    assert_string_equal(u.path, "/?q=1");
    assert_int_equal(url("ws://h#only-fragment", &u, &err), 0);
    assert_string_equal(u.path, "/");
    assert_int_equal(url("ws://h/a/b/", &u, &err), 0);
    assert_string_equal(u.path, "/a/b/");
    assert_int_equal(url("ws://h:/x", &u, &err), 0); /* empty port: default */
    assert_int_equal(u.port, 80);
    assert_int_equal(u.port_explicit, 0);
    assert_int_equal(url("ws://h:1", &u, &err), 0);
    assert_int_equal(u.port, 1);
    assert_int_equal(url("ws://h:65535", &u, &err), 0);
    assert_int_equal(u.port, 65535);
    assert_int_equal(url("ws://h:00080", &u, &err), 0);
    assert_int_equal(u.port, 80);

    assert_int_equal(url("ws://127.0.0.1:9000/s", &u, &err), 0);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.host_is_ip, 1);
    assert_int_equal(u.host_is_ipv6, 0);
    assert_int_equal(u.port, 9000);
    assert_int_equal(url("ws://1.2.3.4.example/", &u, &err), 0);
    assert_int_equal(u.host_is_ip, 0);

    assert_int_equal(url("ws://[::1]:9000/p", &u, &err), 0);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.host_is_ip, 1);
    assert_int_equal(u.host_is_ipv6, 1);
    assert_int_equal(u.port, 9000);
    assert_string_equal(u.path, "/p");
    assert_int_equal(url("wss://[2001:db8::7]", &u, &err), 0);
    assert_string_equal(u.host, "2001:db8::7");
    assert_int_equal(u.port, 443);
    /* IPv6 literals are lowercased too (found by fuzz_request) */
    assert_int_equal(url("ws://[::1F]:8080/", &u, &err), 0);
    assert_string_equal(u.host, "::1f");
    assert_int_equal(url("ws://[2001:DB8::aBc]/", &u, &err), 0);
    assert_string_equal(u.host, "2001:db8::abc");
    assert_int_equal(url("ws://[::ffff:10.0.0.1]?x", &u, &err), 0);
    assert_string_equal(u.host, "::ffff:10.0.0.1");
    assert_string_equal(u.path, "/?x");

    /* len bounds the input: no NUL needed */
    static const char buf[] = "ws://a.b/cdXXXX";
    assert_int_equal(wsc_parse_url(buf, 11, &u, &err), 0);
    assert_string_equal(u.path, "/cd");

    /* longest host */
    char longh[300];
    strcpy(longh, "ws://");
    memset(longh + 5, 'a', 255);
    longh[260] = '\0';
    assert_int_equal(url(longh, &u, &err), 0);
    assert_int_equal(strlen(u.host), 255);
    memset(longh + 5, 'a', 256);
    longh[261] = '\0';
    assert_int_equal(url(longh, &u, &err), WSC_EURL);
    assert_string_equal(err, "host too long");
}

static void test_url_errors(void **state)
{
    (void)state;
    static const struct {
        const char *url, *err;
    } c[] = {
        {"http://h/", "scheme must be ws or wss"},
        {"wss:/h/", "scheme must be ws or wss"},
        {"ws:h", "scheme must be ws or wss"},
        {"", "scheme must be ws or wss"},
        {"ws:/", "scheme must be ws or wss"},
        {" ws://h", "scheme must be ws or wss"},
        {"ws://", "empty host"},
        {"ws:///path", "empty host"},
        {"ws://:80/", "empty host"},
        {"ws://?q", "empty host"},
        {"ws://[]/", "empty host"},
        {"ws://user@h/", "userinfo (user@) is not supported"},
        {"ws://user:pw@h:80/", "userinfo (user@) is not supported"},
        {"ws://h:0/", "bad port"},
        {"ws://h:65536/", "bad port"},
        {"ws://h:99999999999999999999/", "bad port"},
        {"ws://h:8o/", "bad port"},
        {"ws://h:-1/", "bad port"},
        {"ws://h:+80/", "bad port"},
        {"ws://h:80:81/", "bad port"},
        {"ws://[::1]:x/", "bad port"},
        {"ws://[::1/", "unterminated IPv6 literal"},
        {"ws://[::1]x/", "junk after IPv6 literal"},
        {"ws://[zz::1]/", "bad IPv6 literal"},
        {"ws://[1.2.3.4]/", "bad IPv6 literal"},
        {"ws://[fe80::1%25eth0]/", "bad IPv6 literal"},
        {"ws://ho st/", "bad character in host"},
        {"ws://h%41/", "bad character in host"},
        {"ws://h\xc3\xa9/", "bad character in host"},
        {"ws://h/a b", "bad character in path"},
        {"ws://h/a\r\nX: y", "bad character in path"},
        {"ws://h/\x7f", "bad character in path"},
        {"ws://h/\xc3\xa9", "bad character in path"},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        struct wsc_url u;
        const char *err = NULL;
        int rc = url(c[i].url, &u, &err);
        if (rc != WSC_EURL || !err || strcmp(err, c[i].err) != 0)
            fail_msg("%s: rc %d err %s (want %s)", c[i].url, rc, err ? err : "-", c[i].err);
    }
    /* NUL inside the given length */
    struct wsc_url u;
    const char *err;
    assert_int_equal(wsc_parse_url("ws://h/\0x", 9, &u, &err), WSC_EURL);
    assert_int_equal(wsc_parse_url("ws://h\0/x", 9, &u, &err), WSC_EURL);
    /* path too long */
    size_t n = 5 + 1 + 1 + 4096;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memcpy(big, "ws://h/", 7);
    memset(big + 7, 'p', n - 7);
    big[n] = '\0';
    assert_int_equal(wsc_parse_url(big, n, &u, &err), WSC_EURL);
    assert_string_equal(err, "path too long");
    /* the longest path that fits */
    assert_int_equal(wsc_parse_url(big, 6 + 4095, &u, &err), 0);
    assert_int_equal(strlen(u.path), 4095);
    free(big);
}

/* ======================================================================
 * handshake
 * ====================================================================== */

static void test_key_and_accept(void **state)
{
    (void)state;
    char key[25], acc[29];
    /* RFC 6455 1.3 */
    wsc_accept_for_key("dGhlIHNhbXBsZSBub25jZQ==", acc);
    assert_string_equal(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

    static const uint8_t nonce[16] = "the sample nonce";
    wsc_make_key(nonce, key);
    assert_string_equal(key, "dGhlIHNhbXBsZSBub25jZQ==");
    assert_int_equal(strlen(key), 24);
    static const uint8_t ff[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                   0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    wsc_make_key(ff, key);
    assert_string_equal(key, "/////////////////////w==");

    /* keys of any length (short ones use a stack buffer, long ones EVP)
     * agree with base64(SHA1(key + GUID)) computed here */
    char k[400];
    for (size_t len = 0; len < 300; len++) {
        memset(k, 'a' + (int)(len % 26), len);
        k[len] = '\0';
        char cat[400];
        memcpy(cat, k, len);
        memcpy(cat + len, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
        unsigned char md[SHA_DIGEST_LENGTH];
        SHA1((const unsigned char *)cat, len + 36, md);
        char want[29];
        EVP_EncodeBlock((unsigned char *)want, md, SHA_DIGEST_LENGTH);
        wsc_accept_for_key(k, acc);
        assert_string_equal(acc, want);
    }
}

static const char *const no_protocols[1] = {NULL};

static void test_build_request(void **state)
{
    (void)state;
    char out[1024];
    const char *err = NULL;
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    static const char want[] =
        "GET /chat?x=1 HTTP/1.1\r\n"
        "Host: server.example.com\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "\r\n";
    int n = wsc_build_request(out, sizeof out, "/chat?x=1", "server.example.com",
                              key, no_protocols, 0, NULL, 0, &err);
    assert_int_equal(n, (int)strlen(want));
    assert_memory_equal(out, want, (size_t)n);

    static const char *const protos[] = {"chat", "superchat"};
    const struct wsc_header hdrs[] = {
        {"Origin", 6, "http://example.com", 18},
        {"Authorization", 13, "Bearer abc", 10},
        {"X-Empty", 7, "", 0},
    };
    static const char want2[] =
        "GET / HTTP/1.1\r\n"
        "Host: [::1]:9000\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: chat, superchat\r\n"
        "Origin: http://example.com\r\n"
        "Authorization: Bearer abc\r\n"
        "X-Empty: \r\n"
        "\r\n";
    n = wsc_build_request(out, sizeof out, "/", "[::1]:9000", key, protos, 2,
                          hdrs, 3, &err);
    assert_int_equal(n, (int)strlen(want2));
    assert_memory_equal(out, want2, (size_t)n);

    /* every capacity short of the length: ENOSPC, never an overrun */
    int full = n;
    char *tight = malloc((size_t)full);
    assert_non_null(tight);
    for (int cap = 0; cap < full; cap++)
        assert_int_equal(wsc_build_request(tight, (size_t)cap, "/", "[::1]:9000", key,
                                           protos, 2, hdrs, 3, &err),
                         WSC_ENOSPC);
    assert_int_equal(wsc_build_request(tight, (size_t)full, "/", "[::1]:9000", key,
                                       protos, 2, hdrs, 3, &err),
                     full);
    assert_memory_equal(tight, want2, (size_t)full);
    free(tight);

    /* refused inputs */
    static const char *const reserved[] = {"Host", "upgrade", "CONNECTION",
                                           "Sec-WebSocket-Key", "sec-websocket-version"};
    for (size_t i = 0; i < 5; i++) {
        struct wsc_header h = {reserved[i], strlen(reserved[i]), "v", 1};
        err = NULL;
        assert_int_equal(wsc_build_request(out, sizeof out, "/", "h", key, NULL, 0,
                                           &h, 1, &err),
                         WSC_EHTTP);
        assert_string_equal(err, "header is set by the handshake itself");
    }
    struct wsc_header crlf = {"X-A", 3, "v\r\nEvil: 1", 10};
    assert_int_equal(wsc_build_request(out, sizeof out, "/", "h", key, NULL, 0,
                                       &crlf, 1, &err),
                     WSC_EHTTP);
    assert_string_equal(err, "CR, LF or NUL in header");
    struct wsc_header nul = {"X-A", 3, "a\0b", 3};
    assert_int_equal(wsc_build_request(out, sizeof out, "/", "h", key, NULL, 0,
                                       &nul, 1, &err),
                     WSC_EHTTP);
    struct wsc_header lfname = {"X\nA", 3, "v", 1};
    assert_int_equal(wsc_build_request(out, sizeof out, "/", "h", key, NULL, 0,
                                       &lfname, 1, &err),
                     WSC_EHTTP);
    struct wsc_header colon = {"X:A", 3, "v", 1};
    assert_int_equal(wsc_build_request(out, sizeof out, "/", "h", key, NULL, 0,
                                       &colon, 1, &err),
                     WSC_EHTTP);
    assert_string_equal(err, "header name must be an HTTP token");
    struct wsc_header empty = {"", 0, "v", 1};
    assert_int_equal(wsc_build_request(out, sizeof out, "/", "h", key, NULL, 0,
                                       &empty, 1, &err),
                     WSC_EHTTP);
    static const char *const badproto[] = {"chat", "bad proto"};
    assert_int_equal(wsc_build_request(out, sizeof out, "/", "h", key, badproto, 2,
                                       NULL, 0, &err),
                     WSC_EHTTP);
    static const char *const emptyproto[] = {""};
    assert_int_equal(wsc_build_request(out, sizeof out, "/", "h", key, emptyproto, 1,
                                       NULL, 0, &err),
                     WSC_EHTTP);
    assert_int_equal(wsc_build_request(out, sizeof out, "/a b", "h", key, NULL, 0,
                                       NULL, 0, &err),
                     WSC_EHTTP);
    assert_int_equal(wsc_build_request(out, sizeof out, "x", "h", key, NULL, 0,
                                       NULL, 0, &err),
                     WSC_EHTTP);
    assert_int_equal(wsc_build_request(out, sizeof out, "/", "h\r\nX: y", key, NULL,
                                       0, NULL, 0, &err),
                     WSC_EHTTP);
    assert_int_equal(wsc_build_request(out, sizeof out, "/", "h", "a b", NULL, 0,
                                       NULL, 0, &err),
                     WSC_EHTTP);
}

static const char resp_ok[] =
    "HTTP/1.1 101 Switching Protocols\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    "Sec-WebSocket-Protocol: chat\r\n"
    "X-Spaces:   padded value \t \r\n"
    "X-Empty:\r\n"
    "\r\n";

static void test_parse_response(void **state)
{
    (void)state;
    struct wsc_response r;
    const char *err = NULL;
    size_t n = sizeof resp_ok - 1;

    /* with the first frame bytes behind the head */
    char buf[512];
    memcpy(buf, resp_ok, n);
    memcpy(buf + n, "\x81\x02hi", 4);
    int rc = wsc_parse_response(buf, n + 4, &r, &err);
    assert_int_equal(rc, (int)n);
    assert_int_equal(r.header_bytes, n);
    assert_int_equal(r.status, 101);
    assert_int_equal(r.nheaders, 6);
    assert_memory_equal(r.headers[0].name, "Upgrade", 7);
    assert_int_equal(r.headers[0].name_len, 7);
    assert_memory_equal(r.headers[0].value, "websocket", 9);
    assert_int_equal(r.headers[0].value_len, 9);
    const struct wsc_header *h = wsc_find_header(&r, "x-spaces");
    assert_non_null(h);
    assert_int_equal(h->value_len, 12);
    assert_memory_equal(h->value, "padded value", 12);
    h = wsc_find_header(&r, "X-EMPTY");
    assert_non_null(h);
    assert_int_equal(h->value_len, 0);
    assert_null(wsc_find_header(&r, "Missing"));
    assert_null(wsc_find_header(&r, "Upgrad"));
    /* pointers into buf */
    assert_true(r.headers[0].name >= buf && r.headers[0].name < buf + n);

    /* incremental: every prefix wants more, each in its own buffer */
    for (size_t k = 0; k < n; k++) {
        char *pfx = malloc(k ? k : 1);
        assert_non_null(pfx);
        memcpy(pfx, resp_ok, k);
        rc = wsc_parse_response(pfx, k, &r, &err);
        if (rc != WSC_ENEED_MORE)
            fail_msg("prefix %zu: %d %s", k, rc, err ? err : "-");
        free(pfx);
    }

    /* other statuses, minimal forms */
    static const char r401[] = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic\r\n\r\n";
    assert_int_equal(wsc_parse_response(r401, sizeof r401 - 1, &r, &err), (int)sizeof r401 - 1);
    assert_int_equal(r.status, 401);
    static const char r10[] = "HTTP/1.0 200\r\n\r\n";
    assert_int_equal(wsc_parse_response(r10, sizeof r10 - 1, &r, &err), (int)sizeof r10 - 1);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.nheaders, 0);
    static const char rempty[] = "HTTP/1.1 101 \r\n\r\n";
    assert_int_equal(wsc_parse_response(rempty, sizeof rempty - 1, &r, &err),
                     (int)sizeof rempty - 1);
}

static void test_parse_response_errors(void **state)
{
    (void)state;
    struct wsc_response r;
    const char *err;
    static const struct {
        const char *text, *err;
        int rc;
    } c[] = {
        {"HTTP/2 101\r\n\r\n", "bad status line", WSC_EHTTP},
        {"HTTP/1.1 1O1 Switching\r\n\r\n", "bad status line", WSC_EHTTP},
        {"HTTP/1.1  101\r\n\r\n", "bad status line", WSC_EHTTP},
        {"HTTP/1.1 101x\r\n\r\n", "bad status line", WSC_EHTTP},
        {"HTTP/1.1 10\r\n\r\n", "bad status line", WSC_EHTTP},
        {"HTTP/1.1 099 x\r\n\r\n", "bad status line", WSC_EHTTP},
        {"http/1.1 101 x\r\n\r\n", "bad status line", WSC_EHTTP},
        {"SSH-2.0-OpenSSH\r\n\r\n", "bad status line", WSC_EHTTP},
        {"HTTP/1.1 101 ok\rX\r\n\r\n", "bad status line", WSC_EHTTP},
        {"HTTP/1.1 101 ok\r\nUpgrade websocket\r\n\r\n", "bad header line", WSC_EHTTP},
        {"HTTP/1.1 101 ok\r\n: v\r\n\r\n", "bad header line", WSC_EHTTP},
        {"HTTP/1.1 101 ok\r\nBad Name: v\r\n\r\n", "bad header line", WSC_EHTTP},
        {"HTTP/1.1 101 ok\r\nA: b\r\n c\r\n\r\n", "obsolete line folding", WSC_EHTTP},
        {"HTTP/1.1 101 ok\r\nA: b\rc\r\n\r\n", "bare CR in header", WSC_EHTTP},
        {"HTTP/1.1 101 ok\r\nA: b\x01\r\n\r\n", "bad header value", WSC_EHTTP},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        err = NULL;
        int rc = wsc_parse_response(c[i].text, strlen(c[i].text), &r, &err);
        if (rc != c[i].rc || !err || strcmp(err, c[i].err) != 0)
            fail_msg("case %zu: rc %d err %s", i, rc, err ? err : "-");
    }
    /* fail fast on a bad status line, before the head is complete */
    assert_int_equal(wsc_parse_response("HTTP/1.1 1x", 11, &r, &err), WSC_EHTTP);
    assert_int_equal(wsc_parse_response("<html>", 6, &r, &err), WSC_EHTTP);
    assert_int_equal(wsc_parse_response("HTTP/1.1 101", 12, &r, &err), WSC_ENEED_MORE);

    /* too big: no end within WSC_MAX_RESPONSE_BYTES */
    size_t big = WSC_MAX_RESPONSE_BYTES + 100;
    char *b = malloc(big);
    assert_non_null(b);
    static const char head[] = "HTTP/1.1 101 ok\r\nX-Pad: ";
    memcpy(b, head, sizeof head - 1);
    memset(b + sizeof head - 1, 'a', big - (sizeof head - 1));
    assert_int_equal(wsc_parse_response(b, WSC_MAX_RESPONSE_BYTES - 1, &r, &err),
                     WSC_ENEED_MORE);
    assert_int_equal(wsc_parse_response(b, WSC_MAX_RESPONSE_BYTES, &r, &err),
                     WSC_EHTTP_TOO_BIG);
    assert_int_equal(wsc_parse_response(b, big, &r, &err), WSC_EHTTP_TOO_BIG);
    /* exactly WSC_MAX_RESPONSE_BYTES with its end is fine */
    memcpy(b + WSC_MAX_RESPONSE_BYTES - 4, "\r\n\r\n", 4);
    assert_int_equal(wsc_parse_response(b, big, &r, &err), WSC_MAX_RESPONSE_BYTES);
    /* one byte more is not */
    memset(b + WSC_MAX_RESPONSE_BYTES - 4, 'a', 4);
    memcpy(b + WSC_MAX_RESPONSE_BYTES - 3, "\r\n\r\n", 4);
    assert_int_equal(wsc_parse_response(b, big, &r, &err), WSC_EHTTP_TOO_BIG);
    free(b);

    /* too many headers */
    size_t cap = 64 + (WSC_MAX_RESPONSE_HEADERS + 1) * 8;
    char *m = malloc(cap);
    assert_non_null(m);
    size_t n = (size_t)sprintf(m, "HTTP/1.1 101 ok\r\n");
    for (int i = 0; i < WSC_MAX_RESPONSE_HEADERS; i++)
        n += (size_t)sprintf(m + n, "A: b\r\n");
    size_t nmax = n;
    n += (size_t)sprintf(m + n, "\r\n");
    assert_int_equal(wsc_parse_response(m, n, &r, &err), (int)n);
    assert_int_equal(r.nheaders, WSC_MAX_RESPONSE_HEADERS);
    n = nmax + (size_t)sprintf(m + nmax, "A: b\r\n\r\n");
    assert_int_equal(wsc_parse_response(m, n, &r, &err), WSC_EHTTP_TOO_BIG);
    free(m);
}

static int upgrade(const char *text, const char *const *protos, size_t np,
                   const char **proto, size_t *plen, const char **err)
{
    struct wsc_response r;
    const char *perr = NULL;
    int rc = wsc_parse_response(text, strlen(text), &r, &perr);
    if (rc <= 0)
        fail_msg("parse: %d %s", rc, perr ? perr : "-");
    return wsc_check_upgrade(&r, "dGhlIHNhbXBsZSBub25jZQ==", protos, np, proto,
                             plen, err);
}

#define ACC "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
#define S101 "HTTP/1.1 101 Switching Protocols\r\n"

static void test_check_upgrade(void **state)
{
    (void)state;
    static const char *const offered[] = {"superchat", "chat"};
    const char *proto, *err;
    size_t plen;

    assert_int_equal(upgrade(resp_ok, offered, 2, &proto, &plen, &err), 0);
    assert_int_equal(plen, 4);
    assert_memory_equal(proto, "chat", 4);

    /* no protocol chosen although offered: fine */
    assert_int_equal(upgrade(S101 "upgrade: WebSocket\r\nconnection: keep-alive, UPGRADE\r\n"
                             ACC "\r\n",
                             offered, 2, &proto, &plen, &err),
                     0);
    assert_null(proto);
    assert_int_equal(plen, 0);
    /* Connection split over two lines, empty extensions header */
    assert_int_equal(upgrade(S101 "Upgrade: websocket\r\nConnection: keep-alive\r\n"
                             "Connection: Upgrade\r\n" ACC
                             "Sec-WebSocket-Extensions: \r\n\r\n",
                             NULL, 0, &proto, &plen, &err),
                     0);

    static const struct {
        const char *text, *err;
    } c[] = {
        {"HTTP/1.1 200 OK\r\n\r\n", "status is not 101"},
        {S101 "Connection: Upgrade\r\n" ACC "\r\n", "missing Upgrade: websocket"},
        {S101 "Upgrade: h2c\r\nConnection: Upgrade\r\n" ACC "\r\n",
         "missing Upgrade: websocket"},
        {S101 "Upgrade: websocket\r\n" ACC "\r\n", "missing Connection: upgrade"},
        {S101 "Upgrade: websocket\r\nConnection: keep-alive\r\n" ACC "\r\n",
         "missing Connection: upgrade"},
        {S101 "Upgrade: websocket\r\nConnection: upgraded\r\n" ACC "\r\n",
         "missing Connection: upgrade"},
        {S101 "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
         "missing Sec-WebSocket-Accept"},
        {S101 "Upgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzOo+xOo\r\n\r\n",
         "Sec-WebSocket-Accept does not match the key"},
        {S101 "Upgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Accept: S3pPLMBiTxaQ9kYGzOo+xOo=\r\n\r\n",
         "Sec-WebSocket-Accept does not match the key"},
        {S101 "Upgrade: websocket\r\nConnection: Upgrade\r\n" ACC ACC "\r\n",
         "repeated Sec-WebSocket-Accept"},
        {S101 "Upgrade: websocket\r\nConnection: Upgrade\r\n" ACC
              "Sec-WebSocket-Protocol: mqtt\r\n\r\n",
         "server chose a subprotocol we did not offer"},
        {S101 "Upgrade: websocket\r\nConnection: Upgrade\r\n" ACC
              "Sec-WebSocket-Protocol: Chat\r\n\r\n",
         "server chose a subprotocol we did not offer"},
        {S101 "Upgrade: websocket\r\nConnection: Upgrade\r\n" ACC
              "Sec-WebSocket-Protocol: chat, superchat\r\n\r\n",
         "server chose a subprotocol we did not offer"},
        {S101 "Upgrade: websocket\r\nConnection: Upgrade\r\n" ACC
              "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: chat\r\n\r\n",
         "repeated Sec-WebSocket-Protocol"},
        {S101 "Upgrade: websocket\r\nConnection: Upgrade\r\n" ACC
              "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
         "server chose an extension we did not offer"},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        err = NULL;
        int rc = upgrade(c[i].text, offered, 2, &proto, &plen, &err);
        if (rc != WSC_EHANDSHAKE || !err || strcmp(err, c[i].err) != 0)
            fail_msg("case %zu: rc %d err %s (want %s)", i, rc, err ? err : "-", c[i].err);
    }
    /* a protocol when none was offered */
    err = NULL;
    assert_int_equal(upgrade(S101 "Upgrade: websocket\r\nConnection: Upgrade\r\n" ACC
                             "Sec-WebSocket-Protocol: chat\r\n\r\n",
                             NULL, 0, &proto, &plen, &err),
                     WSC_EHANDSHAKE);
    assert_string_equal(err, "server chose a subprotocol we did not offer");
}

/* ---- the resumable response reader ---------------------------------- */

/* Feeds text[0..n) to a fresh reader in pieces ending at the cut points
 * cuts[0..ncuts) (increasing, < n), then the rest; each piece arrives in a
 * new heap buffer of exactly the bytes so far (so ASan sees any read past
 * them). Every call before the last must want more. Returns the last
 * call's result. */
static const size_t no_cuts[1] = {0};

static int read_in_pieces(const char *text, size_t n, const size_t *cuts, size_t ncuts,
                          struct wsc_response_reader *rd, struct wsc_response *r,
                          const char **err, char **keep)
{
    wsc_response_reader_init(rd);
    int rc = WSC_ENEED_MORE;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t upto = i < ncuts ? cuts[i] : n;
        char *b = malloc(upto ? upto : 1);
        assert_non_null(b);
        memcpy(b, text, upto);
        rc = wsc_read_response(rd, b, upto, r, err);
        if (i < ncuts && rc != WSC_ENEED_MORE)
            fail_msg("piece %zu (up to %zu of %zu): %d %s", i, upto, n, rc,
                     *err ? *err : "-");
        if (i == ncuts) {
            *keep = b; /* r points into it */
        } else {
            free(b);
        }
    }
    return rc;
}

static void test_read_response_split_anywhere(void **state)
{
    (void)state;
    struct wsc_response_reader rd;
    struct wsc_response r;
    const char *err = NULL;
    char *keep = NULL;
    char text[512];
    size_t hn = sizeof resp_ok - 1;
    memcpy(text, resp_ok, hn);
    memcpy(text + hn, "\x81\x02hi", 4); /* the first frame right behind */
    size_t n = hn + 4;

    /* all at once */
    int rc = read_in_pieces(text, n, no_cuts, 0, &rd, &r, &err, &keep);
    assert_int_equal(rc, (int)hn);
    assert_int_equal(r.status, 101);
    assert_int_equal(r.nheaders, 6);
    assert_int_equal(rd.interim, 0);
    free(keep);

    /* one byte at a time */
    size_t cuts[512];
    for (size_t k = 1; k < n; k++)
        cuts[k - 1] = k;
    rc = read_in_pieces(text, n, cuts, hn - 1, &rd, &r, &err, &keep);
    assert_int_equal(rc, (int)hn);
    assert_null(err);
    assert_int_equal(r.nheaders, 6);
    assert_memory_equal(r.headers[5].name, "X-Empty", 7);
    free(keep);

    /* two pieces, cut anywhere; three pieces, both cuts anywhere in the
     * last 40 bytes (the terminator split every way) */
    for (size_t a = 1; a < hn; a++) {
        rc = read_in_pieces(text, n, &a, 1, &rd, &r, &err, &keep);
        if (rc != (int)hn || r.status != 101 || r.nheaders != 6)
            fail_msg("cut at %zu: %d", a, rc);
        free(keep);
    }
    for (size_t a = hn - 40; a < hn; a++) {
        for (size_t b = a + 1; b < hn; b++) {
            size_t two[2] = {a, b};
            rc = read_in_pieces(text, n, two, 2, &rd, &r, &err, &keep);
            if (rc != (int)hn || r.nheaders != 6)
                fail_msg("cuts at %zu, %zu: %d", a, b, rc);
            free(keep);
        }
    }
}

/* The terminator split across reads in each way, and a search that resumes
 * where it stopped: bytes already searched are not searched again. */
static void test_read_response_resumes(void **state)
{
    (void)state;
    static const char head[] = "HTTP/1.1 200 OK\r\nA: b\r\n\r\n";
    size_t n = sizeof head - 1;
    struct wsc_response_reader rd;
    struct wsc_response r;
    const char *err = NULL;
    for (size_t split = n - 4; split < n; split++) {
        char *keep;
        int rc = read_in_pieces(head, n, &split, 1, &rd, &r, &err, &keep);
        if (rc != (int)n || r.status != 200 || r.nheaders != 1)
            fail_msg("terminator split at %zu: %d", split, rc);
        free(keep);
    }

    /* after a call, no terminator starts before rd.scanned, which stops
     * 3 bytes short of the end (a terminator may start there) */
    char buf[256];
    size_t k = (size_t)sprintf(buf, "HTTP/1.1 101 ok\r\nX-A: a\r\nX-B: bbbbbbbbbb");
    wsc_response_reader_init(&rd);
    assert_int_equal(wsc_read_response(&rd, buf, k, &r, &err), WSC_ENEED_MORE);
    assert_int_equal(rd.scanned, k - 3);
    /* proof that the searched bytes are not searched again: a terminator
     * planted in them now goes unseen (a reader that started over at byte 0
     * would stop there) */
    memcpy(buf + 17, "\r\n\r\n", 4);
    k += (size_t)sprintf(buf + k, "\r\nX-C: c");
    assert_int_equal(wsc_read_response(&rd, buf, k, &r, &err), WSC_ENEED_MORE);
    assert_int_equal(rd.scanned, k - 3);
    /* nothing new: nothing more to search */
    assert_int_equal(wsc_read_response(&rd, buf, k, &r, &err), WSC_ENEED_MORE);
    assert_int_equal(rd.scanned, k - 3);
    /* a status line gone bad is still caught as soon as it arrives */
    wsc_response_reader_init(&rd);
    assert_int_equal(wsc_read_response(&rd, "HTTP/1.1 10", 11, &r, &err), WSC_ENEED_MORE);
    err = NULL;
    assert_int_equal(wsc_read_response(&rd, "HTTP/1.1 10x", 12, &r, &err), WSC_EHTTP);
    assert_string_equal(err, "bad status line");

    /* the size limit is the same as wsc_parse_response's */
    size_t big = WSC_MAX_RESPONSE_BYTES + 10;
    char *b = malloc(big);
    assert_non_null(b);
    static const char pad[] = "HTTP/1.1 101 ok\r\nX-Pad: ";
    memcpy(b, pad, sizeof pad - 1);
    memset(b + sizeof pad - 1, 'a', big - (sizeof pad - 1));
    wsc_response_reader_init(&rd);
    for (size_t len = 1000; len < WSC_MAX_RESPONSE_BYTES; len += 1000)
        assert_int_equal(wsc_read_response(&rd, b, len, &r, &err), WSC_ENEED_MORE);
    err = NULL;
    assert_int_equal(wsc_read_response(&rd, b, WSC_MAX_RESPONSE_BYTES, &r, &err),
                     WSC_EHTTP_TOO_BIG);
    assert_non_null(err);
    assert_non_null(strstr(err, "response headers too large"));
    free(b);
}

/* 120 small headers: the reason is the count, not the size */
static void test_read_response_too_many_headers(void **state)
{
    (void)state;
    char buf[4096];
    size_t n = (size_t)sprintf(buf, "HTTP/1.1 101 Switching Protocols\r\n");
    for (int i = 0; i < 120; i++)
        n += (size_t)sprintf(buf + n, "X-H%d: v\r\n", i);
    n += (size_t)sprintf(buf + n, "\r\n");
    assert_true(n < WSC_MAX_RESPONSE_BYTES);
    struct wsc_response_reader rd;
    struct wsc_response r;
    const char *err = NULL;
    wsc_response_reader_init(&rd);
    assert_int_equal(wsc_read_response(&rd, buf, n, &r, &err), WSC_EHTTP_TOO_BIG);
    assert_string_equal(err, "too many headers (more than 100)");
    err = NULL;
    assert_int_equal(wsc_parse_response(buf, n, &r, &err), WSC_EHTTP_TOO_BIG);
    assert_string_equal(err, "too many headers (more than 100)");
}

/* RFC 9110 15.2: interim 1xx responses before the final one are skipped */
static void test_read_response_interim(void **state)
{
    (void)state;
    struct wsc_response_reader rd;
    struct wsc_response r;
    const char *err = NULL;
    char text[1024];
    size_t n = (size_t)sprintf(text, "HTTP/1.1 100 Continue\r\n\r\n"
                                     "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                                     "HTTP/1.1 102 Processing\r\n\r\n"
                                     "%s", resp_ok);
    size_t fin = n;
    memcpy(text + n, "\x81\x02hi", 4);
    n += 4;

    char *keep;
    assert_int_equal(read_in_pieces(text, n, no_cuts, 0, &rd, &r, &err, &keep), (int)fin);
    assert_int_equal(rd.interim, 3);
    assert_int_equal(r.status, 101);
    assert_int_equal(r.header_bytes, sizeof resp_ok - 1);
    assert_int_equal(r.nheaders, 6);
    assert_memory_equal(r.headers[0].name, "Upgrade", 7);
    const char *proto;
    size_t plen;
    static const char *const offered[] = {"chat"};
    assert_int_equal(wsc_check_upgrade(&r, "dGhlIHNhbXBsZSBub25jZQ==", offered, 1, &proto,
                                       &plen, &err),
                     0);
    free(keep);
    /* split anywhere */
    for (size_t a = 1; a < fin; a++) {
        assert_int_equal(read_in_pieces(text, n, &a, 1, &rd, &r, &err, &keep), (int)fin);
        assert_int_equal(r.status, 101);
        assert_int_equal(rd.interim, 3);
        free(keep);
    }
    /* an interim response alone: more to come */
    wsc_response_reader_init(&rd);
    assert_int_equal(wsc_read_response(&rd, text, 25, &r, &err), WSC_ENEED_MORE);
    assert_int_equal(rd.interim, 1);
    /* then a final response other than 101 */
    n = (size_t)sprintf(text, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 401 No\r\nA: b\r\n\r\n");
    wsc_response_reader_init(&rd);
    assert_int_equal(wsc_read_response(&rd, text, n, &r, &err), (int)n);
    assert_int_equal(r.status, 401);
    assert_int_equal(r.nheaders, 1);
    /* the next head is held to the same rules */
    n = (size_t)sprintf(text, "HTTP/1.1 100 Continue\r\n\r\nHTTP/2 101\r\n");
    err = NULL;
    wsc_response_reader_init(&rd);
    assert_int_equal(wsc_read_response(&rd, text, n, &r, &err), WSC_EHTTP);
    assert_string_equal(err, "bad status line");
    n = (size_t)sprintf(text, "HTTP/1.1 100 Continue\r\nBad Name: x\r\n\r\n");
    err = NULL;
    wsc_response_reader_init(&rd);
    assert_int_equal(wsc_read_response(&rd, text, n, &r, &err), WSC_EHTTP);
    assert_string_equal(err, "bad header line");
    /* the size limit counts every head: endless 100 Continues */
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    size_t cn = sizeof cont - 1, big = WSC_MAX_RESPONSE_BYTES + cn;
    char *b = malloc(big);
    assert_non_null(b);
    for (size_t o = 0; o < big; o += cn)
        memcpy(b + o, cont, big - o < cn ? big - o : cn);
    wsc_response_reader_init(&rd);
    err = NULL;
    assert_int_equal(wsc_read_response(&rd, b, big, &r, &err), WSC_EHTTP_TOO_BIG);
    assert_non_null(strstr(err, "response headers too large"));
    free(b);
    /* wsc_parse_response reads one head: the interim one */
    assert_int_equal(wsc_parse_response(cont, cn, &r, &err), (int)cn);
    assert_int_equal(r.status, 100);
}

/* RFC 6455 4.1: an HTTP/1.1 upgrade; HTTP/1.0 101 is refused by name */
static void test_check_upgrade_version(void **state)
{
    (void)state;
    const char *proto, *err = NULL;
    size_t plen;
    assert_int_equal(upgrade("HTTP/1.0 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\n" ACC "\r\n",
                             NULL, 0, &proto, &plen, &err),
                     WSC_EHANDSHAKE);
    assert_string_equal(err, "HTTP/1.0 101 response: the upgrade needs HTTP/1.1 or later");
    /* later minor versions are fine */
    assert_int_equal(upgrade("HTTP/1.2 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\n" ACC "\r\n",
                             NULL, 0, &proto, &plen, &err),
                     0);
    struct wsc_response r;
    assert_int_equal(wsc_parse_response("HTTP/1.0 401 x\r\n\r\n", 18, &r, &err), 18);
    assert_int_equal(r.version_minor, 0);
    assert_int_equal(r.status, 401);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parser_small_text),
        cmocka_unit_test(test_parser_lengths),
        cmocka_unit_test(test_parser_header_forms),
        cmocka_unit_test(test_parser_zero_length),
        cmocka_unit_test(test_parser_fragments_and_control),
        cmocka_unit_test(test_parser_many_messages),
        cmocka_unit_test(test_parser_ping_pong),
        cmocka_unit_test(test_parser_close),
        cmocka_unit_test(test_parser_violations),
        cmocka_unit_test(test_parser_utf8_fragments),
        cmocka_unit_test(test_parser_max_message_size),
        cmocka_unit_test(test_utf8_named),
        cmocka_unit_test(test_utf8_exhaustive),
        cmocka_unit_test(test_utf8_edges),
        cmocka_unit_test(test_utf8_fast_path),
        cmocka_unit_test(test_frame_header),
        cmocka_unit_test(test_mask),
        cmocka_unit_test(test_close_codes),
        cmocka_unit_test(test_url_ok),
        cmocka_unit_test(test_url_errors),
        cmocka_unit_test(test_parser_skip),
        cmocka_unit_test(test_key_and_accept),
        cmocka_unit_test(test_build_request),
        cmocka_unit_test(test_parse_response),
        cmocka_unit_test(test_parse_response_errors),
        cmocka_unit_test(test_check_upgrade),
        cmocka_unit_test(test_read_response_split_anywhere),
        cmocka_unit_test(test_read_response_resumes),
        cmocka_unit_test(test_read_response_too_many_headers),
        cmocka_unit_test(test_read_response_interim),
        cmocka_unit_test(test_check_upgrade_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
