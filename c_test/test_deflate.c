/*
 * Unit tests of wsp_deflate (permessage-deflate, RFC 7692) and of the
 * codec's RSV1 handling: scripted bytes, among them the examples of RFC 7692
 * section 7.2.3, no network.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "ws_codec.h"
#include "wsp_deflate.h"

static struct wsp_pmd_config cfg(void)
{
    struct wsp_pmd_config c;
    wsp_pmd_config_default(&c);
    c.enabled = 1;
    return c;
}

static struct wsp_pmd_agreed agreed(int sw, int cw, int snct, int cnct)
{
    struct wsp_pmd_agreed a = {.server_max_window_bits = sw, .client_max_window_bits = cw,
                               .server_no_context_takeover = snct,
                               .client_no_context_takeover = cnct};
    return a;
}

/* ---- the offer ---------------------------------------------------------- */

static void test_offer(void **state)
{
    (void)state;
    char buf[256];
    struct wsp_pmd_config c = cfg();
    int n = wsp_pmd_offer(&c, buf, sizeof buf);
    assert_int_equal(n, (int)strlen(buf));
    assert_string_equal(buf, "permessage-deflate; client_max_window_bits");
    c.client_max_window_bits = 10;
    c.server_max_window_bits = 9;
    c.client_no_context_takeover = 1;
    c.server_no_context_takeover = 1;
    wsp_pmd_offer(&c, buf, sizeof buf);
    assert_string_equal(buf, "permessage-deflate; client_max_window_bits=10; "
                             "server_max_window_bits=9; client_no_context_takeover; "
                             "server_no_context_takeover");
    assert_int_equal(wsp_pmd_offer(&c, buf, 20), -1);
}

