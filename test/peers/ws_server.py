#!/usr/bin/python3
"""WebSocket test server for ws_port's end-to-end tests (python3-websockets 10.4).

Usage: ws_server.py [--tls CERT KEY] [--client-ca CAFILE] [--exit-on-eof] [--port N]
                    [--deflate JSON]

--deflate turns permessage-deflate on, with the parameters of
websockets' ServerPerMessageDeflateFactory given as a JSON object, e.g.
'{"server_max_window_bits": 10, "client_no_context_takeover": true}' ('{}':
the factory's defaults). Without it the server refuses compression.

Listens on 127.0.0.1, port 0 (the kernel picks one) or N with --port (e.g.
to come back on the same port after a restart), and prints ``PORT <n>``
on stdout once listening. The behaviour of a connection is chosen by the
request path:

  /echo                     echo every message back, same type
  /headers                  send one text message: JSON object of the request
                            headers (lower-case name -> value)
  /subprotocol              send one text message: the negotiated subprotocol
                            (server preference "chat.v2", then "chat.v1"), or
                            "" when none was agreed
  /close?code=C&reason=R    close with that code and reason
  /status?code=S            refuse the upgrade with HTTP status S and the
                            header ``WWW-Authenticate: Basic realm="ws_port"``
  /send?n=N&size=S&type=T   send N messages of S bytes (T = text | binary), then
                            read (and drop) until the client closes. Message i
                            (0-based) is S copies of one byte: for text the
                            letter "abcdefghijklmnopqrstuvwxyz"[i % 26], for
                            binary the byte i % 256. Prints ``SENT <path>``.
  /seq?n=N&interval_ms=I    send N numbered text messages "CONNID:SEQ" (SEQ
                            0, 1, ...; CONNID "<server pid>.<k>" names this
                            connection, unique across restarts), one every
                            I ms (default 0), printing ``SEQ <CONNID> <SEQ>``
                            after each one was written to the socket, then
                            ``SENT <path>``, then read (and drop) until the
                            client closes
  /drop?after_ms=M          after M ms (default 0) end the TCP connection
                            abruptly: no close frame, no TLS close_notify (a
                            lost connection), printing ``DROPPED <path>``
  /fragmented               send the text "Hello, fragmented world" as three
                            fragments, then the binary bytes(range(256)) * 4 as
                            four fragments of 256 bytes, then echo like /echo

Every connection prints ``OPEN <path>`` when it is established and
``CLOSED <path> <code> <reason>`` when it ends (code 1006 = no close frame),
so tests can see what the server saw. Any query parameter not listed above
(e.g. ``tag=...``) is ignored by the server and lets a test find its lines.

With --tls, every TLS handshake prints ``SNI <name>`` (``SNI -`` when the
client sent no server_name extension).
With --tls, every connection also prints ``TLS <path> resumed=<0|1>
version=<v>`` when it opens: whether the server resumed a TLS session
(ssl.SSLObject.session_reused), the server's own view.
--client-ca makes the server require a client certificate signed by CAFILE.
--exit-on-eof makes the server exit when its stdin reaches EOF (use it when
the parent holds stdin open, as an Erlang port does).
"""

import argparse
import asyncio
import http
import itertools
import json
import os
import ssl
import sys
import urllib.parse

import websockets

SERVER_PROTOCOLS = ["chat.v2", "chat.v1"]
FRAGMENTED_TEXT = ["Hello, ", "fragmented ", "world"]
FRAGMENTED_BINARY = [bytes(range(256))] * 4
LETTERS = "abcdefghijklmnopqrstuvwxyz"
SEQ_CONNS = itertools.count()


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def split_path(path):
    parsed = urllib.parse.urlsplit(path)
    query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
    return parsed.path, query


def select_subprotocol(client_protocols, server_protocols):
    # Server preference order, not the client's.
    for proto in server_protocols:
        if proto in client_protocols:
            return proto
    return None


async def process_request(path, request_headers):
    route, query = split_path(path)
    if route == "/status":
        status = http.HTTPStatus(int(query.get("code", "401")))
        say("REFUSED %s %d" % (path, status.value))
        return (status, [("WWW-Authenticate", 'Basic realm="ws_port"')],
                b"upgrade refused by test server\n")
    return None


