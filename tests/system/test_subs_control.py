"""subscription-service: control operations, malformed control messages, link steal."""
import pytest
from proton import Message, ulong

from subs_peer import Client, GatewaySession, Service, publish_msg, clients  # noqa: F401 (clients: fixture)


@pytest.fixture
def svc(procs, tmp_path):
    s = Service(procs, tmp_path).start()
    yield s


def test_list_new_session_then_present(svc, clients):
    c = clients(svc.port)
    g = GatewaySession(c, "c1")
    outcome, subs, present, rec = g.list()
    assert outcome == "accepted"
    assert subs == {}
    assert present is False
    assert rec["subject"] == "subscriptions"
    assert g.subscribe({"a/+": 1, "b/#": 2})[0] == "accepted"
    # Second LIST: the persistent session existed, with its filters.
    outcome, subs, present, _ = g.list()
    assert (outcome, subs, present) == ("accepted", {"a/+": 1, "b/#": 2}, True)


def test_close_discards_session(svc, clients):
    c = clients(svc.port)
    g = GatewaySession(c, "c2")
    g.list()
    assert g.subscribe({"x/y": 1})[0] == "accepted"
    assert g.close() == "accepted"
    outcome, subs, present, _ = g.list()
    assert (outcome, subs, present) == ("accepted", {}, False)


def test_subscribe_replace_and_unsubscribe(svc, clients):
    c = clients(svc.port)
    g = GatewaySession(c, "c3")
    g.list()
    assert g.subscribe({"t/1": 0})[0] == "accepted"
    assert g.subscribe({"t/1": 2, "t/2": 1})[0] == "accepted"
    assert g.unsubscribe(["t/2", "never/subscribed"]) == "accepted"
    assert g.list()[1] == {"t/1": 2}


def test_empty_persistent_session_is_present(svc, clients):
    c = clients(svc.port)
    g = GatewaySession(c, "c4")
    assert g.list()[2] is False
    assert g.list()[2] is True  # MQTT-3.2.2-2: even without subscriptions


@pytest.mark.parametrize("make,cond,text", [
    (lambda g: g._ctrl("subscribe", body={"a/#/b": 1}, message_id=1),
     "amqp:invalid-field", "a/#/b"),
    (lambda g: g._ctrl("subscribe", body={"a": "one"}, message_id=1), None, "a"),
    (lambda g: g._ctrl("subscribe", body={"a": 3}, message_id=1), "amqp:decode-error", None),
    (lambda g: g._ctrl("subscribe", body={"a": 1}), "amqp:invalid-field", None),
    (lambda g: g._ctrl("subscribe", body={"a": 1}, message_id=1, corr="nope"),
     "amqp:invalid-field", "correlation-id"),
    (lambda g: g._ctrl("bogus"), "amqp:invalid-field", None),
    (lambda g: g._ctrl("unsubscribe", body="a/b", message_id=2), None, None),
    (lambda g: g._ctrl("list"), "amqp:invalid-field", None),
    (lambda g: g._ctrl("list", reply_to="$mqtt.to.other.control"), "amqp:invalid-field",
     "reply-to"),
])
def test_malformed_control(svc, clients, make, cond, text):
    c = clients(svc.port)
    g = GatewaySession(c, "m1")
    out = make(g)
    assert c.wait_outcome(out) == "rejected"
    assert out.condition in ("amqp:invalid-field", "amqp:decode-error")
    if cond:
        assert out.condition == cond
    assert out.description
    if text:
        assert text in out.description
    # the link stays usable, and nothing was changed
    outcome, subs, present, _ = g.list()
    assert (outcome, subs) == ("accepted", {})


def test_link_steal_across_connections(svc, clients):
    c1 = clients(svc.port)
    c2 = clients(svc.port)
    g1 = GatewaySession(c1, "dup.id")
    g1.list()
    g1.grant()
    g2 = GatewaySession(c2, "dup.id")
    c1.wait_for(lambda: g1.pub.closed is not None and g1.ctl.closed is not None,
                what="old links detached")
    assert g1.pub.closed == "amqp:link:stolen"
    assert g1.ctl.closed == "amqp:link:stolen"
    assert g2.pub.closed is None
    outcome, subs, present, _ = g2.list()
    assert outcome == "accepted" and present is True
    # the new links carry the session's traffic
    assert g2.subscribe({"s/t": 1})[0] == "accepted"
    g2.grant()
    tx = c2.sender("s/t")
    assert c2.wait_outcome(c2.send(tx, publish_msg("s/t", b"hello", qos=1))) == "accepted"
    msgs = g2.wait_msgs(1)
    assert msgs[0]["body"] == b"hello"
    assert g1.pub.messages == []


def test_bad_configuration_exits_2(tmp_path):
    import subprocess
    import gwtest
    exe = gwtest.binary("services", "subscription", "subscription-service")
    for args, env in [(["--listen", "junk"], {}), (["--listen", "127.0.0.1:0",
                                                   "--overflow-policy", "x"], {}),
                      ([], {}), (["--listen", "127.0.0.1:0"], {"SUBS_MAX_QUEUED_MESSAGES": "0"})]:
        r = subprocess.run([exe, "--store", str(tmp_path / "x.db")] + args, env=env,
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.strip()


def test_route_container_over_outgoing_connection(procs, tmp_path):
    """--connect: link attaches arrive over the connection the service opened."""
    import gwtest
    router = Client(gwtest.free_port(), listen=True).start()
    try:
        procs.start([gwtest.binary("services", "subscription", "subscription-service"),
                     "--connect", f"amqp://127.0.0.1:{router.port}",
                     "--store", str(tmp_path / "rc.db")], "subs-rc",
                    ready_log="connection up")
        router.wait_for(lambda: router.up, what="service connected")
        g = GatewaySession(router, "via.router")
        outcome, subs, present, _ = g.list()
        assert (outcome, subs, present) == ("accepted", {}, False)
        assert g.subscribe({"rt/#": 1})[0] == "accepted"
        g.grant()
        tx = router.sender("rt/1")
        assert router.wait_outcome(router.send(tx, publish_msg("rt/1", b"routed"))) == \
            "accepted"
        assert g.wait_msgs(1)[0]["body"] == b"routed"
    finally:
        router.stop()
