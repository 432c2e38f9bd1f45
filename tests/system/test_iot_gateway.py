"""mqtt-gateway IoT platform mode (issue 9, Eclipse Hono conventions): real
gateway, raw and paho MQTT devices on --iot-listen, python3-qpid-proton
north-bound peer (iot_env.IotEnv). docs/iot-mode.md describes the mapping."""
import time

import paho.mqtt.client as paho
import pytest
from proton import Message

import gwtest
import gw_mqtt_raw as R
from iot_env import IotEnv, REQ_TOPIC, read_publish


@pytest.fixture
def env(procs, tmp_path):
    e = IotEnv(procs, tmp_path, http=True)
    yield e
    e.close()


def props(m):
    return m["properties"]


def test_telemetry_qos0_qos1_fields(env):
    c = env.dev1("tele")
    before = time.time()
    c.send(R.publish("telemetry", b"t0", qos=0))
    c.send(R.publish("t/?content-type=text%2Fplain&foo=b%20r", b"t1", qos=1, pid=1))
    assert R.pid_of(c.expect(R.PUBACK)[1]) == 1
    got = env.wait_to("telemetry/acme", 2)
    m0, m1 = got
    for m, q in ((m0, 0), (m1, 1)):
        assert props(m)["device_id"] == "dev1"
        assert props(m)["tenant_id"] == "acme"
        assert props(m)["orig_adapter"] == "hono-mqtt"
        assert props(m)["qos"] == q
        assert m["durable"] is False
        assert before - 1 <= m["creation_time"] <= time.time() + 1
    assert m0["presettled"] is True and m1["presettled"] is False
    assert m0["body"] == b"t0" and m1["body"] == b"t1"
    assert m0["content_type"] == "application/octet-stream"
    assert m1["content_type"] == "text/plain"
    assert props(m1)["foo"] == "b r"
    assert props(m1)["orig_address"] == "t/?content-type=text%2Fplain&foo=b%20r"
    # spec 2.3 link naming, per-address sender (the peer offers no relay)
    assert m0["link"] == "$mqtt.from.tele.q01.telemetry/acme"
    # no Subscription Service / Will Service links for IoT devices
    assert not [l for l in env.peer.links if l["target"] == "$mqtt.subscriptionservice"]
    mt = env.metrics()
    assert mt['mqtt_gateway_iot_messages_total{tenant="acme",kind="telemetry"}'] == 2
    assert mt['mqtt_gateway_iot_connections{tenant="acme"}'] == 1


def test_event_ttl_and_qos0_event_refused(env):
    c = env.dev1("ev")
    c.send(R.publish("event/acme/?hono-ttl=30", b"e1", qos=1, pid=7))
    assert R.pid_of(c.expect(R.PUBACK)[1]) == 7
    (m,) = env.wait_to("event/acme")
    assert m["durable"] is True and m["ttl"] == pytest.approx(30.0)
    assert props(m)["qos"] == 1 and props(m)["device_id"] == "dev1"
    # Hono: events need QoS 1 (docs/iot-mode.md): QoS 0 closes the connection
    c.send(R.publish("e", b"e0", qos=0))
    assert c.is_closed()
    assert "QoS: qos" in env.gw.log()
    assert len([x for x in env.peer.msgs() if x["to"] == "event/acme"]) == 1


def test_bad_property_bag_and_topic_close_the_connection(env):
    for i, topic in enumerate(("telemetry/?a=1&A=2", "telemetry/?x=%zz", "t/acme/dev1/extra",
                               "telemetry/?device_id=evil", "nothono/x")):
        c = env.dev1(f"bad{i}")
        c.send(R.publish(topic, b"x", qos=1, pid=1))
        assert c.is_closed(), topic
    log = env.gw.log()
    for reason in ("bag-duplicate", "bag-escape", "levels", "bag-reserved", "not-hono"):
        assert reason in log, reason
    assert not [m for m in env.peer.msgs() if (m["to"] or "").startswith("telemetry/")]


