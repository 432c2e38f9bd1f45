"""mqtt-gateway system tests: malformed input from raw sockets. The gateway
closes the offending connection (logging why) and keeps serving others."""
import pytest

import gw_mqtt_raw as R
from gw_gateway_env import make_env, teardown_env


@pytest.fixture(scope="module")
def env_mod(tmp_path_factory):
    import gwtest
    procs = gwtest.Procs(tmp_path_factory.mktemp("malformed"))
    e = make_env(procs, "--max-packet-size", "1M")
    yield e
    teardown_env(e)


CONNECTED_CASES = {
    "subscribe-bad-flags": R.packet(0x80, b"\x00\x01" + R.enc_str("a") + b"\x00"),
    "pubrel-bad-flags": R.packet(0x60, b"\x00\x01"),
    "publish-qos3": R.packet(0x36, R.enc_str("a") + b"\x00\x01x"),
    "remaining-length-5-bytes": b"\x30\xff\xff\xff\xff\x01",
    "too-large-for-max-packet-size": b"\x30" + R.enc_len(200_000_000),
    "invalid-utf8-topic": R.packet(0x30, R.enc_str(b"\xc3\x28") + b"x"),
    "wildcard-in-topic-name": R.publish("a/+", b"x"),
    "subscribe-no-topics": R.packet(0x82, b"\x00\x01"),
    "subscribe-qos3": R.packet(0x82, b"\x00\x01" + R.enc_str("a") + b"\x03"),
    "second-connect": R.connect("again"),
    "server-only-packet": R.packet(0x20, b"\x00\x00"),
    "reserved-type-15": R.packet(0xF0),
}


# the reason logged for the close (module gateway, conn = client id)
EXPECTED_LOG = {
    "second-connect": "second CONNECT (MQTT-3.1.0-2)",
    "publish-qos3": "mqtt-qos",
    "wildcard-in-topic-name": "mqtt-topic-wildcard",
    "invalid-utf8-topic": "mqtt-utf8",
    # with --max-packet-size 1M the 4th length byte already exceeds the limit
    "remaining-length-5-bytes": ("mqtt-remaining-length", "mqtt-too-large"),
    "too-large-for-max-packet-size": "mqtt-too-large",
    "subscribe-bad-flags": "mqtt-reserved-flags",
    "publish-before-connect": "first packet is not CONNECT (MQTT-3.1.0-1)",
}


@pytest.mark.parametrize("name", sorted(CONNECTED_CASES))
def test_malformed_after_connect_closes_connection(env_mod, name):
    bad = env_mod.client()
    assert bad.connect(f"bad-{name}") == (0, 0)
    bad.send(CONNECTED_CASES[name])
    assert bad.is_closed(), name
    if name in EXPECTED_LOG:
        want = EXPECTED_LOG[name]
        want = want if isinstance(want, tuple) else (want,)
        assert any(f'conn="bad-{name}"' in l and any(w in l for w in want)
                   for l in env_mod.log().splitlines()), name
    _check_others_served(env_mod)


BEFORE_CONNECT_CASES = {
    "publish-before-connect": R.publish("a", b"x"),
    "pingreq-before-connect": R.PINGREQ_PKT,
    "connect-reserved-flag": R.packet(0x10, R.enc_str("MQTT") + b"\x04\x03\x00\x3c" + R.enc_str("z")),
    "connect-bad-protocol-name": R.connect("z", proto="MQTX"),
    "connect-password-without-user": R.packet(
        0x10, R.enc_str("MQTT") + b"\x04\x42\x00\x3c" + R.enc_str("z") + R.enc_str("pw")),
    "connect-truncated": R.packet(0x10, R.enc_str("MQTT") + b"\x04"),
}


@pytest.mark.parametrize("name", sorted(BEFORE_CONNECT_CASES))
def test_malformed_before_connect_closes_connection(env_mod, name):
    bad = env_mod.client()
    bad.send(BEFORE_CONNECT_CASES[name])
    assert bad.is_closed(), name
    if name in EXPECTED_LOG:
        assert EXPECTED_LOG[name] in env_mod.log(), name
    _check_others_served(env_mod)


def test_violation_is_brute_for_the_will(env_mod):
    bad = env_mod.client()
    assert bad.connect("bad-will", will=("w/bad", b"x", 0, False)) == (0, 0)
    bad.send(R.publish("a/#", b"x"))
    assert bad.is_closed()
    d = env_mod.peer.detach_of("bad-will")
    assert d["condition"] == "amqp:link:detach-forced"
    assert "protocol violation" in d["description"]
    assert "protocol violation" in env_mod.log()


def test_split_packets_byte_by_byte(env_mod):
    c = env_mod.client()
    data = R.connect("split") + R.subscribe(3, [("s/+", 1)]) + R.PINGREQ_PKT
    for i in range(len(data)):
        c.send(data[i:i + 1])
    c.expect(R.CONNACK)
    # SUBACK waits for the SS's disposition; PINGRESP may overtake it
    got = sorted((t, bytes(b)) for t, _, b in (c.recv_packet(), c.recv_packet()))
    assert got == [(R.SUBACK, b"\x00\x03\x01"), (R.PINGRESP, b"")]


def test_no_connect_within_timeout_closes(procs):
    e = make_env(procs, "--connect-timeout", "300ms")
    try:
        c = e.client()
        assert c.is_closed(timeout=3)
    finally:
        teardown_env(e)


def _check_others_served(env):
    good = env.client()
    assert good.connect("good") == (0, 0)
    good.send(R.PINGREQ_PKT)
    assert good.expect(R.PINGRESP) == (0, b"")
    good.send(R.DISCONNECT_PKT)
    assert good.is_closed()


def test_five_byte_remaining_length_at_wire_maximum(procs):
    e = make_env(procs, "--max-packet-size", "268435455")
    try:
        bad = e.client()
        assert bad.connect("five") == (0, 0)
        bad.send(b"\x30\xff\xff\xff\xff\x01")
        assert bad.is_closed()
        assert "mqtt-remaining-length" in e.log()
        _check_others_served(e)
    finally:
        teardown_env(e)
