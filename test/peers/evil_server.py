#!/usr/bin/python3
"""A malicious WebSocket server for ws_port's hardening tests.

Usage: evil_server.py [--exit-on-eof] [--tls CERT KEY]

Plain sockets driven by asyncio (loop.sock_*): the HTTP upgrade is answered by hand (the
Sec-WebSocket-Accept is computed here) and frames are written byte for byte,
so the server can send what no WebSocket library would. Listens on
127.0.0.1 port 0 and prints ``PORT <n>`` once listening. The behaviour is
chosen by the request path (the query string is kept in the logged path, so
a ``tag=...`` parameter lets a test find its own lines):

  /len63                  a binary frame header announcing 2^63-1 bytes,
                          then a few payload bytes
  /over_max?size=N        one binary message of N bytes, in one frame
  /endless_fragments?size=S
                          a text message as non-final fragments of S bytes
                          (default 256), sent until the client closes;
                          bounded: at most 200000 fragments or 60 s
  /ping_flood?n=N         N (default 5000) pings of 125 bytes as fast as
                          possible, then the text message "flood done"; then
                          waits for the client. Prints ``PONGS <path> <k>``
                          (pongs read back so far) when the client closes.
                          With read=0 the server reads nothing until hold_s
                          seconds (default 10) after the flood.
  /bad_close_1byte        a close frame whose payload is one byte
  /bad_close_code         a close frame with code 1005 (never valid on the
                          wire)
  /bad_accept             101 with a wrong Sec-WebSocket-Accept
  /endless_headers?interval_ms=I
                          "HTTP/1.1 101" then header lines forever (every I
                          ms, default 0 = as fast as the socket takes them),
                          never the empty line; bounded: 60 s
  /huge_headers           one 100 KiB header line, then the end of the head
  /trickle_headers?gap_us=G&every=E&max=M
                          "HTTP/1.1 101 Switching Protocols" then short header
                          lines ("h123: v"), never the empty line, ONE BYTE PER
                          send(2) (TCP_NODELAY, from a thread with a blocking
                          socket, so each byte is its own segment), G us
                          (default 0) of sleep after every E bytes (default
                          1); at most M bytes (default 70000, past the
                          client's 64 KiB limit), then waits for the client to
                          close. Prints ``TRICKLED <path> <n>`` every 4096
                          bytes and ``SENT <path> <n>`` at the end.
  /too_many_headers?n=N   a valid 101 with N (default 120) small extra headers
  /http10_101             a valid 101 except its version: HTTP/1.0
  /interim_101?codes=C    interim responses with the codes C (comma
                          separated, default 100) before a valid 101, in one
                          write each; then echo
  /trickle                a valid handshake, then a text frame of 1000 bytes
                          one byte per second (bounded: 60 s)
  /sizes?sizes=A,B,..     messages of random bytes (binary; a size written
                          tN is a text message of N random ASCII letters),
                          in one frame each; prints ``MSG <path> <i> <sha256>``
                          per message. chunk=C: written C bytes at a time
                          (TCP_NODELAY, a short pause every piece), so they
                          arrive in many small segments. cut=K: then the
                          header and the first K bytes of a binary message
                          announced as 2K bytes, and a reset (SO_LINGER 0).
                          stall=K: the same half message, then nothing
                          (the connection stays open).
                          Then waits for the client's close.
  /after_close?then=T     a valid handshake; then the client's frames are
                          read until its close frame, which is NOT answered:
                          T=rst resets the connection (SO_LINGER 0), T=fin
                          closes it (FIN, no close frame), T=garbage sends a
                          frame with the reserved opcode 3; then waits for
                          the client's EOF (bounded)
  /close_frame?code=C&reason=R&times=K
                          a valid handshake, then a close frame with code C
                          and reason R (C=none: an empty close payload); then
                          waits for the client's close or EOF. With times=K,
                          only the first K requests of this exact path get
                          that; later ones are refused with HTTP 401
  /flood_close?first=F&n=N&size=S
                          a valid handshake, F (default 3) binary messages of
                          S bytes (default 16384); then, once the client's
                          close frame came, N more (default 2000) and only
                          then the close reply (so the reply queues behind
                          N * S bytes); then waits for the client's EOF.
                          Prints ``CLOSEDONE <path> clean`` when every
                          message and the reply were written and the client
                          then ended the TCP connection normally, else
                          ``CLOSEDONE <path> unclean <why>``
  anything else           a valid handshake, then echo (text and binary)

Printed on stdout:
  OPEN <path>             the request head was read
  SENT <path> <n>         the malicious part is done (n: frames or lines sent)
  CLOSE <path> <code>     the client's close frame: its code, "none" for an
                          empty payload, or 1006 when the TCP connection ended
                          without a close frame
  PONGS <path> <k>        /ping_flood only
  CLOSEDONE <path> ...    /flood_close only

--exit-on-eof: exit when stdin reaches EOF (an Erlang port holds it open).
--tls CERT KEY: serve TLS (wss://) instead, each connection from a thread;
only /trickle_headers then (each byte in its own TLS record, so the client
reads one byte per SSL_read however many wait in its socket); other paths
get a 404.
Only 127.0.0.1 is ever used.

permessage-deflate (RFC 7692) cases, /pmd?case=C (the handshake answers
``Sec-WebSocket-Extensions: permessage-deflate`` unless said otherwise):
  rsv1_ping               a ping frame with RSV1 set
  rsv1_cont               a compressed text message whose continuation
                          frame also has RSV1
  truncated               a compressed text message ("Hello" deflated) cut
                          short: its last 4 bytes are missing
  bomb&size=N             one compressed binary message that inflates to N
                          zero bytes (default 1 GiB; about N/1000 bytes on
                          the wire), then the text message "after"
  answer&ext=E            answers with ``Sec-WebSocket-Extensions: E``
                          (E url-encoded) whatever the client offered, then
                          echoes
  hello                   the compressed "Hello" of RFC 7692 7.2.3.1 twice
                          (the second time with the shared window, 7.2.3.2),
                          then echoes
Each prints ``SENT <path>`` once its data is written.
"""

