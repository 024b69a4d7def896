#include "wsp_conn.h"
#include "wsp_deflate.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "wsp_backoff.h"
#include "wsp_buf.h"
#include "wsp_compat.h"
#include "wsp_dns.h"
#include "wsp_link.h"
#include "wsp_log.h"
#include "wsp_optcache.h"
#include "wsp_tls.h"
#include "ws_codec.h"

#define READ_CHUNK (256 * 1024)
#define READ_BUDGET (4 * 1024 * 1024)     /* bytes per wake-up before yielding */
#define DIRECT_MIN (8u * 1024)            /* a frame's rest read into c->msg from this size */
#define MSG_PRESIZE_MAX (16u * 1024 * 1024) /* most reserved ahead for a message */
#define SENDQ_HIGH (4u * 1024 * 1024)     /* {busy, Id} above this per conn */
#define SENDQ_LOW (1u * 1024 * 1024)      /* {ready, Id} again below this */
#define SENDQ_HARD (64u * 1024 * 1024)    /* pause all commands above this */
#define PONG_SKIP (256u * 1024)           /* no auto-pong while this much waits */
#define CLOSE_TIMEOUT_US (5 * LWS_US_PER_SEC)
#define LINGER_US (1 * LWS_US_PER_SEC)
#define LINGER_DRAIN (256u * 1024)
#define SPLICE_MIN (32u * 1024)   /* smaller message tails are copied */
#define SPLICE_MAX_HAVE (64u * 1024) /* bytes read already, copied into the pipe */
#define HDR_READ 10               /* the longest server frame header */
#define UPGRADE_CHUNK (8 * 1024)  /* read size while the response is gathered */
#define UPGRADE_READS 16          /* reads per wake-up while upgrading (a
                                     trickling server gives a byte a read) */

enum conn_state {
    ST_BACKOFF = 1, /* lost; waiting to retry (timer, or {reconnect} in manual mode) */
    ST_RESOLVING,
    ST_CONNECTING,
    ST_PROXY,     /* TCP up to the proxy: its handshake (wsp_proxy) */
    ST_TLS,
    ST_UPGRADING,
    ST_OPEN,
    ST_CLOSING,   /* our close frame sent, waiting for the server's */
    ST_DONE,      /* final event sent; flushing, then the socket goes */
};

static const char *state_name(enum conn_state s)
{
    switch (s) {
    case ST_BACKOFF: return "reconnecting";
    case ST_RESOLVING: return "resolving";
    case ST_CONNECTING: return "connecting";
    case ST_PROXY: return "proxy_handshake";
    case ST_TLS: return "tls_handshake";
    case ST_UPGRADING: return "upgrading";
    case ST_OPEN: return "open";
    case ST_CLOSING: return "closing";
    case ST_DONE: return "closed";
    }
    return "unknown";
}

/* What an attempt needs of the URL: parsed again for every attempt, and
 * dropped once the connection is open (an open connection keeps none of it). */
struct wsp_target {
    struct wsc_url url;
    char host_header[300];
    char key[25];                    /* our Sec-WebSocket-Key */
    struct wsc_response_reader hs;   /* the upgrade response read so far */
};

#define CLOSE_REASON_MAX 123         /* 125 - 2 bytes of code */

static char g_tls_err[256];              /* OpenSSL's reason after a TLS failure */

struct wsp_conn {
    struct wsp_watch watch;          /* first member: routed by the loop */
    uint32_t id;
    enum conn_state state;
    struct wsp_connect_opts *opts;   /* shared with connections made alike
                                        (wsp_optcache): read-only */
    struct wsp_target *t;            /* where to connect, the key and the
                                        response read so far; only while
                                        connecting and upgrading */
    struct wsp_proxy_hs *px;         /* the proxy's handshake, while in ST_PROXY */
    struct wsp_tls_conn_opts tls_co; /* SNI and pins, for wsp_tls (points into opts) */

    int fd;
    int last_errno;
    struct wsp_watch *watched;       /* &watch while the socket is watched */
    SSL *ssl;
    struct wsp_dns_req *dns;
    struct wsp_dns_result *addrs;
    size_t addr_next;

    struct wsp_buf rbuf;             /* bytes read, not yet parsed */
    struct wsp_buf wbuf;             /* bytes to write */
    struct wsp_buf msg;              /* a fragmented message being assembled */
    struct wsc_parser parser;
    struct wsp_pmd *pmd;             /* permessage-deflate, if negotiated */

    /* one bit each (an idle connection's size matters: issue 16) */
    unsigned tls_want_write : 1;     /* SSL_read/handshake wants POLLOUT */
    unsigned splicing : 1;           /* the message's tail goes socket -> pipe */
    unsigned splice_off : 1;         /* not this message (pipe full, taken back) */
    unsigned splice_lost : 1;        /* taking it back failed: fail the conn */
    unsigned large : 1;              /* the last message was >= SPLICE_MIN */
    unsigned passive_events : 1;     /* credit came from {active, N} */
    unsigned reading : 1;            /* input polling enabled */
    unsigned want_write : 1;
    unsigned over_high : 1;          /* sent {busy, Id}: waiting for {ready, Id} */
    unsigned over_hard : 1;          /* counted in g_over_hard */
    unsigned dirty : 1;
    unsigned link_paused : 1;        /* on g_paused: stopped for a full link */
    unsigned closing : 1;            /* the BEAM closed it: it ends, never retried */
    unsigned ever_up : 1;
    unsigned lingering : 1;          /* FIN sent, draining until EOF or timer */
    unsigned in_cb : 1;              /* inside wsp_conn_on_io for this conn */
    unsigned free_pending : 1;
    unsigned in_flight : 1;          /* holds one of the ATTEMPTS_MAX slots */
    uint8_t close_reason_len;
    uint16_t close_code;             /* what we sent in our close frame */
    char *close_reason;              /* its reason (malloc), NULL if none */

    int64_t credit;                  /* -1 = unlimited */
    struct wsp_conn *dirty_next;
    struct wsp_conn *paused_next;

    /* One timer for whatever the state needs (issue 16: a timer node is
     * 48 bytes, and an idle connection's size matters): the connect
     * deadline (resolving to upgrading), the retry (backoff), the ping
     * interval and idle timeout (open: on_live), the close deadline
     * (closing), the linger (done). Each state's arming replaces the last
     * state's; on_live does nothing outside ST_OPEN. */
    lws_sorted_usec_list_t timer;
    /* On g_kicks: continue reading from the loop (a list node, not a timer).
     * While an attempt waits for a slot (ST_RESOLVING, no socket: never
     * kicked), on g_waiting instead. */
    struct lws_dll2 kick;

    lws_usec_t last_rx, up_at;
    lws_usec_t ping_sent_at;         /* the last ping sent, ours or the user's */
    lws_usec_t user_ping_at;         /* the user's outstanding ping, 0 if none */
    uint64_t ping_key;               /* our pings carry (send time ^ ping_key) */
    int64_t last_rtt_us;
    uint64_t bytes_in, bytes_out, msgs_in, msgs_out, msgs_spliced;

    uint64_t attempt;                /* failed attempts since the last up */
    uint64_t reconnects;             /* times it came back after a loss */
    struct wsp_buf held;             /* frames sent while not open (send_queue):
                                        <<Opcode:8, Len:32, Payload>>, unmasked */
    uint32_t nheld;
    uint32_t linger_budget;          /* bytes still read and dropped in ST_DONE
                                        (LINGER_DRAIN at most) */
    struct wsp_conn *all_next, **all_prev;
};

/* ---- the set of connections -------------------------------------------- */

static uint8_t g_rshared[READ_CHUNK];    /* see conn_read */
static struct wsp_conn *g_all;           /* every live struct (incl. lingering) */
static struct wsp_conn **g_table;        /* id -> conn, open addressing */
static size_t g_table_cap, g_table_used;
static struct wsp_conn *g_dirty;
static struct wsp_conn *g_paused;        /* stopped because the link is full */
/* connections to go on reading from the loop (struct wsp_conn by their
 * kick node), run by one 0-delay timer */
static lws_dll2_owner_t g_kicks;
static lws_sorted_usec_list_t g_kick_sul;
static int g_over_hard;
static int g_congested;
static uint64_t g_rng[4];

/* Connections came up or went since the heap was last trimmed: trim it
 * (wsp_compat_trim_heap) a second later, so a burst of handshakes leaves
 * no free-but-resident pages between the idle connections. Not while
 * handshakes are under way: malloc_trim walks the whole heap and madvises
 * its free pages (a TLB flush on every CPU each time), the handshakes then
 * fault the same pages in again, and at 10,000 reconnects trimming every
 * second took a fifth of the port program's CPU (issue 16). It waits until
 * no connection is between connecting and open, TRIM_MAX_US at most. */
#define TRIM_DELAY_US (1 * LWS_US_PER_SEC)
#define TRIM_MAX_US (30 * LWS_US_PER_SEC)
static lws_sorted_usec_list_t g_trim;
static int g_trim_armed;
static lws_usec_t g_trim_since;

/* Walks every connection: once a second at most, while a trim waits. */
static int handshakes_under_way(void)
{
    for (const struct wsp_conn *c = g_all; c; c = c->all_next) {
        if (c->state >= ST_RESOLVING && c->state < ST_OPEN) {
            return 1;
        }
    }
    return 0;
}

static void on_trim(lws_sorted_usec_list_t *sul)
{
    (void)sul;
    if (wsp_now() - g_trim_since < TRIM_MAX_US && handshakes_under_way()) {
        wsp_loop_schedule(&g_trim, on_trim, TRIM_DELAY_US);
        return;
    }
    g_trim_armed = 0;
    /* it stalls the loop (a second or more at thousands of connections on
     * a busy machine): what is encoded goes to the BEAM first */
    wsp_conn_flush_all();
    wsp_link_flush();
    wsp_compat_trim_heap();
}

static void note_churn(void)
{
    if (!g_trim_armed) {
        g_trim_armed = 1;
        g_trim_since = wsp_now();
        wsp_loop_schedule(&g_trim, on_trim, TRIM_DELAY_US);
    }
}

/* Attempts in flight (resolving, connecting, proxy, TLS, upgrading) at
 * once, per port program; more wait in g_waiting, in order, with their
 * connect_timeout running. Without a cap, a fleet that loses its server
 * comes back all at once: 10,000 handshakes under way together, the server
 * taking each flight in turn, and none finishes before nearly all have
 * (the first after 18-23 s at 10,000 on this machine), or all of them
 * time out together when that is longer than connect_timeout and the herd
 * starts again (issue 16). With at most ATTEMPTS_MAX under way they finish
 * in order while the rest wait, and a waiting one costs the server nothing
 * when it times out. */
#define ATTEMPTS_MAX 256
static uint32_t g_inflight;
static lws_dll2_owner_t g_waiting;       /* struct wsp_conn by their kick node */
static lws_sorted_usec_list_t g_admit;

static void attempt_go(struct wsp_conn *c);

static void on_admit(lws_sorted_usec_list_t *sul)
{
    (void)sul;
    struct lws_dll2 *d;
    while (g_inflight < ATTEMPTS_MAX && (d = lws_dll2_get_head(&g_waiting)) != NULL) {
        struct wsp_conn *c = lws_container_of(d, struct wsp_conn, kick);
        lws_dll2_remove(d);
        attempt_go(c);
    }
    wsp_conn_flush_all();
    wsp_link_flush();
}

