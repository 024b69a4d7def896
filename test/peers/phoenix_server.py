#!/usr/bin/python3
"""A Phoenix Channels server for ws_port's Phoenix client tests
(python3-websockets 10.4), speaking what Phoenix 1.7/1.8 speaks on the wire.

Usage: phoenix_server.py [--port N] [--tls CERT KEY] [--exit-on-eof]

Listens on 127.0.0.1 (port N, default 0) and prints ``PORT <n>``. The socket
is at /socket/websocket (any path ending in /websocket is accepted); the
query string carries ``vsn`` (``2.0.0``: serializer V2, JSON arrays
``[join_ref, ref, topic, event, payload]`` and binary frames; ``1.0.0`` or
absent: V1, JSON objects, as Phoenix's default) and the connect params.
``token=bad`` is refused with HTTP 403, as a Phoenix socket's ``connect/3``
returning ``:error``. ``heartbeat=ignore`` makes the server leave heartbeats
unanswered.

Channels: topics ``room:*`` (any other topic: join error ``unmatched
topic``). A join is refused (``{"reason": "unauthorized"}``) on
``room:forbidden`` or when its params have ``"refuse": true``; otherwise its
reply is ``{"topic", "params", "connect_params"}``; a join with
``"silent": true`` in its params gets no answer at all. Events on a joined topic
(a V2 push must carry the topic's join_ref, as Phoenix 1.8.3+ requires;
else, and for topics not joined, the reply is error ``unmatched topic``):

  echo          reply ok with the payload (binary in, binary out)
  error         reply error with the payload
  shout         broadcast "shout" with the payload to every member of the
                topic, the sender included; reply ok {}
  shout_others  the same to every member but the sender
  push_me       push "pushed" with the payload to this socket only; reply ok
  count         push "item" {"i": 1..n} n times (payload {"n": n}); reply ok
  flood         payload {"n": n, "size": s}: n broadcasts "tick" {"s": "xx.."}
                (s characters) on the topic to this socket, written straight
                to the socket as pre-built frames (for bench/), then reply ok
  sleep         reply ok after payload["ms"] ms
  noreply       no reply
  crash         the channel crashes: phx_error, no reply; the topic is no
                longer joined
  leave_me      the channel stops normally: reply ok, then phx_close
  drop_socket   the TCP connection is dropped (no close frame)
  close_socket  the WebSocket is closed with payload["code"] (default 1001)
  anything else reply error {"reason": "unhandled event"}

phx_leave: reply ok, then phx_close. Heartbeat (topic "phoenix", event
"heartbeat"): reply ok {}. Malformed input closes the socket with 1011 (the
Phoenix socket process would crash).

Every socket gets an id ``s<n>``; the server prints ``CONNECT s<n> <query>``,
``FORBIDDEN <query>``, ``JOIN s<n> <topic> <join_ref> <params json>``,
``REFUSE s<n> <topic>``, ``LEAVE s<n> <topic>``, ``EVENT s<n> <topic> <event>
<ref>``, ``HEARTBEAT s<n> <ref>``, ``CRASH s<n> <topic>``, ``CLOSED s<n>
<code>``.

Commands on stdin, one a line, each answered ``OK ...`` or ``ERR ...``:

  broadcast TOPIC EVENT JSON    to every member of TOPIC
  broadcast_binary TOPIC EVENT HEX
  crash TOPIC                   every member's channel crashes (phx_error)
  close TOPIC                   every member's channel stops (phx_close)
  raw TOPIC TEXT                send TEXT as a text frame to every member
  drop_all                      drop every socket (TCP)
  members TOPIC                 ``OK <n>``
  refuse TOPIC                  refuse every later join of TOPIC

EOF on stdin ends the server when --exit-on-eof is given.
"""

import argparse
import asyncio
import http
import json
import ssl
import sys
import urllib.parse

import websockets

PUSH, REPLY, BROADCAST = 0, 1, 2


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def dumps(value):
    return json.dumps(value, separators=(",", ":"))


