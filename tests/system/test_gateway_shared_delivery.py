"""The shared delivery link (spec 2.2 L4s, 3.12, 6.3 rule 7) end to end:
raw MQTT clients -> mqtt-gateway (--delivery-link shared, the default) ->
the real subscription-service. The service keeps each client's window;
deliveries name their client by serial."""
import os
import socket
import time

import pytest

import gwtest
import svc_http
from gw_gateway_env import start_gateway
from gw_mqtt_raw import (PUBACK, PUBLISH, SUBACK, RawClient, ack, parse_publish, publish,
                         subscribe)

SS = os.path.join(gwtest.BUILD, "services", "subscription", "subscription-service")
pytestmark = pytest.mark.skipif(not os.path.exists(SS), reason="services not built")


class Stack:
    def __init__(self, procs, tmp_path):
        self.procs = procs
        self.ss_port, self.ss_http = gwtest.free_port(), gwtest.free_port()
        procs.start([SS, "--listen", f"127.0.0.1:{self.ss_port}",
                     "--store", str(tmp_path / "subs.db"), "--store-sync", "normal",
                     "--http-listen", f"127.0.0.1:{self.ss_http}"],
                    "subscription-service", ready_port=self.ss_port)
        gwtest.wait_until(lambda: gwtest.port_open(self.ss_http), what="service http")
        svc_http.wait_ready(self.ss_http)

    def gateway(self, name, *args, workers=1):
        gw, port = start_gateway(self.procs, self.ss_port, "--delivery-link", "shared",
                                 "--will-link", "shared", *args, workers=workers, name=name)
        return gw, port


@pytest.fixture
def stack(procs, tmp_path):
    return Stack(procs, tmp_path)


def sub_client(port, cid, topic, qos=1, clean=True):
    c = RawClient(port)
    assert c.connect(cid, clean=clean)[1] == 0
    c.send(subscribe(1, [(topic, qos)]))
    c.expect(SUBACK)
    return c


def next_publish(c, timeout=5.0):
    flags, body = c.expect(PUBLISH, timeout)
    return parse_publish(flags, body)


def test_each_client_gets_its_own_messages(stack):
    """50 clients over 2 workers share two L4s; every message reaches its
    client (by serial), exactly once, in order."""
    _, port = stack.gateway("gw", workers=2)
    subs = {i: sub_client(port, f"s{i}", f"t/{i}") for i in range(50)}
    pub = RawClient(port)
    assert pub.connect("pub")[1] == 0
    for n in range(4):
        for i in range(50):
            pub.send(publish(f"t/{i}", f"{i}:{n}".encode(), qos=1, pid=1 + (n * 50 + i) % 60000))
    for n in range(200):
        pub.expect(PUBACK)
    for i, c in subs.items():
        got = []
        for _ in range(4):
            m = next_publish(c)
            c.send(ack(PUBACK, m["pid"]))
            got.append(m["payload"])
        assert got == [f"{i}:{n}".encode() for n in range(4)]
    for i, c in subs.items():
        assert c.no_packet(0.05)  # nothing extra queued behind the 4 (short bound)
    # One shared delivery link per worker at the service, no link per client.
    assert svc_http.value(stack.ss_http, "gw_subs_shared_delivery_links") == 2


def test_window_is_kept_by_the_service(stack):
    """--inflight-window 5: a subscriber that does not acknowledge holds 5
    QoS 1 messages; each PUBACK lets exactly one more through."""
    _, port = stack.gateway("gw", "--inflight-window", "5")
    sub = sub_client(port, "slow", "w/#")
    pub = RawClient(port)
    assert pub.connect("pub")[1] == 0
    for n in range(12):
        pub.send(publish("w/x", str(n).encode(), qos=1, pid=n + 1))
    for n in range(12):
        pub.expect(PUBACK)
    first = [next_publish(sub) for _ in range(5)]
    assert [m["payload"] for m in first] == [str(n).encode() for n in range(5)]
    assert sub.no_packet(0.3)
    pending = list(first)
    for k in range(7):
        sub.send(ack(PUBACK, pending.pop(0)["pid"]))
        got = next_publish(sub)
        assert got["payload"] == str(5 + k).encode()
        assert sub.no_packet(0.05)
        pending.append(got)