def test_tenant_isolation(env):
    other = env.device("o1", "dev2@other", "pw2")
    # publishing as another tenant (or another device without a gateway rule)
    other.send(R.publish("telemetry/acme", b"x", qos=1, pid=1))
    assert other.is_closed()
    other = env.device("o2", "dev2@other", "pw2")
    other.send(R.publish("telemetry/other/dev1", b"x", qos=1, pid=1))
    assert other.is_closed()
    assert "tenant-mismatch" in env.gw.log() or "tenant" in env.gw.log()
    # subscribing to another tenant's commands: refused, no link attached
    other = env.device("o3", "dev2@other", "pw2")
    other.send(R.subscribe(3, [("command/acme/dev1/req/#", 1), ("command/acme//req/#", 0),
                               ("command///req/#", 1)]))
    _, body = other.expect(R.SUBACK)
    assert list(body[2:]) == [0x80, 0x80, 1]
    env.peer.link("$mqtt.cmd.o3.command/other/dev2")
    assert not [l for l in env.peer.links if l["source"] == "command/acme/dev1"]
    # dev1's own traffic is fine and tagged with its own tenant
    d1 = env.dev1("i1")
    d1.send(R.publish("telemetry", b"ok", qos=1, pid=2))
    d1.expect(R.PUBACK)
    assert [props(m)["tenant_id"] for m in env.peer.msgs() if m["to"] == "telemetry/acme"] == \
        ["acme"]
    assert not [m for m in env.peer.msgs() if m["to"] == "telemetry/other"]


def test_command_round_trip_and_ttd(env):
    c = env.dev1("cmd")
    c.send(R.subscribe(1, [("command///req/#", 0)]))  # QoS 1: test_iot_commands.py
    _, body = c.expect(R.SUBACK)
    assert list(body[2:]) == [0]
    link = env.peer.link("$mqtt.cmd.cmd.command/acme/dev1")
    assert link["source"] == "command/acme/dev1" and link["gateway_role"] == "receiver"
    (ttd,) = env.wait_to("event/acme")
    assert props(ttd)["ttd"] == -1 and props(ttd)["device_id"] == "dev1"
    assert ttd["content_type"] == "application/vnd.eclipse-hono-empty-notification"
    assert ttd["body"] is None

    out = env.send_command("acme", "dev1", "setVolume", b'{"v":3}',
                           reply_to="command_response/acme/app-1", correlation_id="corr-1")
    p = read_publish(c)
    mt = REQ_TOPIC.match(p["topic"])
    assert mt and mt.group(1) == "command" and mt.group(2) == "" and mt.group(3) == ""
    assert mt.group(6) == "setVolume" and p["payload"] == b'{"v":3}' and p["qos"] == 0
    req_id = mt.group(5)
    env.peer.wait_for(lambda: out["remote_settled"], what="command settled")
    assert str(out["remote_state"]) == "ACCEPTED"
    c.send(R.publish(f"command///res/{req_id}/200", b"done", qos=1, pid=5))
    assert R.pid_of(c.expect(R.PUBACK)[1]) == 5
    (r,) = env.wait_to("command_response/acme/app-1")
    assert r["correlation_id"] == "corr-1" and props(r)["status"] == 200
    assert props(r)["device_id"] == "dev1" and r["body"] == b"done"
    # a second response to the same request is dropped (acknowledged, logged)
    c.send(R.publish(f"command///res/{req_id}/200", b"again", qos=1, pid=6))
    c.expect(R.PUBACK)
    assert "req-id-unknown" in env.gw.log()

    # one-way command: empty request id
    env.send_command("acme", "dev1", "ping", b"")
    p = read_publish(c)
    assert p["topic"] == "command///req//ping" and p["payload"] == b""

    # a command whose `to` names another device, arriving on dev1's link, is
    # rejected and never reaches dev1 (isolation does not trust the router)
    m = Message(address="command/acme/dev2", subject="x", body=b"y")
    m.inferred = True
    bad = env.peer.send_on("command/acme/dev1", m)
    env.peer.wait_for(lambda: bad["remote_settled"], what="settled")
    assert str(bad["remote_state"]) == "REJECTED"
    assert c.no_packet(within=0.3)

    c.send(R.unsubscribe(2, ["command///req/#"]))
    c.expect(R.UNSUBACK)
    env.peer.detach_of("$mqtt.cmd.cmd.command/acme/dev1")
    ttds = env.wait_to("event/acme", 2)
    assert [props(m)["ttd"] for m in ttds] == [-1, 0]
    mt2 = env.metrics()
    assert mt2['mqtt_gateway_iot_messages_total{tenant="acme",kind="command"}'] == 2  # setVolume, ping (not the rejected one)
    assert mt2['mqtt_gateway_iot_messages_total{tenant="acme",kind="command_response"}'] == 1


