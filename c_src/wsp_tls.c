#include "wsp_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

/* The files a context was made from, as stat(2) saw them: a context whose
 * file changed (a rotated CA bundle, a renewed client certificate) is made
 * again for new connections (open ones keep theirs: SSL holds a reference). */
struct file_id {
    int present;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

#define CTX_CACHE_MAX 32   /* contexts kept (least recently used dropped) */

struct ctx_entry {
    struct ctx_entry *next;
    struct file_id files[3]; /* cacertfile, certfile, keyfile */
    int verify;
    char *cacertfile, *certfile, *keyfile;
    uint8_t cacerts_md[32];      /* SHA-256 over the DER list (lengths included) */
    size_t ncacerts;
    int min_version, max_version;
    char *ciphers, *ciphersuites;
    SSL_CTX *ctx;
};

static struct ctx_entry *contexts;

static void file_id_of(const char *path, struct file_id *f)
{
    struct stat st;
    memset(f, 0, sizeof *f);
    if (path && stat(path, &st) == 0) {
        f->present = 1;
        f->dev = st.st_dev;
        f->ino = st.st_ino;
        f->size = st.st_size;
        f->mtime = st.st_mtim;
    }
}

static int same_file_id(const struct file_id *a, const struct file_id *b)
{
    return a->present == b->present && a->dev == b->dev && a->ino == b->ino &&
           a->size == b->size && a->mtime.tv_sec == b->mtime.tv_sec &&
           a->mtime.tv_nsec == b->mtime.tv_nsec;
}

static void entry_free(struct ctx_entry *e)
{
    SSL_CTX_free(e->ctx); /* connections still using it hold a reference */
    free(e->cacertfile);
    free(e->certfile);
    free(e->keyfile);
    free(e->ciphers);
    free(e->ciphersuites);
    free(e);
}

static int same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static void openssl_reason(char *err, size_t errcap, const char *what, const char *arg)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "unknown error";
    if (e) {
        ERR_error_string_n(e, buf, sizeof buf);
    }
    snprintf(err, errcap, "%s%s%s: %s", what, arg ? " " : "", arg ? arg : "", buf);
    ERR_clear_error();
}

static void cacerts_digest(const struct wsp_tls_config *cfg, uint8_t md[32])
{
    memset(md, 0, 32);
    if (cfg->ncacerts == 0) {
        return;
    }
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    unsigned int n = 0;
    if (!m || EVP_DigestInit_ex(m, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(m);
        return;
    }
    for (size_t k = 0; k < cfg->ncacerts; k++) {
        uint64_t len = cfg->cacert_lens[k];
        EVP_DigestUpdate(m, &len, sizeof len);
        EVP_DigestUpdate(m, cfg->cacerts[k], cfg->cacert_lens[k]);
    }
    EVP_DigestFinal_ex(m, md, &n);
    EVP_MD_CTX_free(m);
}

static int load_cacerts(SSL_CTX *ctx, const struct wsp_tls_config *cfg, char *err, size_t errcap)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    for (size_t k = 0; k < cfg->ncacerts; k++) {
        const unsigned char *p = cfg->cacerts[k];
        X509 *x = d2i_X509(NULL, &p, (long)cfg->cacert_lens[k]);
        if (!x || p != cfg->cacerts[k] + cfg->cacert_lens[k]) {
            X509_free(x);
            ERR_clear_error();
            snprintf(err, errcap, "cacerts: certificate %zu (of %zu) is not a DER X.509 "
                                  "certificate", k + 1, cfg->ncacerts);
            return -1;
        }
        /* a certificate given twice (or also in the file) is no error */
        if (X509_STORE_add_cert(store, x) != 1) {
            ERR_clear_error();
        }
        X509_free(x);
    }
    return 0;
}

/* the connection's wsp_tls_conn_opts (pins, its session) */
static int g_ex_index = -1;

/* Replaces co's session with sess (a reference given to co), from ctx. */
static void keep_session(struct wsp_tls_conn_opts *co, SSL_SESSION *sess, SSL_CTX *ctx)
{
    SSL_SESSION_free(co->session);
    co->session = sess;
    co->spent = 0;
    if (co->session_ctx != ctx) {
        SSL_CTX_up_ref(ctx);
        SSL_CTX_free(co->session_ctx);
        co->session_ctx = ctx;
    }
}

