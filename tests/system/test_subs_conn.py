"""subscription-service with the link layout of a gateway that shares its AMQP
resources among clients (spec 2.2): ONE control link (L2) carrying the
control messages of many clients, L3 detached right after
AMQP_SUBSCRIPTIONS while L4 stays, per-client links spread over AMQP
sessions that end independently, and the group commit of AMQP_LIST (spec
5.2: a new session is durable before `accepted`, one commit for many).

Run: GW_BUILD_DIR=<build> /usr/bin/python3 -m pytest tests/system/test_subs_conn.py
"""
import pytest
from proton import Endpoint

import svc_http
from subs_peer import (start_with_http, GatewaySession, Out, Rx, clients,  # noqa: F401 (fixture)
                       control_message, publish_msg)

CTRL = "$mqtt.subscriptionservice"
PERSISTENT = 'kind="persistent"'
TRANSIENT = 'kind="transient"'


def ctl_msg(subject, cid, message_id=None, body=None, reply_to=None):
    return control_message(subject, "$mqtt.to.%s.publish" % cid, message_id=message_id,
                           body=body, reply_to=reply_to)


class Many:
    """n clients' L3/L4 on one connection, their control messages on ONE L2."""

    def __init__(self, c, ids):
        self.c = c
        self.ids = list(ids)
        self.ctl = {i: c.receiver("$mqtt.to.%s.control" % i, credit=4) for i in self.ids}
        self.pub = {i: c.receiver("$mqtt.to.%s.publish" % i, credit=0) for i in self.ids}
        self.tx = c.sender(CTRL, name="shared-l2")

    def burst(self, msgs):
        """Send every message in one call (one write: one loop iteration or few)."""
        outs = []

        def do():
            for m in msgs:
                link = self.tx["link"]
                dlv = link.send(m)
                o = Out()
                o.delivery = dlv
                self.c.out_of[(link.name, str(dlv.tag))] = o
                outs.append(o)
        self.c.call(do)
        return outs

    def lists(self, ids):
        before = {i: len(self.ctl[i].messages) for i in ids}
        outs = self.burst([ctl_msg("list", i, reply_to="$mqtt.to.%s.control" % i)
                           for i in ids])
        for o in outs:
            assert self.c.wait_outcome(o) == "accepted"
        res = {}
        for i in ids:
            rec = self.c.wait_for(lambda: len(self.ctl[i].messages) > before[i] and
                                  self.ctl[i].messages[before[i]],
                                  what="AMQP_SUBSCRIPTIONS for %s" % i)
            self.c.settle(rec, "accept")
            assert rec["subject"] == "subscriptions"
            res[i] = (rec["body"], rec["annotations"].get("x-opt-session-present"))
        return res


def test_many_clients_on_one_control_link(procs, tmp_path, clients):
    svc = start_with_http(procs, tmp_path)
    c = clients(svc.port)
    ids = ["many.%02d" % k for k in range(50)]
    mc = Many(c, ids)
    old, new = ids[:10], ids[10:]
    # The shared L2 gets the topic links' window (--link-credit), spec 2.2.
    c.wait_for(lambda: mc.tx["link"].credit == 1000, what="L2 credit 1000")

    # 10 sessions exist already (persistent, with one filter each).
    assert all(p is False for _, p in mc.lists(old).values())
    outs = mc.burst([ctl_msg("subscribe", i, message_id=1, body={"old/%s" % i: 1})
                     for i in old])
    assert [c.wait_outcome(o) for o in outs] == ["accepted"] * 10

    # 50 LISTs in one burst on the shared L2: 40 create a session (a durable
    # row each), 10 find theirs unchanged; each answer on its own L3.
    commits0 = svc_http.value(svc.hport, "gw_subs_commits_total")
    res = mc.lists(ids)
    for i in old:
        assert res[i] == ({"old/%s" % i: 1}, True), i
    for i in new:
        assert res[i] == ({}, False), i
    for i in ids:
        assert len(mc.ctl[i].messages) == (2 if i in old else 1), i
    # The new rows shared commits: far fewer than one per LIST.
    commits = svc_http.value(svc.hport, "gw_subs_commits_total") - commits0
    assert 1 <= commits <= 20, commits
    m = svc_http.metrics(svc.hport)
    assert m[("gw_subs_sessions", PERSISTENT)] == 50

    # SUBSCRIBE for the 50 ids in one burst; a bad filter and a bad reply-to
    # in the middle are refused without disturbing the others.
    msgs = [ctl_msg("subscribe", i, message_id=7, body={"t/%s/+" % i: k % 3})
            for k, i in enumerate(ids)]
    msgs.insert(25, ctl_msg("subscribe", ids[3], message_id=8, body={"bad/#/x": 1}))
    msgs.insert(30, ctl_msg("list", ids[4], reply_to="$mqtt.to.%s.control" % ids[5]))
    outs = mc.burst(msgs)
    states = [c.wait_outcome(o) for o in outs]
    assert states[25] == "rejected" and states[30] == "rejected"
    assert states.count("accepted") == 50
    res = mc.lists(ids)
    for k, i in enumerate(ids):
        want = {"t/%s/+" % i: k % 3}
        if i in old:
            want["old/%s" % i] = 1
        assert res[i] == (want, True), i

    # Deliveries reach each client on its own L4.
    for i in ids[:5]:
        c.flow(mc.pub[i], 10)
    tx = c.sender(None, name="pub")
    for i in ids[:5]:
        assert c.wait_outcome(c.send(tx, publish_msg("t/%s/x" % i, i.encode(), qos=1))) == \
            "accepted"
    for i in ids[:5]:
        c.wait_for(lambda: len(mc.pub[i].messages) == 1, what="publication for %s" % i)
        assert mc.pub[i].messages[0]["body"] == i.encode()
        assert mc.pub[i].messages[0]["to"] == "t/%s/x" % i