def test_short_forms_and_disconnect_sends_ttd0(env):
    c = env.dev1("short")
    c.send(R.subscribe(1, [("c///q/#", 0)]))
    c.expect(R.SUBACK)
    env.wait_to("event/acme")
    env.send_command("acme", "dev1", "reboot", b"now", reply_to="command_response/acme/app",
                     correlation_id="k")
    p = read_publish(c)
    mt = REQ_TOPIC.match(p["topic"])
    assert mt and mt.group(1) == "c" and mt.group(4) == "q" and mt.group(6) == "reboot"
    c.send(R.publish(f"c///s/{mt.group(5)}/503", b"", qos=0))
    (r,) = env.wait_to("command_response/acme/app")
    assert props(r)["status"] == 503 and r["correlation_id"] == "k"
    c.send(R.DISCONNECT_PKT)
    ttds = env.wait_to("event/acme", 2)
    assert props(ttds[1])["ttd"] == 0


def test_no_consumer_qos0_dropped_qos1_waits(procs, tmp_path):
    e = IotEnv(procs, tmp_path, http=True, policy={"credit_for": {"telemetry/acme": 0}})
    try:
        c = e.dev1("nc")
        for i in range(3):
            c.send(R.publish("telemetry", b"q0-%d" % i, qos=0))
        gwtest.wait_until(lambda: e.metrics().get(
            'mqtt_gateway_iot_dropped_total{tenant="acme"}') == 3, what="3 dropped")
        c.send(R.publish("telemetry", b"q1", qos=1, pid=9))
        assert c.no_packet(within=0.7)  # no PUBACK without credit
        assert not c.is_closed(timeout=0.3)  # back-pressure, not a disconnect
        e.peer.grant("telemetry/acme", 5)
        assert R.pid_of(c.expect(R.PUBACK)[1]) == 9
        got = [m["body"] for m in e.peer.msgs() if m["to"] == "telemetry/acme"]
        assert got == [b"q1"]
    finally:
        e.close()


def test_unauthenticated_devices(procs, tmp_path):
    e = IotEnv(procs, tmp_path, "--iot-allow-unauthenticated")
    try:
        c = e.device("anon1")
        c.send(R.publish("telemetry/acme/dev9", b"a", qos=1, pid=1))
        c.expect(R.PUBACK)
        (m,) = e.wait_to("telemetry/acme")
        assert props(m)["device_id"] == "dev9" and props(m)["tenant_id"] == "acme"
        c.send(R.subscribe(2, [("command/acme/dev9/req/#", 0)]))
        assert list(c.expect(R.SUBACK)[1][2:]) == [0]
        e.send_command("acme", "dev9", "go", b"1")
        assert read_publish(c)["topic"] == "command/acme/dev9/req//go"
        c.send(R.publish("telemetry", b"a", qos=1, pid=3))  # ids missing
        assert c.is_closed()
        assert "ids-missing" in e.gw.log()
    finally:
        e.close()
    e = IotEnv(procs, tmp_path)
    try:
        e.device("anon2", expect_rc=5)
        e.device("badpw", "dev1@acme", "nope", expect_rc=4)
        e.device("noat", "dev1", "pw1", expect_rc=4)
    finally:
        e.close()


def test_gateway_map(procs, tmp_path):
    gm = tmp_path / "gwmap"
    gm.write_text("# tenant gateway device\nacme gw1 dev7\n")
    e = IotEnv(procs, tmp_path, "--iot-gateway-map", str(gm))
    try:
        g = e.device("g1", "gw1@acme", "pw3")
        g.send(R.publish("telemetry//dev7", b"x", qos=1, pid=1))
        g.expect(R.PUBACK)
        (m,) = e.wait_to("telemetry/acme")
        assert props(m)["device_id"] == "dev7"
        g.send(R.publish("telemetry//dev8", b"x", qos=1, pid=2))  # no rule
        assert g.is_closed()
    finally:
        e.close()


def test_plain_mqtt_client_unaffected(env):
    c = R.RawClient(env.port)
    assert c.connect("plain") == (0, 0)
    c.send(R.publish("telemetry/x", b"p", qos=1, pid=1))
    c.expect(R.PUBACK)
    (m,) = env.wait_to("telemetry/x")
    assert m["annotations"].get("x-opt-mqtt-qos") == 1
    assert "device_id" not in props(m)
    assert env.peer.link("$mqtt.to.plain.publish") and env.peer.ss_links()