static void test_config_parse(void **state)
{
    (void)state;
    struct wsp_pmd_config c;
    char err[128];
    assert_int_equal(wsp_pmd_config_parse("", &c, err, sizeof err), 0);
    assert_int_equal(c.enabled, 1);
    assert_int_equal(c.level, WSP_PMD_DEFAULT_LEVEL);
    assert_int_equal(wsp_pmd_config_parse("server_no_context_takeover,client_max_window_bits=10,"
                                          "server_max_window_bits=8,level=1,mem_level=3,"
                                          "threshold=0,client_no_context_takeover",
                                          &c, err, sizeof err),
                     0);
    assert_int_equal(c.server_no_context_takeover, 1);
    assert_int_equal(c.client_no_context_takeover, 1);
    assert_int_equal(c.client_max_window_bits, 10);
    assert_int_equal(c.server_max_window_bits, 8);
    assert_int_equal(c.level, 1);
    assert_int_equal(c.mem_level, 3);
    assert_int_equal(c.threshold, 0);
    static const struct {
        const char *spec, *err;
    } bad[] = {
        {"foo", "unknown compression parameter 'foo'"},
        {"client_max_window_bits=8", "client_max_window_bits needs an integer from 9 to 15"},
        {"client_max_window_bits", "client_max_window_bits needs an integer from 9 to 15"},
        {"level=x", "level needs an integer from 0 to 9"},
        {"threshold=-1", "threshold needs an integer from 0 to 4294967295"},
        {"server_no_context_takeover=1", "server_no_context_takeover takes no value"},
        {"level=99999999999999999999", "level needs an integer from 0 to 9"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        assert_int_equal(wsp_pmd_config_parse(bad[k].spec, &c, err, sizeof err), -1);
        assert_string_equal(err, bad[k].err);
    }
}

/* ---- the answer ------------------------------------------------------------ */

static int answer(const struct wsp_pmd_config *c, const char *v, struct wsp_pmd_agreed *a,
                  const char **err)
{
    return wsp_pmd_parse_answer(c, v, strlen(v), a, err);
}

static void test_answer_ok(void **state)
{
    (void)state;
    struct wsp_pmd_config c = cfg();
    struct wsp_pmd_agreed a;
    const char *err;
    assert_int_equal(answer(&c, "permessage-deflate", &a, &err), 0);
    assert_int_equal(a.server_max_window_bits, 15);
    assert_int_equal(a.client_max_window_bits, 15);
    assert_int_equal(a.server_no_context_takeover, 0);
    assert_int_equal(a.client_no_context_takeover, 0);

    assert_int_equal(answer(&c, " Permessage-Deflate ;server_no_context_takeover ; "
                                "client_no_context_takeover;server_max_window_bits=9; "
                                "client_max_window_bits=\"12\" ",
                            &a, &err),
                     0);
    assert_int_equal(a.server_max_window_bits, 9);
    assert_int_equal(a.client_max_window_bits, 12);
    assert_int_equal(a.server_no_context_takeover, 1);
    assert_int_equal(a.client_no_context_takeover, 1);

    /* our own client limit is kept when the server allows more */
    c.client_max_window_bits = 10;
    assert_int_equal(answer(&c, "permessage-deflate; client_max_window_bits=13", &a, &err), 0);
    assert_int_equal(a.client_max_window_bits, 10);
    assert_int_equal(answer(&c, "permessage-deflate", &a, &err), 0);
    assert_int_equal(a.client_max_window_bits, 10);
    /* 8 may be answered; then we send uncompressed (zlib cannot) */
    assert_int_equal(answer(&c, "permessage-deflate; client_max_window_bits=8", &a, &err), 0);
    assert_int_equal(a.client_max_window_bits, 8);
    c.server_max_window_bits = 12;
    assert_int_equal(answer(&c, "permessage-deflate; server_max_window_bits=12", &a, &err), 0);
    assert_int_equal(a.server_max_window_bits, 12);
}

static void bad(const struct wsp_pmd_config *c, const char *v, const char *want)
{
    struct wsp_pmd_agreed a;
    const char *err = NULL;
    if (answer(c, v, &a, &err) != -1 || !err || !strstr(err, want)) {
        fail_msg("answer \"%s\": want an error naming \"%s\", got \"%s\"", v, want,
                 err ? err : "(none)");
    }
}

static void test_answer_bad(void **state)
{
    (void)state;
    struct wsp_pmd_config c = cfg();
    bad(&c, "x-webkit-deflate-frame", "extension we did not offer");
    bad(&c, "", "no extension named");
    bad(&c, "permessage-deflate, permessage-deflate", "more than one extension");
    bad(&c, "permessage-deflate; foo", "unknown parameter");
    bad(&c, "permessage-deflate; ", "empty parameter name");
    bad(&c, "permessage-deflate x", "malformed parameter list");
    bad(&c, "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "server_no_context_takeover given twice");
    bad(&c, "permessage-deflate; client_no_context_takeover=1",
        "client_no_context_takeover takes no value");
    bad(&c, "permessage-deflate; server_no_context_takeover=\"\"",
        "server_no_context_takeover takes no value");
    bad(&c, "permessage-deflate; server_max_window_bits", "server_max_window_bits needs a value");
    bad(&c, "permessage-deflate; client_max_window_bits", "client_max_window_bits needs a value");
    bad(&c, "permessage-deflate; server_max_window_bits=7", "server_max_window_bits is not a number");
    bad(&c, "permessage-deflate; server_max_window_bits=16", "server_max_window_bits is not a number");
    bad(&c, "permessage-deflate; client_max_window_bits=010", "client_max_window_bits is not a number");
    bad(&c, "permessage-deflate; client_max_window_bits=1a", "client_max_window_bits is not a number");
    bad(&c, "permessage-deflate; client_max_window_bits=\"10", "client_max_window_bits is not a number");
    bad(&c, "permessage-deflate; client_max_window_bits=123456789",
        "client_max_window_bits is not a number");
    bad(&c, "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
        "server_max_window_bits given twice");
    c.server_max_window_bits = 10;
    bad(&c, "permessage-deflate; server_max_window_bits=11", "server_max_window_bits larger than offered");
    bad(&c, "permessage-deflate", "server_max_window_bits was offered but not answered");
    c.server_max_window_bits = 0;
    c.server_no_context_takeover = 1;
    bad(&c, "permessage-deflate", "server_no_context_takeover was offered but not answered");
    c.enabled = 0;
    bad(&c, "permessage-deflate", "extension we did not offer");
}

/* ---- inflate: RFC 7692 7.2.3 ----------------------------------------------- */

struct rx {
    struct wsp_pmd p;
    struct wsp_buf out;
    unsigned code;
    const char *err;
};

static void rx_init(struct rx *r, struct wsp_pmd_agreed a, uint64_t max)
{
    struct wsp_pmd_config c = cfg();
    memset(r, 0, sizeof *r);
    wsp_pmd_init(&r->p, &c, &a, max);
}

static void rx_free(struct rx *r)
{
    wsp_pmd_free(&r->p);
    wsp_buf_free(&r->out);
}

/* Inflates one message given as the payloads of its frames (split into
 * pieces of `step` bytes, 0 = whole); returns wsp_pmd_inflate's result. */
static int rx_msg(struct rx *r, int text, const uint8_t *m, size_t n, size_t step)
{
    r->out.off = r->out.len = 0;
    wsp_pmd_inflate_begin(&r->p, text);
    if (!step)
        step = n ? n : 1;
    size_t i = 0;
    do {
        size_t k = n - i < step ? n - i : step;
        int last = i + k == n;
        if (wsp_pmd_inflate(&r->p, m + i, k, last, &r->out, &r->code, &r->err) < 0)
            return -1;
        i += k;
    } while (i < n);
    return 0;
}

static void assert_out(const struct rx *r, const char *s)
{
    assert_int_equal(wsp_buf_pending(&r->out), strlen(s));
    assert_memory_equal(r->out.data + r->out.off, s, strlen(s));
}

static const uint8_t HELLO[] = {0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};

static void test_inflate_rfc_examples(void **state)
{
    (void)state;
    /* 7.2.3.3 stored block, 7.2.3.4 BFINAL set, 7.2.3.5 two blocks,
     * 7.2.3.6 (empty message) */
    static const uint8_t stored[] = {0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00};
    static const uint8_t bfinal[] = {0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00};
    static const uint8_t two[] = {0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff,
                                  0xca, 0xc9, 0xc9, 0x07, 0x00};
    static const uint8_t empty[] = {0x00};
    struct {
        const uint8_t *b;
        size_t n;
        const char *want;
    } cases[] = {
        {HELLO, sizeof HELLO, "Hello"}, {stored, sizeof stored, "Hello"},
        {bfinal, sizeof bfinal, "Hello"}, {two, sizeof two, "Hello"},
        {empty, sizeof empty, ""},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        for (size_t step = 0; step <= cases[k].n; step++) { /* every split (7.2.3.1 fragments) */
            struct rx r;
            rx_init(&r, agreed(15, 15, 0, 0), 0);
            assert_int_equal(rx_msg(&r, 1, cases[k].b, cases[k].n, step), 0);
            assert_out(&r, cases[k].want);
            assert_int_equal(r.p.in_plain, strlen(cases[k].want));
            assert_int_equal(r.p.in_wire, cases[k].n);
            rx_free(&r);
        }
    }
}

/* 7.2.3.2: the second "Hello" refers to the first (context takeover) */
static void test_inflate_takeover(void **state)
{
    (void)state;
    static const uint8_t second[] = {0xf2, 0x00, 0x11, 0x00, 0x00};
    struct rx r;
    rx_init(&r, agreed(15, 15, 0, 0), 0);
    assert_int_equal(rx_msg(&r, 1, HELLO, sizeof HELLO, 0), 0);
    assert_true(wsp_pmd_has_inflater(&r.p));
    assert_int_equal(rx_msg(&r, 1, second, sizeof second, 2), 0);
    assert_out(&r, "Hello");
    rx_free(&r);

    /* without takeover the stream is freed after each message, and the
     * second message, which needs the first's window, is refused */
    rx_init(&r, agreed(15, 15, 1, 0), 0);
    assert_false(wsp_pmd_has_inflater(&r.p));
    assert_int_equal(rx_msg(&r, 1, HELLO, sizeof HELLO, 0), 0);
    assert_false(wsp_pmd_has_inflater(&r.p));
    assert_int_equal(rx_msg(&r, 1, HELLO, sizeof HELLO, 3), 0);
    assert_out(&r, "Hello");
    assert_int_equal(rx_msg(&r, 1, second, sizeof second, 0), -1);
    assert_int_equal(r.code, 1007);
    rx_free(&r);
}

static void test_inflate_truncated_and_corrupt(void **state)
{
    (void)state;
    struct rx r;
    rx_init(&r, agreed(15, 15, 0, 0), 0);
    assert_int_equal(rx_msg(&r, 0, HELLO, 3, 0), -1);
    assert_int_equal(r.code, 1007);
    assert_non_null(strstr(r.err, "deflate data"));
    rx_free(&r);

    static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0xff};
    rx_init(&r, agreed(15, 15, 0, 0), 0);
    assert_int_equal(rx_msg(&r, 0, garbage, sizeof garbage, 0), -1);
    assert_int_equal(r.code, 1007);
    assert_string_equal(r.err, "invalid deflate data in a compressed message");
    rx_free(&r);
}

/* Deflates with zlib directly (raw, sync flush, tail removed). */
static size_t zcompress(const uint8_t *in, size_t n, uint8_t **out, int wbits)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, -wbits, 9, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&z, n) + 64;
    *out = malloc(cap);
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)n;
    z.next_out = *out;
    z.avail_out = (uInt)cap;
    assert_int_equal(deflate(&z, Z_SYNC_FLUSH), Z_OK);
    size_t got = cap - z.avail_out;
    deflateEnd(&z);
    assert_true(got >= 4);
    return got - 4;
}