def test_unacknowledged_messages_redelivered_after_brute_disconnect(stack):
    """Persistent session: 3 delivered but not acknowledged when the socket
    dies; the next connection gets them again first, DUP set, same packet
    ids, then what was queued meanwhile (spec 3.12 AMQP_OFFLINE, 4.13)."""
    _, port = stack.gateway("gw")
    sub = sub_client(port, "p1", "q/#", clean=False)
    pub = RawClient(port)
    assert pub.connect("pub")[1] == 0
    for n in range(3):
        pub.send(publish("q/a", f"m{n}".encode(), qos=1, pid=n + 1))
        pub.expect(PUBACK)
    first = [next_publish(sub) for _ in range(3)]
    sub.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sub.close()
    # m3, m4 only once the service has the session offline: else they may be
    # in flight at AMQP_OFFLINE and come back with DUP, rightly (spec 3.12).
    svc_http.wait_value(stack.ss_http, "gw_subs_online_sessions", 1, 'link="shared"')
    for n in range(3, 5):
        pub.send(publish("q/a", f"m{n}".encode(), qos=1, pid=n + 1))
        pub.expect(PUBACK)
    again = RawClient(port)
    assert again.connect("p1", clean=False) == (1, 0)
    got = [next_publish(again) for _ in range(5)]
    assert [m["payload"] for m in got] == [f"m{n}".encode() for n in range(5)]
    assert [m["dup"] for m in got[:3]] == [True] * 3
    assert [m["pid"] for m in got[:3]] == [m["pid"] for m in first]
    assert not got[3]["dup"] and not got[4]["dup"]


def test_takeover_in_one_gateway_moves_the_session(stack):
    _, port = stack.gateway("gw", workers=2)
    old = sub_client(port, "mover", "mv/#", clean=False)
    new = RawClient(port)
    assert new.connect("mover", clean=False) == (1, 0)
    assert old.is_closed()
    pub = RawClient(port)
    assert pub.connect("pub")[1] == 0
    pub.send(publish("mv/1", b"here", qos=1, pid=1))
    pub.expect(PUBACK)
    m = next_publish(new)
    assert m["payload"] == b"here"


def test_slow_reader_holds_settlements_and_loses_nothing(stack):
    """A subscriber that stops reading: once its output passes the high
    watermark the gateway holds its settlements, so the service stops at
    the window and keeps the rest queued (spec 6.3 rules 3 and 7); when
    the client reads again every message arrives, in order."""
    _, port = stack.gateway("gw", "--out-buffer-high-watermark", "65536",
                            "--slow-client-timeout", "60s", "--inflight-window", "8")
    sub = sub_client(port, "lazy", "slow/#", qos=0)
    pub = RawClient(port)
    assert pub.connect("pub")[1] == 0
    payload = b"x" * 8000
    total = 2000  # 16 MB: more than the kernel's socket buffers hold
    for n in range(total):
        pub.send(publish("slow/a", n.to_bytes(4, "big") + payload, qos=0))
    # Every message reached the service ...
    def received():
        m = svc_http.metrics(stack.ss_http)
        return sum(v for (k, _), v in m.items() if k == "gw_subs_messages_in_total") >= total
    gwtest.wait_until(received, what="all publications at the service")
    # ... and most of them stay there while the client does not read: the
    # gateway holds their settlements, so the window stays full (without
    # that the queue would move into the gateway's output buffer at once).
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        q = svc_http.value(stack.ss_http, "gw_subs_queued_messages")
        assert q > total // 2
    got = []
    while len(got) < total:
        m = next_publish(sub, timeout=10)
        got.append(int.from_bytes(m["payload"][:4], "big"))
    assert got == list(range(total))
