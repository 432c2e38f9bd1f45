"""The shared will link (spec 2.2 L1s, 3.4a, 4.14, 4.15, 5.1 rules 11-16)
end to end: raw MQTT clients -> mqtt-gateway (--will-link shared, the
default) -> will-service, which publishes wills through the
subscription-service to a watcher on a second gateway.

"Nothing published" is proven with a canary: the WS handles one link's
messages in order and publishes in order, so once a canary will sent after
the event has arrived, a will that the event would have published would
have arrived before it."""
import os
import re
import socket

import pytest

import gwtest
import svc_http
from gw_gateway_env import start_gateway
from gw_mqtt_raw import (DISCONNECT_PKT, PUBACK, PUBLISH, SUBACK, RawClient, ack,
                         parse_publish, subscribe)

SS = os.path.join(gwtest.BUILD, "services", "subscription", "subscription-service")
WS = os.path.join(gwtest.BUILD, "services", "will", "will-service")
pytestmark = pytest.mark.skipif(not (os.path.exists(SS) and os.path.exists(WS)),
                                reason="services not built")


class Stack:
    def __init__(self, procs, tmp_path):
        self.procs = procs
        self.ss_port, self.ws_port = gwtest.free_port(), gwtest.free_port()
        self.ws_http = gwtest.free_port()
        procs.start([SS, "--listen", f"127.0.0.1:{self.ss_port}",
                     "--store", str(tmp_path / "subs.db")],
                    "subscription-service", ready_port=self.ss_port)
        self.ws = procs.start(
            [WS, "--listen", f"127.0.0.1:{self.ws_port}", "--store", str(tmp_path / "will.db"),
             "--publish-url", f"amqp://127.0.0.1:{self.ss_port}", "--store-sync", "normal",
             "--http-listen", f"127.0.0.1:{self.ws_http}"],
            "will-service", ready_port=self.ws_port)
        gwtest.wait_until(lambda: gwtest.port_open(self.ws_http), what="will-service http")
        svc_http.wait_ready(self.ws_http)

    def gateway(self, name, *args, workers=1):
        gw, port = start_gateway(self.procs, self.ss_port, "--route",
                                 f"$mqtt.lwtservice=amqp://127.0.0.1:{self.ws_port}",
                                 "--will-link", "shared", *args, workers=workers,
                                 wait_up=False, name=name)
        gwtest.wait_until(lambda: len(re.findall(r"AMQP connection to \S+ up\"", gw.log()))
                          >= 2 * workers,
                          what="both AMQP connections up")
        return gw, port

    def wills(self):
        return svc_http.value(self.ws_http, "gw_will_wills", 'state="held"')


class Watcher:
    """A subscriber to will/# (QoS 1) on its own gateway."""

    def __init__(self, port):
        self.c = RawClient(port)
        assert self.c.connect("watcher") == (0, 0)
        self.c.send(subscribe(1, [("will/#", 1)]))
        self.c.expect(SUBACK)
        self.got = []

    def next(self, timeout=10.0):
        _, flags, body = self.c.recv_packet(timeout)
        m = parse_publish(flags, body)
        if m["qos"]:
            self.c.send(ack(PUBACK, m["pid"]))
        self.got.append((m["topic"], m["payload"]))
        return m

    def until(self, topic, timeout=10.0):
        """Every will up to and including the one on topic, in arrival order."""
        seen = []
        while True:
            m = self.next(timeout)
            seen.append((m["topic"], m["payload"]))
            if m["topic"] == topic:
                return seen


def will_client(port, cid, topic=None, qos=1, keepalive=60):
    c = RawClient(port)
    will = (topic or f"will/{cid}", f"bye {cid}", qos, False)
    assert c.connect(cid, will=will, keepalive=keepalive) == (0, 0)
    return c


def brute(c):
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.close()


@pytest.fixture
def stack(procs, tmp_path):
    return Stack(procs, tmp_path)


