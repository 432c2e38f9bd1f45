"""System tests of will-service: real binary, python qpid-proton peers.

Run: GW_BUILD_DIR=<build> /usr/bin/python3 -m pytest tests/system/test_will_service.py

"Nothing was published" is never checked by sleeping: a canary will is
made to publish AFTER the event under test (on the same connection, or with
a later timer), and once the canary arrives the sink must hold nothing else;
the store is checked too (a published will leaves the `wills` table).
"""
import os
import signal
import subprocess
import time

import pytest

import gwtest
import will_peers
from will_peers import (FORCED, env, payload_of, topics, wait_topic, will_clear_message,
                        will_message, WillLink)  # env: a fixture


def canary(env, conn, name="canary"):
    """Publish a will that is triggered after everything done so far on conn."""
    link = WillLink(conn, name)
    assert link.send(will_message("canary/" + name, b"c", 1, False))[0] == "accepted"
    link.close(FORCED, "canary")
    return wait_topic(env, "canary/" + name)


def test_create_update_clear_and_clean_detach(env):
    env.start_sink()
    env.start_service()
    conn = env.connect()
    link = WillLink(conn, "client-1")

    state, _, _ = link.send(will_message("dev/1/status", b"offline\x00\xff", 1, True))
    assert state == "accepted"
    # Accepted only once stored: the row is there as soon as we see the outcome.
    row = env.will_row("client-1")
    assert row is not None
    assert (row["topic"], bytes(row["payload"]), row["qos"], row["retain"]) == \
        ("dev/1/status", b"offline\x00\xff", 1, 1)

    # Update: a second AMQP_WILL replaces the first.
    assert link.send(will_message("dev/1/gone", b"bye", 2, False))[0] == "accepted"
    row = env.will_row("client-1")
    assert (row["topic"], bytes(row["payload"]), row["qos"], row["retain"]) == \
        ("dev/1/gone", b"bye", 2, 0)
    assert len(env.rows()) == 1

    # Clear, then a new will, then a clean detach: nothing published.
    assert link.send(will_clear_message())[0] == "accepted"
    assert env.will_row("client-1") is None
    assert link.send(will_message("dev/1/again", b"x", 0, False))[0] == "accepted"
    link.close()
    recs = canary(env, conn)
    assert topics(recs) == ["canary/canary"]
    env.wait_store_empty()  # the canary (QoS 1) is deleted once its accepted arrives


def test_detach_with_error_publishes_once(env):
    env.start_sink()
    env.start_service()
    conn = env.connect()
    link = WillLink(conn, "client-2")
    payload = bytes(range(256)) * 4
    assert link.send(will_message("dev/2/status", payload, 1, True))[0] == "accepted"
    link.close(FORCED, "keep-alive expired")
    recs = wait_topic(env, "dev/2/status")
    r = recs[0]
    assert r["subject"] is None
    assert r["durable"] is True
    assert r["annotations"]["x-opt-retain-message"] is True
    assert r["annotations"]["x-opt-mqtt-qos"] == 1
    assert payload_of(r) == payload
    assert r["verdict"] == "accept"
    assert r["delivery_count"] == 0
    env.wait_store_empty()
    # Exactly once: a later canary is the only other message.
    recs = canary(env, conn)
    assert topics(recs) == ["dev/2/status", "canary/canary"]


def test_routed_link_lost_counts_as_error(env):
    env.start_sink()
    env.start_service()
    conn = env.connect()
    link = WillLink(conn, "client-r")
    assert link.send(will_message("dev/r", b"r", 0, False))[0] == "accepted"
    link.close("qd:routed-link-lost", "router lost the link")
    recs = wait_topic(env, "dev/r")
    assert recs[0]["verdict"] == "presettled"  # QoS 0 goes pre-settled
    assert recs[0]["durable"] is False


def test_connection_drop_publishes(env):
    env.start_sink()
    env.start_service()
    client = env.client_process("client-3", "dev/3/status", "lost", qos=1, retain=False)
    assert env.will_row("client-3") is not None
    client.kill9()
    recs = wait_topic(env, "dev/3/status")
    assert payload_of(recs[0]) == b"lost"
    assert recs[0]["annotations"]["x-opt-retain-message"] is False
    env.wait_store_empty()


def test_link_stolen(env):
    env.start_sink()
    env.start_service()
    conn1, conn2 = env.connect(), env.connect()
    old = WillLink(conn1, "client-4")
    assert old.send(will_message("dev/4/old", b"old", 1, False))[0] == "accepted"
    new = WillLink(conn2, "client-4")
    assert old.wait_detached() == "amqp:link:stolen"
    assert new.attached()
    # The will is kept for the newer link (nothing published by the takeover).
    assert env.will_row("client-4")["topic"] == "dev/4/old"
    assert new.send(will_message("dev/4/new", b"new", 1, False))[0] == "accepted"
    recs = canary(env, conn1, "c1")
    assert topics(recs) == ["canary/c1"]
    # The newer link owns it: its error detach publishes its will.
    new.close(FORCED, "socket error")
    recs = wait_topic(env, "dev/4/new")
    assert topics(recs) == ["canary/c1", "dev/4/new"]


