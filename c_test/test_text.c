/* cmocka tests of the terminal escaping of server text (c_src/wsp_text.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "wsp_text.h"

static const char *esc(const char *in, size_t n, size_t cap)
{
    static char out[256];
    memset(out, 'Z', sizeof out);
    size_t k = wsp_text_escape((const uint8_t *)in, n, out, cap);
    assert_int_equal(k, strlen(out));
    return out;
}

#define ESC(lit) esc(lit, sizeof lit - 1, 256)

static void test_printable_kept(void **state)
{
    (void)state;
    assert_string_equal(ESC("going away"), "going away");
    assert_string_equal(ESC("w\xc3\xb6rld \xe2\x82\xac \xf0\x9f\x98\x80"),
                        "w\xc3\xb6rld \xe2\x82\xac \xf0\x9f\x98\x80");
    assert_string_equal(ESC(""), "");
}

static void test_controls_escaped(void **state)
{
    (void)state;
    assert_string_equal(ESC("\x1b[2Jx"), "\\x1b[2Jx");
    assert_string_equal(ESC("a\nb\rc\td\x7f"), "a\\x0ab\\x0dc\\x09d\\x7f");
    assert_string_equal(esc("a\0b", 3, 256), "a\\x00b");
    /* C1: U+009B (CSI) and U+0085 (NEL), UTF-8 encoded */
    assert_string_equal(ESC("\xc2\x9b" "1m\xc2\x85"), "\\xc2\\x9b1m\\xc2\\x85");
    /* U+00A0 is the first printable character after C1 */
    assert_string_equal(ESC("\xc2\xa0"), "\xc2\xa0");
    assert_string_equal(ESC("a\\b"), "a\\\\b");
}

static void test_invalid_utf8_escaped(void **state)
{
    (void)state;
    assert_string_equal(ESC("\xff\xfe"), "\\xff\\xfe");
    /* overlong '/', a surrogate, above U+10FFFF, truncated sequences */
    assert_string_equal(ESC("\xc0\xaf"), "\\xc0\\xaf");
    assert_string_equal(ESC("\xed\xa0\x80"), "\\xed\\xa0\\x80");
    assert_string_equal(ESC("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");
    assert_string_equal(ESC("ok\xe2\x82"), "ok\\xe2\\x82");
    /* a lead byte followed by ASCII: only the lead byte is escaped */
    assert_string_equal(ESC("\xe2" "ab"), "\\xe2ab");
}

static void test_truncation_whole(void **state)
{
    (void)state;
    /* room for "ab" + NUL only */
    assert_string_equal(esc("abc", 3, 3), "ab");
    /* an escape does not fit half */
    assert_string_equal(esc("a\x1b", 2, 5), "a");
    assert_string_equal(esc("a\x1b", 2, 6), "a\\x1b");
    /* nor a multi-byte character */
    assert_string_equal(esc("a\xe2\x82\xac", 4, 4), "a");
    assert_string_equal(esc("a\xe2\x82\xac", 4, 5), "a\xe2\x82\xac");
    assert_string_equal(esc("\\", 1, 2), "");
    assert_string_equal(esc("abc", 3, 1), "");
    char out[1] = {'Z'};
    assert_int_equal(wsp_text_escape((const uint8_t *)"abc", 3, out, 0), 0);
    assert_int_equal(out[0], 'Z');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_printable_kept),
        cmocka_unit_test(test_controls_escaped),
        cmocka_unit_test(test_invalid_utf8_escaped),
        cmocka_unit_test(test_truncation_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
