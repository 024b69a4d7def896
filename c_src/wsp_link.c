#include "wsp_link.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "wsp_buf.h"
#include "wsp_log.h"
#include "wsp_proto.h"

static struct {
    struct wsp_link_hooks hooks;
    struct wsp_watch in_watch, out_watch;
    struct lws *in_wsi, *out_wsi;
    struct wsp_buf in;          /* bytes read from stdin, not yet dispatched */
    struct wsp_buf out;         /* bytes queued for stdout */
    size_t last_data_off;       /* start of the last data packet in out, or SIZE_MAX */
    int congested;
    int want_write;
    int input_paused;
    int eof;
    lws_sorted_usec_list_t later;  /* dispatch / EOF from the loop, not nested */
    int later_eof;
} L;

/* Work that must not run nested inside whoever triggered it (a connection
 * in the middle of parsing or resetting): buffered commands after input is
 * resumed, and the BEAM-gone handling after a failed write. */
static void dispatch_input(void);

static void on_later(lws_sorted_usec_list_t *sul)
{
    (void)sul;
    if (L.later_eof) {
        L.later_eof = 0;
        L.hooks.on_eof();
        return;
    }
    if (!L.input_paused && !L.eof) {
        dispatch_input();
    }
}

static void eof_later(void)
{
    if (!L.eof) {
        L.eof = 1;
        L.later_eof = 1;
        lws_sul_schedule(wsp_ctx, 0, &L.later, on_later, 0);
    }
}

/* in-process delivery (wsp_link_set_sink): replaces stdin/stdout when set */
static struct wsp_link_sink S;

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

int wsp_link_init(const struct wsp_link_hooks *hooks)
{
    L.hooks = *hooks;
    L.last_data_off = SIZE_MAX;
    L.in_watch.kind = WSP_W_STDIN;
    L.out_watch.kind = WSP_W_STDOUT;
    for (int fd = 0; fd <= 1; fd++) {
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
            ERR("cannot make fd %d non-blocking: %s", fd, strerror(errno));
            return -1;
        }
    }
#ifdef F_SETPIPE_SZ
    /* a bigger pipe means fewer wake-ups of the BEAM; fine to fail */
    (void)fcntl(1, F_SETPIPE_SZ, 1024 * 1024);
#endif
    /* lws closes adopted fds on exit; give it duplicates of 0 and 1 */
    int in_fd = dup(0), out_fd = dup(1);
    if (in_fd < 0 || out_fd < 0) {
        ERR("dup: %s", strerror(errno));
        return -1;
    }
    L.in_wsi = wsp_loop_adopt(in_fd, &L.in_watch);
    L.out_wsi = wsp_loop_adopt(out_fd, &L.out_watch);
    if (!L.in_wsi || !L.out_wsi) {
        ERR("cannot adopt stdin/stdout into the event loop");
        return -1;
    }
    wsp_loop_want_read(L.out_wsi, 0);
    return 0;
}

static void dispatch_input(void)
{
    while (wsp_buf_pending(&L.in) >= 4) {
        const uint8_t *p = L.in.data + L.in.off;
        uint32_t n = get_be32(p);
        if (n > WSP_LINK_MAX_PACKET) {
            /* The length prefix itself is garbage: the stream cannot be
             * resynchronised. Say so and stop reading commands. */
            ei_x_buff x;
            ei_x_new(&x);
            char msg[96];
            int ml = snprintf(msg, sizeof msg, "packet length %u exceeds %u bytes", n,
                              WSP_LINK_MAX_PACKET);
            wsp_enc_error(&x, 0, "badarg", msg, (size_t)ml);
            wsp_link_event(&x);
            ei_x_free(&x);
            wsp_buf_consume(&L.in, wsp_buf_pending(&L.in));
            L.eof = 1;
            L.hooks.on_eof();
            return;
        }
        if (wsp_buf_pending(&L.in) - 4 < n) {
            /* make sure a big packet has room to arrive in one piece */
            if (!wsp_buf_reserve(&L.in, n + 4 - wsp_buf_pending(&L.in))) {
                ERR("out of memory for a %u-byte command", n);
            }
            return;
        }
        wsp_buf_consume(&L.in, 4 + n);
        /* note: consume does not move memory, p stays valid until the next
         * reserve, which happens only in read_input */
        L.hooks.on_packet(p + 4, n);
        if (L.input_paused || L.eof) {
            return;
        }
    }
}