async def drain(ws):
    async for _ in ws:
        pass


async def handler(ws, path):
    route, query = split_path(path)
    say("OPEN %s" % path)
    ssl_object = ws.transport.get_extra_info("ssl_object")
    if ssl_object is not None:
        say("TLS %s resumed=%d version=%s"
            % (path, int(ssl_object.session_reused), ssl_object.version()))
    try:
        if route == "/echo":
            async for msg in ws:
                await ws.send(msg)
        elif route == "/headers":
            seen = {}
            for name, value in ws.request_headers.raw_items():
                key = name.lower()
                seen[key] = seen[key] + ", " + value if key in seen else value
            await ws.send(json.dumps(seen, sort_keys=True))
            await drain(ws)
        elif route == "/subprotocol":
            await ws.send(ws.subprotocol or "")
            await drain(ws)
        elif route == "/close":
            await ws.close(int(query.get("code", "1000")), query.get("reason", ""))
        elif route == "/send":
            n = int(query.get("n", "1"))
            size = int(query.get("size", "0"))
            kind = query.get("type", "text")
            for i in range(n):
                if kind == "binary":
                    await ws.send(bytes([i % 256]) * size)
                else:
                    await ws.send(LETTERS[i % 26] * size)
            say("SENT %s" % path)
            await drain(ws)
        elif route == "/seq":
            n = int(query.get("n", "1"))
            interval = int(query.get("interval_ms", "0")) / 1000.0
            conn_id = "%d.%d" % (os.getpid(), next(SEQ_CONNS))
            for i in range(n):
                await ws.send("%s:%d" % (conn_id, i))
                say("SEQ %s %d" % (conn_id, i))
                if interval > 0:
                    await asyncio.sleep(interval)
            say("SENT %s" % path)
            await drain(ws)
        elif route == "/drop":
            await asyncio.sleep(int(query.get("after_ms", "0")) / 1000.0)
            say("DROPPED %s" % path)
            ws.transport.abort()
        elif route == "/fragmented":
            await ws.send(iter(FRAGMENTED_TEXT))
            await ws.send(iter(FRAGMENTED_BINARY))
            async for msg in ws:
                await ws.send(msg)
        else:
            await ws.close(4404, "unknown path " + route)
    except websockets.ConnectionClosed:
        pass
    finally:
        await ws.wait_closed()
        say("CLOSED %s %s %s" % (path, ws.close_code, ws.close_reason))


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    ap.add_argument("--client-ca")
    ap.add_argument("--exit-on-eof", action="store_true")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--deflate")
    ap.add_argument("--tls12", action="store_true",
                    help="TLS 1.2 at most (client certificates checked inside the handshake)")
    args = ap.parse_args()

    ssl_ctx = None
    if args.tls:
        ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ssl_ctx.load_cert_chain(args.tls[0], args.tls[1])
        if args.tls12:
            ssl_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        if args.client_ca:
            ssl_ctx.load_verify_locations(args.client_ca)
            ssl_ctx.verify_mode = ssl.CERT_REQUIRED

        def on_sni(_sock, server_name, _ctx):
            say("SNI %s" % (server_name or "-"))

        ssl_ctx.sni_callback = on_sni

    stop = asyncio.get_running_loop().create_future()
    if args.exit_on_eof:
        loop = asyncio.get_running_loop()

        def on_stdin():
            if not sys.stdin.buffer.raw.read(65536) and not stop.done():
                loop.remove_reader(sys.stdin.fileno())
                stop.set_result(None)

        loop.add_reader(sys.stdin.fileno(), on_stdin)

    extensions = None
    if args.deflate is not None:
        from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
        extensions = [ServerPerMessageDeflateFactory(**json.loads(args.deflate))]

    async with websockets.serve(
        handler, "127.0.0.1", args.port,
        ssl=ssl_ctx,
        subprotocols=SERVER_PROTOCOLS,
        select_subprotocol=select_subprotocol,
        process_request=process_request,
        max_size=None,
        max_queue=64,
        compression=None,
        extensions=extensions,
        ping_interval=None,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        say("PORT %d" % port)
        await stop


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
