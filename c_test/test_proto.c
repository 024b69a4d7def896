/*
 * cmocka tests of wsp_proto: command decoding (valid, malformed, truncated,
 * mutated and random input) and event encoding (round trip through ei).
 * Run under ASan/UBSan: every decoded packet lives in an exact-size heap
 * buffer so that a read past its end is caught.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wsp_proto.h"

/* ------------------------------------------------------------------------ */
/* a tiny Erlang-ish term writer for building packets:                       */
/*   atoms, integers, floats (with '.'), <<"bin">> (escapes \" \\ \xHH),     */
/*   "string" (STRING_EXT), {tuples}, [lists], [a, b | tail]                  */

static void enc_term(ei_x_buff *x, const char **pp);

static void skip_ws(const char **pp)
{
    while (isspace((unsigned char)**pp))
        (*pp)++;
}

/* Number of elements before the matching close bracket (or '|'). */
static int count_elems(const char *p)
{
    int depth = 0, commas = 0, any = 0;
    for (; *p; p++) {
        if (*p == '"') {
            for (p++; *p && *p != '"'; p++)
                if (*p == '\\' && p[1])
                    p++;
            any = 1;
            continue;
        }
        if (*p == '{' || *p == '[') {
            depth++;
            any = 1;
        } else if (*p == '}' || *p == ']') {
            if (depth == 0)
                break;
            depth--;
        } else if (depth == 0 && *p == '|') {
            break;
        } else if (depth == 0 && *p == ',') {
            commas++;
        } else if (!isspace((unsigned char)*p)) {
            any = 1;
        }
    }
    return any ? commas + 1 : 0;
}

static size_t read_quoted(const char **pp, char *out, size_t cap)
{
    size_t n = 0;
    assert_int_equal(**pp, '"');
    (*pp)++;
    while (**pp && **pp != '"') {
        int ch = (unsigned char)**pp;
        (*pp)++;
        if (ch == '\\') {
            ch = (unsigned char)**pp;
            (*pp)++;
            if (ch == 'x') {
                char hex[3] = {(*pp)[0], (*pp)[1], 0};
                ch = (int)strtol(hex, NULL, 16);
                *pp += 2;
            }
        }
        assert_true(n < cap);
        out[n++] = (char)ch;
    }
    assert_int_equal(**pp, '"');
    (*pp)++;
    return n;
}

static void enc_term(ei_x_buff *x, const char **pp)
{
    skip_ws(pp);
    const char *p = *pp;
    if (*p == '{') {
        (*pp)++;
        int n = count_elems(*pp);
        assert_int_equal(ei_x_encode_tuple_header(x, n), 0);
        for (int k = 0; k < n; k++) {
            enc_term(x, pp);
            skip_ws(pp);
            if (**pp == ',')
                (*pp)++;
        }
        skip_ws(pp);
        assert_int_equal(**pp, '}');
        (*pp)++;
    } else if (*p == '[') {
        (*pp)++;
        int n = count_elems(*pp);
        if (n > 0)
            assert_int_equal(ei_x_encode_list_header(x, n), 0);
        for (int k = 0; k < n; k++) {
            enc_term(x, pp);
            skip_ws(pp);
            if (**pp == ',')
                (*pp)++;
        }
        skip_ws(pp);
        if (**pp == '|') {
            (*pp)++;
            enc_term(x, pp);
            skip_ws(pp);
        } else {
            assert_int_equal(ei_x_encode_empty_list(x), 0);
        }
        assert_int_equal(**pp, ']');
        (*pp)++;
    } else if (p[0] == '<' && p[1] == '<') {
        *pp += 2;
        static char b[4096];
        size_t n = 0;
        skip_ws(pp);
        if (**pp == '"')
            n = read_quoted(pp, b, sizeof b);
        skip_ws(pp);
        assert_true((*pp)[0] == '>' && (*pp)[1] == '>');
        *pp += 2;
        assert_int_equal(ei_x_encode_binary(x, b, (int)n), 0);
    } else if (*p == '"') {
        static char s[4096];
        size_t n = read_quoted(pp, s, sizeof s);
        assert_int_equal(ei_x_encode_string_len(x, s, (int)n), 0);
    } else if (*p == '-' || isdigit((unsigned char)*p)) {
        const char *e = p;
        int is_float = 0;
        if (*e == '-')
            e++;
        while (isdigit((unsigned char)*e) || *e == '.') {
            if (*e == '.')
                is_float = 1;
            e++;
        }
        if (is_float) {
            assert_int_equal(ei_x_encode_double(x, strtod(p, NULL)), 0);
        } else if (*p == '-') {
            assert_int_equal(ei_x_encode_longlong(x, strtoll(p, NULL, 10)), 0);
        } else {
            assert_int_equal(ei_x_encode_ulonglong(x, strtoull(p, NULL, 10)), 0);
        }
        *pp = e;
    } else {
        char a[256];
        size_t n = 0;
        /* atoms: letters, digits, _ and (not first) '.' as in tlsv1.2 */
        while (isalnum((unsigned char)**pp) || **pp == '_' || (n > 0 && **pp == '.')) {
            assert_true(n < sizeof a - 1);
            a[n++] = **pp;
            (*pp)++;
        }
        assert_true(n > 0);
        a[n] = 0;
        assert_int_equal(ei_x_encode_atom(x, a), 0);
    }
}

/* Packet of the term written in src, in an exact-size heap buffer. */
static uint8_t *build(const char *src, size_t *len)
{
    ei_x_buff x = {0};
    assert_int_equal(ei_x_new_with_version(&x), 0);
    const char *p = src;
    enc_term(&x, &p);
    skip_ws(&p);
    assert_int_equal(*p, '\0');
    uint8_t *b = malloc((size_t)x.index);
    assert_non_null(b);
    memcpy(b, x.buff, (size_t)x.index);
    *len = (size_t)x.index;
    ei_x_free(&x);
    return b;
}

/* a byte-string literal and its length (without the terminating NUL) */
#define B(lit) (lit), (sizeof(lit) - 1)

static uint8_t *dup_exact(const void *p, size_t n)
{
    uint8_t *b = malloc(n ? n : 1);
    assert_non_null(b);
    if (n)
        memcpy(b, p, n);
    return b;
}

/* Decodes src; the packet stays alive until the next call (for payloads). */
static uint8_t *g_pkt;
static size_t g_len;
static const char *g_what;
static char g_err[256];

static int dec(const char *src, struct wsp_cmd *cmd)
{
    free(g_pkt);
    g_pkt = NULL;
    g_pkt = build(src, &g_len);
    return wsp_decode_command(g_pkt, g_len, cmd, &g_what, g_err, sizeof g_err);
}

static int dec_bytes(const void *bytes, size_t n, struct wsp_cmd *cmd)
{
    free(g_pkt);
    g_pkt = NULL;
    g_pkt = dup_exact(bytes, n);
    g_len = n;
    return wsp_decode_command(g_pkt, n, cmd, &g_what, g_err, sizeof g_err);
}

static void check_err(int r, const struct wsp_cmd *cmd, const char *what,
                      const char *substr)
{
    if (r != -1 || g_what == NULL || strcmp(g_what, what) != 0 ||
        strstr(g_err, substr) == NULL) {
        print_error("expected %s containing \"%s\"; got r=%d what=%s err=\"%s\"\n", what,
                    substr, r, g_what ? g_what : "(null)", g_err);
        fail();
    }
    assert_null(cmd->connect);
}

static void expect_err(const char *src, const char *what, const char *substr)
{
    struct wsp_cmd cmd;
    int r = dec(src, &cmd);
    check_err(r, &cmd, what, substr);
}

static void expect_err_bytes(const void *b, size_t n, const char *what, const char *substr)
{
    struct wsp_cmd cmd;
    int r = dec_bytes(b, n, &cmd);
    check_err(r, &cmd, what, substr);
}

static int teardown(void **state)
{
    (void)state;
    free(g_pkt);
    g_pkt = NULL;
    return 0;
}

static const char *FULL_CONNECT =
    "{connect, 7, <<\"wss://example.com:8443/p?q=1\">>,"
    " [{headers, [{<<\"X-A\">>, <<\"1\">>}, {<<\"Authorization\">>, <<\"Bearer t\">>},"
    "             {<<\"X-Empty\">>, <<>>}]},"
    "  {protocols, [<<\"chat\">>, <<\"v2.json\">>]},"
    "  {connect_timeout, 5000}, {max_message_size, 4294967279}, {active, 10},"
    "  {verify, verify_none}, {cacertfile, <<\"/etc/ca.pem\">>},"
    "  {certfile, <<\"/c.pem\">>}, {keyfile, <<\"/k.pem\">>},"
    "  {server_name, <<\"example.org\">>}, {ping_interval, 30000}, {idle_timeout, 0}]}";

/* ------------------------------------------------------------------------ */
/* connect                                                                   */

static void test_connect_defaults(void **state)
{
    (void)state;
    struct wsp_cmd cmd;
    assert_int_equal(dec("{connect, 1, <<\"ws://h/\">>, []}", &cmd), 0);
    assert_null(g_what);
    assert_int_equal(cmd.type, WSP_CMD_CONNECT);
    assert_int_equal(cmd.id, 1);
    struct wsp_connect_opts *o = cmd.connect;
    assert_non_null(o);
    assert_string_equal(o->url, "ws://h/");
    assert_int_equal(o->url_len, 7);
    assert_int_equal(o->nheaders, 0);
    assert_null(o->headers);
    assert_int_equal(o->nprotocols, 0);
    assert_null(o->protocols);
    assert_int_equal(o->connect_timeout_ms, WSP_DEFAULT_CONNECT_TIMEOUT_MS);
    assert_true(o->max_message_size == WSP_DEFAULT_MAX_MESSAGE_SIZE);
    assert_int_equal(o->active, WSP_ACTIVE_TRUE);
    assert_int_equal(o->verify, 1);
    assert_null(o->cacertfile);
    assert_null(o->certfile);
    assert_null(o->keyfile);
    assert_null(o->server_name);
    assert_int_equal(o->ping_interval_ms, 0);
    assert_int_equal(o->idle_timeout_ms, 0);
    wsp_cmd_free(&cmd);
    assert_null(cmd.connect);
    wsp_cmd_free(&cmd); /* twice is fine */
}

static void test_connect_all_options(void **state)
{
    (void)state;
    struct wsp_cmd cmd;
    assert_int_equal(dec(FULL_CONNECT, &cmd), 0);
    assert_int_equal(cmd.id, 7);
    struct wsp_connect_opts *o = cmd.connect;
    assert_string_equal(o->url, "wss://example.com:8443/p?q=1");
    assert_int_equal(o->nheaders, 3);
    assert_string_equal(o->headers[0].name, "X-A");
    assert_int_equal(o->headers[0].name_len, 3);
    assert_string_equal(o->headers[0].value, "1");
    assert_string_equal(o->headers[1].name, "Authorization");
    assert_string_equal(o->headers[1].value, "Bearer t");
    assert_int_equal(o->headers[1].value_len, 8);
    assert_string_equal(o->headers[2].value, "");
    assert_int_equal(o->headers[2].value_len, 0);
    assert_int_equal(o->nprotocols, 2);
    assert_string_equal(o->protocols[0], "chat");
    assert_string_equal(o->protocols[1], "v2.json");
    assert_int_equal(o->connect_timeout_ms, 5000);
    assert_true(o->max_message_size == 4294967279ull);
    assert_int_equal(o->active, WSP_ACTIVE_N);
    assert_int_equal(o->active_n, 10);
    assert_int_equal(o->verify, 0);
    assert_string_equal(o->cacertfile, "/etc/ca.pem");
    assert_string_equal(o->certfile, "/c.pem");
    assert_string_equal(o->keyfile, "/k.pem");
    assert_string_equal(o->server_name, "example.org");
    assert_int_equal(o->ping_interval_ms, 30000);
    assert_int_equal(o->idle_timeout_ms, 0);
    wsp_cmd_free(&cmd);
}

