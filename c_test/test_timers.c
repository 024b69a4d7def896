/* cmocka tests of the loop's timers (c_src/wsp_timers.c), with a clock
 * given by the test, and of wsp_loop_schedule on the real lws loop. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "wsp_log.h"
#include "wsp_loop.h"
#include "wsp_timers.h"

struct rec {
    lws_sorted_usec_list_t sul;  /* first */
    int id;
};

#define LOG_MAX 20000
static int g_log[LOG_MAX];
static size_t g_nlog;

static void on_fire(lws_sorted_usec_list_t *sul)
{
    struct rec *r = (struct rec *)sul;
    assert_true(g_nlog < LOG_MAX);
    g_log[g_nlog++] = r->id;
}

static void reset_log(void) { g_nlog = 0; }

static void test_fires_in_due_order(void **state)
{
    (void)state;
    struct wsp_timers t;
    wsp_timers_init(&t);
    struct rec r[5];
    memset(r, 0, sizeof r);
    const lws_usec_t at[5] = {5000, 1000, 3000, 1000, 2500};
    for (int i = 0; i < 5; i++) {
        r[i].id = i;
        assert_int_equal(wsp_timers_add(&t, &r[i].sul, on_fire, at[i]), 0);
    }
    assert_int_equal(wsp_timers_count(&t), 5);
    assert_int_equal(wsp_timers_next(&t), 1000);
    reset_log();
    /* nothing is due before its time */
    assert_int_equal(wsp_timers_run(&t, 999), 0);
    assert_int_equal(wsp_timers_run(&t, 1000), 2);
    assert_int_equal(g_log[0], 1); /* same millisecond: in the order armed */
    assert_int_equal(g_log[1], 3);
    /* 2500 us rounds up to the end of millisecond 3: never early */
    assert_int_equal(wsp_timers_next(&t), 3000);
    assert_int_equal(wsp_timers_run(&t, 2999), 0);
    assert_int_equal(wsp_timers_run(&t, 3000), 2);
    /* 3000 and 2500 share millisecond 3: in the order armed */
    assert_int_equal(g_log[2], 2);
    assert_int_equal(g_log[3], 4);
    assert_int_equal(wsp_timers_run(&t, 100000), 1);
    assert_int_equal(g_log[4], 0);
    assert_int_equal(wsp_timers_next(&t), -1);
    assert_int_equal(wsp_timers_count(&t), 0);
    for (int i = 0; i < 5; i++) {
        assert_true(lws_dll2_is_detached(&r[i].sul.list));
    }
    wsp_timers_clear(&t);
}

static void test_cancel_and_rearm(void **state)
{
    (void)state;
    struct wsp_timers t;
    wsp_timers_init(&t);
    struct rec a = {.id = 1}, b = {.id = 2}, c = {.id = 3};
    assert_int_equal(wsp_timers_add(&t, &a.sul, on_fire, 2000), 0);
    assert_int_equal(wsp_timers_add(&t, &b.sul, on_fire, 4000), 0);
    assert_int_equal(wsp_timers_add(&t, &c.sul, on_fire, 2000), 0);
    /* lws' own cancel unlinks it from its bucket */
    lws_sul_cancel(&a.sul);
    assert_true(lws_dll2_is_detached(&a.sul.list));
    assert_int_equal(wsp_timers_count(&t), 2);
    lws_sul_cancel(&a.sul); /* twice is harmless */
    lws_sul_cancel(&c.sul);
    /* the emptied bucket goes: the next is b's */
    assert_int_equal(wsp_timers_next(&t), 4000);
    /* re-arming moves it: b earlier, then later again */
    assert_int_equal(wsp_timers_add(&t, &b.sul, on_fire, 1000), 0);
    assert_int_equal(wsp_timers_next(&t), 1000);
    assert_int_equal(wsp_timers_add(&t, &b.sul, on_fire, 7000), 0);
    assert_int_equal(wsp_timers_count(&t), 1);
    reset_log();
    assert_int_equal(wsp_timers_run(&t, 6999), 0);
    assert_int_equal(wsp_timers_run(&t, 7000), 1);
    assert_int_equal(g_log[0], 2);
    assert_int_equal(g_nlog, 1);
    wsp_timers_clear(&t);
}

