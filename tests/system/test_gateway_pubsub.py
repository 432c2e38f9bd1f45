"""mqtt-gateway system tests: SUBSCRIBE/UNSUBSCRIBE, PUBLISH in both
directions at QoS 0/1/2, acknowledgement rules, back-pressure, paho."""
import threading

import pytest

import gwtest
import gw_mqtt_raw as R
from gw_gateway_env import make_env, teardown_env

SND_UNSETTLED, SND_SETTLED, SND_MIXED = 0, 1, 2
RCV_FIRST, RCV_SECOND = 0, 1


@pytest.fixture
def env(procs):
    e = make_env(procs, "--inflight-window", "4")
    yield e
    teardown_env(e)


def connected(env, cid="c1"):
    c = env.client()
    assert c.connect(cid) == (0, 0)
    gwtest.wait_until(lambda: env.peer.credit_of(f"$mqtt.to.{cid}.publish"), what="credit")
    return c


def test_subscribe_grants_and_amqp_fields(env):
    c = connected(env)
    c.send(R.subscribe(7, [("a/+", 1), ("b/#", 2), ("c", 0)]))
    flags, body = c.expect(R.SUBACK)
    assert body == b"\x00\x07\x01\x02\x00"
    m = env.peer.wait_msg(subject="subscribe")
    assert m["link"] == env.peer.ss_links()[0]["name"]
    assert m["id"] == 7 and m["correlation_id"] == "$mqtt.to.c1.publish"
    assert m["body"] == {"a/+": 1, "b/#": 2, "c": 0}


def test_subscribe_rejected_gives_0x80(env):
    env.peer.call(lambda: env.peer.policy.update(subscribe="reject"))
    c = connected(env)
    c.send(R.subscribe(9, [("x", 1), ("y", 2)]))
    _, body = c.expect(R.SUBACK)
    assert body == b"\x00\x09\x80\x80"


def test_unsubscribe_unsuback_after_disposition(env):
    peer = env.peer
    peer.call(lambda: peer.policy.update(unsubscribe="hold"))
    c = connected(env)
    c.send(R.unsubscribe(11, ["a/+", "b"]))
    m = peer.wait_msg(subject="unsubscribe")
    assert m["id"] == 11 and m["body"] == ["a/+", "b"]
    assert m["correlation_id"] == "$mqtt.to.c1.publish"
    assert c.no_packet(0.3)
    peer.settle(m, "accept")
    _, body = c.expect(R.UNSUBACK)
    assert body == b"\x00\x0b"


def test_publish_qos0_and_qos1_fields_and_puback_after_accept(env):
    peer = env.peer
    c = connected(env)
    c.send(R.publish("s/q0", b"zero", qos=0, retain=True))
    m0 = peer.wait_msg(to="s/q0")
    assert m0["presettled"] and m0["subject"] is None and m0["id"] is None
    assert m0["annotations"] == {"x-opt-retain-message": True, "x-opt-mqtt-qos": 0}
    assert m0["durable"] is False and m0["body"] == b"zero"

    peer.call(lambda: peer.policy.update(publish="hold"))
    c.send(R.publish("s/q1", b"one", qos=1, pid=42, dup=True))
    m1 = peer.wait_msg(to="s/q1")
    assert not m1["presettled"] and m1["id"] == 42 and m1["durable"] is True
    assert m1["annotations"] == {"x-opt-retain-message": False, "x-opt-mqtt-qos": 1}
    assert m1["delivery_count"] > 0  # DUP
    att = peer.link(m1["link"])
    assert att["target"] == "s/q1" and att["rcv_settle_mode"] == RCV_FIRST
    assert c.no_packet(0.4)  # no PUBACK before the disposition
    peer.settle(m1, "accept")
    _, body = c.expect(R.PUBACK)
    assert R.pid_of(body) == 42


def test_publish_qos1_rejected_gets_no_puback(env):
    peer = env.peer
    peer.call(lambda: peer.policy.update(publish="reject"))
    c = connected(env)
    c.send(R.publish("s/r", b"no", qos=1, pid=3))
    peer.wait_msg(to="s/r")
    assert c.no_packet(0.4)
    c.send(R.PINGREQ_PKT)  # the connection stays usable
    c.expect(R.PINGRESP)


