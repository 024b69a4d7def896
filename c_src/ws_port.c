/*
 * ws_port: the port program. WebSocket connections (TCP, TLS, RFC 6455
 * framing) for the BEAM, which talks to it over stdin/stdout.
 *
 * Started by the BEAM with no arguments:
 *   open_port({spawn_executable, "priv/ws_port"},
 *             [{packet, 4}, binary, exit_status, use_stdio])
 *
 * Wire protocol (docs/protocol.md has the full text). Each {packet,4} packet
 * holds one command or event. First byte 131: a term (term_to_binary/1).
 * Any other first byte: a raw packet. Integers in raw packets: big-endian.
 *
 *   Command  = term_to_binary(Term) | <<1, Id:32, Opcode:8, Payload/binary>>
 *   Term     = {connect, Id, Url, [Opt]}
 *            | {send, Id, text | binary | ping | pong, Payload}
 *            | {close, Id, Code, Reason}
 *            | {active, Id, true | false | once | N}
 *            | {stats, Id}
 *   Opt      = {headers, [{Name, Value}]} | {protocols, [Proto]}
 *            | {connect_timeout, Ms} | {max_message_size, Bytes}
 *            | {active, Active} | {verify, verify_peer | verify_none}
 *            | {cacertfile, Path} | {certfile, Path} | {keyfile, Path}
 *            | {server_name, Name} | {ping_interval, Ms} | {idle_timeout, Ms}
 *
 *   Event    = <<1, Entry+>> | term_to_binary(EvTerm)
 *   Entry    = <<Id:32, Opcode:8, Len:32, Payload:Len/binary>>  % one message
 *   EvTerm   = {up, Id, #{status, headers, protocol}}
 *            | {closed, Id, Reason}            % final: the id is free again
 *            | {passive, Id} | {pong, Id, RttMicros}
 *            | {error, Id, {What, Detail}}     % a command was refused
 *            | {stats, Id, #{...}}
 *   Reason   = {remote | local | protocol_error, Code, Text}
 *            | {http_status, Status, Headers} | {tls | dns | bad_handshake
 *              | invalid_url | bad_option | socket, Detail}
 *            | {dns, nxdomain} | econnrefused | econnreset | timeout | eof
 *            | idle_timeout | closed
 *
 * EOF on stdin: every connection is closed (1001) and the program exits 0.
 * Nothing on stdin can crash it: a malformed command gets {error, Id, _}.
 * Logging goes to stderr only.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "wsp_conn.h"
#include "wsp_dns.h"
#include "wsp_link.h"
#include "wsp_log.h"
#include "wsp_loop.h"
#include "wsp_proto.h"
#include "wsp_tls.h"

#ifndef WS_PORT_VERSION
#define WS_PORT_VERSION "0.1.0"
#endif

int wsp_log_level = 1;
struct lws_context *wsp_ctx;
struct lws_vhost *wsp_vhost;

static struct {
    int exiting;
    lws_usec_t exit_deadline;
    struct lws *cur_wsi;     /* the wsi whose callback is running */
    int kill_cur;            /* close cur_wsi when its callback returns */
} G;

/* ---- the loop ----------------------------------------------------------- */

static int on_lws(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len)
{
    (void)user;
    (void)in;
    (void)len;
    enum wsp_io io;
    switch (reason) {
    case LWS_CALLBACK_RAW_RX_FILE: io = WSP_IO_READABLE; break;
    case LWS_CALLBACK_RAW_WRITEABLE_FILE: io = WSP_IO_WRITABLE; break;
    case LWS_CALLBACK_RAW_CLOSE_FILE: io = WSP_IO_CLOSED; break;
    default: return 0;
    }
    struct wsp_watch *w = lws_get_opaque_user_data(wsi);
    if (!w) {
        /* detached by wsp_loop_close: lws is closing it */
        return io == WSP_IO_CLOSED ? 0 : -1;
    }
    if (io == WSP_IO_CLOSED) {
        lws_sul_cancel(&w->rearm);
        w->wsi = NULL;
    }
    struct lws *prev = G.cur_wsi;
    int prev_kill = G.kill_cur;
    G.cur_wsi = wsi;
    G.kill_cur = 0;
    int r = 0;
    switch (w->kind) {
    case WSP_W_STDIN:
    case WSP_W_STDOUT: r = wsp_link_on_io(w, wsi, io); break;
    case WSP_W_CONN: r = wsp_conn_on_io(w, wsi, io); break;
    case WSP_W_DNS: r = wsp_dns_on_io(w, wsi, io); break;
    }
    int kill = G.kill_cur;
    G.cur_wsi = prev;
    G.kill_cur = prev_kill;
    if (io == WSP_IO_CLOSED) {
        return 0;
    }
    return (kill || r < 0) ? -1 : 0;
}

struct lws *wsp_loop_adopt(int fd, struct wsp_watch *w)
{
    lws_adopt_desc_t d;
    memset(&d, 0, sizeof d);
    d.vh = wsp_vhost;
    d.type = LWS_ADOPT_RAW_FILE_DESC;
    d.fd.filefd = fd;
    d.vh_prot_name = "ws-port";
    d.opaque = w;
    w->wsi = lws_adopt_descriptor_vhost_via_info(&d);
    return w->wsi;
}

static void on_rearm(lws_sorted_usec_list_t *sul)
{
    struct wsp_watch *w = lws_container_of(sul, struct wsp_watch, rearm);
    if (w->wsi) {
        lws_callback_on_writable(w->wsi);
    }
}