static void test_connect_option_values(void **state)
{
    (void)state;
    struct {
        const char *opts;
        enum wsp_active_kind active;
        int64_t n;
        int verify;
    } t[] = {
        {"[{active, true}]", WSP_ACTIVE_TRUE, 0, 1},
        {"[{active, false}]", WSP_ACTIVE_FALSE, 0, 1},
        {"[{active, once}]", WSP_ACTIVE_ONCE, 0, 1},
        {"[{active, -3}]", WSP_ACTIVE_N, -3, 1},
        {"[{active, 2147483647}]", WSP_ACTIVE_N, 2147483647, 1},
        {"[{active, -2147483648}]", WSP_ACTIVE_N, -2147483648LL, 1},
        {"[{verify, verify_peer}]", WSP_ACTIVE_TRUE, 0, 1},
        {"[{verify, verify_none}, {verify, verify_peer}]", WSP_ACTIVE_TRUE, 0, 1},
    };
    for (size_t k = 0; k < sizeof t / sizeof t[0]; k++) {
        char src[512];
        struct wsp_cmd cmd;
        snprintf(src, sizeof src, "{connect, 4294967295, <<\"ws://h\">>, %s}", t[k].opts);
        assert_int_equal(dec(src, &cmd), 0);
        assert_int_equal(cmd.id, 4294967295u);
        assert_int_equal(cmd.connect->active, t[k].active);
        assert_int_equal(cmd.connect->active_n, t[k].n);
        assert_int_equal(cmd.connect->verify, t[k].verify);
        wsp_cmd_free(&cmd);
    }
}

static void test_connect_limits(void **state)
{
    (void)state;
    struct wsp_cmd cmd;
    assert_int_equal(dec("{connect, 1, <<\"ws://h\">>, [{connect_timeout, 1},"
                         " {max_message_size, 1}, {ping_interval, 4294967295},"
                         " {idle_timeout, 4294967295}]}", &cmd), 0);
    assert_int_equal(cmd.connect->connect_timeout_ms, 1);
    assert_true(cmd.connect->max_message_size == 1);
    assert_int_equal(cmd.connect->ping_interval_ms, 4294967295u);
    assert_int_equal(cmd.connect->idle_timeout_ms, 4294967295u);
    wsp_cmd_free(&cmd);
    assert_int_equal(dec("{connect, 1, <<\"ws://h\">>, [{connect_timeout, 4294967295}]}",
                         &cmd), 0);
    assert_int_equal(cmd.connect->connect_timeout_ms, 4294967295u);
    wsp_cmd_free(&cmd);
}

/* A later occurrence of an option overrides an earlier one, without leaks. */
static void test_connect_repeated_options(void **state)
{
    (void)state;
    struct wsp_cmd cmd;
    assert_int_equal(dec("{connect, 1, <<\"ws://h\">>, ["
                         "{cacertfile, <<\"a\">>}, {cacertfile, <<\"b\">>},"
                         "{headers, [{<<\"A\">>, <<\"1\">>}]}, {headers, [{<<\"B\">>, <<\"2\">>}]},"
                         "{protocols, [<<\"p\">>]}, {protocols, []},"
                         "{headers, []}, {headers, [{<<\"C\">>, <<\"3\">>}]},"
                         "{connect_timeout, 5}, {connect_timeout, 6}]}", &cmd), 0);
    assert_string_equal(cmd.connect->cacertfile, "b");
    assert_int_equal(cmd.connect->nheaders, 1);
    assert_string_equal(cmd.connect->headers[0].name, "C");
    assert_int_equal(cmd.connect->nprotocols, 0);
    assert_null(cmd.connect->protocols);
    assert_int_equal(cmd.connect->connect_timeout_ms, 6);
    wsp_cmd_free(&cmd);
}

static void test_connect_bad(void **state)
{
    (void)state;
    static const struct {
        const char *src, *what, *msg;
    } t[] = {
        /* shape */
        {"{connect, 1, <<\"ws://h\">>}", "badarg", "connect: expected {connect, Id, Url, Opts}, got a 3-tuple"},
        {"{connect, 1, <<\"ws://h\">>, [], x}", "badarg", "got a 5-tuple"},
        {"{connect}", "badarg", "got a 1-tuple"},
        {"{connect, 0, <<\"ws://h\">>, []}", "badarg", "connect: id must be an integer 1..4294967295, got 0"},
        {"{connect, 1, \"ws://h\", []}", "badarg", "connect: url must be a binary, got a string"},
        {"{connect, 1, ws, []}", "badarg", "url must be a binary, got atom ws"},
        {"{connect, 1, <<>>, []}", "badarg", "url must not be empty"},
        {"{connect, 1, <<\"ws://h\\x00x\">>, []}", "badarg", "url must not contain NUL"},
        {"{connect, 1, <<\"ws://h\">>, foo}", "badarg", "options must be a list, got atom foo"},
        {"{connect, 1, <<\"ws://h\">>, \"abc\"}", "badarg", "options must be a list, got a string"},
        {"{connect, 1, <<\"ws://h\">>, {}}", "badarg", "options must be a list, got a 0-tuple"},
        {"{connect, 1, <<\"ws://h\">>, [{active, true} | foo]}", "badarg", "proper list"},
        {"{connect, 1, <<\"ws://h\">>, [headers]}", "badarg", "each option must be a {Name, Value} tuple with an atom name, got atom headers"},
        {"{connect, 1, <<\"ws://h\">>, [{headers}]}", "badarg", "got a 1-tuple"},
        {"{connect, 1, <<\"ws://h\">>, [{a, b, c}]}", "badarg", "got a 3-tuple"},
        {"{connect, 1, <<\"ws://h\">>, [{<<\"active\">>, true}]}", "badarg", "with an atom name"},
        /* unknown option */
        {"{connect, 1, <<\"ws://h\">>, [{frobnicate, 1}]}", "bad_option", "connect: unknown option frobnicate"},
        {"{connect, 1, <<\"ws://h\">>, [{active, true}, {foo, 1}]}", "bad_option", "unknown option foo"},
        /* integers */
        {"{connect, 1, <<\"ws://h\">>, [{connect_timeout, 0}]}", "bad_option", "connect: option connect_timeout must be a positive integer"},
        {"{connect, 1, <<\"ws://h\">>, [{connect_timeout, -5}]}", "bad_option", "got -5"},
        {"{connect, 1, <<\"ws://h\">>, [{connect_timeout, 4294967296}]}", "bad_option", "connect_timeout must be a positive integer <= 4294967295, got 4294967296"},
        {"{connect, 1, <<\"ws://h\">>, [{connect_timeout, 1.5}]}", "bad_option", "got a float"},
        {"{connect, 1, <<\"ws://h\">>, [{connect_timeout, <<\"1\">>}]}", "bad_option", "got a binary of 1 bytes"},
        {"{connect, 1, <<\"ws://h\">>, [{connect_timeout, 18446744073709551615}]}", "bad_option", "got a big integer"},
        {"{connect, 1, <<\"ws://h\">>, [{max_message_size, 0}]}", "bad_option", "max_message_size must be a positive integer"},
        {"{connect, 1, <<\"ws://h\">>, [{max_message_size, 4294967296}]}", "bad_option", "max_message_size"},
        {"{connect, 1, <<\"ws://h\">>, [{max_message_size, 4294967280}]}", "bad_option", "max_message_size"},
        {"{connect, 1, <<\"ws://h\">>, [{ping_interval, -1}]}", "bad_option", "ping_interval must be a non-negative integer"},
        {"{connect, 1, <<\"ws://h\">>, [{ping_interval, 4294967296}]}", "bad_option", "ping_interval"},
        {"{connect, 1, <<\"ws://h\">>, [{idle_timeout, foo}]}", "bad_option", "idle_timeout must be a non-negative integer <= 4294967295, got atom foo"},
        /* active / verify */
        {"{connect, 1, <<\"ws://h\">>, [{active, maybe}]}", "bad_option", "option active must be true, false, once or an integer"},
        {"{connect, 1, <<\"ws://h\">>, [{active, 2147483648}]}", "bad_option", "option active"},
        {"{connect, 1, <<\"ws://h\">>, [{active, <<>>}]}", "bad_option", "option active"},
        {"{connect, 1, <<\"ws://h\">>, [{verify, true}]}", "bad_option", "option verify must be verify_peer or verify_none, got atom true"},
        {"{connect, 1, <<\"ws://h\">>, [{verify, 1}]}", "bad_option", "option verify"},
        /* strings */
        {"{connect, 1, <<\"ws://h\">>, [{cacertfile, \"x\"}]}", "bad_option", "option cacertfile must be a binary, got a string"},
        {"{connect, 1, <<\"ws://h\">>, [{cacertfile, <<>>}]}", "bad_option", "cacertfile must not be empty"},
        {"{connect, 1, <<\"ws://h\">>, [{certfile, <<\"a\\x00b\">>}]}", "bad_option", "certfile must not contain NUL"},
        {"{connect, 1, <<\"ws://h\">>, [{keyfile, 1}]}", "bad_option", "keyfile must be a binary"},
        {"{connect, 1, <<\"ws://h\">>, [{server_name, []}]}", "bad_option", "server_name must be a binary, got []"},
        /* headers */
        {"{connect, 1, <<\"ws://h\">>, [{headers, foo}]}", "bad_option", "option headers must be a list"},
        {"{connect, 1, <<\"ws://h\">>, [{headers, \"ab\"}]}", "bad_option", "option headers must be a list"},
        {"{connect, 1, <<\"ws://h\">>, [{headers, [{<<\"a\">>}]}]}", "bad_option", "each header must be a {Name, Value} tuple of binaries, got a 1-tuple"},
        {"{connect, 1, <<\"ws://h\">>, [{headers, [{<<\"a\">>, \"b\"}]}]}", "bad_option", "each header"},
        {"{connect, 1, <<\"ws://h\">>, [{headers, [{a, <<\"b\">>}]}]}", "bad_option", "each header"},
        {"{connect, 1, <<\"ws://h\">>, [{headers, [<<\"a\">>]}]}", "bad_option", "got a binary of 1 bytes"},
        {"{connect, 1, <<\"ws://h\">>, [{headers, [{<<>>, <<\"b\">>}]}]}", "bad_option", "empty header name"},
        {"{connect, 1, <<\"ws://h\">>, [{headers, [{<<\"a\">>, <<\"b\">>} | x]}]}", "bad_option", "headers must be a proper list"},
        {"{connect, 1, <<\"ws://h\">>, [{headers, [{<<\"a\">>, <<\"b\">>}, {<<\"c\">>, d}]}]}", "bad_option", "each header"},
        /* protocols */
        {"{connect, 1, <<\"ws://h\">>, [{protocols, <<\"chat\">>}]}", "bad_option", "option protocols must be a list of binaries"},
        {"{connect, 1, <<\"ws://h\">>, [{protocols, [chat]}]}", "bad_option", "got atom chat in it"},
        {"{connect, 1, <<\"ws://h\">>, [{protocols, [<<\"a b\">>]}]}", "bad_option", "non-empty HTTP token"},
        {"{connect, 1, <<\"ws://h\">>, [{protocols, [<<\"a\\r\\nX: y\">>]}]}", "bad_option", "HTTP token"},
        {"{connect, 1, <<\"ws://h\">>, [{protocols, [<<\"ok\">>, <<>>]}]}", "bad_option", "HTTP token"},
        {"{connect, 1, <<\"ws://h\">>, [{protocols, [<<\"ok\">> | <<\"x\">>]}]}", "bad_option", "protocols must be a proper list"},
        /* a late failure after many owned allocations: nothing may leak */
        {"{connect, 1, <<\"ws://h\">>, [{headers, [{<<\"A\">>, <<\"1\">>}]},"
         " {protocols, [<<\"p\">>, <<\"q\">>]}, {cacertfile, <<\"c\">>}, {certfile, <<\"c\">>},"
         " {keyfile, <<\"k\">>}, {server_name, <<\"s\">>}, {bogus, 1}]}", "bad_option", "unknown option bogus"},
    };
    for (size_t k = 0; k < sizeof t / sizeof t[0]; k++)
        expect_err(t[k].src, t[k].what, t[k].msg);
}

/* ------------------------------------------------------------------------ */
/* ids and the top level                                                     */

