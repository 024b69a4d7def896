/* cmocka tests of the proxy handshakes (c_src/wsp_proxy.c): HTTP CONNECT
 * request and response, SOCKS5 (RFC 1928) with username/password (RFC 1929). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "wsp_proxy.h"

static uint8_t out[WSP_PROXY_OUT_MAX];
static size_t outlen;
static struct wsp_proxy_fail fail;

static int feed(struct wsp_proxy_hs *hs, const char *in, size_t n, size_t *used)
{
    return wsp_proxy_input(hs, (const uint8_t *)in, n, used, out, sizeof out, &outlen, &fail);
}

static void test_connect_request(void **state)
{
    (void)state;
    struct wsp_proxy_conf cf = {.type = WSP_PROXY_HTTP, .host = "p", .port = 3128};
    struct wsp_proxy_hs hs;
    assert_int_equal(wsp_proxy_start(&hs, &cf, "example.com", 443, out, sizeof out, &outlen, &fail),
                     WSP_PX_MORE);
    const char want[] = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
    assert_int_equal(outlen, sizeof want - 1);
    assert_memory_equal(out, want, outlen);

    /* IPv6 target in brackets; Basic auth of "Aladdin:open sesame" (RFC 7617) */
    cf.username = "Aladdin";
    cf.password = "open sesame";
    assert_int_equal(wsp_proxy_start(&hs, &cf, "::1", 80, out, sizeof out, &outlen, &fail),
                     WSP_PX_MORE);
    const char want6[] = "CONNECT [::1]:80 HTTP/1.1\r\nHost: [::1]:80\r\n"
                         "Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n";
    assert_int_equal(outlen, sizeof want6 - 1);
    assert_memory_equal(out, want6, outlen);

    /* a password with ':' and '@' goes in as it is */
    cf.username = "u";
    cf.password = "p@:";
    assert_int_equal(wsp_proxy_start(&hs, &cf, "h", 1, out, sizeof out, &outlen, &fail),
                     WSP_PX_MORE);
    assert_non_null(strstr((const char *)out, "Basic dTpwQDo=\r\n"));

    /* too small an output buffer; a target that cannot go in a request line */
    assert_int_equal(wsp_proxy_start(&hs, &cf, "h", 1, out, 20, &outlen, &fail), WSP_PX_NOSPC);
    assert_int_equal(wsp_proxy_start(&hs, &cf, "a b", 1, out, sizeof out, &outlen, &fail),
                     WSP_PX_FAIL);
    assert_int_equal(fail.kind, WSP_PXF_BAD);
}

static void test_connect_response(void **state)
{
    (void)state;
    struct wsp_proxy_conf cf = {.type = WSP_PROXY_HTTP, .host = "p", .port = 3128};
    struct wsp_proxy_hs hs;
    size_t used;
    const char ok[] = "HTTP/1.0 200 Connection established\r\nProxy-agent: tinyproxy/1.11.1\r\n\r\n";
    assert_int_equal(wsp_proxy_start(&hs, &cf, "h", 80, out, sizeof out, &outlen, &fail),
                     WSP_PX_MORE);
    /* byte by byte: more until the end of the head */
    for (size_t n = 1; n < sizeof ok - 1; n++) {
        assert_int_equal(feed(&hs, ok, n, &used), WSP_PX_MORE);
        assert_int_equal(used, 0);
    }
    assert_int_equal(feed(&hs, ok, sizeof ok - 1, &used), WSP_PX_OK);
    assert_int_equal(used, sizeof ok - 1);

    const char denied[] = "HTTP/1.1 407 Proxy Authentication Required\r\n"
                          "Proxy-Authenticate: Basic realm=\"x\"\r\nContent-Length: 5\r\n\r\nnope!";
    wsp_proxy_start(&hs, &cf, "h", 80, out, sizeof out, &outlen, &fail);
    assert_int_equal(feed(&hs, denied, sizeof denied - 1, &used), WSP_PX_FAIL);
    assert_int_equal(fail.kind, WSP_PXF_HTTP);
    assert_int_equal(fail.resp.status, 407);
    assert_int_equal(fail.resp.nheaders, 2);
    assert_memory_equal(fail.resp.headers[0].name, "Proxy-Authenticate", 18);

    wsp_proxy_start(&hs, &cf, "h", 80, out, sizeof out, &outlen, &fail);
    assert_int_equal(feed(&hs, "SSH-2.0-OpenSSH\r\n\r\n", 19, &used), WSP_PX_FAIL);
    assert_int_equal(fail.kind, WSP_PXF_BAD);
    assert_non_null(fail.detail);
}