/* The attempt is over (up, failed, given up or closed): its slot goes to
 * the next waiting one, from the loop. */
static void attempt_end(struct wsp_conn *c)
{
    if (c->in_flight) {
        c->in_flight = 0;
        g_inflight--;
        if (g_waiting.count > 0) {
            wsp_loop_schedule(&g_admit, on_admit, 0);
        }
    }
}

static size_t slot_of(uint32_t id, size_t cap) { return (id * 2654435761u) & (cap - 1); }

static struct wsp_conn *table_get(uint32_t id)
{
    if (!g_table) {
        return NULL;
    }
    for (size_t i = slot_of(id, g_table_cap);; i = (i + 1) & (g_table_cap - 1)) {
        if (!g_table[i]) {
            return NULL;
        }
        if (g_table[i]->id == id) {
            return g_table[i];
        }
    }
}

static int table_put(struct wsp_conn *c)
{
    if ((g_table_used + 1) * 2 > g_table_cap) {
        size_t ncap = g_table_cap ? g_table_cap * 2 : 64;
        struct wsp_conn **nt = calloc(ncap, sizeof *nt);
        if (!nt) {
            return -1;
        }
        for (size_t i = 0; i < g_table_cap; i++) {
            if (g_table[i]) {
                size_t j = slot_of(g_table[i]->id, ncap);
                while (nt[j]) {
                    j = (j + 1) & (ncap - 1);
                }
                nt[j] = g_table[i];
            }
        }
        free(g_table);
        g_table = nt;
        g_table_cap = ncap;
    }
    size_t i = slot_of(c->id, g_table_cap);
    while (g_table[i]) {
        i = (i + 1) & (g_table_cap - 1);
    }
    g_table[i] = c;
    g_table_used++;
    return 0;
}

static void table_del(struct wsp_conn *c)
{
    if (!g_table) {
        return;
    }
    size_t i = slot_of(c->id, g_table_cap);
    while (g_table[i] && g_table[i] != c) {
        i = (i + 1) & (g_table_cap - 1);
    }
    if (!g_table[i]) {
        return;
    }
    g_table[i] = NULL;
    g_table_used--;
    /* re-insert the rest of the cluster (backward-shift would also do) */
    for (size_t j = (i + 1) & (g_table_cap - 1); g_table[j]; j = (j + 1) & (g_table_cap - 1)) {
        struct wsp_conn *m = g_table[j];
        g_table[j] = NULL;
        size_t k = slot_of(m->id, g_table_cap);
        while (g_table[k]) {
            k = (k + 1) & (g_table_cap - 1);
        }
        g_table[k] = m;
    }
}

/* ---- masks: xoshiro256**, seeded from the kernel ----------------------- */

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(void)
{
    if (!(g_rng[0] | g_rng[1] | g_rng[2] | g_rng[3])) {
        if (wsp_random_bytes(g_rng, sizeof g_rng) < 0) {
            g_rng[0] = (uint64_t)lws_now_usecs() | 1;
            g_rng[1] = (uint64_t)getpid();
        }
    }
    uint64_t r = rotl(g_rng[1] * 5, 7) * 9, t = g_rng[1] << 17;
    g_rng[2] ^= g_rng[0];
    g_rng[3] ^= g_rng[1];
    g_rng[1] ^= g_rng[2];
    g_rng[0] ^= g_rng[3];
    g_rng[2] ^= t;
    g_rng[3] = rotl(g_rng[3], 45);
    return r;
}

/* ---- events to the BEAM ------------------------------------------------ */

static ei_x_buff g_x;

static ei_x_buff *xbuf(void)
{
    if (!g_x.buff) {
        ei_x_new(&g_x);
    }
    return &g_x;
}

static void emit(void) { wsp_link_event(&g_x); }

static void emit_error(uint32_t id, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void emit_error(uint32_t id, const char *what, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0) {
        n = 0;
    }
    if ((size_t)n >= sizeof msg) {
        n = (int)sizeof msg - 1;
    }
    wsp_enc_error(xbuf(), id, what, msg, (size_t)n);
    emit();
}

/* ---- lifetime ----------------------------------------------------------- */

static void conn_set_reading(struct wsp_conn *c);
static int conn_flush(struct wsp_conn *c);
static int io_read(struct wsp_conn *c, uint8_t *p, size_t n, int *err);
static void conn_read(struct wsp_conn *c);

/* A message half moved into wsp_link's pipe is dropped with the socket. */
static void splice_drop(struct wsp_conn *c)
{
    if (c->splicing) {
        wsp_link_splice_abort();
        c->splicing = 0;
    }
    c->splice_off = 0;
    c->large = 0;
}

static void detach_socket(struct wsp_conn *c)
{
    splice_drop(c);
    wsp_tls_free(c->ssl, &c->tls_co); /* keeps its session for the next attempt */
    c->ssl = NULL;
    if (c->watched) {
        wsp_loop_close(&c->watch);
        c->watched = NULL;
    } else if (c->fd >= 0) {
        close(c->fd);
    }
    c->fd = -1;
    c->reading = 0;
}

/* Send backpressure, per connection: above SENDQ_HIGH unwritten bytes the
 * BEAM is told {busy, Id} (its senders then wait), below SENDQ_LOW {ready,
 * Id}. Only a connection past SENDQ_HARD (senders that ignore busy) stops
 * the reading of commands for the whole program. */
static void update_over_high(struct wsp_conn *c)
{
    size_t q = wsp_buf_pending(&c->wbuf);
    int over = c->over_high ? q > SENDQ_LOW : q >= SENDQ_HIGH;
    if (over != c->over_high && c->state != ST_DONE) {
        /* its own buffer: this runs while g_x may hold a final event that
         * lost() is about to turn into a down event */
        static ei_x_buff flow;
        c->over_high = over;
        if (wsp_enc_tag_id(&flow, over ? "busy" : "ready", c->id) == 0) {
            wsp_link_event(&flow);
        }
    }
    int hard = c->over_hard ? q > SENDQ_HIGH : q >= SENDQ_HARD;
    if (hard != c->over_hard) {
        c->over_hard = hard;
        g_over_hard += hard ? 1 : -1;
        wsp_link_pause_input(g_over_hard > 0);
    }
}

/* Takes c off the list of connections stopped for a full link. */
static void unpause_unlink(struct wsp_conn *c)
{
    if (c->link_paused) {
        for (struct wsp_conn **pp = &g_paused; *pp; pp = &(*pp)->paused_next) {
            if (*pp == c) {
                *pp = c->paused_next;
                break;
            }
        }
        c->link_paused = 0;
    }
}

/* The socket, the timers and a pending DNS query go: nothing of c runs
 * from the loop after this. */
static void attempt_end(struct wsp_conn *c);

static void stop_io(struct wsp_conn *c)
{
    attempt_end(c);
    detach_socket(c);
    lws_sul_cancel(&c->timer);
    lws_dll2_remove(&c->kick);
    if (c->dns) {
        wsp_dns_cancel(c->dns);
        c->dns = NULL;
    }
}

static void pmd_free(struct wsp_conn *c)
{
    if (c->pmd) {
        wsp_pmd_free(c->pmd);
        free(c->pmd);
        c->pmd = NULL;
    }
}

static void conn_free(struct wsp_conn *c)
{
    if (c->in_cb) {
        c->free_pending = 1;
        return;
    }
    stop_io(c);
    if (c->over_hard) {
        c->over_hard = 0;
        g_over_hard--;
        wsp_link_pause_input(g_over_hard > 0);
    }
    if (c->dirty) {
        for (struct wsp_conn **pp = &g_dirty; *pp; pp = &(*pp)->dirty_next) {
            if (*pp == c) {
                *pp = c->dirty_next;
                break;
            }
        }
    }
    unpause_unlink(c);
    table_del(c); /* no-op if already gone */
    *c->all_prev = c->all_next;
    if (c->all_next) {
        c->all_next->all_prev = c->all_prev;
    }
    wsp_tls_forget(&c->tls_co);
    wsp_optcache_release(c->opts);
    free(c->px);
    free(c->addrs);
    free(c->t);
    free(c->close_reason);
    wsp_buf_free(&c->rbuf);
    wsp_buf_free(&c->wbuf);
    wsp_buf_free(&c->msg);
    wsp_buf_free(&c->held);
    pmd_free(c);
    wsc_parser_free(&c->parser);
    free(c);
}

static void on_linger(lws_sorted_usec_list_t *sul)
{
    conn_free(lws_container_of(sul, struct wsp_conn, timer));
}

/* The final event has been encoded into g_x: send it, free the id, and let
 * the socket go once what is queued on it (a close frame) is written. */
/* Everything we owed the peer is written: end our side (FIN) and read and
 * drop what still comes until its EOF, at most LINGER_US. Closing with
 * unread bytes would make the kernel send a reset, which can destroy our
 * close frame before the server reads it (RFC 6455 7.1.1: the server closes
 * the TCP connection first). */
static void linger_close(struct wsp_conn *c)
{
    if (c->lingering) {
        return;
    }
    c->lingering = 1;
    if (c->ssl) {
        ERR_clear_error();
        (void)SSL_shutdown(c->ssl); /* close_notify, best effort */
        ERR_clear_error();
    }
    (void)shutdown(c->fd, SHUT_WR);
    /* a server that keeps sending is not read for ever: after this much
     * the socket is left alone until the peer's FIN or the timer */
    c->linger_budget = LINGER_DRAIN;
    if (!c->reading) {
        c->reading = 1;
        wsp_loop_want_read(c->watched, 1);
    }
    wsp_loop_schedule(&c->timer, on_linger, LINGER_US);
}

static void finish(struct wsp_conn *c)
{
    emit();
    table_del(c);
    c->state = ST_DONE;
    attempt_end(c);
    unpause_unlink(c);
    lws_sul_cancel(&c->timer); /* ping / idle, or a connect deadline (moot now) */
    lws_dll2_remove(&c->kick);
    if (c->dns) {
        wsp_dns_cancel(c->dns);
        c->dns = NULL;
    }
    splice_drop(c);
    wsp_buf_free(&c->msg);
    wsp_buf_free(&c->rbuf);
    if (c->watched && wsp_buf_pending(&c->wbuf) > 0 && conn_flush(c) < 0) {
        return; /* failed and freed */
    }
    if (!c->watched) {
        conn_free(c);
        return;
    }
    if (wsp_buf_pending(&c->wbuf) > 0) {
        /* the close frame waits for the socket: conn_flush lingers after */
        wsp_loop_schedule(&c->timer, on_linger, LINGER_US);
        return;
    }
    linger_close(c);
}

static void lost(struct wsp_conn *c, unsigned fc);

/* Each failure is encoded as the final {closed, Id, Reason}; lost() turns
 * it into {down, ...} and a retry when the policy retries class fc (0: never). */
/* Connecting to the proxy or in its handshake: network failures are the
 * proxy's ({proxy, econnrefused}, {proxy, eof}); connect_timeout is not. */
