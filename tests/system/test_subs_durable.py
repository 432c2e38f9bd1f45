"""subscription-service: persistent sessions, offline queues, redelivery, overflow,
restart recovery and kill -9."""
import pytest

from subs_peer import Client, GatewaySession, Service, publish_msg, clients  # noqa: F401 (clients: fixture)


def persistent(c, cid, filters=None, grant=True):
    g = GatewaySession(c, cid)
    res = g.list()
    assert res[0] == "accepted"
    if filters:
        assert g.subscribe(filters)[0] == "accepted"
    if grant:
        g.grant()
    return g, res


def publish_all(c, items, tx=None):
    tx = tx or c.sender(None)
    outs = []
    for topic, body, qos in items:
        outs.append(c.send(tx, publish_msg(topic, body, qos=qos), settled=(qos == 0)))
    for o, (_, _, qos) in zip(outs, items):
        if qos:
            assert c.wait_outcome(o) == "accepted"
    return tx


def offline_then_back(svc_port, clients, extra_items):
    c = clients(svc_port)
    g, _ = persistent(c, "p1", {"p/#": 2})
    c.stop(clean=False)  # the client goes offline (gateway connection lost)
    pubc = clients(svc_port)
    publish_all(pubc, extra_items)
    c2 = clients(svc_port)
    g2 = GatewaySession(c2, "p1")
    return c2, g2


@pytest.mark.parametrize("queue_qos0", [False, True])
def test_offline_queue_in_order_after_subscriptions(procs, tmp_path, clients, queue_qos0):
    svc = Service(procs, tmp_path, ["--queue-qos0"] if queue_qos0 else []).start()
    items = [("p/a", b"m1", 1), ("p/b", b"m2", 0), ("p/c", b"m3", 2), ("p/a", b"m4", 1)]
    c2, g2 = offline_then_back(svc.port, clients, items)
    # nothing is delivered before SUBSCRIPTIONS, even with credit
    g2.grant()
    outcome, subs, present, srec = g2.list()
    assert (outcome, subs, present) == ("accepted", {"p/#": 2}, True)
    expect = [b"m1", b"m2", b"m3", b"m4"] if queue_qos0 else [b"m1", b"m3", b"m4"]
    msgs = g2.wait_msgs(len(expect))
    assert [m["body"] for m in msgs] == expect
    assert srec["seq"] < msgs[0]["seq"]  # queued messages only after SUBSCRIPTIONS
    qos = {m["body"]: m["annotations"]["x-opt-mqtt-qos"] for m in msgs}
    assert qos[b"m1"] == 1 and qos[b"m3"] == 2
    ids = [m["id"] for m in msgs if m["annotations"]["x-opt-mqtt-qos"] > 0]
    assert len(set(ids)) == len(ids) and all(1 <= i <= 65535 for i in ids)
    assert all(m["delivery_count"] == 0 for m in msgs)


def test_redelivery_same_id_and_dup(procs, tmp_path, clients):
    svc = Service(procs, tmp_path).start()
    c = clients(svc.port)
    g, _ = persistent(c, "rd", {"rd/#": 1})
    pubc = clients(svc.port)
    publish_all(pubc, [("rd/1", b"a", 1), ("rd/2", b"b", 1), ("rd/3", b"c", 1)])
    first = g.wait_msgs(3)
    c.settle(first[0])  # PUBACK for a only
    c.wait_for(lambda: True)
    c.stop(clean=False)  # b, c unsettled
    c2 = clients(svc.port)
    g2, _ = persistent(c2, "rd")
    again = g2.wait_msgs(2)
    assert [m["body"] for m in again] == [b"b", b"c"]
    assert [m["id"] for m in again] == [first[1]["id"], first[2]["id"]]
    assert all(m["delivery_count"] > 0 for m in again)
    # released -> sent again later with delivery-count + 1
    c2.settle(again[0], "release")
    third = g2.wait_msgs(3)
    assert third[2]["body"] == b"b" and third[2]["delivery_count"] > again[0]["delivery_count"]


def test_transient_session_ends_with_its_link(procs, tmp_path, clients):
    svc = Service(procs, tmp_path).start()
    c = clients(svc.port)
    g = GatewaySession(c, "tr")
    assert g.close() == "accepted"
    assert g.subscribe({"tr/#": 1})[0] == "accepted"
    c.stop(clean=False)
    pubc = clients(svc.port)
    publish_all(pubc, [("tr/x", b"lost", 1)])
    c2 = clients(svc.port)
    g2, (outcome, subs, present, _) = persistent(c2, "tr")
    assert (subs, present) == ({}, False)
    # the old transient subscription is gone: only the new one delivers
    assert g2.subscribe({"tr/y": 1})[0] == "accepted"
    publish_all(pubc, [("tr/x", b"after", 1), ("tr/y", b"marker", 1)])
    msgs = g2.wait_msgs(1)
    assert [m["body"] for m in msgs] == [b"marker"]