import argparse
import asyncio
import base64
import hashlib
import os
import ssl
import socket
import struct
import sys
import threading
import time
import urllib.parse
import zlib

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD = 64 * 1024
BOUND_SECONDS = 60

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def accept_for(key):
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def frame_header(opcode, n, fin=True):
    b0 = (0x80 if fin else 0) | opcode
    if n <= 125:
        return bytes([b0, n])
    if n <= 0xFFFF:
        return bytes([b0, 126]) + struct.pack("!H", n)
    return bytes([b0, 127]) + struct.pack("!Q", n)


def frame(opcode, payload=b"", fin=True):
    return frame_header(opcode, len(payload), fin) + payload


class Conn:
    """One client connection on a plain non-blocking socket. Reads and writes
    are independent: when a write fails (the client closed with our data
    unread, so the kernel answered with RST), what the client sent before
    leaving is still in the receive queue and the reader gets it."""

    def __init__(self, sock, path=None):
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.buf = b""
        self.path = path
        self.closed = asyncio.Event()   # client close frame or EOF seen
        self.pongs = 0
        self.logged = False
        self.write_failed = False

    def log_close(self, code):
        if not self.logged:
            self.logged = True
            say("CLOSE %s %s" % (self.path, code))

    async def write(self, data):
        try:
            await self.loop.sock_sendall(self.sock, data)
        except (ConnectionError, OSError):
            self.write_failed = True
            raise

    async def recv_some(self):
        data = await self.loop.sock_recv(self.sock, 65536)
        if not data:
            raise asyncio.IncompleteReadError(self.buf, None)
        self.buf += data

    async def readexactly(self, n):
        while len(self.buf) < n:
            await self.recv_some()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    async def read_head(self):
        """The request head (str), or None if it is missing or too big."""
        try:
            while b"\r\n\r\n" not in self.buf:
                if len(self.buf) > MAX_HEAD:
                    return None
                await self.recv_some()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            return None
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        return head.decode("latin-1")

    async def read_frames(self, echo=False):
        """Reads the client's frames until its close frame or EOF."""
        try:
            while True:
                h = await self.readexactly(2)
                n = h[1] & 0x7F
                if n == 126:
                    n = struct.unpack("!H", await self.readexactly(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", await self.readexactly(8))[0]
                mask = await self.readexactly(4) if h[1] & 0x80 else b"\0\0\0\0"
                if n > 16 * 1024 * 1024:
                    raise ValueError("client frame too big")
                data = await self.readexactly(n)
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
                op = h[0] & 0x0F
                if op == OP_CLOSE:
                    code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else "none"
                    self.log_close(code)
                    # let a sending loop stop first: it may be blocked on a
                    # client that no longer reads (it lingers after its
                    # close), and two sendalls on one socket must not wait
                    # on each other for ever
                    self.closed.set()
                    try:
                        await asyncio.wait_for(self.write(frame(OP_CLOSE, data[:2])), 2)
                    except (ConnectionError, OSError, asyncio.TimeoutError):
                        pass
                    break
                if op == OP_PONG:
                    self.pongs += 1
                elif op == OP_PING and not self.write_failed:
                    await self.write(frame(OP_PONG, data))
                elif echo and op in (OP_TEXT, OP_BINARY):
                    await self.write(frame(op, data))
        except (asyncio.IncompleteReadError, ConnectionError, OSError, ValueError):
            self.log_close(1006)
        finally:
            self.closed.set()

    async def wait_closed(self, timeout=BOUND_SECONDS):
        try:
            await asyncio.wait_for(self.closed.wait(), timeout)
        except asyncio.TimeoutError:
            pass


def handshake_bytes(key, accept=None, version="HTTP/1.1", extra=""):
    return ("%s 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "%s"
            "Sec-WebSocket-Accept: %s\r\n\r\n"
            % (version, extra, accept or accept_for(key))).encode()


async def handle(sock):
    c = Conn(sock)
    try:
        head = await c.read_head()
        if head is None:
            return
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) < 2:
            return
        target = parts[1]
        headers = {}
        for l in lines[1:]:
            name, _, value = l.partition(":")
            headers[name.strip().lower()] = value.strip()
        key = headers.get("sec-websocket-key", "")
        url = urllib.parse.urlsplit(target)
        q = dict(urllib.parse.parse_qsl(url.query))
        c.path = target
        say("OPEN %s" % target)
        try:
            await CASES.get(url.path, echo)(c, key, q)
        except (ConnectionError, OSError):
            # a write failed: let the reader see what the client sent before
            # it left (its close frame is usually still queued)
            await c.wait_closed(5)
            c.log_close(1006)
    finally:
        sock.close()


async def open_ws(c, key):
    await c.write(handshake_bytes(key))
    return asyncio.ensure_future(c.read_frames())


async def echo(c, key, q):
    await c.write(handshake_bytes(key))
    await c.read_frames(echo=True)


async def send_once(c, key, data):
    """A valid handshake, then data, then the client's close is awaited."""
    rd = await open_ws(c, key)
    await c.write(data)
    say("SENT %s 1" % c.path)
    await c.wait_closed()
    rd.cancel()


async def len63(c, key, q):
    await send_once(c, key, frame_header(OP_BINARY, (1 << 63) - 1) + b"x" * 1024)


async def over_max(c, key, q):
    size = int(q.get("size", "1024"))
    await send_once(c, key, frame(OP_BINARY, b"\xAB" * size))


async def endless_fragments(c, key, q):
    size = int(q.get("size", "256"))
    rd = await open_ws(c, key)
    deadline = time.monotonic() + BOUND_SECONDS
    sent = 0
    chunk = b"f" * size
    first = frame(OP_TEXT, chunk, fin=False)
    more = frame(OP_CONT, chunk, fin=False)
    try:
        while not c.closed.is_set() and sent < 200000 and time.monotonic() < deadline:
            batch = 64 if sent else 63
            # bounded: a client that lingers after its close frame stops
            # reading, and a socket it then resets may never wake us up
            await asyncio.wait_for(c.write((b"" if sent else first) + more * batch), 5)
            sent += 64
    except (ConnectionError, OSError, asyncio.TimeoutError):
        pass
    finally:
        say("SENT %s %d" % (c.path, sent))
    await c.wait_closed()
    rd.cancel()


async def ping_flood(c, key, q):
    n = int(q.get("n", "5000"))
    if q.get("read", "1") == "0":
        # never read: the client's pongs pile up wherever it keeps them
        await c.write(handshake_bytes(key))
        rd = None
    else:
        rd = await open_ws(c, key)
    ping = frame(OP_PING, b"p" * 125)
    for i in range(0, n, 256):
        await c.write(ping * min(256, n - i))
    await c.write(frame(OP_TEXT, b"flood done"))
    say("SENT %s %d" % (c.path, n))
    if rd is None:
        await asyncio.sleep(float(q.get("hold_s", "10")))
        rd = asyncio.ensure_future(c.read_frames())
    await c.wait_closed()
    say("PONGS %s %d" % (c.path, c.pongs))
    rd.cancel()


async def bad_close_1byte(c, key, q):
    await send_once(c, key, frame(OP_CLOSE, b"\x03"))


async def bad_close_code(c, key, q):
    await send_once(c, key, frame(OP_CLOSE, struct.pack("!H", 1005) + b"no"))


async def bad_accept(c, key, q):
    await c.write(handshake_bytes(key, accept=accept_for(key + "x")))
    say("SENT %s 1" % c.path)
    await c.read_frames()


async def drain_until_eof(c):
    """Reads and drops whatever the client sends until EOF (handshake cases)."""
    try:
        while True:
            c.buf = b""
            await c.recv_some()
    except (asyncio.IncompleteReadError, ConnectionError, OSError):
        pass
    c.log_close(1006)
    c.closed.set()


async def endless_headers(c, key, q):
    interval = int(q.get("interval_ms", "0")) / 1000.0
    rd = asyncio.ensure_future(drain_until_eof(c))
    deadline = time.monotonic() + BOUND_SECONDS
    sent = 0
    try:
        await c.write(b"HTTP/1.1 101 Switching Protocols\r\n")
        while not c.closed.is_set() and time.monotonic() < deadline:
            await c.write(b"X-Pad-%d: %s\r\n" % (sent, b"a" * 64))
            sent += 1
            await asyncio.sleep(interval)
    except (ConnectionError, OSError):
        pass
    say("SENT %s %d" % (c.path, sent))
    await c.wait_closed()
    rd.cancel()


async def huge_headers(c, key, q):
    rd = asyncio.ensure_future(drain_until_eof(c))
    try:
        await c.write(b"HTTP/1.1 101 Switching Protocols\r\nX-Huge: " + b"h" * (100 * 1024)
                      + b"\r\nUpgrade: websocket\r\n\r\n")
    except (ConnectionError, OSError):
        pass
    say("SENT %s 1" % c.path)
    await c.wait_closed()
    rd.cancel()


def in_thread(fn, *args):
    """Runs fn(*args) in a daemon thread (one the process does not wait for
    at exit); returns a future of its result."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def run():
        try:
            r = fn(*args)
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(r))
        except BaseException as e:  # noqa: B902 - handed to the awaiting task
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_exception(e))

    threading.Thread(target=run, daemon=True).start()
    return fut


def trickle_bytes(sock, path, data, gap_s, every):
    """Blocking (from a worker thread): data one byte per send, so one byte
    per TCP segment (TCP_NODELAY), or per TLS record on an SSL socket. gap_s
    of sleep after every `every` bytes. Returns the bytes sent."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    deadline = time.monotonic() + BOUND_SECONDS
    sent = 0
    try:
        while sent < len(data) and time.monotonic() < deadline:
            sock.send(data[sent:sent + 1])
            sent += 1
            if sent % 4096 == 0:
                say("TRICKLED %s %d" % (path, sent))
            if gap_s and sent % every == 0:
                time.sleep(gap_s)
    except (ConnectionError, OSError):
        pass
    return sent


def trickle_plan(q):
    """(data, gap_s, every) of /trickle_headers."""
    limit = int(q.get("max", "70000"))
    data = b"HTTP/1.1 101 Switching Protocols\r\n"
    i = 0
    while len(data) < limit:
        data += b"h%d: v\r\n" % i
        i += 1
    gap_s = int(q.get("gap_us", "0")) / 1e6
    return data[:limit], gap_s, max(1, int(q.get("every", "1")))


async def trickle_headers(c, key, q):
    data, gap_s, every = trickle_plan(q)
    c.sock.setblocking(True)
    c.sock.settimeout(5)
    sent = await in_thread(trickle_bytes, c.sock, c.path, data, gap_s, every)
    say("SENT %s %d" % (c.path, sent))
    c.sock.setblocking(False)
    await drain_until_eof(c)


def serve_tls(sock, ctx):
    """--tls: one connection, blocking, in a worker thread. Only
    /trickle_headers is served (each byte its own TLS record); other paths
    get a 404."""
    sock.setblocking(True)
    sock.settimeout(10)
    try:
        ss = ctx.wrap_socket(sock, server_side=True)
        buf = b""
        while b"\r\n\r\n" not in buf and len(buf) < MAX_HEAD:
            d = ss.recv(65536)
            if not d:
                return
            buf += d
        target = buf.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        if len(target) < 2:
            return
        path = target[1]
        url = urllib.parse.urlsplit(path)
        q = dict(urllib.parse.parse_qsl(url.query))
        say("OPEN %s" % path)
        if url.path != "/trickle_headers":
            ss.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            return
        data, gap_s, every = trickle_plan(q)
        sent = trickle_bytes(ss, path, data, gap_s, every)
        say("SENT %s %d" % (path, sent))
        ss.settimeout(BOUND_SECONDS)
        while ss.recv(65536):
            pass
        say("CLOSE %s 1006" % path)
    except (ConnectionError, OSError, ssl.SSLError):
        pass
    finally:
        sock.close()


async def too_many_headers(c, key, q):
    n = int(q.get("n", "120"))
    extra = "".join("X-H%d: v\r\n" % i for i in range(n))
    await c.write(handshake_bytes(key, extra=extra))
    say("SENT %s 1" % c.path)
    await drain_until_eof(c)


async def big_head(c, key, q):
    """A valid 101 with a head of kb KiB (one long header), and a text frame
    "first" in the same write right after it: the client reads the head in
    pieces, grows its buffer, and keeps the bytes after the head."""
    kb = int(q.get("kb", "40"))
    extra = "X-Big: " + "b" * (kb * 1024) + "\r\n"
    await c.write(handshake_bytes(key, extra=extra) + frame(OP_TEXT, b"first"))
    say("SENT %s 1" % c.path)
    await c.read_frames(echo=True)


async def http10_101(c, key, q):
    await c.write(handshake_bytes(key, version="HTTP/1.0"))
    say("SENT %s 1" % c.path)
    await drain_until_eof(c)


async def interim_101(c, key, q):
    names = {"100": "Continue", "102": "Processing", "103": "Early Hints"}
    for code in q.get("codes", "100").split(","):
        head = "HTTP/1.1 %s %s\r\n" % (code, names.get(code, "Interim"))
        if code == "103":
            head += "Link: </style.css>; rel=preload; as=style\r\n"
        await c.write((head + "\r\n").encode())
        await asyncio.sleep(0.01)
    await c.write(handshake_bytes(key))
    say("SENT %s 1" % c.path)
    await c.read_frames(echo=True)


async def trickle(c, key, q):
    rd = await open_ws(c, key)
    data = frame(OP_TEXT, b"t" * 1000)
    deadline = time.monotonic() + BOUND_SECONDS
    sent = 0
    while not c.closed.is_set() and sent < len(data) and time.monotonic() < deadline:
        await c.write(data[sent:sent + 1])
        sent += 1
        try:
            await asyncio.wait_for(c.closed.wait(), 1.0)
        except asyncio.TimeoutError:
            pass
    say("SENT %s %d" % (c.path, sent))
    await c.wait_closed()
    rd.cancel()


async def sizes(c, key, q):
    rd = await open_ws(c, key)
    chunk = int(q.get("chunk", "0"))
    if chunk:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    letters = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    for i, spec in enumerate(s for s in q.get("sizes", "").split(",") if s):
        if spec.startswith("t"):
            payload = bytes(letters[b % 52] for b in os.urandom(int(spec[1:])))
            data = frame(OP_TEXT, payload)
        else:
            payload = os.urandom(int(spec))
            data = frame(OP_BINARY, payload)
        say("MSG %s %d %s" % (c.path, i, hashlib.sha256(payload).hexdigest()))
        if chunk:
            for k in range(0, len(data), chunk):
                await c.write(data[k:k + chunk])
                await asyncio.sleep(0.0002)
        else:
            await c.write(data)
    if "stall" in q:
        k = int(q["stall"])
        await c.write(frame_header(OP_BINARY, 2 * k) + os.urandom(k))
        say("SENT %s stall" % c.path)
        await c.wait_closed()
        rd.cancel()
        return
    if "cut" in q:
        k = int(q["cut"])
        await c.write(frame_header(OP_BINARY, 2 * k) + os.urandom(k))
        await asyncio.sleep(0.2)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        say("SENT %s cut" % c.path)
        rd.cancel()
        return
    say("SENT %s all" % c.path)
    await c.wait_closed()
    rd.cancel()


async def read_frame(c):
    """One frame of the client: (opcode, unmasked payload)."""
    h = await c.readexactly(2)
    n = h[1] & 0x7F
    if n == 126:
        n = struct.unpack("!H", await c.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await c.readexactly(8))[0]
    mask = await c.readexactly(4) if h[1] & 0x80 else b"\0\0\0\0"
    if n > 16 * 1024 * 1024:
        raise ValueError("client frame too big")
    data = await c.readexactly(n)
    return h[0] & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(data))


