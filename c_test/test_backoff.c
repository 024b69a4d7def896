/* cmocka tests of the reconnection policy (c_src/wsp_backoff.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "wsp_backoff.h"

/* The default's delays before jitter: full jitter draws from [0, d], so
 * rnd just below 1 gives d. */
static void test_default_policy(void **state)
{
    (void)state;
    struct wsp_backoff b;
    wsp_backoff_default(&b);
    assert_int_equal(b.jitter_mode, WSP_JITTER_FULL);
    const double top = 0.9999999;
    assert_int_equal(wsp_backoff_delay(&b, 1, top), 1000);
    assert_int_equal(wsp_backoff_delay(&b, 2, top), 2000);
    assert_int_equal(wsp_backoff_delay(&b, 3, top), 4000);
    assert_int_equal(wsp_backoff_delay(&b, 5, top), 16000);
    assert_int_equal(wsp_backoff_delay(&b, 6, top), 30000);  /* capped */
    assert_int_equal(wsp_backoff_delay(&b, 1000000, top), 30000);
    assert_int_equal(wsp_backoff_delay(&b, UINT64_MAX, top), 30000);
    assert_int_equal(wsp_backoff_delay(&b, 0, top), -1);
    /* the same exponential in the middle and at the bottom of the range */
    assert_int_equal(wsp_backoff_delay(&b, 1, 0.5), 500);
    assert_int_equal(wsp_backoff_delay(&b, 3, 0.5), 2000);
    assert_int_equal(wsp_backoff_delay(&b, 6, 0.5), 15000);
    assert_int_equal(wsp_backoff_delay(&b, 1, 0.0), 0);
    assert_int_equal(wsp_backoff_delay(&b, 6, 0.0), 0);
}

/* A fraction (jitter => 0.1) keeps its meaning: +-10% around d. */
static void test_jitter_bounds(void **state)
{
    (void)state;
    struct wsp_backoff b;
    wsp_backoff_default(&b);
    b.jitter_mode = WSP_JITTER_SPREAD;
    b.jitter = 0.1;
    assert_int_equal(wsp_backoff_delay(&b, 1, 0.5), 1000);
    assert_int_equal(wsp_backoff_delay(&b, 1, 0.0), 900);
    assert_int_equal(wsp_backoff_delay(&b, 1, 0.999999), 1100);
    for (int i = 0; i < 1000; i++) {
        int64_t d = wsp_backoff_delay(&b, 3, i / 1000.0);
        assert_true(d >= 3600 && d <= 4400);
    }
    /* jitter 0: exactly d, whatever rnd */
    b.jitter = 0;
    assert_int_equal(wsp_backoff_delay(&b, 2, 0.0), 2000);
    assert_int_equal(wsp_backoff_delay(&b, 2, 0.999999), 2000);
}

/* full: [0, d]; equal: [d/2, d]; both monotonic in rnd, both capped. */
static void test_jitter_modes(void **state)
{
    (void)state;
    struct wsp_backoff b;
    wsp_backoff_default(&b);
    b.jitter_mode = WSP_JITTER_EQUAL;
    assert_int_equal(wsp_backoff_delay(&b, 1, 0.0), 500);
    assert_int_equal(wsp_backoff_delay(&b, 1, 0.5), 750);
    assert_int_equal(wsp_backoff_delay(&b, 1, 0.9999999), 1000);
    assert_int_equal(wsp_backoff_delay(&b, 9, 0.0), 15000);
    assert_int_equal(wsp_backoff_delay(&b, 9, 0.9999999), 30000);
    for (int mode = WSP_JITTER_FULL; mode <= WSP_JITTER_EQUAL; mode++) {
        b.jitter_mode = (uint8_t)mode;
        int64_t last = -1;
        for (int i = 0; i < 1000; i++) {
            int64_t d = wsp_backoff_delay(&b, 4, i / 1000.0);
            assert_true(d >= (mode == WSP_JITTER_FULL ? 0 : 4000) && d <= 8000);
            assert_true(d >= last);
            last = d;
        }
    }
}

/* The point of the default: 10,000 connections that lost their server at
 * the same moment draw their first waits from [0, 1000 ms]. Counted in
 * 100 ms slots with an even spread of rnd (no randomness in the test): the
 * old default (+-10%) put all of them in the two slots around 1 s; full
 * jitter puts a tenth in each of the ten slots. */
static void test_default_spreads_a_fleet(void **state)
{
    (void)state;
    struct wsp_backoff b;
    wsp_backoff_default(&b);
    unsigned slots[11] = {0};
    for (int i = 0; i < 10000; i++) {
        int64_t d = wsp_backoff_delay(&b, 1, (i + 0.5) / 10000.0);
        assert_true(d >= 0 && d <= 1000);
        slots[d / 100]++;
    }
    for (int s = 0; s < 10; s++) {
        assert_true(slots[s] >= 990 && slots[s] <= 1010);
    }
    struct wsp_backoff old = b;
    old.jitter_mode = WSP_JITTER_SPREAD;
    old.jitter = 0.1;
    unsigned oslots[12] = {0};
    for (int i = 0; i < 10000; i++) {
        oslots[wsp_backoff_delay(&old, 1, (i + 0.5) / 10000.0) / 100]++;
    }
    assert_int_equal(oslots[9] + oslots[10] + oslots[11], 10000);
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
        cmocka_unit_test(test_jitter_modes),
        cmocka_unit_test(test_default_spreads_a_fleet),
        cmocka_unit_test(test_constant_and_limit),
        cmocka_unit_test(test_classes),
        cmocka_unit_test(test_close_codes_default),
        cmocka_unit_test(test_close_codes_stay_connected),
        cmocka_unit_test(test_close_codes_modes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
