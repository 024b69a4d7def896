#!/usr/bin/python3
"""JSON-RPC WebSocket test server for ws_port's client tests (python3-websockets 10.4).

Usage: jsonrpc_server.py [--port N] [--exit-on-eof]

Listens on 127.0.0.1 (port N, default 0 = the kernel picks one; the same
port can be given again to restart a server where clients expect it) and
prints ``PORT <n>`` once listening. The request path picks the behaviour:

  /echo       echo every message back, same type
  /rpc        a Deribit-like JSON-RPC 2.0 server:
              public/set_heartbeat {"interval": S}  -> "ok"; then every S
                  seconds (S may be a fraction here, unlike Deribit) send
                  {"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}.
                  A test_request still unanswered at the next beat closes the
                  connection (1000 "heartbeat missed"), as Deribit does.
              public/test {}                        -> {"version":"ws_port-test"}
              public/subscribe {"channels": [...]}  -> the channels
              anything else with an id              -> error -32601
              Query silent=1: accept set_heartbeat but never send a beat.
  /flood?n=N&size=S
              send N text messages of S bytes as fast as the client reads
              them (message i is S copies of "abcdefghijklmnopqrstuvwxyz"[i % 26],
              followed by nothing), print ``SENT <path>``, then echo.

Every connection prints ``OPEN <path>`` and ``CLOSED <path> <code>``; every
text message received prints ``RECV <path> <text>`` (cut to 200
characters); /rpc prints ``SUBSCRIBE <path> <channel,...>``, ``TEST <path>``
and ``BEAT <path>`` for each heartbeat sent. Unknown query parameters (e.g.
``tag=...``) are ignored, so tests can tell their connections apart.
--exit-on-eof makes the server exit when its stdin reaches EOF.
"""

import argparse
import asyncio
import json
import sys
import urllib.parse

import websockets

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def split_path(path):
    parsed = urllib.parse.urlsplit(path)
    query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
    return parsed.path, query


def reply(msg_id, result=None, error=None):
    out = {"jsonrpc": "2.0", "id": msg_id}
    if error is not None:
        out["error"] = error
    else:
        out["result"] = result
    return json.dumps(out)


async def heartbeats(ws, path, interval, state):
    while True:
        await asyncio.sleep(interval)
        if state["unanswered"]:
            say("MISSED %s" % path)
            await ws.close(1000, "heartbeat missed")
            return
        state["unanswered"] = True
        say("BEAT %s" % path)
        await ws.send(json.dumps({"jsonrpc": "2.0", "method": "heartbeat",
                                  "params": {"type": "test_request"}}))


async def rpc(ws, path, query):
    state = {"unanswered": False}
    beats = None
    try:
        async for raw in ws:
            if isinstance(raw, bytes):
                continue
            say("RECV %s %s" % (path, raw[:200]))
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            method = msg.get("method")
            msg_id = msg.get("id")
            params = msg.get("params") or {}
            if method == "public/set_heartbeat":
                await ws.send(reply(msg_id, "ok"))
                if beats:
                    beats.cancel()
                state["unanswered"] = False
                if query.get("silent") != "1":
                    beats = asyncio.ensure_future(
                        heartbeats(ws, path, float(params.get("interval", 30)), state))
            elif method == "public/test":
                state["unanswered"] = False
                say("TEST %s" % path)
                await ws.send(reply(msg_id, {"version": "ws_port-test"}))
            elif method == "public/subscribe":
                channels = params.get("channels", [])
                say("SUBSCRIBE %s %s" % (path, ",".join(channels)))
                await ws.send(reply(msg_id, channels))
            elif msg_id is not None:
                await ws.send(reply(msg_id, error={"code": -32601,
                                                   "message": "Method not found"}))
    finally:
        if beats:
            beats.cancel()


async def handler(ws, path):
    route, query = split_path(path)
    say("OPEN %s" % path)
    try:
        if route == "/echo":
            async for msg in ws:
                if isinstance(msg, str):
                    say("RECV %s %s" % (path, msg[:200]))
                await ws.send(msg)
        elif route == "/rpc":
            await rpc(ws, path, query)
        elif route == "/flood":
            n = int(query.get("n", "1000"))
            size = int(query.get("size", "10"))
            for i in range(n):
                await ws.send(LETTERS[i % 26] * size)
            say("SENT %s" % path)
            async for msg in ws:
                await ws.send(msg)
        else:
            await ws.close(4404, "unknown path " + route)
    except websockets.ConnectionClosed:
        pass
    finally:
        await ws.wait_closed()
        say("CLOSED %s %s" % (path, ws.close_code))


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--exit-on-eof", action="store_true")
    args = ap.parse_args()

    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    if args.exit_on_eof:
        def on_stdin():
            if not sys.stdin.buffer.raw.read(65536) and not stop.done():
                loop.remove_reader(sys.stdin.fileno())
                stop.set_result(None)

        loop.add_reader(sys.stdin.fileno(), on_stdin)

    async with websockets.serve(
        handler, "127.0.0.1", args.port,
        max_size=None,
        max_queue=16,
        compression=None,
        ping_interval=None,
        reuse_address=True,
    ) as server:
        say("PORT %d" % server.sockets[0].getsockname()[1])
        await stop


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