async def read_until_close(c):
    """Reads (and drops) the client's frames until its close frame, which is
    logged (CLOSE) but not answered. False if the connection ended first."""
    try:
        while True:
            op, data = await asyncio.wait_for(read_frame(c), BOUND_SECONDS)
            if op == OP_CLOSE:
                c.log_close(struct.unpack("!H", data[:2])[0] if len(data) >= 2 else "none")
                return True
    except (asyncio.IncompleteReadError, ConnectionError, OSError, ValueError,
            asyncio.TimeoutError):
        c.log_close(1006)
        return False


async def until_eof(c):
    """Waits for the client's end of the TCP connection: "eof" or "reset"."""
    try:
        while True:
            c.buf = b""
            await c.recv_some()
    except asyncio.IncompleteReadError:
        return "eof"
    except (ConnectionError, OSError):
        return "reset"


async def after_close(c, key, q):
    await c.write(handshake_bytes(key))
    if not await read_until_close(c):
        return
    then = q.get("then", "rst")
    if then == "rst":
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        say("SENT %s rst" % c.path)
        return
    if then == "fin":
        c.sock.shutdown(socket.SHUT_WR)
    else:
        await c.write(frame(3, b"garbage"))
    say("SENT %s %s" % (c.path, then))
    try:
        await asyncio.wait_for(until_eof(c), BOUND_SECONDS)
    except asyncio.TimeoutError:
        pass


