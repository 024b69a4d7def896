/* cmocka tests of the CLI's stdin line splitting (c_src/wsp_lines.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "wsp_lines.h"

/* Every line or refusal taken, as text: "line|line|!long 3" ... */
static char got[4096];

static void take(struct wsp_lines *l, int at_eof)
{
    const uint8_t *p;
    size_t n;
    enum wsp_lines_result r;
    while ((r = wsp_lines_next(l, at_eof, &p, &n)) != WSP_LINES_NONE) {
        size_t k = strlen(got);
        if (r == WSP_LINES_LINE) {
            snprintf(got + k, sizeof got - k, "[%.*s]", (int)n, (const char *)p);
        } else {
            snprintf(got + k, sizeof got - k, "!%s %llu", r == WSP_LINES_TOO_LONG ? "long" : "utf8",
                     (unsigned long long)l->line_no);
        }
    }
}

/* in fed in pieces of `step` bytes (0: whole), then the end of input */
static const char *run(const char *in, size_t len, size_t step, uint64_t max, int binary)
{
    struct wsp_lines l;
    wsp_lines_init(&l, max, binary, 4096);
    got[0] = 0;
    if (step == 0) {
        step = len ? len : 1;
    }
    for (size_t i = 0; i < len; i += step) {
        size_t n = len - i < step ? len - i : step;
        assert_int_equal(wsp_lines_feed(&l, in + i, n), 0);
        take(&l, 0);
        /* bounded: nothing left over is longer than the limit */
        assert_true(wsp_lines_pending(&l) <= max);
    }
    take(&l, 1);
    take(&l, 1); /* nothing more */
    assert_int_equal(wsp_lines_pending(&l), 0);
    wsp_lines_free(&l);
    return got;
}

#define RUN(lit, step, max, bin) run(lit, sizeof lit - 1, step, max, bin)

static void test_split_anywhere(void **state)
{
    (void)state;
    static const char in[] = "hello\nw\xc3\xb6rld\n\nlast";
    for (size_t step = 0; step <= sizeof in; step++) {
        assert_string_equal(RUN(in, step, 100, 0), "[hello][w\xc3\xb6rld][][last]");
    }
    /* a character split between two reads is fine */
    assert_string_equal(RUN("\xe2\x82\xac\n", 1, 100, 0), "[\xe2\x82\xac]");
}

static void test_eof(void **state)
{
    (void)state;
    assert_string_equal(RUN("", 0, 100, 0), "");
    assert_string_equal(RUN("a\n", 0, 100, 0), "[a]");
    assert_string_equal(RUN("a", 0, 100, 0), "[a]");
    assert_string_equal(RUN("\n", 0, 100, 0), "[]");
    /* a partial line waits for its newline until the end of input */
    struct wsp_lines l;
    wsp_lines_init(&l, 100, 0, 4096);
    got[0] = 0;
    assert_int_equal(wsp_lines_feed(&l, "a\nbc", 4), 0);
    take(&l, 0);
    assert_string_equal(got, "[a]");
    assert_int_equal(wsp_lines_pending(&l), 2);
    take(&l, 1);
    assert_string_equal(got, "[a][bc]");
    wsp_lines_free(&l);
}

static void test_crlf_kept(void **state)
{
    (void)state;
    /* as the CLI does: only '\n' ends a line, a '\r' before it is sent */
    assert_string_equal(RUN("a\r\nb\r\n", 0, 100, 0), "[a\r][b\r]");
    assert_string_equal(RUN("a\rb\n", 1, 100, 0), "[a\rb]");
    assert_string_equal(RUN("a\r", 0, 100, 1), "[a\r]");
}

static void test_too_long(void **state)
{
    (void)state;
    /* exactly the limit is taken, one more refused; nothing after it */
    assert_string_equal(RUN("abcd\nabcde\nok\n", 0, 4, 0), "[abcd]!long 2");
    assert_string_equal(RUN("abcd\nabcde\nok\n", 1, 4, 0), "[abcd]!long 2");
    assert_string_equal(RUN("abcde", 0, 4, 1), "!long 1");
    assert_string_equal(RUN("", 0, 0, 0), "");
    assert_string_equal(RUN("\nx", 0, 0, 0), "[]!long 2");
}

static void test_too_long_not_buffered(void **state)
{
    (void)state;
    /* refused once limit + 1 bytes are in, before its newline ever comes */
    struct wsp_lines l;
    wsp_lines_init(&l, 8, 1, 4096);
    got[0] = 0;
    assert_int_equal(wsp_lines_feed(&l, "ok\n12345678", 11), 0);
    take(&l, 0);
    assert_string_equal(got, "[ok]");
    assert_int_equal(wsp_lines_pending(&l), 8);
    assert_int_equal(wsp_lines_feed(&l, "9", 1), 0);
    take(&l, 0);
    assert_string_equal(got, "[ok]!long 2");
    assert_int_equal(wsp_lines_pending(&l), 0);
    /* what comes after a refusal is not taken */
    assert_int_equal(wsp_lines_feed(&l, "more\n", 5), 0);
    assert_int_equal(wsp_lines_pending(&l), 0);
    take(&l, 1);
    assert_string_equal(got, "[ok]!long 2");
    wsp_lines_free(&l);
}

static void test_bad_utf8(void **state)
{
    (void)state;
    assert_string_equal(RUN("ok\n\xff\nno\n", 0, 100, 0), "[ok]!utf8 2");
    /* a truncated character at the end of a line, or of the input */
    assert_string_equal(RUN("\xe2\x82\nx\n", 1, 100, 0), "!utf8 1");
    assert_string_equal(RUN("a\n\xe2\x82", 0, 100, 0), "[a]!utf8 2");
    /* a surrogate, an overlong '/' */
    assert_string_equal(RUN("\xed\xa0\x80", 0, 100, 0), "!utf8 1");
    assert_string_equal(RUN("\xc0\xaf\n", 0, 100, 0), "!utf8 1");
    /* binary mode takes any bytes */
    assert_string_equal(RUN("\xff\x01\n", 0, 100, 1), "[\xff\x01]");
    /* the length is checked first */
    assert_string_equal(RUN("\xff\xff\xff\n", 0, 2, 0), "!long 1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_anywhere),
        cmocka_unit_test(test_eof),
        cmocka_unit_test(test_crlf_kept),
        cmocka_unit_test(test_too_long),
        cmocka_unit_test(test_too_long_not_buffered),
        cmocka_unit_test(test_bad_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