def test_grouped_list_is_durable_before_accepted(procs, tmp_path, clients):
    """kill -9 right after the burst's `accepted`s: every session survives."""
    svc = start_with_http(procs, tmp_path, "--store-sync", "full")
    c = clients(svc.port)
    ids = ["dur.%02d" % k for k in range(30)]
    mc = Many(c, ids)
    outs = mc.burst([ctl_msg("list", i, reply_to="$mqtt.to.%s.control" % i) for i in ids])
    assert [c.wait_outcome(o) for o in outs] == ["accepted"] * 30
    svc.proc.kill9()
    c.stop(clean=False)
    svc.start()
    c2 = clients(svc.port)
    mc2 = Many(c2, ids)
    res = mc2.lists(ids)
    assert all(res[i] == ({}, True) for i in ids), res


def detach(c, rx):
    c.call(lambda: rx.link.detach())


@pytest.mark.parametrize("how", ["detach", "close"])
def test_l3_gone_after_subscriptions_l4_stays(procs, tmp_path, clients, how):
    svc = start_with_http(procs, tmp_path)
    c = clients(svc.port)
    g = GatewaySession(c, "l3less")
    assert g.list()[0] == "accepted"
    assert g.subscribe({"l3/#": 1})[0] == "accepted"
    # The gateway detaches L3 after CONNACK: L4 and L2 stay.
    if how == "detach":
        detach(c, g.ctl)
    else:
        c.close_link(g.ctl.link)
    c.wait_for(lambda: g.ctl.closed is not None, what="L3 gone")
    assert g.ctl.closed == ""
    m = svc_http.metrics(svc.hport)
    assert m[("gw_subs_sessions", PERSISTENT)] == 1

    # Still online: queued (no credit yet) then live messages arrive on L4.
    pc = clients(svc.port)
    tx = pc.sender(None, name="pub")
    for k in range(3):
        assert pc.wait_outcome(pc.send(tx, publish_msg("l3/q", b"q%d" % k, qos=1))) == \
            "accepted"
    g.grant(10)
    msgs = g.wait_msgs(3)
    assert [r["body"] for r in msgs] == [b"q0", b"q1", b"q2"]
    assert pc.wait_outcome(pc.send(tx, publish_msg("l3/live", b"live", qos=1))) == "accepted"
    msgs = g.wait_msgs(4)
    assert msgs[3]["body"] == b"live"
    for r in msgs[:3]:
        c.settle(r, "accept")  # the 4th stays unacknowledged
    # Control traffic for the client still works on L2 without an L3.
    assert g.subscribe({"more/+": 2})[0] == "accepted"

    # Takeover: another gateway's L3+L4 for the same id steal the old L4.
    c2 = clients(svc.port)
    g2 = GatewaySession(c2, "l3less")
    c.wait_for(lambda: g.pub.closed is not None, what="old L4 stolen")
    assert g.pub.closed == "amqp:link:stolen"
    outcome, subs, present, _ = g2.list()
    assert (outcome, subs, present) == ("accepted", {"l3/#": 1, "more/+": 2}, True)
    g2.grant()
    again = g2.wait_msgs(1)
    assert again[0]["body"] == b"live" and again[0]["delivery_count"] > 0  # redelivery (DUP)
    assert pc.wait_outcome(pc.send(tx, publish_msg("more/x", b"new", qos=2))) == "accepted"
    assert g2.wait_msgs(2)[1]["body"] == b"new"
    assert len(g.pub.messages) == 4


