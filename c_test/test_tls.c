/*
 * wsp_tls_ctx with the client certificate and key in memory (cert, key,
 * password): keys and certificates are made here with OpenSSL (EC P-256 and
 * RSA 2048, self-signed), in DER and PEM, plain and encrypted. Checks that
 * contexts are shared by the same cert/key/password and differ otherwise,
 * and the errors for a wrong or missing password, a key that does not
 * match, a certificate that is not X.509 and a key that is none.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "wsp_tls.h"

struct blob {
    uint8_t *p;
    size_t n;
};

static struct blob bio_blob(BIO *b)
{
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    assert_true(n > 0);
    struct blob r = {malloc((size_t)n), (size_t)n};
    assert_non_null(r.p);
    memcpy(r.p, data, (size_t)n);
    BIO_free(b);
    return r;
}

static EVP_PKEY *make_key(int rsa)
{
    EVP_PKEY *k = rsa ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
    assert_non_null(k);
    return k;
}

/* a self-signed certificate for k, as DER */
static struct blob cert_der(EVP_PKEY *k, const char *cn)
{
    X509 *x = X509_new();
    assert_non_null(x);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, name);
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    assert_true(n > 0);
    struct blob r = {malloc((size_t)n), (size_t)n};
    assert_non_null(r.p);
    memcpy(r.p, der, (size_t)n);
    OPENSSL_free(der);
    X509_free(x);
    return r;
}

static struct blob key_pkcs8_der(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(i2d_PKCS8PrivateKey_bio(b, k, NULL, NULL, 0, NULL, NULL), 1);
    return bio_blob(b);
}

static struct blob key_pem(EVP_PKEY *k, const char *password)
{
    BIO *b = BIO_new(BIO_s_mem());
    const EVP_CIPHER *c = password ? EVP_aes_256_cbc() : NULL;
    assert_int_equal(PEM_write_bio_PKCS8PrivateKey(b, k, c, (char *)password,
                                                   password ? (int)strlen(password) : 0,
                                                   NULL, NULL),
                     1);
    return bio_blob(b);
}

static struct blob key_enc_der(EVP_PKEY *k, const char *password)
{
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(i2d_PKCS8PrivateKey_bio(b, k, EVP_aes_256_cbc(), (char *)password,
                                             (int)strlen(password), NULL, NULL),
                     1);
    return bio_blob(b);
}

static struct {
    EVP_PKEY *ec, *rsa;
    struct blob ec_cert, rsa_cert, ec_p8, ec_pem, ec_enc_pem, ec_enc_der, rsa_pem;
} g;