static int proxy_phase(const struct wsp_conn *c)
{
    return c->opts->proxy.type != WSP_PROXY_NONE &&
           (c->state == ST_RESOLVING || c->state == ST_CONNECTING || c->state == ST_PROXY);
}

static void fail_atom(struct wsp_conn *c, unsigned fc, const char *atom)
{
    if (proxy_phase(c) && fc == WSP_FC_NETWORK) {
        wsp_enc_closed_proxy_atom(xbuf(), c->id, atom);
        lost(c, fc);
        return;
    }
    wsp_enc_closed_atom(xbuf(), c->id, atom);
    lost(c, fc);
}

static void fail_detail(struct wsp_conn *c, unsigned fc, const char *kind, const char *detail)
{
    if (fc == WSP_FC_TLS) {
        wsp_tls_session_bad(&c->tls_co); /* the next attempt: a full handshake */
    }
    wsp_enc_closed_detail(xbuf(), c->id, kind, detail, strlen(detail));
    lost(c, fc);
}

static const char *errno_atom(int e)
{
    switch (e) {
    case ECONNREFUSED: return "econnrefused";
    case ECONNRESET: return "econnreset";
    case EHOSTUNREACH: return "ehostunreach";
    case ENETUNREACH: return "enetunreach";
    case ETIMEDOUT: return "etimedout";
    case EPIPE: return "epipe";
    case ECONNABORTED: return "econnaborted";
    case EADDRNOTAVAIL: return "eaddrnotavail";
    default: return NULL;
    }
}

static void fail_errno(struct wsp_conn *c, int e)
{
    const char *a = errno_atom(e);
    if (a && proxy_phase(c)) {
        wsp_enc_closed_proxy_atom(xbuf(), c->id, a);
        lost(c, e == ETIMEDOUT ? WSP_FC_TIMEOUT : WSP_FC_NETWORK);
    } else if (a) {
        fail_atom(c, e == ETIMEDOUT ? WSP_FC_TIMEOUT : WSP_FC_NETWORK, a);
    } else if (proxy_phase(c)) {
        const char *d = strerror(e);
        wsp_enc_closed_proxy_tag(xbuf(), c->id, "socket", NULL, d, strlen(d));
        lost(c, WSP_FC_NETWORK);
    } else {
        fail_detail(c, WSP_FC_NETWORK, "socket", strerror(e));
    }
}

/* ---- sending ------------------------------------------------------------ */

static void mark_dirty(struct wsp_conn *c)
{
    if (!c->dirty) {
        c->dirty = 1;
        c->dirty_next = g_dirty;
        g_dirty = c;
    }
}

/* Queues one frame (masked) on the connection. */
static int queue_frame(struct wsp_conn *c, int opcode, const uint8_t *p1, size_t n1,
                       const uint8_t *p2, size_t n2)
{
    uint64_t r = rng_next();
    uint8_t mask[4];
    memcpy(mask, &r, 4);
    uint8_t hdr[14];
    size_t hl = wsc_frame_header(hdr, opcode, 1, n1 + n2, mask);
    uint8_t *dst = wsp_buf_reserve(&c->wbuf, hl + n1 + n2);
    if (!dst) {
        return -1;
    }
    memcpy(dst, hdr, hl);
    if (n1) {
        wsc_mask_copy(dst + hl, p1, n1, mask, 0);
    }
    if (n2) {
        wsc_mask_copy(dst + hl + n1, p2, n2, mask, n1);
    }
    wsp_buf_commit(&c->wbuf, hl + n1 + n2);
    mark_dirty(c);
    update_over_high(c);
    return 0;
}

static struct wsp_buf g_zbuf;            /* a message being compressed */

/* Queues a text or binary message: deflated with RSV1 set when
 * permessage-deflate was negotiated and the message is not below the
 * threshold (the credit and the busy/ready marks then count the compressed
 * bytes, what goes on the wire). */
static int queue_data(struct wsp_conn *c, int opcode, const uint8_t *p, size_t n)
{
    if (!c->pmd || !wsp_pmd_should_compress(c->pmd, n)) {
        if (c->pmd) {
            c->pmd->out_plain += n;
            c->pmd->out_wire += n;
        }
        return queue_frame(c, opcode, p, n, NULL, 0);
    }
    g_zbuf.off = g_zbuf.len = 0;
    if (wsp_pmd_deflate(c->pmd, p, n, &g_zbuf) < 0) {
        return -1;
    }
    size_t zn = wsp_buf_pending(&g_zbuf);
    int r = queue_frame(c, opcode, g_zbuf.data + g_zbuf.off, zn, NULL, 0);
    if (r == 0) { /* RSV1 in the header just queued (wsc_frame_header's sizes) */
        size_t hl = zn < 126 ? 6 : zn <= 0xFFFF ? 8 : 14;
        c->wbuf.data[c->wbuf.len - zn - hl] |= 0x40;
    }
    wsp_buf_shrink(&g_zbuf, 64 * 1024);
    return r;
}

static void queue_close(struct wsp_conn *c, unsigned code, const uint8_t *reason, size_t len)
{
    if (len > CLOSE_REASON_MAX) {
        len = CLOSE_REASON_MAX;
    }
    c->close_code = (uint16_t)code;
    free(c->close_reason);
    c->close_reason = NULL;
    c->close_reason_len = 0;
    if (len && (c->close_reason = malloc(len)) != NULL) {
        memcpy(c->close_reason, reason, len);
        c->close_reason_len = (uint8_t)len;
    }
    uint8_t cb[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    if (code == 1005) {
        queue_frame(c, WSC_OP_CLOSE, NULL, 0, NULL, 0);
    } else {
        queue_frame(c, WSC_OP_CLOSE, cb, 2, reason, len);
    }
}

static int io_write(struct wsp_conn *c, const uint8_t *p, size_t n, int *err)
{
    if (c->ssl) {
        ERR_clear_error();
        errno = 0;
        int w = SSL_write(c->ssl, p, (int)(n > INT32_MAX ? INT32_MAX : n));
        if (w > 0) {
            return w;
        }
        int e = SSL_get_error(c->ssl, w);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
            return 0;
        }
        *err = errno ? errno : EPIPE;
        return -1;
    }
    ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
    if (w >= 0) {
        return (int)w;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        return 0;
    }
    *err = errno;
    return -1;
}

/* Writes what is queued. Returns 0, or -1 when the connection was freed or
 * failed (do not touch c then). */
static int conn_flush(struct wsp_conn *c)
{
    while (c->watched && wsp_buf_pending(&c->wbuf) > 0 && (c->state >= ST_UPGRADING || c->state == ST_PROXY)) {
        int err = 0;
        int w = io_write(c, c->wbuf.data + c->wbuf.off, wsp_buf_pending(&c->wbuf), &err);
        if (w > 0) {
            wsp_buf_consume(&c->wbuf, (size_t)w);
            c->bytes_out += (uint64_t)w;
            continue;
        }
        if (w == 0) {
            if (!c->want_write) {
                c->want_write = 1;
                wsp_loop_want_write(c->watched);
            }
            break;
        }
        /* the peer is gone */
        wsp_buf_consume(&c->wbuf, wsp_buf_pending(&c->wbuf));
        if (c->state == ST_DONE) {
            conn_free(c);
            return -1;
        }
        if (c->ssl) {
            /* a TLS alert may say why (e.g. "certificate required") */
            uint8_t tmp[512];
            int e2 = 0;
            if (io_read(c, tmp, sizeof tmp, &e2) == -3) {
                fail_detail(c, WSP_FC_TLS, "tls", g_tls_err);
                return -1;
            }
        }
        fail_errno(c, err);
        return -1;
    }
    if (wsp_buf_pending(&c->wbuf) == 0) {
        /* small buffers come back cheaply from malloc: an idle connection
         * keeps none; a big one (a heavy sender) is kept */
        if (c->wbuf.cap <= 128 * 1024) {
            wsp_buf_free(&c->wbuf);
        }
        if (c->state == ST_DONE && c->watched) {
            linger_close(c);
            return 0;
        }
    }
    update_over_high(c);
    return 0;
}

void wsp_conn_flush_all(void)
{
    while (g_dirty) {
        struct wsp_conn *c = g_dirty;
        g_dirty = c->dirty_next;
        c->dirty = 0;
        conn_flush(c);
    }
}

/* ---- timers ------------------------------------------------------------- */

static void on_deadline(lws_sorted_usec_list_t *sul)
{
    struct wsp_conn *c = lws_container_of(sul, struct wsp_conn, timer);
    if (c->state == ST_CLOSING) {
        /* the server never answered our close: report what we sent */
        wsp_enc_closed_code(xbuf(), c->id, "local", c->close_code,
                            c->close_reason ? c->close_reason : "",
                            c->close_reason_len);
        finish(c);
    } else if (c->state < ST_OPEN) {
        fail_atom(c, WSP_FC_TIMEOUT, "timeout");
    }
    wsp_conn_flush_all();
    wsp_link_flush();
}

static void on_live(lws_sorted_usec_list_t *sul);

static void send_ping(struct wsp_conn *c, int user, const uint8_t *p, size_t n)
{
    c->ping_sent_at = wsp_now();
    if (user) {
        c->user_ping_at = c->ping_sent_at;
    }
    queue_frame(c, WSC_OP_PING, p, n, NULL, 0);
}

/* A keepalive ping carries its own send time, so that its pong gives the
 * right round trip even when pongs come back after the next ping. */
static void send_keepalive_ping(struct wsp_conn *c, lws_usec_t now)
{
    uint64_t t = (uint64_t)now ^ c->ping_key;
    uint8_t p[8];
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(t >> (56 - 8 * i));
    }
    send_ping(c, 0, p, 8);
}

static void on_pong(struct wsp_conn *c, const uint8_t *p, size_t n)
{
    lws_usec_t now = wsp_now();
    if (n == 8) {
        uint64_t t = 0;
        for (int i = 0; i < 8; i++) {
            t = (t << 8) | p[i];
        }
        t ^= c->ping_key;
        if (c->up_at && t >= (uint64_t)c->up_at && t <= (uint64_t)now) {
            c->last_rtt_us = (int64_t)(now - (lws_usec_t)t);
            return;
        }
    }
    if (c->user_ping_at) {
        c->last_rtt_us = (int64_t)(now - c->user_ping_at);
        c->user_ping_at = 0;
        wsp_enc_pong(xbuf(), c->id, c->last_rtt_us);
        emit();
    }
}

static void schedule_live(struct wsp_conn *c)
{
    const struct wsp_connect_opts *o = c->opts;
    if (!o->ping_interval_ms && !o->idle_timeout_ms) {
        return;
    }
    lws_usec_t now = wsp_now(), next = 0;
    if (o->ping_interval_ms) {
        lws_usec_t base = c->last_rx > c->ping_sent_at ? c->last_rx : c->ping_sent_at;
        next = base + (lws_usec_t)o->ping_interval_ms * 1000;
    }
    if (o->idle_timeout_ms) {
        lws_usec_t idle = c->last_rx + (lws_usec_t)o->idle_timeout_ms * 1000;
        if (!next || idle < next) {
            next = idle;
        }
    }
    wsp_loop_schedule(&c->timer, on_live, next > now ? next - now : 0);
}

