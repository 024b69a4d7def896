/* cmocka tests of OpenSSL's allocator (c_src/wsp_osslmem.c): sizes,
 * alignment, reuse, realloc across sizes, chunks given back; then OpenSSL
 * itself running on it (a real TLS handshake over a socketpair). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "wsp_osslmem.h"

static void test_sizes_and_alignment(void **state)
{
    (void)state;
    static void *p[600];
    size_t c0, l0, c, l;
    wsp_osslmem_stats(&c0, &l0);
    for (size_t n = 0; n < 600; n++) {
        p[n] = wsp_osslmem_malloc(n);
        assert_non_null(p[n]);
        /* 16-aligned unless the rounded size is an odd multiple of 8 */
        size_t r = n <= 64 ? (n ? (n + 7) / 8 * 8 : 8) : (n + 15) / 16 * 16;
        if (n > 256 || r % 16 == 0) {
            assert_int_equal((uintptr_t)p[n] % 16, 0);
        } else {
            assert_int_equal((uintptr_t)p[n] % 8, 0);
        }
        memset(p[n], (int)(n & 0xff), n);
    }
    wsp_osslmem_stats(&c, &l);
    assert_int_equal(l - l0, 257); /* 0..256 from chunks, the rest from malloc */
    for (size_t n = 0; n < 600; n++) {
        for (size_t k = 0; k < n; k++) {
            assert_int_equal(((uint8_t *)p[n])[k], n & 0xff); /* no overlap */
        }
    }
    for (size_t n = 0; n < 600; n++) {
        wsp_osslmem_free(p[n]);
    }
    wsp_osslmem_stats(&c, &l);
    assert_int_equal(l, l0);
    wsp_osslmem_free(NULL);
}

static void test_reuse_and_give_back(void **state)
{
    (void)state;
    enum { N = 20000 }; /* 48-byte slots: more than one 64 KiB chunk */
    void **p = calloc(N, sizeof *p);
    assert_non_null(p);
    size_t c0, l0, c1, l1;
    wsp_osslmem_stats(&c0, &l0);
    for (int i = 0; i < N; i++) {
        p[i] = wsp_osslmem_malloc(48);
        assert_non_null(p[i]);
        memset(p[i], 0x5a, 48);
    }
    wsp_osslmem_stats(&c1, &l1);
    assert_int_equal(l1 - l0, N);
    assert_true(c1 - c0 >= (size_t)N * 48 / 65536);
    /* a freed slot is the next one handed out */
    void *q = p[N / 2];
    wsp_osslmem_free(q);
    assert_ptr_equal(wsp_osslmem_malloc(44), q); /* same size class */
    for (int i = 0; i < N; i++) {
        wsp_osslmem_free(p[i]);
    }
    size_t c2, l2;
    wsp_osslmem_stats(&c2, &l2);
    assert_int_equal(l2, l0);
    /* all but at most the class's last chunk went back */
    assert_true(c2 <= c0 + 1);
    /* and chunks given back are used again */
    for (int i = 0; i < N; i++) {
        p[i] = wsp_osslmem_malloc(200);
        assert_non_null(p[i]);
        memset(p[i], 0x33, 200);
    }
    for (int i = 0; i < N; i++) {
        wsp_osslmem_free(p[i]);
    }
    free(p);
}

static void test_resize(void **state)
{
    (void)state;
    uint8_t *p = wsp_osslmem_realloc(NULL, 10);
    assert_non_null(p);
    for (int i = 0; i < 10; i++) {
        p[i] = (uint8_t)i;
    }
    assert_ptr_equal(wsp_osslmem_realloc(p, 16), p); /* same slot size */
    uint8_t *q = wsp_osslmem_realloc(p, 100);         /* a bigger class */
    assert_non_null(q);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(q[i], i);
    }
    memset(q + 10, 7, 90);
    uint8_t *r = wsp_osslmem_realloc(q, 5000);        /* to malloc */
    assert_non_null(r);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(r[i], i);
    }
    assert_int_equal(r[99], 7);
    r = wsp_osslmem_realloc(r, 100000);               /* malloc's stays malloc's */
    assert_non_null(r);
    assert_int_equal(r[99], 7);
    uint8_t *s = wsp_osslmem_realloc(wsp_osslmem_malloc(200), 20); /* smaller: moves down */
    assert_non_null(s);
    wsp_osslmem_free(s);
    assert_null(wsp_osslmem_realloc(r, 0));           /* frees, as OpenSSL's */
}