static int setup(void **state)
{
    (void)state;
    g.ec = make_key(0);
    g.rsa = make_key(1);
    g.ec_cert = cert_der(g.ec, "ec client");
    g.rsa_cert = cert_der(g.rsa, "rsa client");
    g.ec_p8 = key_pkcs8_der(g.ec);
    g.ec_pem = key_pem(g.ec, NULL);
    g.ec_enc_pem = key_pem(g.ec, "right");
    g.ec_enc_der = key_enc_der(g.ec, "right");
    g.rsa_pem = key_pem(g.rsa, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    wsp_tls_free_all();
    EVP_PKEY_free(g.ec);
    EVP_PKEY_free(g.rsa);
    struct blob *bs[] = {&g.ec_cert, &g.rsa_cert, &g.ec_p8,     &g.ec_pem,
                         &g.ec_enc_pem, &g.ec_enc_der, &g.rsa_pem};
    for (size_t k = 0; k < sizeof bs / sizeof bs[0]; k++)
        free(bs[k]->p);
    return 0;
}

static char g_err[300];

static SSL_CTX *ctx_for(const struct blob *cert, const struct blob *key, const char *password)
{
    const uint8_t *certs[1] = {cert ? cert->p : NULL};
    size_t lens[1] = {cert ? cert->n : 0};
    struct wsp_tls_config cfg = {
        .verify = 0,
        .certs = certs,
        .cert_lens = lens,
        .ncerts = cert ? 1 : 0,
        .key = key ? key->p : NULL,
        .key_len = key ? key->n : 0,
        .password = (const uint8_t *)password,
        .password_len = password ? strlen(password) : 0,
    };
    g_err[0] = 0;
    return wsp_tls_ctx(&cfg, g_err, sizeof g_err);
}

static void test_shared_by_digest(void **state)
{
    (void)state;
    SSL_CTX *a = ctx_for(&g.ec_cert, &g.ec_pem, NULL);
    assert_non_null(a);
    /* the same bytes (another copy): the same context */
    struct blob copy = {malloc(g.ec_pem.n), g.ec_pem.n};
    assert_non_null(copy.p);
    memcpy(copy.p, g.ec_pem.p, copy.n);
    assert_ptr_equal(ctx_for(&g.ec_cert, &copy, NULL), a);
    free(copy.p);
    /* the same key in another form is other bytes: its own context */
    SSL_CTX *b = ctx_for(&g.ec_cert, &g.ec_p8, NULL);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    /* another key and certificate */
    SSL_CTX *c = ctx_for(&g.rsa_cert, &g.rsa_pem, NULL);
    assert_non_null(c);
    assert_ptr_not_equal(c, a);
    assert_ptr_not_equal(c, b);
    /* no client certificate at all: yet another */
    SSL_CTX *d = ctx_for(NULL, NULL, NULL);
    assert_non_null(d);
    assert_ptr_not_equal(d, a);
    assert_ptr_equal(ctx_for(&g.ec_cert, &g.ec_pem, NULL), a);
}

/* the n-th cipher the context offers (TLS 1.3 suites come first) */
static const char *offered(SSL_CTX *ctx, int n)
{
    STACK_OF(SSL_CIPHER) *sk = SSL_CTX_get_ciphers(ctx);
    assert_non_null(sk);
    assert_true(n < sk_SSL_CIPHER_num(sk));
    return SSL_CIPHER_standard_name(sk_SSL_CIPHER_value(sk, n));
}

static void test_tls13_order(void **state)
{
    (void)state;
    /* no ciphersuites given: OpenSSL's three, AES-128-GCM first */
    struct wsp_tls_config cfg = {.verify = 0};
    g_err[0] = 0;
    SSL_CTX *d = wsp_tls_ctx(&cfg, g_err, sizeof g_err);
    assert_non_null(d);
    assert_string_equal(offered(d, 0), "TLS_AES_128_GCM_SHA256");
    assert_string_equal(offered(d, 1), "TLS_AES_256_GCM_SHA384");
    assert_string_equal(offered(d, 2), "TLS_CHACHA20_POLY1305_SHA256");
    /* the user's own list is taken as given, order and all */
    cfg.ciphersuites = "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384";
    SSL_CTX *u = wsp_tls_ctx(&cfg, g_err, sizeof g_err);
    assert_non_null(u);
    assert_ptr_not_equal(u, d);
    assert_string_equal(offered(u, 0), "TLS_CHACHA20_POLY1305_SHA256");
    assert_string_equal(offered(u, 1), "TLS_AES_256_GCM_SHA384");
    assert_string_not_equal(offered(u, 2), "TLS_AES_128_GCM_SHA256");
}

static void test_encrypted(void **state)
{
    (void)state;
    SSL_CTX *a = ctx_for(&g.ec_cert, &g.ec_enc_pem, "right");
    assert_non_null(a);
    assert_ptr_equal(ctx_for(&g.ec_cert, &g.ec_enc_pem, "right"), a);
    assert_non_null(ctx_for(&g.ec_cert, &g.ec_enc_der, "right"));
    /* a wrong password never reuses the context the right one made */
    assert_null(ctx_for(&g.ec_cert, &g.ec_enc_pem, "wrong"));
    assert_non_null(strstr(g_err, "cannot load key: cannot decrypt the key: wrong password"));
    assert_null(strstr(g_err, "right"));
    assert_null(ctx_for(&g.ec_cert, &g.ec_enc_der, "wrong"));
    assert_non_null(strstr(g_err, "wrong password"));
    assert_null(ctx_for(&g.ec_cert, &g.ec_enc_pem, NULL));
    assert_non_null(strstr(g_err, "the key is encrypted and no password was given"));
    /* a PEM with the certificate first, then the (encrypted) key */
    BIO *b = BIO_new(BIO_s_mem());
    assert_non_null(b);
    const unsigned char *cp = g.ec_cert.p;
    X509 *x = d2i_X509(NULL, &cp, (long)g.ec_cert.n);
    assert_non_null(x);
    assert_int_equal(PEM_write_bio_X509(b, x), 1);
    X509_free(x);
    assert_int_equal(BIO_write(b, g.ec_enc_pem.p, (int)g.ec_enc_pem.n), (int)g.ec_enc_pem.n);
    struct blob combo = bio_blob(b);
    assert_non_null(ctx_for(&g.ec_cert, &combo, "right"));
    assert_null(ctx_for(&g.ec_cert, &combo, "wrong"));
    assert_non_null(strstr(g_err, "wrong password"));
    free(combo.p);
    /* a password with a key that is not encrypted: unused, no error */
    assert_non_null(ctx_for(&g.ec_cert, &g.ec_pem, "unused"));
}

static void test_errors(void **state)
{
    (void)state;
    assert_null(ctx_for(&g.ec_cert, &g.rsa_pem, NULL));
    assert_non_null(strstr(g_err, "does not match the client certificate"));
    assert_null(ctx_for(&g.ec_p8, &g.ec_pem, NULL));
    assert_non_null(strstr(g_err, "cert: certificate 1 (of 1) is not a DER X.509"));
    struct blob junk = {(uint8_t *)"\x30\x03\x02\x01\x01", 5};
    assert_null(ctx_for(&g.ec_cert, &junk, NULL));
    assert_non_null(strstr(g_err, "cannot load key: not a PEM or DER private key"));
    assert_null(ctx_for(&g.ec_cert, NULL, NULL));
    assert_non_null(strstr(g_err, "must be given together"));
    assert_null(ctx_for(NULL, NULL, "pw"));
    assert_non_null(strstr(g_err, "password given without a key"));
}

/* keyfile with a password: the file read in full, decrypted, wiped */
static void test_keyfile_password(void **state)
{
    (void)state;
    char path[] = "/tmp/wsp_test_tls_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, g.ec_enc_pem.p, g.ec_enc_pem.n), (ssize_t)g.ec_enc_pem.n);
    close(fd);
    const uint8_t *certs[1] = {g.ec_cert.p};
    size_t lens[1] = {g.ec_cert.n};
    struct wsp_tls_config cfg = {
        .certs = certs, .cert_lens = lens, .ncerts = 1, .keyfile = path,
        .password = (const uint8_t *)"right", .password_len = 5,
    };
    assert_non_null(wsp_tls_ctx(&cfg, g_err, sizeof g_err));
    cfg.password = (const uint8_t *)"wrong";
    assert_null(wsp_tls_ctx(&cfg, g_err, sizeof g_err));
    assert_non_null(strstr(g_err, "keyfile"));
    assert_non_null(strstr(g_err, "wrong password"));
    unlink(path);
    assert_null(wsp_tls_ctx(&cfg, g_err, sizeof g_err));
    assert_non_null(strstr(g_err, "cannot load keyfile"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_by_digest),
        cmocka_unit_test(test_tls13_order),
        cmocka_unit_test(test_encrypted),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_keyfile_password),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