class Socket:
    """One client socket: its serializer and its joined channels."""

    count = 0

    def __init__(self, ws, query):
        Socket.count += 1
        self.id = "s%d" % Socket.count
        self.ws = ws
        self.query = query
        self.v2 = query.get("vsn", "1.0.0").startswith("2.")
        self.channels = {}  # topic -> join_ref

    def connect_params(self):
        return {k: v for k, v in self.query.items() if k != "vsn"}

    async def send_message(self, join_ref, ref, topic, event, payload):
        if isinstance(payload, (bytes, bytearray)):
            if event == "phx_reply":
                raise ValueError("binary replies go through send_reply")
            if join_ref is None:
                frame = bytes([BROADCAST, len(topic), len(event)]) + \
                    topic.encode() + event.encode() + payload
            else:
                jr = str(join_ref).encode()
                frame = bytes([PUSH, len(jr), len(topic), len(event)]) + \
                    jr + topic.encode() + event.encode() + payload
            await self.ws.send(frame)
        elif self.v2:
            await self.ws.send(dumps([join_ref, ref, topic, event, payload]))
        else:
            await self.ws.send(dumps({"topic": topic, "event": event,
                                      "payload": payload, "ref": ref}))

    async def send_reply(self, join_ref, ref, topic, status, response):
        if isinstance(response, (bytes, bytearray)):
            jr, r = str(join_ref or "").encode(), str(ref).encode()
            frame = bytes([REPLY, len(jr), len(r), len(topic), len(status)]) + \
                jr + r + topic.encode() + status.encode() + response
            await self.ws.send(frame)
        else:
            await self.send_message(join_ref, ref, topic, "phx_reply",
                                    {"status": status, "response": response})