def test_publish_qos2_inbound(env):
    peer = env.peer
    peer.call(lambda: peer.policy.update(publish="hold"))
    c = connected(env)
    c.send(R.publish("s/q2", b"two", qos=2, pid=5))
    m = peer.wait_msg(to="s/q2")
    att = peer.link(m["link"])
    assert att["rcv_settle_mode"] == RCV_SECOND and att["snd_settle_mode"] == SND_UNSETTLED
    assert m["annotations"]["x-opt-mqtt-qos"] == 2 and m["id"] == 5
    # spec 3.9: the publisher names the QoS 2 exchange for the SS's dedupe
    assert m["annotations"]["x-opt-mqtt-publisher"] == "c1"
    assert c.no_packet(0.3)
    peer.settle(m, "accept")
    _, body = c.expect(R.PUBREC)
    assert R.pid_of(body) == 5
    # a resent PUBLISH before PUBREL is not forwarded again: PUBREC again
    c.send(R.publish("s/q2", b"two", qos=2, pid=5, dup=True))
    _, body = c.expect(R.PUBREC)
    assert len(peer.msgs(to="s/q2")) == 1
    assert not m["remote_settled"]
    c.send(R.ack(R.PUBREL, 5))
    _, body = c.expect(R.PUBCOMP)
    assert R.pid_of(body) == 5
    peer.wait_for(lambda: m["remote_settled"], what="gateway settled the QoS 2 delivery")


def test_outbound_qos0_qos1(env):
    peer = env.peer
    c = connected(env)
    o0 = peer.send_to_client("c1", topic="o/0", body=b"a", qos=0)
    t, f, b = c.recv_packet()
    p = R.parse_publish(f, b)
    assert (t, p["topic"], p["qos"], p["payload"]) == (R.PUBLISH, "o/0", 0, b"a")
    o1 = peer.send_to_client("c1", topic="o/1", body=b"b", qos=1, message_id=321,
                             delivery_count=1, retain=True)
    t, f, b = c.recv_packet()
    p = R.parse_publish(f, b)
    assert (p["topic"], p["qos"], p["pid"], p["dup"], p["retain"]) == ("o/1", 1, 321, True, True)
    assert c.no_packet(0.2)
    assert o1["remote_state"] is None  # not settled before PUBACK
    c.send(R.ack(R.PUBACK, 321))
    peer.wait_for(lambda: o1["remote_settled"], what="QoS 1 settled after PUBACK")
    assert str(o1["remote_state"]) == "ACCEPTED"
    assert o0["presettled"]


def test_outbound_qos2_with_amqp_pubrel(env):
    peer = env.peer
    c = connected(env)
    o = peer.send_to_client("c1", topic="o/2", body=b"c", qos=2, message_id=77)
    t, f, b = c.recv_packet()
    p = R.parse_publish(f, b)
    assert (p["qos"], p["pid"]) == (2, 77)
    c.send(R.ack(R.PUBREC, 77))
    rel = peer.wait_msg(subject="pubrel")
    assert rel["link"] == "$mqtt.c1.pubrel" and rel["id"] == 77
    att = peer.link("$mqtt.c1.pubrel")
    assert att["target"] == "$mqtt.c1.pubrel"
    flags, body = c.expect(R.PUBREL)
    assert flags == 2 and R.pid_of(body) == 77
    assert not o["remote_settled"]
    c.send(R.ack(R.PUBCOMP, 77))
    peer.wait_for(lambda: o["remote_settled"], what="QoS 2 settled after PUBCOMP")
    assert str(o["remote_state"]) == "ACCEPTED"


def test_outbound_pubrel_resend_from_ss(env):
    peer = env.peer
    c = connected(env)
    o = peer.send_to_client("c1", topic=None, body=None, qos=2, message_id=55, subject="pubrel",
                            presettled=False)
    flags, body = c.expect(R.PUBREL)
    assert R.pid_of(body) == 55
    c.send(R.ack(R.PUBCOMP, 55))
    peer.wait_for(lambda: o["remote_settled"], what="pubrel delivery settled on PUBCOMP")


def test_outbound_packet_id_collision_allocates(env):
    peer = env.peer
    c = connected(env)
    peer.send_to_client("c1", topic="o/a", qos=1, message_id=9)
    peer.send_to_client("c1", topic="o/b", qos=1, message_id=9)
    pids = []
    for _ in range(2):
        t, f, b = c.recv_packet()
        pids.append(R.parse_publish(f, b)["pid"])
    assert pids[0] == 9 and pids[1] != 9 and 1 <= pids[1] <= 65535


def test_outbound_window_limits_unacked(env):
    peer = env.peer
    c = connected(env)  # --inflight-window 4
    outs = [peer.send_to_client("c1", topic="w", body=b"%d" % i, qos=1, message_id=i + 1)
            for i in range(6)]
    got = []
    for _ in range(4):
        t, f, b = c.recv_packet()
        got.append(R.parse_publish(f, b)["pid"])
    assert c.no_packet(0.3)  # the window is full
    c.send(R.ack(R.PUBACK, got[0]))
    t, f, b = c.recv_packet()
    assert R.parse_publish(f, b)["payload"] == b"4"
    assert outs