void wsp_loop_want_write(struct lws *wsi)
{
    struct wsp_watch *w = lws_get_opaque_user_data(wsi);
    if (!w) {
        return;
    }
    if (wsi == G.cur_wsi) {
        /* lws clears POLLOUT after a writable callback returns: a request
         * made inside any callback of this wsi is re-made from a timer */
        lws_sul_schedule(wsp_ctx, 0, &w->rearm, on_rearm, 0);
    }
    lws_callback_on_writable(wsi);
}

void wsp_loop_want_read(struct lws *wsi, int on)
{
    lws_rx_flow_control(wsi, on ? 1 : 0);
}

void wsp_loop_close(struct wsp_watch *w)
{
    struct lws *wsi = w->wsi;
    lws_sul_cancel(&w->rearm);
    w->wsi = NULL;
    if (!wsi) {
        return;
    }
    lws_set_opaque_user_data(wsi, NULL);
    if (wsi == G.cur_wsi) {
        G.kill_cur = 1;
    } else {
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
    }
}

/* ---- commands from the BEAM ---------------------------------------------- */

static void on_packet(const uint8_t *p, size_t len)
{
    struct wsp_cmd cmd;
    const char *what = "badarg";
    char err[256];
    memset(&cmd, 0, sizeof cmd);
    if (wsp_decode_command(p, len, &cmd, &what, err, sizeof err) < 0) {
        ei_x_buff x;
        ei_x_new(&x);
        wsp_enc_error(&x, cmd.id, what, err, strlen(err));
        wsp_link_event(&x);
        ei_x_free(&x);
        wsp_cmd_free(&cmd);
        return;
    }
    if (G.exiting) {
        wsp_cmd_free(&cmd);
        return;
    }
    switch (cmd.type) {
    case WSP_CMD_CONNECT:
        wsp_conn_connect(cmd.id, cmd.connect);
        cmd.connect = NULL; /* owned by the connection now */
        break;
    case WSP_CMD_SEND:
        wsp_conn_send(cmd.id, cmd.opcode, cmd.payload, cmd.payload_len);
        break;
    case WSP_CMD_CLOSE:
        wsp_conn_close(cmd.id, cmd.close_code, cmd.reason, cmd.reason_len);
        break;
    case WSP_CMD_ACTIVE:
        wsp_conn_active(cmd.id, cmd.active, cmd.active_n);
        break;
    case WSP_CMD_STATS:
        wsp_conn_stats(cmd.id);
        break;
    }
    wsp_cmd_free(&cmd);
}

static void on_eof(void)
{
    if (G.exiting) {
        return;
    }
    G.exiting = 1;
    G.exit_deadline = wsp_now() + 2 * LWS_US_PER_SEC;
    wsp_link_close();
    wsp_conn_close_all();
}

static void on_congestion(int congested) { wsp_conn_link_congested(congested); }

/* ---- main ------------------------------------------------------------------ */

static void lws_log(int level, const char *line)
{
    (void)level;
    if (wsp_log_level >= 1) {
        fprintf(stderr, "ws_port lws: %s", line);
    }
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ws_port            run as a port program for the BEAM\n"
            "                          ({packet,4} terms on stdin/stdout)\n"
            "       ws_port --version\n"
            "       ws_port --help\n"
            "environment: WS_PORT_LOG=0..3 (errors, warnings, info, debug)\n");
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--version")) {
            printf("ws_port %s\n", WS_PORT_VERSION);
            return 0;
        }
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "port") != 0) {
            fprintf(stderr, "ws_port: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    const char *lvl = getenv("WS_PORT_LOG");
    if (lvl && *lvl >= '0' && *lvl <= '3') {
        wsp_log_level = *lvl - '0';
    }
    signal(SIGPIPE, SIG_IGN);

    /* one fd per connection: take what the hard limit allows */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max > 1048576 ? 1048576 : rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }

    lws_set_log_level(LLL_ERR, lws_log);
    static const struct lws_protocols protocols[] = {
        {"ws-port", on_lws, 0, 0, 0, NULL, 0},
        {NULL, NULL, 0, 0, 0, NULL, 0},
    };
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.pt_serv_buf_size = 256 * 1024;
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    wsp_ctx = lws_create_context(&info);
    if (!wsp_ctx) {
        ERR("cannot create the event loop");
        return 1;
    }
    info.vhost_name = "ws-port";
    wsp_vhost = lws_create_vhost(wsp_ctx, &info);
    if (!wsp_vhost) {
        ERR("cannot create the vhost");
        lws_context_destroy(wsp_ctx);
        return 1;
    }
    if (wsp_dns_init() < 0) {
        ERR("cannot start the DNS resolver (c-ares)");
        lws_context_destroy(wsp_ctx);
        return 1;
    }
    struct wsp_link_hooks hooks = {
        .on_packet = on_packet,
        .on_eof = on_eof,
        .on_congestion = on_congestion,
    };
    if (wsp_link_init(&hooks) < 0) {
        wsp_dns_shutdown();
        lws_context_destroy(wsp_ctx);
        return 1;
    }

    while (!G.exiting || (wsp_conn_count() > 0 && wsp_now() < G.exit_deadline)) {
        if (lws_service(wsp_ctx, 0) < 0) {
            break;
        }
        wsp_conn_flush_all();
        wsp_link_flush();
    }

    wsp_conn_free_all();
    wsp_link_drain_blocking();
    wsp_dns_shutdown();
    lws_context_destroy(wsp_ctx);
    wsp_tls_free_all();
    return 0;
}