static void test_socks5_no_auth(void **state)
{
    (void)state;
    struct wsp_proxy_conf cf = {.type = WSP_PROXY_SOCKS5, .host = "p", .port = 1080};
    struct wsp_proxy_hs hs;
    size_t used;
    assert_int_equal(wsp_proxy_start(&hs, &cf, "example.com", 443, out, sizeof out, &outlen, &fail),
                     WSP_PX_MORE);
    assert_int_equal(outlen, 3);
    assert_memory_equal(out, "\x05\x01\x00", 3);
    assert_int_equal(feed(&hs, "\x05", 1, &used), WSP_PX_MORE);
    assert_int_equal(used, 0);
    assert_int_equal(feed(&hs, "\x05\x00", 2, &used), WSP_PX_MORE);
    assert_int_equal(used, 2);
    /* the name goes to the proxy (ATYP 3), not resolved here */
    const char req[] = "\x05\x01\x00\x03\x0b" "example.com\x01\xbb";
    assert_int_equal(outlen, sizeof req - 1);
    assert_memory_equal(out, req, outlen);
    const char rep[] = "\x05\x00\x00\x01\x7f\x00\x00\x01\x04\x38";
    for (size_t n = 0; n < sizeof rep - 1; n++) {
        assert_int_equal(feed(&hs, rep, n, &used), WSP_PX_MORE);
        assert_int_equal(used, 0);
    }
    assert_int_equal(feed(&hs, rep, sizeof rep - 1, &used), WSP_PX_OK);
    assert_int_equal(used, 10);

    /* IP literals: ATYP 1 and 4 */
    wsp_proxy_start(&hs, &cf, "10.1.2.3", 80, out, sizeof out, &outlen, &fail);
    feed(&hs, "\x05\x00", 2, &used);
    assert_memory_equal(out, "\x05\x01\x00\x01\x0a\x01\x02\x03\x00\x50", 10);
    wsp_proxy_start(&hs, &cf, "::1", 80, out, sizeof out, &outlen, &fail);
    feed(&hs, "\x05\x00", 2, &used);
    assert_int_equal(outlen, 22);
    assert_int_equal(out[3], 4);

    /* a refusal, and a reply with a domain BND.ADDR */
    wsp_proxy_start(&hs, &cf, "example.com", 443, out, sizeof out, &outlen, &fail);
    feed(&hs, "\x05\x00", 2, &used);
    assert_int_equal(feed(&hs, "\x05\x04\x00\x01\0\0\0\0\0\0", 10, &used), WSP_PX_FAIL);
    assert_int_equal(fail.kind, WSP_PXF_SOCKS);
    assert_string_equal(fail.atom, "host_unreachable");
    wsp_proxy_start(&hs, &cf, "example.com", 443, out, sizeof out, &outlen, &fail);
    feed(&hs, "\x05\x00", 2, &used);
    assert_int_equal(feed(&hs, "\x05\x00\x00\x03\x02" "ab\x00\x01", 9, &used), WSP_PX_OK);
    assert_int_equal(used, 9);

    /* method refused; not SOCKS5 at all */
    wsp_proxy_start(&hs, &cf, "h", 1, out, sizeof out, &outlen, &fail);
    assert_int_equal(feed(&hs, "\x05\xff", 2, &used), WSP_PX_FAIL);
    assert_string_equal(fail.atom, "auth_required");
    wsp_proxy_start(&hs, &cf, "h", 1, out, sizeof out, &outlen, &fail);
    assert_int_equal(feed(&hs, "HTTP/1.1", 8, &used), WSP_PX_FAIL);
    assert_int_equal(fail.kind, WSP_PXF_BAD);
    /* a method not offered (username/password without credentials) */
    wsp_proxy_start(&hs, &cf, "h", 1, out, sizeof out, &outlen, &fail);
    assert_int_equal(feed(&hs, "\x05\x02", 2, &used), WSP_PX_FAIL);
    assert_int_equal(fail.kind, WSP_PXF_BAD);
}

