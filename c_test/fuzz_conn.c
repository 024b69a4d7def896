/*
 * libFuzzer harness: the connection state machine (wsp_conn.c) as a whole.
 *
 * The input is a script: server bytes (the upgrade response and frames,
 * written to the server end of a socket in pieces of any size, so
 * they arrive split anywhere) interleaved with the BEAM's commands
 * (connect, send, active, close, reconnect, stats), the clock moving on
 * (connect/close/linger timeouts, pings, idle timeouts, retry delays) and
 * the output link congesting. wsp_conn.c is linked unchanged; what it calls
 * below it is replaced at link time: the event loop (c_test/fake_loop.c:
 * a fake clock and timer list, the adopted fds' readiness once per loop
 * turn), DNS (hN.fuzz is server N) and the link to the BEAM (events decoded
 * and checked here) by c_test/fake_net.c; the sockets themselves, at the
 * lowest level, by c_test/fake_sock.c: wsp_conn.c's socket, connect,
 * send, recv, getsockopt, shutdown and close are wrapped (-Wl,--wrap) into
 * stream socket pairs in memory with the semantics of AF_UNIX stream
 * sockets (buffer limits, EOF, reset on close with unread data, EPIPE), so
 * an execution makes no system call for them.
 *
 * Checked (abort = a finding), besides ASan/UBSan and LeakSanitizer:
 *  - closed means closed: after {close, Id} no new attempt of that
 *    connection starts (no lookup), and no up or down event comes for it;
 *  - after a connection's final {closed, Id, _} no event at all for it
 *    (until the id is connected again), and at most one final per connect;
 *  - every event is one well-formed term {Tag, Id, ...};
 *  - at the end (close of everything, the clock moved past every timeout):
 *    no connection is left, every connect had exactly one final event, no
 *    fd is still adopted or open, no timer and no lookup is pending.
 *
 * Script ops (one byte each, then their arguments, see run_op):
 *   connect, server writes raw bytes, server answers the upgrade (a valid
 *   101 for the key it read), server writes a frame, server closes its end,
 *   send, active, close, reconnect, clock, stats, link congestion, lws-style
 *   hang-up handling on/off.
 *
 * Bounded per execution: 512 ops, 1 MiB of big payloads in all
 * (BIG_BUDGET), 128 loop turns to settle after an op.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/sha.h>
#include <sanitizer/asan_interface.h>

#include "fake_net.h"
#include "fake_sock.h"
#include "ws_codec.h"
#include "wsp_backoff.h"
#include "wsp_conn.h"
#include "wsp_proto.h"

#define NCONN FAKE_NET_SERVERS

struct conn_model {
    int exists;       /* connected and not yet final */
    int closed_cmd;   /* {close, Id} was sent while it existed */
    int finals;       /* final {closed, Id, _} events since its connect */
    int sfd;          /* the server end of its latest socket, -1 */
    char req[4096];   /* the upgrade request read so far */
    size_t reqlen;
};

static struct conn_model g_m[NCONN + 1];
/* lookups of server n not yet matched by an accept: a connect() may follow
 * (a lookup cancelled or answered with a failure leaves one behind; that
 * costs a listener in the loop's poll, no system call) */
static int g_accept[NCONN + 1];

static void finding(const char *what, uint32_t id)
{
    fprintf(stderr, "fuzz_conn: %s (connection %u)\n", what, id);
    abort();
}

static void on_event(const char *tag, uint32_t id)
{
    if (id == 0 || id > NCONN) {
        return; /* {error, Id, _} for an id never connected, stats of 0 */
    }
    struct conn_model *m = &g_m[id];
    if (!strcmp(tag, "error") || !strcmp(tag, "stats")) {
        return;
    }
    if (!m->exists) {
        finding(tag, id); /* an event for a connection that is not there */
    }
    if (!strcmp(tag, "closed")) {
        m->finals++;
        m->exists = 0;
        return;
    }
    if (m->closed_cmd && (!strcmp(tag, "up") || !strcmp(tag, "down"))) {
        finding(!strcmp(tag, "up") ? "up after close" : "down after close", id);
    }
}

