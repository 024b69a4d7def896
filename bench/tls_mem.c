/*
 * tls_mem: what OpenSSL holds per idle TLS client connection (issue 16).
 * Opens N connections to a TLS WebSocket server on 127.0.0.1:PORT (the
 * firehose: `out/firehose --tls cert.pem key.pem`), configured as
 * c_src/wsp_tls.c configures its SSL_CTX (verify off, as the idle bench),
 * does the handshake and the upgrade, SSL_free_buffers, and counts what
 * OpenSSL allocates (CRYPTO_set_mem_functions) at each stage: bytes asked,
 * allocations, and what glibc's malloc spends on them (8-byte header,
 * 16-byte rounding). DUMP=1 lists what stays per connection by OpenSSL
 * call site. "slab8" is what wsp_osslmem's size classes would spend.
 *
 *   out/tls_mem PORT [N=200] [default|aes128|chacha|tls12|noticket|nokeep|nomont]
 */
#define OPENSSL_SUPPRESS_DEPRECATED /* RSA_METHOD, for the "nomont" mode */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static long g_live, g_n, g_usable;
struct hdr { size_t n; const char *f; int l; int gen; struct hdr *prev, *next; };
static struct hdr head = {0, 0, 0, 0, &head, &head};
static int g_gen;
#define H sizeof(struct hdr)
static long cost(size_t n) { return (long)((n + 8 + 15) & ~(size_t)15); } /* glibc chunk */
static void *m_malloc(size_t n, const char *f, int l)
{
    struct hdr *p = malloc(n + H);
    if (!p) return NULL;
    p->n = n; p->f = f; p->l = l; p->gen = g_gen;
    p->next = head.next; p->prev = &head; head.next->prev = p; head.next = p;
    g_live += (long)n; g_n++; g_usable += cost(n);
    return p + 1;
}
static void m_free(void *q, const char *f, int l)
{
    (void)f; (void)l;
    if (!q) return;
    struct hdr *p = (struct hdr *)q - 1;
    p->prev->next = p->next; p->next->prev = p->prev;
    g_live -= (long)p->n; g_n--; g_usable -= cost(p->n);
    free(p);
}
static void *m_realloc(void *q, size_t n, const char *f, int l)
{
    if (!q) return m_malloc(n, f, l);
    struct hdr *p = (struct hdr *)q - 1;
    void *nq = m_malloc(n, f, l);
    memcpy(nq, q, p->n < n ? p->n : n);
    m_free(q, f, l);
    return nq;
}
static void dump(int gen, int conns)
{
    struct { const char *f; int l; long bytes, cnt, cst; } t[400]; int nt = 0;
    for (struct hdr *p = head.next; p != &head; p = p->next) {
        if (p->gen != gen) continue;
        int i;
        for (i = 0; i < nt; i++) if (t[i].l == p->l && !strcmp(t[i].f, p->f)) break;
        if (i == nt) { if (nt == 400) continue; t[nt].f = p->f; t[nt].l = p->l; t[nt].bytes = t[nt].cnt = t[nt].cst = 0; nt++; }
        t[i].bytes += (long)p->n; t[i].cnt++; t[i].cst += cost(p->n);
    }
    for (int i = 0; i < nt; i++)
        if (t[i].cst / conns >= 16)
            printf("  %6.0f B %5.1f allocs %6.0f heap  %s:%d\n", (double)t[i].bytes / conns, (double)t[i].cnt / conns, (double)t[i].cst / conns, t[i].f, t[i].l);
}

#define MAXC 2000
static SSL_SESSION *kept[MAXC];
static int ex_idx;
static int keep_sessions = 1;
static int on_new(SSL *ssl, SSL_SESSION *s)
{
    if (!keep_sessions) return 0;
    long i = (long)SSL_get_ex_data(ssl, ex_idx);
    SSL_SESSION_free(kept[i]);
    kept[i] = s;
    return 1;
}

/* "nomont": RSA keys made without RSA_FLAG_CACHE_PUBLIC (what c_src/wsp_tls.c
 * does): the peer key's Montgomery context is not kept after the one
 * CertificateVerify check */
static int (*g_rsa_init0)(RSA *);
static int rsa_init_nocache(RSA *r)
{
    int ok = g_rsa_init0 ? g_rsa_init0(r) : 1;
    RSA_clear_flags(r, RSA_FLAG_CACHE_PUBLIC);
    return ok;
}

