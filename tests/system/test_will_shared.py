"""will-service: shared will links (L1s, spec 2.2, 3.4a, 5.1 rules 11-16).

A shared will link is a sender to $mqtt.lwtservice whose target carries the
capability mqtt-shared-will; every message names its client in
correlation-id. The tests drive it with python qpid-proton and observe the
publications at the will sink (with ANONYMOUS-RELAY, so that the service
sends every publication on one link, in the order it decided them).

"Nothing was published" is never checked by sleeping: a canary will is
published AFTER the event under test (on the same link, or with a later
timer), and once the canary arrives the sink must hold nothing else.

Run: GW_BUILD_DIR=<build> /usr/bin/python3 -m pytest tests/system/test_will_shared.py
"""
import pytest
from proton import Message, ulong

import gwtest
import svc_http
from will_peers import (COMMITS, FORCED, HELD, env, payload_of, shared_clear_message,
                        shared_publish_message, shared_will_message, SharedWillLink, topics,
                        wait_topic, will_message, WillLink)  # env: a fixture


def start(env, *extra, grace="0", delay="0"):
    """Sink (anonymous relay) + service with --http-listen; the HTTP port."""
    if env.sink is None:
        env.start_sink(anonymous_relay=True)
    hport = gwtest.free_port()
    env.start_service("--http-listen", "127.0.0.1:%d" % hport, *extra, grace=grace,
                      delay=delay)
    gwtest.wait_until(lambda: gwtest.port_open(hport), what="http port")
    svc_http.wait_ready(hport, 200)
    return hport


def canary(env, link, name="canary"):
    """On the shared link: store a will and publish it at once. The service
    handles the link's messages in order, so the canary is decided after
    everything sent on link before it; returns all the sink received."""
    assert link.send(shared_will_message(name, "canary/" + name, b"c", 1, False))[0] == \
        "accepted"
    assert link.send(shared_publish_message(name, "canary"))[0] == "accepted"
    return wait_topic(env, "canary/" + name)


def check_will(rec, topic, payload, qos, retain):
    """Every field of a publication as spec 5.1 rule 9 fixes it."""
    assert rec["to"] == topic
    assert rec["subject"] is None
    assert payload_of(rec) == payload
    assert rec["annotations"]["x-opt-mqtt-qos"] == qos
    assert rec["annotations"]["x-opt-retain-message"] is retain
    assert rec["durable"] is (qos > 0)
    assert rec["verdict"] == ("presettled" if qos == 0 else "accept")
    assert rec["delivery_count"] == 0
    assert rec["link_target"] is None  # anonymous relay: `to` is the topic


def cid(i):
    return "client-%02d" % i


def will_of(i):
    """(topic, payload, qos, retain) of client i in test 1."""
    return ("dev/%02d/status" % i, b"gone-%d\x00\xff" % i, i % 3, i % 2 == 0)


@pytest.mark.parametrize("as_array", [False, True], ids=["symbol", "array"])
def test_one_link_fifty_clients(env, as_array):
    hport = start(env)
    conn = env.connect()
    link = SharedWillLink(conn, "$mqtt.lwtservice.gw-1", as_array=as_array)
    m = svc_http.wait_value(hport, "gw_will_shared_links", 1)

    states = link.send_all([shared_will_message(cid(i), *will_of(i)) for i in range(50)])
    assert states == ["accepted"] * 50
    # Accepted only once stored: every row is there when the outcomes are.
    rows = {r["name"]: r for r in env.rows()}
    assert sorted(rows) == [cid(i) for i in range(50)]
    for i in range(50):
        t, p, q, r = will_of(i)
        row = rows[cid(i)]
        assert (row["topic"], bytes(row["payload"]), row["qos"], row["retain"]) == \
            (t, p, q, int(r))
    m = svc_http.wait_value(hport, "gw_will_shared_owned", 50)
    assert m[("gw_will_wills", HELD)] == 50

    # will-publish for 0..9: exactly those ten, every field as stored.
    states = link.send_all([shared_publish_message(cid(i), "keep-alive expired")
                            for i in range(10)])
    assert states == ["accepted"] * 10
    recs = env.wait_received(10)
    assert sorted(topics(recs)) == sorted(will_of(i)[0] for i in range(10))
    by_topic = {r["to"]: r for r in recs}
    for i in range(10):
        check_will(by_topic[will_of(i)[0]], *will_of(i))
    env.wait_log("AMQP_WILL_PUBLISH: keep-alive expired")

    # will-clear for 10..19: gone from the store, never published.
    states = link.send_all([shared_clear_message(cid(i)) for i in range(10, 20)])
    assert states == ["accepted"] * 10
    assert sorted(r["name"] for r in env.rows()) == [cid(i) for i in range(20, 50)]
    m = svc_http.wait_value(hport, "gw_will_publish_requests_total", 10)
    assert m[("gw_will_shared_owned", "")] == 30
    recs = canary(env, link, "after-clear")
    assert len(recs) == 11 and recs[-1]["to"] == "canary/after-clear"

    # Detach without an error: the 30 wills the link still owns are published.
    link.close()
    recs = env.wait_received(41, timeout=20)
    later = recs[11:]
    assert sorted(topics(later)) == sorted(will_of(i)[0] for i in range(20, 50))
    by_topic = {r["to"]: r for r in later}
    for i in range(20, 50):
        check_will(by_topic[will_of(i)[0]], *will_of(i))
    env.wait_store_empty()
    m = svc_http.wait_value(hport, "gw_will_shared_links", 0)
    assert m[("gw_will_shared_owned", "")] == 0
    # Nothing of 10..19, nothing twice: a last canary is the only other message.
    other = SharedWillLink(conn, "$mqtt.lwtservice.gw-2")
    recs = canary(env, other, "end")
    assert len(recs) == 42
    assert not set(topics(recs)) & {will_of(i)[0] for i in range(10, 20)}


