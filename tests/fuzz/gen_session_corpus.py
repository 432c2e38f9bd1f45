#!/usr/bin/env python3
"""Seed corpus for fuzz_session (tests/fuzz/corpus/session/).

Input format of fuzz_session.c: byte 0 = mode (bits 0..1 == 0: the bytes
are the whole stream, else a fixed CONNECT "fz" clean session comes first;
bits 2..4: chunk size exponent), byte 1 = chunk-size seed, then MQTT bytes.
    python3 tests/fuzz/gen_session_corpus.py [outdir]
"""
import os
import struct
import sys


def rl(n):
    out = b""
    while True:
        b = n % 128
        n //= 128
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def pkt(h, body):
    return bytes([h]) + rl(len(body)) + body


def s(x):
    x = x.encode() if isinstance(x, str) else x
    return struct.pack(">H", len(x)) + x


def connect(cid, clean=True, will=None, keep=0, level=4):
    flags = 0x02 if clean else 0
    pay = s(cid)
    if will:
        flags |= 0x04 | (will[2] << 3)
        pay += s(will[0]) + s(will[1])
    name = b"MQTT" if level == 4 else b"MQIsdp"
    return pkt(0x10, s(name) + bytes([level, flags]) + struct.pack(">H", keep) + pay)


def subscribe(pid, *filters):
    body = struct.pack(">H", pid) + b"".join(s(f) + bytes([q]) for f, q in filters)
    return pkt(0x82, body)


def unsubscribe(pid, *filters):
    return pkt(0xA2, struct.pack(">H", pid) + b"".join(s(f) for f in filters))


def publish(topic, payload, qos=0, pid=1, retain=False, dup=False):
    h = 0x30 | (qos << 1) | (1 if retain else 0) | (0x08 if dup else 0)
    body = s(topic) + (struct.pack(">H", pid) if qos else b"") + payload
    return pkt(h, body)


def ack(t, pid):
    return pkt({"puback": 0x40, "pubrec": 0x50, "pubrel": 0x62, "pubcomp": 0x70}[t],
               struct.pack(">H", pid))


PING = pkt(0xC0, b"")
DISC = pkt(0xE0, b"")

SEEDS = {
    # after the fixed CONNECT (mode 0x01: chunks up to 2 bytes, 0x0d: up to 16,
    # 0x1d: up to 256: the whole session at once, before any AMQP outcome)
    "sub_pub_qos012_pipelined": (0x1d, subscribe(1, ("fz/#", 1)) + publish("a/b", b"q1", 1, 2)
                                 + publish("a/b", b"q2", 2, 3) + ack("pubrel", 3) + DISC),
    "sub_pub_qos012": (0x0d, subscribe(1, ("fz/#", 1), ("a/+/c", 2)) + publish("a/b", b"q0")
                       + publish("a/b", b"q1", 1, 2) + publish("a/b", b"q2", 2, 3)
                       + ack("pubrel", 3) + PING + unsubscribe(4, "a/+/c") + DISC),
    "pub_qos2_small_chunks": (0x01, publish("t", b"x" * 40, 2, 7) + ack("pubrel", 7) + DISC),
    "sub_then_acks": (0x0d, subscribe(9, ("fz/out", 1)) + PING + ack("puback", 1)
                      + ack("pubrec", 2) + ack("pubcomp", 2) + DISC),
    "retain_ping": (0x09, publish("r/x", b"keep", 1, 11, retain=True) + PING + PING + DISC),
    "dup_publish": (0x0d, publish("d", b"1", 1, 5) + publish("d", b"1", 1, 5, dup=True) + DISC),
    "second_connect": (0x1d, connect("fz") + DISC),
    "many_subs": (0x11, subscribe(2, *[("s/%d/#" % i, i % 3) for i in range(20)])
                  + unsubscribe(3, *["s/%d/#" % i for i in range(10)]) + DISC),
    # raw (mode & 3 == 0): the whole stream, own CONNECT
    "raw_will_persistent": (0x0c, connect("p1", clean=False, will=("w/t", b"bye", 1), keep=30)
                            + subscribe(1, ("x/#", 2)) + publish("x/y", b"z", 2, 1)
                            + ack("pubrel", 1) + DISC),
    "raw_v31": (0x0c, connect("old", level=3) + PING + DISC),
    "raw_empty_id": (0x0c, connect("") + publish("e", b"", 1, 1) + DISC),
    "raw_no_disconnect": (0x08, connect("nd", will=("w", b"gone", 0)) + publish("q", b"1")),
}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus", "session")
    os.makedirs(out, exist_ok=True)
    for name, (mode, body) in sorted(SEEDS.items()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(bytes([mode, 0x5a]) + body)


if __name__ == "__main__":
    main()
