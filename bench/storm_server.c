/*
 * storm_server: a wss server that only accepts: TLS handshake, WebSocket
 * upgrade, then the connection idles (what it sends is read and dropped).
 * Peer of the reconnect storm benchmark (bench/storm.sh): it is killed and
 * started again while 10,000 clients are connected, and reports how many TLS
 * handshakes it did, full or resumed, per 100 ms.
 *
 *   storm_server --tls CERT KEY [--ticket-key FILE] [--port P] [--tls12]
 *
 * Prints "PORT <n>" on stdout once listening on 127.0.0.1 (port 0, the
 * default, lets the kernel choose; SO_REUSEADDR so a restart can take the
 * same port at once). Then, for every 100 ms slot in which handshakes
 * completed:
 *
 *   H <unix ms of the slot's start> full=<n> resumed=<n> upgrades=<n> accepts=<n>
 *
 * --ticket-key FILE: the 80 bytes of FILE are the session ticket keys
 * (SSL_CTX_set_tlsext_ticket_keys: name, HMAC and AES keys), so a restarted
 * server decrypts the tickets the previous process issued, as servers that
 * share ticket keys do. Without it OpenSSL makes random keys per process (a
 * restart invalidates every ticket). Sessions are resumed by ticket only (no
 * server-side session cache): TLS 1.3 and TLS 1.2 alike. --tls12: TLS 1.2
 * at most.
 *
 * Plain epoll, one thread; the fd limit is raised to the hard limit.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#define SLOT_MS 100
#define REQ_MAX 4096

enum st { S_TLS, S_HTTP, S_REPLY, S_IDLE };

struct conn {
    int fd;
    enum st st;
    SSL *ssl;
    size_t reqlen;
    char *req;      /* the upgrade request read so far (S_HTTP) */
    char reply[160];
    size_t replylen, replyoff;
};

static struct conn **g_conns; /* by fd */
static size_t g_nconns;
static int g_ep;
static uint64_t g_full, g_resumed, g_upgrades, g_accepts;
static int64_t g_slot = -1;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* prints the finished slot if anything happened in it */
static void flush_slot(int64_t now)
{
    int64_t slot = now / SLOT_MS;
    if (slot == g_slot) {
        return;
    }
    if (g_slot >= 0 && (g_full || g_resumed || g_upgrades || g_accepts)) {
        printf("H %lld full=%llu resumed=%llu upgrades=%llu accepts=%llu\n",
               (long long)(g_slot * SLOT_MS), (unsigned long long)g_full,
               (unsigned long long)g_resumed, (unsigned long long)g_upgrades,
               (unsigned long long)g_accepts);
        fflush(stdout);
    }
    g_full = g_resumed = g_upgrades = g_accepts = 0;
    g_slot = slot;
}

static void conn_close(struct conn *c)
{
    epoll_ctl(g_ep, EPOLL_CTL_DEL, c->fd, NULL);
    /* the client will resume: keep the session valid (no close_notify is
     * no reason to drop it) */
    if (c->ssl) {
        SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        SSL_free(c->ssl);
    }
    close(c->fd);
    g_conns[c->fd] = NULL;
    free(c->req);
    free(c);
}

