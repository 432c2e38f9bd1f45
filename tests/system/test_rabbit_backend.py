"""mqtt-gateway in front of a real RabbitMQ 3.10 (AMQP 1.0 plugin), issue 6.

paho-mqtt -> mqtt-gateway --route 'sensors/=<rabbit>;address=/exchange/amq.topic/{topic.};relay=never'
-> RabbitMQ exchange amq.topic -> a python3-qpid-proton receiver whose source
/exchange/amq.topic/<binding key> makes RabbitMQ declare an exclusive queue
bound with that key. The real subscription-service answers CONNECT (the
gateway's default route). See docs/rabbitmq.md.

Run: GW_BUILD_DIR=build /usr/bin/python3 -m pytest tests/system/test_rabbit_backend.py
Skips when rabbitmq-server is not installed (scripts/deps.sh installs it).
"""
import http.client
import os
import re
import signal
import threading
import time

import pytest

import gwtest
from subs_peer import Service

paho = pytest.importorskip("paho.mqtt.client")
proton = pytest.importorskip("proton")
from proton.utils import BlockingConnection  # noqa: E402

pytest_plugins = ["rabbit"]  # the session fixture rabbit_session

GATEWAY = os.path.join(gwtest.BUILD, "gateway", "mqtt-gateway")
pytestmark = pytest.mark.skipif(not os.path.exists(GATEWAY), reason="mqtt-gateway not built")

TIMEOUT = 10
TEMPLATE = "/exchange/amq.topic/{topic.}"

# Erlang run inside the node by `rabbitmqctl eval`: change the memory
# watermark, then poll the alarm list (20 ms steps, 5 s bound) until the
# memory alarm is raised (watermark 0) or cleared, so that the test never
# guesses how long RabbitMQ's memory monitor takes.
_ALARM_WAIT = ("vm_memory_monitor:set_vm_memory_high_watermark({wm}), "
               "F = fun L(0) -> timeout; L(N) -> "
               "case rabbit_alarm:get_alarms() =/= [] of {want} -> ok; "
               "_ -> timer:sleep(20), L(N - 1) end end, F(250).")
# rabbit.py configures vm_memory_high_watermark.relative = 0.6: restore it.
_WATERMARK = "0.6"


def set_memory_alarm(rabbit, on):
    code = _ALARM_WAIT.format(wm="0.0" if on else _WATERMARK, want="true" if on else "false")
    r = rabbit.ctl("eval", code)
    if r.returncode != 0 or r.stdout.strip() != "ok":
        pytest.fail(f"memory alarm {'on' if on else 'off'}: rc={r.returncode} "
                    f"out={r.stdout!r} err={r.stderr!r}")


def http_get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        c.request("GET", path)
        resp = c.getresponse()
        return resp.status, resp.read().decode()
    except OSError:
        return None, ""
    finally:
        c.close()


def metric(hport, name):
    _, text = http_get(hport, "/metrics")
    m = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\d+)", text, re.M)
    return int(m.group(1)) if m else None


class Pub:
    """A paho publisher; counts PUBACKs (on_publish for QoS 1) by mid."""

    def __init__(self, port, cid):
        self.acked = set()
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.rc = None
        self.c = paho.Client(client_id=cid, clean_session=True, protocol=paho.MQTTv311)
        self.c.max_inflight_messages_set(1000)
        self.c.on_connect = self._on_connect
        self.c.on_publish = self._on_publish
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        if not self.connected.wait(TIMEOUT) or self.rc != 0:
            self.close()
            pytest.fail(f"no CONNACK 0 from the gateway (rc={self.rc})")

    def _on_connect(self, client, userdata, flags, rc):
        self.rc = rc
        self.connected.set()

    def _on_publish(self, client, userdata, mid):
        with self.lock:
            self.acked.add(mid)

    def n_acked(self, mids):
        with self.lock:
            return len(self.acked & set(mids))

    def publish(self, topic, payload, qos, retain=False):
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            pytest.fail(f"paho publish failed: {info.rc}")
        return info.mid

    def wait_acked(self, mids, timeout=TIMEOUT):
        gwtest.wait_until(lambda: self.n_acked(mids) == len(mids), timeout=timeout,
                          what=f"PUBACK of {len(mids)} messages")

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


class Consumer:
    """An AMQP 1.0 receiver on RabbitMQ: source /exchange/amq.topic/<key>
    (or /topic/<key>) gives an exclusive auto-delete queue bound to
    amq.topic with <key>."""

    def __init__(self, url, key, credit=500, prefix="/exchange/amq.topic/"):
        self.conn = BlockingConnection(url, timeout=TIMEOUT)
        self.rx = self.conn.create_receiver(prefix + key, credit=credit)

    def get(self, timeout=TIMEOUT):
        m = self.rx.receive(timeout=timeout)
        self.rx.accept()
        return m

    def drain(self, want, timeout=TIMEOUT):
        """Receive until `want` messages arrived, then whatever else comes
        within a short bounded window (to count duplicates)."""
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < want:
            got.append(self.get(timeout=max(0.1, deadline - time.monotonic())))
        while True:
            try:
                got.append(self.get(timeout=0.3))
            except proton.Timeout:
                return got

    def close(self):
        self.conn.close()


