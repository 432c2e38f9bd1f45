"""subscription-service: the shared delivery link L4s (spec 2.2, 3.12, 6.3
rule 7).

A proton client plays a gateway in --delivery-link shared mode: one L2
sender to $mqtt.subscriptionservice, one L4s receiver (source capability
mqtt-shared-delivery), AMQP_LIST / AMQP_CLOSE carrying the registration
annotations (delivery link, window, serial) and AMQP_OFFLINE. The service
keeps each client's window: at most W deliveries unsettled per client, every
one carrying the registration's serial as a delivery annotation.

Synchronisation: publications come from the same AMQP connection as the L4s,
so once a publication's `accepted` has arrived, every transfer the service
made for it has arrived too (frames of one connection are ordered).

Run: GW_BUILD_DIR=<build> /usr/bin/python3 -m pytest tests/system/test_subs_shared_delivery.py
"""
import pytest
from proton import Delivery, Message, ulong

import gwtest
import svc_http
from subs_peer import (ANNO_DLINK, ANNO_SERIAL, ANNO_WINDOW, Client, GatewaySession,  # noqa: F401
                       Service, SharedGateway, clients, publish_msg, serial_of, shared_receiver)

PERSISTENT = 'kind="persistent"'
TRANSIENT = 'kind="transient"'
ON_SHARED = 'link="shared"'
ON_L4 = 'link="per-client"'


@pytest.fixture
def svc(procs, tmp_path):
    hport = gwtest.free_port()
    s = Service(procs, tmp_path, extra=["--http-listen", "127.0.0.1:%d" % hport]).start()
    gwtest.wait_until(lambda: gwtest.port_open(hport), what="http port")
    s.hport = hport
    return s


def metric(svc, name, labels=""):
    return svc_http.metrics(svc.hport).get((name, labels))


def publish_all(c, tx, msgs):
    """Send every publication, then wait for all outcomes (accepted)."""
    outs = [c.send(tx, m) for m in msgs]
    for o in outs:
        assert c.wait_outcome(o) == "accepted"


def sync(c, g):
    """A control round trip on this connection: everything the service sent
    before it (on any link of the connection) has arrived."""
    assert g.offline("sync-nobody", 1) == "accepted"


def unsettled(recs):
    return [r for r in recs if not r.get("done") and not r["settled"]]


def settle_all(c, recs, outcome="accept"):
    def do():
        for r in recs:
            d = r["delivery"]
            d.update({"accept": Delivery.ACCEPTED, "release": Delivery.RELEASED,
                      "reject": Delivery.REJECTED}[outcome])
            d.settle()
    c.call(do)
    for r in recs:
        r["done"] = True


# ---------------------------------------------------------------- 1 ----