static void on_live(lws_sorted_usec_list_t *sul)
{
    struct wsp_conn *c = lws_container_of(sul, struct wsp_conn, timer);
    if (c->state != ST_OPEN) {
        return;
    }
    const struct wsp_connect_opts *o = c->opts;
    lws_usec_t now = wsp_now();
    if (o->idle_timeout_ms && now - c->last_rx >= (lws_usec_t)o->idle_timeout_ms * 1000) {
        /* nothing from the server for idle_timeout: the link is dead */
        fail_atom(c, WSP_FC_TIMEOUT, "idle_timeout");
    } else {
        if (o->ping_interval_ms) {
            lws_usec_t base = c->last_rx > c->ping_sent_at ? c->last_rx : c->ping_sent_at;
            if (now - base >= (lws_usec_t)o->ping_interval_ms * 1000) {
                send_keepalive_ping(c, now);
            }
        }
        schedule_live(c);
    }
    wsp_conn_flush_all();
    wsp_link_flush();
}

/* Runs the kicks that were asked before it started (one loop turn's worth,
 * as wsp_loop_schedule's 0-delay work); those asked meanwhile wait for the
 * next turn. */
static void on_kicks(lws_sorted_usec_list_t *sul)
{
    (void)sul;
    for (uint32_t n = (uint32_t)g_kicks.count; n > 0; n--) {
        struct lws_dll2 *d = lws_dll2_get_head(&g_kicks);
        if (!d) {
            break;
        }
        struct wsp_conn *c = lws_container_of(d, struct wsp_conn, kick);
        lws_dll2_remove(d);
        conn_read(c);
    }
    if (g_kicks.count > 0) {
        wsp_loop_schedule(&g_kick_sul, on_kicks, 0);
    }
    wsp_conn_flush_all();
    wsp_link_flush();
}

static void kick(struct wsp_conn *c)
{
    if (c->kick.owner == &g_waiting) {
        return; /* not started: nothing to read (never happens: no socket) */
    }
    lws_dll2_remove(&c->kick); /* to the tail, as a timer re-armed */
    lws_dll2_add_tail(&c->kick, &g_kicks);
    if (lws_dll2_is_detached(&g_kick_sul.list)) {
        wsp_loop_schedule(&g_kick_sul, on_kicks, 0);
    }
}

/* ---- connecting --------------------------------------------------------- */

static void try_next_address(struct wsp_conn *c);

static void start_upgrade(struct wsp_conn *c)
{
    uint8_t rnd[16];
    uint64_t a = rng_next(), b = rng_next();
    memcpy(rnd, &a, 8);
    memcpy(rnd + 8, &b, 8);
    wsc_make_key(rnd, c->t->key);
    const struct wsp_connect_opts *o = c->opts;
    const char *err = NULL;
    size_t cap = 1024 + 200 + strlen(c->t->url.path) + strlen(c->t->host_header);
    for (size_t i = 0; i < o->nheaders; i++) {
        cap += o->headers[i].name_len + o->headers[i].value_len + 4;
    }
    for (size_t i = 0; i < o->nprotocols; i++) {
        cap += strlen(o->protocols[i]) + 2;
    }
    uint8_t *dst = wsp_buf_reserve(&c->wbuf, cap);
    if (!dst) {
        fail_detail(c, 0, "socket", "out of memory");
        return;
    }
    /* the permessage-deflate offer goes with the user's headers */
    char offer[160];
    struct wsc_header *hs = NULL;
    size_t nh = o->nheaders;
    if (o->compress.enabled) {
        hs = malloc((nh + 1) * sizeof *hs);
        if (!hs || wsp_pmd_offer(&o->compress, offer, sizeof offer) < 0) {
            free(hs);
            fail_detail(c, 0, "socket", "out of memory");
            return;
        }
        if (nh) {
            memcpy(hs, o->headers, nh * sizeof *hs);
        }
        hs[nh++] = (struct wsc_header){"Sec-WebSocket-Extensions", 24, offer, strlen(offer)};
    }
    int n = wsc_build_request((char *)dst, cap, c->t->url.path, c->t->host_header, c->t->key,
                              (const char *const *)o->protocols, o->nprotocols,
                              hs ? hs : o->headers, nh, &err);
    free(hs);
    if (n < 0) {
        fail_detail(c, 0, "bad_option", err ? err : "cannot build the upgrade request");
        return;
    }
    wsp_buf_commit(&c->wbuf, (size_t)n);
    wsc_response_reader_init(&c->t->hs);
    c->state = ST_UPGRADING;
    conn_flush(c);
}

static void tls_step(struct wsp_conn *c)
{
    char err[300];
    int ww = 0, net_errno = 0;
    int r = wsp_tls_handshake(c->ssl, &ww, &net_errno, err, sizeof err);
    if (r == -2) {
        /* a reset or EOF, as the same event on ws:// reports it */
        if (net_errno) {
            fail_errno(c, net_errno);
        } else {
            fail_atom(c, WSP_FC_NETWORK, "eof");
        }
        return;
    }
    if (r < 0) {
        fail_detail(c, WSP_FC_TLS, "tls", err);
        return;
    }
    if (r == 0) {
        c->tls_want_write = ww;
        if (ww) {
            wsp_loop_want_write(c->watched);
        }
        return;
    }
    c->tls_want_write = 0;
    start_upgrade(c);
}

/* The path to the target is up (TCP, or the proxy's tunnel): TLS with the
 * target if wss, then the upgrade. */
static void tunnel_ready(struct wsp_conn *c)
{
    if (!c->t->url.tls) {
        start_upgrade(c);
        return;
    }
    char err[300];
    struct wsp_tls_config cfg = {
        .verify = c->opts->verify,
        .cacertfile = c->opts->cacertfile,
        .certfile = c->opts->certfile,
        .keyfile = c->opts->keyfile,
        .cacerts = (const uint8_t *const *)c->opts->cacerts,
        .cacert_lens = c->opts->cacert_lens,
        .ncacerts = c->opts->ncacerts,
        .min_version = c->opts->min_version,
        .max_version = c->opts->max_version,
        .ciphers = c->opts->ciphers,
        .ciphersuites = c->opts->ciphersuites,
        .certs = (const uint8_t *const *)c->opts->certs,
        .cert_lens = c->opts->cert_lens,
        .ncerts = c->opts->ncerts,
        .key = c->opts->key,
        .key_len = c->opts->key_len,
        .password = c->opts->password,
        .password_len = c->opts->password_len,
    };
    SSL_CTX *ctx = wsp_tls_ctx(&cfg, err, sizeof err);
    if (!ctx) {
        fail_detail(c, WSP_FC_TLS, "tls", err);
        return;
    }
    const char *name = c->opts->server_name ? c->opts->server_name : c->t->url.host;
    c->tls_co.no_sni = c->opts->no_sni ? 1 : 0;
    c->tls_co.pins = (const uint8_t (*)[32])c->opts->pins;
    c->tls_co.npins = (uint32_t)c->opts->npins; /* an Erlang list's length */
    c->tls_co.reuse = c->opts->no_session_reuse ? 0 : 1;
    c->ssl = wsp_tls_new(ctx, c->fd, name, c->opts->verify, &c->tls_co, err, sizeof err);
    if (!c->ssl) {
        fail_detail(c, WSP_FC_TLS, "tls", err);
        return;
    }
    c->state = ST_TLS;
    tls_step(c);
}

/* ---- through a proxy (the handshake itself is wsp_proxy's) -------------- */

static void proxy_failed(struct wsp_conn *c, int r, const struct wsp_proxy_fail *f)
{
    if (r == WSP_PX_NOSPC) {
        wsp_enc_closed_proxy_tag(xbuf(), c->id, "bad_request", NULL, "request too long", 16);
        lost(c, 0);
    } else if (f->kind == WSP_PXF_HTTP) {
        wsp_enc_closed_proxy_http(xbuf(), c->id, f->resp.status, f->resp.headers,
                                  f->resp.nheaders);
        lost(c, wsp_backoff_http_class(f->resp.status));
    } else if (f->kind == WSP_PXF_SOCKS) {
        wsp_enc_closed_proxy_tag(xbuf(), c->id, "socks5", f->atom, NULL, 0);
        /* a refusal by the proxy (auth) is final; the target's are network */
        int auth = strcmp(f->atom, "auth_failed") == 0 || strcmp(f->atom, "auth_required") == 0 ||
                   strcmp(f->atom, "no_acceptable_methods") == 0 ||
                   strcmp(f->atom, "not_allowed") == 0;
        lost(c, auth ? WSP_FC_HTTP_4XX : WSP_FC_NETWORK);
    } else {
        wsp_enc_closed_proxy_tag(xbuf(), c->id, "bad_response", NULL, f->detail,
                                 strlen(f->detail));
        lost(c, WSP_FC_HTTP_OTHER);
    }
}

/* Sends what the handshake asks (out, n bytes); 0, or -1 failed. */
static int proxy_send(struct wsp_conn *c, const uint8_t *out, size_t n)
{
    if (n > 0 && wsp_buf_append(&c->wbuf, out, n) < 0) {
        fail_detail(c, 0, "socket", "out of memory");
        return -1;
    }
    return n > 0 ? conn_flush(c) : 0;
}

static void proxy_start(struct wsp_conn *c)
{
    uint8_t out[WSP_PROXY_OUT_MAX];
    size_t n = 0;
    struct wsp_proxy_fail f;
    c->px = calloc(1, sizeof *c->px);
    if (!c->px) {
        fail_detail(c, 0, "socket", "out of memory");
        return;
    }
    c->state = ST_PROXY;
    int r = wsp_proxy_start(c->px, &c->opts->proxy, c->t->url.host, c->t->url.port, out,
                            sizeof out, &n, &f);
    if (r != WSP_PX_MORE) {
        proxy_failed(c, r, &f);
        return;
    }
    proxy_send(c, out, n);
    memset(out, 0, n); /* it may hold the credentials */
}

/* The proxy's answers, gathered in rbuf. */
static void proxy_read(struct wsp_conn *c)
{
    uint8_t out[WSP_PROXY_OUT_MAX];
    struct wsp_proxy_fail f;
    while (c->state == ST_PROXY) {
        size_t used = 0, n = 0;
        int r = wsp_proxy_input(c->px, c->rbuf.data + c->rbuf.off, wsp_buf_pending(&c->rbuf),
                                &used, out, sizeof out, &n, &f);
        if (r == WSP_PX_FAIL || r == WSP_PX_NOSPC) {
            proxy_failed(c, r, &f);
            return;
        }
        if (used == 0) {
            return; /* more to come */
        }
        wsp_buf_consume(&c->rbuf, used);
        if (r == WSP_PX_MORE) {
            int s = proxy_send(c, out, n);
            memset(out, 0, n);
            if (s < 0) {
                return;
            }
            continue;
        }
        free(c->px);
        c->px = NULL;
        if (wsp_buf_pending(&c->rbuf) > 0) {
            static const char m[] = "data from the target before the tunnel was used";
            wsp_enc_closed_proxy_tag(xbuf(), c->id, "bad_response", NULL, m, sizeof m - 1);
            lost(c, WSP_FC_HTTP_OTHER);
            return;
        }
        wsp_buf_free(&c->rbuf);
        tunnel_ready(c);
    }
}