def start_stack(procs, tmp_path, rabbit, template=TEMPLATE):
    """subscription-service + mqtt-gateway routing sensors/ to RabbitMQ with
    the address template; returns (mqtt port, http port)."""
    svc = Service(procs, tmp_path).start()
    port, hport = gwtest.free_port(), gwtest.free_port()
    route = f"sensors/={rabbit.amqp_url};address={template};relay=never"
    procs.start([GATEWAY, "--mqtt-listen", f"127.0.0.1:{port}",
                 "--amqp-url", f"amqp://127.0.0.1:{svc.port}", "--route", route,
                 "--http-listen", f"127.0.0.1:{hport}", "--workers", "1",
                 "--log-level", "info"], "gw", ready_port=port)
    # /readyz is 200 once the worker's connections to both destinations are up.
    gwtest.wait_until(lambda: http_get(hport, "/readyz")[0] == 200, timeout=TIMEOUT,
                      what="gateway ready (SS and RabbitMQ connections up)")
    return port, hport


@pytest.fixture
def stack(procs, tmp_path, rabbit_session):
    """(rabbit, mqtt port, http port, list of things to close)"""
    port, hport = start_stack(procs, tmp_path, rabbit_session)
    made = []
    yield rabbit_session, port, hport, made
    for obj in made:
        try:
            obj.close()
        except Exception:
            pass


def annotations(m):
    return {str(k): v for k, v in (m.annotations or {}).items()}


def test_qos0_qos1_reach_rabbitmq(stack):
    rabbit, port, hport, made = stack
    cons = Consumer(rabbit.amqp_url, "sensors.room1.*")
    made.append(cons)
    pub = Pub(port, "rb-pub1")
    made.append(pub)
    payload0 = bytes(range(256)) + b"\x00qos0"
    payload1 = b"\x00\xffqos1" * 100
    pub.publish("sensors/room1/temp", payload0, 0)
    mid1 = pub.publish("sensors/room1/temp", payload1, 1)
    mid2 = pub.publish("sensors/room1/hum", b"r", 1, retain=True)
    pub.wait_acked([mid1, mid2])
    got = [cons.get() for _ in range(3)]
    # One AMQP link per topic: order is kept per topic only.
    by_topic = {}
    for m in got:
        by_topic.setdefault(m.address, []).append(m)
    temp = by_topic["/exchange/amq.topic/sensors.room1.temp"]
    hum = by_topic["/exchange/amq.topic/sensors.room1.hum"]
    assert [bytes(m.body) for m in temp] == [payload0, payload1]
    assert [m.durable for m in temp] == [False, True]
    # RabbitMQ 3.10 keeps the message annotations (and `to`) end to end.
    assert [annotations(m).get("x-opt-mqtt-qos") for m in temp] == [0, 1]
    assert [annotations(m).get("x-opt-retain-message") for m in temp] == [False, False]
    # QoS 1 carries the MQTT packet id as message-id; RabbitMQ keeps it.
    assert temp[1].id == mid1
    assert bytes(hum[0].body) == b"r" and hum[0].durable is True
    assert annotations(hum[0]).get("x-opt-retain-message") is True
    assert annotations(hum[0]).get("x-opt-mqtt-qos") == 1