def test_window_per_client_on_one_l4s(svc, clients):
    """20 transient clients on one L4s, window 5: every message exactly once
    with its serial, never more than 5 unsettled per client, and a client
    held at 5 does not hold the others."""
    c = clients(svc.port)
    g = SharedGateway(c, "gw-a")
    n, per, w = 20, 50, 5
    ids = ["sd.%02d" % i for i in range(n)]
    serial = {cid: 1000 + i for i, cid in enumerate(ids)}
    for cid in ids:
        assert g.close(cid, w, serial[cid]) == "accepted"
        assert g.subscribe(cid, {"sd/%s" % cid: 1}) == "accepted"
    m = svc_http.metrics(svc.hport)
    assert m[("gw_subs_shared_delivery_links", "")] == 1
    assert m[("gw_subs_online_sessions", ON_SHARED)] == n
    assert m[("gw_subs_sessions", TRANSIENT)] == n

    tx = c.sender(None, name="pub")
    publish_all(c, tx, [publish_msg("sd/%s" % cid, b"%d" % k, qos=1)
                        for k in range(per) for cid in ids])
    sync(c, g)
    # Exactly W per client, nothing more while none is settled.
    recs = g.received()
    assert len(recs) == n * w
    for cid in ids:
        mine = g.received(serial[cid])
        assert len(mine) == w, cid
        assert [r["body"] for r in mine] == [b"%d" % k for k in range(w)]
        for r in mine:
            assert r["settled"] is False
            assert r["to"] == "sd/%s" % cid
            assert r["annotations"]["x-opt-mqtt-qos"] == 1

    # Client 0 settles its 5: it gets the next 5, the others nothing more.
    first = ids[0]
    settle_all(c, g.received(serial[first]))
    c.wait_for(lambda: len(g.received(serial[first])) == 2 * w, what="next window of client 0")
    sync(c, g)
    assert len(g.received()) == n * w + w
    for cid in ids[1:]:
        assert len(g.received(serial[cid])) == w

    # Settle as they come: every message exactly once, in order per client,
    # never more than W unsettled for one client.
    total = n * per
    while True:
        recs = g.received()
        for cid in ids:
            assert len(unsettled([r for r in recs if serial_of(r) == serial[cid]])) <= w
        todo = unsettled(recs)
        if not todo and len(recs) == total:
            break
        settle_all(c, todo)
        c.wait_for(lambda: len(g.received()) > len(recs) or len(recs) == total,
                   timeout=10, what="more deliveries (have %d)" % len(recs))
    sync(c, g)
    recs = g.received()
    assert len(recs) == total
    for cid in ids:
        mine = g.received(serial[cid])
        assert [r["body"] for r in mine] == [b"%d" % k for k in range(per)], cid
        assert all(r["delivery_count"] == 0 for r in mine)
        pids = [r["id"] for r in mine]
        assert all(1 <= p <= 65535 for p in pids)


# ---------------------------------------------------------------- 2 ----

def test_qos0_unsettled_and_counted(svc, clients):
    c = clients(svc.port)
    g = SharedGateway(c, "gw-q0")
    assert g.close("q0", 2, 7) == "accepted"
    assert g.subscribe("q0", {"q0/t": 0}) == "accepted"
    tx = c.sender(None, name="pub")
    publish_all(c, tx, [publish_msg("q0/t", b"%d" % k, qos=1) for k in range(5)])
    sync(c, g)
    recs = g.received(7)
    assert len(recs) == 2
    for r in recs:
        assert r["settled"] is False  # unsettled on L4s, QoS 0 too
        assert r["annotations"]["x-opt-mqtt-qos"] == 0
        assert r["id"] is None
        assert serial_of(r) == 7
    settle_all(c, recs[:1])
    c.wait_for(lambda: len(g.received(7)) == 3, what="third QoS 0 delivery")
    sync(c, g)
    assert len(g.received(7)) == 3
    for _ in range(3):
        settle_all(c, unsettled(g.received(7)))
        sync(c, g)
    assert [r["body"] for r in g.received(7)] == [b"%d" % k for k in range(5)]


# ---------------------------------------------------------------- 3 ----

def test_persistent_offline_then_resume(svc, clients):
    c = clients(svc.port)
    g = SharedGateway(c, "gw-p")
    assert g.list("p1", 10, 1) == ("accepted", {}, False)
    assert g.subscribe("p1", {"p1/#": 1}) == "accepted"
    tx = c.sender(None, name="pub")
    publish_all(c, tx, [publish_msg("p1/a", b"m%d" % k) for k in range(3)])
    first = c.wait_for(lambda: len(g.received(1)) == 3 and g.received(1), what="3 deliveries")
    ids = [r["id"] for r in first]
    assert len(set(ids)) == 3

    assert g.offline("p1", 1) == "accepted"
    assert metric(svc, "gw_subs_online_sessions", ON_SHARED) == 0
    publish_all(c, tx, [publish_msg("p1/a", b"q%d" % k) for k in range(2)])
    sync(c, g)
    assert len(g.received()) == 3  # offline: queued, nothing sent

    assert g.list("p1", 10, 2) == ("accepted", {"p1/#": 1}, True)
    recs = c.wait_for(lambda: len(g.received(2)) == 5 and g.received(2),
                      what="redelivery then queued")
    assert [r["body"] for r in recs] == [b"m0", b"m1", b"m2", b"q0", b"q1"]
    assert [r["id"] for r in recs[:3]] == ids
    assert all(r["delivery_count"] >= 1 for r in recs[:3])
    assert all(r["delivery_count"] == 0 for r in recs[3:])
    assert len(set(r["id"] for r in recs)) == 5
    settle_all(c, recs)
    settle_all(c, first, "release")  # the old connection's: ignored
    sync(c, g)
    assert len(g.received()) == 8
    assert metric(svc, "gw_subs_queued_messages") == 0


