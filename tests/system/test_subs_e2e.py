"""End to end: paho-mqtt clients -> mqtt-gateway -> subscription-service."""
import os
import queue
import threading

import pytest

import gwtest
from subs_peer import Service

paho = pytest.importorskip("paho.mqtt.client")

GATEWAY = os.path.join(gwtest.BUILD, "gateway", "mqtt-gateway")
pytestmark = pytest.mark.skipif(not os.path.exists(GATEWAY), reason="mqtt-gateway not built")


def start_gateway(procs, subs_port, name="gw"):
    port = gwtest.free_port()
    procs.start([GATEWAY, "--mqtt-listen", f"127.0.0.1:{port}",
                 "--amqp-url", f"amqp://127.0.0.1:{subs_port}", "--workers", "1",
                 "--log-level", "debug"], name, ready_port=port,
                # the gateway answers CONNACK 3 while its AMQP connection is still
                # coming up: wait for it
                ready_log=f"AMQP connection to amqp://127.0.0.1:{subs_port} up")
    return port


class Mqtt:
    def __init__(self, port, cid, clean=True):
        self.c = paho.Client(client_id=cid, clean_session=clean, protocol=paho.MQTTv311)
        self.msgs = queue.Queue()
        self.connack = queue.Queue()
        self.subacks = queue.Queue()
        self.disconnects = queue.Queue()
        self.c.on_message = lambda c, u, m: self.msgs.put(
            (m.topic, m.payload, m.qos, m.retain, m.dup))
        self.c.on_connect = lambda c, u, f, rc: self.connack.put((rc, f.get("session present")))
        self.c.on_subscribe = lambda c, u, mid, granted: self.subacks.put((mid, granted))
        self.c.on_disconnect = lambda c, u, rc: self.disconnects.put(rc)
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        self.rc, self.present = self.connack.get(timeout=10)

    def subscribe(self, topic, qos):
        _, mid = self.c.subscribe(topic, qos)
        got_mid, granted = self.subacks.get(timeout=10)
        assert got_mid == mid
        return granted

    def publish(self, topic, payload, qos, retain=False):
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        if qos:
            info.wait_for_publish()
        return info

    def get(self, timeout=10):
        return self.msgs.get(timeout=timeout)

    def close(self, clean=True):
        if clean:
            self.c.disconnect()
        self.c.loop_stop()
        if not clean:
            self.c.socket().close() if self.c.socket() else None


@pytest.fixture
def stack(procs, tmp_path):
    svc = Service(procs, tmp_path).start()
    port = start_gateway(procs, svc.port)
    made = []

    def client(cid, clean=True, p=None):
        m = Mqtt(p or port, cid, clean)
        made.append(m)
        return m
    yield svc, port, client
    for m in made:
        try:
            m.close()
        except Exception:
            pass


def test_subscribe_publish_qos012(stack):
    svc, port, client = stack
    sub = client("e2e-sub")
    assert (sub.rc, sub.present) == (0, 0)
    assert sub.subscribe("e/#", 2) == (2,)
    pub = client("e2e-pub")
    for qos in (0, 1, 2):
        pub.publish(f"e/q{qos}", b"payload-%d" % qos, qos)
        topic, payload, got_qos, retain, dup = sub.get()
        assert (topic, payload, got_qos, retain) == (f"e/q{qos}", b"payload-%d" % qos, qos, False)


def test_retained_through_gateway(stack):
    svc, port, client = stack
    pub = client("e2e-rpub")
    pub.publish("ret/t", b"kept", 1, retain=True)
    sub = client("e2e-rsub")
    assert sub.subscribe("ret/+", 1) == (1,)
    assert sub.get() == ("ret/t", b"kept", 1, True, False)
    pub.publish("ret/t", b"live", 1, retain=True)
    assert sub.get()[:4] == ("ret/t", b"live", 1, False)


def test_persistent_session_offline_delivery(stack):
    svc, port, client = stack
    s = client("e2e-persist", clean=False)
    assert s.subscribe("off/#", 1) == (1,)
    s.close()
    pub = client("e2e-opub")
    for i in range(3):
        pub.publish("off/x", b"m%d" % i, 1 if i < 2 else 2)
    pub.publish("off/x", b"q0", 0)
    # QoS 0 has no ack: publish a QoS 1 message on a topic nobody holds and
    # wait for its PUBACK. Both travel in order over one MQTT and one AMQP
    # connection, so once it is acknowledged the service has handled q0
    # while the subscriber was still offline.
    pub.publish("sync/x", b"s", 1)
    s2 = client("e2e-persist", clean=False)
    assert (s2.rc, s2.present) == (0, 1)
    got = [s2.get()[:3] for _ in range(3)]
    # min(published, granted 1)
    assert got == [("off/x", b"m0", 1), ("off/x", b"m1", 1), ("off/x", b"m2", 1)]
    # QoS 0 published while offline was dropped: the next message is a live marker
    pub.publish("off/x", b"marker", 1)
    assert s2.get()[1] == b"marker"


def test_takeover_across_gateways(stack, procs):
    svc, port, client = stack
    port2 = start_gateway(procs, svc.port, name="gw2")
    old = client("e2e-take", clean=False)
    assert old.subscribe("take/#", 1) == (1,)
    new = client("e2e-take", clean=False, p=port2)
    assert (new.rc, new.present) == (0, 1)
    old.disconnects.get(timeout=10)  # the older connection is closed (MQTT-3.1.4-2)
    pub = client("e2e-tpub")
    pub.publish("take/1", b"to-new", 1)
    assert new.get()[:2] == ("take/1", b"to-new")
