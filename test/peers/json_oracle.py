#!/usr/bin/python3
"""Oracle for ws_port_json's tests: python3's json module judges our decoder.

Usage: json_oracle.py FILE

Each line of FILE is ``d:<base64 document> <base64 ours | !ERR>``: a JSON
document, and either what ws_port_json decoded it to, encoded again by
ws_port_json, or ``!ERR`` when ws_port_json refused it. For each line the
oracle parses the document with python's json, held to RFC 8259 (the input
must be valid UTF-8; NaN and Infinity are refused, and so are lone
surrogates, which UTF-8 cannot carry, and floats too big for a double,
which python would turn into inf), and checks that:

  - both refuse the document, or
  - both accept it and ws_port_json's re-encoding parses (in python) to a
    value equal to python's, with the same types (int is not float, bool is
    not int).

It prints one line ``AGREE <n>`` or ``DISAGREE <n>`` with the counts, then
one line per disagreement: ``<base64 document> <what differed>``.
"""

import base64
import json
import math
import sys

sys.set_int_max_str_digits(0)


def refuse_constant(name):
    raise ValueError("not JSON: " + name)


def has_surrogate(s):
    return any(0xD800 <= ord(c) <= 0xDFFF for c in s)


def strict(value):
    """Raises ValueError where RFC 8259 + UTF-8 cannot carry the value."""
    if isinstance(value, str):
        if has_surrogate(value):
            raise ValueError("lone surrogate")
    elif isinstance(value, float):
        if math.isinf(value) or math.isnan(value):
            raise ValueError("float out of range")
    elif isinstance(value, list):
        for v in value:
            strict(v)
    elif isinstance(value, dict):
        for k, v in value.items():
            strict(k)
            strict(v)


def parse(data):
    text = data.decode("utf-8")  # strict: invalid UTF-8, surrogates refused
    value = json.loads(text, parse_constant=refuse_constant)
    strict(value)
    return value


def same(a, b):
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def main():
    agree = 0
    bad = []
    with open(sys.argv[1], "rb") as f:
        for line in f:
            doc64, ours64 = line.split()
            doc64 = doc64[2:]
            doc = base64.b64decode(doc64)
            try:
                expected = parse(doc)
                ok = True
            except Exception as e:  # ValueError, RecursionError, UnicodeDecodeError
                ok = False
                why = repr(e)[:120]
            if ours64 == b"!ERR":
                if ok:
                    bad.append((doc64, "python accepts, ws_port_json refuses"))
                else:
                    agree += 1
                continue
            if not ok:
                bad.append((doc64, "python refuses (%s), ws_port_json accepts" % why))
                continue
            ours_text = base64.b64decode(ours64)
            try:
                ours = parse(ours_text)
            except Exception as e:
                bad.append((doc64, "ws_port_json's encoding is not JSON: %r" % (e,)))
                continue
            if same(expected, ours):
                agree += 1
            else:
                bad.append((doc64, "values differ: python %r, ws_port_json %r"
                            % (expected, ours)))
    print("AGREE %d" % agree)
    print("DISAGREE %d" % len(bad))
    for doc64, what in bad[:50]:
        print("%s %s" % (doc64.decode(), what))


if __name__ == "__main__":
    main()
