/* cmocka tests of the reconnection policy (c_src/wsp_backoff.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "wsp_backoff.h"

static void test_default_policy(void **state)
{
    (void)state;
    struct wsp_backoff b;
    wsp_backoff_default(&b);
    /* rnd 0.5 = no jitter */
    assert_int_equal(wsp_backoff_delay(&b, 1, 0.5), 1000);
    assert_int_equal(wsp_backoff_delay(&b, 2, 0.5), 2000);
    assert_int_equal(wsp_backoff_delay(&b, 3, 0.5), 4000);
    assert_int_equal(wsp_backoff_delay(&b, 5, 0.5), 16000);
    assert_int_equal(wsp_backoff_delay(&b, 6, 0.5), 30000);  /* capped */
    assert_int_equal(wsp_backoff_delay(&b, 1000000, 0.5), 30000);
    assert_int_equal(wsp_backoff_delay(&b, UINT64_MAX, 0.5), 30000);
    assert_int_equal(wsp_backoff_delay(&b, 0, 0.5), -1);
}

static void test_jitter_bounds(void **state)
{
    (void)state;
    struct wsp_backoff b;
    wsp_backoff_default(&b);
    assert_int_equal(wsp_backoff_delay(&b, 1, 0.0), 900);
    assert_int_equal(wsp_backoff_delay(&b, 1, 0.999999), 1100);
    for (int i = 0; i < 1000; i++) {
        int64_t d = wsp_backoff_delay(&b, 3, i / 1000.0);
        assert_true(d >= 3600 && d <= 4400);
    }
}

static void test_constant_and_limit(void **state)
{
    (void)state;
    struct wsp_backoff b = {.enabled = 1, .max_retries = 3, .delay_ms = 250,
                            .max_delay_ms = 250, .factor = 1.0, .jitter = 0,
                            .retry_on = WSP_FC_DEFAULT};
    assert_int_equal(wsp_backoff_delay(&b, 1, 0.3), 250);
    assert_int_equal(wsp_backoff_delay(&b, 3, 0.3), 250);
    assert_int_equal(wsp_backoff_delay(&b, 4, 0.3), -1);
    b.max_retries = 0;
    assert_int_equal(wsp_backoff_delay(&b, 1, 0.3), -1);
    b.max_retries = -1;
    b.enabled = 0;
    assert_int_equal(wsp_backoff_delay(&b, 1, 0.3), -1);
}

static void test_classes(void **state)
{
    (void)state;
    struct wsp_backoff b;
    wsp_backoff_default(&b);
    assert_true(wsp_backoff_retries(&b, WSP_FC_NETWORK));
    assert_true(wsp_backoff_retries(&b, wsp_backoff_http_class(503)));
    assert_true(wsp_backoff_retries(&b, wsp_backoff_http_class(429)));
    assert_false(wsp_backoff_retries(&b, wsp_backoff_http_class(401)));
    assert_false(wsp_backoff_retries(&b, wsp_backoff_http_class(404)));
    assert_false(wsp_backoff_retries(&b, wsp_backoff_http_class(200)));
    assert_false(wsp_backoff_retries(&b, WSP_FC_TLS));
    b.retry_on |= WSP_FC_HTTP_4XX;
    assert_true(wsp_backoff_retries(&b, wsp_backoff_http_class(401)));
    b.enabled = 0;
    assert_false(wsp_backoff_retries(&b, WSP_FC_NETWORK));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_policy),
        cmocka_unit_test(test_jitter_bounds),
        cmocka_unit_test(test_constant_and_limit),
        cmocka_unit_test(test_classes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
