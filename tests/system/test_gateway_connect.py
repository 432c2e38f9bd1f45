"""mqtt-gateway system tests: CONNECT, the AMQP handshake, disconnects,
takeover, keep alive, AMQP peer failures. Real gateway binary, real AMQP
peer (python3-qpid-proton) and raw MQTT sockets."""
import socket
import time

import pytest

import gwtest
import gw_mqtt_raw as R
from gw_amqp_peer import AmqpPeer
from gw_gateway_env import make_env, start_gateway, teardown_env

SND_UNSETTLED, SND_SETTLED, SND_MIXED = 0, 1, 2
RCV_FIRST, RCV_SECOND = 0, 1


@pytest.fixture
def env(procs):
    e = make_env(procs, "--connect-timeout", "1500ms")
    yield e
    teardown_env(e)


def test_connect_clean_with_will_exact_links_and_messages(env):
    peer = env.peer
    c = env.client()
    assert c.connect("c1", clean=True, will=("w/topic", b"gone", 1, True)) == (0, 0)

    will = peer.link("c1")
    assert will["gateway_role"] == "sender"
    assert will["target"] == "$mqtt.lwtservice"
    assert (will["snd_settle_mode"], will["rcv_settle_mode"]) == (SND_UNSETTLED, RCV_FIRST)
    # L2: one per connection, shared by its clients (spec 2.2)
    (ss,) = peer.wait_for(lambda: peer.ss_links())
    assert ss["gateway_role"] == "sender" and ss["name"].startswith("$mqtt.subscriptionservice.")
    assert (ss["snd_settle_mode"], ss["rcv_settle_mode"]) == (SND_UNSETTLED, RCV_FIRST)
    l = peer.link("$mqtt.to.c1.publish")
    assert l["gateway_role"] == "receiver" and l["source"] == "$mqtt.to.c1.publish"
    assert l["rcv_settle_mode"] == RCV_FIRST
    # A clean session gets no AMQP_SUBSCRIPTIONS: no L3 (spec 2.2).
    assert not peer.links_named("$mqtt.to.c1.control")

    w = peer.wait_msg(subject="will")
    assert w["link"] == "c1" and w["to"] == "w/topic" and w["body"] == b"gone"
    assert w["annotations"] == {"x-opt-retain-message": True, "x-opt-mqtt-qos": 1}
    assert w["durable"] is True and w["presettled"] is False

    close = peer.wait_msg(subject="close")
    assert close["link"] == ss["name"]
    assert close["correlation_id"] == "$mqtt.to.c1.publish"
    assert not peer.msgs(subject="list")
    # credit on the publish link only after CONNACK: the in-flight window
    gwtest.wait_until(lambda: peer.credit_of("$mqtt.to.c1.publish") == 32, what="credit 32")
    c.close()


def test_connect_persistent_session_present(env):
    peer = env.peer
    peer.call(lambda: peer.policy["session_present"].update({"p1": True}))
    c = env.client()
    assert c.connect("p1", clean=False) == (1, 0)
    # L3 carried AMQP_SUBSCRIPTIONS; it is detached, without error, at CONNACK
    ctl = peer.link("$mqtt.to.p1.control")
    assert ctl["gateway_role"] == "receiver" and ctl["rcv_settle_mode"] == RCV_FIRST
    d = peer.detach_of("$mqtt.to.p1.control")
    assert d["condition"] is None and d["closed"]
    assert peer.link("$mqtt.to.p1.publish")["open"]
    lst = peer.wait_msg(subject="list")
    assert lst["correlation_id"] == "$mqtt.to.p1.publish"
    assert lst["reply_to"] == "$mqtt.to.p1.control"
    assert not peer.msgs(subject="close")
    # a persistent client unknown to the SS: session present 0
    c2 = env.client()
    assert c2.connect("p2", clean=False) == (0, 0)
    c.close()
    c2.close()


def test_connack_waits_for_subscriptions(env):
    peer = env.peer
    peer.call(lambda: peer.policy.update(send_subscriptions=False))
    c = env.client()
    c.send(R.connect("p3", clean=False))
    peer.wait_msg(subject="list")
    assert c.no_packet(0.3)  # LIST accepted, but no AMQP_SUBSCRIPTIONS yet
    peer.call(lambda: peer._send_subscriptions("p3", "$mqtt.to.p3.control"))
    _, body = c.expect(R.CONNACK)
    assert body == b"\x00\x00"


