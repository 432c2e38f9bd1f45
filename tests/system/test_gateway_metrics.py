"""mqtt-gateway system tests: --http-listen (/healthz, /readyz, /metrics)
and SIGHUP reload (issue 6)."""
import json
import signal
import urllib.error
import urllib.request

import gwtest
import gw_mqtt_raw as R
from gw_amqp_peer import AmqpPeer
from gw_gateway_env import start_gateway


def http_get(port, path):
    """(status, body) of GET http://127.0.0.1:port/path."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def scrape(port):
    """Prometheus text -> {'name{labels}': value}; checks HELP/TYPE exist."""
    status, text = http_get(port, "/metrics")
    assert status == 200
    out, helped = {}, set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
        elif line and not line.startswith("#"):
            key, val = line.rsplit(" ", 1)
            name = key.split("{", 1)[0]
            assert name in helped, f"{name} has no HELP"
            assert name.startswith("mqtt_gateway_"), name
            out[key] = float(val)
    return out


def test_metrics_move_with_traffic(procs):
    peer = AmqpPeer().start()
    try:
        hport = gwtest.free_port()
        gw, port = start_gateway(procs, peer.port, "--http-listen", f"127.0.0.1:{hport}",
                                 "--workers", "2", workers=2)
        gwtest.wait_until(lambda: gwtest.port_open(hport), what="HTTP port")
        assert http_get(hport, "/healthz")[0] == 200
        assert http_get(hport, "/nothing")[0] == 404
        m0 = scrape(hport)
        assert m0['mqtt_gateway_messages_in_total{qos="1"}'] == 0
        assert m0['mqtt_gateway_connections{listener="tcp"}'] == 0

        c = R.RawClient(port)
        assert c.connect("met") == (0, 0)
        for i in range(3):
            c.send(R.publish("m/t", b"abc", qos=1, pid=i + 1))
            c.expect(R.PUBACK)
        c.send(R.publish("m/t", b"abc", qos=0))
        c.send(R.publish("m/t", b"abc", qos=2, pid=9))
        c.expect(R.PUBREC)
        peer.wait_for(lambda: len(peer.msgs(to="m/t")) == 5, what="5 messages")
        gwtest.wait_until(lambda: peer.credit_of("$mqtt.to.met.publish"), what="credit")
        peer.send_to_client("met", topic="o/t", body=b"xyz", qos=0)
        c.expect(R.PUBLISH)
        # a refused CONNECT (empty id, clean session 0: CONNACK 2)
        r = R.RawClient(port)
        assert r.connect("", clean=False)[1] == 2
        # a protocol violation (reserved packet type 0)
        v = R.RawClient(port)
        v.send(b"\x00\x00")
        assert v.is_closed()

        def moved():
            m = scrape(hport)
            return (m['mqtt_gateway_messages_in_total{qos="1"}'] == 3 and
                    m['mqtt_gateway_messages_in_total{qos="0"}'] == 1 and
                    m['mqtt_gateway_messages_in_total{qos="2"}'] == 1 and
                    m['mqtt_gateway_messages_out_total{qos="0"}'] == 1 and
                    m['mqtt_gateway_connect_refused_total{code="2"}'] == 1 and
                    m['mqtt_gateway_protocol_violations_total{error="mqtt-bad-type"}'] == 1 and
                    m['mqtt_gateway_connections{listener="tcp"}'] == 1 and
                    m['mqtt_gateway_connections_total{listener="tcp"}'] ==
                    m0['mqtt_gateway_connections_total{listener="tcp"}'] + 3 and
                    m) or None
        m = gwtest.wait_until(moved, what="counters moved")
        # CONNECT (2+12+3 bytes: "met") + 3 x QoS 1 (2+5+2+3) + QoS 0 (2+5+3) + QoS 2 (12) + ...
        assert m["mqtt_gateway_bytes_in_total"] >= 17 + 3 * 12 + 10 + 12
        assert m["mqtt_gateway_bytes_out_total"] >= 4 + 3 * 4 + 4
        assert m['mqtt_gateway_acks_withheld_total{outcome="rejected"}'] == 0
        c.close()
        gwtest.wait_until(lambda: scrape(hport)['mqtt_gateway_connections{listener="tcp"}'] == 0,
                          what="connection gauge back to 0")
    finally:
        procs.stop_all()
        peer.stop()


def test_withheld_ack_is_counted(procs):
    peer = AmqpPeer().start()
    peer.policy["publish"] = "reject"
    try:
        hport = gwtest.free_port()
        gw, port = start_gateway(procs, peer.port, "--http-listen", f"127.0.0.1:{hport}")
        c = R.RawClient(port)
        assert c.connect("wh") == (0, 0)
        c.send(R.publish("w/t", b"x", qos=1, pid=1))
        assert c.no_packet(within=0.3)
        gwtest.wait_until(
            lambda: scrape(hport)['mqtt_gateway_acks_withheld_total{outcome="rejected"}'] == 1,
            what="withheld counter")
    finally:
        procs.stop_all()
        peer.stop()


def test_readyz_follows_amqp_connection(procs):
    peer = AmqpPeer()  # not started yet: its port is free
    hport = gwtest.free_port()
    gw, port = start_gateway(procs, peer.port, "--http-listen", f"127.0.0.1:{hport}",
                             wait_up=False)
    gwtest.wait_until(lambda: gwtest.port_open(hport), what="HTTP port")
    try:
        status, body = http_get(hport, "/readyz")
        assert status == 503 and "down" in body
        peer.start()
        gwtest.wait_until(lambda: http_get(hport, "/readyz")[0] == 200, what="ready")
        assert scrape(hport)["mqtt_gateway_amqp_reconnects_total"] == 0
        peer.stop()
        gwtest.wait_until(lambda: http_get(hport, "/readyz")[0] == 503, what="not ready")
        peer2 = AmqpPeer()
        peer2.port = peer.port
        peer2.start()
        try:
            gwtest.wait_until(lambda: http_get(hport, "/readyz")[0] == 200, what="ready again")
            assert scrape(hport)["mqtt_gateway_amqp_reconnects_total"] == 1
        finally:
            procs.stop_all()
            peer2.stop()
    finally:
        procs.stop_all()


def test_bad_http_listen_is_refused():
    import subprocess
    r = subprocess.run([gwtest.binary("gateway", "mqtt-gateway"), "--http-listen", "nope:x"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and "--http-listen" in r.stderr


def test_sighup_reloads_log_level(procs, tmp_path):
    peer = AmqpPeer().start()
    try:
        conf = tmp_path / "gw.json"
        conf.write_text(json.dumps({"log-level": "warn"}))
        port = gwtest.free_port()
        gw = procs.start([gwtest.binary("gateway", "mqtt-gateway"), "--config", str(conf),
                          "--workers", "1", "--amqp-url", f"amqp://127.0.0.1:{peer.port}",
                          "--mqtt-listen", f"127.0.0.1:{port}"], "mqtt-gateway", ready_port=port)
        gwtest.wait_until(lambda: peer.conn_opens >= 1, what="AMQP connection")
        c = R.RawClient(port)
        assert c.connect("hup1") == (0, 0)
        c.close()
        assert "hup1" not in gw.log()  # info/debug lines are off at warn
        conf.write_text(json.dumps({"log-level": "debug"}))
        gw.signal(signal.SIGHUP)
        gwtest.wait_until(lambda: "SIGHUP: reloaded log-level debug" in gw.log(), what="reload")
        c = R.RawClient(port)
        assert c.connect("hup2") == (0, 0)
        c.close()
        gwtest.wait_until(lambda: 'conn="hup2"' in gw.log(), what="debug lines after reload")
        # an invalid file keeps the running configuration
        conf.write_text("{ not json")
        gw.signal(signal.SIGHUP)
        gwtest.wait_until(lambda: "nothing reloaded" in gw.log(), what="invalid reload refused")
        assert gw.alive()
    finally:
        procs.stop_all()
        peer.stop()


def test_takeover_and_slow_client_counted(procs):
    import socket
    peer = AmqpPeer().start()
    try:
        hport = gwtest.free_port()
        gw, port = start_gateway(procs, peer.port, "--http-listen", f"127.0.0.1:{hport}",
                                 "--out-buffer-high-watermark", "64k",
                                 "--slow-client-timeout", "300ms")
        a = R.RawClient(port)
        assert a.connect("tk") == (0, 0)
        b = R.RawClient(port)
        assert b.connect("tk") == (0, 0)
        assert a.is_closed()
        gwtest.wait_until(lambda: scrape(hport)["mqtt_gateway_takeovers_total"] == 1,
                          what="takeover counted")
        s = R.RawClient(port)
        s.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        assert s.connect("slow") == (0, 0)
        gwtest.wait_until(lambda: peer.credit_of("$mqtt.to.slow.publish"), what="credit")
        for _ in range(60):
            peer.send_to_client("slow", topic="big", body=b"z" * 100000, qos=0)
        gwtest.wait_until(
            lambda: scrape(hport)["mqtt_gateway_slow_client_disconnects_total"] == 1,
            what="slow client counted")
        assert scrape(hport)["mqtt_gateway_takeovers_total"] == 1
    finally:
        procs.stop_all()
        peer.stop()
