/*
 * libFuzzer harness: wsp_link's framing, both ways, and its splice path.
 *
 * wsp_link.c is linked unchanged over c_test/fake_loop.c (the event loop:
 * fake clock, poll(2) on the adopted fds). Its stdin and stdout are one end
 * of two socketpairs (dup2 onto fds 0 and 1, once per process); the harness
 * holds the other ends. A script interleaves:
 *   - commands: {packet,4} packets, written to its stdin in pieces of any
 *     size (split anywhere, also inside the length prefix), with input
 *     paused and resumed in between;
 *   - events (terms) and data messages (small ones batched, large ones
 *     written straight with writev) queued for stdout, read back by the
 *     harness in pieces of any size (a full socket: queueing and flushing);
 *   - zero-copy messages: claim, bytes spliced from a socket into the pipe,
 *     then commit, take back (the ordinary path then) or abort.
 * Checked (abort = a finding), besides ASan/UBSan/LSan: every command
 * packet reaches on_packet once, whole and in order; the stdout stream
 * parses into exactly the events and messages given, in order (data
 * entries Id:32 Opcode:8 Len:32 + payload, in packets starting with 1);
 * at the end nothing is queued.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ei.h>

#include "fake_loop.h"
#include "wsp_buf.h"
#include "wsp_link.h"
#include "wsp_proto.h"

static int g_in_w = -1, g_out_r = -1, g_src_w = -1, g_src_r = -1;

static struct wsp_buf g_cmd_sent;  /* command packets written (len + body) */
static size_t g_cmd_written;       /* of which bytes written to stdin */
static struct wsp_buf g_cmd_got;   /* packets on_packet saw (len + body) */
static struct wsp_buf g_expect;    /* expected stdout items, see expect_* */
static struct wsp_buf g_out;       /* stdout bytes read */

static void finding(const char *what)
{
    fprintf(stderr, "fuzz_link: %s\n", what);
    abort();
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8),
    p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void append(struct wsp_buf *b, const void *p, size_t n)
{
    if (wsp_buf_append(b, p, n) < 0) {
        finding("out of memory");
    }
}

static void on_packet(const uint8_t *p, size_t len)
{
    uint8_t h[4];
    put32(h, (uint32_t)len);
    append(&g_cmd_got, h, 4);
    append(&g_cmd_got, p, len);
}

static void on_eof(void) { finding("EOF reported on a stdin that is open"); }
static void on_congestion(int congested) { (void)congested; }

/* expected stdout items: 'T' len bytes (a term packet), 'D' id op len bytes */
static void expect_term(const uint8_t *p, size_t n)
{
    uint8_t h[5] = {'T'};
    put32(h + 1, (uint32_t)n);
    append(&g_expect, h, 5);
    append(&g_expect, p, n);
}

static void expect_data(uint32_t id, int op, const uint8_t *p, size_t n)
{
    uint8_t h[10] = {'D'};
    put32(h + 1, id);
    h[5] = (uint8_t)op;
    put32(h + 6, (uint32_t)n);
    append(&g_expect, h, 10);
    append(&g_expect, p, n);
}

static void init_once(void)
{
    static int done;
    if (done) {
        return;
    }
    done = 1;
    int in[2], out[2], src[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, in) < 0 ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, out) < 0 ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, src) < 0 || dup2(in[1], 0) < 0 ||
        dup2(out[1], 1) < 0) {
        finding("socketpair/dup2");
    }
    close(in[1]);
    close(out[1]);
    g_in_w = in[0];
    g_out_r = out[0];
    g_src_w = src[0];
    g_src_r = src[1];
    fake_loop_set_dispatch(wsp_link_on_io);
    static const struct wsp_link_hooks hooks = {on_packet, on_eof, on_congestion};
    if (wsp_link_init(&hooks, NULL) < 0) {
        finding("wsp_link_init");
    }
}

/* ---- the script ---------------------------------------------------------- */

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

/* payload bytes: from the input while it lasts, then a pattern */
static uint8_t *payload(struct in *in, size_t n)
{
    uint8_t *p = malloc(n + 1);
    if (!p) {
        finding("out of memory");
    }
    size_t k = n < in->n ? n : in->n;
    k = k < 64 ? k : 64;
    memcpy(p, in->p, k);
    in->p += k, in->n -= k;
    for (size_t i = k; i < n; i++) {
        p[i] = (uint8_t)(i * 31 + 7);
    }
    return p;
}

