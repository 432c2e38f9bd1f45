"""subscription-service: topic fabric, retained messages, QoS 2, native AMQP peers."""
import pytest
from proton import Message, symbol

from subs_peer import Client, GatewaySession, Service, publish_msg, clients  # noqa: F401 (clients: fixture)


@pytest.fixture
def svc(procs, tmp_path):
    return Service(procs, tmp_path).start()


def online(c, cid, clean=True, credit=32):
    g = GatewaySession(c, cid, credit=credit)
    if clean:
        assert g.close() == "accepted"
    else:
        assert g.list()[0] == "accepted"
    g.grant()
    return g


def pub(c, topic, body, qos=1, retain=False, tx=None):
    tx = tx or c.sender(None, name="relay-%s" % topic)
    out = c.send(tx, publish_msg(topic, body, qos=qos, retain=retain), settled=(qos == 0))
    if qos:
        assert c.wait_outcome(out) == "accepted"
    return tx


def test_wildcards_and_dollar_rule(svc, clients):
    c = clients(svc.port)
    g = online(c, "w1")
    assert g.subscribe({"a/+/c": 1, "x/#": 1, "#": 1, "$SYS/#": 1})[0] == "accepted"
    tx = c.sender(None, name="relay")
    for t, b in [("a/b/c", b"1"), ("a/b/d", b"2"), ("$SYS/up", b"3"), ("$other", b"4"),
                 ("x", b"5")]:
        pub(c, t, b, tx=tx)
    msgs = g.wait_msgs(4)
    got = [(m["to"], m["body"]) for m in msgs]
    # '#' matches a/b/c, a/b/d, x (one copy each, MQTT 3.3.5); '$SYS/#' matches $SYS/up;
    # nothing matches $other (MQTT-4.7.2-1)
    assert sorted(got) == sorted([("a/b/c", b"1"), ("a/b/d", b"2"), ("$SYS/up", b"3"),
                                  ("x", b"5")])
    for m in msgs:
        assert m["annotations"]["x-opt-retain-message"] is False


def test_overlap_one_copy_highest_qos(svc, clients):
    c = clients(svc.port)
    g = online(c, "ov")
    assert g.subscribe({"o/+": 0, "o/#": 2, "o/x": 1})[0] == "accepted"
    tx = pub(c, "o/x", b"hi", qos=2)
    msgs = g.wait_msgs(1)
    assert len(g.pub.messages) == 1
    m = msgs[0]
    assert m["annotations"]["x-opt-mqtt-qos"] == 2
    assert 1 <= m["id"] <= 65535
    assert m["durable"] is True
    # min(published, granted): QoS 1 publish on a QoS 2 subscription -> 1
    pub(c, "o/x", b"q1", qos=1, tx=tx)
    msgs = g.wait_msgs(2)
    assert len(msgs) == 2
    assert msgs[1]["annotations"]["x-opt-mqtt-qos"] == 1
    assert msgs[1]["id"] != msgs[0]["id"]


def test_retained_set_replace_clear(svc, clients):
    c = clients(svc.port)
    tx = pub(c, "r/1", b"first", qos=1, retain=True)
    pub(c, "r/1", b"second", qos=0, retain=True, tx=tx)  # MQTT-3.3.1-7: QoS 0 replaces
    pub(c, "r/2", b"two", qos=2, retain=True, tx=tx)
    pub(c, "r/3", b"three", qos=1, retain=True, tx=tx)
    pub(c, "r/3", b"", qos=1, retain=True, tx=tx)  # empty payload clears
    g = online(c, "rt")
    assert g.subscribe({"r/#": 1})[0] == "accepted"
    msgs = g.wait_msgs(2)
    got = sorted((m["to"], m["body"], m["annotations"]["x-opt-mqtt-qos"],
                  m["annotations"]["x-opt-retain-message"]) for m in msgs)
    assert got == [("r/1", b"second", 0, True), ("r/2", b"two", 1, True)]
    # live copies carry retain = false (MQTT-3.3.1-9), even when published with retain
    for m in msgs:
        if not m["settled"]:
            c.settle(m)
    pub(c, "r/2", b"live", qos=1, retain=True, tx=tx)
    msgs = g.wait_msgs(3)
    assert (msgs[2]["body"], msgs[2]["annotations"]["x-opt-retain-message"]) == (b"live", False)
    # a re-subscribe sends the retained message again, to this client only
    g2 = online(c, "rt2")
    assert g2.subscribe({"other": 1})[0] == "accepted"
    assert g.subscribe({"r/2": 1})[0] == "accepted"
    msgs = g.wait_msgs(4)
    assert (msgs[3]["body"], msgs[3]["annotations"]["x-opt-retain-message"]) == (b"live", True)
    assert g2.pub.messages == []


