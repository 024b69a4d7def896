#!/usr/bin/env python3
"""stall_reader: plays the BEAM for the port program, but stops reading its
stdout for a while (which a real BEAM never does: it drains the port into a
mailbox). Used by test/flow_control_test.exs to check the port program's
output-queue watermarks: while nobody reads its stdout, it must stop
reading every socket, keep its memory bounded, and later deliver every
message in order.

    stall_reader.py PROGRAM CONNECT_HEX PAUSE_SECS SIZE

PROGRAM     the port program (priv/ws_port)
CONNECT_HEX the connect command, term_to_binary({connect, Id, Url, Opts}) in
            hex (one packet; the test builds it with ws_port_proto)
PAUSE_SECS  how long to stop reading once the first data packet arrived
SIZE        payload size of the firehose's seq-mode stream (seq=1)

Prints on stdout, one line each:
    BASE_RSS <kib>               the port program's VmRSS before the connect
    PAUSE_START                  stopped reading (after the first data packet)
    RSS <kib>                    the port program's VmRSS, every 100 ms of the pause
    PAUSE_END
    RESULT msgs=N errors=E max_rss_kib=K closed=1|0
errors counts messages out of order or corrupt (the first is described on
stderr). Exits when the port program's `closed` event arrives (then closes
its stdin) or on EOF.
"""
import os
import struct
import subprocess
import sys
import time

SEQ_MOD = 251


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def main():
    program, connect_hex, pause, size = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    pattern = bytes(k % SEQ_MOD for k in range(size - 8 + SEQ_MOD))
    cmd = bytes.fromhex(connect_hex)
    p = subprocess.Popen([program], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    time.sleep(0.2)
    print(f"BASE_RSS {rss_kib(p.pid)}", flush=True)
    p.stdin.write(struct.pack(">I", len(cmd)) + cmd)
    p.stdin.flush()
    out = p.stdout
    buf = bytearray()
    seq = 0
    errors = 0
    max_rss = 0
    paused = False
    closed = 0

    def read_more():
        chunk = out.read(1 << 20)
        if not chunk:
            return False
        buf.extend(chunk)
        return True

    pos = 0
    while True:
        # one packet
        while len(buf) - pos < 4:
            if pos:
                del buf[:pos]
                pos = 0
            if not read_more():
                print(f"RESULT msgs={seq} errors={errors} max_rss_kib={max_rss} closed={closed}", flush=True)
                return
        (plen,) = struct.unpack_from(">I", buf, pos)
        while len(buf) - pos < 4 + plen:
            if pos:
                del buf[:pos]
                pos = 0
            if not read_more():
                print(f"RESULT msgs={seq} errors={errors} max_rss_kib={max_rss} closed={closed}", flush=True)
                return
        pkt = bytes(buf[pos + 4 : pos + 4 + plen])
        pos += 4 + plen
        if pkt[0] == 1:
            off = 1
            while off < len(pkt):
                _id, _op, ln = struct.unpack_from(">IBI", pkt, off)
                off += 9
                payload = pkt[off : off + ln]
                off += ln
                r = seq % SEQ_MOD
                if ln != size or payload[:8] != struct.pack(">Q", seq) or payload[8:] != pattern[r : r + size - 8]:
                    if not errors:
                        print(f"stall_reader: message {seq} out of order or corrupt", file=sys.stderr)
                    errors += 1
                seq += 1
            if not paused:
                paused = True
                print("PAUSE_START", flush=True)
                t_end = time.monotonic() + pause
                while time.monotonic() < t_end:
                    k = rss_kib(p.pid)
                    max_rss = max(max_rss, k)
                    print(f"RSS {k}", flush=True)
                    time.sleep(0.1)
                print("PAUSE_END", flush=True)
        elif pkt[0] == 131:
            # term events: {up, ...} first; {closed, ...} at the end. A
            # closed tuple starts with 131,104,3,(100|119) "closed".
            if b"closed" in pkt[:16]:
                closed = 1
                break
        k = rss_kib(p.pid)
        max_rss = max(max_rss, k)
    print(f"RESULT msgs={seq} errors={errors} max_rss_kib={max_rss} closed={closed}", flush=True)
    p.stdin.close()
    p.wait(timeout=10)


if __name__ == "__main__":
    main()
