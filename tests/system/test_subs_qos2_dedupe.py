"""subscription-service: QoS 2 duplicate detection across links (spec 5.2,
publications rule 8). A gateway takes a QoS 2 PUBLISH, the SS accepts it
(unsettled, rcv-settle second) and the gateway dies before the client saw
PUBREC: the client resends (DUP, same packet id) through another gateway,
on another link. The SS must accept it without publishing it again, also
after its own restart; the record ends with the sender's settle, with
AMQP_CLOSE of the publisher, or at --qos2-dedupe-max.

Run: GW_BUILD_DIR=<build> /usr/bin/python3 -m pytest tests/system/test_subs_qos2_dedupe.py
"""
import sqlite3

from proton import symbol

import gwtest
import svc_http
from subs_peer import GatewaySession, publish_msg, start_with_http, clients  # noqa: F401 (clients: fixture)


def q2msg(topic, body, pid, publisher, dup=False):
    m = publish_msg(topic, body, qos=2, message_id=pid, delivery_count=1 if dup else 0)
    m.annotations[symbol("x-opt-mqtt-publisher")] = publisher
    return m


def subscriber(c, cid="sub"):
    g = GatewaySession(c, cid)
    assert g.close() == "accepted"
    g.grant()
    assert g.subscribe({"d/#": 2})[0] == "accepted"
    return g


def stack(procs, tmp_path, clients):
    """The service, a client with a clean-session subscriber to d/#, and a
    second client playing gateway A."""
    svc = start_with_http(procs, tmp_path)
    sc = clients(svc.port)
    return svc, sc, subscriber(sc), clients(svc.port)


def take(c, msg, name):
    """A gateway's L7 (rcv-settle second): the SS accepts and holds it."""
    tx = c.sender(None, name=name, rcv_second=True)
    out = c.send(tx, msg)
    assert c.wait_outcome(out) == "accepted"
    assert out.settled is False
    return out


def bodies(g, c, marker):
    """Every body delivered to g up to the QoS 1 marker (publish it first)."""
    tx = c.sender(None, name="marker-%s" % marker)
    assert c.wait_outcome(c.send(tx, publish_msg("d/marker", marker, qos=1))) == "accepted"
    c.wait_for(lambda: any(m["body"] == marker for m in g.pub.messages), what="marker")
    return [m["body"] for m in g.pub.messages if m["to"] != "d/marker"]


def metric(svc, name):
    return svc_http.value(svc.hport, name)


def qos2_rows(svc):
    db = sqlite3.connect(svc.store, timeout=5)
    try:
        return db.execute("SELECT publisher, pid FROM qos2 ORDER BY rowid").fetchall()
    finally:
        db.close()


def test_resend_on_another_link_is_not_published_twice(procs, tmp_path, clients):
    svc, sc, g, gw_a = stack(procs, tmp_path, clients)
    take(gw_a, q2msg("d/a", b"once", 7, "dev1"), "L7-a")
    g.wait_msgs(1)
    assert qos2_rows(svc) == [("dev1", 7)]
    assert metric(svc, "gw_subs_qos2_records") == 1
    gw_a.stop(clean=False)  # the gateway dies before PUBREC reached dev1

    gw_b = clients(svc.port)
    out = take(gw_b, q2msg("d/a", b"once", 7, "dev1", dup=True), "L7-b")
    assert bodies(g, sc, b"m1") == [b"once"]
    assert metric(svc, "gw_subs_qos2_resends_dropped_total") == 1
    assert "already taken: not published again" in svc.proc.log()
    # dev1's PUBREL reaches gateway B, which settles: the exchange is over
    gw_b.settle_out(out)
    gwtest.wait_until(lambda: metric(svc, "gw_subs_qos2_records") == 0, what="record gone")
    gwtest.wait_until(lambda: qos2_rows(svc) == [], what="row gone")
    # dev1 reuses packet id 7 for a new message (DUP 0): published
    take(gw_b, q2msg("d/a", b"next", 7, "dev1"), "L7-b2")
    assert bodies(g, sc, b"m2") == [b"once", b"next"]