static void on_resolve(int n)
{
    if (n < 1 || n > NCONN) {
        return;
    }
    if (!g_m[n].exists) {
        finding("an attempt of a connection that is not there", (uint32_t)n);
    }
    if (g_m[n].closed_cmd) {
        finding("a new attempt after close (zombie)", (uint32_t)n);
    }
    g_accept[n]++;
}

/* ---- reading the script ---------------------------------------------------- */

struct in {
    const uint8_t *p;
    size_t n;
};

static unsigned byte(struct in *in)
{
    if (!in->n) {
        return 0;
    }
    in->n--;
    return *in->p++;
}

static unsigned u16(struct in *in) { return byte(in) << 8 | byte(in); }

static const uint8_t *take(struct in *in, size_t *len)
{
    if (*len > in->n) {
        *len = in->n;
    }
    const uint8_t *p = in->p;
    in->p += *len;
    in->n -= *len;
    return p;
}

/* A big length from 16 bits: 12 of them scaled by 2^0 .. 2^maxshift, so
 * sizes spread evenly over the powers of two (crossing the socket buffer,
 * READ_CHUNK, PONG_SKIP and, several queued, SENDQ_HIGH) instead of
 * averaging half the maximum: each big payload is copied, masked and
 * buffered by wsp_conn, most of an execution's time.
 *
 * The cost of one execution is bounded: all the big lengths of one script
 * together (sends and server frames) get at most BIG_BUDGET bytes (1 MiB:
 * one send of the largest size, or several that fill the socket buffer
 * and cross READ_CHUNK and PONG_SKIP); a script that asks for more gets
 * shorter, finally empty, payloads. Payload bytes were most of the time
 * of a grown corpus's long scripts (~500 KB each, ~1 ms of ASan
 * allocations, page faults and copies per 100 KB); unbounded, 512 ops of
 * 1 MiB were half a second. Not reachable within it: SENDQ_HIGH (4 MiB
 * queued, {busy, Id}), which no execution of a grown corpus reached
 * before either (bench/RESULTS.md, 2026-12-02 fuzz_conn speed-up). */
#ifndef BIG_BUDGET
#define BIG_BUDGET ((size_t)1 << 20)
#endif
static size_t g_big_left;

static size_t big_len(unsigned v, unsigned maxshift)
{
    size_t len = (size_t)(v & 0x0fff) << ((v >> 12) % (maxshift + 1));
    if (len > g_big_left) {
        len = g_big_left;
    }
    g_big_left -= len;
    return len;
}

/* ---- payloads ------------------------------------------------------------------
 *
 * The payloads of the BEAM's sends and of the server's frames (up to
 * PAY_MAX bytes) are taken from the end of one static buffer: a calloc
 * per op was, under ASan, a fresh mmap, a page fault per 4 KiB and the
 * shadow poisoned on free, most of an execution's time. What the calloc
 * checked still holds: a read past the end of a payload hits the global's
 * redzone, and between uses the buffer is poisoned, so a pointer wsp_conn
 * kept into a payload after the call returned is a use-after-poison. */

#define PAY_MAX (0x0fffu << 8)
static uint8_t g_pay[PAY_MAX];

struct pay {
    uint8_t *p;
    size_t len;
    size_t have; /* the first have bytes came from the script, the rest are 0 */
};

static struct pay pay_get(size_t len, struct in *in, size_t have)
{
    struct pay y = {g_pay + sizeof g_pay - len, len, have};
    ASAN_UNPOISON_MEMORY_REGION(y.p, len);
    memcpy(y.p, take(in, &y.have), y.have);
    return y;
}

static void pay_put(struct pay y)
{
    memset(y.p, 0, y.have);
    ASAN_POISON_MEMORY_REGION(y.p, y.len);
}

/* ---- the server side ----------------------------------------------------------- */

/* Accepts one connection queued for server n (it replaces the server end
 * of the old one; another queued one is accepted in the next turn).
 * Returns how many. */
static int accept_new(int n)
{
    int fd = fake_sock_accept(n);
    if (fd < 0) {
        return 0;
    }
    if (g_accept[n] > 0) {
        g_accept[n]--;
    }
    if (g_m[n].sfd >= 0) {
        fake_sock_close(g_m[n].sfd);
    }
    g_m[n].sfd = fd;
    g_m[n].reqlen = 0;
    return 1;
}