/* A new session (TLS 1.3: a ticket, after the handshake; TLS 1.2: at its
 * end): the connection keeps the latest. While connected it is the same
 * object the SSL holds (SSL_get_session), so keeping it costs a reference,
 * not a copy. Returns 1: the reference is taken. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct wsp_tls_conn_opts *co = g_ex_index >= 0 ? SSL_get_ex_data(ssl, g_ex_index) : NULL;
    if (!co || !co->reuse || co->failed || !SSL_SESSION_is_resumable(sess)) {
        return 0;
    }
    keep_session(co, sess, SSL_get_SSL_CTX(ssl));
    return 1;
}

SSL_CTX *wsp_tls_ctx(const struct wsp_tls_config *cfg, char *err, size_t errcap)
{
    uint8_t md[32];
    cacerts_digest(cfg, md);
    struct file_id files[3];
    file_id_of(cfg->cacertfile, &files[0]);
    file_id_of(cfg->certfile, &files[1]);
    file_id_of(cfg->keyfile, &files[2]);
    size_t n = 0;
    for (struct ctx_entry **pe = &contexts; *pe; n++) {
        struct ctx_entry *e = *pe;
        if (e->verify == cfg->verify && same(e->cacertfile, cfg->cacertfile) &&
            same(e->certfile, cfg->certfile) && same(e->keyfile, cfg->keyfile) &&
            e->ncacerts == cfg->ncacerts && memcmp(e->cacerts_md, md, 32) == 0 &&
            e->min_version == cfg->min_version && e->max_version == cfg->max_version &&
            same(e->ciphers, cfg->ciphers) && same(e->ciphersuites, cfg->ciphersuites)) {
            *pe = e->next;
            if (same_file_id(&e->files[0], &files[0]) && same_file_id(&e->files[1], &files[1]) &&
                same_file_id(&e->files[2], &files[2])) {
                e->next = contexts; /* most recently used first */
                contexts = e;
                return e->ctx;
            }
            entry_free(e); /* a file changed: made again below */
            break;
        }
        pe = &e->next;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        openssl_reason(err, errcap, "SSL_CTX_new", NULL);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, cfg->min_version ? cfg->min_version : TLS1_2_VERSION);
    if (cfg->max_version) {
        SSL_CTX_set_max_proto_version(ctx, cfg->max_version);
    }
    if (cfg->ciphers && SSL_CTX_set_cipher_list(ctx, cfg->ciphers) != 1) {
        openssl_reason(err, errcap, "cannot set ciphers", cfg->ciphers);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (cfg->ciphersuites && SSL_CTX_set_ciphersuites(ctx, cfg->ciphersuites) != 1) {
        openssl_reason(err, errcap, "cannot set ciphersuites", cfg->ciphersuites);
        SSL_CTX_free(ctx);
        return NULL;
    }
    /* a peer that closes TCP without close_notify is an EOF like on ws://
     * (retried as such), not a TLS failure; no renegotiation (an SSL_write
     * that wants to read would spin) */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    /* sessions for resumption: handed to the connection that received
     * them (on_new_session), never kept in the context's own cache */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    /* WebSocket upgrades are HTTP/1.1: never let ALPN pick h2 */
    static const unsigned char alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn);
    if (cfg->verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        /* cacerts (in memory) replace the system store, as a cacertfile
         * does; both may be given */
        int ok = cfg->cacertfile ? SSL_CTX_load_verify_locations(ctx, cfg->cacertfile, NULL)
                 : cfg->ncacerts ? 1
                                 : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
            openssl_reason(err, errcap, "cannot load CA file", cfg->cacertfile);
            SSL_CTX_free(ctx);
            return NULL;
        }
        if (load_cacerts(ctx, cfg, err, errcap) < 0) {
            SSL_CTX_free(ctx);
            return NULL;
        }
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    if (cfg->certfile || cfg->keyfile) {
        if (!cfg->certfile || !cfg->keyfile) {
            snprintf(err, errcap, "certfile and keyfile must be given together");
            SSL_CTX_free(ctx);
            return NULL;
        }
        if (SSL_CTX_use_certificate_chain_file(ctx, cfg->certfile) != 1) {
            openssl_reason(err, errcap, "cannot load certfile", cfg->certfile);
            SSL_CTX_free(ctx);
            return NULL;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, cfg->keyfile, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            openssl_reason(err, errcap, "cannot load keyfile", cfg->keyfile);
            SSL_CTX_free(ctx);
            return NULL;
        }
    }
    struct ctx_entry *e = calloc(1, sizeof *e);
    if (!e) {
        SSL_CTX_free(ctx);
        snprintf(err, errcap, "out of memory");
        return NULL;
    }
    e->verify = cfg->verify;
    e->cacertfile = dup_or_null(cfg->cacertfile);
    e->certfile = dup_or_null(cfg->certfile);
    e->keyfile = dup_or_null(cfg->keyfile);
    memcpy(e->cacerts_md, md, 32);
    e->ncacerts = cfg->ncacerts;
    e->min_version = cfg->min_version;
    e->max_version = cfg->max_version;
    e->ciphers = dup_or_null(cfg->ciphers);
    e->ciphersuites = dup_or_null(cfg->ciphersuites);
    memcpy(e->files, files, sizeof files);
    e->ctx = ctx;
    e->next = contexts;
    contexts = e;
    /* bounded: the least recently used beyond CTX_CACHE_MAX go */
    n = 0;
    for (struct ctx_entry **pe = &contexts; *pe; pe = &(*pe)->next) {
        if (++n == CTX_CACHE_MAX) {
            while ((*pe)->next) {
                struct ctx_entry *old = (*pe)->next;
                (*pe)->next = old->next;
                entry_free(old);
            }
            break;
        }
    }
    return ctx;
}