def session_receiver(c, ssn, address, credit):
    """A receiver on a given AMQP session (the Client helper uses the default one)."""
    rx = Rx(address, address)
    rx.auto_accept = False

    def do():
        link = ssn.receiver(address)
        link.source.address = address
        link.target.address = address
        c.rx_of[address] = rx
        rx.link = link
        link.open()
        if credit:
            link.flow(credit)
    c.call(do)
    c.wait_for(lambda: rx.opened, what="attach of %s" % address)
    return rx


def test_session_end_loses_only_its_links(procs, tmp_path, clients):
    """Clients spread over AMQP sessions of one connection: ending one session
    ends its clients' links only (transient sessions go, a persistent one goes
    offline and queues), the clients of the other session keep working."""
    svc = start_with_http(procs, tmp_path)
    c = clients(svc.port)
    ssns = c.call(lambda: [c.conn.session(), c.conn.session()])
    c.call(lambda: [s.open() for s in ssns])
    links = {}
    for n, ssn in enumerate(ssns):
        for k in range(3):
            cid = "s%d.c%d" % (n, k)
            links[cid] = (session_receiver(c, ssn, "$mqtt.to.%s.control" % cid, 4),
                          session_receiver(c, ssn, "$mqtt.to.%s.publish" % cid, 10))
    mc_tx = c.sender(CTRL, name="l2")
    # s0.c0 and s1.c0 persistent; every client subscribes to its own topic.
    for cid in ("s0.c0", "s1.c0"):
        out = c.send(mc_tx, ctl_msg("list", cid, reply_to="$mqtt.to.%s.control" % cid))
        assert c.wait_outcome(out) == "accepted"
        c.wait_for(lambda: len(links[cid][0].messages) == 1, what="SUBSCRIPTIONS")
    for cid in links:
        if not cid.endswith(".c0"):  # clean session: AMQP_CLOSE (spec 4.3)
            assert c.wait_outcome(c.send(mc_tx, ctl_msg("close", cid))) == "accepted"
        out = c.send(mc_tx, ctl_msg("subscribe", cid, message_id=1, body={"ss/%s" % cid: 1}))
        assert c.wait_outcome(out) == "accepted"
    svc_http.wait_value(svc.hport, "gw_subs_sessions", 4, TRANSIENT)

    c.call(lambda: ssns[0].close())
    c.wait_for(lambda: ssns[0].state & Endpoint.REMOTE_CLOSED, what="session 0 ended")
    # s0's two transient sessions are gone, its persistent one is offline.
    svc_http.wait_value(svc.hport, "gw_subs_sessions", 2, TRANSIENT)
    assert svc_http.value(svc.hport, "gw_subs_sessions", PERSISTENT) == 2

    pc = clients(svc.port)
    tx = pc.sender(None, name="pub")
    for cid in links:
        assert pc.wait_outcome(pc.send(tx, publish_msg("ss/%s" % cid, cid.encode(), qos=1))) \
            == "accepted"
    for k in range(3):
        cid = "s1.c%d" % k
        c.wait_for(lambda: len(links[cid][1].messages) == 1, what="live on %s" % cid)
    assert all(links["s0.c%d" % k][1].messages == [] for k in range(3))
    # s0.c0 comes back on new links: its queued copy is delivered.
    c3 = clients(svc.port)
    g = GatewaySession(c3, "s0.c0")
    outcome, subs, present, _ = g.list()
    assert (outcome, subs, present) == ("accepted", {"ss/s0.c0": 1}, True)
    g.grant()
    assert g.wait_msgs(1)[0]["body"] == b"s0.c0"