# ---------------------------------------------------------------- 4 ----

def test_takeover_across_l4s(svc, clients):
    c1, c2 = clients(svc.port), clients(svc.port)
    ga, gb = SharedGateway(c1, "gw-1"), SharedGateway(c2, "gw-2")
    tx = c1.sender(None, name="pub")

    # Transient X on A (serial 1), then CLOSE on B (serial 2).
    assert ga.close("x", 5, 1) == "accepted"
    assert ga.subscribe("x", {"x/t": 1}) == "accepted"
    assert gb.close("x", 5, 2) == "accepted"
    st = c1.wait_for(lambda: [r for r in ga.l4s.messages if r["subject"] == "stolen"],
                     what="AMQP_STOLEN on A")
    assert len(st) == 1
    assert serial_of(st[0]) == 1
    assert st[0]["settled"] is True  # pre-settled
    assert st[0]["body"] is None
    assert gb.stolen() == []
    assert metric(svc, "gw_subs_shared_stolen_total") == 1
    assert metric(svc, "gw_subs_online_sessions", ON_SHARED) == 1

    assert gb.subscribe("x", {"x/t": 1}) == "accepted"
    publish_all(c1, tx, [publish_msg("x/t", b"1")])
    c2.wait_for(lambda: len(gb.received(2)) == 1, what="delivery on B")
    # The late OFFLINE of the old connection changes nothing.
    assert ga.offline("x", 1) == "accepted"
    publish_all(c1, tx, [publish_msg("x/t", b"2")])
    c2.wait_for(lambda: len(gb.received(2)) == 2, what="second delivery on B")
    assert [r["body"] for r in gb.received(2)] == [b"1", b"2"]
    assert ga.received() == []
    assert metric(svc, "gw_subs_online_sessions", ON_SHARED) == 1

    # Persistent Y with deliveries in flight on A: LIST on B takes them over.
    assert ga.list("y", 5, 3) == ("accepted", {}, False)
    assert ga.subscribe("y", {"y/t": 1}) == "accepted"
    publish_all(c1, tx, [publish_msg("y/t", b"a"), publish_msg("y/t", b"b")])
    old = c1.wait_for(lambda: len(ga.received(3)) == 2 and ga.received(3), what="Y on A")
    assert gb.list("y", 5, 4) == ("accepted", {"y/t": 1}, True)
    c1.wait_for(lambda: ga.stolen() == [1, 3], what="AMQP_STOLEN for serial 3")
    new = c2.wait_for(lambda: len(gb.received(4)) == 2 and gb.received(4), what="Y on B")
    assert [r["body"] for r in new] == [b"a", b"b"]
    assert [r["id"] for r in new] == [r["id"] for r in old]
    assert all(r["delivery_count"] >= 1 for r in new)
    settle_all(c1, old, "release")  # G releases what it cannot hand over: ignored
    assert ga.offline("y", 3) == "accepted"
    sync(c2, gb)
    assert len(gb.received(4)) == 2
    settle_all(c2, new + gb.received(2))
    sync(c2, gb)
    assert metric(svc, "gw_subs_queued_messages") == 0


# ---------------------------------------------------------------- 5 ----