def test_paho_device(env):
    got, subscribed = [], []
    cl = paho.Client(client_id="paho1", protocol=paho.MQTTv311)
    cl.username_pw_set("dev1@acme", "pw1")
    cl.on_message = lambda c, u, m: got.append((m.topic, m.payload))
    cl.on_subscribe = lambda c, u, mid, q: subscribed.append(q)
    cl.connect("127.0.0.1", env.iot_port)
    cl.loop_start()
    try:
        info = cl.publish("telemetry", b"from-paho", qos=1)
        info.wait_for_publish(5)
        assert info.is_published()
        (m,) = env.wait_to("telemetry/acme")
        assert m["body"] == b"from-paho" and props(m)["device_id"] == "dev1"
        cl.subscribe("command///req/#", qos=1)
        gwtest.wait_until(lambda: subscribed, what="SUBACK")
        env.wait_to("event/acme")
        assert subscribed[0] == (1,)  # commands at QoS 1, acknowledged by paho
        out = env.send_command("acme", "dev1", "blink", b"3")
        gwtest.wait_until(lambda: got, what="command")
        assert got[0] == ("command///req//blink", b"3")
        env.peer.wait_for(lambda: out["remote_settled"], what="command settled on PUBACK")
        assert str(out["remote_state"]) == "ACCEPTED"
    finally:
        cl.loop_stop()
        cl.disconnect()


def test_tenant_limits_per_worker(procs, tmp_path):
    e = IotEnv(procs, tmp_path, "--iot-tenant-max-connections", "1", "--iot-tenant-rate", "5",
               http=True)
    try:
        c = e.dev1("lim1")
        e.device("lim2", "dev1@acme", "pw1", expect_rc=3)  # tenant acme is full
        e.device("lim3", "dev2@other", "pw2")             # other tenants are not
        t0 = time.monotonic()
        for i in range(15):
            c.send(R.publish("telemetry", b"%d" % i, qos=0))
        e.wait_to("telemetry/acme", 15, timeout=10)
        elapsed = time.monotonic() - t0
        # burst of 5, then 5/s: the last 10 need about 2 s; none is dropped
        assert elapsed >= 1.5, elapsed
        assert [m["body"] for m in e.peer.msgs() if m["to"] == "telemetry/acme"] == \
            [b"%d" % i for i in range(15)]
        assert e.metrics()['mqtt_gateway_iot_dropped_total{tenant="acme"}'] == 0
    finally:
        e.close()


def test_tenant_metrics_escaped_and_bounded(procs, tmp_path):
    users = (("dev1@acme", "pw1"), ('q@we"ird', "pw2"), ("z@third", "pw3"))
    e = IotEnv(procs, tmp_path, "--iot-max-tenants", "2", users=users, http=True)
    try:
        for cid, u, p in (("m1", "dev1@acme", "pw1"), ("m2", 'q@we"ird', "pw2"),
                          ("m3", "z@third", "pw3")):
            c = e.device(cid, u, p)
            c.send(R.publish("telemetry", b"x", qos=1, pid=1))
            c.expect(R.PUBACK)
        mt = e.metrics()
        key = 'mqtt_gateway_iot_messages_total{tenant="%s",kind="telemetry"}'
        assert mt[key % "acme"] == 1
        assert mt[key % 'we\\"ird'] == 1
        assert mt[key % "other"] == 1  # the third tenant is over the bound
        assert not [k for k in mt if "third" in k]
    finally:
        e.close()


def test_iots_listener_with_client_certificate(procs, tmp_path):
    from gw_tls_certs import Pki, TlsRawClient, client_context
    d = tmp_path / "pki"
    d.mkdir()
    pki = Pki(d)
    cert, key = pki.issue("server", "gw-server-1", server=True)
    tport = gwtest.free_port()
    e = IotEnv(procs, tmp_path, "--iots-listen", f"127.0.0.1:{tport}", "--tls-cert", cert,
               "--tls-key", key, "--tls-ca", pki.ca_cert, "--tls-client-cert", "optional")
    try:
        gwtest.wait_until(lambda: gwtest.port_open(tport), what="IoT TLS listener")
        dcert, dkey = pki.issue("dev5", "dev5@acme")  # certificate identity auth-id@tenant
        t = TlsRawClient(tport, client_context(pki.ca_cert, dcert, dkey))
        assert t.connect("tls-dev5") == (0, 0)
        t.send(R.publish("event", b"tls", qos=1, pid=1))
        t.expect(R.PUBACK)
        (m,) = e.wait_to("event/acme")
        assert props(m)["device_id"] == "dev5" and m["body"] == b"tls"
    finally:
        e.close()
