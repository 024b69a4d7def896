#!/usr/bin/python3
"""A misbehaving WebSocket server for ws_port's chaos test (test/chaos_test.exs).

Usage: chaos_server.py --seed S [--exit-on-eof] [--tls CERT KEY]

Listens on 127.0.0.1 port 0 and prints ``PORT <n>``. One thread per
connection, blocking sockets, frames written byte for byte. What each
connection gets is chosen at random, seeded: the request path names the
client's connection (``/c/<tag>``), and the behaviour of the n-th handshake
of a tag is drawn from random.Random("S/<tag>/<n>") (so a seed gives every
(connection, attempt) the same behaviour from run to run); what happens
before the request is read (TLS or request resets) is drawn from the accept
number. Path ``/calm/<tag>`` is always a plain echo.

Behaviours (weights in BEHAVIOURS):
  echo                 echoes text/binary (re-fragmented at random), answers
                       pings, answers the client's close
  slow_handshake       the 101 after a pause, or trickled in small pieces
  reset_handshake      a random prefix of the 101, then a reset (RST)
  http_error           503, 429, 401, 400 or a wrong Sec-WebSocket-Accept
  reset_stream         echo, then (after a random time or number of frames,
                       possibly in the middle of a frame) a reset
  fin_no_close         echo, then FIN without a close frame (on TLS, with or
                       without close_notify)
  close_then_garbage   echo, then a close frame followed by garbage
  close_after_unread   echo; the client's close frame is answered only after
                       many more data frames (the client has unread data)
  server_close         echo, then a close frame (1000, 1001, 1011, 1012,
                       4000), waits for the client's reply
  ping_flood           thousands of pings interleaved with the echo
  oversized            a frame header announcing 2^40 bytes
  malformed            one protocol error: reserved opcode, RSV1, a masked
                       frame, bad UTF-8, a fragmented or oversized control
                       frame, a lone continuation, a 1-byte close payload
Every behaviour that reads the client's frames answers its close frame as
drawn per connection: a close reply (60%), a reset, FIN, a reserved-opcode
frame and garbage, or nothing (the client's close timeout ends it).
Before the request (drawn per accept): a reset at once, a reset after a few
bytes of the request (or of the TLS ClientHello), a FIN before TLS.

Lines printed (one write each, under a lock, so their order is the order of
the events): ``OPEN <tag> <n> <behaviour>`` once a request head is read,
``SYNC <k>`` in answer to a ``SYNC <k>`` line on stdin (every OPEN printed
before it was read before it); ``LIVE <tag>`` for every connection still
served whose client has not closed its end, then ``LIVEEND <k>``, in answer
to ``LIVE <k>``. Every connection is bounded (30 s).
"""

import argparse
import base64
import hashlib
import os
import random
import select
import socket
import ssl
import struct
import sys
import threading
import time

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD = 64 * 1024
BOUND_SECONDS = 30
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10

BEHAVIOURS = [
    ("echo", 30), ("slow_handshake", 7), ("reset_handshake", 6), ("http_error", 5),
    ("reset_stream", 9), ("fin_no_close", 6), ("close_then_garbage", 6),
    ("close_after_unread", 6), ("server_close", 6), ("ping_flood", 5),
    ("oversized", 3), ("malformed", 7),
]

out_lock = threading.Lock()
tags_lock = threading.Lock()
tag_counts = {}
live = {}   # tag -> set of server sockets of that connection still being served


def say(line):
    with out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def accept_for(key):
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def frame(opcode, payload=b"", fin=True, rsv=0, mask=None, length=None):
    b0 = (0x80 if fin else 0) | rsv | opcode
    n = len(payload) if length is None else length
    m = 0x80 if mask else 0
    if n <= 125:
        h = bytes([b0, m | n])
    elif n <= 0xFFFF:
        h = bytes([b0, m | 126]) + struct.pack("!H", n)
    else:
        h = bytes([b0, m | 127]) + struct.pack("!Q", n)
    if mask:
        h += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return h + payload