/* random sizes, allocations and frees against a check pattern */
static void test_random(void **state)
{
    (void)state;
    enum { SLOTS = 4096 };
    static uint8_t *p[SLOTS];
    static size_t len[SLOTS];
    uint64_t x = 88172645463325252u;
    for (int step = 0; step < 400000; step++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t i = (size_t)(x % SLOTS);
        if (p[i]) {
            for (size_t k = 0; k < len[i]; k++) {
                assert_int_equal(p[i][k], (uint8_t)(i + k));
            }
            if ((x >> 20) % 3 == 0) {
                size_t n = (size_t)((x >> 32) % 400);
                uint8_t *q = wsp_osslmem_realloc(p[i], n);
                if (n == 0) {
                    assert_null(q);
                    p[i] = NULL;
                    continue;
                }
                assert_non_null(q);
                p[i] = q;
                for (size_t k = len[i]; k < n; k++) {
                    q[k] = (uint8_t)(i + k);
                }
                len[i] = n;
                continue;
            }
            wsp_osslmem_free(p[i]);
            p[i] = NULL;
        } else {
            len[i] = (size_t)((x >> 32) % 300);
            p[i] = wsp_osslmem_malloc(len[i]);
            assert_non_null(p[i]);
            for (size_t k = 0; k < len[i]; k++) {
                p[i][k] = (uint8_t)(i + k);
            }
        }
    }
    for (int i = 0; i < SLOTS; i++) {
        wsp_osslmem_free(p[i]);
        p[i] = NULL;
    }
}

/* OpenSSL on it: a self-signed certificate and a TLS 1.3 handshake
 * between two SSL objects over a socketpair, in this process. */
static void test_openssl_on_it(void **state)
{
    (void)state;
    size_t c0, l0, c1, l1;
    wsp_osslmem_stats(&c0, &l0);
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    X509 *crt = X509_new();
    assert_non_null(crt);
    X509_set_version(crt, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(crt), 1);
    X509_gmtime_adj(X509_getm_notBefore(crt), 0);
    X509_gmtime_adj(X509_getm_notAfter(crt), 3600);
    X509_set_pubkey(crt, key);
    X509_NAME *name = X509_get_subject_name(crt);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
    X509_set_issuer_name(crt, name);
    assert_true(X509_sign(crt, key, EVP_sha256()) > 0);

    SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(sctx);
    assert_non_null(cctx);
    assert_int_equal(SSL_CTX_use_certificate(sctx, crt), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(sctx, key), 1);
    X509_STORE_add_cert(SSL_CTX_get_cert_store(cctx), crt);
    SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
    SSL_set_fd(s, sv[0]);
    SSL_set_fd(c, sv[1]);
    SSL_set_accept_state(s);
    SSL_set_connect_state(c);
    assert_int_equal(SSL_set1_host(c, "localhost"), 1);
    int sd = 0, cd = 0;
    for (int i = 0; i < 100 && !(sd == 1 && cd == 1); i++) {
        /* non-blocking: each side in turn, until both are done */
        if (cd != 1) {
            cd = SSL_do_handshake(c);
        }
        if (sd != 1) {
            sd = SSL_do_handshake(s);
        }
    }
    assert_int_equal(cd, 1);
    assert_int_equal(sd, 1);
    assert_int_equal(SSL_get_verify_result(c), X509_V_OK);
    assert_int_equal(SSL_write(c, "hello", 5), 5);
    char buf[8];
    assert_int_equal(SSL_read(s, buf, sizeof buf), 5);
    assert_memory_equal(buf, "hello", 5);
    wsp_osslmem_stats(&c1, &l1);
    assert_true(l1 > l0 + 100); /* OpenSSL's objects live in our chunks */
    SSL_free(c);
    SSL_free(s);
    close(sv[0]);
    close(sv[1]);
    SSL_CTX_free(cctx);
    SSL_CTX_free(sctx);
    X509_free(crt);
    EVP_PKEY_free(key);
}

int main(void)
{
    /* before OpenSSL allocates anything; not in sanitizer builds */
    int installed = wsp_osslmem_install();
#if defined(__SANITIZE_ADDRESS__)
    assert_int_equal(installed, 0);
#else
    if (!getenv("WS_PORT_OPENSSL_MALLOC")) {
        assert_int_equal(installed, 1);
    }
#endif
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes_and_alignment),
        cmocka_unit_test(test_reuse_and_give_back),
        cmocka_unit_test(test_resize),
        cmocka_unit_test(test_random),
    };
    const struct CMUnitTest tls_tests[] = {
        cmocka_unit_test(test_openssl_on_it),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    if (installed) {
        r |= cmocka_run_group_tests(tls_tests, NULL, NULL);
    }
    return r;
}
