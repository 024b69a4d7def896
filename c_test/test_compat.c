/* cmocka tests of wsp_compat's random bytes (c_src/wsp_compat.c): the
 * source this build uses (wsp_random_bytes) and the last resort every
 * build has (/dev/urandom). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "wsp_compat.h"

/* 0 if every byte is the same (random bytes never are, at these lengths) */
static int varied(const unsigned char *p, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        if (p[i] != p[0]) {
            return 1;
        }
    }
    return 0;
}

static void check_source(int (*fill)(void *, size_t))
{
    /* 1000 bytes: more than one getentropy call (256 at most) */
    static unsigned char a[1000], b[1000];
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    assert_int_equal(fill(a, sizeof a), 0);
    assert_int_equal(fill(b, sizeof b), 0);
    assert_true(varied(a, sizeof a));
    assert_true(varied(b, sizeof b));
    assert_memory_not_equal(a, b, sizeof a);
    /* the last bytes are filled too (a short read is continued) */
    assert_true(varied(a + 900, 100));
    /* a length of 0 writes nothing */
    unsigned char z[4] = {7, 7, 7, 7};
    assert_int_equal(fill(z, 0), 0);
    assert_int_equal(z[0] + z[1] + z[2] + z[3], 28);
}

static void test_random_bytes(void **state)
{
    (void)state;
    check_source(wsp_random_bytes);
}

static void test_random_urandom(void **state)
{
    (void)state;
    check_source(wsp_random_urandom);
}

static void test_random_name(void **state)
{
    (void)state;
    const char *n = wsp_random_name();
#if WSP_HAVE_GETRANDOM
    assert_string_equal(n, "getrandom");
#else
    /* the portable build never uses getrandom (make portable-check) */
    assert_true(!strcmp(n, "arc4random_buf") || !strcmp(n, "getentropy") ||
                !strcmp(n, "/dev/urandom"));
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_bytes),
        cmocka_unit_test(test_random_urandom),
        cmocka_unit_test(test_random_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