static void want(struct conn *c, int write)
{
    struct epoll_event ev = {.events = write ? EPOLLOUT : EPOLLIN, .data.ptr = c};
    epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* the Sec-WebSocket-Accept of key (RFC 6455 4.2.2) */
static int accept_of(const char *key, size_t keylen, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char md[20];
    char buf[128];
    if (keylen + sizeof guid > sizeof buf) {
        return -1;
    }
    memcpy(buf, key, keylen);
    memcpy(buf + keylen, guid, sizeof guid - 1);
    unsigned int mdlen = 0;
    if (EVP_Digest(buf, keylen + sizeof guid - 1, md, &mdlen, EVP_sha1(), NULL) != 1) {
        return -1;
    }
    EVP_EncodeBlock((unsigned char *)out, md, 20);
    return 0;
}

static int make_reply(struct conn *c)
{
    const char *p = c->req;
    const char *key = NULL;
    size_t keylen = 0;
    while ((p = strstr(p, "\r\n")) != NULL) {
        p += 2;
        if (strncasecmp(p, "sec-websocket-key:", 18) == 0) {
            key = p + 18;
            while (*key == ' ') {
                key++;
            }
            const char *e = strstr(key, "\r\n");
            keylen = e ? (size_t)(e - key) : 0;
            break;
        }
    }
    char acc[29];
    if (!key || keylen == 0 || accept_of(key, keylen, acc) < 0) {
        return -1;
    }
    int n = snprintf(c->reply, sizeof c->reply,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", acc);
    c->replylen = (size_t)n;
    c->replyoff = 0;
    return 0;
}

static void step(struct conn *c)
{
    for (;;) {
        if (c->st == S_TLS) {
            ERR_clear_error();
            int r = SSL_accept(c->ssl);
            if (r == 1) {
                if (SSL_session_reused(c->ssl)) {
                    g_resumed++;
                } else {
                    g_full++;
                }
                c->st = S_HTTP;
                c->req = malloc(REQ_MAX + 1);
                if (!c->req) {
                    conn_close(c);
                    return;
                }
                continue;
            }
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                want(c, e == SSL_ERROR_WANT_WRITE);
                return;
            }
            conn_close(c);
            return;
        }
        if (c->st == S_HTTP) {
            int r = SSL_read(c->ssl, c->req + c->reqlen, (int)(REQ_MAX - c->reqlen));
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                    want(c, e == SSL_ERROR_WANT_WRITE);
                    return;
                }
                conn_close(c);
                return;
            }
            c->reqlen += (size_t)r;
            c->req[c->reqlen] = 0;
            if (!strstr(c->req, "\r\n\r\n")) {
                if (c->reqlen == REQ_MAX) {
                    conn_close(c);
                    return;
                }
                continue;
            }
            if (make_reply(c) < 0) {
                conn_close(c);
                return;
            }
            free(c->req);
            c->req = NULL;
            c->st = S_REPLY;
            continue;
        }
        if (c->st == S_REPLY) {
            int r = SSL_write(c->ssl, c->reply + c->replyoff, (int)(c->replylen - c->replyoff));
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                    want(c, e == SSL_ERROR_WANT_WRITE);
                    return;
                }
                conn_close(c);
                return;
            }
            c->replyoff += (size_t)r;
            if (c->replyoff == c->replylen) {
                c->st = S_IDLE;
                g_upgrades++;
                want(c, 0);
            }
            continue;
        }
        /* S_IDLE: read and drop until EOF */
        char buf[4096];
        int r = SSL_read(c->ssl, buf, sizeof buf);
        if (r > 0) {
            continue;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            want(c, e == SSL_ERROR_WANT_WRITE);
            return;
        }
        conn_close(c);
        return;
    }
}

static void accept_all(int lfd, SSL_CTX *ctx)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            return; /* EAGAIN, or out of fds: the rest wait in the backlog */
        }
        if ((size_t)fd >= g_nconns) {
            close(fd);
            continue;
        }
        g_accepts++;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        SSL *ssl = c ? SSL_new(ctx) : NULL;
        if (!ssl) {
            free(c);
            close(fd);
            continue;
        }
        c->fd = fd;
        c->ssl = ssl;
        SSL_set_fd(ssl, fd);
        SSL_set_accept_state(ssl);
        g_conns[fd] = c;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev);
        step(c);
        flush_slot(now_ms());
    }
}

int main(int argc, char **argv)
{
    const char *cert = NULL, *key = NULL, *ticket_key = NULL;
    int port = 0, tls12 = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc) {
            port = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--tls") && i + 2 < argc) {
            cert = argv[++i];
            key = argv[++i];
        } else if (!strcmp(argv[i], "--ticket-key") && i + 1 < argc) {
            ticket_key = argv[++i];
        } else if (!strcmp(argv[i], "--tls12")) {
            tls12 = 1;
        } else {
            fprintf(stderr, "usage: storm_server --tls CERT KEY [--ticket-key FILE] [--port P] "
                            "[--tls12]\n");
            return 2;
        }
    }
    if (!cert) {
        fprintf(stderr, "storm_server: --tls CERT KEY is required\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    g_nconns = rl.rlim_cur > 1000000 ? 1000000 : (size_t)rl.rlim_cur;
    g_conns = calloc(g_nconns, sizeof *g_conns);

    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        ERR_print_errors_fp(stderr);
        return 1;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (tls12) {
        SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (ticket_key) {
        unsigned char keys[80];
        FILE *f = fopen(ticket_key, "rb");
        if (!f || fread(keys, 1, sizeof keys, f) != sizeof keys) {
            fprintf(stderr, "storm_server: %s: need 80 bytes of ticket keys\n", ticket_key);
            return 1;
        }
        fclose(f);
        if (SSL_CTX_set_tlsext_ticket_keys(ctx, keys, sizeof keys) != 1) {
            ERR_print_errors_fp(stderr);
            return 1;
        }
    }

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 65535) < 0) {
        perror("storm_server: bind/listen");
        return 1;
    }
    socklen_t alen = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &alen);
    printf("PORT %d\n", ntohs(a.sin_port));
    fflush(stdout);

    g_ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(g_ep, EPOLL_CTL_ADD, lfd, &lev);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(g_ep, evs, 256, SLOT_MS);
        if (n < 0 && errno != EINTR) {
            perror("storm_server: epoll_wait");
            return 1;
        }
        flush_slot(now_ms());
        for (int i = 0; i < n; i++) {
            flush_slot(now_ms()); /* what follows counts in the current slot */
            if (!evs[i].data.ptr) {
                accept_all(lfd, ctx);
            } else {
                step(evs[i].data.ptr);
            }
        }
    }
}