def reset(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class Closed(Exception):
    pass


class Conn:
    def __init__(self, sock, rng):
        self.sock = sock
        self.rng = rng
        self.buf = b""
        self.deadline = time.monotonic() + BOUND_SECONDS
        self.on_close = "reply"

    def recv_some(self, timeout=None):
        """False on timeout; raises Closed on EOF or error."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise Closed()
        self.sock.settimeout(min(left, timeout) if timeout is not None else left)
        try:
            d = self.sock.recv(65536)
        except socket.timeout:
            return False
        except (OSError, ssl.SSLError):
            raise Closed()
        if not d:
            raise Closed()
        self.buf += d
        return True

    def send(self, data):
        self.sock.settimeout(max(0.1, self.deadline - time.monotonic()))
        try:
            self.sock.sendall(data)
        except (OSError, ssl.SSLError, socket.timeout):
            raise Closed()

    def read_head(self):
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > MAX_HEAD:
                raise Closed()
            self.recv_some()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        return head.decode("latin-1")

    def read_frame(self, timeout=None):
        """(fin, opcode, payload), or None on timeout (nothing consumed)."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            f = self.parse_frame()
            if f is not None:
                return f
            t = None if end is None else end - time.monotonic()
            if t is not None and t <= 0:
                return None
            self.recv_some(t)

    def parse_frame(self):
        b = self.buf
        if len(b) < 2:
            return None
        n = b[1] & 0x7F
        i = 2
        if n == 126:
            if len(b) < 4:
                return None
            n = struct.unpack("!H", b[2:4])[0]
            i = 4
        elif n == 127:
            if len(b) < 10:
                return None
            n = struct.unpack("!Q", b[2:10])[0]
            i = 10
        if n > 64 * 1024 * 1024:
            raise Closed()
        masked = b[1] & 0x80
        if len(b) < i + (4 if masked else 0) + n:
            return None
        mask = b[i:i + 4] if masked else b"\0\0\0\0"
        i += 4 if masked else 0
        data = bytes(x ^ mask[j % 4] for j, x in enumerate(b[i:i + n]))
        self.buf = b[i + n:]
        return (bool(b[0] & 0x80), b[0] & 0x0F, data)

    def send_message(self, op, data):
        """One message, re-fragmented at random."""
        pieces = self.rng.choice([1, 1, 1, 2, 3])
        if pieces == 1 or len(data) < 2:
            self.send(frame(op, data))
            return
        cuts = sorted(self.rng.randrange(0, len(data) + 1) for _ in range(pieces - 1))
        parts, last = [], 0
        for c in cuts + [len(data)]:
            parts.append(data[last:c])
            last = c
        out = b""
        for k, p in enumerate(parts):
            out += frame(op if k == 0 else OP_CONT, p, fin=(k == len(parts) - 1))
        self.send(out)

    def echo_until(self, frames_left, seconds, on_close=None):
        """Echoes until frames_left data frames were echoed or seconds passed
        (then returns True), or the client closed (returns False)."""
        end = time.monotonic() + seconds
        while frames_left > 0:
            left = end - time.monotonic()
            if left <= 0:
                return True
            f = self.read_frame(left)
            if f is None:
                return True
            fin, op, data = f
            if op == OP_CLOSE:
                if on_close:
                    on_close()
                self.answer_close(data)
                return False
            if op == OP_PING:
                self.send(frame(OP_PONG, data))
            elif op in (OP_TEXT, OP_BINARY, OP_CONT):
                if op == OP_CONT:
                    self.send(frame(OP_CONT, data, fin=fin))
                elif fin:
                    self.send_message(op, data)
                else:
                    self.send(frame(op, data, fin=False))
                frames_left -= 1
        return True

    def answer_close(self, data):
        """The client's close frame came: answer it as self.on_close says."""
        how = self.on_close
        if how == "reply":
            self.send(frame(OP_CLOSE, data[:2]))
        elif how == "rst":
            reset(self.sock)
            raise Closed()
        elif how == "fin":
            self.sock.shutdown(socket.SHUT_WR)
            self.drain(5)
        elif how == "garbage":
            self.send(frame(3, b"after close") + os.urandom(self.rng.randrange(1, 200)))
            self.drain(5)
        else:  # silent: the client's close timeout ends it
            self.drain(10)

    def drain(self, seconds=10):
        """Reads (and drops) until EOF or seconds."""
        end = min(self.deadline, time.monotonic() + seconds)
        try:
            while time.monotonic() < end:
                self.buf = b""
                self.recv_some(end - time.monotonic())
        except Closed:
            pass


def response(key, accept=None):
    return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
            % (accept or accept_for(key))).encode()