/* A node can move between lws' own list (or any lws_dll2 list) and a
 * bucket: wsp_timers_add takes it off whatever holds it. */
static void test_takes_node_off_other_list(void **state)
{
    (void)state;
    struct wsp_timers t;
    wsp_timers_init(&t);
    lws_dll2_owner_t other;
    memset(&other, 0, sizeof other);
    struct rec a = {.id = 7};
    lws_dll2_add_tail(&a.sul.list, &other);
    assert_int_equal(wsp_timers_add(&t, &a.sul, on_fire, 1000), 0);
    assert_int_equal(other.count, 0);
    assert_int_equal(wsp_timers_count(&t), 1);
    wsp_timers_clear(&t);
    assert_true(lws_dll2_is_detached(&a.sul.list));
    assert_int_equal(wsp_timers_next(&t), -1);
}

/* Callbacks arm and cancel timers, their own and others', while a run is
 * under way. */
static struct wsp_timers *g_t;
static struct rec g_r[4];

static void on_chain(lws_sorted_usec_list_t *sul)
{
    struct rec *r = (struct rec *)sul;
    on_fire(sul);
    switch (r->id) {
    case 0:
        /* cancels 1 (same millisecond, not fired yet) and re-arms itself */
        lws_sul_cancel(&g_r[1].sul);
        assert_int_equal(wsp_timers_add(g_t, &g_r[0].sul, on_fire, 9000), 0);
        break;
    case 2:
        /* arms 3 for a millisecond already due: it fires in this run */
        assert_int_equal(wsp_timers_add(g_t, &g_r[3].sul, on_fire, 2000), 0);
        break;
    default:
        break;
    }
}

static void test_callbacks_rearm_and_cancel(void **state)
{
    (void)state;
    struct wsp_timers t;
    wsp_timers_init(&t);
    g_t = &t;
    memset(g_r, 0, sizeof g_r);
    for (int i = 0; i < 4; i++) {
        g_r[i].id = i;
    }
    assert_int_equal(wsp_timers_add(&t, &g_r[0].sul, on_chain, 1000), 0);
    assert_int_equal(wsp_timers_add(&t, &g_r[1].sul, on_chain, 1000), 0);
    assert_int_equal(wsp_timers_add(&t, &g_r[2].sul, on_chain, 3000), 0);
    reset_log();
    assert_int_equal(wsp_timers_run(&t, 5000), 3);
    assert_int_equal(g_nlog, 3);
    assert_int_equal(g_log[0], 0);
    assert_int_equal(g_log[1], 2);
    assert_int_equal(g_log[2], 3);
    assert_int_equal(wsp_timers_count(&t), 1); /* 0, re-armed */
    assert_int_equal(wsp_timers_next(&t), 9000);
    assert_int_equal(wsp_timers_run(&t, 9000), 1);
    assert_int_equal(g_log[3], 0);
    wsp_timers_clear(&t);
}

static uint64_t g_seed = 88172645463325252ull;
static uint64_t rnd(void)
{
    g_seed ^= g_seed << 13;
    g_seed ^= g_seed >> 7;
    g_seed ^= g_seed << 17;
    return g_seed;
}

static int cmp_at(const void *a, const void *b)
{
    const struct rec *x = *(struct rec *const *)a, *y = *(struct rec *const *)b;
    int64_t tx = (x->sul.us + 999) / 1000, ty = (y->sul.us + 999) / 1000;
    if (tx != ty) {
        return tx < ty ? -1 : 1;
    }
    return 0;
}

/* 10,000 timers (a reconnect storm: retries in a 200 ms window, deadlines
 * far out), a third cancelled and some re-armed: every one still armed
 * fires once, none early, milliseconds in order; the tables grow. */