def test_qos2_outbound_with_pubrel(svc, clients):
    c = clients(svc.port)
    g = online(c, "q2", clean=False)
    assert g.subscribe({"q2/t": 2})[0] == "accepted"
    pub(c, "q2/t", b"exactly", qos=2)
    m = g.wait_msgs(1)[0]
    pid = m["id"]
    assert m["annotations"]["x-opt-mqtt-qos"] == 2 and m["delivery_count"] == 0
    # client PUBREC -> AMQP_PUBREL accepted
    assert g.pubrel(pid) == "accepted"
    assert g.pubrel(54321) == "accepted"  # unknown id: a repeat, accepted
    # gateway loses the link before PUBCOMP: on reconnect the release is resent
    c.stop(clean=False)
    c2 = clients(svc.port)
    g2 = GatewaySession(c2, "q2")
    outcome, subs, present, _ = g2.list()
    assert (subs, present) == ({"q2/t": 2}, True)
    g2.grant()
    r = g2.wait_msgs(1)[0]
    assert r["subject"] == "pubrel" and r["id"] == pid
    c2.settle(r)  # PUBCOMP
    # forgotten: a third session sees nothing
    c2.stop(clean=False)
    c3 = clients(svc.port)
    g3 = GatewaySession(c3, "q2")
    g3.list()
    g3.grant()
    pub(c3, "q2/t", b"next", qos=1)
    n = g3.wait_msgs(1)
    assert [x["body"] for x in n] == [b"next"]


def test_qos2_inbound_rcv_settle_second(svc, clients):
    c = clients(svc.port)
    g = online(c, "in2")
    assert g.subscribe({"in2/#": 2})[0] == "accepted"
    tx = c.sender("in2/a", name="qos2-link", rcv_second=True)
    out = c.send(tx, publish_msg("in2/a", b"once", qos=2, message_id=7))
    assert c.wait_outcome(out) == "accepted"
    assert out.settled is False  # accepted, not settled: waits for the sender
    c.settle_out(out)
    m = g.wait_msgs(1)
    assert [x["body"] for x in m] == [b"once"]


def test_native_sender_to_native_receiver(svc, clients):
    c = clients(svc.port)
    pub(c, "n/retained", b"kept", qos=1, retain=True)
    rx_settled = c.receiver("n/+", name="nat0", settled=True)
    rx_unsettled = c.receiver("n/#", name="nat1", auto_accept=True)
    c.wait_for(lambda: len(rx_settled.messages) == 1 and len(rx_unsettled.messages) == 1,
               what="retained to native receivers")
    assert rx_settled.messages[0]["annotations"]["x-opt-retain-message"] is True
    # target = topic, no `to`, AmqpValue string body, no annotations: durable -> QoS 1
    tx = c.sender("n/x")
    m = Message(body="native text")
    m.durable = True
    assert c.wait_outcome(c.send(tx, m)) == "accepted"
    c.wait_for(lambda: len(rx_settled.messages) == 2 and len(rx_unsettled.messages) == 2,
               what="native delivery")
    assert rx_settled.messages[1]["settled"] is True
    assert rx_unsettled.messages[1]["settled"] is False
    assert rx_unsettled.messages[1]["to"] == "n/x"
    assert rx_unsettled.messages[1]["annotations"]["x-opt-mqtt-qos"] == 1
    assert rx_settled.messages[1]["annotations"]["x-opt-mqtt-qos"] == 0


def test_native_receiver_invalid_filter(svc, clients):
    c = clients(svc.port)
    rx = c.receiver("a/#/b", name="bad", wait=False)
    c.wait_for(lambda: rx.closed is not None, what="refusal")
    assert rx.closed == "amqp:invalid-field"


def test_publication_refused_without_topic(svc, clients):
    c = clients(svc.port)
    tx = c.sender(None, name="relay")
    m = publish_msg("t", b"x", qos=1, to=False)
    out = c.send(tx, m)
    assert c.wait_outcome(out) == "rejected"
    assert out.condition == "amqp:invalid-field"
    # link still usable
    assert c.wait_outcome(c.send(tx, publish_msg("t", b"y", qos=1))) == "accepted"


