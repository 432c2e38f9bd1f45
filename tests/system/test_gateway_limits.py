"""mqtt-gateway system tests: limits (issue 7) and hostile input (issue 7):
each asserts the gateway stays up and serves another client."""
import time

import gwtest
import gw_mqtt_raw as R
from gw_gateway_env import make_env, teardown_env
import test_gateway_metrics as M


def served(env, cid):
    """True if a new client gets CONNACK 0 (False if it was closed at once)."""
    c = env.client()
    try:
        return c.connect(cid) == (0, 0)
    except R.Closed:
        return False
    finally:
        c.close()


def idle(hport):
    gwtest.wait_until(lambda: M.scrape(hport)['mqtt_gateway_connections{listener="tcp"}'] == 0,
                      what="no connection open")


def test_connection_limits(procs):
    hport = gwtest.free_port()
    e = make_env(procs, "--max-connections-per-ip", "2", "--http-listen", f"127.0.0.1:{hport}")
    try:
        idle(hport)  # the harness's readiness probe held a slot
        a, b = e.client(), e.client()
        assert a.connect("l1") == (0, 0) and b.connect("l2") == (0, 0)
        c = e.client()
        assert c.is_closed(), "third connection from 127.0.0.1 must be closed"
        gwtest.wait_until(lambda: M.scrape(hport)[
            'mqtt_gateway_connections_refused_total{limit="max-connections-per-ip"}'] >= 1,
            what="refusal counted")
        assert "max-connections-per-ip reached" in e.log()
        a.close()
        gwtest.wait_until(lambda: M.scrape(hport)['mqtt_gateway_connections{listener="tcp"}'] == 1,
                          what="slot released")
        assert served(e, "l3")
        b.send(R.publish("x", b"1", qos=1, pid=1))  # the others were never affected
        b.expect(R.PUBACK)
    finally:
        teardown_env(e)


def test_global_max_connections(procs):
    hport = gwtest.free_port()
    e = make_env(procs, "--max-connections", "3", "--http-listen", f"127.0.0.1:{hport}")
    try:
        idle(hport)
        keep = [e.client() for _ in range(2)]
        assert [k.connect(f"g{i}") for i, k in enumerate(keep)] == [(0, 0), (0, 0)]
        third = e.client()
        assert third.connect("g2") == (0, 0)
        assert e.client().is_closed()
        third.close()
        gwtest.wait_until(lambda: served(e, "g3"), what="slot freed")
    finally:
        teardown_env(e)


def test_topic_limits(procs):
    e = make_env(procs, "--max-topic-length", "1024", "--max-topic-levels", "16")
    try:
        c = e.client()
        assert c.connect("t1") == (0, 0)
        c.send(R.publish("a/" * 20 + "b", b"x", qos=0))  # 21 levels
        assert c.is_closed()
        c = e.client()
        assert c.connect("t2") == (0, 0)
        c.send(R.publish("x" * 2000, b"x", qos=0))
        assert c.is_closed()
        c = e.client()
        assert c.connect("t3") == (0, 0)
        c.send(R.subscribe(1, [("+/" * 9999 + "#", 0)]))  # 10,000 levels
        assert c.is_closed()
        assert "mqtt-topic-too-long" in e.log()
        assert served(e, "t4")
        assert not e.peer.msgs(subject="subscribe")
    finally:
        teardown_env(e)


def test_default_limits_refuse_65535_byte_topic(procs):
    e = make_env(procs)
    try:
        c = e.client()
        assert c.connect("big") == (0, 0)
        c.send(R.publish("t" * 65535, b"", qos=0))
        assert c.is_closed()
        assert served(e, "big2")
    finally:
        teardown_env(e)


def test_publish_rate_slows_without_disconnecting(procs):
    hport = gwtest.free_port()
    e = make_env(procs, "--publish-rate", "20", "--publish-burst", "5", "--http-listen",
                 f"127.0.0.1:{hport}")
    try:
        c = e.client()
        assert c.connect("flood") == (0, 0)
        t0 = time.monotonic()
        c.send(b"".join(R.publish("f/t", str(i).encode(), qos=0) for i in range(40)))
        e.peer.wait_for(lambda: len(e.peer.msgs(to="f/t")) == 40, timeout=15,
                        what="40 messages")
        elapsed = time.monotonic() - t0
        # 5 at once, then 35 at 20/s: at least 1.75 s
        assert elapsed >= 1.6, elapsed
        assert elapsed < 6, elapsed
        assert [m["body"] for m in e.peer.msgs(to="f/t")] == [str(i).encode() for i in range(40)]
        # still connected and answered
        c.send(R.publish("f/t", b"last", qos=1, pid=7))
        assert R.pid_of(c.expect(R.PUBACK, timeout=5)[1]) == 7
        assert M.scrape(hport)["mqtt_gateway_publish_rate_limited_total"] >= 10
        # another client is not slowed by the flooder's bucket
        d = e.client()
        assert d.connect("other") == (0, 0)
        t0 = time.monotonic()
        for i in range(5):
            d.send(R.publish("o/t", b"y", qos=1, pid=i + 1))
            d.expect(R.PUBACK)
        assert time.monotonic() - t0 < 1.0
    finally:
        teardown_env(e)


def test_max_links_per_client(procs):
    e = make_env(procs, "--max-topic-links", "10", "--max-links-per-client", "2")
    try:
        c = e.client()
        assert c.connect("ml") == (0, 0)
        for i in range(4):
            c.send(R.publish(f"ml/{i}", b"x", qos=1, pid=i + 1))
            assert R.pid_of(c.expect(R.PUBACK)[1]) == i + 1
        senders = [l for l in e.peer.links if l["name"].startswith("$mqtt.from.ml.")]
        assert [l["target"] for l in senders] == [f"ml/{i}" for i in range(4)]
        # spec 2.3: `.<address>` appended for per-address senders
        assert [l["name"] for l in senders] == [f"$mqtt.from.ml.q01.ml/{i}" for i in range(4)]
        e.peer.wait_for(lambda: len([d for d in e.peer.detaches
                                     if d["name"].startswith("$mqtt.from.ml.")]) == 2,
                        what="2 links closed")
        gone = sorted(d["name"] for d in e.peer.detaches if d["name"].startswith("$mqtt.from.ml."))
        assert gone == sorted(s["name"] for s in senders[:2])
        assert all(d["condition"] is None for d in e.peer.detaches
                   if d["name"].startswith("$mqtt.from.ml."))
    finally:
        teardown_env(e)