class Server:
    def __init__(self):
        self.sockets = set()
        self.members = {}  # topic -> set of Socket
        self.refused = set()  # topics refused by the `refuse` command

    def join(self, sock, topic, join_ref):
        sock.channels[topic] = join_ref
        self.members.setdefault(topic, set()).add(sock)

    def drop(self, sock, topic):
        sock.channels.pop(topic, None)
        self.members.get(topic, set()).discard(sock)

    async def broadcast(self, topic, event, payload, exclude=None):
        for member in list(self.members.get(topic, ())):
            if member is not exclude:
                try:
                    await member.send_message(None, None, topic, event, payload)
                except websockets.ConnectionClosed:
                    pass

    async def channel_exit(self, sock, topic, event):
        join_ref = sock.channels.get(topic)
        self.drop(sock, topic)
        await sock.send_message(join_ref, join_ref, topic, event, {})

    # --- one socket ---

    async def handle(self, ws, path):
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(path).query,
                                            keep_blank_values=True))
        sock = Socket(ws, query)
        self.sockets.add(sock)
        say("CONNECT %s %s" % (sock.id, urllib.parse.urlsplit(path).query))
        try:
            async for raw in ws:
                try:
                    msg = decode(sock, raw)
                except (ValueError, KeyError, IndexError, TypeError) as e:
                    say("BAD %s %s" % (sock.id, e))
                    await ws.close(1011, "malformed message")
                    break
                await self.handle_in(sock, *msg)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.sockets.discard(sock)
            for topic in list(sock.channels):
                self.drop(sock, topic)
            await ws.wait_closed()
            say("CLOSED %s %s" % (sock.id, ws.close_code))

    async def handle_in(self, sock, join_ref, ref, topic, event, payload):
        if topic == "phoenix" and event == "heartbeat":
            say("HEARTBEAT %s %s" % (sock.id, ref))
            if sock.query.get("heartbeat") != "ignore":
                await sock.send_reply(None, ref, "phoenix", "ok", {})
            return
        if event == "phx_join":
            await self.handle_join(sock, join_ref, ref, topic, payload)
            return
        joined = sock.channels.get(topic)
        if joined is None or (sock.v2 and join_ref != joined):
            say("UNMATCHED %s %s %s %s" % (sock.id, topic, event, join_ref))
            await sock.send_reply(join_ref, ref, topic, "error",
                                  {"reason": "unmatched topic"})
            return
        if event == "phx_leave":
            say("LEAVE %s %s" % (sock.id, topic))
            await sock.send_reply(joined, ref, topic, "ok", {})
            await self.channel_exit(sock, topic, "phx_close")
            return
        say("EVENT %s %s %s %s" % (sock.id, topic, event, ref))
        await self.handle_event(sock, joined, ref, topic, event, payload)

    async def handle_join(self, sock, join_ref, ref, topic, payload):
        if not topic.startswith("room:"):
            await sock.send_reply(join_ref, ref, topic, "error",
                                  {"reason": "unmatched topic"})
            return
        if topic in sock.channels:
            say("DUPLICATE %s %s" % (sock.id, topic))
            self.drop(sock, topic)
        params = payload if isinstance(payload, dict) else {}
        if params.get("silent"):
            say("SILENT %s %s" % (sock.id, topic))
            return
        if topic == "room:forbidden" or params.get("refuse") or topic in self.refused:
            say("REFUSE %s %s" % (sock.id, topic))
            await sock.send_reply(join_ref, ref, topic, "error",
                                  {"reason": "unauthorized"})
            return
        # V1 clients may send no join_ref: the join's ref is its join_ref
        jr = join_ref if join_ref is not None else ref
        self.join(sock, topic, jr)
        say("JOIN %s %s %s %s" % (sock.id, topic, jr, dumps(params)))
        await sock.send_reply(join_ref, ref, topic, "ok",
                              {"topic": topic, "params": params,
                               "connect_params": sock.connect_params()})

    async def handle_event(self, sock, join_ref, ref, topic, event, payload):
        if event == "echo":
            await sock.send_reply(join_ref, ref, topic, "ok", payload)
        elif event == "error":
            await sock.send_reply(join_ref, ref, topic, "error", payload)
        elif event in ("shout", "shout_others"):
            exclude = sock if event == "shout_others" else None
            await self.broadcast(topic, "shout", payload, exclude)
            await sock.send_reply(join_ref, ref, topic, "ok", {})
        elif event == "push_me":
            await sock.send_message(join_ref, None, topic, "pushed", payload)
            await sock.send_reply(join_ref, ref, topic, "ok", {})
        elif event == "count":
            for i in range(1, int(payload["n"]) + 1):
                await sock.send_message(join_ref, None, topic, "item", {"i": i})
            await sock.send_reply(join_ref, ref, topic, "ok", {})
        elif event == "flood":
            await self.flood(sock, topic, int(payload["n"]), int(payload.get("size", 20)))
            await sock.send_reply(join_ref, ref, topic, "ok", {})
        elif event == "sleep":
            await asyncio.sleep(int(payload.get("ms", 0)) / 1000)
            await sock.send_reply(join_ref, ref, topic, "ok", {})
        elif event == "noreply":
            pass
        elif event == "crash":
            say("CRASH %s %s" % (sock.id, topic))
            await self.channel_exit(sock, topic, "phx_error")
        elif event == "leave_me":
            await sock.send_reply(join_ref, ref, topic, "ok", {})
            await self.channel_exit(sock, topic, "phx_close")
        elif event == "drop_socket":
            say("DROP %s" % sock.id)
            sock.ws.transport.abort()
        elif event == "close_socket":
            code = int(payload.get("code", 1001)) if isinstance(payload, dict) else 1001
            await sock.ws.close(code, "closed by the server")
        else:
            await sock.send_reply(join_ref, ref, topic, "error",
                                  {"reason": "unhandled event"})

    async def flood(self, sock, topic, n, size):
        data = dumps([None, None, topic, "tick", {"s": "x" * size}]).encode()
        if len(data) < 126:
            header = bytes([0x81, len(data)])
        elif len(data) < 65536:
            header = bytes([0x81, 126]) + len(data).to_bytes(2, "big")
        else:
            header = bytes([0x81, 127]) + len(data).to_bytes(8, "big")
        frame = header + data
        transport = sock.ws.transport
        batch = 10000
        sent = 0
        while sent < n:
            k = min(batch, n - sent)
            transport.write(frame * k)
            sent += k
            while transport.get_write_buffer_size() > (4 << 20):
                await asyncio.sleep(0.001)

    # --- stdin commands ---

    async def command(self, line):
        parts = line.split(" ", 3)
        cmd = parts[0]
        if cmd == "broadcast":
            await self.broadcast(parts[1], parts[2], json.loads(parts[3]))
            return "OK"
        if cmd == "broadcast_binary":
            await self.broadcast(parts[1], parts[2], bytes.fromhex(parts[3]))
            return "OK"
        if cmd in ("crash", "close"):
            event = "phx_error" if cmd == "crash" else "phx_close"
            members = list(self.members.get(parts[1], ()))
            for member in members:
                await self.channel_exit(member, parts[1], event)
            return "OK %d" % len(members)
        if cmd == "raw":
            members = list(self.members.get(parts[1], ()))
            for member in members:
                await member.ws.send(line.split(" ", 2)[2])
            return "OK %d" % len(members)
        if cmd == "drop_all":
            n = len(self.sockets)
            for sock in list(self.sockets):
                sock.ws.transport.abort()
            return "OK %d" % n
        if cmd == "refuse":
            self.refused.add(parts[1])
            return "OK"
        if cmd == "members":
            return "OK %d" % len(self.members.get(parts[1], ()))
        return "ERR unknown command"


