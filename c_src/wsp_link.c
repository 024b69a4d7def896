#include "wsp_link.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "wsp_buf.h"
#include "wsp_log.h"
#include "wsp_proto.h"

static struct {
    struct wsp_link_hooks hooks;
    struct wsp_watch in_watch, out_watch;
    struct wsp_watch *in_w, *out_w; /* &in_watch, &out_watch while watched */
    struct wsp_buf in;          /* bytes read from stdin, not yet dispatched */
    struct wsp_buf out;         /* bytes queued for stdout */
    size_t last_data_off;       /* start of the last data packet in out, or SIZE_MAX */
    int congested;
    int want_write;
    int input_paused;
    int eof;
    int first_ok;               /* a packet has been dispatched */
    int out_fd;                 /* where events go: 1, or the events socket */
    /* Zero-copy messages (see wsp_link_splice_*): payload bytes move
     * socket -> pipe -> out_fd with splice(2), never through our memory. */
    int sp_rd, sp_wr;           /* the pipe, or -1 */
    size_t sp_cap;              /* its size in bytes */
    int sp_claimed;             /* a connection is filling it */
    size_t sp_in;               /* bytes in it */
    size_t sp_prefix;           /* of which packet header + bytes read before */
    void (*sp_preempt)(void *); /* takes the pipe back from its claimant */
    void *sp_owner;
    int sp_marked;              /* its bytes belong to the output stream, */
    size_t sp_before;           /* after this many bytes queued in out */
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
        wsp_loop_schedule(&L.later, on_later, 0);
    }
}

static void splice_pipe_open(void);

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

/* connect_events_socket: the name is in the abstract namespace, which this
 * build does not use (portable build, or not Linux): the driver is told so
 * in the hello and gives a filesystem path instead */
#define EVENTS_NO_ABSTRACT (-2)

/* Connects to the BEAM's events socket (a unix stream socket; a name that
 * starts with '@' is in the abstract namespace, else a filesystem path).
 * Returns the fd, -1, or EVENTS_NO_ABSTRACT. */
static int connect_events_socket(const char *name)
{
#if !WSP_HAVE_ABSTRACT
    if (name[0] == '@') {
        INFO("events socket '%s': abstract names not supported by this build", name);
        return EVENTS_NO_ABSTRACT;
    }
#endif
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof a.sun_path) {
        ERR("events socket name '%s' is empty or too long", name);
        return -1;
    }
    memcpy(a.sun_path, name, n);
    if (name[0] == '@') {
        a.sun_path[0] = '\0';
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        ERR("events socket: %s", strerror(errno));
        return -1;
    }
    /* never blocks: a listen queue filled by someone else (the name can be
     * seen in /proc/net/unix) costs at most a second, then stdout is used */
    socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    int r = -1;
    for (int tries = 0; tries < 50; tries++) {
        r = connect(fd, (struct sockaddr *)&a, alen);
        if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
            break;
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (r < 0) {
        WARN("events socket '%s': connect: %s", name, strerror(errno));
        close(fd);
        return -1;
    }
    /* room for a few large messages in flight: fewer wake-ups both sides */
    int sz = 4 * 1024 * 1024;
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    return fd;
}

/* The first packet on stdout says where every later event goes: {hello,
 * socket}, {hello, stdout}, or {hello, no_abstract} (events on stdout; the
 * driver asked for an abstract name this build cannot use). */
static int say_hello(const char *where)
{
    ei_x_buff x;
    if (ei_x_new_with_version(&x) < 0) {
        return -1;
    }
    int bad = ei_x_encode_tuple_header(&x, 2) < 0 || ei_x_encode_atom(&x, "hello") < 0 ||
              ei_x_encode_atom(&x, where) < 0;
    uint8_t hdr[4];
    put_be32(hdr, (uint32_t)x.index);
    struct iovec iov[2] = {{hdr, 4}, {x.buff, (size_t)x.index}};
    size_t total = 4 + (size_t)x.index, done = 0;
    while (!bad && done < total) {
        /* stdout is still blocking here */
        ssize_t w = writev(1, iov, 2);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            bad = 1;
            break;
        }
        done += (size_t)w;
        for (int i = 0; i < 2; i++) {
            size_t k = (size_t)w < iov[i].iov_len ? (size_t)w : iov[i].iov_len;
            iov[i].iov_base = (uint8_t *)iov[i].iov_base + k;
            iov[i].iov_len -= k;
            w -= (ssize_t)k;
        }
    }
    ei_x_free(&x);
    return bad ? -1 : 0;
}

