#!/usr/bin/python3
"""A fast permessage-deflate stream source for bench/suite.sh (stream_pmd).

Usage: pmd_firehose.py   (listens on 127.0.0.1 port 0, prints ``PORT <n>``)

GET /?n=N&size=S sends N JSON-like text messages of S bytes (256 distinct
ones, cycled), then a close frame (1000), and waits for the client's close.
When the client offers permessage-deflate the answer is ``permessage-deflate;
server_no_context_takeover; client_no_context_takeover`` and every message
goes compressed (RSV1): each one is deflated once up front (raw deflate,
window 15, level 6, sync flush, tail removed: RFC 7692 7.2.1), so the
server's cost is a memcpy and the client's inflate is what is measured.
Prints ``DONE compressed=0|1 msgs=N plain_bytes=P wire_bytes=W`` (W: every
byte written after the handshake) per connection.
"""
import base64
import hashlib
import socket
import struct
import sys
import threading
import urllib.parse
import zlib

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def messages(size):
    out = []
    for i in range(256):
        row = ('{"sym":"BTC-PERP","seq":%d,"px":%d.%02d,"qty":%d,"side":"%s","ts":%d},'
               % (i, 43000 + i * 7 % 300, i % 100, i % 17 + 1, "buy" if i % 3 else "sell",
                  1700000000000 + i * 13))
        s = ('[' + row * (size // len(row) + 1))[:size]
        out.append(s.encode())
    return out


def header(b0, n):
    if n <= 125:
        return bytes([b0, n])
    if n <= 0xFFFF:
        return bytes([b0, 126]) + struct.pack("!H", n)
    return bytes([b0, 127]) + struct.pack("!Q", n)


def deflate(m):
    co = zlib.compressobj(6, zlib.DEFLATED, -15)
    z = co.compress(m) + co.flush(zlib.Z_SYNC_FLUSH)
    return z[:-4]


def serve(conn):
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = conn.recv(65536)
        if not d:
            return
        buf += d
    head = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    target = head[0].split(" ")[1]
    hdrs = {}
    for line in head[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(target).query))
    n, size = int(q.get("n", "100000")), int(q.get("size", "1024"))
    pmd = "permessage-deflate" in hdrs.get("sec-websocket-extensions", "")
    accept = base64.b64encode(hashlib.sha1((hdrs["sec-websocket-key"] + GUID).encode()).digest()).decode()
    ext = ("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
           "client_no_context_takeover\r\n") if pmd else ""
    conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\n%sSec-WebSocket-Accept: %s\r\n\r\n" % (ext, accept)).encode())
    msgs = messages(size)
    frames = [header(0xC1, len(z)) + z for z in map(deflate, msgs)] if pmd else \
             [header(0x81, len(m)) + m for m in msgs]
    block = b"".join(frames)
    wire = 0
    left = n
    while left >= len(frames):
        conn.sendall(block)
        wire += len(block)
        left -= len(frames)
    if left:
        tail = b"".join(frames[:left])
        conn.sendall(tail)
        wire += len(tail)
    close = header(0x88, 2) + struct.pack("!H", 1000)
    conn.sendall(close)
    wire += len(close)
    print("DONE compressed=%d msgs=%d plain_bytes=%d wire_bytes=%d" % (pmd, n, n * size, wire), flush=True)
    try:
        while conn.recv(65536):
            pass
    except OSError:
        pass
    conn.close()


def main():
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(64)
    print("PORT %d" % ls.getsockname()[1], flush=True)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
