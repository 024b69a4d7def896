/*
 * wsp_cli: the command line client, `ws_port connect URL [options]`.
 * A top layer beside ws_port.c's port mode, using the same connection layer:
 * options are parsed into a struct wsp_connect_opts; lines read on stdin
 * (adopted into the loop as a WSP_W_CLI watch) are sent as messages; the
 * connection layer's events arrive in-process through a wsp_link sink and
 * are printed (messages on stdout, connection events on stderr).
 * wsp_conn knows nothing of it.
 */
#ifndef WSP_CLI_H
#define WSP_CLI_H

#include <stdio.h>

#include "wsp_loop.h"

/* Exit statuses of `ws_port connect` (also in the usage text and README). */
enum wsp_cli_exit {
    WSP_EXIT_OK = 0,          /* closed normally */
    WSP_EXIT_INTERNAL = 1,    /* out of memory, cannot start the loop */
    WSP_EXIT_USAGE = 2,       /* bad arguments, invalid URL or option */
    WSP_EXIT_CONNECT = 3,     /* refused, DNS, unreachable, connect timeout */
    WSP_EXIT_TLS = 4,         /* TLS handshake or certificate verification */
    WSP_EXIT_UPGRADE = 5,     /* the server answered the upgrade with an HTTP status */
    WSP_EXIT_PROTOCOL = 6,    /* bad handshake response, RFC 6455 violation */
    WSP_EXIT_RETRIES = 7,     /* --retry: the last allowed attempt failed too */
    WSP_EXIT_REMOTE_CODE = 8, /* the server closed with a code other than 1000 */
    WSP_EXIT_LOST = 9,        /* lost after the handshake: eof, reset, idle timeout */
    WSP_EXIT_INPUT = 10,      /* a stdin line was refused: not UTF-8, over --max-message-size */
    WSP_EXIT_SIGINT = 130,    /* interrupted (the connection was closed first) */
    WSP_EXIT_SIGTERM = 143,
};

/* Runs the client; argv[0] is "connect". Returns the exit status. Sets up
 * and tears down the loop itself (the caller has only ignored SIGPIPE and
 * read WS_PORT_LOG). */
int wsp_cli_main(int argc, char **argv);

/* The command line client's part of `ws_port --help`. */
void wsp_cli_usage(FILE *f);

/* Loop events for the WSP_W_CLI watch (stdin). */
int wsp_cli_on_io(struct wsp_watch *w, enum wsp_io io);

#endif