@pytest.mark.parametrize("policy,expect", [("drop-new", [b"0", b"1", b"2"]),
                                           ("drop-oldest", [b"3", b"4", b"5"])])
def test_overflow_policy_counted(procs, tmp_path, clients, policy, expect):
    svc = Service(procs, tmp_path, ["--max-queued-messages", "3",
                                    "--overflow-policy", policy]).start()
    c = clients(svc.port)
    persistent(c, "of", {"of": 1}, grant=False)
    c.stop(clean=False)
    pubc = clients(svc.port)
    publish_all(pubc, [("of", str(i).encode(), 1) for i in range(6)])
    c2 = clients(svc.port)
    g2, _ = persistent(c2, "of")
    msgs = g2.wait_msgs(3)
    assert [m["body"] for m in msgs] == expect
    pubc.wait_for(lambda: "queue full" in svc.proc.log(), what="overflow WARN")
    assert "policy=" + policy in svc.proc.log()
    svc.proc.stop()
    assert "dropped=3" in svc.proc.log()


def test_restart_recovers_everything(procs, tmp_path, clients):
    svc = Service(procs, tmp_path).start()
    c = clients(svc.port)
    g, _ = persistent(c, "rs.1", {"rs/+": 1, "q2/#": 2})
    pubc = clients(svc.port)
    publish_all(pubc, [("rs/keep", b"ret", 1)])
    tx = pubc.sender(None, name="ret")
    pubc.wait_outcome(pubc.send(tx, publish_msg("rs/r", b"retained", qos=1, retain=True)))
    publish_all(pubc, [("q2/x", b"two", 2)])
    first = g.wait_msgs(3)
    c.settle(first[0])  # 'ret' acknowledged
    q2 = [m for m in first if m["body"] == b"two"][0]
    assert g.pubrel(q2["id"]) == "accepted"  # released, PUBCOMP pending
    c.stop(clean=False)
    publish_all(pubc, [("rs/late", b"late", 1)])
    pubc.stop()
    svc.proc.stop()  # SIGTERM: clean exit
    assert svc.proc.proc.returncode == 0
    svc.start()
    c2 = clients(svc.port)
    g2, (outcome, subs, present, _) = persistent(c2, "rs.1")
    assert (subs, present) == ({"rs/+": 1, "q2/#": 2}, True)
    msgs = g2.wait_msgs(3)
    by_body = {m["body"] or m["subject"]: m for m in msgs}
    # unacknowledged retained copy (DUP), the release resend, then the late one
    assert [m["body"] if m["subject"] != "pubrel" else "pubrel" for m in msgs] == \
        [b"retained", "pubrel", b"late"]
    assert msgs[0]["id"] == first[1]["id"] and msgs[0]["delivery_count"] > 0
    assert msgs[1]["id"] == q2["id"]
    assert msgs[2]["delivery_count"] == 0
    # retained message survived the restart
    g3 = GatewaySession(c2, "rs.2")
    g3.close()
    g3.grant()
    assert g3.subscribe({"rs/r": 1})[0] == "accepted"
    r = g3.wait_msgs(1)[0]
    assert (r["body"], r["annotations"]["x-opt-retain-message"]) == (b"retained", True)
    assert by_body


def test_kill9_loses_no_accepted_message(procs, tmp_path, clients):
    svc = Service(procs, tmp_path).start()
    c = clients(svc.port)
    persistent(c, "k9", {"load/#": 1}, grant=False)
    c.stop(clean=False)
    pubc = Client(svc.port).start()
    tx = pubc.sender(None, name="load")
    outs = [pubc.send(tx, publish_msg("load/%d" % i, b"%d" % i, qos=1)) for i in range(400)]
    pubc.wait_for(lambda: sum(o.state is not None for o in outs) >= 150,
                  what="some accepted", timeout=20)
    svc.proc.kill9()
    with pubc.lock:
        accepted = [i for i, o in enumerate(outs) if pubc_state(o) == "accepted"]
    pubc.stop(clean=False)
    assert len(accepted) >= 150
    svc.start()
    c2 = clients(svc.port)
    g2, _ = persistent(c2, "k9", grant=False)
    g2.grant(1000)
    c2.wait_for(lambda: {int(m["body"]) for m in g2.pub.messages} >= set(accepted),
                timeout=20, what="every accepted message")
    bodies = [int(m["body"]) for m in g2.pub.messages]
    assert len(bodies) == len(set(bodies)), "duplicates"
    assert bodies == sorted(bodies), "order"


def pubc_state(o):
    from subs_peer import STATE_NAMES
    return STATE_NAMES.get(o.state)
