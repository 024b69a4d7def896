#!/usr/bin/python3
"""A userspace TCP fault proxy for ws_port's resilience tests (asyncio, stdlib only).

Usage: fault_proxy.py --target 127.0.0.1:PORT

Listens on 127.0.0.1, port 0 (the kernel picks one), prints ``PORT <n>`` on
stdout once listening, and forwards every accepted connection to the target
(127.0.0.1 only). The proxy is driven by lines on its stdin; every command is
answered by exactly one line starting with ``OK`` (or ``ERR <why>``), in the
order the commands came:

  mode pass              forward bytes as they come (the default)
  mode delay MS          forward every chunk MS milliseconds after it was read
  mode blackhole         keep both sockets open, read and drop every byte, both ways
  mode chop              forward writes in 1-byte pieces (one send() per byte,
                         TCP_NODELAY), both ways
  mode stall             stop reading both sockets (bytes pile up in the
                         kernel buffers, then the senders block), keep them open
  reset                  RST every open connection (SO_LINGER {1, 0}, then close),
                         both sides; answers ``OK <t_ms> <n>`` (n connections reset)
  fin                    close every open connection with FIN (shutdown, no close
                         frame), both sides; answers ``OK <t_ms> <n>``
  refuse on | off        on: accept new connections and RST them at once
  listen off | on        off: close the listening socket (connects get
                         ECONNREFUSED); on: listen again on the same port
  stats                  ``OK accepted=A refused=R open=O``
  time                   ``OK <t_ms>``

New connections follow the current mode; ``mode`` also applies at once to
connections already open (for bytes read from then on). The mode is global.

Events are printed on stdout as lines, times in milliseconds of the proxy's
monotonic clock (3 decimals), so tests can measure gaps in one clock:

  ACCEPT <n> <t_ms>      connection n accepted (and forwarded)
  REFUSED <n> <t_ms>     connection n accepted and reset (refuse on)
  UPSTREAM_FAILED <n> <why>  the target could not be reached (client is reset)
  CLOSED <n> <t_ms>      connection n is gone (both sides closed)

EOF on stdin ends the proxy (the parent holds stdin open, as an Erlang port
does). Nothing here binds or connects anywhere but 127.0.0.1.
"""

import argparse
import asyncio
import socket
import struct
import sys
import time

HOST = "127.0.0.1"
CHUNK = 65536


def now_ms():
    return time.monotonic() * 1000.0


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def set_rst_on_close(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


class Proxy:
    def __init__(self, target_port):
        self.loop = asyncio.get_running_loop()
        self.target_port = target_port
        self.mode = "pass"
        self.delay_ms = 0
        self.refuse = False
        self.listener = None
        self.accept_task = None
        self.port = 0
        self.next_id = 1
        self.accepted = 0
        self.refused = 0
        self.conns = {}

    # listening

    def listen(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, self.port))
        sock.listen(128)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self.listener = sock
        self.accept_task = asyncio.ensure_future(self.accept_loop(sock))

    def unlisten(self):
        if self.accept_task:
            self.accept_task.cancel()
            self.accept_task = None
        if self.listener:
            self.listener.close()
            self.listener = None

    async def accept_loop(self, lsock):
        while True:
            try:
                client, _ = await self.loop.sock_accept(lsock)
            except asyncio.CancelledError:
                raise
            except OSError:
                await asyncio.sleep(0.01)
                continue
            n = self.next_id
            self.next_id += 1
            client.setblocking(False)
            if self.refuse:
                self.refused += 1
                say("REFUSED %d %.3f" % (n, now_ms()))
                set_rst_on_close(client)
                client.close()
                continue
            self.accepted += 1
            say("ACCEPT %d %.3f" % (n, now_ms()))
            conn = Conn(self, n, client)
            self.conns[n] = conn
            conn.start()

    # commands

    def command(self, line):
        words = line.split()
        if not words:
            return "ERR empty command"
        cmd, args = words[0], words[1:]
        if cmd == "mode":
            if args in (["pass"], ["blackhole"], ["chop"], ["stall"]):
                self.mode = args[0]
                return "OK"
            if len(args) == 2 and args[0] == "delay" and args[1].isdigit():
                self.mode = "delay"
                self.delay_ms = int(args[1])
                return "OK"
            return "ERR bad mode: " + line
        if cmd == "reset" and not args:
            t = now_ms()
            conns = list(self.conns.values())
            for c in conns:
                c.reset()
            return "OK %.3f %d" % (t, len(conns))
        if cmd == "fin" and not args:
            t = now_ms()
            conns = list(self.conns.values())
            for c in conns:
                c.fin()
            return "OK %.3f %d" % (t, len(conns))
        if cmd == "refuse" and args in (["on"], ["off"]):
            self.refuse = args[0] == "on"
            return "OK"
        if cmd == "listen" and args in (["on"], ["off"]):
            if args[0] == "off":
                self.unlisten()
            elif self.listener is None:
                try:
                    self.listen()
                except OSError as e:
                    return "ERR listen: %s" % e
            return "OK"
        if cmd == "stats" and not args:
            return "OK accepted=%d refused=%d open=%d" % (
                self.accepted, self.refused, len(self.conns))
        if cmd == "time" and not args:
            return "OK %.3f" % now_ms()
        return "ERR unknown command: " + line