/* Reads what the client wrote: the request is kept (for its key), frames
 * are dropped (a server that reads). Returns the bytes read. A read
 * shorter than the buffer took everything there was (a stream socket of
 * fake_sock.c hands out all it holds, up to the length asked). */
static size_t server_read(int n)
{
    struct conn_model *m = &g_m[n];
    if (m->sfd < 0) {
        return 0;
    }
    static uint8_t tmp[65536]; /* not on the stack: ASan unpoisons a frame on return */
    size_t got = 0;
    ssize_t r;
    while ((r = fake_sock_recv(m->sfd, tmp, sizeof tmp)) > 0) {
        size_t room = sizeof m->req - 1 - m->reqlen;
        size_t k = (size_t)r < room ? (size_t)r : room;
        memcpy(m->req + m->reqlen, tmp, k);
        m->reqlen += k;
        m->req[m->reqlen] = 0;
        got += (size_t)r;
        if ((size_t)r < sizeof tmp) {
            break;
        }
    }
    return got;
}

static void server_write(int n, const uint8_t *p, size_t len)
{
    if (g_m[n].sfd >= 0 && len) {
        ssize_t w = fake_sock_send(g_m[n].sfd, p, len);
        (void)w; /* a full socket drops the rest: the script goes on */
    }
}

static void server_upgrade(int n, unsigned variant)
{
    server_read(n);
    const char *k = strstr(g_m[n].req, "Sec-WebSocket-Key: ");
    char key[64] = "";
    if (k) {
        k += strlen("Sec-WebSocket-Key: ");
        size_t i = 0;
        while (i < sizeof key - 1 && k[i] && k[i] != '\r') {
            key[i] = k[i];
            i++;
        }
        key[i] = 0;
    }
    char accept[29];
    wsc_accept_for_key(key, accept);
    char resp[512];
    int len = snprintf(resp, sizeof resp,
                       "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\n%sSec-WebSocket-Accept: %s\r\n\r\n",
                       variant & 1 ? "X-Fuzz: 1\r\n" : "", accept);
    server_write(n, (const uint8_t *)resp, (size_t)len);
}

/* ---- the BEAM side ------------------------------------------------------------- */

static char *dup_str(const char *s)
{
    char *d = strdup(s);
    if (!d) {
        abort();
    }
    return d;
}

static void do_connect(int n, struct in *in)
{
    struct wsp_connect_opts *o = calloc(1, sizeof *o);
    if (!o) {
        abort();
    }
    unsigned f = byte(in);
    char url[64];
    /* 1 in 16: a name that does not resolve */
    snprintf(url, sizeof url, (f & 15) == 15 ? "ws://nx.fuzz/p" : "ws://h%d.fuzz/p%u", n, f >> 4);
    o->url = dup_str(url);
    o->url_len = strlen(url);
    o->connect_timeout_ms = 1 + byte(in) * 20u;
    o->max_message_size = 1ull + ((uint64_t)1 << (byte(in) % 24));
    unsigned a = byte(in);
    o->active = (enum wsp_active_kind)(1 + a % 4);
    o->active_n = (int64_t)(a >> 2) - 8;
    o->verify = 1;
    unsigned live = byte(in);
    o->ping_interval_ms = live & 1 ? 1 + (live >> 1) * 10u : 0;
    o->idle_timeout_ms = live & 2 ? 1 + (live >> 2) * 30u : 0;
    unsigned r = byte(in);
    wsp_backoff_default(&o->retry);
    o->retry.enabled = (r & 3) != 0;
    o->retry.manual = (r & 3) == 3;
    o->retry.delay_ms = (r >> 2) * 10u;
    o->retry.max_delay_ms = 500;
    o->retry.max_retries = (r & 0x40) ? -1 : (int64_t)(r & 7);
    if (r & 0x80) {
        wsp_backoff_stay_connected_retry_on(&o->retry);
    }
    o->send_queue = byte(in) % 8;
    struct conn_model *m = &g_m[n];
    if (!m->exists) {
        m->exists = 1;
        m->closed_cmd = 0;
        m->finals = 0;
    } /* else: refused as id_in_use, an error event */
    wsp_conn_connect((uint32_t)n, o);
}

