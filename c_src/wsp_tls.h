/*
 * wsp_tls: OpenSSL used directly on a connection's own socket.
 * One SSL_CTX per distinct TLS configuration, shared by every connection
 * that uses it. The peer is verified against the system CA store (or the
 * given CA file) and its name checked, unless verify is explicitly off.
 */
#ifndef WSP_TLS_H
#define WSP_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>

struct wsp_tls_config {
    int verify;              /* 1 = verify peer and host name */
    const char *cacertfile;  /* NULL: system default store */
    const char *certfile;    /* client certificate (with keyfile) */
    const char *keyfile;
    const uint8_t *const *cacerts; /* DER certificates trusted (with or
                                      instead of the store / cacertfile) */
    const size_t *cacert_lens;
    size_t ncacerts;
    int min_version, max_version;  /* 0: TLS 1.2 / the highest */
    const char *ciphers;           /* TLS 1.2 list (OpenSSL syntax); NULL: default */
    const char *ciphersuites;      /* TLS 1.3 list; NULL: default */
    const uint8_t *const *certs;   /* client certificate in DER, leaf first (the
                                      rest sent as its chain); instead of certfile */
    const size_t *cert_lens;
    size_t ncerts;
    const uint8_t *key;            /* client key, PEM or DER (PKCS#1, SEC 1,
                                      PKCS#8, encrypted PKCS#8); instead of keyfile */
    size_t key_len;
    const uint8_t *password;       /* for an encrypted key or keyfile; NULL: none */
    size_t password_len;
};

/* Returns the shared context for cfg, creating it on first use; NULL with a
 * message in err ("cannot load CA file x: ...") on failure. The client
 * certificate and key are certfile or certs with keyfile or key; a wrong or
 * missing password, a key that does not match the certificate etc. are
 * failures naming the problem (never quoting the key or password). Contexts
 * are shared by configuration: the in-memory certificate, key and password
 * count by a SHA-256 over their bytes (nothing of them is kept; the key and
 * password buffers used while loading are wiped). A context whose
 * cacertfile, certfile or keyfile changed since (stat: inode, size, mtime)
 * is made again (open connections keep the old one); at most 32 contexts
 * are kept, the least recently used dropped. */
/* The TLS 1.3 ciphersuites offered when the user sets none: OpenSSL's
 * default three, AES-128-GCM first as browsers order them. */
#define WSP_TLS13_DEFAULT_SUITES                                                                   \
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

SSL_CTX *wsp_tls_ctx(const struct wsp_tls_config *cfg, char *err, size_t errcap);

/* Per connection: SNI off (the name is still checked), SPKI pins, and the
 * connection's TLS session for resumption (reuse_sessions).
 *
 * Sessions are per connection, never shared between connections: the
 * session a connection offers is the last one it received itself (a TLS 1.3
 * ticket arrives after the handshake, through the context's new-session
 * callback; TLS 1.2 gives its ticket or session id at the end of the
 * handshake), for the same URL, server name, pins and SSL_CTX (so the same
 * verification settings: a session from a context made again after a CA
 * file changed is dropped, not offered). OpenSSL does not verify the
 * certificate again on resumption; the name and chain were verified, for
 * this same name, when the session was made. A TLS 1.3 ticket is offered
 * once, by one connection (RFC 8446 C.4: tickets are not reused, they
 * would link the connections): the resumed handshake brings new ones (an
 * OpenSSL server sends one), else the next attempt is a full handshake. A
 * TLS failure (alert, verify or pin failure) drops the session. No pool
 * shared by connections to the same target: single-use tickets (two per
 * full handshake from an OpenSSL server) would resume only connections
 * opened after others finished, never a simultaneous storm, for state keyed
 * by context, host, port, SNI and pins. */
struct wsp_tls_conn_opts {     /* 32 bytes: one in every connection (issue 16) */
    const uint8_t (*pins)[32];  /* SHA-256 of SubjectPublicKeyInfo (DER) */
    SSL_SESSION *session;       /* the last resumable session, or NULL */
    SSL_CTX *session_ctx;       /* its context (a reference held) */
    uint32_t npins;             /* 0: no pinning */
    unsigned no_sni : 1;
    unsigned reuse : 1;         /* keep and offer sessions */
    unsigned failed : 1;        /* set by wsp_tls_session_bad: keep nothing */
    unsigned spent : 1;         /* session is a TLS 1.3 ticket already offered */
};

/* A client SSL on fd, with SNI (unless name is an IP literal or co->no_sni)
 * and the name to check in the peer certificate when verifying; with
 * co->reuse, it offers co->session if that came from ctx. co may be
 * NULL; it must outlive the SSL. Its BIO (rbio = wbio) is wsp_tls's
 * own socket BIO: it reads up to 256 KiB per recv(2) into a buffer shared
 * by all connections and keeps what the SSL has not taken yet (so read
 * until WANT_READ; BIO_ctrl_pending says how much is kept). It never closes
 * fd. */
SSL *wsp_tls_new(SSL_CTX *ctx, int fd, const char *name, int verify,
                 struct wsp_tls_conn_opts *co, char *err, size_t errcap);

/* 1 if the SHA-256 of the SubjectPublicKeyInfo of a certificate in the
 * verified chain (leaf to trust anchor; with verify off, the chain the
 * server sent) is one of pins[0..n), else 0. */
int wsp_tls_pins_match(SSL *ssl, const uint8_t (*pins)[32], size_t n);

/* Drives the handshake: 1 done, 0 in progress (*want_write says which way),
 * -1 a TLS failure with a message in err, e.g.
 * "certificate verify failed: Hostname mismatch", -2 a network failure:
 * the peer reset or ended the TCP connection and OpenSSL has nothing to say
 * about TLS itself (*net_errno: the errno, e.g. ECONNRESET, or 0 for EOF).
 * With pins (wsp_tls_new's co), a chain without a pinned key is -1:
 * "certificate pin mismatch: no public key in the server's chain matches
 * pins". */
int wsp_tls_handshake(SSL *ssl, int *want_write, int *net_errno, char *err, size_t errcap);

/* Frees ssl, the connection's SSL (NULL: nothing). With co->reuse and no
 * failure since wsp_tls_new, the session stays resumable after a connection
 * that ended without close_notify (a reset, an EOF, the server killed):
 * RFC 4346 (TLS 1.1) dropped the rule that such a session must not be
 * resumed; only a fatal alert invalidates it (RFC 5246 7.2.2), and OpenSSL
 * already marks it so then. */
void wsp_tls_free(SSL *ssl, struct wsp_tls_conn_opts *co);

/* The handshake or connection failed at the TLS level: the session goes and
 * nothing of the current SSL is kept. */
void wsp_tls_session_bad(struct wsp_tls_conn_opts *co);

/* Releases the kept session (the connection ends). */
void wsp_tls_forget(struct wsp_tls_conn_opts *co);

/* 1 if ssl's handshake resumed a session, else 0. */
int wsp_tls_resumed(const SSL *ssl);

/* Frees every shared context (at exit). */
void wsp_tls_free_all(void);

#endif