static void tcp_connected(struct wsp_conn *c)
{
    if (c->opts->proxy.type != WSP_PROXY_NONE) {
        proxy_start(c);
    } else {
        tunnel_ready(c);
    }
}

static void connect_addr(struct wsp_conn *c, const struct sockaddr *sa, socklen_t salen)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        c->last_errno = errno;
        try_next_address(c);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, sa, salen) < 0 && errno != EINPROGRESS) {
        c->last_errno = errno;
        close(fd);
        try_next_address(c);
        return;
    }
    c->fd = fd;
    c->state = ST_CONNECTING;
    c->watched = wsp_loop_adopt(fd, &c->watch);
    if (!c->watched) {
        c->fd = -1; /* the loop closed it */
        fail_detail(c, WSP_FC_NETWORK, "socket", "cannot add the socket to the event loop");
        return;
    }
    c->reading = 1;
    wsp_loop_want_write(c->watched);
}

static void try_next_address(struct wsp_conn *c)
{
    if (!c->addrs || c->addr_next >= c->addrs->naddrs) {
        fail_errno(c, c->last_errno ? c->last_errno : ECONNREFUSED);
        return;
    }
    size_t i = c->addr_next++;
    connect_addr(c, (const struct sockaddr *)&c->addrs->addrs[i], c->addrs->addrlens[i]);
}

static void on_resolved(void *arg, const struct wsp_dns_result *res)
{
    struct wsp_conn *c = arg;
    c->dns = NULL;
    if (res->status != 0 && proxy_phase(c)) {
        if (res->nxdomain) {
            wsp_enc_closed_proxy_tag(xbuf(), c->id, "dns", "nxdomain", NULL, 0);
        } else {
            const char *d = res->error ? res->error : "lookup failed";
            wsp_enc_closed_proxy_tag(xbuf(), c->id, "dns", NULL, d, strlen(d));
        }
        lost(c, WSP_FC_NETWORK);
    } else if (res->status != 0) {
        if (res->nxdomain) {
            wsp_enc_closed_tag_atom(xbuf(), c->id, "dns", "nxdomain");
            lost(c, WSP_FC_NETWORK);
        } else {
            fail_detail(c, WSP_FC_NETWORK, "dns", res->error ? res->error : "lookup failed");
        }
    } else {
        c->addrs = malloc(sizeof *c->addrs);
        if (!c->addrs) {
            fail_detail(c, 0, "dns", "out of memory");
        } else {
            *c->addrs = *res;
            try_next_address(c);
        }
    }
    wsp_conn_flush_all();
    wsp_link_flush();
}

static int target_make(struct wsp_conn *c, const char **uerr)
{
    struct wsp_target *t = calloc(1, sizeof *t);
    if (!t) {
        *uerr = "out of memory";
        return -1;
    }
    if (wsc_parse_url(c->opts->url, c->opts->url_len, &t->url, uerr) < 0) {
        free(t);
        return -1;
    }
    int default_port = t->url.port == (t->url.tls ? 443 : 80);
    snprintf(t->host_header, sizeof t->host_header, t->url.host_is_ipv6 ? "[%s]" : "%s",
             t->url.host);
    if (!default_port) {
        size_t hl = strlen(t->host_header);
        snprintf(t->host_header + hl, sizeof t->host_header - hl, ":%u", t->url.port);
    }
    c->t = t;
    return 0;
}

static void start_attempt(struct wsp_conn *c)
{
    const struct wsp_connect_opts *opts = c->opts;
    c->state = ST_RESOLVING;
    const char *uerr = NULL;
    if (!c->t && target_make(c, &uerr) < 0) {
        fail_detail(c, 0, "invalid_url", uerr ? uerr : "malformed URL");
        return;
    }
    wsp_loop_schedule(&c->timer, on_deadline, (lws_usec_t)opts->connect_timeout_ms * 1000);
    if (g_inflight >= ATTEMPTS_MAX) {
        /* waits for a slot, its connect_timeout running (the kick node's
         * removal, in stop_io and finish, takes it off the list) */
        lws_dll2_remove(&c->kick);
        lws_dll2_add_tail(&c->kick, &g_waiting);
        return;
    }
    attempt_go(c);
}

