"""mqtt-gateway system tests: hostile input (issue 7). Each test asserts the
gateway stays up and serves another client afterwards."""
import socket
import time

import gwtest
import gw_mqtt_raw as R
from gw_gateway_env import make_env, teardown_env


def served(env, cid):
    c = env.client()
    try:
        return c.connect(cid) == (0, 0)
    finally:
        c.close()


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_slowloris_connect_closed_at_connect_timeout(procs):
    e = make_env(procs, "--connect-timeout", "1s")
    try:
        pkt = R.connect("slow")
        s = socket.create_connection(("127.0.0.1", e.port))
        t0 = time.monotonic()
        closed_at = None
        for b in pkt * 10:  # far more bytes than needed, one per 200 ms
            try:
                s.sendall(bytes([b]))
                s.settimeout(0.2)
                if s.recv(16) == b"":
                    closed_at = time.monotonic()
                    break
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                closed_at = time.monotonic()
                break
        assert closed_at is not None
        assert 0.8 <= closed_at - t0 < 3.0, closed_at - t0
        assert served(e, "after-slow")
    finally:
        teardown_env(e)


def test_huge_remaining_length_closed_without_allocating(procs):
    e = make_env(procs)
    try:
        pid = e.gw.proc.pid
        before = rss_kb(pid)
        c = e.client()
        assert c.connect("huge") == (0, 0)
        # PUBLISH declaring 256 MB (varint 0x80 0x80 0x80 0x80 = 268435455 max; 256 MB)
        n = 256 * 1024 * 1024 - 1
        var = bytearray()
        while True:
            d, n = n % 128, n // 128
            var.append(d | (0x80 if n else 0))
            if not n:
                break
        t0 = time.monotonic()
        c.send(bytes([0x30]) + bytes(var) + b"\x00\x01t")
        assert c.is_closed(timeout=2)
        assert time.monotonic() - t0 < 1.0
        assert rss_kb(pid) - before < 16 * 1024  # nothing near 256 MB was allocated
        assert "mqtt-too-large" in e.log()
        assert served(e, "after-huge")
    finally:
        teardown_env(e)


def test_invalid_utf8_topic_closes(procs):
    e = make_env(procs)
    try:
        c = e.client()
        assert c.connect("utf") == (0, 0)
        c.send(R.publish(b"a/\xc3\x28", b"x", qos=0))
        assert c.is_closed()
        assert "mqtt-utf8" in e.log()
        assert not e.peer.msgs(to="a/\ufffd(")
        assert served(e, "after-utf")
    finally:
        teardown_env(e)


def test_pubrel_for_unknown_id_gets_pubcomp(procs):
    e = make_env(procs)
    try:
        c = e.client()
        assert c.connect("rel") == (0, 0)
        c.send(R.ack(R.PUBREL, 4242))
        assert R.pid_of(c.expect(R.PUBCOMP)[1]) == 4242
    finally:
        teardown_env(e)


def test_packet_id_reuse_in_flight(procs):
    e = make_env(procs, policy={"publish": "hold"})
    try:
        c = e.client()
        assert c.connect("reuse") == (0, 0)
        c.send(R.publish("r/1", b"first", qos=1, pid=1))
        e.peer.wait_msg(to="r/1")
        # same id again while the first is in flight (not a DUP resend): not forwarded twice
        c.send(R.publish("r/1", b"second", qos=1, pid=1))
        c.send(R.publish("r/2", b"q2", qos=2, pid=2))
        e.peer.wait_msg(to="r/2")
        c.send(R.publish("r/2", b"q2 again", qos=2, pid=2, dup=True))
        assert c.no_packet(within=0.3)
        assert len(e.peer.msgs(to="r/1")) == 1 and len(e.peer.msgs(to="r/2")) == 1
        e.peer.settle(e.peer.msgs(to="r/1")[0], "accept")
        assert R.pid_of(c.expect(R.PUBACK)[1]) == 1
        e.peer.settle(e.peer.msgs(to="r/2")[0], "accept")
        assert R.pid_of(c.expect(R.PUBREC)[1]) == 2
        c.send(R.ack(R.PUBREL, 2))
        assert R.pid_of(c.expect(R.PUBCOMP)[1]) == 2
        assert served(e, "after-reuse")
    finally:
        teardown_env(e)


def test_subscribe_flood_is_bounded_by_limits(procs):
    hport = gwtest.free_port()
    e = make_env(procs, "--max-subscriptions-per-client", "100", "--http-listen",
                 f"127.0.0.1:{hport}", policy={"credit_for": {"$mqtt.subscriptionservice": 10}})
    try:
        c = e.client()
        assert c.connect("flood") == (0, 0)
        n = 10000
        c.send(b"".join(R.subscribe(i % 65535 + 1, [(f"f/{i}", 0)]) for i in range(n)))
        codes = []
        deadline = time.monotonic() + 120
        while len(codes) < n and time.monotonic() < deadline:
            t, _, body = c.recv_packet(timeout=30)
            assert t == R.SUBACK
            codes.append(body[2])
        assert len(codes) == n
        # the first 100 filters granted, the rest refused by the limit (never sent to the SS)
        assert codes[:100] == [0] * 100 and set(codes[100:]) == {0x80}
        assert len(e.peer.msgs(subject="subscribe")) == 100
        assert e.log().count("max-subscriptions-per-client (100) reached") == 1
        import test_gateway_metrics as M
        assert M.scrape(hport)["mqtt_gateway_subscriptions_limited_total"] == n - 100
        # re-subscribing a held filter and unsubscribing make room again
        c.send(R.subscribe(1, [("f/5", 1)]))
        assert c.expect(R.SUBACK)[1][2:] == b"\x01"
        c.send(R.unsubscribe(2, ["f/6"]))
        c.expect(R.UNSUBACK)
        c.send(R.subscribe(3, [("g/new", 0), ("g/new2", 0)]))
        assert c.expect(R.SUBACK)[1][2:] == b"\x00\x80"
        assert served(e, "after-flood")
    finally:
        teardown_env(e)
