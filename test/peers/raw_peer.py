#!/usr/bin/python3
"""RFC 6455 client-conformance peer for ws_port (python3-autobahn, Twisted).

Usage: raw_peer.py [--exit-on-eof] [--case-timeout SECONDS]

Listens on 127.0.0.1 port 0 and prints ``PORT <n>`` on stdout. autobahn does
the opening handshake; after it the peer takes the socket over and writes
frames byte by byte as each case dictates (including frames no WebSocket
library would send), and parses what the client sends back itself, so it
sees exactly the client's frames: masking, close codes, pong payloads.

Paths:
  /list           one text message: the case names, one per line
  /case/<name>    run that case (see CASES below)
  /report         the client sends one text message, one line per case:
                  "<name> <beam_kind> <beam_code or ->" (what the BEAM side
                  was told, e.g. "rsv1 protocol_error 1002"); the peer
                  answers with the summary line, closes, and exits.

A case passes when the client's wire behaviour is what RFC 6455 asks of a
client (e.g. it fails the connection with close code 1002 on a protocol
error, 1007 on invalid UTF-8; it answers pings with the same payload; it
answers a valid close with a close) AND the BEAM side reported the expected
reason. The conformance client echoes every message it gets, so the peer
also sees what was delivered.

At the end (after /report, on SIGTERM/SIGINT, or on stdin EOF with
--exit-on-eof) the peer prints exactly one line ``N passed, N failed`` on
stdout and one line per failed case on stderr, and exits 1 if any case
failed (or was not run), else 0.
"""

import argparse
import os
import struct
import sys

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import reactor

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
NO_CODE = "none"  # a close frame with an empty payload