static void attempt_go(struct wsp_conn *c)
{
    const struct wsp_connect_opts *opts = c->opts;
    c->in_flight = 1;
    g_inflight++;
    /* through a proxy, the TCP connection is the proxy's; the target's
     * name goes to the proxy unresolved */
    const char *host = c->t->url.host;
    uint16_t port = c->t->url.port;
    if (opts->proxy.type != WSP_PROXY_NONE) {
        host = opts->proxy.host;
        port = opts->proxy.port;
    }
    struct sockaddr_in6 a6;
    struct sockaddr_in a4;
    memset(&a6, 0, sizeof a6);
    memset(&a4, 0, sizeof a4);
    if (inet_pton(AF_INET, host, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons(port);
        connect_addr(c, (struct sockaddr *)&a4, sizeof a4);
    } else if (inet_pton(AF_INET6, host, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons(port);
        connect_addr(c, (struct sockaddr *)&a6, sizeof a6);
    } else {
        c->dns = wsp_dns_resolve(host, port, on_resolved, c);
        if (!c->dns) {
            fail_detail(c, WSP_FC_NETWORK, "dns", "cannot start the lookup");
        }
    }
}

void wsp_conn_connect(uint32_t id, struct wsp_connect_opts *opts)
{
    if (table_get(id)) {
        emit_error(id, "id_in_use", "connection id %u is already in use", id);
        wsp_optcache_release(opts);
        return;
    }
    struct wsp_conn *c = calloc(1, sizeof *c);
    if (!c || table_put(c ? (c->id = id, c) : c) < 0) {
        free(c);
        emit_error(id, "badarg", "out of memory");
        wsp_optcache_release(opts);
        return;
    }
    c->watch.kind = WSP_W_CONN;
    c->ping_key = rng_next();
    c->opts = opts;
    c->fd = -1;
    c->last_rtt_us = -1;
    c->all_next = g_all;
    if (g_all) {
        g_all->all_prev = &c->all_next;
    }
    c->all_prev = &g_all;
    g_all = c;
    switch (opts->active) {
    case WSP_ACTIVE_TRUE: c->credit = -1; break;
    case WSP_ACTIVE_FALSE: c->credit = 0; break;
    case WSP_ACTIVE_ONCE: c->credit = 1; break;
    case WSP_ACTIVE_N:
        c->credit = opts->active_n > 0 ? opts->active_n : 0;
        c->passive_events = 1;
        break;
    }
    c->state = ST_RESOLVING;

    wsc_parser_init(&c->parser, opts->max_message_size);
    start_attempt(c);
}


/* ---- reconnecting ------------------------------------------------------- */

static ei_x_buff g_down;

static void start_attempt(struct wsp_conn *c);

static void on_retry(lws_sorted_usec_list_t *sul)
{
    struct wsp_conn *c = lws_container_of(sul, struct wsp_conn, timer);
    start_attempt(c);
    wsp_conn_flush_all();
    wsp_link_flush();
}

/* Forgets everything of the attempt that failed; keeps id, options,
 * counters, credit and the frames held for after the reconnect. */
static uint64_t reset_attempt(struct wsp_conn *c)
{
    uint64_t unsent = wsp_buf_pending(&c->wbuf);
    if (c->watched && unsent > 0) {
        /* best effort: a close frame we owe the server */
        int err = 0;
        int w = io_write(c, c->wbuf.data + c->wbuf.off, wsp_buf_pending(&c->wbuf), &err);
        unsent -= w > 0 ? (uint64_t)w : 0;
    }
    stop_io(c);
    unpause_unlink(c);
    free(c->px);
    c->px = NULL;
    free(c->addrs);
    c->addrs = NULL;
    c->addr_next = 0;
    c->last_errno = 0;
    c->tls_want_write = c->want_write = 0;
    wsp_buf_free(&c->rbuf);
    wsp_buf_free(&c->wbuf);
    wsp_buf_free(&c->msg);
    pmd_free(c);
    update_over_high(c);
    wsc_parser_free(&c->parser);
    wsc_parser_init(&c->parser, c->opts->max_message_size);
    c->ping_sent_at = 0;
    c->user_ping_at = 0;
    c->up_at = 0;
    return unsent;
}

/* g_x holds {closed, Id, Reason}: send it as {down, Id, Reason, Info} instead
 * and try again after delay ms (delay < 0: manual, wait for {reconnect}). */
static void retry_after(struct wsp_conn *c, uint64_t attempt, int64_t delay)
{
    c->attempt = attempt;
    uint64_t unsent = reset_attempt(c);
    if (wsp_enc_closed_to_down(&g_x, &g_down, attempt, delay, unsent) == 0) {
        wsp_link_event(&g_down);
    }
    c->state = ST_BACKOFF;
    if (delay >= 0) {
        wsp_loop_schedule(&c->timer, on_retry, (lws_usec_t)delay * 1000);
    }
}

static void lost(struct wsp_conn *c, unsigned fc)
{
    const struct wsp_backoff *b = &c->opts->retry;
    /* a connection the BEAM closed ends whatever the server does (reset,
     * EOF without a close frame, a bad frame): its owner is gone, and a
     * retry would replay its handshake (headers, credentials) for nobody */
    if (!fc || c->closing || !wsp_backoff_retries(b, fc)) {
        finish(c);
        return;
    }
    uint64_t attempt = c->attempt + 1;
    int64_t delay = -1;
    if (!b->manual) {
        delay = wsp_backoff_delay(b, attempt, (double)(rng_next() >> 11) / 9007199254740992.0);
        if (delay < 0) {
            finish(c); /* retries exhausted: the reason is final */
            return;
        }
    }
    retry_after(c, attempt, delay);
}

/* Frames sent while not open, kept (send_queue) and written after the up. */
static int hold_frame(struct wsp_conn *c, int opcode, const uint8_t *p, size_t n)
{
    if (c->nheld >= c->opts->send_queue || opcode == WSC_OP_PING || opcode == WSC_OP_PONG) {
        return -1;
    }
    uint8_t hdr[5] = {(uint8_t)opcode, (uint8_t)(n >> 24), (uint8_t)(n >> 16),
                      (uint8_t)(n >> 8), (uint8_t)n};
    if (wsp_buf_append(&c->held, hdr, 5) < 0 || wsp_buf_append(&c->held, p, n) < 0) {
        return -1;
    }
    c->nheld++;
    return 0;
}

static void release_held(struct wsp_conn *c)
{
    while (wsp_buf_pending(&c->held) >= 5) {
        const uint8_t *h = c->held.data + c->held.off;
        size_t n = ((size_t)h[1] << 24) | ((size_t)h[2] << 16) | ((size_t)h[3] << 8) | h[4];
        queue_data(c, h[0], h + 5, n);
        c->msgs_out++;
        wsp_buf_consume(&c->held, 5 + n);
    }
    c->nheld = 0;
    wsp_buf_free(&c->held);
}

/* ---- receiving ---------------------------------------------------------- */

/* One message went to the link: count it against the credit. */
static void delivered(struct wsp_conn *c, int opcode, size_t len)
{
    c->splice_off = 0;
    /* the next one may be spliced too: read only up to its header */
    c->large = !c->ssl && opcode == WSC_OP_BINARY && len >= SPLICE_MIN &&
               len <= WSP_LINK_SPLICE_MAX;
    c->msgs_in++;
    if (c->credit > 0 && --c->credit == 0 && c->passive_events) {
        wsp_enc_passive(xbuf(), c->id);
        emit();
    }
}

static void deliver(struct wsp_conn *c, int opcode, const uint8_t *p, size_t n)
{
    if (c->pmd) { /* an uncompressed message (wsp_pmd counts the others) */
        c->pmd->in_plain += n;
        c->pmd->in_wire += n;
    }
    wsp_link_data(c->id, opcode, p, n);
    delivered(c, opcode, n);
}

static void protocol_fail(struct wsp_conn *c, unsigned code, const char *why)
{
    if (c->state != ST_CLOSING) { /* our close frame is out already */
        queue_close(c, code, (const uint8_t *)why, strlen(why));
    }
    wsp_enc_closed_code(xbuf(), c->id, "protocol_error", code, why, strlen(why));
    lost(c, WSP_FC_PROTOCOL);
}

/* A slice of a compressed message (RSV1): inflated into c->msg (never
 * spliced nor read in place: wsc_parser_binary_tail and direct_len say 0),
 * delivered at its end. Returns 0, or -1 if the connection finished. */
static int rx_compressed(struct wsp_conn *c, const struct wsc_event *ev)
{
    unsigned code = 1007;
    const char *why = NULL;
    if (ev->message_start) {
        c->msg.off = c->msg.len = 0;
        wsp_pmd_inflate_begin(c->pmd, ev->opcode == WSC_OP_TEXT);
    }
    if (wsp_pmd_inflate(c->pmd, ev->data, ev->len, ev->message_end, &c->msg, &code, &why) < 0) {
        wsp_buf_free(&c->msg);
        protocol_fail(c, code, why);
        return -1;
    }
    if (ev->message_end) {
        wsp_link_data(c->id, ev->opcode, c->msg.data + c->msg.off, wsp_buf_pending(&c->msg));
        delivered(c, ev->opcode, wsp_buf_pending(&c->msg));
        wsp_buf_free(&c->msg);
    }
    return 0;
}

/* Parses p[0..n) while credit lasts (while closing: all of it, dropping
 * data); *taken says how many bytes it used.
 * Payload slices point into p, and are copied before it returns. Returns 0,
 * or -1 if the connection finished (c may be freed: do not touch it). */
static int parse_bytes(struct wsp_conn *c, const uint8_t *p, size_t n, size_t *taken)
{
    *taken = 0;
    while ((c->credit != 0 || c->state == ST_CLOSING) && *taken < n) {
        struct wsc_event ev;
        size_t used = 0;
        int r = wsc_parser_next(&c->parser, p + *taken, n - *taken, &used, &ev);
        *taken += used;
        if (r == WSC_ENEED_MORE) {
            break;
        }
        if (r < 0) {
            protocol_fail(c, c->parser.close_code,
                          c->parser.errstr ? c->parser.errstr : "protocol error");
            return -1;
        }
        switch (ev.type) {
        case WSC_EV_DATA:
            if (c->state == ST_CLOSING) {
                break; /* the owner closed it: nobody wants this any more */
            }
            if (ev.compressed) {
                if (rx_compressed(c, &ev) < 0) {
                    return -1;
                }
                break;
            }
            if (ev.message_start && ev.message_end) {
                deliver(c, ev.opcode, ev.data, ev.len);
                break;
            }
            if (ev.message_start) {
                c->msg.off = c->msg.len = 0;
            }
            if (c->msg.data && ev.data == c->msg.data + c->msg.len &&
                ev.len <= c->msg.cap - c->msg.len) {
                wsp_buf_commit(&c->msg, ev.len); /* conn_read read it in place */
            } else {
                /* at a message's start, room for the rest of the frame too:
                 * one allocation, no regrowth copies (capped: the length is
                 * the server's word) */
                uint64_t rest = ev.message_start ? wsc_parser_frame_left(&c->parser) : 0;
                size_t want = ev.len + (rest < MSG_PRESIZE_MAX ? (size_t)rest : MSG_PRESIZE_MAX);
                uint8_t *dst = wsp_buf_reserve(&c->msg, want);
                if (!dst) {
                    protocol_fail(c, 1009, "out of memory for message");
                    return -1;
                }
                memcpy(dst, ev.data, ev.len);
                wsp_buf_commit(&c->msg, ev.len);
            }
            if (ev.message_end) {
                deliver(c, ev.opcode, c->msg.data + c->msg.off, wsp_buf_pending(&c->msg));
                wsp_buf_free(&c->msg);
            }
            break;
        case WSC_EV_PING:
            /* a server that pings but does not read gets no more pongs
             * once PONG_SKIP bytes wait (RFC 6455 5.5.3 lets us answer
             * only the latest ping) */
            if (c->state == ST_OPEN && wsp_buf_pending(&c->wbuf) < PONG_SKIP) {
                queue_frame(c, WSC_OP_PONG, ev.data, ev.len, NULL, 0);
            }
            break;
        case WSC_EV_PONG:
            on_pong(c, ev.data, ev.len);
            break;
        case WSC_EV_CLOSE:
            if (c->state == ST_CLOSING) {
                wsp_enc_closed_code(xbuf(), c->id, "local", c->close_code,
                                    c->close_reason ? c->close_reason : "",
                                    c->close_reason_len);
            } else {
                /* echo the code and reason (RFC 6455 5.5.1) and report it */
                queue_close(c, ev.close_code, ev.data, ev.len);
                wsp_enc_closed_code(xbuf(), c->id, "remote", ev.close_code,
                                    (const char *)ev.data, ev.len);
                /* retried or final by its code (retry_on) */
                lost(c, wsp_backoff_retries_close(&c->opts->retry, ev.close_code)
                            ? WSP_FC_REMOTE_CLOSE : 0);
                return -1;
            }
            finish(c);
            return -1;
        }
    }
    return 0;
}

/* Parses what waits in rbuf (bytes kept while the credit was 0, or after the
 * handshake) while credit lasts. Returns 0, or -1 if the connection finished
 * (c may be freed: do not touch it). */
static int process_frames(struct wsp_conn *c)
{
    size_t taken = 0;
    /* an empty rbuf may have no memory: no pointer arithmetic on NULL */
    if (wsp_buf_pending(&c->rbuf) > 0 &&
        parse_bytes(c, c->rbuf.data + c->rbuf.off, wsp_buf_pending(&c->rbuf), &taken) < 0) {
        return -1;
    }
    wsp_buf_consume(&c->rbuf, taken);
    if (wsp_buf_pending(&c->rbuf) == 0) {
        wsp_buf_free(&c->rbuf); /* an idle connection keeps no read buffer */
    }
    return 0;
}

/* The server accepted permessage-deflate with the parameters in ext: check
 * them against our offer (RFC 7692 7). Returns 0, or -1 (failed). */
static int setup_pmd(struct wsp_conn *c, const char *ext, size_t ext_len)
{
    struct wsp_pmd_agreed a;
    const char *err = NULL;
    if (wsp_pmd_parse_answer(&c->opts->compress, ext, ext_len, &a, &err) < 0) {
        fail_detail(c, WSP_FC_HTTP_OTHER, "bad_handshake", err);
        return -1;
    }
    pmd_free(c);
    c->pmd = malloc(sizeof *c->pmd);
    if (!c->pmd) {
        fail_detail(c, 0, "socket", "out of memory");
        return -1;
    }
    wsp_pmd_init(c->pmd, &c->opts->compress, &a, c->opts->max_message_size);
    c->parser.allow_rsv1 = 1;
    return 0;
}

/* The response to the upgrade request, gathered in rbuf: each call searches
 * only the bytes that came since the last one (c->hs), and parses the head
 * once its end is there. */
static void handle_response(struct wsp_conn *c)
{
    struct wsc_response resp;
    const char *err = NULL;
    int r = wsc_read_response(&c->t->hs, (const char *)c->rbuf.data + c->rbuf.off,
                              wsp_buf_pending(&c->rbuf), &resp, &err);
    if (r == WSC_ENEED_MORE) {
        return;
    }
    if (r < 0) {
        fail_detail(c, WSP_FC_HTTP_OTHER, "bad_handshake", err ? err : "malformed HTTP response");
        return;
    }
    if (resp.status != 101) {
        wsp_enc_closed_http(xbuf(), c->id, resp.status, resp.headers, resp.nheaders);
        lost(c, wsp_backoff_http_class(resp.status));
        return;
    }
    const char *proto = NULL, *ext = NULL;
    size_t proto_len = 0, ext_len = 0;
    if (wsc_check_upgrade_ext(&resp, c->t->key, (const char *const *)c->opts->protocols,
                              c->opts->nprotocols, &proto, &proto_len,
                              c->opts->compress.enabled, &ext, &ext_len, &err) < 0) {
        fail_detail(c, WSP_FC_HTTP_OTHER, "bad_handshake", err ? err : "invalid upgrade response");
        return;
    }
    if (ext && setup_pmd(c, ext, ext_len) < 0) {
        return;
    }
    lws_sul_cancel(&c->timer);
    c->state = ST_OPEN;
    c->up_at = wsp_now();
    c->attempt = 0;
    free(c->addrs); /* no other address will be tried now */
    c->addrs = NULL;
    free(c->t);
    c->t = NULL;
    c->addr_next = 0;
    if (c->ssl && SSL_pending(c->ssl) == 0 && !SSL_has_pending(c->ssl)) {
        /* the handshake's record buffers (the last read brought the server's
         * session tickets, not application data, so SSL_MODE_RELEASE_BUFFERS
         * kept them): an idle connection holds none (issue 16); OpenSSL
         * allocates them again on the next read or write */
        (void)SSL_free_buffers(c->ssl);
    }
    if (c->ever_up) {
        c->reconnects++;
    }
    c->ever_up = 1;
    attempt_end(c);
    note_churn();
    wsp_enc_up(xbuf(), c->id, resp.status, resp.headers, resp.nheaders, proto, proto_len,
               c->ssl ? wsp_tls_resumed(c->ssl) : -1);
    emit();
    wsp_buf_consume(&c->rbuf, (size_t)r);
    release_held(c);
    schedule_live(c);
    conn_set_reading(c);
    process_frames(c);
}

static int io_read(struct wsp_conn *c, uint8_t *p, size_t n, int *err)
{
    if (c->ssl) {
        ERR_clear_error();
        errno = 0;
        int r = SSL_read(c->ssl, p, (int)(n > INT32_MAX ? INT32_MAX : n));
        if (r > 0) {
            return r;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ) {
            return -1;
        }
        if (e == SSL_ERROR_WANT_WRITE) {
            c->tls_want_write = 1;
            wsp_loop_want_write(c->watched);
            return -1;
        }
        if (e == SSL_ERROR_ZERO_RETURN) {
            return 0;
        }
        if (e == SSL_ERROR_SYSCALL && errno == 0) {
            return 0; /* EOF without close_notify */
        }
        if (e == SSL_ERROR_SSL) {
            /* e.g. an alert from the server: "tlsv13 alert certificate required" */
            unsigned long le = ERR_get_error();
            ERR_error_string_n(le, g_tls_err, sizeof g_tls_err);
            ERR_clear_error();
            return -3;
        }
        *err = errno ? errno : ECONNRESET;
        return -2;
    }
    ssize_t r = recv(c->fd, p, n, 0);
    if (r > 0) {
        return (int)r;
    }
    if (r == 0) {
        return 0;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        return -1;
    }
    *err = errno;
    return -2;
}

static int may_read(const struct wsp_conn *c)
{
    switch (c->state) {
    case ST_CONNECTING:
    case ST_PROXY:
    case ST_TLS:
    case ST_UPGRADING:
        return 1;
    case ST_CLOSING:
        return 1; /* up to the server's close frame, dropping data */
    case ST_OPEN:
        return c->credit != 0 && !g_congested;
    default:
        return 0;
    }
}

static void conn_set_reading(struct wsp_conn *c)
{
    int want = c->watched && may_read(c);
    if (want != c->reading && c->watched) {
        c->reading = want;
        wsp_loop_want_read(c->watched, want);
    }
    /* Stopped only because the link to the BEAM is full: remember it, so
     * that resuming touches the connections that stopped, not all of them
     * (a connection that never tries to read while congested stays as is). */
    if (!want && g_congested && !c->link_paused && c->watched && c->state == ST_OPEN &&
        c->credit != 0) {
        c->link_paused = 1;
        c->paused_next = g_paused;
        g_paused = c;
    }
}

/* How many bytes to read straight into c->msg (0: read into g_rshared):
 * the parser is inside a data frame with at least DIRECT_MIN payload bytes
 * to come, and nothing waits in rbuf. At most MSG_PRESIZE_MAX, never past the
 * frame's end, so every byte read is payload of this frame (already
 * checked against max_message_size; UTF-8 is checked when it is parsed). */
static size_t direct_len(const struct wsp_conn *c)
{
    uint64_t left = wsc_parser_frame_left(&c->parser);
    if (left < DIRECT_MIN || (c->parser.opcode & 0x8) || wsp_buf_pending(&c->rbuf) != 0 ||
        c->parser.msg_compressed) {
        return 0;
    }
    return left < MSG_PRESIZE_MAX ? (size_t)left : MSG_PRESIZE_MAX;
}

static void kick(struct wsp_conn *c);

/* Another connection wants the pipe while c waits for the rest of its
 * message: c takes its bytes back and goes on the ordinary way. Runs inside
 * the other connection's read: c is only marked, and kicked if it failed. */
static void splice_preempt(void *arg)
{
    struct wsp_conn *c = arg;
    c->splicing = 0;
    c->splice_off = 1;
    if (wsp_link_splice_take(&c->msg) < 0) {
        c->splice_lost = 1;
        kick(c);
    }
}

/* The rest of a large binary message, still in the (plain TCP) socket, goes
 * to the BEAM without passing through our memory: splice(2) socket -> pipe
 * until the message is whole, then the link sends header + pipe (see
 * wsp_link.h). Returns 1 if it did something (call again), 0 if there is
 * no such message (read the ordinary way), -1 if the socket has nothing
 * now, -2 if the connection failed (c may be freed). */
static int splice_step(struct wsp_conn *c, size_t *budget)
{
    if (c->splice_lost) {
        c->splice_lost = 0;
        fail_detail(c, 0, "socket", "out of memory");
        return -2;
    }
    uint64_t tail = wsc_parser_binary_tail(&c->parser);
    if (!c->splicing) {
        size_t have = wsp_buf_pending(&c->msg);
        if (c->splice_off || tail < SPLICE_MIN || wsp_buf_pending(&c->rbuf) > 0 ||
            have > SPLICE_MAX_HAVE) {
            return 0;
        }
        size_t room = wsp_link_splice_room(); /* may take the pipe from a waiter */
        if (have > room || tail > room - have) {
            return 0;
        }
        if (wsp_link_splice_claim(c->id, WSC_OP_BINARY, c->msg.data + c->msg.off, have,
                                  have + (size_t)tail, splice_preempt, c) < 0) {
            c->splice_off = 1;
            return 0;
        }
        c->splicing = 1;
    }
    ssize_t n = wsp_link_splice_in(c->fd, tail > SIZE_MAX ? SIZE_MAX : (size_t)tail);
    if (n > 0) {
        c->bytes_in += (uint64_t)n;
        c->last_rx = wsp_now();
        *budget = (size_t)n < *budget ? *budget - (size_t)n : 0;
        (void)wsc_parser_skip(&c->parser, (uint64_t)n);
        if (wsc_parser_binary_tail(&c->parser) == 0) {
            c->splicing = 0;
            c->msgs_spliced++;
            wsp_link_splice_commit();
            wsp_buf_free(&c->msg);
            delivered(c, WSC_OP_BINARY, SPLICE_MIN);
        }
        return 1;
    }
    if (n == WSP_SPLICE_AGAIN) {
        /* the pipe stays claimed until more comes; another connection
         * that needs it meanwhile takes it (splice_preempt) */
        return -1;
    }
    if (n == WSP_SPLICE_FULL) {
        /* the pipe is full of small pieces: take them back and finish this
         * message the ordinary way */
        c->splicing = 0;
        c->splice_off = 1;
        DEBUG("conn %u: splice pipe full %zu bytes before the message's end; copying", c->id,
              (size_t)tail);
        if (wsp_link_splice_take(&c->msg) < 0) {
            fail_detail(c, 0, "socket", "out of memory");
            return -2;
        }
        return 1;
    }
    int e = errno;
    splice_drop(c);
    if (n == 0) {
        fail_atom(c, WSP_FC_NETWORK, "eof");
    } else {
        fail_errno(c, e);
    }
    return -2;
}

/* After a read of r bytes, less than asked: nothing more is to be had now
 * without a syscall. Plain TCP: the socket held no more than that (one
 * read(2) takes what is there). TLS (SSL_read returns one record at a time,
 * so a short read says little): a small record (a small message: more
 * records would likely be full ones) and OpenSSL holding no bytes it has
 * read from the socket but not returned yet, nor wsp_tls's socket BIO
 * (it reads many records per recv(2) and keeps the rest, which no wake-up
 * of the socket would announce). The loop is level-triggered
 * (epoll without EPOLLET, poll, kqueue without EV_CLEAR): anything that
 * arrives later, or is still in the socket, wakes this connection again; a
 * wrong guess costs a loop turn, never a message. Saves the read that would
 * return EAGAIN, per wake-up: with many connections each receiving a small
 * message now and then, a third of the syscalls. */
#define TLS_SMALL_RECORD 4096
static int drained(struct wsp_conn *c, size_t r)
{
    return !c->ssl || (r < TLS_SMALL_RECORD && !SSL_has_pending(c->ssl) &&
                       BIO_ctrl_pending(SSL_get_rbio(c->ssl)) == 0);
}

/* Reads while there is credit and data, parsing as it goes. */
static void conn_read(struct wsp_conn *c)
{
    size_t budget = READ_BUDGET;
    unsigned upgrade_reads = 0;
    if (c->state == ST_OPEN || c->state == ST_CLOSING) {
        if (process_frames(c) < 0) {
            return;
        }
    }
    while (c->watched && may_read(c) && budget > 0) {
        /* Open connections read into one buffer shared by all (an idle
         * connection then holds no read buffer); only bytes left when the
         * credit runs out are kept in the connection's own rbuf. The
         * handshake's response is gathered in rbuf. */
        int shared = c->state == ST_OPEN || c->state == ST_CLOSING;
        if (c->state == ST_OPEN && !c->ssl) {
            int s = splice_step(c, &budget);
            if (s == -2) {
                return;
            }
            if (s == -1) {
                break;
            }
            if (s == 1) {
                continue;
            }
        }
        size_t direct = c->state == ST_OPEN ? direct_len(c) : 0;
        uint8_t *dst;
        size_t want;
        if (direct) {
            /* the rest of a big data frame: read it where the message is
             * assembled, not into g_rshared and then copied */
            if (!c->parser.msg_started) {
                c->msg.off = c->msg.len = 0;
            }
            dst = wsp_buf_reserve(&c->msg, direct);
            want = direct;
        } else if (shared) {
            dst = g_rshared;
            want = READ_CHUNK;
            /* while messages are large, read no further than the next
             * frame's header: if it starts another large one, its payload
             * can be spliced (plain TCP only) */
            if (c->large && !c->ssl) {
                uint64_t left = wsc_parser_frame_left(&c->parser);
                if (left + HDR_READ < want) {
                    want = (size_t)left + HDR_READ;
                }
            }
        } else {
            /* a response (or a proxy's answer) is small, at most
             * WSC_MAX_RESPONSE_BYTES: read it in small pieces, not into a
             * READ_CHUNK reserved (256 KiB) for every connection attempt */
            dst = wsp_buf_reserve(&c->rbuf, UPGRADE_CHUNK);
            want = dst ? c->rbuf.cap - c->rbuf.len : 0;
        }
        if (!dst) {
            fail_detail(c, 0, "socket", "out of memory");
            return;
        }
        int err = 0;
        int r = io_read(c, dst, want, &err);
        if (r == -1) {
            break;
        }
        if (r == -3) {
            fail_detail(c, WSP_FC_TLS, "tls", g_tls_err);
            return;
        }
        if (r == 0 || r == -2) {
            if (r == 0) {
                fail_atom(c, WSP_FC_NETWORK, "eof");
            } else {
                fail_errno(c, err);
            }
            return;
        }
        c->bytes_in += (uint64_t)r;
        c->last_rx = wsp_now();
        budget = (size_t)r < budget ? budget - (size_t)r : 0;
        if (shared) {
            size_t taken;
            if (parse_bytes(c, dst, (size_t)r, &taken) < 0) {
                return;
            }
            if (taken < (size_t)r && wsp_buf_append(&c->rbuf, dst + taken, (size_t)r - taken) < 0) {
                fail_detail(c, 0, "socket", "out of memory");
                return;
            }
            if (direct && wsp_buf_pending(&c->msg) == 0) {
                wsp_buf_free(&c->msg); /* delivered whole from there */
            }
            if ((size_t)r < want && drained(c, (size_t)r)) {
                break; /* see drained */
            }
            continue;
        }
        wsp_buf_commit(&c->rbuf, (size_t)r);
        if (c->state == ST_UPGRADING) {
            handle_response(c);
            if (c->state == ST_DONE) {
                return;
            }
            /* the budget counts bytes; a server sending a byte at a time
             * would get a loop turn of thousands of reads: yield after a few */
            if (c->state == ST_UPGRADING && ++upgrade_reads >= UPGRADE_READS) {
                budget = 0;
            }
        } else if (c->state == ST_PROXY) {
            proxy_read(c);
            if (c->state != ST_PROXY && c->state != ST_UPGRADING) {
                return; /* failed, or TLS with the target: tls_step reads */
            }
            if (c->state == ST_PROXY && ++upgrade_reads >= UPGRADE_READS) {
                budget = 0;
            }
        } else if (process_frames(c) < 0) {
            return;
        }
    }
    if (budget == 0 && may_read(c)) {
        kick(c);
    }
    if (wsp_buf_pending(&c->rbuf) == 0 && c->state != ST_UPGRADING && c->state != ST_PROXY) {
        wsp_buf_free(&c->rbuf);
    }
    conn_set_reading(c);
}

static void on_writable(struct wsp_conn *c)
{
    c->want_write = 0;
    if (c->state == ST_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) {
            err = errno;
        }
        if (err == EINPROGRESS) {
            wsp_loop_want_write(c->watched);
            return;
        }
        if (err) {
            c->last_errno = err;
            detach_socket(c);
            try_next_address(c);
            return;
        }
        tcp_connected(c);
        return;
    }
    if (c->state == ST_TLS) {
        tls_step(c);
        return;
    }
    if (c->tls_want_write) {
        c->tls_want_write = 0;
        conn_read(c);
        if (c->state == ST_DONE && !c->watched) {
            return;
        }
    }
    conn_flush(c);
}

int wsp_conn_on_io(struct wsp_watch *w, enum wsp_io io)
{
    struct wsp_conn *c = (struct wsp_conn *)w;
    int outer = c->in_cb;
    c->in_cb = 1;
    switch (io) {
    case WSP_IO_READABLE:
        if (c->state == ST_CONNECTING) {
            on_writable(c); /* a failed connect shows as readable too */
        } else if (c->state == ST_TLS) {
            tls_step(c);
        } else if (c->state == ST_DONE) {
            /* lingering after our final event: drop what comes, until EOF */
            int err, r = -1;
            while (c->watched && c->linger_budget > 0 &&
                   (r = io_read(c, g_rshared, sizeof g_rshared, &err)) > 0) {
                c->linger_budget -= (uint32_t)r < c->linger_budget ? (uint32_t)r : c->linger_budget;
            }
            if (c->watched && r != -1 && c->linger_budget > 0) {
                conn_free(c); /* EOF or error: the peer has closed too */
            } else if (c->watched && c->linger_budget == 0 && c->reading) {
                c->reading = 0;
                wsp_loop_want_read(c->watched, 0);
            }
        } else {
            conn_read(c);
        }
        break;
    case WSP_IO_WRITABLE:
        on_writable(c);
        break;
    case WSP_IO_CLOSED:
        c->watched = NULL;
        c->fd = -1;
        wsp_tls_free(c->ssl, &c->tls_co);
        c->ssl = NULL;
        if (c->state == ST_DONE) {
            c->in_cb = outer;
            conn_free(c);
            return 0;
        }
        if (c->state == ST_CONNECTING) {
            c->last_errno = ECONNREFUSED;
            try_next_address(c); /* other addresses of the name, if any */
        } else {
            fail_atom(c, WSP_FC_NETWORK, "eof");
        }
        break;
    }
    c->in_cb = outer;
    if (!outer && c->free_pending) {
        c->free_pending = 0;
        conn_free(c);
    }
    wsp_conn_flush_all();
    wsp_link_flush_batched();
    return 0;
}

/* ---- commands ----------------------------------------------------------- */

static struct wsp_conn *lookup(uint32_t id, const char *cmd)
{
    struct wsp_conn *c = table_get(id);
    if (!c) {
        emit_error(id, "unknown_id", "%s: no connection with id %u", cmd, id);
    }
    return c;
}

void wsp_conn_send(uint32_t id, int opcode, const uint8_t *payload, size_t len)
{
    struct wsp_conn *c = lookup(id, "send");
    if (!c) {
        return;
    }
    if (c->state != ST_OPEN) {
        if (c->state < ST_OPEN && hold_frame(c, opcode, payload, len) == 0) {
            return; /* written after the reconnect */
        }
        emit_error(id, "not_connected", "send: connection %u is %s; %zu-byte frame dropped%s",
                   id, state_name(c->state), len,
                   c->state < ST_OPEN && c->opts->send_queue ? " (send_queue full)" : "");
        return;
    }
    if (opcode == WSC_OP_PING) {
        send_ping(c, 1, payload, len);
    } else {
        int q = opcode == WSC_OP_PONG ? queue_frame(c, opcode, payload, len, NULL, 0)
                                      : queue_data(c, opcode, payload, len);
        if (q < 0) {
            emit_error(id, "badarg", "send: out of memory for a %zu-byte frame", len);
            return;
        }
        if (opcode == WSC_OP_TEXT || opcode == WSC_OP_BINARY) {
            c->msgs_out++;
        }
    }
}

/* Our close frame is queued: from now on the connection only waits for
 * the server's close frame (at most `deadline`), reading whatever the
 * credit (and a full link: nothing goes to the BEAM) and dropping the data
 * messages before it (its owner gets nothing more: no message, no passive
 * event). Whatever fails meanwhile ends it: it is never retried (lost()). */
static void start_closing(struct wsp_conn *c, lws_usec_t deadline)
{
    c->state = ST_CLOSING;
    c->closing = 1;
    wsp_loop_schedule(&c->timer, on_deadline, deadline); /* instead of ping / idle */
    splice_drop(c); /* a message half moved to the BEAM's pipe is dropped */
    wsp_buf_free(&c->msg);
    unpause_unlink(c);
    conn_set_reading(c);
    if (c->watched) {
        /* bytes may wait in rbuf or inside TLS: do not wait for poll */
        kick(c);
    }
}

void wsp_conn_close(uint32_t id, unsigned code, const uint8_t *reason, size_t len)
{
    struct wsp_conn *c = lookup(id, "close");
    if (!c) {
        return;
    }
    if (c->state == ST_BACKOFF) {
        lws_sul_cancel(&c->timer);
        wsp_enc_closed_code(xbuf(), c->id, "local", code, (const char *)reason, len);
        finish(c);
    } else if (c->state == ST_OPEN) {
        queue_close(c, code, reason, len);
        start_closing(c, CLOSE_TIMEOUT_US);
        conn_read(c);
    } else if (c->state < ST_OPEN) {
        wsp_enc_closed_code(xbuf(), c->id, "local", code, (const char *)reason, len);
        finish(c);
    }
    /* already closing: nothing more to do */
}

void wsp_conn_active(uint32_t id, enum wsp_active_kind kind, int64_t n)
{
    struct wsp_conn *c = lookup(id, "active");
    if (!c) {
        return;
    }
    switch (kind) {
    case WSP_ACTIVE_TRUE:
        c->credit = -1;
        c->passive_events = 0;
        break;
    case WSP_ACTIVE_FALSE:
        c->credit = 0;
        break;
    case WSP_ACTIVE_ONCE:
        c->credit = 1;
        c->passive_events = 0;
        break;
    case WSP_ACTIVE_N: {
        int64_t cur = c->credit < 0 ? 0 : c->credit;
        int64_t next = cur + n;
        c->credit = next > 0 ? next : 0;
        c->passive_events = 1;
        if (c->credit == 0 && c->state != ST_CLOSING) {
            wsp_enc_passive(xbuf(), c->id);
            emit();
        }
        break;
    }
    }
    if (c->credit != 0 && c->watched && (c->state == ST_OPEN || c->state == ST_CLOSING)) {
        /* bytes may wait in rbuf or inside TLS: do not wait for poll */
        kick(c);
    }
    conn_set_reading(c);
}

void wsp_conn_reconnect(uint32_t id, uint32_t delay_ms)
{
    struct wsp_conn *c = lookup(id, "reconnect");
    if (!c) {
        return;
    }
    if (c->state == ST_BACKOFF && lws_dll2_is_detached(&c->timer.list)) {
        /* manual mode: the answer to a down event */
        wsp_loop_schedule(&c->timer, on_retry, (lws_usec_t)delay_ms * 1000);
        return;
    }
    if (c->state > ST_BACKOFF && c->state <= ST_OPEN) {
        /* asked to drop a live (or connecting) connection and start over,
         * e.g. after missed application heartbeats: same id, whatever the
         * retry policy */
        if (c->state == ST_OPEN) {
            static const char why[] = "reconnecting";
            queue_close(c, 1000, (const uint8_t *)why, sizeof why - 1);
        }
        wsp_enc_closed_atom(xbuf(), c->id, "reconnect");
        retry_after(c, c->attempt + 1, delay_ms);
        return;
    }
    emit_error(id, "badarg", "reconnect: connection %u is %s, not waiting for a reconnect", id,
               state_name(c->state));
}

void wsp_conn_stats(uint32_t id)
{
    if (id == 0) {
        size_t all = wsp_conn_count();
        wsp_enc_program_stats(xbuf(), g_table_used, all - g_table_used);
        emit();
        return;
    }
    struct wsp_conn *c = lookup(id, "stats");
    if (!c) {
        return;
    }
    struct wsp_stats s = {
        .state = state_name(c->state),
        .bytes_in = c->bytes_in,
        .bytes_out = c->bytes_out,
        .msgs_in = c->msgs_in,
        .msgs_out = c->msgs_out,
        .last_rtt_us = c->last_rtt_us,
        .connected_us = c->up_at ? (int64_t)(wsp_now() - c->up_at) : -1,
        .credit = c->credit,
        .attempt = c->attempt,
        .reconnects = c->reconnects,
        .msgs_spliced = c->msgs_spliced,
        .pmd = c->pmd,
        .tls_resumed = c->ssl && c->state == ST_OPEN ? wsp_tls_resumed(c->ssl) : -1,
    };
    wsp_enc_stats(xbuf(), id, &s);
    emit();
}

void wsp_conn_link_congested(int congested)
{
    g_congested = congested;
    if (congested) {
        return; /* each connection stops when it next tries to read */
    }
    while (g_paused) {
        struct wsp_conn *c = g_paused;
        g_paused = c->paused_next;
        c->link_paused = 0;
        conn_set_reading(c);
        if (may_read(c) && c->watched) {
            kick(c);
        }
    }
}

void wsp_conn_close_all(void)
{
    struct wsp_conn *next;
    for (struct wsp_conn *c = g_all; c; c = next) {
        next = c->all_next;
        if (c->state == ST_DONE) {
            continue;
        }
        if (c->state == ST_OPEN) {
            static const char why[] = "going away";
            queue_close(c, 1001, (const uint8_t *)why, sizeof why - 1);
            start_closing(c, LINGER_US);
        } else if (c->state != ST_CLOSING) {
            fail_atom(c, 0, "closed");
        }
    }
    wsp_conn_flush_all();
}

size_t wsp_conn_count(void)
{
    size_t n = 0;
    for (const struct wsp_conn *c = g_all; c; c = c->all_next) {
        n++;
    }
    return n;
}

void wsp_conn_free_all(void)
{
    if (g_trim_armed) {
        lws_sul_cancel(&g_trim);
        g_trim_armed = 0;
    }
    while (g_all) {
        g_all->in_cb = 0;
        conn_free(g_all);
    }
    lws_sul_cancel(&g_admit); /* the frees above may have armed it */
    lws_sul_cancel(&g_kick_sul); /* every kick node went with its conn */
    free(g_table);
    g_table = NULL;
    g_table_cap = g_table_used = 0;
    if (g_x.buff) {
        ei_x_free(&g_x);
    }
    if (g_down.buff) {
        ei_x_free(&g_down);
    }
}