def test_empty_client_id_rules(env):
    c = env.client()
    assert c.connect("", clean=True) == (0, 0)
    # the assigned id (MQTT-3.1.3-6) names the client's addresses
    close = env.peer.wait_msg(subject="close")
    assert close["correlation_id"].startswith("$mqtt.to.gw-")
    c2 = env.client()
    assert c2.connect("", clean=False) == (0, 2)  # MQTT-3.1.3-8
    assert c2.is_closed()


def test_bad_protocol_level_connack_1(env):
    c = env.client()
    c.send(R.connect("x", level=5))
    _, body = c.expect(R.CONNACK)
    assert body[1] == 1
    assert c.is_closed()


@pytest.mark.parametrize("policy", [{"close": "hold"}, {"will": "hold"}, {"will": "reject"},
                                    {"close": "reject"}])
def test_connack_3_when_refused_or_no_answer(env, policy):
    env.peer.call(lambda: env.peer.policy.update(policy))
    c = env.client()
    t0 = time.monotonic()
    assert c.connect("r1", will=("w", b"x", 0, False), clean=True)[1] == 3
    assert c.is_closed()
    if "hold" in policy.values():
        assert time.monotonic() - t0 >= 1.2  # waited for --connect-timeout
    # the refused client's will link is removed without error: no will published
    d = env.peer.detach_of("r1")
    assert d["condition"] is None


def test_connack_3_when_amqp_unreachable(procs):
    dead = gwtest.free_port()  # nobody listens there
    gw, port = start_gateway(procs, dead, wait_up=False)
    c = R.RawClient(port)
    assert c.connect("d1")[1] == 3
    assert c.is_closed()


def test_clean_disconnect_clears_will(env):
    peer = env.peer
    c = env.client()
    assert c.connect("d2", will=("w/d2", b"bye", 0, False)) == (0, 0)
    c.send(R.DISCONNECT_PKT)
    assert c.is_closed()
    clear = peer.wait_msg(subject="will-clear")
    assert clear["link"] == "d2"
    d = peer.detach_of("d2")
    assert d["condition"] is None and d["closed"]
    assert peer.detach_of("$mqtt.to.d2.publish")["condition"] is None
    # the shared L2 stays for the other clients of the connection
    assert len(peer.ss_links()) == 1


def test_socket_close_without_disconnect_is_brute(env):
    peer = env.peer
    c = env.client()
    assert c.connect("b1", will=("w/b1", b"bye", 0, False)) == (0, 0)
    c.close()
    d = peer.detach_of("b1")
    assert d["condition"] == "amqp:link:detach-forced"
    assert d["description"]
    assert not peer.msgs(subject="will-clear")


def test_keepalive_expiry_is_brute(env):
    peer = env.peer
    c = env.client()
    t0 = time.monotonic()
    assert c.connect("k1", keepalive=1, will=("w/k1", b"bye", 0, False)) == (0, 0)
    assert c.is_closed(timeout=5)
    elapsed = time.monotonic() - t0
    assert 1.4 <= elapsed < 3.5  # MQTT-3.1.2-24: 1.5 x keep alive
    d = peer.detach_of("k1")
    assert d["condition"] == "amqp:link:detach-forced"
    assert "keep alive" in d["description"]


def test_pingreq_keeps_alive(env):
    c = env.client()
    assert c.connect("k2", keepalive=1) == (0, 0)
    for _ in range(4):  # 4 x 0.5 s > 1.5 s
        time.sleep(0.5)  # pacing of the client's pings, not synchronisation
        c.send(R.PINGREQ_PKT)
        assert c.expect(R.PINGRESP) == (0, b"")