@pytest.mark.parametrize("how", ["kill9", "connection-close"])
def test_connection_lost_publishes_every_owned_will(env, how):
    start(env)
    ids = ["lost-%d" % i for i in range(20)]
    if how == "kill9":
        client = env.shared_client_process("$mqtt.lwtservice.gw-k", ids, "lost", "bye",
                                           qos=1, retain=True)
        assert len(env.rows()) == 20
        client.kill9()  # the socket goes away without a close frame
    else:
        conn = env.connect()
        link = SharedWillLink(conn, "$mqtt.lwtservice.gw-c")
        states = link.send_all([shared_will_message(i, "lost/" + i, b"bye-" + i.encode(), 1,
                                                    True) for i in ids])
        assert states == ["accepted"] * 20
        env.close_all()  # connection closed with the link still attached
    recs = env.wait_received(20, timeout=20)
    assert sorted(topics(recs)) == sorted("lost/" + i for i in ids)
    for r in recs:
        check_will(r, r["to"], b"bye-" + r["to"][5:].encode(), 1, True)
    env.wait_store_empty()


def test_ownership_follows_the_newest_will(env):
    start(env)
    conn_a, conn_b = env.connect(), env.connect()
    a = SharedWillLink(conn_a, "$mqtt.lwtservice.gw-a")
    b = SharedWillLink(conn_b, "$mqtt.lwtservice.gw-b")
    assert a.send(shared_will_message("X", "x/will", b"from-a", 1, False))[0] == "accepted"
    assert b.send(shared_will_message("X", "x/will", b"from-b", 2, True))[0] == "accepted"
    # A lost X silently: its clear and publish are accepted and change nothing.
    assert a.send(shared_clear_message("X"))[0] == "accepted"
    assert a.send(shared_publish_message("X", "late"))[0] == "accepted"
    row = env.will_row("X")
    assert bytes(row["payload"]) == b"from-b" and row["qos"] == 2
    # Detaching A publishes nothing of X.
    a.close()
    recs = canary(env, b, "c1")
    assert topics(recs) == ["canary/c1"]
    assert env.will_row("X") is not None
    # B owns it: its will-publish publishes B's will, once.
    assert b.send(shared_publish_message("X"))[0] == "accepted"
    recs = wait_topic(env, "x/will")
    check_will(recs[1], "x/will", b"from-b", 2, True)
    recs = canary(env, b, "c2")
    assert topics(recs) == ["canary/c1", "x/will", "canary/c2"]
    b.close()
    env.wait_store_empty()


def test_shared_will_steals_from_per_client_link(env):
    hport = start(env)
    conn = env.connect()
    l1 = WillLink(conn, "X")
    assert l1.send(will_message("x/per-client", b"old", 1, False))[0] == "accepted"
    shared = SharedWillLink(env.connect(), "$mqtt.lwtservice.gw-s")
    assert shared.send(shared_will_message("X", "x/shared", b"new", 1, True))[0] == "accepted"
    # spec 5.1 rule 11: the per-client link is detached as stolen.
    assert l1.wait_detached() == "amqp:link:stolen"
    svc_http.wait_value(hport, "gw_will_stolen_total", 1)
    assert env.will_row("X")["topic"] == "x/shared"
    recs = canary(env, shared, "c1")
    assert topics(recs) == ["canary/c1"]
    # Only the L1s's will-publish publishes it (its will, not the old one).
    assert shared.send(shared_publish_message("X", "socket closed"))[0] == "accepted"
    recs = wait_topic(env, "x/shared")
    check_will(recs[1], "x/shared", b"new", 1, True)
    recs = canary(env, shared, "c2")
    assert topics(recs) == ["canary/c1", "x/shared", "canary/c2"]