static int read_input(void)
{
    for (int rounds = 0; rounds < 16 && !L.input_paused && !L.eof; rounds++) {
        uint8_t *dst = wsp_buf_reserve(&L.in, 256 * 1024);
        if (!dst) {
            ERR("out of memory reading stdin");
            return -1;
        }
        size_t room = L.in.cap - L.in.len;
        ssize_t r = read(lws_get_socket_fd(L.in_wsi), dst, room);
        if (r > 0) {
            wsp_buf_commit(&L.in, (size_t)r);
            dispatch_input();
            if ((size_t)r < room) {
                break;
            }
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        }
        if (r < 0 && errno == EINTR) {
            continue;
        }
        L.eof = 1;
        L.hooks.on_eof();
        return -1;
    }
    wsp_buf_shrink(&L.in, 1024 * 1024);
    return 0;
}

static void update_congestion(void)
{
    size_t q = wsp_buf_pending(&L.out);
    if (!L.congested && q >= WSP_LINK_HIGH_WATER) {
        L.congested = 1;
        L.hooks.on_congestion(1);
    } else if (L.congested && q <= WSP_LINK_LOW_WATER) {
        L.congested = 0;
        L.hooks.on_congestion(0);
    }
}

void wsp_link_flush(void)
{
    while (wsp_buf_pending(&L.out) > 0) {
        ssize_t w = write(1, L.out.data + L.out.off, wsp_buf_pending(&L.out));
        if (w > 0) {
            wsp_buf_consume(&L.out, (size_t)w);
            if (L.last_data_off != SIZE_MAX && L.out.off > L.last_data_off) {
                L.last_data_off = SIZE_MAX; /* partly written: no more appends */
            }
            continue;
        }
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!L.want_write && L.out_wsi) {
                L.want_write = 1;
                wsp_loop_want_write(L.out_wsi);
            }
            break;
        }
        /* EPIPE or worse: the BEAM is gone (handled from the loop: this
         * may run in the middle of a connection's parsing) */
        wsp_buf_consume(&L.out, wsp_buf_pending(&L.out));
        eof_later();
        break;
    }
    if (wsp_buf_pending(&L.out) == 0) {
        L.last_data_off = SIZE_MAX;
        wsp_buf_shrink(&L.out, 4 * 1024 * 1024);
    }
    update_congestion();
}

int wsp_link_on_io(struct wsp_watch *w, struct lws *wsi, enum wsp_io io)
{
    (void)wsi;
    if (w == &L.in_watch) {
        if (io == WSP_IO_READABLE) {
            return read_input();
        }
        if (io == WSP_IO_CLOSED) {
            L.in_wsi = NULL;
            if (!L.eof) {
                L.eof = 1;
                L.hooks.on_eof();
            }
        }
        return 0;
    }
    if (io == WSP_IO_WRITABLE) {
        L.want_write = 0;
        wsp_link_flush();
    } else if (io == WSP_IO_CLOSED) {
        L.out_wsi = NULL;
    }
    return 0;
}

void wsp_link_event(const ei_x_buff *x)
{
    if (S.on_event) {
        if (x->index > 0) {
            S.on_event((const uint8_t *)x->buff, (size_t)x->index);
        }
        return;
    }
    if (x->index <= 0) {
        return; /* the encoder failed (out of memory): nothing to send */
    }
    uint8_t *dst = wsp_buf_reserve(&L.out, 4 + (size_t)x->index);
    if (!dst) {
        ERR("out of memory queueing an event");
        return;
    }
    put_be32(dst, (uint32_t)x->index);
    memcpy(dst + 4, x->buff, (size_t)x->index);
    wsp_buf_commit(&L.out, 4 + (size_t)x->index);
    L.last_data_off = SIZE_MAX;
}

/* A large message with nothing queued before it goes out with one writev
 * straight from where it lies (the receive buffer): no copy into the queue.
 * Returns 1 if it was handled (written, or the rest queued), 0 otherwise. */