static void test_ids(void **state)
{
    (void)state;
    static const char *bad[] = {"0", "-1", "4294967296", "18446744073709551615", "foo",
                                "1.0", "<<\"1\">>", "[]", "{1}", "\"1\""};
    static const char *cmds[] = {"{stats, %s}", "{active, %s, true}",
                                 "{send, %s, text, <<>>}", "{close, %s, 1000, <<>>}",
                                 "{connect, %s, <<\"ws://h\">>, []}"};
    for (size_t c = 0; c < sizeof cmds / sizeof cmds[0]; c++) {
        for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
            char src[128];
            if (c == 0 && k == 0) {
                continue; /* {stats, 0}: the program's own figures */
            }
            snprintf(src, sizeof src, cmds[c], bad[k]);
            expect_err(src, "badarg", "id must be an integer 1..4294967295");
        }
    }
    struct wsp_cmd cmd;
    assert_int_equal(dec("{stats, 1}", &cmd), 0);
    assert_int_equal(cmd.type, WSP_CMD_STATS);
    assert_int_equal(cmd.id, 1);
    assert_int_equal(dec("{stats, 4294967295}", &cmd), 0);
    assert_int_equal(cmd.id, 4294967295u);
    assert_int_equal(dec("{stats, 65536}", &cmd), 0);
    assert_int_equal(cmd.id, 65536);
    assert_int_equal(dec("{stats, 0}", &cmd), 0);
    assert_int_equal(cmd.type, WSP_CMD_STATS);
    assert_int_equal(cmd.id, 0);
    /* a refused command still reports its id when it could be read */
    assert_int_equal(dec("{stats, 5, extra}", &cmd), -1);
    assert_int_equal(cmd.id, 5);
    assert_int_equal(dec("{frobnicate, 9}", &cmd), -1);
    assert_int_equal(cmd.id, 9);
    assert_int_equal(dec("{send, 3, text, foo}", &cmd), -1);
    assert_int_equal(cmd.id, 3);
    assert_int_equal(dec("{send, 0, text, foo}", &cmd), -1);
    assert_int_equal(cmd.id, 0);
}

static void test_top_level(void **state)
{
    (void)state;
    expect_err("{frobnicate, 2}", "badarg", "unknown command frobnicate/2");
    expect_err("{stats}", "badarg", "stats: expected {stats, Id}, got a 1-tuple");
    expect_err("{stats, 1, 2}", "badarg", "got a 3-tuple");
    expect_err("{}", "badarg", "command must be a tuple starting with an atom");
    expect_err("{1, 2}", "badarg", "starting with an atom");
    expect_err("{<<\"stats\">>, 2}", "badarg", "starting with an atom");
    expect_err("[stats, 1]", "badarg", "packet is not a tuple, got a list");
    expect_err("stats", "badarg", "packet is not a tuple, got atom stats");
    expect_err("42", "badarg", "packet is not a tuple, got 42");
    expect_err("<<\"x\">>", "badarg", "packet is not a tuple");

    struct wsp_cmd cmd;
    /* empty packet; NULL err and zero errcap are tolerated */
    assert_int_equal(wsp_decode_command((const uint8_t *)"", 0, &cmd, &g_what, g_err,
                                        sizeof g_err), -1);
    assert_string_equal(g_what, "badarg");
    assert_string_equal(g_err, "empty packet");
    assert_int_equal(wsp_decode_command((const uint8_t *)"", 0, &cmd, &g_what, NULL, 0), -1);
    /* a tiny errcap still gives a NUL-terminated prefix */
    char small[8];
    uint8_t *p = build("{frobnicate, 2}", &g_len);
    assert_int_equal(wsp_decode_command(p, g_len, &cmd, &g_what, small, sizeof small), -1);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_memory_equal(small, "unknown", 7);
    free(p);

    /* only the version byte */
    expect_err_bytes(B("\x83"), "badarg", "truncated packet");
    /* trailing bytes after a complete term */
    expect_err_bytes(B("\x83\x68\x02\x77\x05stats\x61\x01\x6a"), "badarg",
                     "1 trailing bytes after the term");
    /* unsupported tags: pid, compressed term, bit binary, new reference */
    expect_err_bytes(B("\x83\x58"), "badarg", "unsupported term type (tag 88) at byte 1");
    expect_err_bytes(B("\x83\x50\x00\x00\x00\x05"), "badarg", "unsupported term type (tag 80)");
    expect_err_bytes(B("\x83\x68\x02\x77\x05stats\x4d\x00\x00\x00\x01\x03\xff"), "badarg",
                     "unsupported term type (tag 77) at byte 10");
    /* a map is a valid term but no valid id */
    expect_err_bytes(B("\x83\x68\x02\x77\x05stats\x74\x00\x00\x00\x00"), "badarg",
                     "id must be an integer 1..4294967295, got a map");
    /* a large tuple with a small arity is still a tuple */
    assert_int_equal(dec_bytes(B("\x83\x69\x00\x00\x00\x02\x77\x05stats\x61\x07"), &cmd), 0);
    assert_int_equal(cmd.type, WSP_CMD_STATS);
    assert_int_equal(cmd.id, 7);
}

/* Every atom encoding (ATOM, SMALL_ATOM, ATOM_UTF8, SMALL_ATOM_UTF8) and
 * every integer encoding (SMALL_INTEGER, INTEGER, SMALL_BIG) is accepted. */
static void test_atom_and_int_encodings(void **state)
{
    (void)state;
    struct wsp_cmd cmd;
    assert_int_equal(dec_bytes(B("\x83\x68\x02\x64\x00\x05stats\x61\x01"), &cmd), 0);
    assert_int_equal(cmd.id, 1);
    assert_int_equal(dec_bytes(B("\x83\x68\x02\x73\x05stats\x62\x00\x01\x00\x00"), &cmd), 0);
    assert_int_equal(cmd.id, 65536);
    assert_int_equal(dec_bytes(B("\x83\x68\x02\x76\x00\x05stats\x6e\x04\x00\xff\xff\xff\xff"), &cmd), 0);
    assert_int_equal(cmd.id, 4294967295u);
    assert_int_equal(dec_bytes(B("\x83\x68\x02\x77\x05stats\x6e\x01\x00\x2a"), &cmd), 0);
    assert_int_equal(cmd.id, 42);
    /* a negative small big */
    expect_err_bytes(B("\x83\x68\x02\x77\x05stats\x6e\x01\x01\x2a"), "badarg", "got -42");
    /* a 9-byte bignum */
    expect_err_bytes(B("\x83\x68\x02\x77\x05stats\x6e\x09\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01"), "badarg", "got a big integer");
    /* LARGE_BIG_EXT: small value accepted, 9 bytes refused */
    assert_int_equal(dec_bytes(B("\x83\x68\x02\x77\x05stats\x6f\x00\x00\x00\x01\x00\x05"),
                               &cmd), 0);
    assert_int_equal(cmd.id, 5);
    expect_err_bytes(B("\x83\x68\x02\x77\x05stats\x6f\x00\x00\x00\x09\x00"
                       "\x01\x00\x00\x00\x00\x00\x00\x00\x01"), "badarg", "got a big integer");
    /* INTEGER_EXT negative */
    expect_err_bytes(B("\x83\x68\x02\x77\x05stats\x62\xff\xff\xff\xfe"), "badarg", "got -2");
}

/* ------------------------------------------------------------------------ */
/* send / close / active                                                     */

static void test_send_term(void **state)
{
    (void)state;
    static const struct { const char *type; int op; } t[] = {
        {"text", WSC_OP_TEXT}, {"binary", WSC_OP_BINARY},
        {"ping", WSC_OP_PING}, {"pong", WSC_OP_PONG}};
    for (size_t k = 0; k < 4; k++) {
        char src[128];
        struct wsp_cmd cmd;
        snprintf(src, sizeof src, "{send, 12, %s, <<\"hello\">>}", t[k].type);
        assert_int_equal(dec(src, &cmd), 0);
        assert_int_equal(cmd.type, WSP_CMD_SEND);
        assert_int_equal(cmd.id, 12);
        assert_int_equal(cmd.opcode, t[k].op);
        assert_int_equal(cmd.payload_len, 5);
        /* the payload points into the packet, it is not copied */
        assert_true(cmd.payload > g_pkt && cmd.payload + 5 == g_pkt + g_len);
        assert_memory_equal(cmd.payload, "hello", 5);
        assert_null(cmd.connect);
    }
    struct wsp_cmd cmd;
    assert_int_equal(dec("{send, 1, binary, <<>>}", &cmd), 0);
    assert_int_equal(cmd.payload_len, 0);

    /* a big payload, built directly */
    ei_x_buff x = {0};
    size_t big = 200000;
    char *data = malloc(big);
    assert_non_null(data);
    for (size_t k = 0; k < big; k++)
        data[k] = (char)(k * 7);
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 4);
    ei_x_encode_atom(&x, "send");
    ei_x_encode_long(&x, 99);
    ei_x_encode_atom(&x, "binary");
    ei_x_encode_binary(&x, data, (int)big);
    assert_int_equal(dec_bytes(x.buff, (size_t)x.index, &cmd), 0);
    assert_int_equal(cmd.payload_len, big);
    assert_memory_equal(cmd.payload, data, big);
    ei_x_free(&x);
    free(data);

    /* ping/pong limits */
    char src[512], payload[130];
    memset(payload, 'p', sizeof payload);
    snprintf(src, sizeof src, "{send, 1, ping, <<\"%.125s\">>}", payload);
    assert_int_equal(dec(src, &cmd), 0);
    assert_int_equal(cmd.payload_len, 125);
    snprintf(src, sizeof src, "{send, 1, ping, <<\"%.126s\">>}", payload);
    expect_err(src, "badarg", "send: ping payload must be at most 125 bytes, got 126");
    snprintf(src, sizeof src, "{send, 1, pong, <<\"%.126s\">>}", payload);
    expect_err(src, "badarg", "pong payload must be at most 125 bytes");
    snprintf(src, sizeof src, "{send, 1, text, <<\"%.126s\">>}", payload);
    assert_int_equal(dec(src, &cmd), 0);

    expect_err("{send, 1, text}", "badarg", "send: expected {send, Id, Type, Payload}, got a 3-tuple");
    expect_err("{send, 1, close, <<>>}", "badarg", "send: type must be text, binary, ping or pong, got atom close");
    expect_err("{send, 1, 1, <<>>}", "badarg", "type must be text");
    expect_err("{send, 1, text, \"abc\"}", "badarg", "send: payload must be a binary, got a string");
    expect_err("{send, 1, text, []}", "badarg", "payload must be a binary, got []");
}

static void test_send_raw(void **state)
{
    (void)state;
    struct wsp_cmd cmd;
    static const int ops[] = {1, 2, 9, 10};
    for (size_t k = 0; k < 4; k++) {
        uint8_t b[9] = {1, 0x12, 0x34, 0x56, 0x78, (uint8_t)ops[k], 'a', 'b', 'c'};
        assert_int_equal(dec_bytes(b, sizeof b, &cmd), 0);
        assert_int_equal(cmd.type, WSP_CMD_SEND);
        assert_int_equal(cmd.id, 0x12345678u);
        assert_int_equal(cmd.opcode, ops[k]);
        assert_int_equal(cmd.payload_len, 3);
        assert_ptr_equal(cmd.payload, g_pkt + 6);
    }
    /* empty payload */
    assert_int_equal(dec_bytes(B("\x01\xff\xff\xff\xff\x02"), &cmd), 0);
    assert_int_equal(cmd.id, 4294967295u);
    assert_int_equal(cmd.payload_len, 0);
    /* every short prefix */
    for (size_t n = 1; n < 6; n++)
        expect_err_bytes("\x01\x00\x00\x00\x01\x01", n, "badarg", "truncated packet");
    expect_err_bytes(B("\x01\x00\x00\x00\x00\x01x"), "badarg", "id must be an integer 1..4294967295");
    expect_err_bytes(B("\x01\x00\x00\x00\x01\x08x"), "badarg", "raw opcode must be 1, 2, 9 or 10, got 8");
    expect_err_bytes(B("\x01\x00\x00\x00\x01\x00x"), "badarg", "got 0");
    expect_err_bytes(B("\x02\x00\x00\x00\x01\x01x"), "badarg", "unknown packet type 2");
    expect_err_bytes(B("\x00"), "badarg", "unknown packet type 0");
    uint8_t b[6 + 126];
    memcpy(b, "\x01\x00\x00\x00\x01\x09", 6);
    memset(b + 6, 'x', 126);
    assert_int_equal(dec_bytes(b, 6 + 125, &cmd), 0);
    expect_err_bytes(b, sizeof b, "badarg", "ping payload must be at most 125 bytes, got 126");
    b[5] = 10;
    expect_err_bytes(b, sizeof b, "badarg", "pong payload must be at most 125 bytes");
    b[5] = 1;
    assert_int_equal(dec_bytes(b, sizeof b, &cmd), 0);
}