static void test_inflate_bomb(void **state)
{
    (void)state;
    size_t big = 64u * 1024 * 1024; /* 64 MiB of zeroes, ~64 KiB compressed */
    uint8_t *zeros = calloc(1, big), *z;
    size_t zn = zcompress(zeros, big, &z, 15);
    free(zeros);
    assert_true(zn < 100 * 1024);
    struct rx r;
    uint64_t max = 1024 * 1024;
    rx_init(&r, agreed(15, 15, 0, 0), max);
    assert_int_equal(rx_msg(&r, 0, z, zn, 1000), -1);
    assert_int_equal(r.code, 1009);
    assert_string_equal(r.err, "message exceeds max_message_size once inflated");
    /* the work and the memory stopped one byte past the limit */
    assert_int_equal(r.p.in_plain, max + 1);
    assert_true(r.out.cap <= 2 * max + 64 * 1024);
    rx_free(&r);
    /* exactly at the limit is fine */
    uint8_t *one = calloc(1, max);
    free(z);
    zn = zcompress(one, max, &z, 15);
    rx_init(&r, agreed(15, 15, 0, 0), max);
    assert_int_equal(rx_msg(&r, 0, z, zn, 0), 0);
    assert_int_equal(wsp_buf_pending(&r.out), max);
    rx_free(&r);
    free(one);
    free(z);
}

