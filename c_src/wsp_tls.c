#include "wsp_tls.h"
#include "wsp_compat.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
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
    uint8_t client_md[32];       /* SHA-256 over cert, key and password */
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

static void digest_part(EVP_MD_CTX *m, const void *p, size_t n)
{
    uint64_t len = n;
    EVP_DigestUpdate(m, &len, sizeof len);
    if (n) {
        EVP_DigestUpdate(m, p, n);
    }
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
        digest_part(m, cfg->cacerts[k], cfg->cacert_lens[k]);
    }
    EVP_DigestFinal_ex(m, md, &n);
    EVP_MD_CTX_free(m);
}

/* The in-memory client certificate, key and password as one SHA-256 (each
 * part with its length, and whether it is there): contexts with different
 * keys differ, the same one is shared; the password counts, so a wrong one
 * never reuses the context a right one made. All zero when none is given.
 * -1 if the digest cannot be made (the caller then makes no shared entry). */
static int client_digest(const struct wsp_tls_config *cfg, uint8_t md[32])
{
    memset(md, 0, 32);
    if (cfg->ncerts == 0 && !cfg->key && !cfg->password) {
        return 0;
    }
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    unsigned int n = 0;
    if (!m || EVP_DigestInit_ex(m, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(m);
        return -1;
    }
    static const char tag[] = "wsp client cert/key/password";
    EVP_DigestUpdate(m, tag, sizeof tag);
    uint64_t ncerts = cfg->ncerts;
    EVP_DigestUpdate(m, &ncerts, sizeof ncerts);
    for (size_t k = 0; k < cfg->ncerts; k++) {
        digest_part(m, cfg->certs[k], cfg->cert_lens[k]);
    }
    uint8_t flags[2] = {cfg->key != NULL, cfg->password != NULL};
    EVP_DigestUpdate(m, flags, sizeof flags);
    digest_part(m, cfg->key, cfg->key ? cfg->key_len : 0);
    digest_part(m, cfg->password, cfg->password ? cfg->password_len : 0);
    int ok = EVP_DigestFinal_ex(m, md, &n) == 1 && n == 32;
    EVP_MD_CTX_free(m);
    return ok ? 0 : -1;
}

/* The password callback of the key decoder: gives the password (once per
 * decode) and records that the key asked for one. */
struct pw_state {
    const uint8_t *pw;
    size_t len;
    int asked;
};

static int pw_cb(char *buf, int size, int rwflag, void *u)
{
    struct pw_state *st = u;
    (void)rwflag;
    st->asked = 1;
    if (!st->pw || st->len == 0 || st->len > (size_t)size) {
        return -1;
    }
    memcpy(buf, st->pw, st->len);
    return (int)st->len;
}

/* In PEM with other blocks first (a certificate, then its key, in one
 * file), the offset of the first "-----BEGIN ...PRIVATE KEY-----" line; 0
 * when there is none (DER, or a PEM the decoder will refuse). */
static size_t pem_key_offset(const uint8_t *data, size_t len)
{
    static const char begin[] = "-----BEGIN ";
    static const char label[] = "PRIVATE KEY-----";
    const size_t nb = sizeof begin - 1, nl = sizeof label - 1;
    for (size_t i = 0; i + nb <= len; i++) {
        if (memcmp(data + i, begin, nb) != 0) {
            continue;
        }
        /* the label runs to the end of the line */
        size_t e = i + nb;
        while (e < len && data[e] != '\n' && data[e] != '\r') {
            e++;
        }
        if (e - (i + nb) >= nl && memcmp(data + e - nl, label, nl) == 0) {
            return i;
        }
        i = e > i ? e - 1 : i;
    }
    return 0;
}

/* A private key from PEM or DER bytes (PKCS#1 RSA, SEC 1 EC, PKCS#8, and
 * encrypted PEM or PKCS#8 with cfg->password). NULL with a message naming
 * what (e.g. "key" or "keyfile /p") and the problem. */
static EVP_PKEY *decode_key(const uint8_t *data, size_t len, const struct wsp_tls_config *cfg,
                            const char *what, char *err, size_t errcap)
{
    EVP_PKEY *pkey = NULL;
    struct pw_state st = {cfg->password, cfg->password ? cfg->password_len : 0, 0};
    OSSL_DECODER_CTX *d = OSSL_DECODER_CTX_new_for_pkey(&pkey, NULL, NULL, NULL,
                                                        EVP_PKEY_KEYPAIR, NULL, NULL);
    if (!d || OSSL_DECODER_CTX_set_pem_password_cb(d, pw_cb, &st) != 1) {
        OSSL_DECODER_CTX_free(d);
        openssl_reason(err, errcap, "cannot load", what);
        return NULL;
    }
    const unsigned char *p = data;
    size_t left = len;
    size_t at = pem_key_offset(data, len);
    p += at;
    left -= at;
    int ok = OSSL_DECODER_from_data(d, &p, &left) == 1 && pkey;
    OSSL_DECODER_CTX_free(d);
    ERR_clear_error();
    if (ok) {
        return pkey;
    }
    EVP_PKEY_free(pkey);
    if (st.asked && !cfg->password) {
        snprintf(err, errcap, "cannot load %s: the key is encrypted and no password was given",
                 what);
    } else if (st.asked) {
        snprintf(err, errcap, "cannot load %s: cannot decrypt the key: wrong password", what);
    } else {
        snprintf(err, errcap, "cannot load %s: not a PEM or DER private key", what);
    }
    return NULL;
}

/* OPENSSL_cleanse: a wipe the compiler keeps */
static void wipe(void *p, size_t n)
{
    if (p && n) {
        OPENSSL_cleanse(p, n);
    }
}

#define KEYFILE_MAX (1 << 20)

/* keyfile read whole (at most 1 MiB) and decoded as decode_key; the bytes
 * read are wiped */
static EVP_PKEY *load_keyfile(const struct wsp_tls_config *cfg, char *err, size_t errcap)
{
    char what[300];
    snprintf(what, sizeof what, "keyfile %s", cfg->keyfile);
    FILE *f = fopen(cfg->keyfile, "rb");
    if (!f) {
        snprintf(err, errcap, "cannot load %s: %s", what, strerror(errno));
        return NULL;
    }
    uint8_t *buf = malloc(KEYFILE_MAX);
    if (!buf) {
        fclose(f);
        snprintf(err, errcap, "out of memory");
        return NULL;
    }
    size_t n = fread(buf, 1, KEYFILE_MAX, f);
    int bad = ferror(f) || (n == KEYFILE_MAX && fgetc(f) != EOF);
    fclose(f);
    EVP_PKEY *pkey = NULL;
    if (bad || n == 0) {
        snprintf(err, errcap, "cannot load %s: %s", what,
                 n == 0 ? "empty file" : bad && n == KEYFILE_MAX ? "larger than 1 MiB"
                                                                 : "read error");
    } else {
        pkey = decode_key(buf, n, cfg, what, err, errcap);
    }
    wipe(buf, n);
    free(buf);
    return pkey;
}

/* certs (DER, leaf first) as the context's certificate and chain */
static int use_certs(SSL_CTX *ctx, const struct wsp_tls_config *cfg, char *err, size_t errcap)
{
    for (size_t k = 0; k < cfg->ncerts; k++) {
        const unsigned char *p = cfg->certs[k];
        X509 *x = d2i_X509(NULL, &p, (long)cfg->cert_lens[k]);
        if (!x || p != cfg->certs[k] + cfg->cert_lens[k]) {
            X509_free(x);
            ERR_clear_error();
            snprintf(err, errcap, "cert: certificate %zu (of %zu) is not a DER X.509 "
                                  "certificate", k + 1, cfg->ncerts);
            return -1;
        }
        int ok = k == 0 ? SSL_CTX_use_certificate(ctx, x) : SSL_CTX_add1_chain_cert(ctx, x);
        X509_free(x);
        if (ok != 1) {
            char what[64];
            snprintf(what, sizeof what, "certificate %zu (of %zu)", k + 1, cfg->ncerts);
            openssl_reason(err, errcap, "cert: cannot use", what);
            return -1;
        }
    }
    return 0;
}

/* The client certificate (certfile or certs) and key (keyfile or key),
 * which must match. */
static int use_client_cert(SSL_CTX *ctx, const struct wsp_tls_config *cfg, char *err,
                           size_t errcap)
{
    int has_cert = cfg->certfile || cfg->ncerts, has_key = cfg->keyfile || cfg->key;
    if (!has_cert && !has_key) {
        if (cfg->password) {
            snprintf(err, errcap, "password given without a key or keyfile");
            return -1;
        }
        return 0;
    }
    if (cfg->certfile && cfg->ncerts) {
        snprintf(err, errcap, "certfile and cert cannot both be given");
        return -1;
    }
    if (cfg->keyfile && cfg->key) {
        snprintf(err, errcap, "keyfile and key cannot both be given");
        return -1;
    }
    if (!has_cert || !has_key) {
        snprintf(err, errcap, "a client certificate (certfile or cert) and key (keyfile or "
                              "key) must be given together");
        return -1;
    }
    if (cfg->certfile) {
        if (SSL_CTX_use_certificate_chain_file(ctx, cfg->certfile) != 1) {
            openssl_reason(err, errcap, "cannot load certfile", cfg->certfile);
            return -1;
        }
    } else if (use_certs(ctx, cfg, err, errcap) < 0) {
        return -1;
    }
    EVP_PKEY *pkey = cfg->keyfile ? load_keyfile(cfg, err, errcap)
                                  : decode_key(cfg->key, cfg->key_len, cfg, "key", err, errcap);
    if (!pkey) {
        return -1;
    }
    int ok = SSL_CTX_use_PrivateKey(ctx, pkey) == 1 && SSL_CTX_check_private_key(ctx) == 1;
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    if (!ok) {
        snprintf(err, errcap, "the client key (%s) does not match the client certificate (%s)",
                 cfg->keyfile ? "keyfile" : "key", cfg->certfile ? "certfile" : "cert");
        return -1;
    }
    return 0;
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

static struct wsp_tls_conn_opts *conn_opts_of(const SSL *ssl);

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
    struct wsp_tls_conn_opts *co = conn_opts_of(ssl);
    if (!co || !co->reuse || co->failed || !SSL_SESSION_is_resumable(sess)) {
        return 0;
    }
    keep_session(co, sess, SSL_get_SSL_CTX(ssl));
    return 1;
}

SSL_CTX *wsp_tls_ctx(const struct wsp_tls_config *cfg, char *err, size_t errcap)
{
    uint8_t md[32], cmd[32];
    cacerts_digest(cfg, md);
    if (client_digest(cfg, cmd) < 0) {
        snprintf(err, errcap, "cannot digest the client certificate and key");
        return NULL;
    }
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
            CRYPTO_memcmp(e->client_md, cmd, 32) == 0 &&
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
    /* TLS 1.3: the user's ciphersuites, else OpenSSL's three in the order
     * browsers offer them, AES-128-GCM first (OpenSSL's own default puts
     * AES-256-GCM first): the same suites, so nothing weaker is offered, and
     * a server that follows the client's order keeps less per connection
     * (SHA-256 transcript and key schedule instead of SHA-384; issue 16) */
    const char *suites = cfg->ciphersuites ? cfg->ciphersuites : WSP_TLS13_DEFAULT_SUITES;
    if (SSL_CTX_set_ciphersuites(ctx, suites) != 1) {
        openssl_reason(err, errcap, "cannot set ciphersuites", suites);
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
    if (use_client_cert(ctx, cfg, err, errcap) < 0) {
        SSL_CTX_free(ctx);
        return NULL;
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
    memcpy(e->client_md, cmd, 32);
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

/* ---- the socket BIO: one big recv for many records ---------------------
 *
 * OpenSSL's socket BIO, even with read-ahead, reads one record (16 KiB)
 * per recv(2) from a fast stream; each recv on a busy TCP socket also
 * sends an ACK, and on 127.0.0.1 the sender's side of that ACK (and the
 * next segments it releases) runs in our system call. A bigger OpenSSL
 * read buffer is no cure: OpenSSL 3.0 moves every byte still buffered to
 * the buffer's front before each record. This BIO instead reads up to
 * RX_CHUNK bytes with one recv into a buffer shared by all connections,
 * and hands OpenSSL what it asks for from there (one memcpy, ~16x fewer
 * system calls and ACKs on a stream of big messages).
 *
 * The shared buffer belongs to the connection that filled it. When another
 * connection needs it while bytes of the owner's are left (the owner ran
 * out of credit or of its read budget), those bytes move to a buffer of the
 * owner's own (malloc'd, freed once drained): an idle connection holds no
 * receive buffer here. If that allocation fails, the reader recv(2)s
 * straight into OpenSSL's buffer instead, as the socket BIO does. */

#define RX_CHUNK (256 * 1024)

struct rx_bio {
    int fd;
    int eof;          /* recv said 0: BIO_eof (SSL_OP_IGNORE_UNEXPECTED_EOF needs it) */
    uint8_t *own;     /* bytes moved out of the shared buffer, own[off..len) */
    size_t own_off, own_len;
    /* the connection's wsp_tls_conn_opts (pins, its session), or NULL. Here
     * rather than in the SSL's ex_data: SSL_set_ex_data allocates a stack
     * per SSL (two allocations, 64 bytes; an idle connection's memory,
     * issue 16) where this BIO is ours anyway */
    struct wsp_tls_conn_opts *co;
};

static struct {
    BIO *owner;       /* whose bytes g_rx.buf[off..len) are */
    size_t off, len;
    uint8_t buf[RX_CHUNK];
} g_rx;

static BIO_METHOD *g_rx_method;
static int g_rx_type;

static int rx_take(uint8_t *dst, const uint8_t *src, size_t *off, size_t len, int outl)
{
    size_t n = len - *off;
    if (n > (size_t)outl) {
        n = (size_t)outl;
    }
    memcpy(dst, src + *off, n);
    *off += n;
    return (int)n;
}

/* The shared buffer's bytes go to their owner's own buffer. */
static int rx_spill(void)
{
    struct rx_bio *o = BIO_get_data(g_rx.owner);
    size_t n = g_rx.len - g_rx.off;
    if (n > 0) {
        uint8_t *p = malloc(n); /* o->own is empty: its owner would have read it first */
        if (!p) {
            return -1;
        }
        memcpy(p, g_rx.buf + g_rx.off, n);
        o->own = p;
        o->own_off = 0;
        o->own_len = n;
    }
    g_rx.owner = NULL;
    g_rx.off = g_rx.len = 0;
    return 0;
}

static int rx_read(BIO *b, char *out, int outl)
{
    struct rx_bio *x = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (outl <= 0) {
        return 0;
    }
    if (x->own) {
        int n = rx_take((uint8_t *)out, x->own, &x->own_off, x->own_len, outl);
        if (x->own_off == x->own_len) {
            free(x->own);
            x->own = NULL;
            x->own_off = x->own_len = 0;
        }
        return n;
    }
    if (g_rx.owner == b && g_rx.off < g_rx.len) {
        return rx_take((uint8_t *)out, g_rx.buf, &g_rx.off, g_rx.len, outl);
    }
    uint8_t *dst = g_rx.buf;
    size_t cap = sizeof g_rx.buf;
    if (g_rx.owner && g_rx.owner != b && rx_spill() < 0) {
        dst = (uint8_t *)out; /* no memory to move the owner's bytes: read directly */
        cap = (size_t)outl;
    }
    ssize_t r = recv(x->fd, dst, cap, 0);
    if (r > 0 && dst == g_rx.buf) {
        g_rx.owner = b;
        g_rx.off = 0;
        g_rx.len = (size_t)r;
        return rx_take((uint8_t *)out, g_rx.buf, &g_rx.off, g_rx.len, outl);
    }
    if (r > 0) {
        return (int)r;
    }
    if (r == 0) {
        x->eof = 1;
        return 0;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        BIO_set_retry_read(b);
    }
    return -1;
}

static int rx_write(BIO *b, const char *in, int inl)
{
    struct rx_bio *x = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t w = send(x->fd, in, (size_t)inl, MSG_NOSIGNAL);
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        BIO_set_retry_write(b);
    }
    return (int)w;
}

static long rx_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    struct rx_bio *x = BIO_get_data(b);
    (void)num;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_EOF:
        return x->eof;
    case BIO_CTRL_PENDING:
        return (long)(x->own_len - x->own_off) +
               (g_rx.owner == b ? (long)(g_rx.len - g_rx.off) : 0);
    case BIO_C_GET_FD:
        if (ptr) {
            *(int *)ptr = x->fd;
        }
        return x->fd;
    default:
        return 0;
    }
}

static int rx_destroy(BIO *b)
{
    struct rx_bio *x = BIO_get_data(b);
    if (g_rx.owner == b) {
        g_rx.owner = NULL;
        g_rx.off = g_rx.len = 0;
    }
    if (x) {
        free(x->own);
        free(x);
    }
    BIO_set_data(b, NULL);
    return 1;
}

static struct wsp_tls_conn_opts *conn_opts_of(const SSL *ssl)
{
    BIO *b = SSL_get_rbio(ssl);
    if (!b || !g_rx_method || BIO_method_type(b) != g_rx_type) {
        return NULL;
    }
    const struct rx_bio *x = BIO_get_data(b);
    return x ? x->co : NULL;
}

static BIO *rx_bio_new(int fd, struct wsp_tls_conn_opts *co)
{
    if (!g_rx_method) {
        int type = BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR;
        BIO_METHOD *m = BIO_meth_new(type, "wsp socket");
        if (!m || BIO_meth_set_read(m, rx_read) != 1 || BIO_meth_set_write(m, rx_write) != 1 ||
            BIO_meth_set_ctrl(m, rx_ctrl) != 1 || BIO_meth_set_destroy(m, rx_destroy) != 1) {
            BIO_meth_free(m);
            return NULL;
        }
        g_rx_method = m;
        g_rx_type = type;
    }
    struct rx_bio *x = calloc(1, sizeof *x);
    BIO *b = x ? BIO_new(g_rx_method) : NULL;
    if (!b) {
        free(x);
        return NULL;
    }
    x->fd = fd;
    x->co = co;
    BIO_set_data(b, x);
    BIO_set_init(b, 1);
    return b;
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

/* ---- the peer's RSA key keeps no Montgomery context ----------------------
 *
 * OpenSSL's RSA keys cache a Montgomery context for their modulus on their
 * first public-key operation (RSA_FLAG_CACHE_PUBLIC): for a 2048-bit key,
 * the context and three 256-byte numbers, some 880 bytes. The server's key
 * is parsed from its certificate in every full handshake and used once
 * (CertificateVerify; TLS 1.2: the key exchange signature), then stays with
 * the session as long as the connection: the cache is dead weight on every
 * idle wss connection (bench/tls_mem.c "nomont": 18,650 -> 17,754 bytes of
 * OpenSSL heap per connection; issue 16). RSA keys made while a handshake
 * runs (the peer's) are made without it: the one operation builds its
 * context and frees it. Keys made elsewhere (the trust store's, a client
 * certificate's) keep OpenSSL's default. RSA_METHOD is deprecated in
 * OpenSSL 3.0 but is the only hook into a key's flags as it is made; without
 * it (an OpenSSL built without the deprecated API) nothing changes. */
static int g_in_handshake;

#if !defined(OPENSSL_NO_DEPRECATED_3_0)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static int (*g_rsa_init0)(RSA *);

static int rsa_init(RSA *r)
{
    int ok = g_rsa_init0 ? g_rsa_init0(r) : 1;
    if (g_in_handshake) {
        RSA_clear_flags(r, RSA_FLAG_CACHE_PUBLIC);
    }
    return ok;
}

static void rsa_method_install(void)
{
    static int done;
    if (done) {
        return;
    }
    done = 1;
    /* never freed: every RSA key made from now on points at it */
    static RSA_METHOD *m;
    m = RSA_meth_dup(RSA_PKCS1_OpenSSL());
    if (!m) {
        ERR_clear_error();
        return;
    }
    g_rsa_init0 = RSA_meth_get_init(m);
    if (RSA_meth_set_init(m, rsa_init) != 1) {
        ERR_clear_error();
        RSA_meth_free(m);
        m = NULL;
        return;
    }
    RSA_set_default_method(m);
}
#pragma GCC diagnostic pop
#else
static void rsa_method_install(void) {}
#endif

SSL *wsp_tls_new(SSL_CTX *ctx, int fd, const char *name, int verify,
                 struct wsp_tls_conn_opts *co, char *err, size_t errcap)
{
    rsa_method_install();
    SSL *ssl = SSL_new(ctx);
    if (!ssl) {
        openssl_reason(err, errcap, "SSL_new", NULL);
        return NULL;
    }
    BIO *bio = rx_bio_new(fd, co);
    if (!bio) {
        openssl_reason(err, errcap, "cannot make the socket BIO", NULL);
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_bio(ssl, bio, bio); /* the SSL owns it; the fd stays ours */
    unsigned char ip[16];
    int is_ip = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;
    if (!is_ip && !(co && co->no_sni)) {
        SSL_set_tlsext_host_name(ssl, name);
    }
    if (co) {
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
    g_in_handshake = 1;
    int r = SSL_do_handshake(ssl);
    g_in_handshake = 0;
    int sys_errno = errno;
    if (r == 1) {
        const struct wsp_tls_conn_opts *co = conn_opts_of(ssl);
        /* a resumed session is this connection's own, from a handshake
         * that passed the same pin check (a failed one drops it); OpenSSL
         * keeps no verified chain up to the anchor for it */
        if (co && co->npins > 0 && !SSL_session_reused(ssl) &&
            !wsp_tls_pins_match(ssl, co->pins, co->npins)) {
            snprintf(err, errcap, "certificate pin mismatch: no public key in the server's "
                                  "chain matches pins");
            return -1;
        }
        /* Open: take records with one BIO read each, not two (the 5-byte
         * header, then the body): OpenSSL then reads up to its buffer's
         * size, from the BIO's buffer (rx_read: one recv for many records). The
         * default buffer (one record and a bit) is the best size: OpenSSL
         * 3.0 moves every byte still buffered to the buffer's front before
         * each record, so bigger buffers cost more memmove than the recv
         * calls they save (measured: 64 KiB no better, 256 KiB worse). Set
         * only now, so the handshake is as before; SSL_MODE_RELEASE_BUFFERS
         * still frees the buffer whenever it drains (idle: none held).
         * Records may then wait inside OpenSSL (and in the BIO's buffer,
         * read-ahead or not) that poll does not see: read until WANT_READ
         * (conn_read does; every resume path kicks it). */
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
    BIO_meth_free(g_rx_method);
    g_rx_method = NULL;
    while (contexts) {
        struct ctx_entry *e = contexts;
        contexts = e->next;
        entry_free(e);
    }
}