static void test_close(void **state)
{
    (void)state;
    static const unsigned good[] = {1000, 1001, 1002, 1003, 1007, 1008, 1011, 1014, 3000, 4000, 4999};
    static const char *bad[] = {"0", "999", "1004", "1005", "1006", "1015", "1016", "2999",
                                "5000", "-1", "70000", "65536", "foo", "1000.0"};
    struct wsp_cmd cmd;
    for (size_t k = 0; k < sizeof good / sizeof good[0]; k++) {
        char src[128];
        snprintf(src, sizeof src, "{close, 3, %u, <<\"bye\">>}", good[k]);
        assert_int_equal(dec(src, &cmd), 0);
        assert_int_equal(cmd.type, WSP_CMD_CLOSE);
        assert_int_equal(cmd.id, 3);
        assert_int_equal(cmd.close_code, good[k]);
        assert_int_equal(cmd.reason_len, 3);
        assert_memory_equal(cmd.reason, "bye", 3);
        assert_true(cmd.reason + 3 == g_pkt + g_len);
    }
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        char src[128];
        snprintf(src, sizeof src, "{close, 3, %s, <<\"bye\">>}", bad[k]);
        expect_err(src, "badarg", "close: code must be a valid close code");
    }
    expect_err("{close, 3, 1004, <<>>}", "badarg", "got 1004");
    assert_int_equal(dec("{close, 3, 1000, <<>>}", &cmd), 0);
    assert_int_equal(cmd.reason_len, 0);
    char src[512], r[130];
    memset(r, 'r', sizeof r);
    snprintf(src, sizeof src, "{close, 3, 1000, <<\"%.123s\">>}", r);
    assert_int_equal(dec(src, &cmd), 0);
    assert_int_equal(cmd.reason_len, 123);
    snprintf(src, sizeof src, "{close, 3, 1000, <<\"%.124s\">>}", r);
    expect_err(src, "badarg", "close: reason must be at most 123 bytes, got 124");
    assert_int_equal(dec("{close, 3, 1000, <<\"h\xc3\xa9\">>}", &cmd), 0);
    assert_int_equal(cmd.reason_len, 3);
    expect_err("{close, 3, 1000, <<\"\xc3\">>}", "badarg", "close: reason must be valid UTF-8");
    expect_err("{close, 3, 1000, <<\"\xff\">>}", "badarg", "valid UTF-8");
    expect_err("{close, 3, 1000, bye}", "badarg", "close: reason must be a binary, got atom bye");
    expect_err("{close, 3, 1000}", "badarg", "close: expected {close, Id, Code, Reason}, got a 3-tuple");
}

static void test_active(void **state)
{
    (void)state;
    static const struct { const char *v; enum wsp_active_kind k; int64_t n; } t[] = {
        {"true", WSP_ACTIVE_TRUE, 0}, {"false", WSP_ACTIVE_FALSE, 0},
        {"once", WSP_ACTIVE_ONCE, 0}, {"0", WSP_ACTIVE_N, 0}, {"100", WSP_ACTIVE_N, 100},
        {"-100", WSP_ACTIVE_N, -100}, {"2147483647", WSP_ACTIVE_N, 2147483647},
        {"-2147483648", WSP_ACTIVE_N, -2147483648LL}};
    struct wsp_cmd cmd;
    for (size_t k = 0; k < sizeof t / sizeof t[0]; k++) {
        char src[128];
        snprintf(src, sizeof src, "{active, 8, %s}", t[k].v);
        assert_int_equal(dec(src, &cmd), 0);
        assert_int_equal(cmd.type, WSP_CMD_ACTIVE);
        assert_int_equal(cmd.id, 8);
        assert_int_equal(cmd.active, t[k].k);
        assert_int_equal(cmd.active_n, t[k].n);
    }
    expect_err("{active, 8, maybe}", "badarg", "active: Active must be true, false, once or an integer");
    expect_err("{active, 8, 2147483648}", "badarg", "got 2147483648");
    expect_err("{active, 8, -2147483649}", "badarg", "Active must be");
    expect_err("{active, 8, <<\"true\">>}", "badarg", "got a binary of 4 bytes");
    expect_err("{active, 8}", "badarg", "active: expected {active, Id, Active}, got a 2-tuple");
}

/* ------------------------------------------------------------------------ */
/* hostile input                                                             */

static void test_truncated_every_byte(void **state)
{
    (void)state;
    size_t len;
    uint8_t *full = build(FULL_CONNECT, &len);
    struct wsp_cmd cmd;
    for (size_t n = 0; n < len; n++) {
        uint8_t *b = dup_exact(full, n);
        const char *what = NULL;
        char err[256];
        int r = wsp_decode_command(b, n, &cmd, &what, err, sizeof err);
        if (r != -1 || what == NULL || strcmp(what, "badarg") != 0) {
            print_error("prefix %zu of %zu: r=%d what=%s err=%s\n", n, len, r,
                        what ? what : "(null)", err);
            fail();
        }
        if (n > 0)
            assert_non_null(strstr(err, "truncated packet"));
        assert_null(cmd.connect);
        free(b);
    }
    assert_int_equal(wsp_decode_command(full, len, &cmd, NULL, NULL, 0), 0);
    wsp_cmd_free(&cmd);
    free(full);
}

/* Every byte of a valid connect packet set to every value: no crash, no
 * leak, and a success is a well-formed connect. */