def test_takeover_within_gateway(env):
    peer = env.peer
    old = env.client()
    assert old.connect("t1", will=("w/t1", b"old", 0, False)) == (0, 0)
    new = env.client()
    assert new.connect("t1", will=("w/t1", b"new", 0, False)) == (0, 0)
    assert old.is_closed()
    # the old will link is closed WITHOUT error: a takeover never publishes it
    d = peer.detach_of("t1")
    assert d["condition"] is None
    wills = peer.wait_for(lambda: len(peer.msgs(subject="will")) == 2 and peer.msgs(subject="will"))
    assert [w["body"] for w in wills] == [b"old", b"new"]
    new.send(R.PINGREQ_PKT)
    new.expect(R.PINGRESP)


def test_takeover_across_workers(procs):
    e = make_env(procs, workers=2)
    try:
        prev = None
        for i in range(6):
            c = e.client()
            assert c.connect("tw", will=("w/tw", b"%d" % i, 0, False)) == (0, 0)
            if prev is not None:
                assert prev.is_closed()
            prev = c
        # no takeover closed a will link with an error
        assert all(d["condition"] in (None, "amqp:link:stolen")
                   for d in e.peer.detaches if d["name"] == "tw")
        prev.send(R.PINGREQ_PKT)
        prev.expect(R.PINGRESP)
    finally:
        teardown_env(e)


def test_link_stolen_closes_client_without_will(env):
    peer = env.peer
    c = env.client()
    assert c.connect("s1", will=("w/s1", b"x", 0, False)) == (0, 0)
    peer.link("$mqtt.to.s1.publish")
    assert peer.close_link("$mqtt.to.s1.publish", "amqp:link:stolen", "newer link")
    assert c.is_closed()
    d = peer.detach_of("s1")
    assert d["condition"] is None


def test_amqp_peer_down_disconnects_clients(env):
    peer = env.peer
    c = env.client()
    assert c.connect("a1") == (0, 0)
    peer.drop()
    assert c.is_closed()
    c2 = env.client()
    assert c2.connect("a2")[1] == 3  # while down: CONNACK 3
    assert c2.is_closed()


def test_other_client_unaffected_by_refusal(env):
    good = env.client()
    assert good.connect("g1") == (0, 0)
    bad = env.client()
    bad.send(R.connect("", clean=False))
    bad.expect(R.CONNACK)
    good.send(R.PINGREQ_PKT)
    assert good.expect(R.PINGRESP) == (0, b"")


def test_sigterm_exits_cleanly_with_clients(env):
    c = env.client()
    assert c.connect("q1", will=("w/q1", b"x", 0, False)) == (0, 0)
    t0 = time.monotonic()
    assert env.gw.stop(timeout=10) == 0
    assert time.monotonic() - t0 < 5
    assert c.is_closed()
    # shutdown is a clean detach: the will is not published
    assert env.peer.detach_of("q1")["condition"] is None


def test_keepalive_max_refuses_zero_and_above(procs):
    """--keepalive-max 60: keep alive 1..60 is accepted; 61 and 0 (never time
    out) get CONNACK 2 and the connection is closed; nothing reaches the AMQP
    side for a refused client; the refusals are counted."""
    from test_gateway_metrics import scrape
    peer = AmqpPeer().start()
    try:
        hport = gwtest.free_port()
        gw, port = start_gateway(procs, peer.port, "--keepalive-max", "60",
                                 "--http-listen", f"127.0.0.1:{hport}")
        for ka, rc in ((60, 0), (1, 0), (61, 2), (0, 2), (65535, 2)):
            c = R.RawClient(port)
            cid = "ka%d" % ka
            assert c.connect(cid, keepalive=ka, will=("w/" + cid, b"x", 0, False)) == (0, rc), ka
            if rc:
                assert c.is_closed()
                assert not peer.links_named(cid)  # no will link, no will
            else:
                peer.wait_msg(subject="will", link=cid)
                c.close()
        gwtest.wait_until(lambda: gwtest.port_open(hport), what="HTTP port")
        m = scrape(hport)
        assert m["mqtt_gateway_keepalive_refused_total"] == 3
    finally:
        peer.stop()


def test_keepalive_max_rejects_bad_config():
    from test_gateway_misc import run_gateway
    for bad in ("-1", "65536", "ten"):
        r = run_gateway("--keepalive-max", bad)
        assert r.returncode == 2 and "keepalive-max" in r.stderr, (bad, r.stderr)
