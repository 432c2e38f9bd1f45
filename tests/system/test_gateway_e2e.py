"""End to end with the real services: paho clients -> mqtt-gateway ->
subscription-service, with the will link routed to will-service
(--route $mqtt.lwtservice=...), which publishes wills back through the
subscription-service. Skipped when the services are not built."""
import os
import queue
import re

import pytest

import gwtest
from gw_gateway_env import start_gateway

paho = pytest.importorskip("paho.mqtt.client")
SS = os.path.join(gwtest.BUILD, "services", "subscription", "subscription-service")
WS = os.path.join(gwtest.BUILD, "services", "will", "will-service")
pytestmark = pytest.mark.skipif(not (os.path.exists(SS) and os.path.exists(WS)),
                                reason="services not built")


@pytest.fixture
def stack(procs, tmp_path):
    ss_port, ws_port = gwtest.free_port(), gwtest.free_port()
    procs.start([SS, "--listen", f"127.0.0.1:{ss_port}", "--store", str(tmp_path / "subs.db")],
                "subscription-service", ready_port=ss_port)
    procs.start([WS, "--listen", f"127.0.0.1:{ws_port}", "--store", str(tmp_path / "will.db"),
                 "--publish-url", f"amqp://127.0.0.1:{ss_port}", "--store-sync", "normal"],
                "will-service", ready_port=ws_port)
    gw, port = start_gateway(procs, ss_port, "--will-link", "shared", "--route",
                             f"$mqtt.lwtservice=amqp://127.0.0.1:{ws_port}", wait_up=False)
    gwtest.wait_until(lambda: len(re.findall(r"AMQP connection to \S+ up\"", gw.log())) >= 2,
                      what="both AMQP connections up")
    return port


class Client:
    def __init__(self, port, cid, will=None):
        self.c = paho.Client(client_id=cid, clean_session=True, protocol=paho.MQTTv311)
        self.msgs = queue.Queue()
        ready = queue.Queue()
        self.c.on_message = lambda c, u, m: self.msgs.put((m.topic, m.payload, m.qos))
        self.c.on_connect = lambda c, u, f, rc: ready.put(rc)
        self.c.on_subscribe = lambda c, u, mid, g: ready.put(("suback", g))
        if will:
            self.c.will_set(*will)
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        assert ready.get(timeout=10) == 0
        self.ready = ready

    def subscribe(self, topic, qos):
        self.c.subscribe(topic, qos)
        assert self.ready.get(timeout=10) == ("suback", (qos,))


def test_will_published_on_brute_close_not_on_disconnect(stack):
    watcher = Client(stack, "watcher")
    watcher.subscribe("will/#", 1)
    clean = Client(stack, "clean", will=("will/clean", b"clean-will", 1, False))
    clean.c.disconnect()
    clean.c.loop_stop()
    victim = Client(stack, "victim", will=("will/victim", b"victim-will", 1, False))
    victim.c.loop_stop()
    victim.c.socket().close()  # network failure: no DISCONNECT
    topic, payload, qos = watcher.msgs.get(timeout=10)
    assert (topic, payload, qos) == ("will/victim", b"victim-will", 1)
    # the cleanly disconnected client's will was deleted, never published
    with pytest.raises(queue.Empty):
        watcher.msgs.get(timeout=0.5)
    watcher.c.disconnect()
    watcher.c.loop_stop()