static void test_mutations(void **state)
{
    (void)state;
    size_t len;
    uint8_t *full = build(FULL_CONNECT, &len);
    uint8_t *b = dup_exact(full, len);
    unsigned ok = 0, bad = 0;
    for (size_t pos = 0; pos < len; pos++) {
        for (int v = 0; v < 256; v++) {
            memcpy(b, full, len);
            b[pos] = (uint8_t)v;
            struct wsp_cmd cmd;
            const char *what = NULL;
            char err[256];
            if (wsp_decode_command(b, len, &cmd, &what, err, sizeof err) == 0) {
                ok++;
                if (cmd.type == WSP_CMD_CONNECT) {
                    assert_non_null(cmd.connect);
                    assert_non_null(cmd.connect->url);
                }
                wsp_cmd_free(&cmd);
            } else {
                bad++;
                assert_non_null(what);
                assert_true(err[0] != '\0');
                assert_null(cmd.connect);
            }
        }
    }
    assert_true(ok > 0 && bad > 0);
    free(b);
    free(full);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static void test_random_bytes(void **state)
{
    (void)state;
    /* tags the validator knows, to get past the first byte more often */
    static const uint8_t tags[] = {70, 97, 98, 100, 104, 105, 106, 107, 108, 109,
                                   110, 111, 115, 116, 118, 119, 88, 0, 255};
    for (int iter = 0; iter < 100000; iter++) {
        size_t n = rng() % 64;
        uint8_t *b = malloc(n ? n : 1);
        assert_non_null(b);
        for (size_t k = 0; k < n; k++) {
            uint32_t r = rng();
            b[k] = (r & 3) == 0 ? tags[(r >> 2) % sizeof tags]
                                : (r & 3) == 1 ? (uint8_t)((r >> 8) % 8) : (uint8_t)(r >> 8);
        }
        if (n && (iter & 1))
            b[0] = 131;
        struct wsp_cmd cmd;
        const char *what = NULL;
        char err[128];
        if (wsp_decode_command(b, n, &cmd, &what, err, sizeof err) == 0)
            wsp_cmd_free(&cmd);
        else
            assert_non_null(what);
        free(b);
    }
}

/* Lengths claimed far beyond the packet are refused before anything is
 * read or allocated. */
static void test_huge_lengths(void **state)
{
    (void)state;
    /* {send, 1, text, BINARY_EXT claiming 4 GiB with 3 bytes present} */
    expect_err_bytes(B("\x83\x68\x04\x77\x04send\x61\x01\x77\x04text\x6d\xff\xff\xff\xff" "abc"),
                     "badarg", "truncated packet");
    /* claimed length one more than present */
    expect_err_bytes(B("\x83\x68\x04\x77\x04send\x61\x01\x77\x04text\x6d\x00\x00\x00\x04" "abc"),
                     "badarg", "truncated packet");
    /* list, tuple, map, string, atom, bignum with huge counts */
    expect_err_bytes(B("\x83\x6c\xff\xff\xff\xff\x6a"), "badarg", "truncated packet");
    expect_err_bytes(B("\x83\x69\xff\xff\xff\xff\x6a"), "badarg", "truncated packet");
    expect_err_bytes(B("\x83\x74\xff\xff\xff\xff\x6a\x6a"), "badarg", "truncated packet");
    expect_err_bytes(B("\x83\x74\x80\x00\x00\x00\x6a\x6a"), "badarg", "truncated packet");
    expect_err_bytes(B("\x83\x6b\xff\xff\x61"), "badarg", "truncated packet");
    expect_err_bytes(B("\x83\x76\xff\xff\x61"), "badarg", "atom too long");
    expect_err_bytes(B("\x83\x64\x01\x00\x61"), "badarg", "atom too long");
    expect_err_bytes(B("\x83\x6f\xff\xff\xff\xff\x00\x01"), "badarg", "truncated packet");
    expect_err_bytes(B("\x83\x6e\xff\x00\x01"), "badarg", "truncated packet");
    /* connect whose option list claims 2^32-1 entries */
    expect_err_bytes(B("\x83\x68\x04\x77\x07" "connect\x61\x01\x6d\x00\x00\x00\x01x"
                     "\x6c\xff\xff\xff\xff\x6a"), "badarg", "truncated packet");

    /* the longest legal atoms are fine and reported, not overflowed */
    uint8_t b[2 + 5 + 1020 + 2 + 16];
    size_t n = 0;
    b[n++] = 131; b[n++] = 104; b[n++] = 2;
    b[n++] = 118; b[n++] = (1020 >> 8) & 0xff; b[n++] = 1020 & 0xff;
    for (int k = 0; k < 340; k++) { /* 340 x U+0800 (3 bytes) = 1020 bytes */
        b[n++] = 0xe0; b[n++] = 0xa0; b[n++] = 0x80;
    }
    b[n++] = 97; b[n++] = 1;
    expect_err_bytes(b, n, "badarg", "unknown command");
    n = 0;
    b[n++] = 131; b[n++] = 104; b[n++] = 2;
    b[n++] = 100; b[n++] = 0; b[n++] = 255;
    memset(b + n, 0xe9, 255); /* latin-1 e-acute, 2 bytes each in UTF-8 */
    n += 255;
    b[n++] = 97; b[n++] = 1;
    expect_err_bytes(b, n, "badarg", "unknown command");
}

static void test_deep_nesting(void **state)
{
    (void)state;
    enum { N = 100000 };
    uint8_t *b = malloc(1 + 2 * N + 1);
    assert_non_null(b);
    b[0] = 131;
    for (int k = 0; k < N; k++) {
        b[1 + 2 * k] = 104;
        b[2 + 2 * k] = 1;
    }
    b[1 + 2 * N] = 106;
    expect_err_bytes(b, 2 + 2 * N, "badarg", "term nested deeper than");
    /* nested lists [[[...]]] (a list header is 5 bytes) */
    free(b);
    b = malloc(1 + 5 * 1000 + 1 + 1000);
    assert_non_null(b);
    size_t n = 0;
    b[n++] = 131;
    for (int k = 0; k < 1000; k++) {
        b[n++] = 108; b[n++] = 0; b[n++] = 0; b[n++] = 0; b[n++] = 1;
    }
    b[n++] = 106;
    for (int k = 0; k < 1000; k++)
        b[n++] = 106;
    expect_err_bytes(b, n, "badarg", "term nested deeper than");
    free(b);
    /* nesting inside an option value: refused, no crash, no leak */
    expect_err("{connect, 1, <<\"ws://h\">>, [{headers, [{<<\"a\">>, <<\"b\">>}]},"
               " {x, [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]}]}",
               "badarg", "nested deeper");
    /* moderately deep but within the limit: decoded and refused by grammar */
    expect_err("{connect, 1, <<\"ws://h\">>, [{headers, [[[[[1]]]]]}]}", "bad_option",
               "each header");
}

/* retry_on: classes, close codes, named policies */
static const struct wsp_connect_opts *dec_opts(const char *opts, struct wsp_cmd *cmd)
{
    char src[512];
    snprintf(src, sizeof src, "{connect, 1, <<\"ws://h\">>, %s}", opts);
    assert_int_equal(dec(src, cmd), 0);
    return cmd->connect;
}

static void test_connect_retry_on(void **state)
{
    (void)state;
    struct wsp_cmd cmd;
    /* absent: the default (server closes by code) */
    const struct wsp_connect_opts *o = dec_opts("[{retry, []}]", &cmd);
    assert_int_equal(o->retry.retry_on, WSP_FC_DEFAULT);
    assert_false(wsp_backoff_retries_close(&o->retry, 1000));
    assert_true(wsp_backoff_retries_close(&o->retry, 1001));
    assert_true(wsp_backoff_retries_close(&o->retry, 1005));
    wsp_cmd_free(&cmd);
    /* remote_close: every server close */
    o = dec_opts("[{retry, []}, {retry_on, [network, remote_close]}]", &cmd);
    assert_int_equal(o->retry.retry_on, WSP_FC_NETWORK | WSP_FC_REMOTE_CLOSE);
    assert_true(wsp_backoff_retries_close(&o->retry, 1000));
    assert_true(wsp_backoff_retries_close(&o->retry, 4321));
    wsp_cmd_free(&cmd);
    /* no remote_close: none */
    o = dec_opts("[{retry, []}, {retry_on, [network]}]", &cmd);
    assert_false(wsp_backoff_retries_close(&o->retry, 1001));
    wsp_cmd_free(&cmd);
    /* the codes named */
    o = dec_opts("[{retry_on, [{remote_close, [1000, 4000]}, timeout]}, {retry, []}]", &cmd);
    assert_int_equal(o->retry.retry_on, WSP_FC_TIMEOUT | WSP_FC_REMOTE_CLOSE);
    assert_true(wsp_backoff_retries_close(&o->retry, 1000));
    assert_true(wsp_backoff_retries_close(&o->retry, 4000));
    assert_false(wsp_backoff_retries_close(&o->retry, 1001));
    wsp_cmd_free(&cmd);
    /* all but the codes named */
    o = dec_opts("[{retry, []}, {retry_on, [{remote_close, {except, [1000]}}]}]", &cmd);
    assert_false(wsp_backoff_retries_close(&o->retry, 1000));
    assert_true(wsp_backoff_retries_close(&o->retry, 4000));
    wsp_cmd_free(&cmd);
    /* named policies */
    o = dec_opts("[{retry, []}, {retry_on, stay_connected}]", &cmd);
    assert_int_equal(o->retry.retry_on, WSP_FC_DEFAULT);
    assert_true(wsp_backoff_retries_close(&o->retry, 1000));
    assert_false(wsp_backoff_retries_close(&o->retry, 1002));
    assert_false(wsp_backoff_retries_close(&o->retry, 1009));
    wsp_cmd_free(&cmd);
    o = dec_opts("[{retry, []}, {retry_on, [tls]}, {retry_on, default}]", &cmd);
    assert_int_equal(o->retry.retry_on, WSP_FC_DEFAULT);
    assert_false(wsp_backoff_retries_close(&o->retry, 1000));
    assert_true(wsp_backoff_retries_close(&o->retry, 1012));
    wsp_cmd_free(&cmd);
    /* an empty list: nothing is retried (whatever the order of the options) */
    o = dec_opts("[{retry_on, []}, {retry, []}]", &cmd);
    assert_int_equal(o->retry.retry_on, 0);
    assert_false(wsp_backoff_retries_close(&o->retry, 1001));
    wsp_cmd_free(&cmd);

    /* errors name the bad element */
    expect_err("{connect, 1, <<\"ws://h\">>, [{retry_on, [network, foo]}]}", "bad_option",
               "got atom foo in it");
    expect_err("{connect, 1, <<\"ws://h\">>, [{retry_on, always}]}", "bad_option",
               "retry_on must be default, stay_connected or a list");
    expect_err("{connect, 1, <<\"ws://h\">>, [{retry_on, [{remote_close, [1000, 999]}]}]}",
               "bad_option", "a remote_close code must be an integer 1000..4999, got 999");
    expect_err("{connect, 1, <<\"ws://h\">>, [{retry_on, [{remote_close, 1000}]}]}",
               "bad_option", "remote_close codes must be a list of close codes, got 1000");
    expect_err("{connect, 1, <<\"ws://h\">>, [{retry_on, [{remote_close, {except, x}}]}]}",
               "bad_option", "remote_close codes must be a list of close codes, got atom x");
    expect_err("{connect, 1, <<\"ws://h\">>, [{retry_on, [{remote_close, {only, [1000]}}]}]}",
               "bad_option", "remote_close codes must be a list");
    expect_err("{connect, 1, <<\"ws://h\">>, [{retry_on, [{tls, [1000]}]}]}", "bad_option",
               "in it");
    expect_err("{connect, 1, <<\"ws://h\">>, [{retry_on, [remote_close, {remote_close, "
               "[1000]}]}]}",
               "bad_option", "names remote_close more than once");
}

/* ------------------------------------------------------------------------ */
/* encoders                                                                  */

static void d_version(const ei_x_buff *x, int *i)
{
    int v;
    *i = 0;
    assert_int_equal(ei_decode_version(x->buff, i, &v), 0);
}
static void d_tuple(const ei_x_buff *x, int *i, int n)
{
    int a;
    assert_int_equal(ei_decode_tuple_header(x->buff, i, &a), 0);
    assert_int_equal(a, n);
}
static void d_atom(const ei_x_buff *x, int *i, const char *want)
{
    char a[MAXATOMLEN_UTF8];
    assert_int_equal(ei_decode_atom(x->buff, i, a), 0);
    assert_string_equal(a, want);
}
static void d_long(const ei_x_buff *x, int *i, long long want)
{
    long long v;
    assert_int_equal(ei_decode_longlong(x->buff, i, &v), 0);
    assert_true(v == want);
}
static void d_ulong(const ei_x_buff *x, int *i, unsigned long long want)
{
    unsigned long long v;
    assert_int_equal(ei_decode_ulonglong(x->buff, i, &v), 0);
    assert_true(v == want);
}
static void d_bin(const ei_x_buff *x, int *i, const void *want, size_t n)
{
    int type, size;
    assert_int_equal(ei_get_type(x->buff, i, &type, &size), 0);
    assert_int_equal(type, ERL_BINARY_EXT);
    assert_int_equal(size, (int)n);
    char *b = malloc(n + 1);
    long got;
    assert_int_equal(ei_decode_binary(x->buff, i, b, &got), 0);
    assert_int_equal(got, (long)n);
    if (n)
        assert_memory_equal(b, want, n);
    free(b);
}
static void d_end(const ei_x_buff *x, int i) { assert_int_equal(i, x->index); }

static const struct wsc_header HDRS[] = {
    {"Server", 6, "test", 4},
    {"X-Bin", 5, "a\0b", 3},
    {"Empty", 5, "", 0},
};

static void d_headers(const ei_x_buff *x, int *i, const struct wsc_header *h, size_t n)
{
    int len;
    assert_int_equal(ei_decode_list_header(x->buff, i, &len), 0);
    assert_int_equal(len, (int)n);
    for (size_t k = 0; k < n; k++) {
        d_tuple(x, i, 2);
        d_bin(x, i, h[k].name, h[k].name_len);
        d_bin(x, i, h[k].value, h[k].value_len);
    }
    if (n) {
        assert_int_equal(ei_decode_list_header(x->buff, i, &len), 0);
        assert_int_equal(len, 0);
    }
}

static void test_enc_up(void **state)
{
    (void)state;
    ei_x_buff x = {0};
    int i, arity;
    assert_int_equal(wsp_enc_up(&x, 4294967295u, 101, HDRS, 3, "chat", 4, -1), 0);
    d_version(&x, &i);
    d_tuple(&x, &i, 3);
    d_atom(&x, &i, "up");
    d_ulong(&x, &i, 4294967295u);
    assert_int_equal(ei_decode_map_header(x.buff, &i, &arity), 0);
    assert_int_equal(arity, 3);
    d_atom(&x, &i, "status");
    d_long(&x, &i, 101);
    d_atom(&x, &i, "headers");
    d_headers(&x, &i, HDRS, 3);
    d_atom(&x, &i, "protocol");
    d_bin(&x, &i, "chat", 4);
    d_end(&x, i);
    ei_x_free(&x);

    assert_int_equal(wsp_enc_up(&x, 1, 101, NULL, 0, NULL, 0, -1), 0);
    d_version(&x, &i);
    d_tuple(&x, &i, 3);
    d_atom(&x, &i, "up");
    d_long(&x, &i, 1);
    assert_int_equal(ei_decode_map_header(x.buff, &i, &arity), 0);
    d_atom(&x, &i, "status");
    d_long(&x, &i, 101);
    d_atom(&x, &i, "headers");
    d_headers(&x, &i, NULL, 0);
    d_atom(&x, &i, "protocol");
    d_atom(&x, &i, "undefined");
    d_end(&x, i);
    ei_x_free(&x);

    /* wss: whether the TLS session was resumed */
    for (int resumed = 0; resumed <= 1; resumed++) {
        assert_int_equal(wsp_enc_up(&x, 2, 101, NULL, 0, NULL, 0, resumed), 0);
        d_version(&x, &i);
        d_tuple(&x, &i, 3);
        d_atom(&x, &i, "up");
        d_long(&x, &i, 2);
        assert_int_equal(ei_decode_map_header(x.buff, &i, &arity), 0);
        assert_int_equal(arity, 4);
        d_atom(&x, &i, "tls_resumed");
        d_atom(&x, &i, resumed ? "true" : "false");
        d_atom(&x, &i, "status");
        d_long(&x, &i, 101);
        d_atom(&x, &i, "headers");
        d_headers(&x, &i, NULL, 0);
        d_atom(&x, &i, "protocol");
        d_atom(&x, &i, "undefined");
        d_end(&x, i);
        ei_x_free(&x);
    }
}

static void test_enc_closed(void **state)
{
    (void)state;
    ei_x_buff x = {0};
    int i;
    assert_int_equal(wsp_enc_closed_atom(&x, 5, "econnrefused"), 0);
    d_version(&x, &i);
    d_tuple(&x, &i, 3);
    d_atom(&x, &i, "closed");
    d_long(&x, &i, 5);
    d_atom(&x, &i, "econnrefused");
    d_end(&x, i);
    ei_x_free(&x);

    assert_int_equal(wsp_enc_closed_code(&x, 6, "remote", 1000, "bye", 3), 0);
    d_version(&x, &i);
    d_tuple(&x, &i, 3);
    d_atom(&x, &i, "closed");
    d_long(&x, &i, 6);
    d_tuple(&x, &i, 3);
    d_atom(&x, &i, "remote");
    d_long(&x, &i, 1000);
    d_bin(&x, &i, "bye", 3);
    d_end(&x, i);
    ei_x_free(&x);

    assert_int_equal(wsp_enc_closed_code(&x, 6, "protocol_error", 1002, NULL, 0), 0);
    d_version(&x, &i);
    d_tuple(&x, &i, 3);
    d_atom(&x, &i, "closed");
    d_long(&x, &i, 6);
    d_tuple(&x, &i, 3);
    d_atom(&x, &i, "protocol_error");
    d_long(&x, &i, 1002);
    d_bin(&x, &i, "", 0);
    d_end(&x, i);
    ei_x_free(&x);

    assert_int_equal(wsp_enc_closed_detail(&x, 7, "tls", "certificate verify failed", 25), 0);
    d_version(&x, &i);
    d_tuple(&x, &i, 3);
    d_atom(&x, &i, "closed");
    d_long(&x, &i, 7);
    d_tuple(&x, &i, 2);
    d_atom(&x, &i, "tls");
    d_bin(&x, &i, "certificate verify failed", 25);
    d_end(&x, i);
    ei_x_free(&x);

    assert_int_equal(wsp_enc_closed_tag_atom(&x, 8, "dns", "nxdomain"), 0);
    d_version(&x, &i);
    d_tuple(&x, &i, 3);
    d_atom(&x, &i, "closed");
    d_long(&x, &i, 8);
    d_tuple(&x, &i, 2);
    d_atom(&x, &i, "dns");
    d_atom(&x, &i, "nxdomain");
    d_end(&x, i);
    ei_x_free(&x);

    assert_int_equal(wsp_enc_closed_http(&x, 9, 401, HDRS, 2), 0);
    d_version(&x, &i);
    d_tuple(&x, &i, 3);
    d_atom(&x, &i, "closed");
    d_long(&x, &i, 9);
    d_tuple(&x, &i, 3);
    d_atom(&x, &i, "http_status");
    d_long(&x, &i, 401);
    d_headers(&x, &i, HDRS, 2);
    d_end(&x, i);
    ei_x_free(&x);

    assert_int_equal(wsp_enc_closed_http(&x, 9, 500, NULL, 0), 0);
    d_version(&x, &i);
    d_tuple(&x, &i, 3);
    d_atom(&x, &i, "closed");
    d_long(&x, &i, 9);
    d_tuple(&x, &i, 3);
    d_atom(&x, &i, "http_status");
    d_long(&x, &i, 500);
    d_headers(&x, &i, NULL, 0);
    d_end(&x, i);
    ei_x_free(&x);
}

static void test_enc_misc(void **state)
{
    (void)state;
    ei_x_buff x = {0};
    int i;
    assert_int_equal(wsp_enc_error(&x, 0, "badarg", "unknown command foo/2", 21), 0);
    d_version(&x, &i);
    d_tuple(&x, &i, 3);
    d_atom(&x, &i, "error");
    d_long(&x, &i, 0);
    d_tuple(&x, &i, 2);
    d_atom(&x, &i, "badarg");
    d_bin(&x, &i, "unknown command foo/2", 21);
    d_end(&x, i);
    ei_x_free(&x);

    assert_int_equal(wsp_enc_passive(&x, 77), 0);
    d_version(&x, &i);
    d_tuple(&x, &i, 2);
    d_atom(&x, &i, "passive");
    d_long(&x, &i, 77);
    d_end(&x, i);
    ei_x_free(&x);

    static const int64_t rtts[] = {0, 1, 123456789, INT64_MAX, -1};
    for (size_t k = 0; k < sizeof rtts / sizeof rtts[0]; k++) {
        assert_int_equal(wsp_enc_pong(&x, 3, rtts[k]), 0);
        d_version(&x, &i);
        d_tuple(&x, &i, 3);
        d_atom(&x, &i, "pong");
        d_long(&x, &i, 3);
        d_long(&x, &i, rtts[k]);
        d_end(&x, i);
        ei_x_free(&x);
    }
}

static void check_stats(const struct wsp_stats *s)
{
    ei_x_buff x = {0};
    int i, arity;
    assert_int_equal(wsp_enc_stats(&x, 12, s), 0);
    d_version(&x, &i);
    d_tuple(&x, &i, 3);
    d_atom(&x, &i, "stats");
    d_long(&x, &i, 12);
    assert_int_equal(ei_decode_map_header(x.buff, &i, &arity), 0);
    assert_int_equal(arity, 13);
    d_atom(&x, &i, "tls_resumed");
    if (s->tls_resumed < 0) d_atom(&x, &i, "undefined");
    else d_atom(&x, &i, s->tls_resumed ? "true" : "false");
    d_atom(&x, &i, "attempt");
    d_ulong(&x, &i, s->attempt);
    d_atom(&x, &i, "reconnects");
    d_ulong(&x, &i, s->reconnects);
    d_atom(&x, &i, "state");
    d_atom(&x, &i, s->state);
    d_atom(&x, &i, "bytes_in");
    d_ulong(&x, &i, s->bytes_in);
    d_atom(&x, &i, "bytes_out");
    d_ulong(&x, &i, s->bytes_out);
    d_atom(&x, &i, "msgs_in");
    d_ulong(&x, &i, s->msgs_in);
    d_atom(&x, &i, "msgs_out");
    d_ulong(&x, &i, s->msgs_out);
    d_atom(&x, &i, "rtt_us");
    if (s->last_rtt_us < 0) d_atom(&x, &i, "undefined"); else d_long(&x, &i, s->last_rtt_us);
    d_atom(&x, &i, "connected_us");
    if (s->connected_us < 0) d_atom(&x, &i, "undefined"); else d_long(&x, &i, s->connected_us);
    d_atom(&x, &i, "credit");
    if (s->credit < 0) d_atom(&x, &i, "infinity"); else d_long(&x, &i, s->credit);
    d_atom(&x, &i, "msgs_spliced");
    d_ulong(&x, &i, s->msgs_spliced);
    d_atom(&x, &i, "compression");
    if (!s->pmd) {
        d_atom(&x, &i, "false");
    } else {
        const struct wsp_pmd *p = s->pmd;
        assert_int_equal(ei_decode_map_header(x.buff, &i, &arity), 0);
        assert_int_equal(arity, 8);
        d_atom(&x, &i, "server_max_window_bits");
        d_long(&x, &i, p->agreed.server_max_window_bits);
        d_atom(&x, &i, "client_max_window_bits");
        d_long(&x, &i, p->agreed.client_max_window_bits);
        d_atom(&x, &i, "server_no_context_takeover");
        d_atom(&x, &i, p->agreed.server_no_context_takeover ? "true" : "false");
        d_atom(&x, &i, "client_no_context_takeover");
        d_atom(&x, &i, p->agreed.client_no_context_takeover ? "true" : "false");
        d_atom(&x, &i, "bytes_in_wire");
        d_ulong(&x, &i, p->in_wire);
        d_atom(&x, &i, "bytes_in_plain");
        d_ulong(&x, &i, p->in_plain);
        d_atom(&x, &i, "bytes_out_wire");
        d_ulong(&x, &i, p->out_wire);
        d_atom(&x, &i, "bytes_out_plain");
        d_ulong(&x, &i, p->out_plain);
    }
    d_end(&x, i);
    ei_x_free(&x);
}

static void test_enc_stats(void **state)
{
    (void)state;
    struct wsp_pmd pmd = {.agreed = {.server_max_window_bits = 10, .client_max_window_bits = 15,
                                     .server_no_context_takeover = 1},
                          .in_wire = 100, .in_plain = 1000, .out_wire = UINT64_MAX,
                          .out_plain = 7};
    struct wsp_stats a = {"open", 1, 2, 3, 4, 250, 1000000, 10, 0, 3, 2, NULL, 1};
    struct wsp_stats b = {"connecting", 0, 0, 0, 0, -1, -1, -1, 5, 0, 0, NULL, -1};
    struct wsp_stats c = {"closing", UINT64_MAX, (uint64_t)1 << 40, 1u << 31, 7, 0, 0, 0,
                          UINT64_MAX, 1, UINT64_MAX, NULL, -1};
    struct wsp_stats d = {"open", 1, 2, 3, 4, 250, 1000000, 10, 0, 3, 2, &pmd, 0};
    check_stats(&a);
    check_stats(&b);
    check_stats(&c);
    check_stats(&d);

    /* the program's own figures */
    ei_x_buff x = {0};
    int i, arity;
    assert_int_equal(wsp_enc_program_stats(&x, 3, 1), 0);
    d_version(&x, &i);
    d_tuple(&x, &i, 3);
    d_atom(&x, &i, "stats");
    d_long(&x, &i, 0);
    assert_int_equal(ei_decode_map_header(x.buff, &i, &arity), 0);
    assert_int_equal(arity, 2);
    d_atom(&x, &i, "connections");
    d_ulong(&x, &i, 3);
    d_atom(&x, &i, "lingering");
    d_ulong(&x, &i, 1);
    d_end(&x, i);
    ei_x_free(&x);
}

/* An encoded error event decodes back to itself (and to nothing we accept
 * as a command: events and commands are different grammars). */
static void test_enc_then_decode(void **state)
{
    (void)state;
    ei_x_buff x = {0};
    assert_int_equal(wsp_enc_error(&x, 3, "badarg", "x", 1), 0);
    expect_err_bytes(x.buff, (size_t)x.index, "badarg", "unknown command error/3");
    ei_x_free(&x);
    assert_int_equal(wsp_enc_passive(&x, 3), 0);
    expect_err_bytes(x.buff, (size_t)x.index, "badarg", "unknown command passive/2");
    ei_x_free(&x);
}

/* closed -> down keeps the reason term and adds the retry facts */
/* {proxy, {Type, Host, Port, Username, Password}} and the {closed, Id,
 * {proxy, ...}} events */
static void test_connect_proxy(void **state)
{
    (void)state;
    struct wsp_cmd cmd;
    const struct wsp_connect_opts *o = dec_opts("[]", &cmd);
    assert_int_equal(o->proxy.type, WSP_PROXY_NONE);
    wsp_cmd_free(&cmd);
    o = dec_opts("[{proxy, {http, <<\"p.example\">>, 3128, <<>>, <<>>}}]", &cmd);
    assert_int_equal(o->proxy.type, WSP_PROXY_HTTP);
    assert_string_equal(o->proxy.host, "p.example");
    assert_int_equal(o->proxy.port, 3128);
    assert_null(o->proxy.username);
    assert_null(o->proxy.password);
    wsp_cmd_free(&cmd);
    /* the later occurrence wins; a username without a password gets "" */
    o = dec_opts("[{proxy, {http, <<\"a\">>, 1, <<\"u\">>, <<\"p\">>}}, "
                 "{proxy, {socks5, <<\"::1\">>, 1080, <<\"u\">>, <<>>}}]", &cmd);
    assert_int_equal(o->proxy.type, WSP_PROXY_SOCKS5);
    assert_string_equal(o->proxy.host, "::1");
    assert_string_equal(o->proxy.username, "u");
    assert_string_equal(o->proxy.password, "");
    wsp_cmd_free(&cmd);

    expect_err("{connect, 1, <<\"ws://h\">>, [{proxy, <<\"http://h:1\">>}]}", "bad_option",
               "option proxy must be {Type, Host, Port, Username, Password}");
    expect_err("{connect, 1, <<\"ws://h\">>, [{proxy, {ftp, <<\"h\">>, 1, <<>>, <<>>}}]}",
               "bad_option", "the type must be http or socks5");
    expect_err("{connect, 1, <<\"ws://h\">>, [{proxy, {http, <<>>, 1, <<>>, <<>>}}]}",
               "bad_option", "the host must be");
    expect_err("{connect, 1, <<\"ws://h\">>, [{proxy, {http, <<\"h\">>, 0, <<>>, <<>>}}]}",
               "bad_option", "the port must be an integer 1..65535");
    expect_err("{connect, 1, <<\"ws://h\">>, [{proxy, {http, <<\"h\">>, 65536, <<>>, <<>>}}]}",
               "bad_option", "the port must be");
    expect_err("{connect, 1, <<\"ws://h\">>, [{proxy, {http, <<\"h\">>, 1, <<>>, <<\"secret\">>}}]}",
               "bad_option", "a password without a username");
    /* the password is never echoed */
    expect_err("{connect, 1, <<\"ws://h\">>, [{proxy, {http, <<\"h\">>, 1, <<\"u\">>, "
               "<<\"sec\\x00ret\">>}}]}",
               "bad_option", "the password must be");
    assert_null(strstr(g_err, "sec"));
    expect_err("{connect, 1, <<\"ws://h\">>, [{proxy, {http, <<\"h\">>, 1, <<\"u\">>, secret}}]}",
               "bad_option", "the password must be a binary");
    assert_null(strstr(g_err, "secret"));

    /* the TLS options of issue 14 */
    o = dec_opts("[{server_name_indication, disable}, "
                 "{pins, [<<\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\">>, "
                 "<<\"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\">>]}]", &cmd);
    assert_int_equal(o->no_sni, 1);
    assert_int_equal(o->npins, 2);
    assert_memory_equal(o->pins[1], "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", 32);
    wsp_cmd_free(&cmd);
    expect_err("{connect, 1, <<\"ws://h\">>, [{server_name_indication, enable}]}", "bad_option",
               "server_name_indication must be disable");
    expect_err("{connect, 1, <<\"ws://h\">>, [{pins, []}]}", "bad_option",
               "pins must be a list of 1 to 64");
    expect_err("{connect, 1, <<\"ws://h\">>, [{pins, [<<\"short\">>]}]}", "bad_option",
               "each pin must be a 32-byte");
    o = dec_opts("[{cacerts, [<<\"a\">>, <<\"bc\">>]}, {versions, [tlsv1.3, tlsv1.2]}, "
                 "{ciphers, <<\"ECDHE-ECDSA-AES128-GCM-SHA256\">>}, "
                 "{ciphersuites, <<\"TLS_AES_128_GCM_SHA256\">>}]", &cmd);
    assert_int_equal(o->ncacerts, 2);
    assert_int_equal(o->cacert_lens[1], 2);
    assert_memory_equal(o->cacerts[1], "bc", 2);
    assert_int_equal(o->min_version, 0x0303);
    assert_int_equal(o->max_version, 0x0304);
    assert_string_equal(o->ciphers, "ECDHE-ECDSA-AES128-GCM-SHA256");
    assert_string_equal(o->ciphersuites, "TLS_AES_128_GCM_SHA256");
    wsp_cmd_free(&cmd);
    /* reuse_sessions (issue 14): on unless false */
    o = dec_opts("[{verify, verify_none}]", &cmd);
    assert_int_equal(o->no_session_reuse, 0);
    wsp_cmd_free(&cmd);
    o = dec_opts("[{reuse_sessions, false}]", &cmd);
    assert_int_equal(o->no_session_reuse, 1);
    wsp_cmd_free(&cmd);
    o = dec_opts("[{reuse_sessions, false}, {reuse_sessions, true}]", &cmd);
    assert_int_equal(o->no_session_reuse, 0);
    wsp_cmd_free(&cmd);
    expect_err("{connect, 1, <<\"ws://h\">>, [{reuse_sessions, yes}]}", "bad_option",
               "reuse_sessions must be true or false, got atom yes");
    expect_err("{connect, 1, <<\"ws://h\">>, [{reuse_sessions, 1}]}", "bad_option",
               "reuse_sessions must be true or false, got");
    o = dec_opts("[{versions, [tlsv1.3]}]", &cmd);
    assert_int_equal(o->min_version, 0x0304);
    assert_int_equal(o->max_version, 0x0304);
    wsp_cmd_free(&cmd);
    expect_err("{connect, 1, <<\"ws://h\">>, [{cacerts, []}]}", "bad_option",
               "cacerts must be a list of 1 to 4096");
    expect_err("{connect, 1, <<\"ws://h\">>, [{cacerts, [<<\"a\">>, <<>>]}]}", "bad_option",
               "each must be a non-empty binary");
    expect_err("{connect, 1, <<\"ws://h\">>, [{versions, [tlsv1.1]}]}", "bad_option",
               "'tlsv1.2' or 'tlsv1.3'");
    expect_err("{connect, 1, <<\"ws://h\">>, [{ciphers, <<>>}]}", "bad_option",
               "option ciphers must not be empty");

    ei_x_buff x = {0};
    int i;
    assert_int_equal(wsp_enc_closed_proxy_atom(&x, 5, "econnrefused"), 0);
    d_version(&x, &i);
    d_tuple(&x, &i, 3);
    d_atom(&x, &i, "closed");
    d_long(&x, &i, 5);
    d_tuple(&x, &i, 2);
    d_atom(&x, &i, "proxy");
    d_atom(&x, &i, "econnrefused");
    d_end(&x, i);
    assert_int_equal(wsp_enc_closed_proxy_tag(&x, 5, "socks5", "host_unreachable", NULL, 0), 0);
    d_version(&x, &i);
    d_tuple(&x, &i, 3);
    d_atom(&x, &i, "closed");
    d_long(&x, &i, 5);
    d_tuple(&x, &i, 2);
    d_atom(&x, &i, "proxy");
    d_tuple(&x, &i, 2);
    d_atom(&x, &i, "socks5");
    d_atom(&x, &i, "host_unreachable");
    d_end(&x, i);
    assert_int_equal(wsp_enc_closed_proxy_tag(&x, 5, "bad_response", NULL, "why", 3), 0);
    d_version(&x, &i);
    d_tuple(&x, &i, 3);
    d_atom(&x, &i, "closed");
    d_long(&x, &i, 5);
    d_tuple(&x, &i, 2);
    d_atom(&x, &i, "proxy");
    d_tuple(&x, &i, 2);
    d_atom(&x, &i, "bad_response");
    d_bin(&x, &i, "why", 3);
    d_end(&x, i);
    assert_int_equal(wsp_enc_closed_proxy_http(&x, 5, 407, HDRS, 2), 0);
    d_version(&x, &i);
    d_tuple(&x, &i, 3);
    d_atom(&x, &i, "closed");
    d_long(&x, &i, 5);
    d_tuple(&x, &i, 2);
    d_atom(&x, &i, "proxy");
    d_tuple(&x, &i, 3);
    d_atom(&x, &i, "http_status");
    d_long(&x, &i, 407);
    d_headers(&x, &i, HDRS, 2);
    d_end(&x, i);
    ei_x_free(&x);
}

/* {cert, [DER]}, {key, Bin}, {password, Bin}: copied with their lengths;
 * bounds; errors never quote the key or the password */
static void test_connect_client_cert(void **state)
{
    (void)state;
    struct wsp_cmd cmd;
    const struct wsp_connect_opts *o =
        dec_opts("[{cert, [<<\"leaf\">>, <<\"ca\">>]}, {key, <<\"-----BEGIN k\">>}, "
                 "{password, <<\"p\\x00w\">>}]", &cmd);
    assert_int_equal(o->ncerts, 2);
    assert_int_equal(o->cert_lens[0], 4);
    assert_memory_equal(o->certs[0], "leaf", 4);
    assert_memory_equal(o->certs[1], "ca", 2);
    assert_int_equal(o->key_len, 12);
    assert_memory_equal(o->key, "-----BEGIN k", 12);
    assert_int_equal(o->password_len, 3); /* any byte, NUL included */
    assert_memory_equal(o->password, "p\0w", 3);
    wsp_cmd_free(&cmd);
    /* a later occurrence wins (the earlier one freed: ASan checks) */
    o = dec_opts("[{key, <<\"one\">>}, {key, <<\"second\">>}, {password, <<\"a\">>}, "
                 "{password, <<\"bb\">>}, {cert, [<<\"x\">>]}, {cert, [<<\"yz\">>]}]", &cmd);
    assert_int_equal(o->key_len, 6);
    assert_memory_equal(o->key, "second", 6);
    assert_int_equal(o->password_len, 2);
    assert_int_equal(o->ncerts, 1);
    assert_int_equal(o->cert_lens[0], 2);
    wsp_cmd_free(&cmd);

    expect_err("{connect, 1, <<\"ws://h\">>, [{cert, []}]}", "bad_option",
               "cert must be a list of 1 to 16");
    expect_err("{connect, 1, <<\"ws://h\">>, [{cert, <<\"der\">>}]}", "bad_option",
               "cert must be a list of 1 to 16");
    expect_err("{connect, 1, <<\"ws://h\">>, [{cert, [<<\"a\">>, <<>>]}]}", "bad_option",
               "cert: each must be a non-empty binary");
    expect_err("{connect, 1, <<\"ws://h\">>, [{cert, [<<\"a\">> | <<\"b\">>]}]}",
               "bad_option", "cert must be a proper list");
    expect_err("{connect, 1, <<\"ws://h\">>, [{cert, [a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a]}]}",
               "bad_option", "cert must be a list of 1 to 16");
    expect_err("{connect, 1, <<\"ws://h\">>, [{key, <<>>}]}", "bad_option",
               "key must be 1 to 65536 bytes, got 0");
    expect_err("{connect, 1, <<\"ws://h\">>, [{password, <<>>}]}", "bad_option",
               "password must be 1 to 1024 bytes, got 0");
    /* the value is not quoted: "secret" appears nowhere in the message */
    expect_err("{connect, 1, <<\"ws://h\">>, [{password, \"secret\"}]}", "bad_option",
               "option password must be a binary");
    assert_null(strstr(g_err, "secret"));
    expect_err("{connect, 1, <<\"ws://h\">>, [{key, {pkinfo, <<\"secret\">>}}]}",
               "bad_option", "option key must be a binary");
    assert_null(strstr(g_err, "secret"));

    /* the size bounds, on packets made with ei */
    static const struct {
        const char *name;
        size_t len;
        const char *msg;
    } big[] = {
        {"key", 65537, "key must be 1 to 65536 bytes, got 65537"},
        {"password", 1025, "password must be 1 to 1024 bytes, got 1025"},
    };
    for (size_t k = 0; k < sizeof big / sizeof big[0]; k++) {
        uint8_t *v = malloc(big[k].len);
        assert_non_null(v);
        memset(v, 'z', big[k].len);
        ei_x_buff x;
        ei_x_new_with_version(&x);
        ei_x_encode_tuple_header(&x, 4);
        ei_x_encode_atom(&x, "connect");
        ei_x_encode_long(&x, 1);
        ei_x_encode_binary(&x, "ws://h", 6);
        ei_x_encode_list_header(&x, 1);
        ei_x_encode_tuple_header(&x, 2);
        ei_x_encode_atom(&x, big[k].name);
        ei_x_encode_binary(&x, v, (long)big[k].len);
        ei_x_encode_empty_list(&x);
        expect_err_bytes(x.buff, (size_t)x.index, "bad_option", big[k].msg);
        /* one byte less: accepted */
        ei_x_free(&x);
        ei_x_new_with_version(&x);
        ei_x_encode_tuple_header(&x, 4);
        ei_x_encode_atom(&x, "connect");
        ei_x_encode_long(&x, 1);
        ei_x_encode_binary(&x, "ws://h", 6);
        ei_x_encode_list_header(&x, 1);
        ei_x_encode_tuple_header(&x, 2);
        ei_x_encode_atom(&x, big[k].name);
        ei_x_encode_binary(&x, v, (long)big[k].len - 1);
        ei_x_encode_empty_list(&x);
        assert_int_equal(dec_bytes(x.buff, (size_t)x.index, &cmd), 0);
        wsp_cmd_free(&cmd);
        ei_x_free(&x);
        free(v);
    }
}

static void test_enc_closed_to_down(void **state)
{
    (void)state;
    ei_x_buff x = {0}, y = {0};
    int i, arity;
    assert_int_equal(wsp_enc_closed_code(&x, 9, "remote", 1001, "going away", 10), 0);
    assert_int_equal(wsp_enc_closed_to_down(&x, &y, 3, 2000, 17), 0);
    d_version(&y, &i);
    d_tuple(&y, &i, 4);
    d_atom(&y, &i, "down");
    d_long(&y, &i, 9);
    d_tuple(&y, &i, 3);
    d_atom(&y, &i, "remote");
    d_long(&y, &i, 1001);
    d_bin(&y, &i, "going away", 10);
    assert_int_equal(ei_decode_map_header(y.buff, &i, &arity), 0);
    assert_int_equal(arity, 3);
    d_atom(&y, &i, "attempt");
    d_ulong(&y, &i, 3);
    d_atom(&y, &i, "delay_ms");
    d_long(&y, &i, 2000);
    d_atom(&y, &i, "unsent_bytes");
    d_ulong(&y, &i, 17);
    d_end(&y, i);
    assert_int_equal(wsp_enc_closed_atom(&x, 4, "econnrefused"), 0);
    assert_int_equal(wsp_enc_closed_to_down(&x, &y, 1, -1, 0), 0);
    d_version(&y, &i);
    d_tuple(&y, &i, 4);
    d_atom(&y, &i, "down");
    d_long(&y, &i, 4);
    d_atom(&y, &i, "econnrefused");
    assert_int_equal(ei_decode_map_header(y.buff, &i, &arity), 0);
    d_atom(&y, &i, "attempt");
    d_ulong(&y, &i, 1);
    d_atom(&y, &i, "delay_ms");
    d_atom(&y, &i, "manual");
    ei_x_free(&x);
    ei_x_free(&y);
}

/* {compress, ...} decodes into the permessage-deflate config; bad values
 * are named */
static void compress_cmd(ei_x_buff *x, const char *key, long value, const char *atom)
{
    ei_x_new_with_version(x);
    ei_x_encode_tuple_header(x, 4);
    ei_x_encode_atom(x, "connect");
    ei_x_encode_long(x, 7);
    ei_x_encode_binary(x, "ws://h/", 7);
    ei_x_encode_list_header(x, 1);
    ei_x_encode_tuple_header(x, 2);
    ei_x_encode_atom(x, "compress");
    if (!key) {
        ei_x_encode_atom(x, atom);
    } else {
        ei_x_encode_list_header(x, 1);
        ei_x_encode_tuple_header(x, 2);
        ei_x_encode_atom(x, key);
        if (atom)
            ei_x_encode_atom(x, atom);
        else
            ei_x_encode_long(x, value);
        ei_x_encode_empty_list(x);
    }
    ei_x_encode_empty_list(x);
}

static void test_connect_compress_option(void **state)
{
    (void)state;
    ei_x_buff x = {0};
    struct wsp_cmd cmd;
    const char *what;
    char err[256];
    static const struct {
        const char *key;
        long value;
        const char *atom;
        const char *err; /* NULL: accepted */
    } cases[] = {
        {NULL, 0, "false", NULL},
        {"client_max_window_bits", 0, "true", NULL},
        {"client_max_window_bits", 9, NULL, NULL},
        {"client_max_window_bits", 8, NULL, "client_max_window_bits must be true or an integer from 9 to 15, got 8"},
        {"server_max_window_bits", 8, NULL, NULL},
        {"server_max_window_bits", 16, NULL, "server_max_window_bits must be an integer from 8 to 15, got 16"},
        {"server_no_context_takeover", 0, "true", NULL},
        {"client_no_context_takeover", 0, "yes", "client_no_context_takeover must be true or false"},
        {"level", 10, NULL, "level must be an integer from 0 to 9"},
        {"mem_level", 0, NULL, "mem_level must be an integer from 1 to 9"},
        {"threshold", -1, NULL, "threshold must be a non-negative integer"},
        {"window", 1, NULL, "compress: unknown key window"},
        {NULL, 0, "maybe", "option compress must be false or a list"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        compress_cmd(&x, cases[k].key, cases[k].value, cases[k].atom);
        int r = wsp_decode_command((const uint8_t *)x.buff, (size_t)x.index, &cmd, &what, err,
                                   sizeof err);
        if (cases[k].err) {
            assert_int_equal(r, -1);
            assert_string_equal(what, "bad_option");
            if (!strstr(err, cases[k].err))
                fail_msg("case %zu: %s", k, err);
        } else {
            assert_int_equal(r, 0);
            wsp_cmd_free(&cmd);
        }
        ei_x_free(&x);
    }
    compress_cmd(&x, "server_max_window_bits", 11, NULL);
    assert_int_equal(wsp_decode_command((const uint8_t *)x.buff, (size_t)x.index, &cmd, &what,
                                        err, sizeof err), 0);
    assert_int_equal(cmd.connect->compress.enabled, 1);
    assert_int_equal(cmd.connect->compress.server_max_window_bits, 11);
    assert_int_equal(cmd.connect->compress.client_max_window_bits, 0);
    assert_int_equal(cmd.connect->compress.level, WSP_PMD_DEFAULT_LEVEL);
    assert_int_equal(cmd.connect->compress.threshold, WSP_PMD_DEFAULT_THRESHOLD);
    wsp_cmd_free(&cmd);
    ei_x_free(&x);
    compress_cmd(&x, NULL, 0, "false");
    assert_int_equal(wsp_decode_command((const uint8_t *)x.buff, (size_t)x.index, &cmd, &what,
                                        err, sizeof err), 0);
    assert_int_equal(cmd.connect->compress.enabled, 0);
    wsp_cmd_free(&cmd);
    ei_x_free(&x);
}

/* retry options decode into the backoff policy; bad ones are named */
/* {connect, 7, <<"ws://h/">>, [{retry, [{jitter, <atom J>}]}]} decoded
 * ([{delay, 250}] for J NULL): 0 and the connection's jitter mode in *mode,
 * or -1 and the error. */
static int decode_jitter_atom(const char *j, int *mode, char *err, size_t errlen)
{
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 4);
    ei_x_encode_atom(&x, "connect");
    ei_x_encode_long(&x, 7);
    ei_x_encode_binary(&x, "ws://h/", 7);
    ei_x_encode_list_header(&x, 1);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "retry");
    ei_x_encode_list_header(&x, 1);
    ei_x_encode_tuple_header(&x, 2);
    if (j) {
        ei_x_encode_atom(&x, "jitter");
        ei_x_encode_atom(&x, j);
    } else {
        ei_x_encode_atom(&x, "delay");
        ei_x_encode_long(&x, 250);
    }
    ei_x_encode_empty_list(&x);
    ei_x_encode_empty_list(&x);
    struct wsp_cmd cmd;
    const char *what;
    int r = wsp_decode_command((const uint8_t *)x.buff, (size_t)x.index, &cmd, &what, err,
                               errlen);
    if (r == 0) {
        *mode = cmd.connect->retry.jitter_mode;
        wsp_cmd_free(&cmd);
    }
    ei_x_free(&x);
    return r;
}