def test_per_client_l4_and_l4s_steal_each_other(svc, clients):
    c = clients(svc.port)
    g = SharedGateway(c, "gw-s")
    tx = c.sender(None, name="pub")
    assert g.close("z", 5, 1) == "accepted"
    assert g.subscribe("z", {"z/t": 1}) == "accepted"

    # A per-client L4 for z attaches: AMQP_STOLEN(1) on the L4s, offline.
    c2 = clients(svc.port)
    gs = GatewaySession(c2, "z")
    c.wait_for(lambda: g.stolen() == [1], what="AMQP_STOLEN(1)")
    m = svc_http.metrics(svc.hport)
    assert m[("gw_subs_online_sessions", ON_SHARED)] == 0
    assert m[("gw_subs_online_sessions", ON_L4)] == 1
    assert gs.close() == "accepted"
    gs.grant()
    assert gs.subscribe({"z/t": 1})[0] == "accepted"
    publish_all(c, tx, [publish_msg("z/t", b"l4")])
    assert [r["body"] for r in gs.wait_msgs(1)] == [b"l4"]
    c2.settle(gs.pub.messages[0])

    # Registered on the L4s again (serial 2): the per-client L4 is stolen.
    assert g.close("z", 5, 2) == "accepted"
    c2.wait_for(lambda: gs.pub.closed == "amqp:link:stolen", what="L4 stolen")
    m = svc_http.metrics(svc.hport)
    assert m[("gw_subs_online_sessions", ON_SHARED)] == 1
    assert m[("gw_subs_online_sessions", ON_L4)] == 0
    assert g.subscribe("z", {"z/t": 1}) == "accepted"
    publish_all(c, tx, [publish_msg("z/t", b"l4s")])
    got = c.wait_for(lambda: g.received(2), what="delivery on L4s with serial 2")
    assert [r["body"] for r in got] == [b"l4s"]
    assert [r["body"] for r in gs.pub.messages] == [b"l4"]


# ---------------------------------------------------------------- 6 ----

def test_l4s_detached_sessions_offline(svc, clients):
    c = clients(svc.port)
    g = SharedGateway(c, "gw-d")
    tx = c.sender(None, name="pub")
    assert g.list("dp", 5, 1)[0] == "accepted"
    assert g.subscribe("dp", {"d/p": 1}) == "accepted"
    assert g.close("dt", 5, 2) == "accepted"
    assert g.subscribe("dt", {"d/t": 1}) == "accepted"
    publish_all(c, tx, [publish_msg("d/p", b"p0")])
    c.wait_for(lambda: len(g.received(1)) == 1, what="p0")
    m = svc_http.metrics(svc.hport)
    assert m[("gw_subs_online_sessions", ON_SHARED)] == 2
    assert m[("gw_subs_sessions", TRANSIENT)] == 1

    c.close_link(g.l4s.link)
    gwtest.wait_until(lambda: metric(svc, "gw_subs_shared_delivery_links") == 0,
                      what="L4s gone")
    m = svc_http.metrics(svc.hport)
    assert m[("gw_subs_online_sessions", ON_SHARED)] == 0
    assert m[("gw_subs_sessions", TRANSIENT)] == 0  # transient: gone
    assert m[("gw_subs_sessions", PERSISTENT)] == 1
    # Registrations naming it are refused now.
    assert g.close("dt", 5, 3) == "rejected"

    # Offline: the persistent session queues, the transient one is gone.
    publish_all(c, tx, [publish_msg("d/p", b"p1"), publish_msg("d/t", b"t1")])
    g2 = SharedGateway(c, "gw-d2")
    g2.l3 = g.l3  # dp's L3 is still attached on this connection
    assert g2.list("dp", 5, 4) == ("accepted", {"d/p": 1}, True)
    recs = c.wait_for(lambda: len(g2.received(4)) == 2 and g2.received(4), what="dp resumed")
    assert [r["body"] for r in recs] == [b"p0", b"p1"]
    assert recs[0]["delivery_count"] >= 1
    assert g2.close("dt", 5, 5) == "accepted"
    sync(c, g2)
    assert g2.received(5) == []

    # Connection lost: the same, for every session on its L4s.
    c3 = clients(svc.port)
    g3 = SharedGateway(c3, "gw-lost")
    assert g3.close("lost", 5, 1) == "accepted"
    assert metric(svc, "gw_subs_shared_delivery_links") == 2
    c3.stop(clean=False)
    gwtest.wait_until(lambda: metric(svc, "gw_subs_shared_delivery_links") == 1,
                      what="L4s of the lost connection gone")
    assert metric(svc, "gw_subs_online_sessions", ON_SHARED) == 2  # dp, dt on gw-d2