static void test_inflate_utf8(void **state)
{
    (void)state;
    /* "é€" split inside characters across fragments is fine; a bad byte or
     * a message ending mid-character is 1007 */
    const char *ok = "h\xc3\xa9\xe2\x82\xac!";
    uint8_t *z;
    size_t zn = zcompress((const uint8_t *)ok, strlen(ok), &z, 15);
    struct rx r;
    for (size_t step = 1; step <= zn; step++) {
        rx_init(&r, agreed(15, 15, 0, 0), 0);
        assert_int_equal(rx_msg(&r, 1, z, zn, step), 0);
        assert_out(&r, ok);
        rx_free(&r);
    }
    free(z);
    const char *bads[] = {"ok\xc0\xaf", "ok\xe2\x82"};
    for (size_t k = 0; k < 2; k++) {
        zn = zcompress((const uint8_t *)bads[k], strlen(bads[k]), &z, 15);
        rx_init(&r, agreed(15, 15, 0, 0), 0);
        assert_int_equal(rx_msg(&r, 1, z, zn, 0), -1);
        assert_int_equal(r.code, 1007);
        assert_string_equal(r.err, "invalid UTF-8 in text message");
        rx_free(&r);
        /* binary: not checked */
        rx_init(&r, agreed(15, 15, 0, 0), 0);
        assert_int_equal(rx_msg(&r, 0, z, zn, 0), 0);
        rx_free(&r);
        free(z);
    }
}

/* A window smaller than the sender's: distances too far back are refused. */
static void test_inflate_window(void **state)
{
    (void)state;
    size_t n = 20000;
    uint8_t *m = malloc(n);
    for (size_t i = 0; i < n; i++)
        m[i] = (uint8_t)((i * 7919u) >> 3); /* repeats at a long distance */
    memcpy(m + 15000, m + 100, 4000);
    uint8_t *z;
    size_t zn = zcompress(m, n, &z, 15);
    struct rx r;
    rx_init(&r, agreed(9, 15, 0, 0), 0);
    assert_int_equal(rx_msg(&r, 0, z, zn, 0), -1);
    assert_int_equal(r.code, 1007);
    rx_free(&r);
    rx_init(&r, agreed(15, 15, 0, 0), 0);
    assert_int_equal(rx_msg(&r, 0, z, zn, 0), 0);
    assert_int_equal(wsp_buf_pending(&r.out), n);
    assert_memory_equal(r.out.data, m, n);
    rx_free(&r);
    free(z);
    free(m);
}