def decode(sock, raw):
    """-> (join_ref, ref, topic, event, payload)"""
    if isinstance(raw, bytes):
        if not sock.v2:
            raise ValueError("binary frame on a V1 socket")
        kind, jrs, rs, ts, es = raw[0], raw[1], raw[2], raw[3], raw[4]
        if kind != PUSH:
            raise ValueError("binary kind %d from a client" % kind)
        pos = 5
        fields = []
        for size in (jrs, rs, ts, es):
            fields.append(raw[pos:pos + size].decode())
            pos += size
        return (fields[0] or None, fields[1], fields[2], fields[3], raw[pos:])
    msg = json.loads(raw)
    if sock.v2:
        join_ref, ref, topic, event, payload = msg
    else:
        join_ref, ref = msg.get("join_ref"), msg.get("ref")
        topic, event, payload = msg["topic"], msg["event"], msg["payload"]
    if not isinstance(topic, str) or not isinstance(event, str):
        raise ValueError("topic and event must be strings")
    return join_ref, ref, topic, event, payload


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    ap.add_argument("--client-ca",
                    help="with --tls: require a client certificate signed by this CA")
    ap.add_argument("--exit-on-eof", action="store_true")
    ap.add_argument("--compress", action="store_true",
                    help="negotiate permessage-deflate (Phoenix's socket compress: true)")
    args = ap.parse_args()

    server = Server()
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    buf = bytearray()

    def on_stdin():
        data = sys.stdin.buffer.raw.read(65536)
        if not data:
            loop.remove_reader(sys.stdin.fileno())
            if args.exit_on_eof and not stop.done():
                stop.set_result(None)
            return
        buf.extend(data)
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            asyncio.ensure_future(run_command(line.decode().strip()))

    async def run_command(line):
        try:
            say(await server.command(line))
        except Exception as e:  # a bad command is answered, never fatal
            say("ERR %r" % (e,))

    loop.add_reader(sys.stdin.fileno(), on_stdin)

    async def process_request(path, headers):
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(path).query))
        if not urllib.parse.urlsplit(path).path.endswith("/websocket"):
            return http.HTTPStatus.NOT_FOUND, [], b"no socket here\n"
        if query.get("token") == "bad":
            say("FORBIDDEN %s" % urllib.parse.urlsplit(path).query)
            return http.HTTPStatus.FORBIDDEN, [], b"forbidden\n"
        return None

    context = None
    if args.tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls[0], args.tls[1])
        if args.client_ca:
            context.load_verify_locations(args.client_ca)
            context.verify_mode = ssl.CERT_REQUIRED

    async with websockets.serve(
        server.handle, "127.0.0.1", args.port,
        process_request=process_request,
        ssl=context,
        max_size=None,
        compression="deflate" if args.compress else None,
        ping_interval=None,
        reuse_address=True,
    ) as ws_server:
        say("PORT %d" % ws_server.sockets[0].getsockname()[1])
        await stop


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