def pick(rng):
    total = sum(w for _, w in BEHAVIOURS)
    x = rng.uniform(0, total)
    for name, w in BEHAVIOURS:
        x -= w
        if x <= 0:
            return name
    return "echo"


def serve(sock, n_accept, args, tls_ctx):
    pre = random.Random("%s/accept/%d" % (args.seed, n_accept))
    roll = pre.random()
    try:
        if roll < 0.03:
            reset(sock)
            return
        if roll < 0.06:
            sock.settimeout(5)
            sock.recv(pre.randrange(1, 64))
            reset(sock)
            return
        if tls_ctx and roll < 0.08:
            sock.close()
            return
        if tls_ctx:
            sock.settimeout(10)
            sock = tls_ctx.wrap_socket(sock, server_side=True)
        serve_ws(sock, args)
    except (OSError, ssl.SSLError, Closed, socket.timeout):
        pass
    finally:
        try:
            sock.close()
        except OSError:
            pass


def serve_ws(sock, args):
    c = Conn(sock, random.Random())
    head = c.read_head()
    lines = head.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) < 2:
        return
    path = parts[1].split("?", 1)[0]
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        headers[k.strip().lower()] = v.strip()
    key = headers.get("sec-websocket-key", "")
    segs = path.strip("/").split("/")
    tag = segs[1] if len(segs) > 1 else path
    with tags_lock:
        n = tag_counts.get(tag, 0) + 1
        tag_counts[tag] = n
    rng = random.Random("%s/%s/%d" % (args.seed, tag, n))
    c.rng = rng
    b = "echo" if segs[0] == "calm" else pick(rng)
    if segs[0] != "calm":
        c.on_close = rng.choices(["reply", "rst", "fin", "garbage", "silent"],
                                 [60, 12, 12, 12, 4])[0]
    say("OPEN %s %d %s" % (tag, n, b))
    with tags_lock:
        live.setdefault(tag, set()).add(sock)
    try:
        globals()["b_" + b](c, key, rng, sock)
    finally:
        with tags_lock:
            live[tag].discard(sock)


def peer_open(sock):
    """False when the client has closed or reset its end (or on error)."""
    try:
        p = select.poll()
        p.register(sock.fileno(), select.POLLIN | select.POLLRDHUP)
        for _, ev in p.poll(0):
            if ev & (select.POLLRDHUP | select.POLLHUP | select.POLLERR | select.POLLNVAL):
                return False
        return True
    except (OSError, ValueError):
        return False


def report_live(k):
    with tags_lock:
        items = [(t, s) for t, ss in live.items() for s in list(ss)]
    for t, s in items:
        if peer_open(s):
            say("LIVE %s" % t)
    say("LIVEEND %s" % k)


def b_echo(c, key, rng, sock):
    c.send(response(key))
    c.echo_until(10 ** 9, BOUND_SECONDS)
    c.drain(2)


def b_slow_handshake(c, key, rng, sock):
    r = response(key)
    if rng.random() < 0.5:
        time.sleep(rng.uniform(0.1, 4.0))
        c.send(r)
    else:
        i = 0
        while i < len(r):
            k = rng.randrange(1, 16)
            c.send(r[i:i + k])
            i += k
            time.sleep(rng.uniform(0, 0.03))
    b_echo_rest(c)


def b_echo_rest(c):
    c.echo_until(10 ** 9, BOUND_SECONDS)
    c.drain(2)


def b_reset_handshake(c, key, rng, sock):
    r = response(key)
    c.send(r[:rng.randrange(0, len(r))])
    time.sleep(rng.uniform(0, 0.2))
    reset(sock)