static void test_many(void **state)
{
    (void)state;
    enum { N = 10000 };
    struct wsp_timers t;
    wsp_timers_init(&t);
    struct rec *r = calloc(N, sizeof *r);
    int *armed = calloc(N, sizeof *armed);
    struct rec **order = calloc(N, sizeof *order);
    assert_non_null(r);
    assert_non_null(armed);
    assert_non_null(order);
    for (int i = 0; i < N; i++) {
        r[i].id = i;
        lws_usec_t at = i % 2 ? 900000 + (lws_usec_t)(rnd() % 200000)
                              : 60000000 + (lws_usec_t)(rnd() % 200000000);
        assert_int_equal(wsp_timers_add(&t, &r[i].sul, on_fire, at), 0);
        armed[i] = 1;
    }
    for (int i = 0; i < N; i += 3) {
        lws_sul_cancel(&r[i].sul);
        armed[i] = 0;
    }
    for (int i = 1; i < N; i += 7) {
        assert_int_equal(wsp_timers_add(&t, &r[i].sul, on_fire, 500000 + (lws_usec_t)(rnd() % 100000)), 0);
        armed[i] = 1;
    }
    size_t n = 0;
    for (int i = 0; i < N; i++) {
        if (armed[i]) {
            order[n++] = &r[i];
        }
    }
    assert_int_equal(wsp_timers_count(&t), n);
    qsort(order, n, sizeof *order, cmp_at);
    reset_log();
    lws_usec_t now = 0;
    size_t fired = 0;
    while (wsp_timers_next(&t) >= 0) {
        lws_usec_t next = wsp_timers_next(&t);
        assert_true(next > now);
        now = next;
        size_t before = g_nlog;
        fired += wsp_timers_run(&t, now);
        for (size_t k = before; k < g_nlog; k++) {
            /* due, and not before its millisecond's end */
            assert_true(r[g_log[k]].sul.us <= now);
            assert_true(r[g_log[k]].sul.us > now - 1000);
        }
    }
    assert_int_equal(fired, n);
    assert_int_equal(g_nlog, n);
    /* the milliseconds came in order (within one, any order is fine) */
    for (size_t k = 0; k < n; k++) {
        assert_int_equal((r[g_log[k]].sul.us + 999) / 1000, (order[k]->sul.us + 999) / 1000);
    }
    wsp_timers_clear(&t);
    free(order);
    free(armed);
    free(r);
}

/* Through wsp_loop_schedule on the real loop (libuv and poll): timers with
 * delays fire, in order of their delays, a cancelled one never. */
static void loop_order(enum wsp_loop_kind kind)
{
    assert_int_equal(wsp_loop_init(kind), 0);
    struct rec r[4];
    memset(r, 0, sizeof r);
    const lws_usec_t delay[4] = {30000, 10000, 20000, 15000};
    for (int i = 0; i < 4; i++) {
        r[i].id = i;
        wsp_loop_schedule(&r[i].sul, on_fire, delay[i]);
    }
    lws_sul_cancel(&r[3].sul);
    reset_log();
    for (int turns = 0; g_nlog < 3 && turns < 100000; turns++) {
        assert_int_equal(wsp_loop_run_once(), 0);
    }
    assert_int_equal(g_nlog, 3);
    assert_int_equal(g_log[0], 1);
    assert_int_equal(g_log[1], 2);
    assert_int_equal(g_log[2], 0);
    /* one left armed at the end is detached by wsp_loop_destroy */
    wsp_loop_schedule(&r[0].sul, on_fire, 3600 * LWS_US_PER_SEC);
    wsp_loop_destroy();
    assert_true(lws_dll2_is_detached(&r[0].sul.list));
}

static void test_loop_epoll(void **state)
{
    (void)state;
    loop_order(WSP_LOOP_EPOLL);
}

static void test_loop_poll(void **state)
{
    (void)state;
    loop_order(WSP_LOOP_POLL);
}

int main(void)
{
    wsp_log_level = 0;
    lws_set_log_level(LLL_ERR, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fires_in_due_order),
        cmocka_unit_test(test_cancel_and_rearm),
        cmocka_unit_test(test_takes_node_off_other_list),
        cmocka_unit_test(test_callbacks_rearm_and_cancel),
        cmocka_unit_test(test_many),
        cmocka_unit_test(test_loop_epoll),
        cmocka_unit_test(test_loop_poll),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
