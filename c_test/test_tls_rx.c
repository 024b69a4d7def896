/* cmocka tests of wsp_tls's socket BIO (c_src/wsp_tls.c): real TLS 1.3
 * between a wsp_tls_new client and an OpenSSL server over a socketpair,
 * with a certificate made here. The client's reads go through the BIO that
 * recv(2)s many records at once into a buffer shared by all connections. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "wsp_tls.h"

static SSL_CTX *g_server_ctx, *g_client_ctx;

static int setup_ctx(void **state)
{
    (void)state;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    assert_non_null(key);
    assert_non_null(x);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1,
                               -1, 0);
    X509_set_issuer_name(x, name);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    g_server_ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(g_server_ctx);
    assert_int_equal(SSL_CTX_use_certificate(g_server_ctx, x), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(g_server_ctx, key), 1);
    X509_free(x);
    EVP_PKEY_free(key);
    struct wsp_tls_config cfg = {0}; /* verify off: the certificate is made up */
    char err[256];
    g_client_ctx = wsp_tls_ctx(&cfg, err, sizeof err);
    assert_non_null(g_client_ctx);
    return 0;
}

static int teardown_ctx(void **state)
{
    (void)state;
    SSL_CTX_free(g_server_ctx);
    wsp_tls_free_all();
    return 0;
}

struct pair {
    int cfd, sfd; /* client side (non-blocking, the BIO's), server side */
    SSL *c, *s;
};

static void pair_open(struct pair *p)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    p->cfd = sv[0];
    p->sfd = sv[1];
    assert_int_equal(fcntl(p->cfd, F_SETFL, O_NONBLOCK), 0);
    assert_int_equal(fcntl(p->sfd, F_SETFL, O_NONBLOCK), 0);
    char err[256];
    p->c = wsp_tls_new(g_client_ctx, p->cfd, "localhost", 0, NULL, err, sizeof err);
    assert_non_null(p->c);
    p->s = SSL_new(g_server_ctx);
    assert_non_null(p->s);
    SSL_set_fd(p->s, p->sfd);
    SSL_set_accept_state(p->s);
    int cdone = 0, sdone = 0;
    for (int i = 0; i < 100 && !(cdone && sdone); i++) {
        int ww = 0, ne = 0;
        if (!cdone) {
            int r = wsp_tls_handshake(p->c, &ww, &ne, err, sizeof err);
            assert_true(r >= 0);
            cdone = r == 1;
        }
        if (!sdone) {
            int r = SSL_do_handshake(p->s);
            if (r != 1) {
                int e = SSL_get_error(p->s, r);
                assert_true(e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE);
            }
            sdone = r == 1;
        }
    }
    assert_true(cdone && sdone);
    /* the rbio is ours, and still knows the fd */
    assert_int_equal(SSL_get_fd(p->c), p->cfd);
}

static void pair_close(struct pair *p)
{
    SSL_free(p->c);
    SSL_free(p->s);
    if (p->cfd >= 0) {
        close(p->cfd);
    }
    if (p->sfd >= 0) {
        close(p->sfd);
    }
}

static uint8_t pattern(unsigned seed, size_t i) { return (uint8_t)(i * 31 + i / 4093 + seed * 101); }

/* The server sends n more bytes of its pattern (from *sent), as much as
 * the socket takes; returns how many it sent now. */
static size_t server_send(struct pair *p, unsigned seed, size_t *sent, size_t n)
{
    static uint8_t chunk[16384];
    size_t now = 0;
    while (now < n) {
        size_t k = n - now < sizeof chunk ? n - now : sizeof chunk;
        for (size_t i = 0; i < k; i++) {
            chunk[i] = pattern(seed, *sent + i);
        }
        int w = SSL_write(p->s, chunk, (int)k);
        if (w <= 0) {
            assert_int_equal(SSL_get_error(p->s, w), SSL_ERROR_WANT_WRITE);
            break; /* the socket is full: SSL_write is retried with the same bytes */
        }
        *sent += (size_t)w;
        now += (size_t)w;
    }
    return now;
}

/* The client reads (up to `step` bytes per SSL_read) until WANT_READ or max
 * bytes, checking the pattern; returns the bytes read. */
static size_t client_read(struct pair *p, unsigned seed, size_t *got, size_t step, size_t max)
{
    static uint8_t buf[65536];
    size_t now = 0;
    while (now < max) {
        size_t want = step < max - now ? step : max - now;
        int r = SSL_read(p->c, buf, (int)want);
        if (r <= 0) {
            assert_int_equal(SSL_get_error(p->c, r), SSL_ERROR_WANT_READ);
            break;
        }
        for (int i = 0; i < r; i++) {
            if (buf[i] != pattern(seed, *got + (size_t)i)) {
                fail_msg("byte %zu: %u, not %u", *got + (size_t)i, buf[i],
                         pattern(seed, *got + (size_t)i));
            }
        }
        *got += (size_t)r;
        now += (size_t)r;
    }
    return now;
}

/* A stream of 8 MiB in 16 KiB records arrives whole and in order, read in
 * steps of several sizes; one SSL_read of a record leaves the next records
 * in the BIO (read with one recv), not in the socket. */