def test_per_client_link_takes_over_from_shared(env):
    start(env)
    shared = SharedWillLink(env.connect(), "$mqtt.lwtservice.gw-s")
    assert shared.send(shared_will_message("X", "x/shared", b"s", 1, False))[0] == "accepted"
    conn = env.connect()
    l1 = WillLink(conn, "X")  # spec 5.1 rule 15: the per-client link owns X now
    # The L1s is not detached; its will-publish and will-clear for X do nothing.
    assert shared.send(shared_publish_message("X"))[0] == "accepted"
    assert shared.send(shared_clear_message("X"))[0] == "accepted"
    assert shared.attached()
    assert env.will_row("X")["topic"] == "x/shared"  # kept for the per-client link
    recs = canary(env, shared, "c1")
    assert topics(recs) == ["canary/c1"]
    # The per-client link's own rules hold: an error detach publishes.
    assert l1.send(will_message("x/l1", b"l1", 1, False))[0] == "accepted"
    l1.close(FORCED, "keep-alive expired")
    recs = wait_topic(env, "x/l1")
    assert topics(recs) == ["canary/c1", "x/l1"]
    check_will(recs[1], "x/l1", b"l1", 1, False)
    # Detaching the L1s now publishes nothing more (it owns only nothing).
    shared.close()
    recs = canary(env, SharedWillLink(conn, "$mqtt.lwtservice.gw-t"), "c2")
    assert topics(recs) == ["canary/c1", "x/l1", "canary/c2"]


def test_malformed_rejected_link_keeps_working(env):
    hport = start(env)
    link = SharedWillLink(env.connect(), "$mqtt.lwtservice.gw-m", record_order=True)
    good = shared_will_message("ok-1", "ok/1", b"1", 1, False)

    no_cid = will_message("m/1", b"p", 1, False)
    numeric = will_message("m/2", b"p", 1, False)
    numeric.correlation_id = ulong(42)
    empty = will_message("m/3", b"p", 1, False)
    empty.correlation_id = ""
    unknown = Message(subject="subscribe", correlation_id="c", body={"a": 1})
    no_subject = Message(correlation_id="c", body=b"x")
    publish_no_cid = Message(subject="will-publish")
    clear_numeric = Message(subject="will-clear", correlation_id=ulong(7))
    no_topic = shared_will_message("c", "x", b"p", 1, False)
    no_topic.address = None
    too_long = shared_will_message("L" * 65536, "m/4", b"p", 1, False)

    bad = [no_cid, numeric, empty, unknown, no_subject, publish_no_cid, clear_numeric, no_topic,
           too_long]
    # Sent back to back with good ones between: every outcome in place.
    msgs = [good] + bad + [shared_will_message("ok-2", "ok/2", b"2", 0, True)]
    dlvs = [link.send_nowait(m) for m in msgs]
    tags = [d.tag for d in dlvs]
    out = link.outcomes(dlvs)
    assert link.order.tags == tags, " ".join(link.order.tags)  # settled in the order sent
    assert out[0][0] == "accepted" and out[-1][0] == "accepted"
    for (state, cond, desc), m in zip(out[1:-1], bad):
        assert (state, cond) == ("rejected", "amqp:invalid-field"), (state, cond, desc, m)
        assert desc
    assert "correlation-id" in out[1][2] and "correlation-id" in out[2][2]
    svc_http.wait_value(hport, "gw_will_rejects_total", len(bad))
    assert sorted(r["name"] for r in env.rows()) == ["ok-1", "ok-2"]
    # Still attached and usable.
    assert link.attached()
    assert link.send(shared_publish_message("ok-2"))[0] == "accepted"
    recs = wait_topic(env, "ok/2")
    check_will(recs[0], "ok/2", b"2", 0, True)