# ---------------------------------------------------------------- 7 ----

def test_malformed_registrations(svc, clients):
    c = clients(svc.port)
    g = SharedGateway(c, "gw-m")

    def outcome(m):
        out = g.send(m)
        return c.wait_outcome(out), out.condition, out.description

    # window (and serial) without a delivery link
    st, cond, _ = outcome(g.ctrl_msg("list", "m1", 5, 1, link=False, reply_to="$mqtt.to.m1.control"))
    assert (st, cond) == ("rejected", "amqp:invalid-field")
    # an L4s that is not attached
    st, cond, desc = outcome(g.ctrl_msg("close", "m1", 5, 1, link="$mqtt.to.$mqtt.delivery.nope"))
    assert (st, cond) == ("rejected", "amqp:invalid-field")
    assert "delivery link not attached" in desc
    st, cond, desc = outcome(g.ctrl_msg("list", "m1", 5, 1, link="nope",
                                        reply_to="$mqtt.to.m1.control"))
    assert (st, cond) == ("rejected", "amqp:invalid-field")
    assert "delivery link not attached" in desc
    # OFFLINE without serial; window out of range; serial not a ulong
    st, cond, _ = outcome(g.ctrl_msg("offline", "m1"))
    assert (st, cond) == ("rejected", "amqp:invalid-field")
    st, cond, _ = outcome(g.ctrl_msg("close", "m1", 0, 1))
    assert (st, cond) == ("rejected", "amqp:invalid-field")
    m = g.ctrl_msg("close", "m1", 5)
    m.annotations[ANNO_SERIAL] = "1"
    st, cond, _ = outcome(m)
    assert (st, cond) == ("rejected", "amqp:invalid-field")
    # OFFLINE with a bad correlation-id
    m = g.ctrl_msg("offline", "m1", None, 1)
    m.correlation_id = "nobody"
    st, cond, _ = outcome(m)
    assert (st, cond) == ("rejected", "amqp:invalid-field")
    # nothing was registered or created; a good one still works
    mt = svc_http.metrics(svc.hport)
    assert mt[("gw_subs_online_sessions", ON_SHARED)] == 0
    assert mt[("gw_subs_sessions", TRANSIENT)] == 0
    assert g.close("m1", 5, 1) == "accepted"
    assert metric(svc, "gw_subs_online_sessions", ON_SHARED) == 1
    # OFFLINE for a client the service does not know: accepted, nothing created
    assert g.offline("never-seen", 9) == "accepted"
    assert metric(svc, "gw_subs_sessions", TRANSIENT) == 1


# ---------------------------------------------------------------- 8 ----

def test_outcome_after_offline_ignored(svc, clients):
    c = clients(svc.port)
    g = SharedGateway(c, "gw-o")
    tx = c.sender(None, name="pub")
    assert g.list("o1", 5, 1)[0] == "accepted"
    assert g.subscribe("o1", {"o/#": 2}) == "accepted"
    publish_all(c, tx, [publish_msg("o/1", b"a", qos=1), publish_msg("o/2", b"b", qos=2),
                        publish_msg("o/3", b"c", qos=1)])
    old = c.wait_for(lambda: len(g.received(1)) == 3 and g.received(1), what="3 deliveries")
    assert g.offline("o1", 1) == "accepted"
    # Outcomes for the old registration's deliveries: ignored, whatever they say.
    settle_all(c, old[:1], "accept")
    settle_all(c, old[1:2], "reject")
    settle_all(c, old[2:], "release")
    sync(c, g)
    assert len(g.received()) == 3
    assert metric(svc, "gw_subs_queued_messages") == 3
    # Nothing lost: all three again at the next connection, same ids, DUP.
    assert g.list("o1", 5, 2)[0] == "accepted"
    new = c.wait_for(lambda: len(g.received(2)) == 3 and g.received(2), what="redelivery")
    assert [r["body"] for r in new] == [b"a", b"b", b"c"]
    assert [r["id"] for r in new] == [r["id"] for r in old]
    assert all(r["delivery_count"] >= 1 for r in new)
    settle_all(c, new)
    sync(c, g)
    assert metric(svc, "gw_subs_queued_messages") == 0