def test_malformed_publications_keep_link_usable(procs, tmp_path, clients):
    svc = Service(procs, tmp_path, ["--max-message-size", "1024"]).start()
    c = clients(svc.port)
    g = online(c, "mp")
    assert g.subscribe({"mp/#": 1})[0] == "accepted"
    tx = c.sender(None, name="relay")
    bad_qos = publish_msg("mp/a", b"x", qos=1)
    bad_qos.annotations = {symbol("x-opt-mqtt-qos"): 3}
    cases = [(bad_qos, "amqp:invalid-field"),
             (publish_msg("mp/+", b"x", qos=1), None),  # wildcard in a topic name
             (publish_msg("mp/big", b"x" * 2000, qos=1), "amqp:link:message-size-exceeded")]
    for m, cond in cases:
        out = c.send(tx, m)
        assert c.wait_outcome(out) == "rejected"
        assert out.description
        if cond:
            assert out.condition == cond
    assert c.wait_outcome(c.send(tx, publish_msg("mp/ok", b"fine", qos=1))) == "accepted"
    assert [m["body"] for m in g.wait_msgs(1)] == [b"fine"]


def test_list_reply_waits_for_control_link(svc, clients):
    c = clients(svc.port)
    tx = c.sender("$mqtt.subscriptionservice", name="$mqtt.subscriptionservice.late")
    m = Message(subject="list", correlation_id="$mqtt.to.late.publish",
                reply_to="$mqtt.to.late.control")
    assert c.wait_outcome(c.send(tx, m)) == "accepted"
    ctl = c.receiver("$mqtt.to.late.control", credit=1)
    c.wait_for(lambda: len(ctl.messages) == 1, what="queued AMQP_SUBSCRIPTIONS")
    rec = ctl.messages[0]
    assert rec["subject"] == "subscriptions"
    assert rec["annotations"]["x-opt-session-present"] is False
    assert rec["body"] == {}


def test_native_qos1_released_is_redelivered(svc, clients):
    c = clients(svc.port)
    rx = c.receiver("nr/#", name="nat")
    pub(c, "nr/1", b"again", qos=1)
    c.wait_for(lambda: len(rx.messages) == 1, what="first delivery")
    c.settle(rx.messages[0], "release")
    c.wait_for(lambda: len(rx.messages) == 2, what="redelivery")
    assert rx.messages[1]["body"] == b"again"
    assert rx.messages[1]["delivery_count"] > 0
    c.settle(rx.messages[1], "accept")


def test_native_release_in_the_middle_of_a_window(svc, clients):
    """Deliveries in flight ahead of a released one, and after it: the
    released one is sent again, every message is accepted exactly once, and
    later messages keep flowing (the pump's in-flight cursor restarts)."""
    c = clients(svc.port)
    rx = c.receiver("mw/#", name="mw", credit=8)
    for i in range(8):
        pub(c, f"mw/{i}", b"%d" % i, qos=1)
    c.wait_for(lambda: len(rx.messages) == 8, what="a full window")
    c.settle(rx.messages[3], "release", flow=0)  # 3 goes back; no new credit
    for i in (0, 1, 2):
        c.settle(rx.messages[i], "accept")          # +1 credit each
    c.wait_for(lambda: len(rx.messages) >= 9, what="the released one again")
    assert rx.messages[8]["body"] == b"3" and rx.messages[8]["delivery_count"] > 0
    for i in range(8, 16):
        pub(c, f"mw/{i}", b"%d" % i, qos=1)
    done = set()
    for _ in range(200):
        for r in list(rx.messages):
            if id(r) not in done and r is not rx.messages[3]:
                done.add(id(r))
                c.settle(r, "accept")
        bodies = [r["body"] for r in rx.messages if r is not rx.messages[3]]
        if sorted(bodies, key=int) == [b"%d" % i for i in range(16)]:
            break
        c.wait_for(lambda: len(rx.messages) > len(done), what="more deliveries", timeout=5.0)
    bodies = [r["body"] for r in rx.messages if r is not rx.messages[3]]
    assert sorted(bodies, key=int) == [b"%d" % i for i in range(16)]