int wsp_tls_pins_match(SSL *ssl, const uint8_t (*pins)[32], size_t n)
{
    /* the verified chain (up to the trust anchor, as OkHttp checks it);
     * without verification, the certificates the server sent */
    STACK_OF(X509) *chain = SSL_get0_verified_chain(ssl);
    if (!chain || sk_X509_num(chain) == 0) {
        chain = SSL_get_peer_cert_chain(ssl);
    }
    int count = chain ? sk_X509_num(chain) : 0;
    for (int k = 0; k < count; k++) {
        X509_PUBKEY *pk = X509_get_X509_PUBKEY(sk_X509_value(chain, k));
        unsigned char *der = NULL;
        int len = pk ? i2d_X509_PUBKEY(pk, &der) : -1;
        if (len <= 0) {
            continue;
        }
        unsigned char md[32];
        unsigned int mdlen = 0;
        int ok = EVP_Digest(der, (size_t)len, md, &mdlen, EVP_sha256(), NULL);
        OPENSSL_free(der);
        if (ok != 1 || mdlen != 32) {
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            if (CRYPTO_memcmp(md, pins[i], 32) == 0) {
                return 1;
            }
        }
    }
    return 0;
}

SSL *wsp_tls_new(SSL_CTX *ctx, int fd, const char *name, int verify,
                 struct wsp_tls_conn_opts *co, char *err, size_t errcap)
{
    if (g_ex_index < 0) {
        g_ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    }
    SSL *ssl = SSL_new(ctx);
    if (!ssl) {
        openssl_reason(err, errcap, "SSL_new", NULL);
        return NULL;
    }
    SSL_set_fd(ssl, fd);
    unsigned char ip[16];
    int is_ip = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;
    if (!is_ip && !(co && co->no_sni)) {
        SSL_set_tlsext_host_name(ssl, name);
    }
    if (co) {
        SSL_set_ex_data(ssl, g_ex_index, co);
        co->failed = 0;
        if (co->session && (!co->reuse || co->session_ctx != ctx ||
                            !SSL_SESSION_is_resumable(co->session))) {
            /* another context (its CA file changed: other verification
             * settings) or no longer resumable: never offered */
            wsp_tls_forget(co);
        }
        if (co->session && SSL_set_session(ssl, co->session) != 1) {
            ERR_clear_error();
            wsp_tls_forget(co);
        }
        co->spent = co->session && SSL_SESSION_get_protocol_version(co->session) == TLS1_3_VERSION;
    }
    if (verify) {
        X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
        /* the name is checked against the subjectAltName only, never the
         * subject's CN (as browsers do: RFC 6125 6.4.4, CA/B Forum): a
         * certificate without a DNS SAN matches no host name */
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS |
                                                   X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
        int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, name)
                       : X509_VERIFY_PARAM_set1_host(param, name, 0);
        if (ok != 1) {
            openssl_reason(err, errcap, "cannot set the name to verify", name);
            SSL_free(ssl);
            return NULL;
        }
    }
    SSL_set_connect_state(ssl);
    return ssl;
}