def test_one_link_many_wills_brute_clean_and_gateway_loss(stack):
    """50 clients with wills share one L1s; brute closes publish exactly
    their wills, clean DISCONNECTs none, and kill -9 of the gateway
    publishes every will it still owned (spec 5.1 rule 14)."""
    _, wport = stack.gateway("gw-watch")
    watcher = Watcher(wport)
    gw, port = stack.gateway("gw-a")
    clients = {f"c{i}": will_client(port, f"c{i}") for i in range(50)}
    gwtest.wait_until(lambda: stack.wills() == 50, what="50 wills stored")
    # One L1s for the gateway's one worker: no link per client at the WS.
    assert svc_http.value(stack.ws_http, "gw_will_shared_links") == 1

    for i in range(10):
        clients.pop(f"c{i}").send(DISCONNECT_PKT)
    for i in range(10, 20):
        brute(clients.pop(f"c{i}"))
    canary = will_client(port, "canary", topic="will/zz-canary")
    brute(canary)
    seen = watcher.until("will/zz-canary")
    assert sorted(t for t, _ in seen) == sorted(
        [f"will/c{i}" for i in range(10, 20)] + ["will/zz-canary"])
    assert dict(seen)["will/c15"] == b"bye c15"
    gwtest.wait_until(lambda: stack.wills() == 30, what="30 wills left")

    gw.kill9()
    got = set()
    while len(got) < 30:
        got.add(watcher.next()["topic"])
    assert got == {f"will/c{i}" for i in range(20, 50)}
    gwtest.wait_until(lambda: stack.wills() == 0, what="store empty")
    for c in clients.values():
        c.close()


def test_keepalive_expiry_publishes_the_will(stack):
    _, wport = stack.gateway("gw-watch")
    watcher = Watcher(wport)
    _, port = stack.gateway("gw-a")
    c = will_client(port, "sleepy", keepalive=1)
    assert c.is_closed(timeout=5)  # 1.5 x keep alive
    m = watcher.next()
    assert (m["topic"], m["payload"]) == ("will/sleepy", b"bye sleepy")


def test_takeover_within_a_gateway_publishes_no_will(stack):
    """The old client's AMQP_WILL_CLEAR and the new client's AMQP_WILL go
    over the same L1s in that order (spec 4.17, 5.1 "Order")."""
    _, wport = stack.gateway("gw-watch")
    watcher = Watcher(wport)
    _, port = stack.gateway("gw-a", workers=2)
    old = will_client(port, "dup", topic="will/dup-old")
    new = will_client(port, "dup", topic="will/dup-new")
    assert old.is_closed()
    brute(will_client(port, "canary1", topic="will/zz-canary1"))
    assert watcher.until("will/zz-canary1") == [("will/zz-canary1", b"bye canary1")]
    brute(new)
    assert watcher.until("will/dup-new") == [("will/dup-new", b"bye dup")]


def test_takeover_across_gateways_publishes_no_will(stack):
    """Old client on gateway A, new one on gateway B: the SS steals A's
    links, A sends AMQP_WILL_CLEAR over its L1s, which the WS ignores if
    B's AMQP_WILL came first (spec 4.18, 5.1 rule 12)."""
    _, wport = stack.gateway("gw-watch")
    watcher = Watcher(wport)
    _, port_a = stack.gateway("gw-a")
    _, port_b = stack.gateway("gw-b")
    for round_ in range(5):
        cid = f"mover{round_}"
        old = will_client(port_a, cid, topic=f"will/{cid}-old")
        new = will_client(port_b, cid, topic=f"will/{cid}-new")
        assert old.is_closed()
        canary = f"will/zz-canary{round_}"
        brute(will_client(port_a, f"canary{round_}", topic=canary))
        seen = [t for t, _ in watcher.until(canary)]
        assert seen == [canary], seen
        # the new client's will is still there and still works
        brute(new)
        assert watcher.until(f"will/{cid}-new")[-1] == (f"will/{cid}-new", f"bye {cid}".encode())


def test_will_service_loss_disconnects_clients_with_wills_only(stack, procs):
    """The WS connection drops: the WS publishes what the L1s owned, so
    the gateway closes those clients; clients without a will stay."""
    _, port = stack.gateway("gw-a")
    withwill = will_client(port, "w1")
    plain = RawClient(port)
    assert plain.connect("p1") == (0, 0)
    stack.ws.kill9()
    assert withwill.is_closed(timeout=10)
    plain.send(b"\xc0\x00")  # PINGREQ: still served
    t, _, _ = plain.recv_packet(5)
    assert t == 13
