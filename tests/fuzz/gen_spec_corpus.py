#!/usr/bin/python3
"""Write the seed corpus of fuzz_spec: one encoded AMQP message per spec
message kind (spec/mqtt-over-amqp.md), plus the wire variants the decoder
must tolerate or refuse (several Data sections, int message-id, AmqpValue
payload, symbolic section descriptor, older SUBSCRIPTIONS without
x-opt-session-present).

Encoded with python3-qpid-proton (an implementation independent of our C
encoders), so the seeds also cross-check what a native peer sends.

    /usr/bin/python3 tests/fuzz/gen_spec_corpus.py [outdir]
    (default: tests/fuzz/corpus/spec next to this script)
"""
import os
import struct
import sys

from proton import Message, int32, symbol, ulong

QOS = symbol("x-opt-mqtt-qos")
RETAIN = symbol("x-opt-retain-message")
SESSION = symbol("x-opt-session-present")


def data_section(payload):
    """One Data section: described(ulong 0x75, binary)."""
    if len(payload) < 256:
        return b"\x00\x53\x75\xa0" + bytes([len(payload)]) + payload
    return b"\x00\x53\x75\xb0" + struct.pack(">I", len(payload)) + payload


def enc(**kw):
    return Message(**kw).encode()


def seeds():
    s = {}
    s["publish_qos0.bin"] = enc(address="sensors/t1", inferred=True, body=b"21.5",
                                annotations={RETAIN: False, QOS: int32(0)})
    s["publish_qos1_id.bin"] = enc(address="a/b/c", inferred=True, body=b"\x00\x01binary",
                                   durable=True, id=ulong(42), delivery_count=1,
                                   annotations={RETAIN: True, QOS: int32(1)})
    s["publish_qos2_big.bin"] = enc(address="big/x", inferred=True, body=bytes(range(256)) * 3,
                                    durable=True, id=ulong(65535),
                                    annotations={RETAIN: False, QOS: int32(2)})
    # native AMQP sender: no annotations, AmqpValue string payload
    s["publish_value_str.bin"] = enc(address="native/topic", body="hello")
    s["will.bin"] = enc(subject="will", address="clients/c1/status", inferred=True,
                        body=b"offline", durable=True,
                        annotations={RETAIN: True, QOS: int32(1)})
    s["will_clear.bin"] = enc(subject="will-clear")
    s["list.bin"] = enc(subject="list", correlation_id="$mqtt.to.c1.publish",
                        reply_to="$mqtt.to.c1.control")
    s["subscriptions.bin"] = enc(subject="subscriptions", annotations={SESSION: True},
                                 body={"a/+": int32(1), "b/#": int32(2), "c": int32(0)})
    # older EnMasse form: no x-opt-session-present
    s["subscriptions_old.bin"] = enc(subject="subscriptions", body={"x/y": int32(0)})
    s["subscriptions_empty.bin"] = enc(subject="subscriptions", annotations={SESSION: False},
                                       body={})
    s["close.bin"] = enc(subject="close", correlation_id="$mqtt.to.c1.publish")
    s["subscribe.bin"] = enc(subject="subscribe", id=ulong(7),
                             correlation_id="$mqtt.to.dev.42.publish",
                             body={"a/+/c": int32(1), "#": int32(0), "s/x": int32(2)})
    s["unsubscribe.bin"] = enc(subject="unsubscribe", id=ulong(8),
                               correlation_id="$mqtt.to.c1.publish", body=["a/+/c", "#"])
    s["pubrel.bin"] = enc(subject="pubrel", id=ulong(9))

    # message-id as an int (Java peers); proton 0.37 drops it on decode.
    # python-proton turns an int id into a ulong, so patch the encoding:
    # smallulong 9 (0x53 0x09) -> smallint 9 (0x54 0x09).
    ulong_id = enc(subject="pubrel", id=ulong(9))
    props = b"\x00\x53\x73\xc0\x0d\x04\x53\x09"
    if props not in ulong_id:
        raise SystemExit("unexpected encoding of the pubrel properties")
    s["pubrel_int_id.bin"] = ulong_id.replace(props, props[:-2] + b"\x54\x09")
    # PUBLISH whose payload arrives in three Data sections
    head = enc(address="multi/data", durable=True, annotations={QOS: int32(1)})
    s["publish_multi_data.bin"] = (head + data_section(b"part1-") + data_section(b"")
                                   + data_section(b"x" * 300))
    # the same properties section described by a symbol (legal, refused)
    desc = b"amqp:properties:list"
    s["symbolic_descriptor.bin"] = (b"\x00\xa3" + bytes([len(desc)]) + desc
                                    + b"\xc0\x08\x03\x40\x40\xa1\x03a/b" + data_section(b"p"))
    return s


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus", "spec")
    os.makedirs(out, exist_ok=True)
    for name, data in sorted(seeds().items()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