/* ---- deflate ---------------------------------------------------------------- */

static void test_deflate_hello(void **state)
{
    (void)state;
    struct wsp_pmd_config c = cfg();
    struct wsp_pmd_agreed a = agreed(15, 15, 0, 0);
    struct wsp_pmd p;
    wsp_pmd_init(&p, &c, &a, 0);
    assert_false(wsp_pmd_has_deflater(&p)); /* lazily */
    struct wsp_buf out = {0};
    assert_int_equal(wsp_pmd_deflate(&p, (const uint8_t *)"Hello", 5, &out), 0);
    assert_int_equal(wsp_buf_pending(&out), sizeof HELLO);
    assert_memory_equal(out.data, HELLO, sizeof HELLO); /* RFC 7692 7.2.3.1 */
    assert_true(wsp_pmd_has_deflater(&p));
    /* 7.2.3.2: the second one refers back */
    out.off = out.len = 0;
    assert_int_equal(wsp_pmd_deflate(&p, (const uint8_t *)"Hello", 5, &out), 0);
    static const uint8_t second[] = {0xf2, 0x00, 0x11, 0x00, 0x00};
    assert_int_equal(wsp_buf_pending(&out), sizeof second);
    assert_memory_equal(out.data, second, sizeof second);
    assert_int_equal(p.out_plain, 10);
    assert_int_equal(p.out_wire, sizeof HELLO + sizeof second);
    /* empty message: 7.2.3.6 */
    out.off = out.len = 0;
    assert_int_equal(wsp_pmd_deflate(&p, (const uint8_t *)"", 0, &out), 0);
    assert_int_equal(wsp_buf_pending(&out), 1);
    assert_int_equal(out.data[0], 0x00);
    wsp_pmd_free(&p);
    wsp_pmd_free(&p);
    wsp_buf_free(&out);
}

static void test_deflate_threshold(void **state)
{
    (void)state;
    struct wsp_pmd_config c = cfg();
    c.threshold = 100;
    struct wsp_pmd_agreed a = agreed(15, 15, 0, 0);
    struct wsp_pmd p;
    wsp_pmd_init(&p, &c, &a, 0);
    assert_false(wsp_pmd_should_compress(&p, 99));
    assert_true(wsp_pmd_should_compress(&p, 100));
    a.client_max_window_bits = 8; /* zlib has no 256-byte window */
    wsp_pmd_init(&p, &c, &a, 0);
    assert_false(wsp_pmd_should_compress(&p, 100000));
}

/* Round trips with every window and both takeover settings: our deflater
 * and our inflater agree, messages of 16 B .. 256 KiB, split anywhere. */
static void test_roundtrip(void **state)
{
    (void)state;
    size_t sizes[] = {16, 1000, 70000, 256 * 1024};
    size_t maxn = 256 * 1024;
    uint8_t *m = malloc(maxn + 1); /* round 1 starts one byte in */
    for (size_t i = 0; i < maxn + 1; i++)
        m[i] = (uint8_t)("{\"px\":1234.5,\"qty\":17}"[i % 22] + (i / 4096) % 3);
    for (int wb = 9; wb <= 15; wb++) {
        for (int nct = 0; nct <= 1; nct++) {
            struct wsp_pmd_config c = cfg();
            struct wsp_pmd_agreed a = agreed(wb, wb, nct, nct);
            struct wsp_pmd tx;
            wsp_pmd_init(&tx, &c, &a, 0);
            struct rx r;
            rx_init(&r, a, 0);
            struct wsp_buf z = {0};
            for (int round = 0; round < 2; round++) {
                for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
                    z.off = z.len = 0;
                    assert_int_equal(wsp_pmd_deflate(&tx, m + round, sizes[k], &z), 0);
                    assert_int_equal(wsp_pmd_has_deflater(&tx), !nct);
                    if (sizes[k] >= 1000)
                        assert_true(wsp_buf_pending(&z) < sizes[k] / 3);
                    assert_int_equal(rx_msg(&r, 0, z.data + z.off, wsp_buf_pending(&z), 4093), 0);
                    assert_int_equal(wsp_buf_pending(&r.out), sizes[k]);
                    assert_memory_equal(r.out.data + r.out.off, m + round, sizes[k]);
                    assert_int_equal(wsp_pmd_has_inflater(&r.p), !nct);
                }
            }
            wsp_buf_free(&z);
            wsp_pmd_free(&tx);
            rx_free(&r);
        }
    }
    free(m);
}