static void test_stream(void **state)
{
    (void)state;
    static const size_t steps[] = {1, 100, 16384, 65536};
    for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
        struct pair p;
        pair_open(&p);
        size_t sent = 0, got = 0, total = 8u << 20;
        if (steps[k] == 1) {
            total = 200000; /* a byte per SSL_read: keep it short */
        }
        int saw_held = 0;
        while (got < total) {
            if (sent < total) {
                server_send(&p, (unsigned)k, &sent, total - sent);
            }
            size_t before = got;
            client_read(&p, (unsigned)k, &got, steps[k], steps[k] == 1 ? 4096 : 16384);
            if (got > before && BIO_ctrl_pending(SSL_get_rbio(p.c)) > 0) {
                saw_held = 1;
            }
            client_read(&p, (unsigned)k, &got, steps[k], total);
        }
        assert_int_equal(got, total);
        assert_true(saw_held);
        pair_close(&p);
    }
}

/* Two connections take turns: the first stops with records of its own left
 * in the shared buffer (out of "credit"), the second needs the buffer, so
 * the first's bytes move to a buffer of its own; both streams stay whole. */
static void test_shared_buffer_handover(void **state)
{
    (void)state;
    struct pair a, b;
    pair_open(&a);
    pair_open(&b);
    size_t asent = 0, agot = 0, bsent = 0, bgot = 0, total = 4u << 20;
    int spilled = 0;
    while (agot < total || bgot < total) {
        if (asent < total) {
            server_send(&a, 1, &asent, total - asent);
        }
        if (bsent < total) {
            server_send(&b, 2, &bsent, total - bsent);
        }
        /* a reads one record's worth, leaving the rest of its recv behind */
        client_read(&a, 1, &agot, 4096, 16384);
        size_t held = BIO_ctrl_pending(SSL_get_rbio(a.c));
        /* b reads everything it can: it takes the shared buffer */
        client_read(&b, 2, &bgot, 65536, total);
        if (held > 0 && BIO_ctrl_pending(SSL_get_rbio(a.c)) == held) {
            spilled = 1; /* a's bytes are still there, now in its own buffer */
        }
        client_read(&a, 1, &agot, 65536, total);
    }
    assert_int_equal(agot, total);
    assert_int_equal(bgot, total);
    assert_true(spilled);
    pair_close(&a);
    pair_close(&b);
}

/* A connection freed while its bytes are in the shared buffer gives the
 * buffer up: the next connection's stream is not mixed with them. */
static void test_free_while_holding(void **state)
{
    (void)state;
    struct pair a, b;
    pair_open(&a);
    size_t asent = 0, agot = 0;
    server_send(&a, 3, &asent, 200000);
    client_read(&a, 3, &agot, 1000, 1000);
    assert_true(BIO_ctrl_pending(SSL_get_rbio(a.c)) > 0);
    pair_close(&a);
    pair_open(&b);
    size_t bsent = 0, bgot = 0;
    for (int i = 0; i < 1000 && bgot < 300000; i++) {
        server_send(&b, 4, &bsent, 300000 - bsent);
        client_read(&b, 4, &bgot, 65536, 300000);
    }
    assert_int_equal(bgot, 300000);
    pair_close(&b);
}

/* The server's TCP end closes without close_notify after some data: the
 * client gets the data, then the EOF that OpenSSL reports as a clean end
 * (SSL_OP_IGNORE_UNEXPECTED_EOF needs the BIO to say EOF). */
static void test_eof_without_close_notify(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p);
    size_t sent = 0, got = 0;
    server_send(&p, 5, &sent, 50000);
    close(p.sfd);
    p.sfd = -1;
    static uint8_t buf[65536];
    int r, e = 0;
    while ((r = SSL_read(p.c, buf, sizeof buf)) > 0) {
        for (int i = 0; i < r; i++) {
            assert_int_equal(buf[i], pattern(5, got + (size_t)i));
        }
        got += (size_t)r;
    }
    e = SSL_get_error(p.c, r);
    assert_int_equal(got, 50000);
    assert_int_equal(e, SSL_ERROR_ZERO_RETURN);
    pair_close(&p);
}

/* Writes go through the BIO too: a full socket is WANT_WRITE, and what was
 * written arrives. */
static void test_write(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p);
    static uint8_t msg[100000];
    for (size_t i = 0; i < sizeof msg; i++) {
        msg[i] = pattern(6, i);
    }
    size_t out = 0, in = 0;
    int saw_want_write = 0;
    static uint8_t buf[65536];
    for (int round = 0; round < 10000 && in < 3 * sizeof msg; round++) {
        while (out < 3 * sizeof msg) { /* until the socket is full */
            size_t off = out % sizeof msg, k = sizeof msg - off;
            int w = SSL_write(p.c, msg + off, (int)k);
            if (w <= 0) {
                assert_int_equal(SSL_get_error(p.c, w), SSL_ERROR_WANT_WRITE);
                saw_want_write = 1;
                break;
            }
            out += (size_t)w;
        }
        int r;
        while ((r = SSL_read(p.s, buf, sizeof buf)) > 0) {
            for (int i = 0; i < r; i++) {
                assert_int_equal(buf[i], pattern(6, (in + (size_t)i) % sizeof msg));
            }
            in += (size_t)r;
        }
    }
    assert_int_equal(in, 3 * sizeof msg);
    assert_true(saw_want_write);
    pair_close(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream),
        cmocka_unit_test(test_shared_buffer_handover),
        cmocka_unit_test(test_free_while_holding),
        cmocka_unit_test(test_eof_without_close_notify),
        cmocka_unit_test(test_write),
    };
    return cmocka_run_group_tests(tests, setup_ctx, teardown_ctx);
}