CLOSE_FRAME_SEEN = {}


async def close_frame(c, key, q):
    seen = CLOSE_FRAME_SEEN[c.path] = CLOSE_FRAME_SEEN.get(c.path, 0) + 1
    if "times" in q and seen > int(q["times"]):
        await c.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
        say("SENT %s 401" % c.path)
        await drain_until_eof(c)
        return
    code = q.get("code", "1000")
    payload = b"" if code == "none" else struct.pack("!H", int(code)) + q.get("reason", "").encode()
    await send_once(c, key, frame(OP_CLOSE, payload))


async def flood_close(c, key, q):
    first, n = int(q.get("first", "3")), int(q.get("n", "2000"))
    data = frame(OP_BINARY, b"\x5a" * int(q.get("size", "16384")))
    await c.write(handshake_bytes(key))
    await c.write(data * first)
    if not await read_until_close(c):
        say("CLOSEDONE %s unclean no close frame" % c.path)
        return
    eof = asyncio.ensure_future(until_eof(c))
    why = None
    try:
        for i in range(n):
            if eof.done():
                why = "the client left after %d of %d messages" % (i, n)
                break
            # bounded: a client that stopped reading never unblocks this
            await asyncio.wait_for(c.write(data), BOUND_SECONDS)
        if why is None:
            if eof.done():
                why = "the client left before the close reply"
            else:
                await asyncio.wait_for(c.write(frame(OP_CLOSE, struct.pack("!H", 1000))), BOUND_SECONDS)
                end = await asyncio.wait_for(eof, BOUND_SECONDS)
                if end != "eof":
                    why = "connection %s after the close reply" % end
    except (ConnectionError, OSError) as e:
        why = "write failed: %s" % e.__class__.__name__
    except asyncio.TimeoutError:
        why = "timed out"
    eof.cancel()
    say("CLOSEDONE %s %s" % (c.path, "clean" if why is None else "unclean " + why))