/* jitter => full | equal: the modes; the policy given without jitter keeps
 * the default (full); another atom is refused by name. */
static void test_connect_retry_jitter_modes(void **state)
{
    (void)state;
    char err[256];
    int mode = -1;
    assert_int_equal(decode_jitter_atom(NULL, &mode, err, sizeof err), 0);
    assert_int_equal(mode, WSP_JITTER_FULL);
    mode = -1;
    assert_int_equal(decode_jitter_atom("full", &mode, err, sizeof err), 0);
    assert_int_equal(mode, WSP_JITTER_FULL);
    assert_int_equal(decode_jitter_atom("equal", &mode, err, sizeof err), 0);
    assert_int_equal(mode, WSP_JITTER_EQUAL);
    assert_int_equal(decode_jitter_atom("half", &mode, err, sizeof err), -1);
    assert_non_null(strstr(err, "jitter must be full, equal or a fraction from 0 to 1"));
    assert_non_null(strstr(err, "half"));
}

static void test_connect_retry_options(void **state)
{
    (void)state;
    ei_x_buff x = {0};
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 4);
    ei_x_encode_atom(&x, "connect");
    ei_x_encode_long(&x, 7);
    ei_x_encode_binary(&x, "ws://h/", 7);
    ei_x_encode_list_header(&x, 3);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "retry");
    ei_x_encode_list_header(&x, 5);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "max_retries");
    ei_x_encode_long(&x, 5);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "delay");
    ei_x_encode_long(&x, 250);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "backoff_factor");
    ei_x_encode_double(&x, 1.5);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "jitter");
    ei_x_encode_long(&x, 0);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "manual");
    ei_x_encode_atom(&x, "true");
    ei_x_encode_empty_list(&x);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "retry_on");
    ei_x_encode_list_header(&x, 2);
    ei_x_encode_atom(&x, "tls");
    ei_x_encode_atom(&x, "http_4xx");
    ei_x_encode_empty_list(&x);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "send_queue");
    ei_x_encode_long(&x, 100);
    ei_x_encode_empty_list(&x);
    struct wsp_cmd cmd;
    const char *what;
    char err[256];
    assert_int_equal(wsp_decode_command((const uint8_t *)x.buff, (size_t)x.index, &cmd, &what,
                                        err, sizeof err), 0);
    const struct wsp_connect_opts *o = cmd.connect;
    assert_int_equal(o->retry.enabled, 1);
    assert_int_equal(o->retry.manual, 1);
    assert_int_equal(o->retry.max_retries, 5);
    assert_int_equal(o->retry.delay_ms, 250);
    assert_int_equal(o->retry.max_delay_ms, 30000);
    assert_true(o->retry.factor == 1.5);
    assert_true(o->retry.jitter == 0.0);
    assert_int_equal(o->retry.jitter_mode, WSP_JITTER_SPREAD);
    assert_int_equal(o->retry.retry_on, WSP_FC_TLS | WSP_FC_HTTP_4XX);
    assert_int_equal(o->send_queue, 100);
    wsp_cmd_free(&cmd);

    /* absent: no retries */
    ei_x_free(&x);
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 4);
    ei_x_encode_atom(&x, "connect");
    ei_x_encode_long(&x, 7);
    ei_x_encode_binary(&x, "ws://h/", 7);
    ei_x_encode_list_header(&x, 1);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "retry");
    ei_x_encode_list_header(&x, 1);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "jitter");
    ei_x_encode_double(&x, 1.5);
    ei_x_encode_empty_list(&x);
    ei_x_encode_empty_list(&x);
    assert_int_equal(wsp_decode_command((const uint8_t *)x.buff, (size_t)x.index, &cmd, &what,
                                        err, sizeof err), -1);
    assert_string_equal(what, "bad_option");
    assert_non_null(strstr(err, "jitter must be full, equal or a fraction from 0 to 1"));
    assert_null(cmd.connect);
    ei_x_free(&x);

    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 3);
    ei_x_encode_atom(&x, "reconnect");
    ei_x_encode_long(&x, 7);
    ei_x_encode_long(&x, 1500);
    assert_int_equal(wsp_decode_command((const uint8_t *)x.buff, (size_t)x.index, &cmd, &what,
                                        err, sizeof err), 0);
    assert_int_equal(cmd.type, WSP_CMD_RECONNECT);
    assert_int_equal(cmd.id, 7);
    assert_int_equal(cmd.delay_ms, 1500);
    ei_x_free(&x);
}