def test_not_a_resend_is_published(procs, tmp_path, clients):
    svc, sc, g, gw_a = stack(procs, tmp_path, clients)
    take(gw_a, q2msg("d/x", b"one", 9, "dev2"), "L7-a")
    gw_a.stop(clean=False)
    gw_b = clients(svc.port)
    # same publisher and id, DUP 1, other payload: another message (its
    # first transmission was lost), published
    take(gw_b, q2msg("d/x", b"two", 9, "dev2", dup=True), "L7-b1")
    # same id, DUP 0: a new message
    take(gw_b, q2msg("d/x", b"two", 9, "dev2"), "L7-b2")
    # another publisher with the same id and payload: not a duplicate
    take(gw_b, q2msg("d/x", b"two", 9, "dev3", dup=True), "L7-b3")
    # no publisher annotation: no detection (a native rcv-settle-second sender)
    m = publish_msg("d/x", b"two", qos=2, message_id=9, delivery_count=1)
    take(gw_b, m, "L7-b4")
    assert bodies(g, sc, b"m") == [b"one", b"two", b"two", b"two", b"two"]
    assert metric(svc, "gw_subs_qos2_resends_dropped_total") == 0


def test_record_survives_restart(procs, tmp_path, clients):
    svc = start_with_http(procs, tmp_path)
    sc = clients(svc.port)
    subscriber(sc, "psub").grant()
    persistent = GatewaySession(sc, "keep")
    assert persistent.list()[0] == "accepted"
    assert persistent.subscribe({"d/#": 2})[0] == "accepted"
    gw_a = clients(svc.port)
    take(gw_a, q2msg("d/r", b"durable", 3, "dev4"), "L7-a")
    gw_a.stop(clean=False)
    sc.stop(clean=False)
    svc.proc.stop()
    assert svc.proc.proc.returncode == 0
    assert qos2_rows(svc) == [("dev4", 3)]
    svc.hport = gwtest.free_port()
    svc.extra = ["--http-listen", "127.0.0.1:%d" % svc.hport]
    svc.start()
    gwtest.wait_until(lambda: gwtest.port_open(svc.hport), what="http port")
    assert "qos2=1" in svc.proc.log()
    gw_b = clients(svc.port)
    take(gw_b, q2msg("d/r", b"durable", 3, "dev4", dup=True), "L7-b")
    assert metric(svc, "gw_subs_qos2_resends_dropped_total") == 1
    # the persistent subscriber got it once (queued while offline)
    c2 = clients(svc.port)
    g2 = GatewaySession(c2, "keep")
    g2.grant()
    assert g2.list()[2] is True
    assert bodies(g2, c2, b"mk") == [b"durable"]


def test_clean_session_forgets_the_publisher(procs, tmp_path, clients):
    svc, sc, g, gw_a = stack(procs, tmp_path, clients)
    take(gw_a, q2msg("d/c", b"c1", 1, "dev5"), "L7-a1")
    take(gw_a, q2msg("d/c", b"c2", 2, "dev5"), "L7-a2")
    take(gw_a, q2msg("d/c", b"o", 1, "other"), "L7-a3")
    gw_a.stop(clean=False)
    assert metric(svc, "gw_subs_qos2_records") == 3
    # dev5 reconnects with clean session 1: AMQP_CLOSE; it discards its state
    gw_b = clients(svc.port)
    assert GatewaySession(gw_b, "dev5").close() == "accepted"
    gwtest.wait_until(lambda: qos2_rows(svc) == [("other", 1)], what="dev5's rows gone")
    assert metric(svc, "gw_subs_qos2_records") == 1
    take(gw_b, q2msg("d/c", b"c1", 1, "dev5", dup=True), "L7-b")
    assert bodies(g, sc, b"m") == [b"c1", b"c2", b"o", b"c1"]


def test_bounded(procs, tmp_path, clients):
    svc = start_with_http(procs, tmp_path, "--qos2-dedupe-max", "2")
    gw_a = clients(svc.port)
    for i in range(4):
        take(gw_a, q2msg("d/b", b"%d" % i, 1, "dev-b%d" % i), "L7-%d" % i)
    # all four are held by their deliveries: none can go yet
    assert metric(svc, "gw_subs_qos2_records") == 4
    gw_a.stop(clean=False)
    gw_b = clients(svc.port)
    take(gw_b, q2msg("d/b", b"x", 1, "dev-bx"), "L7-x")
    # the new one pushes the oldest records no delivery holds out
    gwtest.wait_until(lambda: metric(svc, "gw_subs_qos2_records") == 2, what="bound")
    assert metric(svc, "gw_subs_qos2_evicted_total") == 3
    assert [r[0] for r in qos2_rows(svc)] == ["dev-b3", "dev-bx"]