def b_http_error(c, key, rng, sock):
    kind = rng.choice(["503", "429", "401", "400", "accept"])
    if kind == "accept":
        c.send(response(key, accept=accept_for(key + "x")))
    else:
        c.send(("HTTP/1.1 %s Nope\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope"
                % kind).encode())
    c.drain(2)


def trigger(c, rng):
    """Echoes for a while; False if the client closed meanwhile."""
    return c.echo_until(rng.randrange(0, 40), rng.uniform(0, 1.5))


def b_reset_stream(c, key, rng, sock):
    c.send(response(key))
    if not trigger(c, rng):
        return
    if rng.random() < 0.4:
        c.send(frame(OP_BINARY, os.urandom(rng.randrange(1, 4000)), length=5000))
    reset(sock)


def b_fin_no_close(c, key, rng, sock):
    c.send(response(key))
    if not trigger(c, rng):
        return
    if isinstance(sock, ssl.SSLSocket) and rng.random() < 0.5:
        try:
            sock.settimeout(2)
            sock.unwrap()
        except (OSError, ssl.SSLError):
            pass
    sock.shutdown(socket.SHUT_WR)
    c.drain(5)


def b_close_then_garbage(c, key, rng, sock):
    c.send(response(key))
    if not trigger(c, rng):
        return
    c.send(frame(OP_CLOSE, struct.pack("!H", 1000)) + os.urandom(rng.randrange(1, 300)))
    c.drain(5)


def b_close_after_unread(c, key, rng, sock):
    c.send(response(key))
    k = rng.randrange(1, 400)
    size = rng.randrange(1, 20000)

    def flood():
        for _ in range(k):
            c.send(frame(OP_BINARY, b"u" * size))
    if c.echo_until(10 ** 9, BOUND_SECONDS, on_close=flood):
        return
    c.drain(3)


def b_server_close(c, key, rng, sock):
    c.send(response(key))
    if not trigger(c, rng):
        return
    code = rng.choice([1000, 1001, 1011, 1012, 4000])
    c.send(frame(OP_CLOSE, struct.pack("!H", code) + b"chaos"))
    try:
        while True:
            f = c.read_frame(5)
            if f is None or f[1] == OP_CLOSE:
                break
    except Closed:
        pass


def b_ping_flood(c, key, rng, sock):
    c.send(response(key))
    for i in range(rng.randrange(100, 3000)):
        c.send(frame(OP_PING, b"p" * 125))
        if i % 50 == 0 and not c.echo_until(1, 0.001):
            return
    b_echo_rest(c)


def b_oversized(c, key, rng, sock):
    c.send(response(key))
    if not trigger(c, rng):
        return
    c.send(frame(OP_BINARY, b"x" * 100, length=1 << 40))
    c.drain(5)


def b_malformed(c, key, rng, sock):
    c.send(response(key))
    if not trigger(c, rng):
        return
    bad = rng.choice([
        frame(3, b"reserved"),
        frame(OP_TEXT, b"rsv", rsv=0x40),
        frame(OP_TEXT, b"masked", mask=b"abcd"),
        frame(OP_TEXT, b"\xff\xfe bad utf8"),
        frame(OP_PING, b"frag", fin=False),
        frame(OP_PING, b"p" * 200),
        frame(OP_CONT, b"lone continuation"),
        frame(OP_CLOSE, b"\x03"),
        frame(OP_TEXT, b"a", fin=False) + frame(OP_BINARY, b"b"),
    ])
    c.send(bad)
    c.drain(5)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", required=True)
    ap.add_argument("--exit-on-eof", action="store_true")
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    args = ap.parse_args()
    tls_ctx = None
    if args.tls:
        tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls_ctx.load_cert_chain(args.tls[0], args.tls[1])
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(512)
    say("PORT %d" % lsock.getsockname()[1])

    def accept_loop():
        n = 0
        while True:
            try:
                s, _ = lsock.accept()
            except OSError:
                return
            n += 1
            threading.Thread(target=serve, args=(s, n, args, tls_ctx), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    for line in sys.stdin:
        if line.startswith("SYNC "):
            say(line.strip())
        elif line.startswith("LIVE "):
            report_live(line.split()[1])
    if not args.exit_on_eof:
        threading.Event().wait()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