def deflate_raw(data, wbits=15):
    co = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    out = co.compress(data) + co.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def bomb_bytes(size):
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = b"\0" * (1 << 20)
    parts = []
    left = size
    while left > 0:
        n = min(left, len(chunk))
        parts.append(co.compress(chunk[:n]))
        left -= n
    parts.append(co.flush(zlib.Z_SYNC_FLUSH))
    return b"".join(parts)[:-4]


PMD_OK = "Sec-WebSocket-Extensions: permessage-deflate\r\n"
HELLO = bytes([0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])


async def pmd(c, key, q):
    case = q.get("case", "")
    if case == "answer":
        await c.write(handshake_bytes(key, extra="Sec-WebSocket-Extensions: %s\r\n" % q.get("ext", "")))
        say("SENT %s" % c.path)
        await c.read_frames(echo=True)
        return
    await c.write(handshake_bytes(key, extra=PMD_OK))
    rd = asyncio.ensure_future(c.read_frames())
    if case == "rsv1_ping":
        data = bytes([0x80 | 0x40 | OP_PING, 0])
    elif case == "rsv1_cont":
        data = (bytes([0x40 | OP_TEXT, 3]) + HELLO[:3] +
                bytes([0x80 | 0x40 | OP_CONT, 4]) + HELLO[3:])
    elif case == "truncated":
        data = bytes([0x80 | 0x40 | OP_TEXT, 3]) + HELLO[:3]
    elif case == "bomb":
        z = bomb_bytes(int(q.get("size", str(1 << 30))))
        say("BOMB %s %d" % (c.path, len(z)))
        data = frame_header(OP_BINARY, len(z)) + z + frame(OP_TEXT, b"after")
        data = bytes([data[0] | 0x40]) + data[1:]
    elif case == "hello":
        data = (bytes([0x80 | 0x40 | OP_TEXT, len(HELLO)]) + HELLO +
                bytes([0x80 | 0x40 | OP_TEXT, 5, 0xf2, 0x00, 0x11, 0x00, 0x00]))
    else:
        data = frame(OP_CLOSE, struct.pack("!H", 4404))
    try:
        await asyncio.wait_for(c.write(data), BOUND_SECONDS)
    except (ConnectionError, OSError, asyncio.TimeoutError):
        pass
    say("SENT %s" % c.path)
    await c.wait_closed()
    rd.cancel()