static void write_cmds(size_t k)
{
    size_t left = g_cmd_sent.len - g_cmd_written;
    k = k < left ? k : left;
    if (!k) {
        return;
    }
    ssize_t w = send(g_in_w, g_cmd_sent.data + g_cmd_written, k, MSG_NOSIGNAL);
    if (w > 0) {
        g_cmd_written += (size_t)w;
    }
}

static void read_out(size_t k)
{
    uint8_t tmp[65536];
    while (k > 0) {
        ssize_t r = recv(g_out_r, tmp, k < sizeof tmp ? k : sizeof tmp, 0);
        if (r <= 0) {
            return;
        }
        append(&g_out, tmp, (size_t)r);
        k -= (size_t)r;
    }
}

static void turn(void)
{
    for (int i = 0; i < 8 && fake_loop_turn() > 0; i++) {
    }
}

static void do_splice(struct in *in)
{
    unsigned how = byte(in);
    size_t room = wsp_link_splice_room();
    if (room < 64) {
        return;
    }
    size_t nhave = byte(in);
    size_t tail = 1 + (size_t)u16(in) * 2;
    if (nhave + tail + 32 > room) {
        tail = room - 32 - nhave;
    }
    size_t len = nhave + tail;
    uint8_t *msg = payload(in, len);
    uint32_t id = 1 + (how >> 4);
    if (wsp_link_splice_claim(id, WSC_OP_BINARY, msg, nhave, len, NULL, NULL) < 0) {
        free(msg);
        return;
    }
    /* the socket holds the tail; the pipe takes what it can */
    size_t put = 0, got = 0;
    int full = 0;
    while (got < tail) {
        if (put < tail) {
            ssize_t w = send(g_src_w, msg + nhave + put, tail - put, MSG_NOSIGNAL);
            put += w > 0 ? (size_t)w : 0;
        }
        ssize_t r = wsp_link_splice_in(g_src_r, tail - got);
        if (r == WSP_SPLICE_FULL) {
            full = 1;
            break;
        }
        if (r == WSP_SPLICE_ERROR || r == 0) {
            finding("splice_in from a healthy socket failed");
        }
        if (r > 0) {
            got += (size_t)r;
        }
    }
    if (!full && (how & 3) != 3) {
        wsp_link_splice_commit();
        expect_data(id, WSC_OP_BINARY, msg, len);
    } else if (!full) {
        wsp_link_splice_abort(); /* the connection failed: nothing of it goes out */
    } else {
        /* the pipe filled up first: take the bytes back, go on the
         * ordinary way with the rest from the socket */
        struct wsp_buf back = {0};
        if (wsp_link_splice_take(&back) < 0) {
            finding("splice_take failed");
        }
        if (wsp_buf_pending(&back) != got ||
            memcmp(back.data + back.off, msg + nhave, got) != 0) {
            finding("splice_take gave back other bytes than were spliced");
        }
        wsp_buf_free(&back);
        got = tail; /* the rest is read from the socket below and dropped */
        wsp_link_data(id, WSC_OP_BINARY, msg, len);
        expect_data(id, WSC_OP_BINARY, msg, len);
    }
    /* drain the source socket (what was not spliced) */
    while (put < tail) {
        ssize_t w = send(g_src_w, msg + nhave + put, tail - put, MSG_NOSIGNAL);
        put += w > 0 ? (size_t)w : 0;
        uint8_t sink[65536];
        while (recv(g_src_r, sink, sizeof sink, 0) > 0) {
        }
    }
    uint8_t sink[65536];
    while (recv(g_src_r, sink, sizeof sink, 0) > 0) {
    }
    free(msg);
}