def test_restart_grace_period(env):
    start(env)
    link = SharedWillLink(env.connect(), "$mqtt.lwtservice.gw-1")
    states = link.send_all([shared_will_message(c, "r/" + c, b"old-" + c.encode(), 1, False)
                            for c in ("X", "Y", "Z")])
    assert states == ["accepted"] * 3
    # SIGTERM: a stop publishes nothing and keeps every will.
    assert env.service.stop() == 0
    env.close_all()
    assert env.received() == []
    assert sorted(r["name"] for r in env.rows()) == ["X", "Y", "Z"]

    start(env, grace="4")
    link = SharedWillLink(env.connect(), "$mqtt.lwtservice.gw-2")
    # Within the grace period: a new will for X takes the old one over.
    assert link.send(shared_will_message("X", "r/X", b"new-X", 2, True))[0] == "accepted"
    env.wait_log("pending publication cancelled (grace period)")
    recs = env.wait_received(2, timeout=15)  # Y and Z at the end of the grace period
    assert sorted(topics(recs)) == ["r/Y", "r/Z"]
    for r in recs:
        check_will(r, r["to"], b"old-" + r["to"][2:].encode(), 1, False)
    recs = canary(env, link, "c1")
    assert sorted(topics(recs[:2])) == ["r/Y", "r/Z"] and topics(recs[2:]) == ["canary/c1"]
    # X belongs to the new link: published with its new will.
    assert link.send(shared_publish_message("X"))[0] == "accepted"
    recs = wait_topic(env, "r/X")
    check_will(recs[-1], "r/X", b"new-X", 2, True)
    assert topics(recs).count("r/X") == 1


def test_will_delay_cancelled_by_new_will(env):
    start(env, delay="1s")
    a = SharedWillLink(env.connect(), "$mqtt.lwtservice.gw-a")
    b = SharedWillLink(env.connect(), "$mqtt.lwtservice.gw-b")
    assert a.send(shared_will_message("X", "x/a", b"a", 1, False))[0] == "accepted"
    assert a.send(shared_publish_message("X", "socket closed"))[0] == "accepted"
    # Before the delay ends, X reconnects through another gateway connection.
    assert b.send(shared_will_message("X", "x/b", b"b", 1, False))[0] == "accepted"
    env.wait_log("pending publication cancelled (will delay)")
    # A canary decided after X's publication would have been: its delay ends later.
    recs = canary(env, a, "c1")
    assert topics(recs) == ["canary/c1"]
    assert env.will_row("X")["topic"] == "x/b"
    # B owns X; A's publish of X is a no-op, B's publishes B's will after the delay.
    assert a.send(shared_publish_message("X"))[0] == "accepted"
    assert b.send(shared_publish_message("X"))[0] == "accepted"
    recs = wait_topic(env, "x/b")
    assert topics(recs) == ["canary/c1", "x/b"]
    check_will(recs[1], "x/b", b"b", 1, False)


def test_group_commit_500_wills(env):
    hport = start(env)
    commits0 = svc_http.value(hport, COMMITS)
    lat0 = svc_http.value(hport, "gw_will_store_seconds_count")
    link = SharedWillLink(env.connect(), "$mqtt.lwtservice.gw-g", record_order=True)
    n = 500
    states = link.send_all([shared_will_message("g-%d" % i, "g/%d" % i, b"p%d" % i, 1, False)
                            for i in range(n)], timeout=60)
    assert states == ["accepted"] * n
    m = svc_http.wait_value(hport, "gw_will_stored_total", n)
    assert m[("gw_will_wills", HELD)] == n
    assert m[("gw_will_shared_owned", "")] == n
    commits = m[(COMMITS, "")] - commits0
    assert 1 <= commits <= 50, "%d commits for %d wills" % (commits, n)
    assert m[("gw_will_store_seconds_count", "")] - lat0 == commits
    assert len(env.rows()) == n

    # Clears and publishes back to back are batched as well, outcomes in order.
    commits0 = m[(COMMITS, "")]
    # Interleaved: a clear waits for the commit, a publish needs none; the
    # outcomes still come back in the order sent.
    msgs = []
    for i in range(100):
        msgs += [shared_clear_message("g-%d" % i), shared_publish_message("g-%d" % (100 + i))]
    del link.order.tags[:]
    dlvs = [link.send_nowait(m) for m in msgs]
    assert [o[0] for o in link.outcomes(dlvs, timeout=60)] == ["accepted"] * 200
    assert link.order.tags == [d.tag for d in dlvs]
    env.wait_received(100, timeout=30)
    m = svc_http.wait_value(hport, "gw_will_published_total", 100, 'qos="1"')
    assert m[("gw_will_publish_requests_total", "")] == 100
    assert m[("gw_will_cleared_total", "")] == 100
    assert m[(COMMITS, "")] - commits0 <= 50
    assert sorted(topics(env.received())) == sorted("g/%d" % i for i in range(100, 200))
    svc_http.wait_value(hport, "gw_will_wills", 300, HELD)