int wsp_link_init(const struct wsp_link_hooks *hooks, const char *events_socket)
{
    L.hooks = *hooks;
    L.sp_rd = L.sp_wr = -1;
    L.out_fd = 1;
    if (events_socket) {
        int fd = connect_events_socket(events_socket);
        const char *where = fd >= 0 ? "socket" : fd == EVENTS_NO_ABSTRACT ? "no_abstract" : "stdout";
        if (say_hello(where) < 0) {
            ERR("cannot write to stdout: %s", strerror(errno));
            if (fd >= 0) {
                close(fd);
            }
            return -1;
        }
        if (fd >= 0) {
            L.out_fd = fd;
        }
    }
    L.last_data_off = SIZE_MAX;
    L.in_watch.kind = WSP_W_STDIN;
    L.out_watch.kind = WSP_W_STDOUT;
    for (int k = 0; k < 2; k++) {
        int fd = k == 0 ? 0 : L.out_fd;
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
            ERR("cannot make fd %d non-blocking: %s", fd, strerror(errno));
            return -1;
        }
    }
#if WSP_HAVE_PIPE_SZ
    /* a bigger pipe means fewer wake-ups of the BEAM; fine to fail */
    if (L.out_fd == 1) {
        (void)fcntl(1, F_SETPIPE_SZ, 1024 * 1024);
    }
#endif
    /* lws closes adopted fds on exit; give it duplicates */
    int in_fd = dup(0), out_fd = dup(L.out_fd);
    if (in_fd < 0 || out_fd < 0) {
        ERR("dup: %s", strerror(errno));
        return -1;
    }
    splice_pipe_open();
    L.in_w = wsp_loop_adopt(in_fd, &L.in_watch);
    L.out_w = wsp_loop_adopt(out_fd, &L.out_watch);
    if (!L.in_w || !L.out_w) {
        ERR("cannot adopt stdin/stdout into the event loop");
        return -1;
    }
    wsp_loop_want_read(L.out_w, 0);
    return 0;
}

/* Whether the bytes read so far cannot begin the BEAM's commands (only
 * asked before the first packet, and only with on_not_protocol set). */
static int not_protocol(int at_eof)
{
    size_t have = wsp_buf_pending(&L.in);
    const uint8_t *p = L.in.data + L.in.off;
    if (have >= 4) {
        uint32_t n = get_be32(p);
        if (n == 0 || n > WSP_LINK_MAX_PACKET) {
            return 1;
        }
        if (have >= 5 && p[4] != 131 && p[4] != 1) {
            return 1;
        }
        return at_eof && have - 4 < n;
    }
    return at_eof && have > 0;
}

static void refuse_input(void)
{
    size_t have = wsp_buf_pending(&L.in);
    L.eof = 1;
    wsp_link_close();
    L.hooks.on_not_protocol(L.in.data + L.in.off, have < 8 ? have : 8);
    wsp_buf_consume(&L.in, have);
}

static void dispatch_input(void)
{
    if (!L.first_ok && L.hooks.on_not_protocol && not_protocol(0)) {
        refuse_input();
        return;
    }
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
        L.first_ok = 1;
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
        ssize_t r = read(wsp_loop_fd(L.in_w), dst, room);
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
        if (!L.first_ok && L.hooks.on_not_protocol && not_protocol(1)) {
            refuse_input();
            return -1;
        }
        L.eof = 1;
        L.hooks.on_eof();
        return -1;
    }
    wsp_buf_shrink(&L.in, 1024 * 1024);
    return 0;
}