static void snap(const char *what, long *l, long *n, long *u, int conns)
{
    printf("%-34s bytes %7.0f  allocs %6.1f  heap(usable+hdr) %7.0f   (delta/conn)\n", what,
           (double)(g_live - *l) / conns, (double)(g_n - *n) / conns, (double)(g_usable - *u) / conns);
    *l = g_live; *n = g_n; *u = g_usable;
}

int main(int argc, char **argv)
{
    int port = atoi(argv[1]);
    int conns = argc > 2 ? atoi(argv[2]) : 200;
    const char *mode = argc > 3 ? argv[3] : "default";
    CRYPTO_set_mem_functions(m_malloc, m_realloc, m_free);
    if (strstr(mode, "nomont")) {
        RSA_METHOD *m = RSA_meth_dup(RSA_PKCS1_OpenSSL());
        g_rsa_init0 = RSA_meth_get_init(m);
        RSA_meth_set_init(m, rsa_init_nocache);
        RSA_set_default_method(m);
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (strstr(mode, "tls12")) SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    if (strstr(mode, "noticket")) SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    if (strstr(mode, "nokeep")) keep_sessions = 0;
    if (strstr(mode, "x25519")) SSL_CTX_set1_groups_list(ctx, "X25519");
    if (strstr(mode, "chacha")) SSL_CTX_set_ciphersuites(ctx, "TLS_CHACHA20_POLY1305_SHA256");
    if (strstr(mode, "aes128")) SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256");
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_new);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    ex_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    static SSL *ssl[MAXC];
    g_gen = 1;
    long l = g_live, n = g_n, u = g_usable;
    for (int i = 0; i < conns; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) { perror("connect"); return 1; }
        ssl[i] = SSL_new(ctx);
        SSL_set_ex_data(ssl[i], ex_idx, (void *)(long)i);
        SSL_set_fd(ssl[i], fd);
        SSL_set_tlsext_host_name(ssl[i], "localhost");
    }
    snap("SSL_new + set_fd", &l, &n, &u, conns);
    g_gen = 2;
    for (int i = 0; i < conns; i++) {
        if (SSL_connect(ssl[i]) != 1) { ERR_print_errors_fp(stderr); return 1; }
    }
    snap("handshake", &l, &n, &u, conns);
    const char req[] = "GET /?mode=idle HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    for (int i = 0; i < conns; i++) {
        SSL_write(ssl[i], req, sizeof req - 1);
        char buf[4096]; size_t got = 0;
        while (got < 4 || !memmem(buf, got, "\r\n\r\n", 4)) {
            int r = SSL_read(ssl[i], buf + got, (int)(sizeof buf - got));
            if (r <= 0) { fprintf(stderr, "read fail\n"); return 1; }
            got += (size_t)r;
        }
    }
    snap("upgrade (tickets read)", &l, &n, &u, conns);
    for (int i = 0; i < conns; i++) SSL_free_buffers(ssl[i]);
    snap("SSL_free_buffers", &l, &n, &u, conns);
    g_gen = 3;
    if (getenv("DUMP")) { printf("-- live from SSL_new:\n"); dump(1, conns); printf("-- live from handshake/upgrade:\n"); dump(2, conns); }
    {
        long g = 0, s16 = 0, s8 = 0, big = 0, nbig = 0;
        for (struct hdr *p = head.next; p != &head; p = p->next) {
            if (p->gen == 0) continue;
            g += cost(p->n);
            if (p->n > 256) { big += cost(p->n); nbig++; s16 += cost(p->n); s8 += cost(p->n); continue; }
            s16 += (long)((p->n + 15) & ~(size_t)15);
            s8 += p->n <= 64 ? (long)((p->n + 7) & ~(size_t)7) : (long)((p->n + 15) & ~(size_t)15);
        }
        printf("per conn: glibc %ld  slab16 %ld  slab8 %ld  (of which > 256 B: %ld in %ld)\n", g / conns, s16 / conns, s8 / conns, big / conns, nbig / conns);
    }
    printf("TOTAL held per conn: bytes %.0f allocs %.1f heap %.0f  (%s, %s, %s)\n",
           (double)g_live / conns, (double)g_n / conns, (double)g_usable / conns, mode,
           SSL_get_version(ssl[0]), SSL_CIPHER_get_name(SSL_get_current_cipher(ssl[0])));
    l = g_live; n = g_n; u = g_usable;
    for (int i = 0; i < conns; i++) { SSL_SESSION_free(kept[i]); kept[i] = NULL; }
    snap("free kept sessions", &l, &n, &u, conns);
    for (int i = 0; i < conns; i++) SSL_free(ssl[i]);
    snap("SSL_free", &l, &n, &u, conns);
    return 0;
}
