/* cmocka tests of the shared connect options (c_src/wsp_optcache.c): real
 * {connect, Id, Url, Opts} packets encoded with ei, decoded by wsp_proto. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <ei.h>

#include "wsp_optcache.h"
#include "wsp_proto.h"

/* {connect, Id, Url, [{connect_timeout, Timeout}]} */
static void encode_connect(ei_x_buff *x, unsigned long id, const char *url, long timeout)
{
    ei_x_new_with_version(x);
    ei_x_encode_tuple_header(x, 4);
    ei_x_encode_atom(x, "connect");
    ei_x_encode_ulong(x, id);
    ei_x_encode_binary(x, url, (long)strlen(url));
    ei_x_encode_list_header(x, 1);
    ei_x_encode_tuple_header(x, 2);
    ei_x_encode_atom(x, "connect_timeout");
    ei_x_encode_long(x, timeout);
    ei_x_encode_empty_list(x);
}

/* decodes the packet and interns its options, as ws_port.c does */
static struct wsp_connect_opts *connect_opts(unsigned long id, const char *url, long timeout)
{
    ei_x_buff x;
    encode_connect(&x, id, url, timeout);
    struct wsp_cmd cmd;
    const char *what = NULL;
    char err[256];
    assert_int_equal(wsp_decode_command((const uint8_t *)x.buff, (size_t)x.index, &cmd, &what,
                                        err, sizeof err), 0);
    assert_int_equal(cmd.type, WSP_CMD_CONNECT);
    assert_int_equal(cmd.id, id);
    size_t off = 0;
    assert_int_equal(wsp_optcache_connect_key((const uint8_t *)x.buff, (size_t)x.index, &off), 0);
    assert_true(off > 0 && off < (size_t)x.index);
    struct wsp_connect_opts *o =
        wsp_optcache_intern(cmd.connect, (const uint8_t *)x.buff + off, (size_t)x.index - off);
    ei_x_free(&x);
    return o;
}

static void test_alike_connections_share(void **state)
{
    (void)state;
    /* ids of every encoding size: small, int32, big */
    struct wsp_connect_opts *a = connect_opts(1, "ws://127.0.0.1:1/a", 5000);
    struct wsp_connect_opts *b = connect_opts(70000, "ws://127.0.0.1:1/a", 5000);
    struct wsp_connect_opts *c = connect_opts(4294967295ul, "ws://127.0.0.1:1/a", 5000);
    assert_ptr_equal(a, b);
    assert_ptr_equal(a, c);
    assert_int_equal(a->connect_timeout_ms, 5000);
    assert_string_equal(a->url, "ws://127.0.0.1:1/a");
    assert_int_equal(wsp_optcache_entries(), 1);
    assert_int_equal(wsp_optcache_refs(), 3);
    wsp_optcache_release(a);
    wsp_optcache_release(b);
    assert_int_equal(wsp_optcache_entries(), 1);
    assert_string_equal(c->url, "ws://127.0.0.1:1/a"); /* still alive */
    wsp_optcache_release(c);
    assert_int_equal(wsp_optcache_entries(), 0);
    assert_int_equal(wsp_optcache_refs(), 0);
}

static void test_different_options_do_not_share(void **state)
{
    (void)state;
    struct wsp_connect_opts *a = connect_opts(1, "ws://127.0.0.1:1/a", 5000);
    struct wsp_connect_opts *b = connect_opts(2, "ws://127.0.0.1:1/b", 5000);
    struct wsp_connect_opts *c = connect_opts(3, "ws://127.0.0.1:1/a", 6000);
    assert_ptr_not_equal(a, b);
    assert_ptr_not_equal(a, c);
    assert_ptr_not_equal(b, c);
    assert_string_equal(b->url, "ws://127.0.0.1:1/b");
    assert_int_equal(c->connect_timeout_ms, 6000);
    assert_int_equal(wsp_optcache_entries(), 3);
    wsp_optcache_release(a);
    wsp_optcache_release(b);
    wsp_optcache_release(c);
    assert_int_equal(wsp_optcache_entries(), 0);
    /* a released set is made afresh (not a dangling copy) */
    struct wsp_connect_opts *d = connect_opts(4, "ws://127.0.0.1:1/a", 5000);
    assert_string_equal(d->url, "ws://127.0.0.1:1/a");
    assert_int_equal(wsp_optcache_refs(), 1);
    wsp_optcache_release(d);
}

static void test_never_interned_are_freed(void **state)
{
    (void)state;
    ei_x_buff x;
    encode_connect(&x, 9, "ws://127.0.0.1:1/x", 5000);
    struct wsp_cmd cmd;
    const char *what = NULL;
    char err[256];
    assert_int_equal(wsp_decode_command((const uint8_t *)x.buff, (size_t)x.index, &cmd, &what,
                                        err, sizeof err), 0);
    ei_x_free(&x);
    /* options that never went through the cache (the CLI's): release frees
     * them (ASan: no leak) and the cache stays empty */
    wsp_optcache_release(cmd.connect);
    assert_int_equal(wsp_optcache_entries(), 0);
    wsp_optcache_release(NULL);
}

static void test_connect_key_refuses_other_packets(void **state)
{
    (void)state;
    size_t off = 0;
    const uint8_t raw[] = {1, 0, 0, 0, 1, 2, 'x'}; /* a raw send */
    assert_int_equal(wsp_optcache_connect_key(raw, sizeof raw, &off), -1);
    assert_int_equal(wsp_optcache_connect_key(NULL, 0, &off), -1);
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 3);
    ei_x_encode_atom(&x, "reconnect");
    ei_x_encode_ulong(&x, 1);
    ei_x_encode_ulong(&x, 0);
    assert_int_equal(wsp_optcache_connect_key((const uint8_t *)x.buff, (size_t)x.index, &off), -1);
    ei_x_free(&x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alike_connections_share),
        cmocka_unit_test(test_different_options_do_not_share),
        cmocka_unit_test(test_never_interned_are_freed),
        cmocka_unit_test(test_connect_key_refuses_other_packets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