def test_no_credit_qos0_is_held_not_dropped(env):
    peer = env.peer
    peer.call(lambda: peer.policy["credit_for"].update({"bp/0": 0}))
    c = connected(env)
    c.send(R.publish("bp/0", b"zero", qos=0))
    peer.wait_for(lambda: any(l["target"] == "bp/0" for l in peer.links), what="bp link")
    c.send(R.PINGREQ_PKT)
    assert c.no_packet(0.4)  # socket not read while the QoS 0 message waits
    peer.grant("bp/0", 1)
    c.expect(R.PINGRESP)
    assert peer.wait_msg(to="bp/0")["body"] == b"zero"


def test_no_credit_stops_reading_the_socket(env):
    peer = env.peer
    peer.call(lambda: peer.policy["credit_for"].update({"bp/t": 0}))
    c = connected(env)
    c.send(R.publish("bp/t", b"held", qos=1, pid=1))
    peer.wait_for(lambda: any(l["target"] == "bp/t" for l in peer.links), what="bp link")
    c.send(R.PINGREQ_PKT)
    # the PUBLISH waits for credit and the socket is not read: no PINGRESP either
    assert c.no_packet(0.5)
    assert not peer.msgs(to="bp/t")
    peer.grant("bp/t", 5)
    # the PUBLISH is forwarded first, then PINGREQ is read (PINGRESP may
    # overtake the PUBACK, which waits for the disposition)
    got = sorted((t, bytes(b)) for t, _, b in (c.recv_packet(), c.recv_packet()))
    assert got == [(R.PUBACK, b"\x00\x01"), (R.PINGRESP, b"")]
    assert peer.msgs(to="bp/t")


def test_paho_client_roundtrip(env):
    import paho.mqtt.client as mqtt
    peer = env.peer
    got, subacked, acked = [], threading.Event(), threading.Event()
    cl = mqtt.Client(client_id="paho1", clean_session=True)
    cl.on_message = lambda c, u, m: got.append((m.topic, m.payload, m.qos))
    cl.on_subscribe = lambda c, u, mid, q: subacked.set()
    cl.on_publish = lambda c, u, mid: acked.set()
    cl.connect("127.0.0.1", env.port, keepalive=30)
    cl.loop_start()
    try:
        cl.subscribe("p/#", qos=1)
        assert subacked.wait(5)
        cl.publish("p/x", b"hi", qos=1)
        assert acked.wait(5)
        assert peer.wait_msg(to="p/x")["body"] == b"hi"
        gwtest.wait_until(lambda: peer.credit_of("$mqtt.to.paho1.publish"), what="credit")
        o = peer.send_to_client("paho1", topic="p/y", body=b"back", qos=1, message_id=5)
        gwtest.wait_until(lambda: got, what="paho got the message")
        assert got == [("p/y", b"back", 1)]
        peer.wait_for(lambda: o["remote_settled"], what="settled after paho's PUBACK")
    finally:
        cl.disconnect()
        cl.loop_stop()


def test_publish_released_is_retried_then_acked(env):
    peer = env.peer
    answers = ["release", "modify", "accept"]
    peer.call(lambda: peer.policy.update(publish=lambda rec: answers.pop(0)))
    c = connected(env)
    c.send(R.publish("s/rel", b"again", qos=1, pid=8))
    _, body = c.expect(R.PUBACK)
    assert R.pid_of(body) == 8
    ms = peer.msgs(to="s/rel")
    assert len(ms) == 3 and [m["id"] for m in ms] == [8, 8, 8]
    assert ms[0]["delivery_count"] == 0 and all(m["delivery_count"] > 0 for m in ms[1:])
    assert ms[1]["t"] - ms[0]["t"] >= 0.08  # back-off before the resend
    assert all(m["body"] == b"again" for m in ms)


def test_publish_released_forever_is_dropped_after_bounded_retries(env):
    peer = env.peer
    peer.call(lambda: peer.policy.update(publish="release"))
    c = connected(env)
    c.send(R.publish("s/rel2", b"x", qos=1, pid=9))
    # 1 attempt + 3 retries (100 + 200 + 400 ms back-off), then treated as rejected
    peer.wait_for(lambda: len(peer.msgs(to="s/rel2")) == 4, what="4 attempts")
    assert c.no_packet(1.0)
    assert len(peer.msgs(to="s/rel2")) == 4
    assert "refused by AMQP" in env.log()