def frame(opcode, payload=b"", fin=True, rsv=0, mask=None, length=None):
    """Encodes one frame. `length` overrides the encoded payload length."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0x0F)
    mbit = 0x80 if mask is not None else 0
    if n <= 125:
        head = bytes([b0, mbit | n])
    elif n <= 0xFFFF:
        head = bytes([b0, mbit | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack("!Q", n)
    if mask is not None:
        head += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + payload


def close_payload(code, reason=b""):
    if isinstance(reason, str):
        reason = reason.encode("utf-8")
    return struct.pack("!H", code) + reason


def close(code, reason=b""):
    return frame(OP_CLOSE, close_payload(code, reason))


class Case:
    """One conformance case.

    send:        frames (bytes) written once the connection is open; a list of
                 lists means "write each inner list as separate writes".
    client_close: set of close codes the client may answer with (NO_CODE for
                 an empty close payload), or None when the peer closes itself
                 after the expected echo (then the client must answer 1000).
    messages:    messages the client must echo back, as (opcode, bytes), in
                 order; for failing cases this is [] and any data the client
                 sends back means the invalid message reached the BEAM.
    pongs:       pong payloads the client must send, in order.
    beam:        (kind, set of codes or None for any) the BEAM must report.
    server_closes: the frames in `send` include a close from the server.
    """

    def __init__(self, name, send, client_close=None, messages=(), pongs=(), beam=None,
                 server_closes=False, split=False, doc=""):
        self.name = name
        self.send = send
        self.client_close = client_close
        self.messages = list(messages)
        self.pongs = list(pongs)
        self.beam = beam
        self.server_closes = server_closes
        self.split = split
        self.doc = doc


def protocol_error(name, send, code=1002, doc="", codes=None, may_deliver=()):
    """The client must fail the connection; `may_deliver` lists the valid
    messages sent before the violation, which the client may deliver."""
    codes = codes or {code}
    return Case(name, send, client_close=codes, messages=may_deliver,
                beam=("protocol_error", codes), doc=doc)


def remote_close(name, code, reason=b"", answers=None, beam_code="same", extra=(), doc=""):
    payload = close_payload(code, reason) if code is not None else b""
    answers = answers or ({code, 1000} if code is not None else {NO_CODE, 1000})
    beam = ("remote", {code} if beam_code == "same" else beam_code)
    return Case(name, [frame(OP_CLOSE, payload)] + list(extra), client_close=answers,
                beam=beam, server_closes=True, doc=doc)


def echo(name, send, messages, pongs=(), split=False, doc=""):
    return Case(name, send, client_close=None, messages=messages, pongs=pongs,
                beam=("remote", {1000}), split=split, doc=doc)


KOSME = "κόσμε".encode("utf-8")  # 2-byte characters
P125 = bytes(range(125))
BIG = os.urandom(70000)

CASES = [
    # --- valid traffic: the client must deliver, echo, pong, close cleanly
    echo("text_single", [frame(OP_TEXT, "Hello")], [(OP_TEXT, b"Hello")]),
    echo("text_empty", [frame(OP_TEXT, b"")], [(OP_TEXT, b"")]),
    echo("binary_empty", [frame(OP_BINARY, b"")], [(OP_BINARY, b"")]),
    echo("text_len16", [frame(OP_TEXT, "x" * 200)], [(OP_TEXT, b"x" * 200)],
         doc="126 => 16-bit extended length"),
    echo("binary_len64", [frame(OP_BINARY, BIG)], [(OP_BINARY, BIG)],
         doc="127 => 64-bit extended length"),
    echo("many_frames_one_write", [b"".join(frame(OP_TEXT, str(i)) for i in range(100))],
         [(OP_TEXT, str(i).encode()) for i in range(100)]),
    echo("split_writes", [frame(OP_BINARY, bytes(range(256)) * 2)], [(OP_BINARY, bytes(range(256)) * 2)],
         split=True, doc="the frame arrives a few bytes at a time"),
    echo("fragmented_text_with_pings",
         [frame(OP_TEXT, "Hello, ", fin=False), frame(OP_PING, "ping-1"),
          frame(OP_CONT, "frag", fin=False), frame(OP_PING, b""),
          frame(OP_CONT, "mented!", fin=True)],
         [(OP_TEXT, b"Hello, fragmented!")], pongs=[b"ping-1", b""],
         doc="pings between fragments are answered at once, same payload"),
    echo("fragmented_binary_empty_fragments",
         [frame(OP_BINARY, b"\x00\x01", fin=False), frame(OP_CONT, b"", fin=False),
          frame(OP_CONT, b"\xff", fin=True)],
         [(OP_BINARY, b"\x00\x01\xff")]),
    echo("utf8_split_inside_character",
         [frame(OP_TEXT, KOSME[:3], fin=False), frame(OP_CONT, KOSME[3:], fin=True)],
         [(OP_TEXT, KOSME)], doc="a 2-byte character split over two fragments is valid"),
    echo("ping_125", [frame(OP_PING, P125)], [], pongs=[P125]),
    echo("unsolicited_pong_ignored", [frame(OP_PONG, "unsolicited"), frame(OP_TEXT, "after pong")],
         [(OP_TEXT, b"after pong")], doc="no answer to an unsolicited pong"),
    remote_close("close_1000", 1000, "bye", answers={1000}),
    remote_close("close_4001", 4001, "bye4001"),
    remote_close("close_3000_utf8_reason", 3000, "ünïcödé ✓"),
    remote_close("close_empty", None, beam_code=None),
    remote_close("data_after_close", 1000, "", answers={1000},
                 extra=[frame(OP_TEXT, "must be dropped")],
                 doc="a data frame after the close frame is not delivered"),
    # --- protocol errors: the client must fail the connection with 1002
    protocol_error("rsv1", [frame(OP_TEXT, "hello", rsv=4)]),
    protocol_error("rsv2", [frame(OP_TEXT, "hello", rsv=2)]),
    protocol_error("rsv3", [frame(OP_TEXT, "hello", rsv=1)]),
    protocol_error("rsv_on_ping", [frame(OP_PING, "x", rsv=7)]),
    protocol_error("opcode_3", [frame(3, "x")]),
    protocol_error("opcode_7", [frame(7, "x")]),
    protocol_error("opcode_11", [frame(11, "x")]),
    protocol_error("opcode_15", [frame(15, "x")]),
    protocol_error("ping_fragmented", [frame(OP_PING, "abc", fin=False)]),
    protocol_error("ping_payload_126", [frame(OP_PING, b"p" * 126)]),
    protocol_error("pong_payload_126", [frame(OP_PONG, b"p" * 126)]),
    protocol_error("close_payload_126", [frame(OP_CLOSE, close_payload(1000, b"r" * 124))]),
    protocol_error("continuation_without_start", [frame(OP_CONT, "orphan", fin=True)]),
    protocol_error("continuation_after_complete",
                   [frame(OP_TEXT, "done"), frame(OP_CONT, "orphan", fin=True)],
                   may_deliver=[(OP_TEXT, b"done")],
                   doc="a valid message (it may be delivered), then an orphan continuation"),
    protocol_error("text_inside_fragmented",
                   [frame(OP_TEXT, "ab", fin=False), frame(OP_TEXT, "cd", fin=True)]),
    protocol_error("binary_inside_fragmented",
                   [frame(OP_BINARY, b"ab", fin=False), frame(OP_BINARY, b"cd", fin=True)]),
    protocol_error("masked_frame", [frame(OP_TEXT, "masked", mask=b"\x01\x02\x03\x04")],
                   doc="RFC 6455 5.1: a client MUST close on a masked frame"),
    protocol_error("length64_msb_set", [frame(OP_BINARY, b"", length=1 << 63)],
                   codes={1002, 1009}, doc="the most significant bit of a 64-bit length MUST be 0"),
    protocol_error("close_1_byte", [frame(OP_CLOSE, b"\x03")]),
] + [
    protocol_error("close_code_%d" % code, [close(code)])
    for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535)
] + [
    # --- invalid UTF-8: the client must fail the connection with 1007
    protocol_error("invalid_utf8_text", [frame(OP_TEXT, KOSME + b"\xed\xa0\x80edited")], code=1007,
                   doc="UTF-16 surrogate"),
    protocol_error("invalid_utf8_overlong", [frame(OP_TEXT, b"\xc0\xaf")], code=1007),
    protocol_error("invalid_utf8_ff", [frame(OP_TEXT, b"ab\xff")], code=1007),
    protocol_error("invalid_utf8_fragmented",
                   [frame(OP_TEXT, KOSME, fin=False), frame(OP_CONT, b"\xf4\x90\x80\x80", fin=True)],
                   code=1007, doc="valid first fragment, code point > U+10FFFF in the second"),
    protocol_error("invalid_utf8_truncated_at_end",
                   [frame(OP_TEXT, b"ab\xce", fin=False), frame(OP_CONT, b"", fin=True)],
                   code=1007, doc="the message ends inside a character"),
    protocol_error("invalid_utf8_fail_fast",
                   [frame(OP_TEXT, KOSME + b"\xff", fin=False)], code=1007,
                   doc="no further fragment comes: ws_codec.h promises fail-fast validation"),
    protocol_error("close_invalid_utf8_reason", [frame(OP_CLOSE, close_payload(1000, b"\xff\xfe"))],
                   code=1007),
]

CASE_BY_NAME = {c.name: c for c in CASES}
assert len(CASE_BY_NAME) == len(CASES), "duplicate case name"


class Results:
    def __init__(self):
        self.wire = {}        # name -> list of failure strings ([] = ok)
        self.beam = None      # name -> (kind, code) from /report
        self.done = False

    def evaluate(self):
        failed = []
        for case in CASES:
            problems = []
            if case.name not in self.wire:
                problems.append("not run")
            else:
                problems.extend(self.wire[case.name])
            if self.beam is None:
                problems.append("no report from the client")
            elif case.name not in self.beam:
                problems.append("client reported nothing for this case")
            elif case.beam is not None:
                kind, code = self.beam[case.name]
                want_kind, want_codes = case.beam
                if kind != want_kind or (want_codes is not None and code not in want_codes):
                    problems.append("BEAM got %s %s, expected %s %s" % (
                        kind, code, want_kind, fmt_codes(want_codes)))
            if problems:
                failed.append((case.name, problems))
        return failed

    def finish(self):
        if self.done:
            return
        self.done = True
        failed = self.evaluate()
        passed = len(CASES) - len(failed)
        for name, problems in failed:
            doc = CASE_BY_NAME[name].doc
            sys.stderr.write("FAILED %s: %s%s\n" % (name, "; ".join(problems),
                                                    " (%s)" % doc if doc else ""))
        sys.stderr.flush()
        sys.stdout.write("%d passed, %d failed\n" % (passed, len(failed)))
        sys.stdout.flush()
        global EXIT_STATUS
        EXIT_STATUS = 1 if failed else 0

    def summary(self):
        failed = self.evaluate()
        return "%d passed, %d failed" % (len(CASES) - len(failed), len(failed))


def fmt_codes(codes):
    if codes is None:
        return "(any code)"
    return "|".join(str(c) for c in sorted(codes, key=str))


RESULTS = Results()
EXIT_STATUS = 1
CASE_TIMEOUT = 10.0


class Frames:
    """Incremental parser of the client's frames."""

    def __init__(self):
        self.buf = b""

    def feed(self, data):
        self.buf += data
        out = []
        while True:
            b = self.buf
            if len(b) < 2:
                break
            fin, rsv, op = b[0] >> 7, (b[0] >> 4) & 7, b[0] & 0x0F
            masked, n, i = b[1] >> 7, b[1] & 0x7F, 2
            if n == 126:
                if len(b) < 4:
                    break
                n, i = struct.unpack("!H", b[2:4])[0], 4
            elif n == 127:
                if len(b) < 10:
                    break
                n, i = struct.unpack("!Q", b[2:10])[0], 10
            key = None
            if masked:
                if len(b) < i + 4:
                    break
                key, i = b[i:i + 4], i + 4
            if len(b) < i + n:
                break
            payload = b[i:i + n]
            if key:
                payload = bytes(x ^ key[k % 4] for k, x in enumerate(payload))
            self.buf = b[i + n:]
            out.append((fin, rsv, op, bool(masked), payload))
        return out