/* ---- the codec with RSV1 ----------------------------------------------------- */

static int parse_all(struct wsc_parser *p, const uint8_t *b, size_t n, struct wsc_event *evs,
                     int max)
{
    size_t off = 0;
    int k = 0;
    while (off < n && k < max) {
        size_t used;
        int r = wsc_parser_next(p, b + off, n - off, &used, &evs[k]);
        off += used;
        if (r < 0 && r != WSC_ENEED_MORE)
            return r;
        if (r == 1)
            k++;
        else
            break;
    }
    return k;
}

static void test_codec_rsv1(void **state)
{
    (void)state;
    /* RFC 7692 7.2.3.1: one frame, then the same as two fragments */
    static const uint8_t one[] = {0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};
    static const uint8_t frag[] = {0x41, 0x03, 0xf2, 0x48, 0xcd, 0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00};
    struct wsc_parser p;
    struct wsc_event ev[4];
    wsc_parser_init(&p, 0);
    assert_int_equal(parse_all(&p, one, sizeof one, ev, 4), WSC_EPROTO);
    assert_int_equal(p.close_code, 1002);
    assert_string_equal(p.errstr, "reserved bits set");

    wsc_parser_init(&p, 0);
    p.allow_rsv1 = 1;
    assert_int_equal(parse_all(&p, one, sizeof one, ev, 4), 1);
    assert_true(ev[0].compressed && ev[0].message_start && ev[0].message_end);
    assert_int_equal(ev[0].len, 7); /* not UTF-8 checked: it is deflate data */

    wsc_parser_init(&p, 0);
    p.allow_rsv1 = 1;
    assert_int_equal(parse_all(&p, frag, sizeof frag, ev, 4), 2);
    assert_true(ev[0].compressed && ev[1].compressed && ev[1].message_end);

    /* an uncompressed message after it: not flagged, UTF-8 checked */
    static const uint8_t plain[] = {0x81, 0x02, 0xc0, 0xaf};
    wsc_parser_init(&p, 0);
    p.allow_rsv1 = 1;
    assert_int_equal(parse_all(&p, one, sizeof one, ev, 4), 1);
    assert_int_equal(parse_all(&p, plain, sizeof plain, ev, 4), WSC_EPROTO);
    assert_int_equal(p.close_code, 1007);

    /* RSV1 on a control frame or a continuation: 1002; RSV2/RSV3 still 1002 */
    static const uint8_t ping[] = {0xc9, 0x00};
    static const uint8_t cont[] = {0x41, 0x01, 0x00, 0xc0, 0x01, 0x00};
    static const uint8_t rsv2[] = {0xa1, 0x00};
    struct {
        const uint8_t *b;
        size_t n;
        const char *why;
    } bad[] = {
        {ping, sizeof ping, "RSV1 set on a control frame"},
        {cont, sizeof cont, "RSV1 set on a continuation frame"},
        {rsv2, sizeof rsv2, "reserved bits set"},
    };
    for (size_t k = 0; k < 3; k++) {
        wsc_parser_init(&p, 0);
        p.allow_rsv1 = 1;
        assert_int_equal(parse_all(&p, bad[k].b, bad[k].n, ev, 4), WSC_EPROTO);
        assert_int_equal(p.close_code, 1002);
        assert_string_equal(p.errstr, bad[k].why);
    }
}

/* max_message_size on the wire: a compressed message may be a little larger
 * than the limit (incompressible data in stored blocks), not much. */
static void test_codec_compressed_wire_limit(void **state)
{
    (void)state;
    uint8_t hdr[10] = {0xc2, 127, 0, 0, 0, 0, 0, 0, 0, 0};
    struct wsc_parser p;
    struct wsc_event ev;
    size_t used;
    uint64_t max = 1 << 20;
    uint64_t lens[] = {max + 100, max + (max >> 8) + 64, max + (max >> 8) + 65};
    int want[] = {WSC_ENEED_MORE, WSC_ENEED_MORE, WSC_EPROTO};
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < 8; i++)
            hdr[2 + i] = (uint8_t)(lens[k] >> (8 * (7 - i)));
        wsc_parser_init(&p, max);
        p.allow_rsv1 = 1;
        assert_int_equal(wsc_parser_next(&p, hdr, 10, &used, &ev), want[k]);
        /* uncompressed: the limit itself */
        hdr[0] = 0x82;
        wsc_parser_init(&p, max);
        p.allow_rsv1 = 1;
        assert_int_equal(wsc_parser_next(&p, hdr, 10, &used, &ev), WSC_EPROTO);
        assert_int_equal(p.close_code, 1009);
        hdr[0] = 0xc2;
    }
}