CASES = {
    "/pmd": pmd,
    "/after_close": after_close,
    "/close_frame": close_frame,
    "/flood_close": flood_close,
    "/sizes": sizes,
    "/len63": len63,
    "/over_max": over_max,
    "/endless_fragments": endless_fragments,
    "/ping_flood": ping_flood,
    "/bad_close_1byte": bad_close_1byte,
    "/bad_close_code": bad_close_code,
    "/bad_accept": bad_accept,
    "/endless_headers": endless_headers,
    "/huge_headers": huge_headers,
    "/trickle": trickle,
    "/trickle_headers": trickle_headers,
    "/too_many_headers": too_many_headers,
    "/http10_101": http10_101,
    "/big_head": big_head,
    "/interim_101": interim_101,
}


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--exit-on-eof", action="store_true")
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    args = ap.parse_args()
    tls_ctx = None
    if args.tls:
        tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls_ctx.load_cert_chain(args.tls[0], args.tls[1])
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    if args.exit_on_eof:
        def on_stdin():
            if not sys.stdin.buffer.raw.read(65536) and not stop.done():
                loop.remove_reader(sys.stdin.fileno())
                stop.set_result(None)
        loop.add_reader(sys.stdin.fileno(), on_stdin)
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(128)
    lsock.setblocking(False)
    say("PORT %d" % lsock.getsockname()[1])
    tasks = set()

    async def accept_loop():
        while True:
            sock, _ = await loop.sock_accept(lsock)
            if tls_ctx:
                t = asyncio.ensure_future(in_thread(serve_tls, sock, tls_ctx))
            else:
                sock.setblocking(False)
                t = asyncio.ensure_future(handle(sock))
            tasks.add(t)
            t.add_done_callback(tasks.discard)

    acceptor = asyncio.ensure_future(accept_loop())
    await stop
    acceptor.cancel()
    for t in list(tasks):
        t.cancel()
    lsock.close()

if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