class RawPeer(WebSocketServerProtocol):
    raw = False

    def onConnect(self, request):
        self.ws_path = request.path
        self.case = None
        if self.ws_path.startswith("/case/"):
            self.case = CASE_BY_NAME.get(self.ws_path[len("/case/"):])
            if self.case is None:
                from autobahn.websocket.types import ConnectionDeny
                raise ConnectionDeny(404, "no such case")
        return None

    # --- non-case paths use autobahn normally

    def onOpen(self):
        if self.ws_path == "/list":
            self.sendMessage("\n".join(c.name for c in CASES).encode("utf-8"), isBinary=False)
            self.sendClose(1000)
        elif self.case is not None:
            self.start_case()

    def onMessage(self, payload, isBinary):
        if self.ws_path == "/report":
            beam = {}
            for line in payload.decode("utf-8").splitlines():
                parts = line.split()
                if len(parts) == 3:
                    code = int(parts[2]) if parts[2].lstrip("-").isdigit() else None
                    beam[parts[0]] = (parts[1], code)
            RESULTS.beam = beam
            summary = RESULTS.summary()
            self.sendMessage(summary.encode("utf-8"), isBinary=False)
            self.sendClose(1000)
            reactor.callLater(0.2, stop)

    # --- raw mode for cases

    def dataReceived(self, data):
        if self.raw:
            self.on_raw(data)
        else:
            WebSocketServerProtocol.dataReceived(self, data)

    def start_case(self):
        self.raw = True
        self.frames = Frames()
        self.problems = []
        self.received = []        # complete messages (opcode, payload) from the client
        self.partial = None       # (opcode, [payloads]) while the client fragments
        self.pongs = []
        self.client_close = None  # code, NO_CODE, or None = no close frame yet
        self.sent_close = self.case.server_closes
        self.finished = False
        leftover, self.data = self.data, b""
        self.timer = reactor.callLater(CASE_TIMEOUT, self.on_timeout)
        if self.case.split:
            blob = b"".join(self.case.send)
            chunks = [blob[i:i + 7] for i in range(0, len(blob), 7)]
            for k, chunk in enumerate(chunks):
                reactor.callLater(0.001 * k, self.send_raw, chunk)
        else:
            for f in self.case.send:
                self.send_raw(f)
        if leftover:
            self.on_raw(leftover)

    def send_raw(self, data):
        if not self.finished and self.transport is not None:
            self.transport.write(data)

    def on_raw(self, data):
        for fin, rsv, op, masked, payload in self.frames.feed(data):
            if not masked:
                self.problems.append("client sent an unmasked frame (opcode %d)" % op)
            if rsv:
                self.problems.append("client set RSV bits %d" % rsv)
            if self.client_close is not None:
                self.problems.append("client sent opcode %d after its close frame" % op)
                continue
            if op == OP_CLOSE:
                self.on_client_close(payload)
            elif op == OP_PING:
                self.send_raw(frame(OP_PONG, payload))
            elif op == OP_PONG:
                self.pongs.append(payload)
            elif op in (OP_TEXT, OP_BINARY):
                if self.partial is not None:
                    self.problems.append("client started a new message inside a fragmented one")
                self.partial = (op, [payload])
                if fin:
                    self.on_message()
            elif op == OP_CONT:
                if self.partial is None:
                    self.problems.append("client sent a continuation without a start")
                else:
                    self.partial[1].append(payload)
                    if fin:
                        self.on_message()
            else:
                self.problems.append("client sent opcode %d" % op)
        self.check_progress()

    def on_message(self):
        op, parts = self.partial
        self.partial = None
        self.received.append((op, b"".join(parts)))

    def check_progress(self):
        case = self.case
        if self.finished or self.sent_close or case.client_close is not None:
            return
        if len(self.received) >= len(case.messages) and len(self.pongs) >= len(case.pongs):
            self.sent_close = True
            self.send_raw(close(1000, "done"))

    def on_client_close(self, payload):
        if len(payload) == 0:
            self.client_close = NO_CODE
        elif len(payload) == 1:
            self.client_close = "1-byte payload"
        else:
            self.client_close = struct.unpack("!H", payload[:2])[0]
        if not self.sent_close:
            # answer the client's close (RFC 6455 5.5.1), echoing its code
            self.sent_close = True
            self.send_raw(frame(OP_CLOSE, payload[:2]))
        # the server closes the TCP connection first (RFC 6455 7.1.1)
        self.finish_case()

    def on_timeout(self):
        self.timer = None
        if not self.finished:
            self.problems.append("timeout: no close from the client within %gs" % CASE_TIMEOUT)
            self.finish_case(abort=True)

    def finish_case(self, abort=False):
        if self.finished:
            return
        self.finished = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.judge()
        if abort:
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()

    def connectionLost(self, reason):
        if self.raw and not self.finished:
            if self.timer is not None and self.timer.active():
                self.timer.cancel()
            self.finished = True
            self.judge()
        WebSocketServerProtocol.connectionLost(self, reason)

    def judge(self):
        case, problems = self.case, list(self.problems)
        timed_out = any(p.startswith("timeout") for p in problems)
        if case.client_close is not None:
            # the client must close, with one of the expected codes
            if self.client_close is None:
                if not timed_out:
                    problems.append("client dropped TCP without a close frame")
            elif self.client_close not in case.client_close:
                problems.append("client closed with %s, expected %s" % (
                    self.client_close, fmt_codes(case.client_close)))
            # and must not deliver (so the conformance client cannot echo)
            # anything but the valid messages sent before the violation
            wrong = [m for m in self.received if m not in case.messages]
            if wrong:
                problems.append("client delivered (and echoed) what it must not: %s" % short(wrong))
        else:
            # valid traffic: exact echo and pongs, then a clean close
            if self.received != case.messages:
                problems.append("client echoed %s, expected %s" % (short(self.received), short(case.messages)))
            if self.pongs != case.pongs:
                problems.append("client ponged %s, expected %s" % (short(self.pongs), short(case.pongs)))
            if self.client_close is None:
                if not timed_out:
                    problems.append("client did not answer our close 1000")
            elif self.client_close != 1000:
                problems.append("client answered our close 1000 with %s" % (self.client_close,))
        RESULTS.wire[case.name] = problems