int wsp_tls_handshake(SSL *ssl, int *want_write, int *net_errno, char *err, size_t errcap)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(ssl);
    int sys_errno = errno;
    if (r == 1) {
        const struct wsp_tls_conn_opts *co =
            g_ex_index >= 0 ? SSL_get_ex_data(ssl, g_ex_index) : NULL;
        /* a resumed session is this connection's own, from a handshake
         * that passed the same pin check (a failed one drops it); OpenSSL
         * keeps no verified chain up to the anchor for it */
        if (co && co->npins > 0 && !SSL_session_reused(ssl) &&
            !wsp_tls_pins_match(ssl, co->pins, co->npins)) {
            snprintf(err, errcap, "certificate pin mismatch: no public key in the server's "
                                  "chain matches pins");
            return -1;
        }
        /* Open: read records with one recv each, not two (the 5-byte header,
         * then the body): OpenSSL then reads up to its buffer's size. The
         * default buffer (one record and a bit) is the best size: OpenSSL
         * 3.0 moves every byte still buffered to the buffer's front before
         * each record, so bigger buffers cost more memmove than the recv
         * calls they save (measured: 64 KiB no better, 256 KiB worse). Set
         * only now, so the handshake is as before; SSL_MODE_RELEASE_BUFFERS
         * still frees the buffer whenever it drains (idle: none held).
         * Records may then wait inside OpenSSL that poll does not see: read
         * until WANT_READ (conn_read does; every resume path kicks it). */
        SSL_set_read_ahead(ssl, 1);
        return 1;
    }
    int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *want_write = e == SSL_ERROR_WANT_WRITE;
        return 0;
    }
    long vr = SSL_get_verify_result(ssl);
    unsigned long top = ERR_peek_error();
    if (vr != X509_V_OK) {
        snprintf(err, errcap, "certificate verify failed: %s",
                 X509_verify_cert_error_string(vr));
    } else if (top == 0 && (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN)) {
        /* nothing from TLS itself: the peer reset or ended the TCP
         * connection (SSL_OP_IGNORE_UNEXPECTED_EOF: an EOF can look like a
         * close_notify) */
        *net_errno = e == SSL_ERROR_SYSCALL ? sys_errno : 0;
        return -2;
    } else if (ERR_GET_LIB(top) == ERR_LIB_SYS) {
        *net_errno = ERR_GET_REASON(top);
        ERR_clear_error();
        return -2;
    } else if (ERR_GET_LIB(top) == ERR_LIB_SSL &&
               ERR_GET_REASON(top) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        *net_errno = 0;
        ERR_clear_error();
        return -2;
    } else {
        openssl_reason(err, errcap, "handshake failed", NULL);
    }
    ERR_clear_error();
    return -1;
}

void wsp_tls_free(SSL *ssl, struct wsp_tls_conn_opts *co)
{
    if (!ssl) {
        return;
    }
    if (co && co->reuse && !co->failed && SSL_is_init_finished(ssl)) {
        /* OpenSSL would mark the session not resumable when an SSL that sent
         * no close_notify is freed (TLS 1.0's rule) */
        SSL_set_shutdown(ssl, SSL_get_shutdown(ssl) | SSL_SENT_SHUTDOWN);
        SSL_SESSION *s = SSL_get_session(ssl);
        /* a TLS 1.2 session that no callback gave (e.g. renewed on
         * resumption); TLS 1.3 sessions come with tickets, by the callback */
        if (s && s != co->session && SSL_SESSION_get_protocol_version(s) < TLS1_3_VERSION &&
            SSL_SESSION_is_resumable(s) && SSL_SESSION_up_ref(s) == 1) {
            keep_session(co, s, SSL_get_SSL_CTX(ssl));
        }
    }
    if (co && co->spent) {
        wsp_tls_forget(co); /* a TLS 1.3 ticket offered and not replaced */
    }
    SSL_free(ssl);
}

void wsp_tls_session_bad(struct wsp_tls_conn_opts *co)
{
    co->failed = 1;
    wsp_tls_forget(co);
}

void wsp_tls_forget(struct wsp_tls_conn_opts *co)
{
    SSL_SESSION_free(co->session);
    SSL_CTX_free(co->session_ctx);
    co->session = NULL;
    co->session_ctx = NULL;
    co->spent = 0;
}

int wsp_tls_resumed(const SSL *ssl) { return ssl && SSL_session_reused(ssl) ? 1 : 0; }

void wsp_tls_free_all(void)
{
    while (contexts) {
        struct ctx_entry *e = contexts;
        contexts = e->next;
        entry_free(e);
    }
}