static void run_op(struct in *in)
{
    unsigned op = byte(in);
    switch (op % 9) {
    case 0: { /* a command packet */
        size_t n = (op & 0x80) ? u16(in) * 4u : byte(in);
        uint8_t *p = payload(in, n);
        uint8_t h[4];
        put32(h, (uint32_t)n);
        append(&g_cmd_sent, h, 4);
        append(&g_cmd_sent, p, n);
        free(p);
        break;
    }
    case 1:
        write_cmds(1 + byte(in) * (op & 0x80 ? 256u : 1u));
        break;
    case 2: { /* an event */
        ei_x_buff x;
        ei_x_new_with_version(&x);
        size_t n = byte(in);
        uint8_t *p = payload(in, n);
        ei_x_encode_tuple_header(&x, 3);
        ei_x_encode_atom(&x, "stats");
        ei_x_encode_ulong(&x, op >> 4);
        ei_x_encode_binary(&x, p, (long)n);
        wsp_link_event(&x);
        expect_term((const uint8_t *)x.buff, (size_t)x.index);
        ei_x_free(&x);
        free(p);
        break;
    }
    case 3:
    case 4: { /* a message: small ones batch, large ones go straight */
        size_t n = (op & 0x80) ? u16(in) * 8u : byte(in);
        uint8_t *p = payload(in, n);
        int opcode = op & 0x40 ? WSC_OP_TEXT : WSC_OP_BINARY;
        uint32_t id = 1 + (op >> 4 & 3);
        if (wsp_link_data(id, opcode, p, n) < 0) {
            finding("wsp_link_data failed");
        }
        expect_data(id, opcode, p, n);
        free(p);
        break;
    }
    case 5:
        read_out((size_t)(1 + byte(in)) * (op & 0x80 ? 1024u : 1u));
        break;
    case 6:
        wsp_link_pause_input(op >> 7);
        break;
    case 7:
        do_splice(in);
        break;
    case 8:
        wsp_link_flush();
        break;
    }
    turn();
}

static void check_out(void)
{
    size_t o = 0, e = 0;
    size_t olen = wsp_buf_pending(&g_out), elen = wsp_buf_pending(&g_expect);
    const uint8_t *out = olen ? g_out.data + g_out.off : NULL;
    const uint8_t *ex = elen ? g_expect.data + g_expect.off : NULL;
    while (o < olen) {
        if (olen - o < 5) {
            finding("a truncated packet on stdout");
        }
        uint32_t n = get32(out + o);
        if (n == 0 || n > olen - o - 4) {
            finding("a packet length beyond the stream");
        }
        const uint8_t *p = out + o + 4;
        if (p[0] == 131) {
            if (e + 5 > elen || ex[e] != 'T' || get32(ex + e + 1) != n ||
                memcmp(ex + e + 5, p, n) != 0) {
                finding("an event that is not the next one given");
            }
            e += 5 + n;
        } else if (p[0] == WSP_RAW_DATA) {
            size_t i = 1;
            while (i < n) {
                if (n - i < WSP_DATA_ENTRY_HDR) {
                    finding("a truncated data entry");
                }
                uint32_t id = get32(p + i), len = get32(p + i + 5);
                uint8_t opc = p[i + 4];
                if (len > n - i - WSP_DATA_ENTRY_HDR) {
                    finding("a data entry beyond its packet");
                }
                if (e + 10 > elen || ex[e] != 'D' || get32(ex + e + 1) != id ||
                    ex[e + 5] != opc || get32(ex + e + 6) != len ||
                    memcmp(ex + e + 10, p + i + WSP_DATA_ENTRY_HDR, len) != 0) {
                    finding("a message that is not the next one given");
                }
                e += 10 + len;
                i += WSP_DATA_ENTRY_HDR + len;
            }
        } else {
            finding("a packet that is neither a term nor data");
        }
        o += 4 + n;
    }
    if (e != elen) {
        finding("events or messages given never came out");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init_once();
    struct in in = {data, size};
    for (int ops = 0; in.n > 0 && ops < 256; ops++) {
        run_op(&in);
    }
    /* the end: everything written, read and dispatched */
    wsp_link_pause_input(0);
    for (int i = 0; i < 100000; i++) {
        write_cmds(SIZE_MAX);
        wsp_link_flush(); /* as the program does after each batch of work */
        turn();
        read_out(SIZE_MAX);
        if (g_cmd_written == g_cmd_sent.len && g_cmd_got.len == g_cmd_sent.len &&
            wsp_link_queued() == 0) {
            turn();
            read_out(SIZE_MAX);
            break;
        }
    }
    if (wsp_buf_pending(&g_cmd_got) != wsp_buf_pending(&g_cmd_sent) ||
        (wsp_buf_pending(&g_cmd_sent) > 0 &&
         memcmp(g_cmd_got.data + g_cmd_got.off, g_cmd_sent.data + g_cmd_sent.off,
                wsp_buf_pending(&g_cmd_sent)) != 0)) {
        finding("the command packets dispatched are not those written");
    }
    if (wsp_link_queued() != 0) {
        finding("output still queued at the end");
    }
    check_out();
    wsp_buf_free(&g_cmd_sent);
    wsp_buf_free(&g_cmd_got);
    wsp_buf_free(&g_expect);
    wsp_buf_free(&g_out);
    g_cmd_written = 0;
    return 0;
}