def test_malformed_wills_rejected_link_stays(env):
    env.start_sink()
    env.start_service("--max-will-size", "2k")
    conn = env.connect()
    link = WillLink(conn, "client-5")

    no_topic = will_message("x", b"p", 1, False)
    no_topic.address = None
    state, cond, desc = link.send(no_topic)
    assert (state, cond) == ("rejected", "amqp:invalid-field") and desc

    bad_qos = will_message("x", b"p", 1, False)
    bad_qos.annotations = {"x-opt-mqtt-qos": 3}
    state, cond, desc = link.send(bad_qos)
    assert (state, cond) == ("rejected", "amqp:invalid-field") and desc

    wildcard = will_message("a/+/b", b"p", 1, False)
    state, cond, desc = link.send(wildcard)
    assert (state, cond) == ("rejected", "amqp:invalid-field") and desc

    from proton import Message
    state, cond, desc = link.send(Message(subject="subscribe", body={"a": 1}))
    assert (state, cond) == ("rejected", "amqp:invalid-field") and desc

    state, cond, desc = link.send(will_message("big", b"z" * 4096, 1, False))
    assert state == "rejected" and cond == "amqp:resource-limit-exceeded" and desc

    assert env.rows() == []
    # Still attached and usable.
    assert link.attached()
    assert link.send(will_message("dev/5", b"ok", 1, False))[0] == "accepted"
    assert env.will_row("client-5")["topic"] == "dev/5"


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_waits_for_receiver(env, qos):
    # The sink is absent at first: the service keeps retrying.
    env.start_service()
    conn = env.connect()
    link = WillLink(conn, "client-q%d" % qos)
    assert link.send(will_message("dev/q%d" % qos, b"p", qos, False))[0] == "accepted"
    link.close(FORCED, "gone")
    gwtest.wait_until(lambda: len(env.rows("publishing")) == 1, what="publication pending")
    assert env.rows() == []
    env.start_sink()
    recs = wait_topic(env, "dev/q%d" % qos)
    assert recs[0]["annotations"]["x-opt-mqtt-qos"] == qos
    assert recs[0]["durable"] is (qos > 0)
    assert recs[0]["verdict"] == ("presettled" if qos == 0 else "accept")
    env.wait_store_empty()


def test_released_then_accepted(env):
    env.start_sink(mode="release", count=2)
    env.start_service()
    conn = env.connect()
    link = WillLink(conn, "client-6")
    assert link.send(will_message("dev/6", b"p", 1, False))[0] == "accepted"
    link.close(FORCED, "gone")
    recs = gwtest.wait_until(lambda: [r for r in env.received() if r["verdict"] == "accept"],
                             what="accepted publication")
    recs = env.received()
    assert [r["verdict"] for r in recs] == ["release", "release", "accept"]
    assert [r["delivery_count"] for r in recs] == [0, 1, 2]
    env.wait_store_empty()


def test_rejected_dropped_after_bound(env):
    env.start_sink(mode="reject", count=100)
    env.start_service("--max-rejects", "3")
    conn = env.connect()
    link = WillLink(conn, "client-7")
    assert link.send(will_message("dev/7", b"p", 1, False))[0] == "accepted"
    link.close(FORCED, "gone")
    env.wait_log("will dropped after 3 rejections")
    env.wait_store_empty()
    assert [r["verdict"] for r in env.received()] == ["reject"] * 3


def test_anonymous_relay(env):
    env.start_sink(anonymous_relay=True)
    env.start_service()
    conn = env.connect()
    link = WillLink(conn, "client-8")
    assert link.send(will_message("dev/8", b"p", 1, False))[0] == "accepted"
    link.close(FORCED, "gone")
    recs = wait_topic(env, "dev/8")
    assert recs[0]["link_target"] is None
    assert recs[0]["to"] == "dev/8"


def test_connection_closed_with_links_attached_publishes(env):
    # A peer closing its connection while will links are still attached
    # (no detach first) lost its clients: their wills are published.
    env.start_sink()
    env.start_service()
    conn = env.connect()
    for name in ("a", "b"):
        link = WillLink(conn, name)
        assert link.send(will_message("dev/" + name, name.encode(), 1, False))[0] == "accepted"
    env.close_all()
    recs = gwtest.wait_until(lambda: len(env.received()) >= 2 and env.received(),
                             what="wills of the closed connection")
    assert sorted(topics(recs)) == ["dev/a", "dev/b"]
    env.wait_store_empty()