static void test_data_entry_header(void **state)
{
    (void)state;
    uint8_t h[WSP_DATA_ENTRY_HDR];
    wsp_data_entry_header(h, 0x01020304u, WSC_OP_TEXT, 0xa0b0c0d0u);
    static const uint8_t want[] = {1, 2, 3, 4, 1, 0xa0, 0xb0, 0xc0, 0xd0};
    assert_memory_equal(h, want, sizeof want);
    wsp_data_entry_header(h, 4294967295u, WSC_OP_BINARY, 0);
    static const uint8_t want2[] = {0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0};
    assert_memory_equal(h, want2, sizeof want2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enc_closed_to_down),
        cmocka_unit_test(test_connect_retry_options),
        cmocka_unit_test(test_connect_retry_jitter_modes),
        cmocka_unit_test(test_connect_compress_option),
        cmocka_unit_test_teardown(test_connect_defaults, teardown),
        cmocka_unit_test_teardown(test_connect_all_options, teardown),
        cmocka_unit_test_teardown(test_connect_option_values, teardown),
        cmocka_unit_test_teardown(test_connect_limits, teardown),
        cmocka_unit_test_teardown(test_connect_repeated_options, teardown),
        cmocka_unit_test_teardown(test_connect_bad, teardown),
        cmocka_unit_test_teardown(test_connect_retry_on, teardown),
        cmocka_unit_test_teardown(test_ids, teardown),
        cmocka_unit_test_teardown(test_top_level, teardown),
        cmocka_unit_test_teardown(test_atom_and_int_encodings, teardown),
        cmocka_unit_test_teardown(test_send_term, teardown),
        cmocka_unit_test_teardown(test_send_raw, teardown),
        cmocka_unit_test_teardown(test_close, teardown),
        cmocka_unit_test_teardown(test_active, teardown),
        cmocka_unit_test_teardown(test_truncated_every_byte, teardown),
        cmocka_unit_test_teardown(test_mutations, teardown),
        cmocka_unit_test_teardown(test_random_bytes, teardown),
        cmocka_unit_test_teardown(test_huge_lengths, teardown),
        cmocka_unit_test_teardown(test_deep_nesting, teardown),
        cmocka_unit_test_teardown(test_enc_up, teardown),
        cmocka_unit_test_teardown(test_enc_closed, teardown),
        cmocka_unit_test_teardown(test_connect_proxy, teardown),
        cmocka_unit_test_teardown(test_connect_client_cert, teardown),
        cmocka_unit_test_teardown(test_enc_misc, teardown),
        cmocka_unit_test_teardown(test_enc_stats, teardown),
        cmocka_unit_test_teardown(test_enc_then_decode, teardown),
        cmocka_unit_test_teardown(test_data_entry_header, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
