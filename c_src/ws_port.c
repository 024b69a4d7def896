/*
 * ws_port: the port program. WebSocket connections (TCP, TLS, RFC 6455
 * framing) for the BEAM, which talks to it over stdin/stdout.
 *
 * Started by the BEAM with the argument "port" (ws_port_driver always
 * passes it):
 *   open_port({spawn_executable, "priv/ws_port"},
 *             [{args, ["port"]}, {packet, 4}, binary, exit_status, use_stdio])
 * Without any argument it is the port program too, unless stdin is a
 * terminal or does not start with a {packet,4} command (a person, or a pipe
 * of text): then it says how to use it on stderr and exits 2.
 * `ws_port connect URL [options]` is a command line client instead
 * (wsp_cli.c; `ws_port --help`).
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
 *            | {stats, Id}                      % Id 0: the program's figures
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
 *            | {stats, Id, #{...}}              % Id 0: #{connections, lingering}
 *   Reason   = {remote | local | protocol_error, Code, Text}
 *            | {http_status, Status, Headers} | {tls | dns | bad_handshake
 *              | invalid_url | bad_option | socket, Detail}
 *            | {dns, nxdomain} | econnrefused | econnreset | timeout | eof
 *            | idle_timeout | closed
 *
 * With `--events-socket NAME` the program connects to that unix stream
 * socket (a NAME starting with '@' is in the abstract namespace, else a
 * filesystem path), writes {hello, socket} on stdout, and sends every later
 * event on the socket instead ({packet,4} framing as on stdout); {hello,
 * stdout} if it could not connect; {hello, no_abstract} for an '@' NAME in
 * a build without abstract names (wsp_compat.h: not Linux, or
 * WSP_PORTABLE), whose events then come on stdout. The BEAM reads the socket with inet's driver, which reads
 * large packets straight into one binary (the spawn driver behind stdout
 * copies them three times).
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
#include <sys/stat.h>
#include <sys/resource.h>
#include <unistd.h>

#include "wsp_cli.h"
#include "wsp_compat.h"
#if WSP_HAVE_EPOLL
#include <sys/epoll.h>
#endif
#include "wsp_conn.h"
#include "wsp_optcache.h"
#include "wsp_osslmem.h"
#include "wsp_dns.h"
#include "wsp_link.h"
#include "wsp_log.h"
#include "wsp_loop.h"
#include "wsp_proto.h"
#include "wsp_tls.h"

#ifndef WS_PORT_VERSION
#define WS_PORT_VERSION "0.1.0"
#endif

static struct {
    int exiting;
    int status;           /* the exit status */
    lws_usec_t exit_deadline;
} G;

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
    case WSP_CMD_CONNECT: {
        /* connections made alike share one copy of their options */
        size_t off = 0;
        if (wsp_optcache_connect_key(p, len, &off) == 0) {
            cmd.connect = wsp_optcache_intern(cmd.connect, p + off, len - off);
        }
        wsp_conn_connect(cmd.id, cmd.connect);
        cmd.connect = NULL; /* owned by the connection now */
        break;
    }
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
    case WSP_CMD_RECONNECT:
        wsp_conn_reconnect(cmd.id, cmd.delay_ms);
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

/* Started without arguments by a person rather than by the BEAM (which
 * passes `port`): a short note on how to use it, on stderr; exit 2. */
static void not_for_people(const char *why)
{
    fprintf(stderr,
            "ws_port: %s.\n"
            "This is the BEAM's port program ({packet,4} terms on stdin, started by\n"
            "the ws_port application). The command line client is:\n"
            "  ws_port connect URL [options]     e.g. ws_port connect ws://127.0.0.1:8080/\n"
            "ws_port --help for the options.\n",
            why);
}

static void on_not_protocol(const uint8_t *head, size_t n)
{
    char why[96] = "stdin does not start with a {packet,4} command";
    size_t k = strlen(why);
    if (n > 0) {
        k += (size_t)snprintf(why + k, sizeof why - k, " (it starts with bytes");
        for (size_t i = 0; i < n && k + 4 < sizeof why; i++) {
            k += (size_t)snprintf(why + k, sizeof why - k, " %02x", head[i]);
        }
        snprintf(why + k, sizeof why - k, ")");
    }
    not_for_people(why);
    G.exiting = 1;
    G.status = 2;
}

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
            "usage: ws_port [port] [--events-socket NAME]\n"
            "                          run as a port program for the BEAM\n"
            "                          ({packet,4} terms on stdin/stdout; with\n"
            "                          --events-socket, events go to that unix\n"
            "                          socket, '@' first = abstract namespace)\n"
            "       ws_port --version\n"
            "       ws_port --build   'linux' (splice, epoll, abstract sockets) or\n"
            "                         'portable' (make WSP_PORTABLE=1, macOS, BSDs)\n"
            "       ws_port --help\n");
    wsp_cli_usage(f);
    fprintf(f, "\nenvironment: WS_PORT_LOG=0..3 (errors, warnings, info, debug)\n"
               "             WS_PORT_LOOP=poll (port: lws' poll(2) loop instead of libuv)\n"
               "             WS_PORT_OPENSSL_MALLOC=libc (OpenSSL allocates with malloc)\n");
}

