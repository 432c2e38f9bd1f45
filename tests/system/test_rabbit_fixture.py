"""The private RabbitMQ fixture (tests/system/rabbit.py) and the address
mapping of its MQTT and AMQP 1.0 plugins, with real clients: python3-qpid-proton
and paho-mqtt. Skips when rabbitmq-server is not installed.

Run: /usr/bin/python3 -m pytest tests/system/test_rabbit_fixture.py
"""
import os
import threading
import uuid

import paho.mqtt.client as mqtt
import pytest
from proton import Message
from proton.utils import BlockingConnection

pytest_plugins = ["rabbit"]  # the session fixture rabbit_session

TIMEOUT = 10


def unique(prefix):
    return f"{prefix}{uuid.uuid4().hex[:10]}"


class Mqtt:
    """A paho client connected (CONNACK 0 seen) to RabbitMQ's MQTT port."""

    def __init__(self, port, client_id):
        self.messages = []
        self.cond = threading.Condition()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.rc = None
        self.c = mqtt.Client(client_id=client_id, clean_session=True,
                             protocol=mqtt.MQTTv311)
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        if not self.connected.wait(TIMEOUT) or self.rc != 0:
            self.close()
            pytest.fail(f"MQTT CONNACK not accepted (rc={self.rc})")

    def _on_connect(self, client, userdata, flags, rc):
        self.rc = rc
        self.connected.set()

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.messages.append((msg.topic, msg.payload, msg.qos))
            self.cond.notify_all()

    def subscribe(self, topic, qos=1):
        self.subscribed.clear()
        self.c.subscribe(topic, qos)
        if not self.subscribed.wait(TIMEOUT):
            pytest.fail(f"no SUBACK for {topic}")

    def wait_messages(self, n):
        with self.cond:
            self.cond.wait_for(lambda: len(self.messages) >= n, TIMEOUT)
            return list(self.messages)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def test_skips_cleanly_without_rabbitmq(monkeypatch):
    """available() looks at the installed scripts; a missing one means skip."""
    import rabbit
    monkeypatch.setattr(rabbit, "RABBITMQ_SERVER", "/nonexistent/rabbitmq-server")
    assert rabbit.available() is False
    assert "apt-get install" in rabbit.SKIP_REASON


def test_private_instance(rabbit_session):
    r = rabbit_session
    assert len({r.amqp_port, r.mqtt_port, r.dist_port, r.epmd_port}) == 4
    assert r.node == f"rabbit-{r.amqp_port}@localhost"
    status = r.ctl("status")
    assert status.returncode == 0, status.stderr
    assert r.node in status.stdout
    plugins = r.ctl("eval", "rabbit_plugins:active().")
    assert plugins.returncode == 0, plugins.stderr
    assert "rabbitmq_amqp1_0" in plugins.stdout and "rabbitmq_mqtt" in plugins.stdout
    # Everything under our own directory, nothing in /var/lib/rabbitmq.
    assert os.path.isdir(os.path.join(r.base, "mnesia", r.node))
    assert r.beam_pids(), "no beam process found under the server script"
    # Loopback only: the listeners report 127.0.0.1.
    listeners = r.ctl("eval", "rabbit_networking:active_listeners().")
    assert listeners.returncode == 0, listeners.stderr
    assert "{127,0,0,1}" in listeners.stdout
    assert "{0,0,0,0}" not in listeners.stdout


def test_amqp10_queue_roundtrip(rabbit_session):
    address = "/queue/" + unique("gwtest-")
    conn = BlockingConnection(rabbit_session.amqp_url, timeout=TIMEOUT)
    try:
        rcv = conn.create_receiver(address, credit=10)  # declares the queue
        snd = conn.create_sender(address)
        bodies = [f"hello {i}" for i in range(3)]
        for b in bodies:
            snd.send(Message(body=b))
        got = []
        for _ in bodies:
            m = rcv.receive(timeout=TIMEOUT)
            got.append(m.body)
            rcv.accept()
        assert got == bodies
    finally:
        conn.close()


def test_mqtt_topic_is_amq_topic_routing_key(rabbit_session):
    """MQTT topic <root>/b reaches an AMQP 1.0 receiver bound to
    /exchange/amq.topic/<root>.b and one on <root>.#, not one on <root>.c."""
    root = unique("gw")
    conn = BlockingConnection(rabbit_session.amqp_url, timeout=TIMEOUT)
    pub = None
    try:
        exact = conn.create_receiver(f"/exchange/amq.topic/{root}.b", credit=10)
        wild = conn.create_receiver(f"/exchange/amq.topic/{root}.#", credit=10)
        other = conn.create_receiver(f"/exchange/amq.topic/{root}.c", credit=10)
        pub = Mqtt(rabbit_session.mqtt_port, unique("pub-"))
        info = pub.c.publish(f"{root}/b", b"\x00\x01payload", qos=1)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published()
        for r in (exact, wild):
            m = r.receive(timeout=TIMEOUT)
            r.accept()
            assert bytes(m.body) == b"\x00\x01payload"
        # A later message on <root>/c must be the first thing "other" sees.
        info = pub.c.publish(f"{root}/c", b"second", qos=1)
        info.wait_for_publish(TIMEOUT)
        m = other.receive(timeout=TIMEOUT)
        other.accept()
        assert bytes(m.body) == b"second"
    finally:
        if pub:
            pub.close()
        conn.close()


def test_amqp10_to_mqtt_subscriber(rabbit_session):
    """The reverse: an AMQP 1.0 sender to /exchange/amq.topic/<root>.x reaches
    an MQTT subscriber of <root>/+ (on topic <root>/x). The MQTT payload is
    the AMQP body only when it is a single data section (inferred=True);
    an amqp-value body arrives still encoded (0x00 0x53 0x77 ...)."""
    root = unique("gw")
    sub = Mqtt(rabbit_session.mqtt_port, unique("sub-"))
    conn = BlockingConnection(rabbit_session.amqp_url, timeout=TIMEOUT)
    try:
        sub.subscribe(f"{root}/+", qos=1)
        snd = conn.create_sender(f"/exchange/amq.topic/{root}.x")
        snd.send(Message(body=b"from-amqp", inferred=True))  # data section
        snd.send(Message(body=b"value"))  # amqp-value section
        got = sub.wait_messages(2)
        assert len(got) == 2
        assert got[0][0] == f"{root}/x"
        assert got[0][1] == b"from-amqp"
        assert got[1][1] == b"\x00\x53\x77\xa0\x05value"
    finally:
        conn.close()
        sub.close()