/* Runs one op. Returns 0 when the op cannot have given the loop anything
 * to do (after a settle that ended quiet, no turn is needed then): the
 * server side of a connection without a server socket, the clock moving
 * on with no timer falling due, the hang-up mode (a quiet turn saw no
 * hang-up), ops that do nothing. */
static int run_op(struct in *in)
{
    unsigned op = byte(in);
    int n = 1 + (int)((op >> 4) % NCONN);
    int busy = 1;
    switch (op & 15) {
    case 0:
        do_connect(n, in);
        break;
    case 1: { /* raw server bytes, any length: split anywhere */
        busy = g_m[n].sfd >= 0;
        size_t len = byte(in);
        const uint8_t *p = take(in, &len);
        server_read(n);
        server_write(n, p, len);
        break;
    }
    case 2:
        busy = g_m[n].sfd >= 0;
        server_upgrade(n, byte(in));
        break;
    case 3: { /* one well-formed server frame (unmasked), a big one too */
        busy = g_m[n].sfd >= 0;
        unsigned h = byte(in);
        size_t len = (h & 0x40) ? big_len(u16(in), 6) : byte(in); /* < 256 KiB */
        uint8_t hdr[10];
        size_t hl = 2;
        hdr[0] = (uint8_t)((h & 0x80) | (h & 0x0f));
        if (len < 126) {
            hdr[1] = (uint8_t)len;
        } else if (len <= 0xffff) {
            hdr[1] = 126, hdr[2] = (uint8_t)(len >> 8), hdr[3] = (uint8_t)len, hl = 4;
        } else {
            hdr[1] = 127;
            for (int i = 0; i < 8; i++) {
                hdr[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
            }
            hl = 10;
        }
        server_read(n);
        server_write(n, hdr, hl);
        struct pay y = pay_get(len, in, len);
        server_write(n, y.p, len);
        pay_put(y);
        break;
    }
    case 4: /* the server closes its end (with unread data: a reset) */
        busy = g_m[n].sfd >= 0;
        if (g_m[n].sfd >= 0) {
            if (byte(in) & 1) {
                server_read(n);
            }
            fake_sock_close(g_m[n].sfd);
            g_m[n].sfd = -1;
        }
        break;
    case 5: { /* send */
        unsigned k = byte(in);
        static const int ops[] = {WSC_OP_TEXT, WSC_OP_BINARY, WSC_OP_PING, WSC_OP_PONG};
        size_t len = k >> 2;
        if (k & 0x80) {
            len = big_len(u16(in), 8); /* < 1 MiB */
        }
        struct pay y = pay_get(len, in, len < 125 ? len : 0);
        int opcode = ops[k & 3];
        if ((opcode == WSC_OP_PING || opcode == WSC_OP_PONG) && len > 125) {
            len = 125; /* the BEAM side refuses longer control payloads */
        }
        wsp_conn_send((uint32_t)n, opcode, y.p, len);
        pay_put(y);
        break;
    }
    case 6: {
        unsigned k = byte(in);
        wsp_conn_active((uint32_t)n, (enum wsp_active_kind)(1 + k % 4), (int64_t)(k >> 2) - 16);
        break;
    }
    case 7: { /* close */
        unsigned code = 1000 + byte(in) % 12;
        if (code == 1004 || code == 1005 || code == 1006) {
            code = 4000;
        }
        if (g_m[n].exists) {
            g_m[n].closed_cmd = 1;
        }
        wsp_conn_close((uint32_t)n, code, (const uint8_t *)"bye", 3);
        break;
    }
    case 8:
        wsp_conn_reconnect((uint32_t)n, byte(in) * 4u);
        break;
    case 9: { /* the clock moves on */
        fake_loop_advance((lws_usec_t)(1 + byte(in)) * (byte(in) & 1 ? 100000 : 1000));
        lws_usec_t due = fake_loop_next_due();
        busy = due != 0 && due <= fake_loop_now;
        break;
    }
    case 10:
        wsp_conn_stats((uint32_t)n);
        break;
    case 11:
        wsp_conn_link_congested(byte(in) & 1);
        break;
    case 12:
        fake_loop_set_hangup_close(byte(in) & 1);
        busy = 0;
        break;
    default:
        busy = 0;
        break;
    }
    wsp_conn_flush_all();
    return busy;
}

/* One loop turn with the server side: a connection queued for a server a
 * lookup came for is accepted, a server end whose upgrade request is not
 * read yet reads it (for the key). Returns how much happened: callbacks
 * run, connections accepted, reads with bytes. */
static int turn(void)
{
    int ran = fake_net_turn();
    for (int n = 1; n <= NCONN; n++) {
        if (g_accept[n] && fake_sock_backlog(n)) {
            ran += accept_new(n);
        }
        if (g_m[n].sfd >= 0 && g_m[n].reqlen < 64 &&
            (fake_sock_revents(g_m[n].sfd, POLLIN) & POLLIN)) {
            ran += server_read(n) > 0;
        }
    }
    return ran;
}

/* Runs the loop until a turn in which nothing happens (bounded): nothing
 * changed, so the next poll would find the same nothing. Returns 1 if it
 * ended so (quiet), 0 if the bound ended it. */
static int settle(void)
{
    for (int i = 0; i < 128; i++) {
        if (turn() == 0) {
            return 1;
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct fake_net_hooks hooks = {on_event, on_resolve};
    static int once;
    if (!once) {
        ASAN_POISON_MEMORY_REGION(g_pay, sizeof g_pay);
        once = 1;
    }
    fake_net_init(&hooks);
    g_big_left = BIG_BUDGET;
    for (int n = 0; n <= NCONN; n++) {
        memset(&g_m[n], 0, sizeof g_m[n]);
        g_m[n].sfd = -1;
        g_accept[n] = 0;
    }
    struct in in = {data, size};
    int ops = 0, quiet = 0;
    while (in.n > 0 && ops++ < 512) {
        if (run_op(&in) || !quiet) {
            quiet = settle();
        }
    }

    /* the BEAM goes away: everything closes, every timeout passes */
    wsp_conn_close_all();
    settle();
    /* the clock jumps to each next timer (close timeout, linger) */
    for (int i = 0; i < 32 && wsp_conn_count() > 0; i++) {
        if (i == 4) { /* servers that never answer our close */
            for (int n = 1; n <= NCONN; n++) {
                if (g_m[n].sfd >= 0) {
                    fake_sock_close(g_m[n].sfd);
                    g_m[n].sfd = -1;
                }
            }
        }
        for (int n = 1; n <= NCONN; n++) {
            server_read(n);
        }
        lws_usec_t due = fake_loop_next_due();
        if (due > fake_loop_now) {
            fake_loop_advance(due - fake_loop_now);
        }
        settle();
    }
    /* timers of the program's own (the heap trim a second after the last
     * connections came or went) run out too */
    for (int i = 0; i < 8 && wsp_conn_count() == 0 && fake_loop_timers() != 0; i++) {
        lws_usec_t due = fake_loop_next_due();
        if (due > fake_loop_now) {
            fake_loop_advance(due - fake_loop_now);
        }
        settle();
    }
    if (wsp_conn_count() != 0) {
        finding("connections left after close_all and every timeout", 0);
    }
    for (uint32_t n = 1; n <= NCONN; n++) {
        if (g_m[n].exists) {
            finding("a connection ended without its final event", n);
        }
        if (g_m[n].finals > 1) {
            finding("two final events", n);
        }
    }
    if (fake_loop_adopted() != 0) {
        finding("an fd still adopted", 0);
    }
    if (fake_loop_timers() != 0) {
        finding("a timer still pending", 0);
    }
    if (fake_net_lookups() != 0) {
        finding("a lookup still pending", 0);
    }
    for (int n = 1; n <= NCONN; n++) {
        if (g_m[n].sfd >= 0) {
            fake_sock_close(g_m[n].sfd);
            g_m[n].sfd = -1;
        }
        /* connections still queued (only after a lookup that no accept
         * matched: every connect() follows a lookup) */
        int fd;
        while ((fd = fake_sock_accept(n)) >= 0) {
            fake_sock_close(fd);
        }
    }
    if (fake_sock_open() != 0) {
        finding("a socket left open (an fd leak)", 0);
    }
    wsp_conn_free_all();
    fake_net_reset();
    return 0;
}