# ---------------------------------------------------------------- 9 ----

def test_link_credit_shared_round_robin(svc, clients):
    """The L4s's own credit is shared: sessions that find none wait and are
    served in turn as credit arrives, not always the first one."""
    c = clients(svc.port)
    g = SharedGateway(c, "gw-rr", credit=0)
    ids = ["rr.a", "rr.b", "rr.c"]
    for k, cid in enumerate(ids):
        assert g.close(cid, 2, k + 1) == "accepted"
        assert g.subscribe(cid, {"rr/%s" % cid: 1}) == "accepted"
    tx = c.sender(None, name="pub")
    publish_all(c, tx, [publish_msg("rr/%s" % cid, b"%d" % k) for k in range(2) for cid in ids])
    sync(c, g)
    assert g.received() == []
    served = []
    for turn in range(3):
        before = len(g.received())
        c.flow(g.l4s, 2)
        c.wait_for(lambda: len(g.received()) == before + 2, what="2 deliveries")
        sync(c, g)
        got = g.received()[before:]
        assert len(g.received()) == before + 2
        assert len({serial_of(r) for r in got}) == 1  # one client's window per turn
        served.append(serial_of(got[0]))
    assert sorted(served) == [1, 2, 3]  # each client had its turn
    # With credit again, settlement pumps: nothing is stuck.
    settle_all(c, g.received())
    publish_all(c, tx, [publish_msg("rr/%s" % cid, b"x") for cid in ids])
    c.flow(g.l4s, 100)
    c.wait_for(lambda: len(g.received()) == 9, what="the rest")


def test_capability_as_array_and_metrics(svc, clients):
    c = clients(svc.port)
    rx = shared_receiver(c, "$mqtt.to.$mqtt.delivery.arr", as_array=True)
    assert rx.closed is None
    assert metric(svc, "gw_subs_shared_delivery_links") == 1
    tx = c.sender("$mqtt.subscriptionservice", name="l2")
    m = Message()
    m.subject = "close"
    m.correlation_id = "$mqtt.to.arr.publish"
    m.annotations = {ANNO_DLINK: "$mqtt.to.$mqtt.delivery.arr", ANNO_WINDOW: 3,
                     ANNO_SERIAL: ulong(5)}
    assert c.wait_outcome(c.send(tx, m)) == "accepted"
    assert metric(svc, "gw_subs_online_sessions", ON_SHARED) == 1
    c.close_link(rx.link)
    gwtest.wait_until(lambda: metric(svc, "gw_subs_shared_delivery_links") == 0,
                      what="L4s detached")
    assert metric(svc, "gw_subs_online_sessions", ON_SHARED) == 0
    assert metric(svc, "gw_subs_sessions", TRANSIENT) == 0


