#!/usr/bin/python3
"""Writes the seed corpora of the libFuzzer harnesses (c_test/fuzz_*.c) into
c_test/corpus/<harness>/. Deterministic: running it again rewrites the same
files. The command seeds are made by `erl` (term_to_binary), so erl must be
on PATH.

    /usr/bin/python3 c_test/make_corpus.py

Each harness reads a few configuration bytes first (see its header comment):
fuzz_parser 5 (max_message_size selector, split seed), fuzz_handshake 2
(offered protocols, prefix selector), fuzz_proto 1 (error buffer size);
fuzz_request takes NUL-separated fields (URL, key, protocols, headers);
fuzz_text 1 (output size, 0 = enough); fuzz_lines 2 (line limit, binary bit and
split seed).
"""
import base64
import hashlib
import os
import shutil
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")


def frame(op, payload=b"", fin=True, rsv=0, mask=None, length=None, len_form=None):
    """A server frame. length overrides the announced length; len_form forces
    the 7/16/64-bit encoding."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | op
    mbit = 0x80 if mask else 0
    form = len_form or (7 if n < 126 else 16 if n < 65536 else 64)
    if form == 7:
        hdr = bytes([b0, mbit | n])
    elif form == 16:
        hdr = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    else:
        hdr = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    if mask:
        hdr += mask
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    return hdr + payload


def close(code=None, reason=b""):
    return frame(8, b"" if code is None else struct.pack(">H", code) + reason)


def parser_seeds():
    t, b, c = 1, 2, 0
    streams = {
        "text": frame(t, b"hello"),
        "binary_16bit": frame(b, bytes(range(256)) * 2),
        "binary_64bit_form": frame(b, b"abc", len_form=64),
        "fragmented_text": frame(t, b"hel", fin=False) + frame(c, b"lo ", fin=False)
        + frame(c, b"world"),
        "ping_inside_fragments": frame(t, b"a", fin=False) + frame(9, b"p")
        + frame(c, b"b"),
        "ping_pong": frame(9, b"ping!") + frame(10, b"") + frame(9, b"x" * 125),
        "close_reason": close(1000, "bye \u00e9".encode()),
        "close_empty": close(),
        "close_1byte": frame(8, b"\x03"),
        "close_bad_code": close(1005),
        "close_bad_utf8": close(1000, b"\xc3\x28"),
        "len63": frame(b, b"", length=(1 << 63) - 1),
        "len64_top_bit": frame(b, b"", length=1 << 63),
        "masked": frame(t, b"hi", mask=b"\x01\x02\x03\x04"),
        "rsv1": frame(t, b"hi", rsv=4),
        "opcode3": frame(3, b"hi"),
        "cont_without_message": frame(c, b"x"),
        "new_message_inside": frame(t, b"a", fin=False) + frame(b, b"b"),
        "fragmented_ping": frame(9, b"p", fin=False),
        "ping_126": frame(9, b"x" * 126),
        "ping_nonminimal": frame(9, b"abc", len_form=16),
        "utf8_split": frame(t, "\u20ac".encode()[:1], fin=False)
        + frame(c, "\u20ac".encode()[1:] + "\U0001F600".encode()),
        "utf8_bad": frame(t, b"ok\xed\xa0\x80"),
        "utf8_truncated_end": frame(t, b"ok\xe2\x82"),
        "empty_fragments": frame(t, b"", fin=False) + frame(c, b"", fin=False)
        + frame(c, b""),
        "over_max": frame(b, b"z" * 600),
        "over_max_fragments": b"".join(frame(t if i == 0 else c, b"q" * 40, fin=i == 19)
                                       for i in range(20)),
        "endless_fragments": frame(t, b"f" * 8, fin=False)
        + b"".join(frame(c, b"f" * 8, fin=False) for _ in range(30)),
        "data_after_close": close(1001) + frame(t, b"late"),
        "many_small": b"".join(frame(t, b"m%d" % i) for i in range(40)),
    }
    # config: max 1, max 129, max 505, unlimited; split seeds vary
    configs = [bytes([0x00, 0x00, 0, 0, 1]), bytes([0x10, 0x03, 0x12, 0x34, 0x56]),
               bytes([0x3F, 0x07, 0xAB, 0xCD, 0xEF]), bytes([0xC0, 0x05, 1, 2, 3])]
    seeds = {}
    for i, (name, data) in enumerate(sorted(streams.items())):
        seeds[name] = configs[i % len(configs)] + data
    seeds["text_unlimited_bytewise"] = bytes([0xC0, 0x00, 9, 9, 9]) + streams["fragmented_text"]
    return seeds


KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = base64.b64encode(hashlib.sha1((KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
                                       .encode()).digest()).decode()


def response(lines, status="HTTP/1.1 101 Switching Protocols"):
    return (status + "\r\n" + "".join(l + "\r\n" for l in lines) + "\r\n").encode()


def handshake_seeds():
    ok = ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Accept: " + ACCEPT]
    seeds = {
        "ok": response(ok),
        "ok_with_frame": response(ok) + b"\x81\x02hi",
        "ok_protocol": response(ok + ["Sec-WebSocket-Protocol: chat"]),
        "protocol_not_offered": response(ok + ["Sec-WebSocket-Protocol: other"]),
        "bad_accept": response(ok[:2] + ["Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA="]),
        "repeated_accept": response(ok + ["Sec-WebSocket-Accept: " + ACCEPT]),
        "no_upgrade": response(ok[1:]),
        "connection_list": response(["Upgrade: WebSocket", "Connection: keep-alive, upgrade",
                                     "Sec-WebSocket-Accept: " + ACCEPT]),
        "extension": response(ok + ["Sec-WebSocket-Extensions: permessage-deflate"]),
        "status_200": response(["Content-Length: 0"], "HTTP/1.1 200 OK"),
        "status_401": response(["WWW-Authenticate: Basic"], "HTTP/1.0 401 Unauthorized"),
        "no_reason": response(ok, "HTTP/1.1 101"),
        "folding": b"HTTP/1.1 101 X\r\nUpgrade: websocket\r\n continued\r\n\r\n",
        "bare_cr": b"HTTP/1.1 101 X\r\nUpgrade: web\rsocket\r\n\r\n",
        "bad_header": b"HTTP/1.1 101 X\r\nno colon here\r\n\r\n",
        "ctl_in_value": b"HTTP/1.1 101 X\r\nX-A: a\x01b\r\n\r\n",
        "ows": b"HTTP/1.1 101 X\r\nUpgrade: \t websocket \t\r\nX-Empty:\r\n\r\n",
        "too_many_headers": response(["X-H%d: v" % i for i in range(101)]),
        "incomplete": response(ok)[:-2],
        "bad_status": b"HTTP/2 101\r\n\r\n",
        "status_099": b"HTTP/1.1 099 X\r\n\r\n",
        "lf_only": b"HTTP/1.1 101 X\nUpgrade: websocket\n\n",
        "huge_line": b"HTTP/1.1 101 X\r\nX-Big: " + b"a" * 3000 + b"\r\n\r\n",
    }
    out = {k: bytes([i % 8, (i * 37) % 256]) + v for i, (k, v) in enumerate(sorted(seeds.items()))}
    # issue 11: interim responses, the version, many small headers, a long
    # head of short lines (byte 0's bits 3-7 and byte 1 seed the split
    # points of the resumable reader)
    interim = response([], "HTTP/1.1 100 Continue")
    more = {
        "interim_100": interim + response(ok) + b"\x81\x02hi",
        "interim_103_102": response(["Link: </a.css>; rel=preload"], "HTTP/1.1 103 Early Hints")
        + response([], "HTTP/1.1 102 Processing") + response(ok + ["Sec-WebSocket-Protocol: chat"]),
        "interim_then_401": interim + response(["WWW-Authenticate: Basic"], "HTTP/1.1 401 No"),
        "interim_only": interim + interim,
        "interim_then_bad": interim + b"HTTP/2 101\r\n\r\n",
        "interim_bad_header": b"HTTP/1.1 100 Continue\r\nno colon\r\n\r\n" + response(ok),
        "http10_101": response(ok, "HTTP/1.0 101 Switching Protocols"),
        "http12_101": response(ok, "HTTP/1.2 101 Switching Protocols"),
        "small_headers_120": response(ok + ["X-H%d: v" % i for i in range(117)]),
        "short_lines_no_end": b"HTTP/1.1 101 Switching Protocols\r\n"
        + b"".join(b"h%d: v\r\n" % i for i in range(400)),
        "terminator_at_end": response(ok)[:-1] + b"\n",
    }
    for i, (k, v) in enumerate(sorted(more.items())):
        out[k] = bytes([(i % 8) | (i * 41 % 32) << 3, (i * 73 + 5) % 256]) + v
    return out


# Erlang terms for fuzz_proto (written with erl's term_to_binary).
TERMS = {
    "connect_min": '{connect, 1, <<"ws://127.0.0.1:9000/echo">>, []}',
    "connect_all": '{connect, 7, <<"wss://example.com/x?y=1">>, [{headers, [{<<"X-A">>, <<"b">>}]},'
                   ' {protocols, [<<"chat">>, <<"v1.x">>]}, {connect_timeout, 5000},'
                   ' {max_message_size, 1048576}, {active, 10}, {verify, verify_none},'
                   ' {cacertfile, <<"/tmp/ca.pem">>}, {certfile, <<"/tmp/c.pem">>},'
                   ' {keyfile, <<"/tmp/c.key">>}, {server_name, <<"example.com">>},'
                   ' {ping_interval, 1000}, {idle_timeout, 0}]}',
    "connect_active_once": '{connect, 2, <<"ws://h/">>, [{active, once}, {active, false}]}',
    "connect_bad_opt": '{connect, 3, <<"ws://h/">>, [{connect_timeout, -5}]}',
    "connect_unknown_opt": '{connect, 3, <<"ws://h/">>, [{frobnicate, true}]}',
    "connect_string_url": '{connect, 3, "ws://h/", []}',
    "connect_improper": '{connect, 3, <<"ws://h/">>, [{active, true} | foo]}',
    "send_text": '{send, 1, text, <<"hello">>}',
    "send_ping": '{send, 1, ping, <<"p">>}',
    "send_big_ping": '{send, 1, ping, binary:copy(<<"x">>, 126)}',
    "send_bad_type": '{send, 1, frob, <<"x">>}',
    "close": '{close, 1, 1000, <<"bye">>}',
    "close_bad_code": '{close, 1, 1005, <<>>}',
    "close_bad_utf8": '{close, 1, 1000, <<255>>}',
    "active_n": '{active, 4294967295, -3}',
    "active_big": '{active, 1, 1 bsl 40}',
    "stats": '{stats, 9}',
    "stats_id0": '{stats, 0}',
    "stats_bigid": '{stats, 1 bsl 70}',
    "reconnect": '{reconnect, 1, 500}',
    "unknown": '{frobnicate, 1}',
    "not_tuple": '[connect, 1]',
    "deep": 'lists:foldl(fun(_, A) -> {A} end, stats, lists:seq(1, 20))',
    "float_id": '{stats, 1.5}',
    "pid": '{stats, self()}',
    "map": '#{stats => 1}',
}


def proto_seeds():
    names = sorted(TERMS)
    expr = "[" + ",".join(TERMS[n] for n in names) + "]"
    prog = ("L = %s, [io:format(\"~s~n\", [binary:encode_hex(term_to_binary(T))]) "
            "|| T <- L], halt()." % expr)
    out = subprocess.run(["erl", "-noshell", "-eval", prog], check=True,
                         capture_output=True, text=True).stdout.split()
    if len(out) != len(names):
        sys.exit("erl gave %d terms, expected %d" % (len(out), len(names)))
    seeds = {}
    for n, h in zip(names, out):
        seeds[n] = bytes.fromhex(h)
    # truncated and huge-length variants of real commands
    seeds["connect_truncated"] = seeds["connect_all"][:40]
    seeds["send_huge_binary_len"] = seeds["send_text"][:-9] + b"\x6d\xff\xff\xff\xf0hello"
    seeds["list_huge_count"] = b"\x83\x68\x02\x64\x00\x05stats\x6c\x7f\xff\xff\xff\x6a"
    seeds["trailing_bytes"] = seeds["stats"] + b"\x00"
    seeds["raw_send"] = b"\x01\x00\x00\x00\x01\x01hello"
    seeds["raw_ping_big"] = b"\x01\x00\x00\x00\x01\x09" + b"x" * 126
    seeds["raw_bad_opcode"] = b"\x01\x00\x00\x00\x01\x08"
    seeds["raw_short"] = b"\x01\x00\x00"
    seeds["unknown_type"] = b"\x07abc"
    seeds["version_only"] = b"\x83"
    out = {k: bytes([(i % 4) | (4 if i % 5 == 0 else 0)]) + v
           for i, (k, v) in enumerate(sorted(seeds.items()))}
    out.update(proto_tls_seeds())
    return out


# The client certificate and key in memory (cert, key, password): kept apart
# from TERMS so the seeds above keep their names and bytes.
TLS_TERMS = {
    "connect_client_cert": '{connect, 1, <<"wss://h/">>, [{cert, [<<48,3,2,1,1>>, <<48,0>>]},'
                           ' {key, <<"-----BEGIN PRIVATE KEY-----\\nMAA=\\n-----END PRIVATE KEY-----\\n">>},'
                           ' {password, <<"pw", 0, "x">>}, {verify, verify_none}]}',
    "connect_cert_bad": '{connect, 1, <<"wss://h/">>, [{cert, [<<1>>, <<>>]}, {key, <<>>}]}',
    "connect_cert_many": '{connect, 1, <<"wss://h/">>, [{cert, lists:duplicate(17, <<48,0>>)}]}',
    "connect_key_twice": '{connect, 1, <<"wss://h/">>, [{key, <<48,0>>}, {key, <<48,1,0>>},'
                         ' {password, <<"a">>}, {password, <<"bb">>}, {cert, [<<48,0>> | x]}]}',
    "connect_password_big": '{connect, 1, <<"wss://h/">>, [{password, binary:copy(<<"p">>, 1025)}]}',
}


def proto_tls_seeds():
    names = sorted(TLS_TERMS)
    expr = "[" + ",".join(TLS_TERMS[n] for n in names) + "]"
    prog = ("L = %s, [io:format(\"~s~n\", [binary:encode_hex(term_to_binary(T))]) "
            "|| T <- L], halt()." % expr)
    out = subprocess.run(["erl", "-noshell", "-eval", prog], check=True,
                         capture_output=True, text=True).stdout.split()
    if len(out) != len(names):
        sys.exit("erl gave %d terms, expected %d" % (len(out), len(names)))
    return {n: bytes([i % 4 | 4 * (i % 2)]) + bytes.fromhex(h)
            for i, (n, h) in enumerate(zip(names, out))}


def request_seeds():
    key = KEY.encode()
    seeds = {
        "plain": [b"ws://127.0.0.1:9000/echo", key],
        "tls_default_port": [b"wss://Example.COM/a/b?c=d#frag", key],
        "ipv6": [b"ws://[::1]:8080/", key],
        "ipv6_upper": [b"ws://[::1F]:8080/", key],
        "ipv6_no_port": [b"wss://[fe80::1%25eth0]", key],
        "empty_port": [b"ws://host:/x", key],
        "query_only": [b"ws://host?x=1", key],
        "protocols": [b"ws://h/", key, b"Pchat", b"Pv1.x"],
        "headers": [b"ws://h/", key, b"Pchat", b"X-Token", b"abc", b"Origin",
                    b"http://h"],
        "header_crlf": [b"ws://h/", key, b"X-A", b"a\r\nInjected: 1"],
        "header_reserved": [b"ws://h/", key, b"Host", b"evil"],
        "header_bad_name": [b"ws://h/", key, b"X A", b"v"],
        "bad_proto": [b"ws://h/", key, b"Pch at"],
        "bad_key": [b"ws://h/", b"k e y"],
        "small_cap": [b"2ws://h/", key],
        "cap_minus_one": [b"0ws://h/long/path", key],
        "userinfo": [b"ws://u@h/", key],
        "bad_scheme": [b"http://h/", key],
        "port_too_big": [b"ws://h:65536/", key],
        "port_zero": [b"ws://h:0/", key],
        "path_space": [b"ws://h/a b", key],
        "path_8bit": [b"ws://h/\xc3\xa9", key],
        "long_host": [b"ws://" + b"a" * 300 + b"/", key],
        "long_path": [b"ws://h/" + b"p" * 4100, key],
    }
    return {k: b"\0".join(v) for k, v in sorted(seeds.items())}


def text_seeds():
    return {
        "plain": b"\0going away",
        "utf8": b"\0w\xc3\xb6rld \xe2\x82\xac \xf0\x9f\x98\x80",
        "controls": b"\0\x1b[2J\x1b]0;title\x07a\nb\x7f\xc2\x9b1m\\",
        "invalid": b"\0\xff\xfe\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80ok\xe2\x82",
        "truncated": b"\x07ab\x1b\xe2\x82\xac\\",
    }


def lines_seeds():
    # <limit> <binary | seed << 1> <stdin bytes>
    return {
        "text": b"\x40\x06hello\nw\xc3\xb6rld\n\nlast",
        "crlf": b"\x40\x0aa\r\nb\r\n\r\n",
        "too_long": b"\x04\x10abcd\nabcde\nok\n",
        "long_no_newline": b"\x08\x01ok\n" + b"x" * 40,
        "bad_utf8": b"\x40\x20ok\n\xe2\x82\n\xed\xa0\x80\xc0\xaf\n",
        "binary": b"\x40\x21\xff\x00\xfe\n\x80\r\nend",
        "zero_limit": b"\x00\x02\n\n\nx",
        "big_limit": b"\xff\x44" + b"\xf0\x9f\x98\x80" * 60 + b"\n" + b"y" * 300,
    }


def write(harness, seeds):
    d = os.path.join(OUT, harness)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    print("%s: %d seeds" % (harness, len(seeds)))


if __name__ == "__main__":
    write("fuzz_parser", parser_seeds())
    write("fuzz_handshake", handshake_seeds())
    write("fuzz_proto", proto_seeds())
    write("fuzz_request", request_seeds())
    write("fuzz_text", text_seeds())
    write("fuzz_lines", lines_seeds())