/* Whether epoll can watch fd (pipes and sockets can; files and /dev/null
 * cannot, and libuv aborts on them). Portable build: pipes and sockets (what
 * both kqueue and epoll take). */
static int epollable(int fd)
{
#if !WSP_HAVE_EPOLL
    struct stat st;
    return fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
#else
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        return 0;
    }
    struct epoll_event ev = {.events = EPOLLIN};
    int ok = epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0;
    close(ep);
    return ok;
#endif
}

/* libuv (epoll, kqueue) unless WS_PORT_LOOP=poll, or stdin/stdout are not pollable
 * by epoll: one wake-up then costs the same with 10 or 10,000 connections */
static enum wsp_loop_kind loop_kind(void)
{
    const char *v = getenv("WS_PORT_LOOP");
    if ((v && !strcmp(v, "poll")) || !epollable(0) || !epollable(1)) {
        return WSP_LOOP_POLL;
    }
    return WSP_LOOP_EPOLL;
}

static void set_log_level(void)
{
    const char *lvl = getenv("WS_PORT_LOG");
    if (lvl && *lvl >= '0' && *lvl <= '3') {
        wsp_log_level = *lvl - '0';
    }
}

int main(int argc, char **argv)
{
    /* before anything allocates through OpenSSL (lws' context does) */
    (void)wsp_osslmem_install();
    if (argc >= 2 && !strcmp(argv[1], "connect")) {
        set_log_level();
        signal(SIGPIPE, SIG_IGN);
        return wsp_cli_main(argc - 1, argv + 1);
    }
    const char *events_socket = NULL;
    int explicit_port = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--events-socket") && i + 1 < argc) {
            events_socket = argv[++i];
            continue;
        }
        if (!strcmp(argv[i], "--version")) {
            printf("ws_port %s\n", WS_PORT_VERSION);
            return 0;
        }
        if (!strcmp(argv[i], "--build")) {
            /* which OS paths this binary uses (wsp_compat.h) */
            printf("%s\n", WSP_BUILD_FLAVOUR);
            return 0;
        }
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "port")) {
            explicit_port = 1;
            continue;
        }
        if (!strncmp(argv[i], "ws://", 5) || !strncmp(argv[i], "wss://", 6)) {
            fprintf(stderr, "ws_port: a URL needs the connect command:\n  ws_port connect %s\n",
                    argv[i]);
        } else {
            fprintf(stderr, "ws_port: unknown argument '%s'\n", argv[i]);
        }
        fprintf(stderr, "ws_port --help for the usage.\n");
        return 2;
    }
    /* The driver always passes `port`. Without it, a terminal on stdin or
     * input that is not {packet,4} commands means a person: say how to use
     * the program instead of answering in binary terms. */
    if (!explicit_port && isatty(0)) {
        not_for_people("stdin is a terminal");
        return 2;
    }
    set_log_level();
    signal(SIGPIPE, SIG_IGN);

    /* one fd per connection: take what the hard limit allows */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max > 1048576 ? 1048576 : rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }

    lws_set_log_level(LLL_ERR, lws_log);
    if (wsp_loop_init(loop_kind()) < 0) {
        ERR("cannot create the event loop");
        return 1;
    }
    if (wsp_dns_init() < 0) {
        ERR("cannot start the DNS resolver (c-ares)");
        wsp_loop_destroy();
        return 1;
    }
    struct wsp_link_hooks hooks = {
        .on_packet = on_packet,
        .on_eof = on_eof,
        .on_congestion = on_congestion,
        .on_not_protocol = explicit_port ? NULL : on_not_protocol,
    };
    if (wsp_link_init(&hooks, events_socket) < 0) {
        wsp_dns_shutdown();
        wsp_loop_destroy();
        return 1;
    }

    while (!G.exiting || (wsp_conn_count() > 0 && wsp_now() < G.exit_deadline)) {
        if (wsp_loop_run_once() < 0) {
            break;
        }
        wsp_conn_flush_all();
        wsp_link_flush();
    }

    wsp_conn_free_all();
    wsp_link_drain_blocking();
    wsp_dns_shutdown();
    wsp_loop_destroy();
    wsp_tls_free_all();
    return G.status;
}