/* A compressed binary message is never handed to splice: its bytes must go
 * through the inflater. */
static void test_codec_no_splice_when_compressed(void **state)
{
    (void)state;
    uint8_t hdr[4] = {0xc2, 126, 0x10, 0x00}; /* 4096 bytes, RSV1, binary */
    struct wsc_parser p;
    struct wsc_event ev;
    size_t used;
    wsc_parser_init(&p, 0);
    p.allow_rsv1 = 1;
    assert_int_equal(wsc_parser_next(&p, hdr, 4, &used, &ev), WSC_ENEED_MORE);
    assert_int_equal(wsc_parser_frame_left(&p), 4096);
    assert_int_equal(wsc_parser_binary_tail(&p), 0);
    assert_int_equal(wsc_parser_skip(&p, 1), -1);
    hdr[0] = 0x82; /* the same uncompressed may be */
    wsc_parser_init(&p, 0);
    p.allow_rsv1 = 1;
    assert_int_equal(wsc_parser_next(&p, hdr, 4, &used, &ev), WSC_ENEED_MORE);
    assert_int_equal(wsc_parser_binary_tail(&p), 4096);
}

/* The upgrade check passes the extension answer on only when offered. */
static void test_check_upgrade_ext(void **state)
{
    (void)state;
    char accept[29];
    wsc_accept_for_key("dGhlIHNhbXBsZSBub25jZQ==", accept);
    char resp[512];
    snprintf(resp, sizeof resp,
             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
             "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n",
             accept);
    struct wsc_response r;
    const char *err, *proto, *ext;
    size_t plen, elen;
    assert_true(wsc_parse_response(resp, strlen(resp), &r, &err) > 0);
    assert_int_equal(wsc_check_upgrade(&r, "dGhlIHNhbXBsZSBub25jZQ==", NULL, 0, &proto, &plen, &err),
                     WSC_EHANDSHAKE);
    assert_string_equal(err, "server chose an extension we did not offer");
    assert_int_equal(wsc_check_upgrade_ext(&r, "dGhlIHNhbXBsZSBub25jZQ==", NULL, 0, &proto, &plen,
                                           1, &ext, &elen, &err),
                     0);
    assert_int_equal(elen, strlen("permessage-deflate; server_no_context_takeover"));
    assert_memory_equal(ext, "permessage-deflate; server_no_context_takeover", elen);
    char resp2[600];
    snprintf(resp2, sizeof resp2,
             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
             "Sec-WebSocket-Extensions: permessage-deflate\r\n"
             "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
             accept);
    assert_true(wsc_parse_response(resp2, strlen(resp2), &r, &err) > 0);
    assert_int_equal(wsc_check_upgrade_ext(&r, "dGhlIHNhbXBsZSBub25jZQ==", NULL, 0, &proto, &plen,
                                           1, &ext, &elen, &err),
                     WSC_EHANDSHAKE);
    assert_non_null(strstr(err, "repeated Sec-WebSocket-Extensions"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_offer),
        cmocka_unit_test(test_config_parse),
        cmocka_unit_test(test_answer_ok),
        cmocka_unit_test(test_answer_bad),
        cmocka_unit_test(test_inflate_rfc_examples),
        cmocka_unit_test(test_inflate_takeover),
        cmocka_unit_test(test_inflate_truncated_and_corrupt),
        cmocka_unit_test(test_inflate_bomb),
        cmocka_unit_test(test_inflate_utf8),
        cmocka_unit_test(test_inflate_window),
        cmocka_unit_test(test_deflate_hello),
        cmocka_unit_test(test_deflate_threshold),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_codec_rsv1),
        cmocka_unit_test(test_codec_no_splice_when_compressed),
        cmocka_unit_test(test_codec_compressed_wire_limit),
        cmocka_unit_test(test_check_upgrade_ext),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