class Conn:
    """One client connection and its upstream connection to the target."""

    def __init__(self, proxy, n, client):
        self.proxy = proxy
        self.loop = proxy.loop
        self.n = n
        self.client = client
        self.upstream = None
        self.tasks = []
        self.done = False
        self.open_dirs = 2

    def start(self):
        self.tasks.append(asyncio.ensure_future(self.run()))

    async def run(self):
        up = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        up.setblocking(False)
        try:
            await self.loop.sock_connect(up, (HOST, self.proxy.target_port))
        except OSError as e:
            say("UPSTREAM_FAILED %d %s" % (self.n, e.strerror or e))
            up.close()
            set_rst_on_close(self.client)
            self.finish()
            return
        if self.done:
            up.close()
            return
        self.upstream = up
        for s in (self.client, up):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.tasks.append(asyncio.ensure_future(self.pipe(self.client, up)))
        self.tasks.append(asyncio.ensure_future(self.pipe(up, self.client)))

    async def pipe(self, src, dst):
        # A reader feeds a queue of (deliver_at_ms, bytes); a writer drains it,
        # so delay keeps the order and chop applies at write time.
        queue = asyncio.Queue()
        writer = asyncio.ensure_future(self.write_loop(queue, dst))
        self.tasks.append(writer)
        try:
            while True:
                while self.proxy.mode == "stall":
                    await asyncio.sleep(0.01)
                try:
                    data = await self.loop.sock_recv(src, CHUNK)
                except (ConnectionResetError, OSError):
                    # the peer reset: pass the reset on, whatever is queued
                    self.reset()
                    return
                if not data:
                    await queue.put((0.0, None))  # EOF: shutdown after the queued bytes
                    return
                mode = self.proxy.mode
                if mode == "blackhole":
                    continue
                at = now_ms() + self.proxy.delay_ms if mode == "delay" else 0.0
                await queue.put((at, data))
        except asyncio.CancelledError:
            writer.cancel()
            raise

    async def write_loop(self, queue, dst):
        while True:
            at, data = await queue.get()
            wait = (at - now_ms()) / 1000.0
            if wait > 0:
                await asyncio.sleep(wait)
            if data is None:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                self.open_dirs -= 1
                if self.open_dirs <= 0:
                    self.close_both()
                return
            try:
                if self.proxy.mode == "chop":
                    for i in range(len(data)):
                        await self.loop.sock_sendall(dst, data[i:i + 1])
                else:
                    await self.loop.sock_sendall(dst, data)
            except OSError:
                self.reset()
                return

    def cancel_tasks(self):
        me = asyncio.current_task()
        for t in self.tasks:
            if t is not me:
                t.cancel()

    def finish(self):
        if self.done:
            return
        self.done = True
        self.cancel_tasks()
        for s in (self.client, self.upstream):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
        self.proxy.conns.pop(self.n, None)
        say("CLOSED %d %.3f" % (self.n, now_ms()))

    def close_both(self):
        self.finish()

    def reset(self):
        if self.done:
            return
        for s in (self.client, self.upstream):
            if s is not None:
                set_rst_on_close(s)
        self.finish()

    def fin(self):
        """FIN both ways now, drop whatever is queued, then wait (bounded) for
        both peers to close before closing our sockets (so no RST follows)."""
        if self.done:
            return
        old = self.tasks
        self.cancel_tasks()
        self.tasks = []
        socks = [s for s in (self.client, self.upstream) if s is not None]
        for s in socks:
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        self.tasks.append(asyncio.ensure_future(self.drain_then_close(old, socks)))

    async def drain_then_close(self, old, socks):
        # the cancelled readers must be gone before we read the sockets again
        await asyncio.gather(*old, return_exceptions=True)

        async def drain(s):
            try:
                while await self.loop.sock_recv(s, CHUNK):
                    pass
            except OSError:
                pass

        try:
            await asyncio.wait_for(asyncio.gather(*(drain(s) for s in socks)), 5.0)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            pass
        self.finish()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True, help="127.0.0.1:PORT")
    args = ap.parse_args()
    host, _, port = args.target.rpartition(":")
    if host != HOST:
        sys.exit("fault_proxy: only %s targets are allowed" % HOST)

    proxy = Proxy(int(port))
    proxy.listen()
    say("PORT %d" % proxy.port)

    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    pending = b""

    def on_stdin():
        nonlocal pending
        data = sys.stdin.buffer.raw.read(65536)
        if not data:
            loop.remove_reader(sys.stdin.fileno())
            if not stop.done():
                stop.set_result(None)
            return
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            say(proxy.command(line.decode("utf-8", "replace").strip()))

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    await stop
    proxy.unlisten()
    for c in list(proxy.conns.values()):
        c.reset()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