def short(items):
    text = repr(items)
    return text if len(text) <= 200 else text[:200] + "...(%d items)" % len(items)


def stop():
    RESULTS.finish()
    if reactor.running:
        reactor.stop()


def main():
    global CASE_TIMEOUT
    ap = argparse.ArgumentParser()
    ap.add_argument("--exit-on-eof", action="store_true")
    ap.add_argument("--case-timeout", type=float, default=CASE_TIMEOUT)
    args = ap.parse_args()
    CASE_TIMEOUT = args.case_timeout

    factory = WebSocketServerFactory("ws://127.0.0.1")
    factory.protocol = RawPeer
    factory.setProtocolOptions(autoPingInterval=0, openHandshakeTimeout=30,
                               closeHandshakeTimeout=5, maxMessagePayloadSize=0,
                               maxFramePayloadSize=0, failByDrop=False)
    listening = reactor.listenTCP(0, factory, interface="127.0.0.1")
    sys.stdout.write("PORT %d\n" % listening.getHost().port)
    sys.stdout.flush()

    if args.exit_on_eof:
        import threading

        def watch_stdin():
            while os.read(0, 65536):
                pass
            reactor.callFromThread(stop)

        threading.Thread(target=watch_stdin, daemon=True).start()

    # SIGTERM and SIGINT make Twisted stop the reactor; print the summary then.
    reactor.addSystemEventTrigger("before", "shutdown", RESULTS.finish)
    reactor.run()
    RESULTS.finish()
    sys.exit(EXIT_STATUS)


if __name__ == "__main__":
    main()