static int data_direct(uint32_t id, int opcode, const uint8_t *payload, size_t len)
{
    if (len < WSP_LINK_DIRECT_BYTES || wsp_buf_pending(&L.out) > 0 || L.eof) {
        return 0;
    }
    uint8_t hdr[5 + WSP_DATA_ENTRY_HDR];
    put_be32(hdr, (uint32_t)(1 + WSP_DATA_ENTRY_HDR + len));
    hdr[4] = WSP_RAW_DATA;
    wsp_data_entry_header(hdr + 5, id, opcode, (uint32_t)len);
    struct iovec iov[2] = {{hdr, sizeof hdr}, {(void *)payload, len}};
    ssize_t w;
    do {
        w = writev(1, iov, 2);
    } while (w < 0 && errno == EINTR);
    if (w < 0) {
        w = 0; /* EAGAIN, or an error wsp_link_flush will report */
    }
    size_t done = (size_t)w;
    if (done < sizeof hdr) {
        if (wsp_buf_append(&L.out, hdr + done, sizeof hdr - done) < 0) {
            return -1;
        }
        done = 0;
    } else {
        done -= sizeof hdr;
    }
    if (done < len && wsp_buf_append(&L.out, payload + done, len - done) < 0) {
        return -1;
    }
    L.last_data_off = SIZE_MAX; /* begun on the pipe: cannot take more entries */
    if (wsp_buf_pending(&L.out) > 0) {
        wsp_link_flush();
    }
    update_congestion();
    return 1;
}

int wsp_link_data(uint32_t id, int opcode, const uint8_t *payload, size_t len)
{
    if (S.on_data) {
        S.on_data(id, opcode, payload, len);
        return 0;
    }
    int direct = data_direct(id, opcode, payload, len);
    if (direct != 0) {
        return direct < 0 ? -1 : 0;
    }
    size_t entry = WSP_DATA_ENTRY_HDR + len;
    int extend = L.last_data_off != SIZE_MAX &&
                 (L.out.len - L.last_data_off) + entry <= WSP_LINK_BATCH_BYTES;
    size_t old_off = L.out.off;
    uint8_t *dst = wsp_buf_reserve(&L.out, entry + (extend ? 0 : 5));
    if (!dst) {
        ERR("out of memory queueing a %zu-byte message", len);
        return -1;
    }
    if (extend) {
        L.last_data_off -= old_off - L.out.off; /* reserve may have compacted */
    } else {
        L.last_data_off = L.out.len;
        put_be32(dst, 0);
        dst[4] = WSP_RAW_DATA;
        dst += 5;
        wsp_buf_commit(&L.out, 5);
    }
    wsp_data_entry_header(dst, id, opcode, (uint32_t)len);
    if (len) {
        memcpy(dst + WSP_DATA_ENTRY_HDR, payload, len);
    }
    wsp_buf_commit(&L.out, entry);
    put_be32(L.out.data + L.last_data_off, (uint32_t)(L.out.len - L.last_data_off - 4));
    update_congestion();
    return 0;
}

int wsp_link_congested(void) { return L.congested; }

size_t wsp_link_queued(void) { return wsp_buf_pending(&L.out); }

void wsp_link_pause_input(int paused)
{
    if (S.on_event) {
        if (S.on_pause_input) {
            S.on_pause_input(paused);
        }
        return;
    }
    if (L.input_paused == paused) {
        return;
    }
    L.input_paused = paused;
    if (L.in_wsi) {
        wsp_loop_want_read(L.in_wsi, !paused);
    }
    if (!paused && !L.eof && !L.later_eof) {
        /* commands may be waiting in the buffer already: run them from the
         * loop, never nested in the connection that freed the room */
        lws_sul_schedule(wsp_ctx, 0, &L.later, on_later, 0);
    }
}

void wsp_link_drain_blocking(void)
{
    while (wsp_buf_pending(&L.out) > 0) {
        ssize_t w = write(1, L.out.data + L.out.off, wsp_buf_pending(&L.out));
        if (w > 0) {
            wsp_buf_consume(&L.out, (size_t)w);
        } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            struct pollfd pfd = {.fd = 1, .events = POLLOUT};
            if (poll(&pfd, 1, 5000) <= 0) {
                break;
            }
        } else {
            break;
        }
    }
    wsp_buf_free(&L.out);
    wsp_buf_free(&L.in);
}

void wsp_link_close(void)
{
    if (L.in_wsi) {
        wsp_loop_want_read(L.in_wsi, 0);
    }
}

void wsp_link_set_sink(const struct wsp_link_sink *sink)
{
    if (sink) {
        S = *sink;
    } else {
        memset(&S, 0, sizeof S);
    }
}
