/*
 * libFuzzer harness: what the BEAM hands over for a connect, turned into the
 * upgrade request (wsc_parse_url, then wsc_build_request).
 *
 * Input layout: fields separated by byte 0x00
 *   field 0    the URL (exact-size heap buffer, not NUL-terminated)
 *   field 1    the Sec-WebSocket-Key
 *   then       up to 4 protocols while a field starts with 'P' (rest of it),
 *              then name/value pairs of extra headers (values may hold any
 *              byte but NUL, names too: the codec must refuse bad ones)
 * The first byte of the URL field, if it is a digit d, is removed and caps
 * the output buffer at d * 32 bytes (0: exactly the needed size - 1).
 *
 * Checked: a parsed URL has a non-empty lower-case host, a path starting
 * with '/' with visible ASCII only and no '#', a non-zero port; a built
 * request fits cap, starts with "GET <path> HTTP/1.1\r\n", holds no NUL and
 * ends with the only CRLFCRLF it contains; with a smaller buffer the build
 * gives WSC_ENOSPC, with a bigger one the same bytes.
 */
#define _GNU_SOURCE 1
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_codec.h"

#define CHECK(c)                                                          \
    do {                                                                  \
        if (!(c)) {                                                       \
            fprintf(stderr, "fuzz_request: invariant violated at line %d: %s\n", \
                    __LINE__, #c);                                        \
            abort();                                                      \
        }                                                                 \
    } while (0)

#define MAXF 16

static struct wsc_url url; /* 4 KiB: keep off the stack */

static char *dupz(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    CHECK(s != NULL);
    if (n)
        memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *f[MAXF];
    size_t fl[MAXF], nf = 0, start = 0;
    for (size_t i = 0; i <= size && nf < MAXF; i++) {
        if (i == size || data[i] == 0) {
            f[nf] = data + start;
            fl[nf++] = i - start;
            start = i + 1;
        }
    }
    if (nf < 2)
        return 0;

    int capsel = -1;
    if (fl[0] > 0 && f[0][0] >= '0' && f[0][0] <= '9') {
        capsel = f[0][0] - '0';
        f[0]++;
        fl[0]--;
    }

    /* the URL, not NUL-terminated */
    char *u = malloc(fl[0] ? fl[0] : 1);
    CHECK(u != NULL);
    if (fl[0])
        memcpy(u, f[0], fl[0]);
    const char *err = "unset";
    int r = wsc_parse_url(u, fl[0], &url, &err);
    free(u);
    if (r != WSC_OK) {
        CHECK(r == WSC_EURL && err != NULL && strcmp(err, "unset") != 0);
        return 0;
    }
    CHECK(err == NULL);
    size_t hl = strnlen(url.host, sizeof url.host);
    CHECK(hl > 0 && hl < sizeof url.host);
    for (size_t i = 0; i < hl; i++)
        CHECK(!(url.host[i] >= 'A' && url.host[i] <= 'Z'));
    size_t pl = strnlen(url.path, sizeof url.path);
    CHECK(pl > 0 && pl < sizeof url.path && url.path[0] == '/');
    for (size_t i = 0; i < pl; i++)
        CHECK(url.path[i] > 0x20 && url.path[i] < 0x7f && url.path[i] != '#');
    CHECK(url.port != 0);
    CHECK(url.port_explicit || url.port == (url.tls ? 443 : 80));

    /* Host header as the connection would write it */
    char host[300];
    if (url.host_is_ipv6)
        snprintf(host, sizeof host, "[%s]:%u", url.host, (unsigned)url.port);
    else
        snprintf(host, sizeof host, "%s:%u", url.host, (unsigned)url.port);

    char *key = dupz(f[1], fl[1]);
    char *protos[4];
    size_t np = 0, k = 2;
    while (k < nf && np < 4 && fl[k] > 0 && f[k][0] == 'P') {
        protos[np++] = dupz(f[k] + 1, fl[k] - 1);
        k++;
    }
    struct wsc_header hdrs[MAXF / 2];
    size_t nh = 0;
    for (; k + 1 < nf && nh < MAXF / 2; k += 2) {
        hdrs[nh].name = dupz(f[k], fl[k]);
        hdrs[nh].name_len = fl[k];
        hdrs[nh].value = dupz(f[k + 1], fl[k + 1]);
        hdrs[nh].value_len = fl[k + 1];
        nh++;
    }

    /* reference build in a big buffer */
    size_t bigcap = 64 * 1024;
    char *big = malloc(bigcap);
    CHECK(big != NULL);
    err = "unset";
    int n = wsc_build_request(big, bigcap, url.path, host, key,
                              (const char *const *)protos, np, hdrs, nh, &err);
    if (n > 0) {
        CHECK(err == NULL);
        size_t want = strlen("GET ") + pl + strlen(" HTTP/1.1\r\n");
        CHECK((size_t)n >= want && memcmp(big, "GET ", 4) == 0);
        CHECK(memcmp(big + 4, url.path, pl) == 0);
        CHECK(memcmp(big + 4 + pl, " HTTP/1.1\r\n", 11) == 0);
        CHECK(memchr(big, '\0', (size_t)n) == NULL);
        CHECK(memcmp(big + n - 4, "\r\n\r\n", 4) == 0);
        CHECK(memmem(big, (size_t)n, "\r\n\r\n", 4) == big + n - 4);
        /* bare CR or LF only inside CRLF pairs */
        for (int i = 0; i < n; i++) {
            if (big[i] == '\r')
                CHECK(i + 1 < n && big[i + 1] == '\n');
            if (big[i] == '\n')
                CHECK(i > 0 && big[i - 1] == '\r');
        }
        /* an exact-size (or capped) buffer */
        size_t cap = capsel < 0 ? (size_t)n : capsel == 0 ? (size_t)n - 1 : (size_t)capsel * 32;
        char *out = malloc(cap ? cap : 1);
        CHECK(out != NULL);
        int m = wsc_build_request(out, cap, url.path, host, key,
                                  (const char *const *)protos, np, hdrs, nh, NULL);
        if (cap < (size_t)n) {
            CHECK(m == WSC_ENOSPC);
        } else {
            CHECK(m == n && memcmp(out, big, (size_t)n) == 0);
        }
        free(out);
    } else {
        CHECK(n == WSC_EHTTP || n == WSC_ENOSPC);
        if (n == WSC_EHTTP)
            CHECK(err != NULL && strcmp(err, "unset") != 0);
    }
    free(big);

    free(key);
    for (size_t i = 0; i < np; i++)
        free(protos[i]);
    for (size_t i = 0; i < nh; i++) {
        free((char *)hdrs[i].name);
        free((char *)hdrs[i].value);
    }
    return 0;
}
