/*
 * libFuzzer harness: wsp_decode_command fed arbitrary {packet,4} payloads
 * (what the BEAM writes to the port's stdin, without the 4-byte length).
 *
 * Input layout:
 *   byte 0   bits 0-1: error buffer size (0 with err NULL, 1, 17, 256);
 *            bit 2: what == NULL
 *   rest     the packet, in an exact-size heap buffer
 *
 * Checked: on success what == NULL and the command obeys wsp_proto.h (id in
 * range, payload / reason slices inside the packet, control payloads <= 125,
 * close code valid and reason <= 123 bytes of UTF-8, active N in int32
 * range, connect options owned, NUL-terminated, non-empty as documented);
 * on failure what is "badarg" or "bad_option", the message is
 * NUL-terminated inside errcap and nothing is left to free; wsp_cmd_free is
 * safe twice. Leaks are caught by LeakSanitizer.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wsp_proto.h"

#define CHECK(c)                                                          \
    do {                                                                  \
        if (!(c)) {                                                       \
            fprintf(stderr, "fuzz_proto: invariant violated at line %d: %s\n", \
                    __LINE__, #c);                                        \
            abort();                                                      \
        }                                                                 \
    } while (0)

static int inside(const uint8_t *p, size_t n, const uint8_t *buf, size_t len)
{
    if (n == 0)
        return 1;
    return p >= buf && n <= len && (size_t)(p - buf) <= len - n;
}

static void check_str(const char *s)
{
    CHECK(s == NULL || (s[0] != '\0'));
}

static void check_connect(const struct wsp_connect_opts *o)
{
    CHECK(o != NULL);
    CHECK(o->url != NULL && o->url_len > 0 && strlen(o->url) == o->url_len);
    CHECK(o->nheaders == 0 || o->headers != NULL);
    for (size_t k = 0; k < o->nheaders; k++) {
        const struct wsc_header *h = &o->headers[k];
        CHECK(h->name && h->value && h->name_len > 0);
        CHECK(h->name[h->name_len] == '\0' && h->value[h->value_len] == '\0');
    }
    CHECK(o->nprotocols == 0 || o->protocols != NULL);
    for (size_t k = 0; k < o->nprotocols; k++) {
        const char *p = o->protocols[k];
        CHECK(p && p[0]);
        for (; *p; p++)
            CHECK(*p > 0x20 && *p < 0x7f && !strchr("\"(),/:;<=>?@[\\]{}", *p));
    }
    CHECK(o->connect_timeout_ms > 0);
    CHECK(o->max_message_size > 0);
    CHECK(o->active >= WSP_ACTIVE_TRUE && o->active <= WSP_ACTIVE_N);
    CHECK(o->active_n >= INT32_MIN && o->active_n <= INT32_MAX);
    CHECK(o->verify == 0 || o->verify == 1);
    check_str(o->cacertfile);
    check_str(o->certfile);
    check_str(o->keyfile);
    check_str(o->server_name);
    /* cert, key, password: their bytes are read (ASan checks the lengths) */
    CHECK(o->ncerts <= WSP_MAX_CERT_CHAIN && (o->ncerts == 0 || (o->certs && o->cert_lens)));
    unsigned sum = 0;
    for (size_t k = 0; k < o->ncerts; k++) {
        CHECK(o->certs[k] != NULL && o->cert_lens[k] > 0);
        for (size_t i = 0; i < o->cert_lens[k]; i++)
            sum += o->certs[k][i];
    }
    CHECK(!o->key == !o->key_len && o->key_len <= WSP_MAX_KEY_LEN);
    for (size_t i = 0; i < o->key_len; i++)
        sum += o->key[i];
    CHECK(!o->password == !o->password_len && o->password_len <= WSP_MAX_PASSWORD_LEN);
    for (size_t i = 0; i < o->password_len; i++)
        sum += o->password[i];
    CHECK(!o->key || o->key[o->key_len] == 0);
    CHECK(!o->password || o->password[o->password_len] == 0);
    (void)sum;
    /* retry_on: codes a client may be told, the remote_close bit in step */
    const struct wsp_backoff *b = &o->retry;
    CHECK(b->close_retry >= WSP_CLOSE_RETRY_NONE && b->close_retry <= WSP_CLOSE_RETRY_EXCEPT);
    CHECK(b->nclose_codes <= WSP_MAX_CLOSE_CODES);
    for (size_t k = 0; k < b->nclose_codes; k++)
        CHECK(b->close_codes[k] >= 1000 && b->close_codes[k] <= 4999);
    int some = b->close_retry == WSP_CLOSE_RETRY_ALL || b->close_retry == WSP_CLOSE_RETRY_EXCEPT ||
               (b->close_retry == WSP_CLOSE_RETRY_ONLY && b->nclose_codes > 0);
    CHECK(!(b->retry_on & WSP_FC_REMOTE_CLOSE) == !some);
}