static size_t queued_total(void);

static void update_congestion(void)
{
    /* a spliced message that could not go out at once counts as full: the
     * next large message then waits in its socket for the pipe instead of
     * being read (copied) the ordinary way */
    size_t q = queued_total();
    if (!L.congested && (q >= WSP_LINK_HIGH_WATER || L.sp_marked)) {
        L.congested = 1;
        L.hooks.on_congestion(1);
    } else if (L.congested && q <= WSP_LINK_LOW_WATER && !L.sp_marked) {
        L.congested = 0;
        L.hooks.on_congestion(0);
    }
}

/* After a write or splice to out_fd failed (errno): 1 to try again (EINTR),
 * 0 when out_fd is full, -1 when the BEAM is gone. */
static int write_failure(void)
{
    if (errno == EINTR) {
        return 1;
    }
    return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
}

/* Moves pipe bytes that are due to out_fd. Returns 1 if all went, 0 if
 * out_fd is full, -1 if the BEAM is gone. */
static int splice_out(void)
{
#if !WSP_HAVE_SPLICE
    /* never: without splice there is no pipe (splice_pipe_open) */
    return -1;
#else
    while (L.sp_in > 0) {
        ssize_t w = splice(L.sp_rd, NULL, L.out_fd, NULL, L.sp_in,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (w > 0) {
            L.sp_in -= (size_t)w;
            continue;
        }
        int f = w < 0 ? write_failure() : -1;
        if (f <= 0) {
            return f;
        }
    }
    L.sp_marked = 0;
    return 1;
#endif
}

/* Writes what is queued, in order: out up to the splice mark, the pipe's
 * bytes, the rest of out. Returns 1 when all is written, 0 when out_fd is
 * full, -1 when the BEAM is gone. */
static int flush_some(void)
{
    for (;;) {
        size_t pending = wsp_buf_pending(&L.out);
        if (L.sp_marked && L.sp_before == 0) {
            int r = splice_out();
            if (r <= 0) {
                return r;
            }
            continue;
        }
        if (pending == 0) {
            return 1;
        }
        size_t n = L.sp_marked ? L.sp_before : pending;
        ssize_t w = write(L.out_fd, L.out.data + L.out.off, n);
        if (w > 0) {
            wsp_buf_consume(&L.out, (size_t)w);
            if (L.sp_marked) {
                L.sp_before -= (size_t)w;
            }
            if (L.last_data_off != SIZE_MAX && L.out.off > L.last_data_off) {
                L.last_data_off = SIZE_MAX; /* partly written: no more appends */
            }
            continue;
        }
        int f = w < 0 ? write_failure() : -1;
        if (f <= 0) {
            return f;
        }
    }
}

static size_t queued_total(void) { return wsp_buf_pending(&L.out) + (L.sp_marked ? L.sp_in : 0); }

void wsp_link_flush(void)
{
    int r = flush_some();
    if (r == 0 && !L.want_write && L.out_w) {
        L.want_write = 1;
        wsp_loop_want_write(L.out_w);
    }
    if (r < 0) {
        /* EPIPE or worse: the BEAM is gone (handled from the loop: this
         * may run in the middle of a connection's parsing) */
        wsp_buf_consume(&L.out, wsp_buf_pending(&L.out));
        L.sp_marked = 0;
        eof_later();
    }
    if (wsp_buf_pending(&L.out) == 0) {
        L.last_data_off = SIZE_MAX;
        wsp_buf_shrink(&L.out, 4 * 1024 * 1024);
    }
    update_congestion();
}

void wsp_link_flush_batched(void)
{
    if (queued_total() >= WSP_LINK_FLUSH_BYTES || L.sp_marked) {
        wsp_link_flush();
    }
}

int wsp_link_on_io(struct wsp_watch *w, enum wsp_io io)
{
    if (w == &L.in_watch) {
        if (io == WSP_IO_READABLE) {
            return read_input();
        }
        if (io == WSP_IO_CLOSED) {
            L.in_w = NULL;
            if (!L.eof && !L.first_ok && L.hooks.on_not_protocol && not_protocol(1)) {
                refuse_input();
            } else if (!L.eof) {
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
        L.out_w = NULL;
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

/* The start of a packet holding one message of len bytes. */
#define DATA_PACKET_HDR (5 + WSP_DATA_ENTRY_HDR)
static void data_packet_header(uint8_t *hdr, uint32_t id, int opcode, size_t len)
{
    put_be32(hdr, (uint32_t)(1 + WSP_DATA_ENTRY_HDR + len));
    hdr[4] = WSP_RAW_DATA;
    wsp_data_entry_header(hdr + 5, id, opcode, (uint32_t)len);
}

/* A large message with nothing queued before it goes out with one writev
 * straight from where it lies (the receive buffer): no copy into the queue.
 * Returns 1 if it was handled (written, or the rest queued), 0 otherwise. */
static int data_direct(uint32_t id, int opcode, const uint8_t *payload, size_t len)
{
    if (len >= WSP_LINK_DIRECT_BYTES && wsp_buf_pending(&L.out) > 0 && !L.sp_marked && !L.eof) {
        /* small messages batched before it (wsp_link_flush_batched): out
         * with them first, if the socket takes them */
        wsp_link_flush();
    }
    if (len < WSP_LINK_DIRECT_BYTES || wsp_buf_pending(&L.out) > 0 || L.sp_marked || L.eof) {
        return 0;
    }
    uint8_t hdr[DATA_PACKET_HDR];
    data_packet_header(hdr, id, opcode, len);
    struct iovec iov[2] = {{hdr, sizeof hdr}, {(void *)payload, len}};
    ssize_t w;
    do {
        w = writev(L.out_fd, iov, 2);
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

size_t wsp_link_queued(void) { return queued_total(); }

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
    if (L.in_w) {
        wsp_loop_want_read(L.in_w, !paused);
    }
    if (!paused && !L.eof && !L.later_eof) {
        /* commands may be waiting in the buffer already: run them from the
         * loop, never nested in the connection that freed the room */
        wsp_loop_schedule(&L.later, on_later, 0);
    }
}

void wsp_link_drain_blocking(void)
{
    for (;;) {
        int r = flush_some();
        if (r != 0) {
            break;
        }
        struct pollfd pfd = {.fd = L.out_fd, .events = POLLOUT};
        if (poll(&pfd, 1, 5000) <= 0) {
            break;
        }
    }
    wsp_buf_free(&L.out);
    wsp_buf_free(&L.in);
}

void wsp_link_close(void)
{
    if (L.in_w) {
        wsp_loop_want_read(L.in_w, 0);
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

/* ---- zero-copy messages ---------------------------------------------- */

static void splice_pipe_open(void)
{
    L.sp_rd = L.sp_wr = -1;
#if WSP_HAVE_SPLICE
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
        return;
    }
    (void)fcntl(fds[1], F_SETPIPE_SZ, (int)WSP_LINK_SPLICE_MAX);
    int cap = fcntl(fds[1], F_GETPIPE_SZ);
    if (cap <= 0) {
        close(fds[0]);
        close(fds[1]);
        return;
    }
    L.sp_rd = fds[0];
    L.sp_wr = fds[1];
    L.sp_cap = (size_t)cap;
#endif
    /* else no pipe: wsp_link_splice_room is 0, every message is read into
     * the connection's buffer and written to the BEAM from there */
}

size_t wsp_link_splice_room(void)
{
    if (L.sp_claimed && !L.sp_marked && L.sp_preempt) {
        /* claimed by a connection waiting for the rest of its message
         * (its server may be slow, or stalled): it finishes that message
         * the ordinary way, and the pipe goes to whoever can use it now */
        void (*fn)(void *) = L.sp_preempt;
        L.sp_preempt = NULL;
        fn(L.sp_owner);
    }
    if (S.on_data || L.eof || L.sp_claimed || L.sp_in > 0 || L.out_w == NULL) {
        return 0;
    }
    if (L.sp_rd < 0) {
        return 0;
    }
    return L.sp_cap;
}

int wsp_link_splice_claim(uint32_t id, int opcode, const uint8_t *have, size_t nhave,
                          size_t len, void (*preempt)(void *), void *owner)
{
    /* the packet header and the bytes read already go first, into the
     * pipe: the message then leaves in one piece, with one splice */
    uint8_t hdr[DATA_PACKET_HDR];
    data_packet_header(hdr, id, opcode, len);
    struct iovec iov[2] = {{hdr, sizeof hdr}, {(void *)have, nhave}};
    size_t want = sizeof hdr + nhave;
    ssize_t w;
    do {
        w = writev(L.sp_wr, iov, nhave ? 2 : 1);
    } while (w < 0 && errno == EINTR);
    L.sp_claimed = 1;
    if (w > 0) {
        L.sp_in = (size_t)w;
    }
    if (w < 0 || (size_t)w != want) {
        wsp_link_splice_abort();
        return -1;
    }
    L.sp_prefix = want;
    L.sp_preempt = preempt;
    L.sp_owner = owner;
    return 0;
}

ssize_t wsp_link_splice_in(int fd, size_t n)
{
#if !WSP_HAVE_SPLICE
    /* never called: wsp_link_splice_room is always 0 */
    (void)fd;
    (void)n;
    errno = ENOSYS;
    return WSP_SPLICE_ERROR;
#else
    for (;;) {
        ssize_t r = splice(fd, NULL, L.sp_wr, NULL, n, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (r > 0) {
            L.sp_in += (size_t)r;
            return r;
        }
        if (r == 0) {
            return 0;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            /* the socket is empty, or the pipe has no slot left (each slot
             * holds one piece of a socket buffer, however small) */
            struct pollfd pfd = {.fd = L.sp_wr, .events = POLLOUT};
            return poll(&pfd, 1, 0) == 1 ? WSP_SPLICE_AGAIN : WSP_SPLICE_FULL;
        }
        return WSP_SPLICE_ERROR;
    }
#endif
}

/* Reads and drops n bytes of the pipe; -1 if it cannot. */
static int pipe_skip(size_t n)
{
    uint8_t sink[16 * 1024];
    while (n > 0) {
        ssize_t r = read(L.sp_rd, sink, n < sizeof sink ? n : sizeof sink);
        if (r > 0) {
            n -= (size_t)r;
            L.sp_in -= (size_t)r;
        } else if (!(r < 0 && errno == EINTR)) {
            return -1;
        }
    }
    return 0;
}

int wsp_link_splice_take(struct wsp_buf *into)
{
    int r = pipe_skip(L.sp_prefix);
    while (r == 0 && L.sp_in > 0) {
        uint8_t *dst = wsp_buf_reserve(into, L.sp_in);
        ssize_t n = dst ? read(L.sp_rd, dst, L.sp_in) : -1;
        if (n > 0) {
            wsp_buf_commit(into, (size_t)n);
            L.sp_in -= (size_t)n;
        } else if (!(n < 0 && errno == EINTR)) {
            r = -1;
        }
    }
    if (r < 0) {
        wsp_link_splice_abort();
        return -1;
    }
    L.sp_claimed = 0;
    L.sp_preempt = NULL;
    return 0;
}

void wsp_link_splice_abort(void)
{
    if (L.sp_in > 0 && pipe_skip(L.sp_in) < 0) {
        /* cannot empty it: start over with a new pipe */
        close(L.sp_rd);
        close(L.sp_wr);
        splice_pipe_open();
    }
    L.sp_in = 0;
    L.sp_claimed = 0;
    L.sp_preempt = NULL;
}

void wsp_link_splice_commit(void)
{
    L.sp_claimed = 0;
    L.sp_preempt = NULL;
    L.sp_marked = 1;
    L.sp_before = wsp_buf_pending(&L.out);
    L.last_data_off = SIZE_MAX;
    wsp_link_flush();
}
