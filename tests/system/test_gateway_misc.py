"""mqtt-gateway system tests: configuration, routing, anonymous relay,
slow-client protection."""
import re
import socket
import subprocess

import gwtest
import gw_mqtt_raw as R
from gw_amqp_peer import AmqpPeer
from gw_gateway_env import make_env, start_gateway, teardown_env


def run_gateway(*args):
    return subprocess.run([gwtest.binary("gateway", "mqtt-gateway"), *args],
                          capture_output=True, text=True, timeout=20)


def test_help_and_bad_values():
    r = run_gateway("--help")
    assert r.returncode == 0 and "--mqtt-listen" in r.stdout + r.stderr
    for bad in (["--workers", "x"], ["--max-packet-size", "8"], ["--connection-mode", "both"],
                ["--route", "noequals"], ["--route", "a=http://x"], ["--inflight-window", "0"],
                ["--bogus-option", "1"], ["--amqp-url", "amqp://127.0.0.1:0"]):
        r = run_gateway(*bad)
        assert r.returncode == 2, (bad, r.stderr)
        assert r.stderr.strip(), bad


def test_listen_address_in_use_fails(procs):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_gateway("--mqtt-listen", f"127.0.0.1:{port}", "--workers", "1",
                        "--amqp-url", "amqp://127.0.0.1:1")
        assert r.returncode == 1


def test_routes_longest_prefix_wins(procs):
    p2 = AmqpPeer().start()
    p1 = AmqpPeer().start()
    try:
        gw, port = start_gateway(procs, p1.port, "--route", f"r/=amqp://127.0.0.1:{p2.port}",
                                 "--route", f"r/main/=amqp://127.0.0.1:{p1.port}", wait_up=False)
        gwtest.wait_until(lambda: len(re.findall(r"AMQP connection to \S+ up\"", gw.log())) >= 2,
                      what="both connections up")
        c = R.RawClient(port)
        assert c.connect("rt") == (0, 0)
        for t in ("r/x", "r/main/y", "other"):
            c.send(R.publish(t, t.encode(), qos=1, pid=len(t)))
            c.expect(R.PUBACK)
        assert p2.msgs(to="r/x") and not p1.msgs(to="r/x")
        assert p1.msgs(to="r/main/y") and not p2.msgs(to="r/main/y")
        assert p1.msgs(to="other") and not p2.msgs(to="other")
        # the client's control links follow the default route
        assert p1.links_named("$mqtt.to.rt.publish") and not p2.links_named("$mqtt.to.rt.publish")
    finally:
        procs.stop_all()
        p1.stop()
        p2.stop()


def test_anonymous_relay_one_link_per_settle_mode(procs):
    e = make_env(procs, anonymous_relay=True)
    try:
        peer = e.peer
        c = e.client()
        assert c.connect("an") == (0, 0)
        for i, t in enumerate(("a/1", "a/2", "a/3")):
            c.send(R.publish(t, b"x", qos=1, pid=i + 1))
            c.expect(R.PUBACK)
        c.send(R.publish("a/4", b"y", qos=2, pid=9))
        c.expect(R.PUBREC)
        c.send(R.ack(R.PUBREL, 9))
        c.expect(R.PUBCOMP)
        senders = [l for l in peer.links if l["name"].startswith("$mqtt.from.an.")]
        assert len(senders) == 2 and all(l["target"] is None for l in senders)
        assert sorted(l["rcv_settle_mode"] for l in senders) == [0, 1]
        # spec 2.3: stable names per client and QoS class
        assert sorted(l["name"] for l in senders) == ["$mqtt.from.an.q01", "$mqtt.from.an.q2"]
        assert [m["to"] for m in peer.msgs() if m["link"].startswith("$mqtt.from.an.")] == \
            ["a/1", "a/2", "a/3", "a/4"]
    finally:
        teardown_env(e)


def test_slow_client_is_disconnected(procs):
    e = make_env(procs, "--out-buffer-high-watermark", "64k", "--slow-client-timeout", "300ms")
    try:
        peer = e.peer
        c = R.RawClient(e.port)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        assert c.connect("slow", will=("w/slow", b"x", 0, False)) == (0, 0)
        gwtest.wait_until(lambda: peer.credit_of("$mqtt.to.slow.publish"), what="credit")
        for i in range(120):
            peer.send_to_client("slow", topic="big", body=b"z" * 100000, qos=0)
        # never read: the gateway stops granting credit, then disconnects it
        d = peer.detach_of("slow", timeout=10)
        assert d["condition"] == "amqp:link:detach-forced"
        assert "slow client" in d["description"]
        sent = sum(1 for o in peer.outbound if o["delivery"] is not None)
        assert sent < 120  # credit was held back
    finally:
        teardown_env(e)


def test_topic_link_cache_evicts_idle_links(procs):
    e = make_env(procs, "--max-topic-links", "2")
    try:
        peer = e.peer
        c = e.client()
        assert c.connect("ev") == (0, 0)
        for i in range(5):
            c.send(R.publish(f"ev/{i}", b"x", qos=1, pid=i + 1))
            assert R.pid_of(c.expect(R.PUBACK)[1]) == i + 1
        senders = [l for l in peer.links if l["name"].startswith("$mqtt.from.ev.")]
        assert [l["target"] for l in senders] == [f"ev/{i}" for i in range(5)]
        def evicted():
            return [d for d in peer.detaches if d["name"].startswith("$mqtt.from.ev.")]
        peer.wait_for(lambda: len(evicted()) >= 3, what="3 evicted links")
        gone = evicted()
        # the 2 most recently used stay attached; evictions are clean detaches
        assert len(gone) == 3 and all(d["condition"] is None for d in gone)
        assert sorted(d["name"] for d in gone) == [s["name"] for s in senders[:3]]
    finally:
        teardown_env(e)
