#!/usr/bin/python3
"""Test only: a stand-in for priv/ws_port that loses connections.

Run by a driver as its port program ({port_program, ".../lossy_port.py"}):
it starts the real port program (priv/ws_port beside test/, with the same
arguments, the same stdout, stderr and events socket) and passes every
command on to it unchanged, except a `connect' whose URL holds
"lost-by-port". That one is dropped: the port program never hears of the
connection while the driver believes it asked for it, as it would after a
port program bug that forgot a connection. ws_port_driver_tests uses it to
check that such a connection still gets its one final outcome.

EOF on stdin closes the program's stdin; the exit status is the program's.
"""
import os
import subprocess
import sys

MARK = b"lost-by-port"

here = os.path.dirname(os.path.abspath(__file__))
real = os.path.join(here, "..", "..", "priv", "ws_port")
child = subprocess.Popen([real] + sys.argv[1:], stdin=subprocess.PIPE)
inp = sys.stdin.buffer


def read_exact(n):
    data = inp.read(n)
    if data is None or len(data) < n:
        return None
    return data


def is_lost_connect(body):
    # term_to_binary({connect, Id, Url, Opts}): version 131, a 4-tuple,
    # then the atom connect (ATOM_EXT or a small atom)
    head = body[:16]
    return body[:1] == b"\x83" and b"connect" in head and MARK in body


while True:
    hdr = read_exact(4)
    if hdr is None:
        break
    body = read_exact(int.from_bytes(hdr, "big"))
    if body is None:
        break
    if is_lost_connect(body):
        sys.stderr.write("lossy_port: dropped a connect\n")
        continue
    try:
        child.stdin.write(hdr + body)
        child.stdin.flush()
    except BrokenPipeError:
        break

try:
    child.stdin.close()
except BrokenPipeError:
    pass
rc = child.wait()
sys.exit(rc if rc >= 0 else 128 - rc)