def test_restart_within_and_after_grace(env):
    env.start_sink()
    env.start_service()
    conn = env.connect()
    links = {}
    for name in ("keep", "orphan"):
        links[name] = WillLink(conn, name)
        assert links[name].send(
            will_message("dev/" + name, name.encode(), 1, False))[0] == "accepted"
    # SIGTERM: a clean stop publishes nothing and keeps the wills.
    assert env.service.stop() == 0
    env.close_all()
    assert env.received() == []
    assert sorted(r["name"] for r in env.rows()) == ["keep", "orphan"]

    env.start_service(grace="2")
    conn = env.connect()
    keep = WillLink(conn, "keep")  # re-attached within the grace period
    recs = wait_topic(env, "dev/orphan")  # the orphan is published at expiry
    assert topics(recs) == ["dev/orphan"]
    assert env.will_row("keep") is not None  # adopted, not published
    env.wait_log("re-attached (within the grace period)")
    keep.close(FORCED, "gone")
    recs = wait_topic(env, "dev/keep")
    assert topics(recs) == ["dev/orphan", "dev/keep"]
    env.wait_store_empty()


def test_kill9_during_qos1_publication(env):
    env.start_sink(mode="withhold", count=1)
    env.start_service()
    conn = env.connect()
    link = WillLink(conn, "client-9")
    assert link.send(will_message("dev/9", b"never lost", 1, False))[0] == "accepted"
    link.close(FORCED, "gone")
    env.wait_received(1)  # sent, disposition withheld
    assert len(env.rows("publishing")) == 1
    env.close_all()
    env.service.kill9()
    env.start_service(grace="30")  # grace does not delay a decided publication
    recs = gwtest.wait_until(lambda: len(env.received()) >= 2 and env.received(),
                             what="republication after restart")
    assert [r["to"] for r in recs] == ["dev/9", "dev/9"]
    assert recs[1]["verdict"] == "accept"
    assert recs[1]["delivery_count"] >= 1  # marked as a possible duplicate
    assert payload_of(recs[1]) == b"never lost"
    env.wait_store_empty()


def test_will_delay_reattach(env):
    env.start_sink()
    env.start_service(delay="1s")
    client = env.client_process("client-10", "dev/10", "late", qos=1)
    t0 = time.monotonic()
    client.kill9()
    env.wait_log("will link lost")
    conn = env.connect()
    back = WillLink(conn, "client-10")  # re-attached within the delay
    env.wait_log("re-attached (within the will delay)")
    assert time.monotonic() - t0 < 1.0
    # A canary triggered now fires its own delay later than client-10's would.
    recs = canary(env, conn)
    assert topics(recs) == ["canary/canary"]
    assert env.will_row("client-10") is not None

    # Without a re-attach the will goes out after the delay.
    t1 = time.monotonic()
    back.close(FORCED, "gone")
    recs = wait_topic(env, "dev/10")
    assert time.monotonic() - t1 >= 0.9
    assert topics(recs) == ["canary/canary", "dev/10"]


@pytest.mark.parametrize("args", [
    [],                                          # neither --listen nor --connect
    ["--listen", "127.0.0.1:0", "--grace-seconds", "-1"],
    ["--listen", "127.0.0.1:0", "--retry-min", "5s", "--retry-max", "1s"],
    ["--listen", "127.0.0.1:0", "--publish-url", "http://x"],
    ["--listen", "127.0.0.1:0", "--store-sync", "sometimes"],
])
def test_bad_config_exits_2(tmp_path, args):
    binary = gwtest.binary("services", "will", "will-service")
    p = subprocess.run([binary, "--store", str(tmp_path / "w.db")] + args,
                       capture_output=True, timeout=20)
    assert p.returncode == 2, p.stderr
    assert p.stderr


def test_sigterm_exits_0(env):
    env.start_sink()
    env.start_service()
    conn = env.connect()
    WillLink(conn, "client-11").send(will_message("dev/11", b"p", 1, False))
    env.service.signal(signal.SIGTERM)
    env.service.proc.wait(timeout=10)
    assert env.service.proc.returncode == 0
    assert env.will_row("client-11") is not None
    assert os.path.exists(env.store)


@pytest.mark.parametrize("how", ["routed-link-lost", "router-killed"])
def test_links_over_router_connection(env, how):
    # --connect: the service is a route-container; will links arrive as
    # attaches from the router over the service's OUTGOING connection.
    env.start_sink()
    rport = gwtest.free_port()
    args = [will_peers.PY, os.path.join(will_peers.HERE, "will_router.py"), "--port", str(rport),
            "--name", "client-r1", "--topic", "dev/r1"]
    if how == "routed-link-lost":
        args.append("--detach")
    router = env.procs.start(args, "router", ready_port=rport)
    env.start_service("--connect", "amqp://127.0.0.1:%d" % rport)
    gwtest.wait_until(lambda: "WILL accepted" in router.log(), what="will accepted via router")
    if how == "router-killed":
        assert env.will_row("client-r1") is not None
        router.kill9()
    recs = wait_topic(env, "dev/r1")
    assert payload_of(recs[0]) == b"via-router"
    env.wait_store_empty()