def test_qos2_release_resend_on_l4s(svc, clients):
    """A QoS 2 copy whose AMQP_PUBREL was accepted comes back after a
    reconnect as a release resend (subject pubrel) on the L4s, with the new
    serial, holding a unit of the window (spec 3.10, 3.12)."""
    c = clients(svc.port)
    g = SharedGateway(c, "gw-r")
    tx = c.sender(None, name="pub")
    assert g.list("r1", 1, 1)[0] == "accepted"
    assert g.subscribe("r1", {"r/#": 2}) == "accepted"
    publish_all(c, tx, [publish_msg("r/1", b"a", qos=2), publish_msg("r/2", b"b", qos=2)])
    first = c.wait_for(lambda: g.received(1), what="first QoS 2 delivery")
    sync(c, g)
    assert len(g.received(1)) == 1  # window 1
    pid = first[0]["id"]
    rel = c.sender("$mqtt.r1.pubrel", name="$mqtt.r1.pubrel")
    m = Message()
    m.subject = "pubrel"
    m.id = ulong(pid)
    assert c.wait_outcome(c.send(rel, m)) == "accepted"
    assert g.offline("r1", 1) == "accepted"
    assert g.list("r1", 1, 2)[0] == "accepted"
    recs = c.wait_for(lambda: g.received(2), what="release resend")
    sync(c, g)
    assert len(g.received(2)) == 1  # the resend holds the only unit of W
    assert recs[0]["subject"] == "pubrel"
    assert recs[0]["id"] == pid
    assert recs[0]["settled"] is False
    settle_all(c, recs)  # PUBCOMP
    nxt = c.wait_for(lambda: len(g.received(2)) == 2 and g.received(2)[1:], what="next")
    assert nxt[0]["body"] == b"b"
    assert nxt[0]["subject"] is None
    settle_all(c, nxt)
    sync(c, g)
    assert metric(svc, "gw_subs_queued_messages") == 0


def test_subscriptions_over_l4s(svc, clients):
    """AMQP_LIST whose reply-to is the L4s: AMQP_SUBSCRIPTIONS comes on the
    L4s, pre-settled, with the serial, before any delivery of that
    registration and outside its window; no L3 anywhere (spec 3.12)."""
    c = clients(svc.port)
    g = SharedGateway(c, "gw-l")
    tx = c.sender(None, name="pub")
    assert g.list("s4", 2, 1, on_l4s=True) == ("accepted", {}, False)
    sub = g.subscriptions(1)[0]
    assert sub["settled"] is True
    assert g.subscribe("s4", {"s4/#": 1}) == "accepted"
    publish_all(c, tx, [publish_msg("s4/a", b"%d" % k) for k in range(3)])
    sync(c, g)
    first = g.received(1)
    assert [r["body"] for r in first] == [b"0", b"1"]  # W = 2
    assert g.offline("s4", 1) == "accepted"
    publish_all(c, tx, [publish_msg("s4/a", b"3")])

    assert g.list("s4", 2, 2, on_l4s=True) == ("accepted", {"s4/#": 1}, True)
    c.wait_for(lambda: len(g.received(2)) == 2, what="window of serial 2")
    sync(c, g)
    with c.lock:
        l4s = list(g.l4s.messages)
    mine = [r for r in l4s if serial_of(r) == 2]
    assert mine[0]["subject"] == "subscriptions"  # before any delivery
    assert [r["body"] for r in mine[1:]] == [b"0", b"1"]  # and outside the window
    assert all(r["delivery_count"] >= 1 for r in mine[1:])
    for _ in range(3):
        settle_all(c, unsettled(g.received(2)))
        sync(c, g)
    assert [r["body"] for r in g.received(2)] == [b"0", b"1", b"2", b"3"]
    assert ("$mqtt.to.s4.control" not in c.rx_of)

    # Without link credit the answer waits for it (LIST accepted first).
    g2 = SharedGateway(c, "gw-l2", credit=0)
    out = g2.send(g2.ctrl_msg("list", "s5", 3, 7, reply_to=g2.name))
    assert c.wait_outcome(out) == "accepted"
    sync(c, g2)
    assert g2.subscriptions() == []
    c.flow(g2.l4s, 1)
    rec = c.wait_for(lambda: g2.subscriptions(7), what="AMQP_SUBSCRIPTIONS after credit")[0]
    assert rec["body"] == {}
    assert rec["annotations"]["x-opt-session-present"] is False

    # reply-to naming another link than the registration's: refused.
    m = g.ctrl_msg("list", "s6", 3, 8, reply_to="$mqtt.to.$mqtt.delivery.other")
    assert c.wait_outcome(g.send(m)) == "rejected"
