"""Issue 7: the gateway's AMQP side over TLS with SASL EXTERNAL.

The real subscription-service listens with TLS, requires client
certificates and offers only SASL EXTERNAL; the gateway connects with
amqps://, verifies the service's certificate against a test CA and
authenticates with its own certificate. An MQTT round trip must work, a
gateway without a client certificate or trusting another CA must not get
its AMQP connection up (so CONNECT is answered 3). The URL names
localhost: proton checks the peer's DNS names, not IP addresses."""
import queue

import paho.mqtt.client as paho

import gw_mqtt_raw as R
import gwtest
from gw_tls_certs import Pki

GATEWAY = ("gateway", "mqtt-gateway")
SUBS = ("services", "subscription", "subscription-service")


def start_subs(procs, tmp_path, pki):
    cert, key = pki.issue("subs", "subscription-service", server=True)
    port = gwtest.free_port()
    procs.start([gwtest.binary(*SUBS), "--listen", f"127.0.0.1:{port}", "--listen-tls",
                 "--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-file", pki.ca_cert,
                 "--tls-verify-peer", "--sasl-mechs", "EXTERNAL",
                 "--store", str(tmp_path / "subs.db")], "subs", ready_port=port)
    return port


def start_gateway(procs, name, subs_port, *tls_args, wait_up=True):
    port = gwtest.free_port()
    up = f"AMQP connection to amqps://localhost:{subs_port} up"
    gw = procs.start([gwtest.binary(*GATEWAY), "--mqtt-listen", f"127.0.0.1:{port}",
                      "--amqp-url", f"amqps://localhost:{subs_port}", "--workers", "1",
                      "--amqp-sasl-mechs", "EXTERNAL", *tls_args], name, ready_port=port,
                     ready_log=up if wait_up else None)
    return gw, port, up


def test_tls_and_sasl_external_round_trip(procs, tmp_path):
    pki = Pki(tmp_path)
    subs_port = start_subs(procs, tmp_path, pki)
    cert, key = pki.issue("gw", "gateway-1")
    _, port, _ = start_gateway(procs, "gw", subs_port, "--amqp-tls-ca", pki.ca_cert,
                               "--amqp-tls-cert", cert, "--amqp-tls-key", key)
    got = queue.Queue()
    sub = paho.Client(client_id="tls-sub", protocol=paho.MQTTv311)
    sub.on_message = lambda c, u, m: got.put((m.topic, m.payload))
    subacked = queue.Queue()
    sub.on_subscribe = lambda c, u, mid, granted: subacked.put(granted)
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    try:
        sub.subscribe("t/#", 1)
        assert subacked.get(timeout=10) == (1,)
        pub = paho.Client(client_id="tls-pub", protocol=paho.MQTTv311)
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        pub.publish("t/x", b"over amqps", qos=1).wait_for_publish()
        assert got.get(timeout=10) == ("t/x", b"over amqps")
        pub.disconnect()
        pub.loop_stop()
    finally:
        sub.disconnect()
        sub.loop_stop()


def test_without_client_certificate_no_amqp_and_connack_3(procs, tmp_path):
    pki = Pki(tmp_path)
    subs_port = start_subs(procs, tmp_path, pki)
    gw, port, up = start_gateway(procs, "gw-nocert", subs_port, "--amqp-tls-ca", pki.ca_cert,
                                 wait_up=False)
    gwtest.wait_until(lambda: "down" in gw.log() or "error" in gw.log(),
                      what="AMQP refusal logged")
    c = R.RawClient(port)
    assert c.connect("x1") == (0, 3)
    assert up not in gw.log()


def test_untrusted_service_certificate_refused(procs, tmp_path):
    pki = Pki(tmp_path)
    subs_port = start_subs(procs, tmp_path, pki)
    other = Pki(tmp_path / "other" if (tmp_path / "other").mkdir() is None else tmp_path,
                ca_name="other-ca")
    cert, key = pki.issue("gw", "gateway-1")
    gw, port, up = start_gateway(procs, "gw-untrusting", subs_port, "--amqp-tls-ca",
                                 other.ca_cert, "--amqp-tls-cert", cert, "--amqp-tls-key", key,
                                 wait_up=False)
    gwtest.wait_until(lambda: "down" in gw.log() or "error" in gw.log(),
                      what="TLS failure logged")
    c = R.RawClient(port)
    assert c.connect("x2") == (0, 3)
    assert up not in gw.log()
