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

static void test_close_codes_default(void **state)
{
    (void)state;
    struct wsp_backoff b;
    wsp_backoff_default(&b);
    assert_true(wsp_backoff_retries(&b, WSP_FC_REMOTE_CLOSE));
    static const unsigned retried[] = {1001, 1005, 1011, 1012, 1013, 1014};
    static const unsigned final[] = {1000, 1002, 1003, 1007, 1008, 1009, 1010, 3000, 4000, 4999};
    for (size_t i = 0; i < sizeof retried / sizeof retried[0]; i++) {
        assert_true(wsp_backoff_retries_close(&b, retried[i]));
    }
    for (size_t i = 0; i < sizeof final / sizeof final[0]; i++) {
        assert_false(wsp_backoff_retries_close(&b, final[i]));
    }
    /* retries off: nothing is retried, whatever the codes say */
    b.enabled = 0;
    assert_false(wsp_backoff_retries_close(&b, 1001));
}

static void test_close_codes_stay_connected(void **state)
{
    (void)state;
    struct wsp_backoff b;
    wsp_backoff_default(&b);
    wsp_backoff_stay_connected_retry_on(&b);
    assert_int_equal(b.retry_on, WSP_FC_DEFAULT);
    static const unsigned retried[] = {1000, 1001, 1005, 1008, 1011, 1012, 3000, 4000, 4999};
    static const unsigned ours[] = {1002, 1003, 1007, 1009};
    for (size_t i = 0; i < sizeof retried / sizeof retried[0]; i++) {
        assert_true(wsp_backoff_retries_close(&b, retried[i]));
    }
    for (size_t i = 0; i < sizeof ours / sizeof ours[0]; i++) {
        assert_false(wsp_backoff_retries_close(&b, ours[i]));
    }
    /* the other classes are connect/2's default */
    assert_true(wsp_backoff_retries(&b, WSP_FC_NETWORK));
    assert_false(wsp_backoff_retries(&b, WSP_FC_TLS));
}

static void test_close_codes_modes(void **state)
{
    (void)state;
    struct wsp_backoff b;
    wsp_backoff_default(&b);
    static const uint16_t two[] = {1000, 4000};
    assert_int_equal(wsp_backoff_set_close_retry(&b, WSP_CLOSE_RETRY_ONLY, two, 2), 0);
    assert_true(wsp_backoff_retries_close(&b, 1000));
    assert_true(wsp_backoff_retries_close(&b, 4000));
    assert_false(wsp_backoff_retries_close(&b, 1001));
    assert_int_equal(wsp_backoff_set_close_retry(&b, WSP_CLOSE_RETRY_EXCEPT, two, 2), 0);
    assert_false(wsp_backoff_retries_close(&b, 1000));
    assert_false(wsp_backoff_retries_close(&b, 4000));
    assert_true(wsp_backoff_retries_close(&b, 1001));
    assert_true(wsp_backoff_retries_close(&b, 1005));
    assert_int_equal(wsp_backoff_set_close_retry(&b, WSP_CLOSE_RETRY_ALL, NULL, 0), 0);
    assert_true(wsp_backoff_retries_close(&b, 1000));
    assert_true(wsp_backoff_retries_close(&b, 1002));
    assert_true(wsp_backoff_retries(&b, WSP_FC_REMOTE_CLOSE));
    /* an empty "only" list and "none" retry no close, and say so */
    assert_int_equal(wsp_backoff_set_close_retry(&b, WSP_CLOSE_RETRY_ONLY, NULL, 0), 0);
    assert_false(wsp_backoff_retries(&b, WSP_FC_REMOTE_CLOSE));
    assert_false(wsp_backoff_retries_close(&b, 1001));
    assert_int_equal(wsp_backoff_set_close_retry(&b, WSP_CLOSE_RETRY_NONE, two, 2), 0);
    assert_false(wsp_backoff_retries(&b, WSP_FC_REMOTE_CLOSE));
    assert_false(wsp_backoff_retries_close(&b, 1000));
    /* an empty "except" list is every close */
    assert_int_equal(wsp_backoff_set_close_retry(&b, WSP_CLOSE_RETRY_EXCEPT, NULL, 0), 0);
    assert_true(wsp_backoff_retries_close(&b, 1000));
    /* the other classes are left alone */
    assert_true(wsp_backoff_retries(&b, WSP_FC_NETWORK));
    /* too many codes: refused, nothing changed */
    uint16_t many[WSP_MAX_CLOSE_CODES + 1] = {0};
    for (size_t i = 0; i <= WSP_MAX_CLOSE_CODES; i++) {
        many[i] = (uint16_t)(3000 + i);
    }
    assert_int_equal(wsp_backoff_set_close_retry(&b, WSP_CLOSE_RETRY_ONLY, many,
                                                 WSP_MAX_CLOSE_CODES + 1), -1);
    assert_true(wsp_backoff_retries_close(&b, 1000));
    assert_int_equal(wsp_backoff_set_close_retry(&b, WSP_CLOSE_RETRY_ONLY, many,
                                                 WSP_MAX_CLOSE_CODES), 0);
    assert_true(wsp_backoff_retries_close(&b, 3000 + WSP_MAX_CLOSE_CODES - 1));
    assert_false(wsp_backoff_retries_close(&b, 1000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_policy),
        cmocka_unit_test(test_jitter_bounds),
        cmocka_unit_test(test_constant_and_limit),
        cmocka_unit_test(test_classes),
        cmocka_unit_test(test_close_codes_default),
        cmocka_unit_test(test_close_codes_stay_connected),
        cmocka_unit_test(test_close_codes_modes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