static void test_socks5_auth(void **state)
{
    (void)state;
    struct wsp_proxy_conf cf = {.type = WSP_PROXY_SOCKS5, .host = "p", .port = 1080,
                                .username = "user", .password = "pw"};
    struct wsp_proxy_hs hs;
    size_t used;
    wsp_proxy_start(&hs, &cf, "h", 80, out, sizeof out, &outlen, &fail);
    assert_int_equal(outlen, 4);
    assert_memory_equal(out, "\x05\x02\x00\x02", 4);
    assert_int_equal(feed(&hs, "\x05\x02", 2, &used), WSP_PX_MORE);
    assert_memory_equal(out, "\x01\x04user\x02pw", 9);
    assert_int_equal(outlen, 9);
    assert_int_equal(feed(&hs, "\x01\x00", 2, &used), WSP_PX_MORE);
    assert_int_equal(used, 2);
    assert_memory_equal(out, "\x05\x01\x00\x03\x01h\x00\x50", 8);

    wsp_proxy_start(&hs, &cf, "h", 80, out, sizeof out, &outlen, &fail);
    feed(&hs, "\x05\x02", 2, &used);
    assert_int_equal(feed(&hs, "\x01\x01", 2, &used), WSP_PX_FAIL);
    assert_string_equal(fail.atom, "auth_failed");

    /* the proxy may skip authentication even when offered */
    wsp_proxy_start(&hs, &cf, "h", 80, out, sizeof out, &outlen, &fail);
    assert_int_equal(feed(&hs, "\x05\x00", 2, &used), WSP_PX_MORE);
    assert_int_equal(out[0], 5);
    assert_int_equal(hs.step, WSP_PX_SOCKS_REPLY);

    /* the longest name and credentials fit WSP_PROXY_OUT_MAX */
    char name[256], cred[256];
    memset(name, 'n', 255);
    name[255] = 0;
    memset(cred, 'c', 255);
    cred[255] = 0;
    cf.username = cf.password = cred;
    assert_int_equal(wsp_proxy_start(&hs, &cf, name, 1, out, sizeof out, &outlen, &fail),
                     WSP_PX_MORE);
    assert_int_equal(feed(&hs, "\x05\x02", 2, &used), WSP_PX_MORE);
    assert_int_equal(outlen, 3 + 255 + 255);
    struct wsp_proxy_conf hc = {.type = WSP_PROXY_HTTP, .host = "p", .port = 1,
                                .username = cred, .password = cred};
    assert_int_equal(wsp_proxy_start(&hs, &hc, name, 65535, out, sizeof out, &outlen, &fail),
                     WSP_PX_MORE);
    /* a name too long for SOCKS5 */
    char longname[300];
    memset(longname, 'x', 299);
    longname[299] = 0;
    wsp_proxy_start(&hs, &cf, longname, 1, out, sizeof out, &outlen, &fail);
    feed(&hs, "\x05\x02", 2, &used);
    assert_int_equal(feed(&hs, "\x01\x00", 2, &used), WSP_PX_FAIL);
    assert_int_equal(fail.kind, WSP_PXF_BAD);
    assert_string_equal(wsp_proxy_socks5_reply_atom(99), "unknown_reply");
}

static void test_parse_url(void **state)
{
    (void)state;
    struct wsp_proxy_conf c;
    const char *err = NULL;
    assert_int_equal(wsp_proxy_parse_url("HTTP://p.example:3128/", &c, &err), 0);
    assert_int_equal(c.type, WSP_PROXY_HTTP);
    assert_string_equal(c.host, "p.example");
    assert_int_equal(c.port, 3128);
    assert_null(c.username);
    wsp_proxy_conf_free(&c);
    assert_int_equal(wsp_proxy_parse_url("socks5h://u%40x:p%3A%40w@[::1]", &c, &err), 0);
    assert_int_equal(c.type, WSP_PROXY_SOCKS5);
    assert_string_equal(c.host, "::1");
    assert_int_equal(c.port, 1080);
    assert_string_equal(c.username, "u@x");
    assert_string_equal(c.password, "p:@w");
    wsp_proxy_conf_free(&c);
    assert_int_equal(wsp_proxy_parse_url("socks5://user@h:9", &c, &err), 0);
    assert_string_equal(c.password, "");
    wsp_proxy_conf_free(&c);

    const char *bad[] = {"h:1", "ftp://h", "http://", "http://:1", "http://h:0", "http://h:65536",
                         "http://h:1x", "http://h:", "http://h/p", "http://h?q", "http://[::1",
                         "http://@h", "http://u:p%4@h", "http://u:%00@h", "http://u%zz@h"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        err = NULL;
        if (wsp_proxy_parse_url(bad[k], &c, &err) != -1 || !err)
            fail_msg("accepted %s", bad[k]);
        assert_null(c.host);
        assert_null(c.username);
        assert_null(c.password);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_request),
        cmocka_unit_test(test_connect_response),
        cmocka_unit_test(test_socks5_no_auth),
        cmocka_unit_test(test_socks5_auth),
        cmocka_unit_test(test_parse_url),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