static int utf8_ok(const uint8_t *s, size_t n)
{
    wsc_utf8 u = {0};
    return wsc_utf8_feed(&u, s, n) == 0 && wsc_utf8_complete(&u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const size_t caps[4] = {0, 1, 17, 256};
    size_t errcap = caps[data[0] & 3];
    int null_what = data[0] >> 2 & 1;
    size_t len = size - 1;
    uint8_t *buf = malloc(len ? len : 1);
    char *err = errcap ? malloc(errcap) : NULL;
    CHECK(buf != NULL && (errcap == 0 || err != NULL));
    if (len)
        memcpy(buf, data + 1, len);
    if (err)
        memset(err, 'Z', errcap);

    struct wsp_cmd cmd;
    const char *what = "unset";
    int r = wsp_decode_command(buf, len, &cmd, null_what ? NULL : &what, err, errcap);
    if (r == 0) {
        if (!null_what)
            CHECK(what == NULL);
        CHECK(cmd.id >= 1 || cmd.type == WSP_CMD_STATS); /* {stats, 0}: the program */
        switch (cmd.type) {
        case WSP_CMD_CONNECT:
            check_connect(cmd.connect);
            break;
        case WSP_CMD_SEND:
            CHECK(cmd.opcode == WSC_OP_TEXT || cmd.opcode == WSC_OP_BINARY ||
                  cmd.opcode == WSC_OP_PING || cmd.opcode == WSC_OP_PONG);
            CHECK(inside(cmd.payload, cmd.payload_len, buf, len));
            if (cmd.opcode & 0x8)
                CHECK(cmd.payload_len <= 125);
            CHECK(cmd.connect == NULL);
            break;
        case WSP_CMD_CLOSE:
            CHECK(wsc_close_code_valid(cmd.close_code));
            CHECK(cmd.reason_len <= 123);
            CHECK(inside(cmd.reason, cmd.reason_len, buf, len));
            CHECK(utf8_ok(cmd.reason, cmd.reason_len));
            CHECK(cmd.connect == NULL);
            break;
        case WSP_CMD_ACTIVE:
            CHECK(cmd.active >= WSP_ACTIVE_TRUE && cmd.active <= WSP_ACTIVE_N);
            CHECK(cmd.active_n >= INT32_MIN && cmd.active_n <= INT32_MAX);
            CHECK(cmd.connect == NULL);
            break;
        case WSP_CMD_STATS:
            CHECK(cmd.connect == NULL);
            break;
        default: /* commands added later (e.g. reconnect): nothing owned */
            CHECK(cmd.type > WSP_CMD_STATS);
            CHECK(cmd.connect == NULL);
        }
    } else {
        CHECK(r == -1);
        if (!null_what)
            CHECK(what != NULL &&
                  (strcmp(what, "badarg") == 0 || strcmp(what, "bad_option") == 0));
        CHECK(cmd.connect == NULL);
        if (err) {
            CHECK(memchr(err, '\0', errcap) != NULL);
            if (errcap > 1)
                CHECK(err[0] != '\0'); /* something was said */
        }
    }
    wsp_cmd_free(&cmd);
    wsp_cmd_free(&cmd);
    free(err);
    free(buf);
    return 0;
}
