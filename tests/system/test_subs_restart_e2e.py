"""Spec 4.21 end to end: the Subscription Service is killed (kill -9) and
restarted while a real mqtt-gateway is connected to it.

paho clients -> mqtt-gateway --amqp-url SS --route $mqtt.lwtservice=WS;
will-service publishes wills into the SS. Expected: the gateway's AMQP
connection is lost, so its clients are disconnected and their wills fire
(published by the will-service once the SS is back); the gateway reconnects;
a persistent client that reconnects finds its session (session present) and
gets the messages queued for it after the restart; messages it had not
acknowledged before the crash are not lost.

Run: GW_BUILD_DIR=<build> /usr/bin/python3 -m pytest tests/system/test_subs_restart_e2e.py
"""
import os
import queue

import pytest

import gwtest
import svc_http

paho = pytest.importorskip("paho.mqtt.client")

GATEWAY = os.path.join(gwtest.BUILD, "gateway", "mqtt-gateway")
pytestmark = pytest.mark.skipif(not os.path.exists(GATEWAY), reason="mqtt-gateway not built")


class Mqtt:
    """A paho client without automatic reconnect (loop_stop once disconnected)."""

    def __init__(self, port, cid, clean=True, will=None):
        self.c = paho.Client(client_id=cid, clean_session=clean, protocol=paho.MQTTv311)
        self.msgs = queue.Queue()
        self.connack = queue.Queue()
        self.subacks = queue.Queue()
        self.disconnects = queue.Queue()
        if will:
            self.c.will_set(*will)
        self.c.on_message = lambda c, u, m: self.msgs.put((m.topic, m.payload, m.qos, m.retain))
        self.c.on_connect = lambda c, u, f, rc: self.connack.put((rc, f.get("session present")))
        self.c.on_subscribe = lambda c, u, mid, granted: self.subacks.put((mid, granted))
        self.c.on_disconnect = lambda c, u, rc: self.disconnects.put(rc)
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        self.rc, self.present = self.connack.get(timeout=15)

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

    def close(self):
        try:
            self.c.disconnect()
        finally:
            self.c.loop_stop()


def start_subs(procs, tmp_path, port, n, hport):
    return procs.start([gwtest.binary("services", "subscription", "subscription-service"),
                        "--listen", "127.0.0.1:%d" % port, "--store", str(tmp_path / "subs.db"),
                        "--http-listen", "127.0.0.1:%d" % hport,
                        "--log-level", "debug"], "subs%d" % n, ready_port=port)


def test_subscription_service_restart_with_gateway_connected(procs, tmp_path):
    ss_port, ws_port, gw_port = gwtest.free_port(), gwtest.free_port(), gwtest.free_port()
    hport = gwtest.free_port()
    ss = start_subs(procs, tmp_path, ss_port, 1, hport)
    ws = procs.start([gwtest.binary("services", "will", "will-service"),
                 "--listen", "127.0.0.1:%d" % ws_port,
                 "--publish-url", "amqp://127.0.0.1:%d" % ss_port,
                 "--store", str(tmp_path / "wills.db"), "--grace-seconds", "0",
                 "--retry-min", "50ms", "--retry-max", "500ms", "--log-level", "debug"],
                "will", ready_port=ws_port)
    up_line = "AMQP connection to amqp://127.0.0.1:%d up" % ss_port
    gw = procs.start([GATEWAY, "--mqtt-listen", "127.0.0.1:%d" % gw_port,
                      "--amqp-url", "amqp://127.0.0.1:%d" % ss_port,
                      "--route", "$mqtt.lwtservice=amqp://127.0.0.1:%d" % ws_port,
                      "--workers", "1", "--log-level", "debug"], "gw",
                     ready_port=gw_port, ready_log=up_line)

    a = Mqtt(gw_port, "restart-a", clean=False, will=("will/restart-a", b"a-lost", 1, True))
    assert (a.rc, a.present) == (0, 0)
    assert a.subscribe("q/#", 1) == (1,)
    p = Mqtt(gw_port, "restart-p")
    p.publish("q/x", b"before", 1)
    assert a.msgs.get(timeout=10) == ("q/x", b"before", 1, False)
    # Its PUBACK reached the SS (else "before" is redelivered with DUP after
    # the restart: at least once, spec 4.11): nothing left in its queue.
    svc_http.wait_value(hport, "gw_subs_queued_messages", 0)

    ss.kill9()
    # The gateway lost its AMQP connection: every client is disconnected.
    assert a.disconnects.get(timeout=15) != 0
    assert p.disconnects.get(timeout=15) != 0
    a.c.loop_stop()
    p.c.loop_stop()

    ss = start_subs(procs, tmp_path, ss_port, 2, hport)
    gwtest.wait_until(lambda: gw.log().count(up_line) >= 2, timeout=20,
                      what="gateway reconnected to the restarted SS")

    # a is offline: its persistent session, recovered from the store, queues.
    p = Mqtt(gw_port, "restart-p2")
    assert p.rc == 0
    for i in range(3):
        p.publish("q/x", b"after-%d" % i, 1)

    a = Mqtt(gw_port, "restart-a", clean=False)
    assert (a.rc, a.present) == (0, 1)
    got = [a.msgs.get(timeout=10) for _ in range(3)]
    assert got == [("q/x", b"after-%d" % i, 1, False) for i in range(3)]

    # The will fired when the gateway lost the SS; the will-service published
    # it (retained) into the SS once it was back (retried until accepted).
    gwtest.wait_until(lambda: "will published topic=will/restart-a" in ws.log(), timeout=15,
                      what="the will published into the restarted SS")
    w = Mqtt(gw_port, "restart-watch")
    assert w.subscribe("will/#", 1) == (1,)
    assert w.msgs.get(timeout=15) == ("will/restart-a", b"a-lost", 1, True)
    for c in (a, p, w):
        c.close()