def test_broker_stalled_no_early_puback_nothing_lost(stack):
    """RabbitMQ stops answering (its Erlang VM is SIGSTOPped): the gateway
    forwards the QoS 1 messages but PUBACKs none of them until RabbitMQ
    accepts them; once it runs again every one is acknowledged and arrives.
    (A memory alarm does not do this with 3.10's AMQP 1.0 plugin: see
    test_memory_alarm_does_not_block_amqp10 and docs/rabbitmq.md.)"""
    rabbit, port, hport, made = stack
    n = 50
    cons = Consumer(rabbit.amqp_url, "sensors.bp.#", credit=2 * n)
    made.append(cons)
    pub = Pub(port, "rb-bp")
    made.append(pub)
    # The link of sensors/bp/x to RabbitMQ is attached and has credit.
    pub.wait_acked([pub.publish("sensors/bp/x", b"warm", 1)])
    assert bytes(cons.get().body) == b"warm"
    beams = rabbit.beam_pids()
    assert beams, "no beam process under rabbitmq-server"
    fwd = 'mqtt_gateway_messages_in_total{qos="1"}'
    stalls = "mqtt_gateway_credit_stalls_total"
    fwd0, stalls0 = metric(hport, fwd), metric(hport, stalls)
    for pid in beams:
        os.kill(pid, signal.SIGSTOP)
    try:
        # n on the attached link: forwarded (credit left) but not settled.
        mids = [pub.publish("sensors/bp/x", b"m%04d" % i, 1) for i in range(n)]
        # A new topic needs a new link: RabbitMQ grants it no credit, the
        # gateway keeps the packet and stops reading the client.
        mids.append(pub.publish("sensors/bp/new", b"new", 1))
        # Synchronise on the gateway: n forwarded onto the AMQP link, one stall.
        gwtest.wait_until(lambda: metric(hport, fwd) == fwd0 + n
                          and metric(hport, stalls) > stalls0,
                          timeout=TIMEOUT, what="n messages forwarded and a credit stall")
        # RabbitMQ settles nothing, so the gateway must acknowledge nothing.
        # Watch for a bounded window (a PUBACK would end it early).
        with pytest.raises(TimeoutError):
            gwtest.wait_until(lambda: pub.n_acked(mids) > 0, timeout=1.5, what="an early PUBACK")
        assert pub.n_acked(mids) == 0
    finally:
        for pid in beams:
            os.kill(pid, signal.SIGCONT)
    pub.wait_acked(mids, timeout=15)
    got = cons.drain(n + 1)
    bodies = [bytes(m.body) for m in got]
    want = [b"m%04d" % i for i in range(n)]
    assert set(bodies) == set(want) | {b"new"}, \
        f"missing: {sorted(set(want + [b'new']) - set(bodies))}"
    dups = len(bodies) - len(set(bodies))
    # QoS 1 allows duplicates; report them (-s shows this line).
    print(f"\nstall: {n + 1} published, {len(set(bodies))} distinct received, "
          f"{dups} duplicates, credit stalls {metric(hport, stalls) - stalls0}")
    # First-time deliveries of one link arrive in order.
    assert [b for b in dict.fromkeys(bodies) if b != b"new"] == want


def test_memory_alarm_does_not_block_amqp10(stack):
    """Documents RabbitMQ 3.10's behaviour (docs/rabbitmq.md): under a memory
    alarm its AMQP 1.0 plugin keeps accepting transfers (it neither blocks
    the connection nor withdraws credit), so the gateway keeps PUBACKing.
    If a RabbitMQ upgrade changes this, this test fails: update the doc."""
    rabbit, port, hport, made = stack
    cons = Consumer(rabbit.amqp_url, "sensors.alarm.#")
    made.append(cons)
    pub = Pub(port, "rb-alarm")
    made.append(pub)
    set_memory_alarm(rabbit, True)
    try:
        mids = [pub.publish("sensors/alarm/x", b"a%d" % i, 1) for i in range(5)]
        pub.wait_acked(mids)
    finally:
        set_memory_alarm(rabbit, False)
    assert sorted(bytes(m.body) for m in cons.drain(5)) == [b"a%d" % i for i in range(5)]


def test_dotted_and_deep_topics(stack):
    rabbit, port, hport, made = stack
    # Both topics map to the routing key sensors.a.b.c: the documented
    # ambiguity of {topic.}. A binding on that key gets both.
    cons = Consumer(rabbit.amqp_url, "sensors.a.b.c")
    deep = Consumer(rabbit.amqp_url, "sensors.l1.#")
    made += [cons, deep]
    pub = Pub(port, "rb-dots")
    made.append(pub)
    deep_topic = "sensors/" + "/".join(f"l{i}" for i in range(1, 21))
    mids = [pub.publish("sensors/a.b/c", b"dot-in-level-2", 1),
            pub.publish("sensors/a/b.c", b"dot-in-level-3", 1),
            pub.publish(deep_topic, b"deep", 1)]
    pub.wait_acked(mids)
    got = sorted(bytes(cons.get().body) for _ in range(2))
    assert got == [b"dot-in-level-2", b"dot-in-level-3"]
    m = deep.get()
    assert bytes(m.body) == b"deep"
    assert m.address == "/exchange/amq.topic/" + deep_topic.replace("/", ".")


def test_topic_address_form(procs, tmp_path, rabbit_session):
    """The shorter template /topic/{topic.} (amq.topic, routing key) works
    too; a consumer on /topic/<binding key> gets the message."""
    port, hport = start_stack(procs, tmp_path, rabbit_session, "/topic/{topic.}")
    cons = Consumer(rabbit_session.amqp_url, "sensors.short.#", prefix="/topic/")
    try:
        pub = Pub(port, "rb-short")
        try:
            pub.wait_acked([pub.publish("sensors/short/t", b"short", 1)])
        finally:
            pub.close()
        m = cons.get()
        assert (bytes(m.body), m.address) == (b"short", "/topic/sensors.short.t")
    finally:
        cons.close()
