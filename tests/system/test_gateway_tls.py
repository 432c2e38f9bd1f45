"""mqtt-gateway system tests: MQTT over TLS (--mqtts-listen, issue 7), with a
PKI generated at test time by the openssl CLI and paho / python ssl clients."""
import signal
import shutil
import ssl
import subprocess
import threading

import paho.mqtt.client as mqtt
import pytest

import gwtest
import gw_mqtt_raw as R
from gw_amqp_peer import AmqpPeer
from gw_gateway_env import start_mqtts_gateway
from gw_tls_certs import Pki, TlsRawClient, client_context


@pytest.fixture
def pki(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    return Pki(d)


def start_tls_gateway(procs, peer, pki, *extra):
    cert, key = pki.issue("server", "gw-server-1", server=True)
    return start_mqtts_gateway(procs, peer.port, cert, key, pki.ca_cert, *extra)


def paho_client(cid, tport, pki, cert=None, key=None):
    """A connected paho client over TLS (loop running); returns (client, received)."""
    got = {"connected": threading.Event(), "subscribed": threading.Event(), "msgs": []}
    c = mqtt.Client(client_id=cid, clean_session=True)
    c.tls_set(ca_certs=pki.ca_cert, certfile=cert, keyfile=key)
    c.on_connect = lambda cl, u, f, rc: (got.__setitem__("rc", rc), got["connected"].set())
    c.on_subscribe = lambda cl, u, mid, q: (got.__setitem__("granted", q), got["subscribed"].set())
    c.on_message = lambda cl, u, m: got["msgs"].append((m.topic, m.payload))
    c.connect("127.0.0.1", tport, keepalive=30)
    c.loop_start()
    assert got["connected"].wait(10) and got["rc"] == 0
    return c, got


def test_tls_connect_publish_subscribe(procs, pki):
    peer = AmqpPeer().start()
    try:
        hport = gwtest.free_port()
        gw, port, tport = start_tls_gateway(procs, peer, pki, "--http-listen",
                                            f"127.0.0.1:{hport}")
        c, got = paho_client("tls1", tport, pki)
        try:
            c.subscribe("s/#", 1)
            assert got["subscribed"].wait(5) and got["granted"] == (1,)
            info = c.publish("t/tls", b"over tls", qos=1)
            info.wait_for_publish(5)
            assert info.is_published()
            m = peer.wait_msg(to="t/tls")
            assert m["body"] == b"over tls"
            gwtest.wait_until(lambda: peer.credit_of("$mqtt.to.tls1.publish"), what="credit")
            peer.send_to_client("tls1", topic="s/1", body=b"down", qos=1, message_id=5)
            gwtest.wait_until(lambda: got["msgs"], what="message over TLS")
            assert got["msgs"] == [("s/1", b"down")]
            # the plain listener still works next to it
            p = R.RawClient(port)
            assert p.connect("plain1") == (0, 0)
            import test_gateway_metrics as M
            gwtest.wait_until(
                lambda: M.scrape(hport)['mqtt_gateway_connections{listener="tls"}'] == 1,
                what="tls gauge")
        finally:
            c.loop_stop()
            c.disconnect()
    finally:
        procs.stop_all()
        peer.stop()


def test_required_client_cert(procs, pki):
    peer = AmqpPeer().start()
    try:
        gw, port, tport = start_tls_gateway(procs, peer, pki, "--tls-client-cert", "required")
        # without a certificate: the handshake fails (TLS 1.3: on the first read)
        refused = False
        try:
            t = TlsRawClient(tport, client_context(pki.ca_cert))
            t.send(R.connect("nocert"))
            t.recv_packet(5)
        except (R.Closed, ssl.SSLError, ConnectionResetError):
            refused = True
        assert refused
        assert not peer.links_named("$mqtt.to.nocert.control")
        # with one signed by the CA: accepted
        cert, key = pki.issue("dev1", "device-1")
        t = TlsRawClient(tport, client_context(pki.ca_cert, cert, key))
        assert t.connect("withcert") == (0, 0)
        # a certificate from another CA is refused too
        other = Pki(pki.dir, ca_name="other-ca")
        ocert, okey = other.issue("dev2", "device-2")
        refused = False
        try:
            t2 = TlsRawClient(tport, client_context(pki.ca_cert, ocert, okey))
            t2.send(R.connect("othercert"))
            t2.recv_packet(5)
        except (R.Closed, ssl.SSLError, ConnectionResetError):
            refused = True
        assert refused
        # the gateway still serves
        t.send(R.publish("a/b", b"1", qos=1, pid=1))
        t.expect(R.PUBACK)
    finally:
        procs.stop_all()
        peer.stop()


def tls_refused(tport, ctx):
    """True if the gateway refuses the handshake (TLS 1.3: seen on the first read)."""
    try:
        t = TlsRawClient(tport, ctx)
        t.send(R.connect("probe"))
        t.recv_packet(5)
    except (R.Closed, ssl.SSLError, ConnectionResetError):
        return True
    return False


def test_revoked_client_cert_refused(procs, pki):
    """--tls-crl: a revoked device certificate fails the handshake, the
    others pass; a new CRL is taken on SIGHUP; an expired CRL refuses every
    certificate of its CA (fail closed)."""
    peer = AmqpPeer().start()
    try:
        good, gkey = pki.issue("good", "device-good")
        bad, bkey = pki.issue("bad", "device-bad")
        later, lkey = pki.issue("later", "device-later")
        crl = pki.crl(revoked=[bad])
        gw, port, tport = start_tls_gateway(procs, peer, pki, "--tls-client-cert", "required",
                                            "--tls-crl", crl)
        assert "1 revoked, next update" in gw.log()
        t = TlsRawClient(tport, client_context(pki.ca_cert, good, gkey))
        assert t.connect("good") == (0, 0)
        assert tls_refused(tport, client_context(pki.ca_cert, bad, bkey))
        assert not tls_refused(tport, client_context(pki.ca_cert, later, lkey))
        # revoke one more, reload: refused from then on; open connections stay
        shutil.copy(pki.crl(revoked=[bad, later], out="crl2.pem"), crl)
        gw.signal(signal.SIGHUP)
        gwtest.wait_until(lambda: "SIGHUP: reloaded TLS certificates (generation 2)" in gw.log(),
                          what="TLS reload")
        assert tls_refused(tport, client_context(pki.ca_cert, later, lkey))
        assert not tls_refused(tport, client_context(pki.ca_cert, good, gkey))
        t.send(R.publish("a/b", b"1", qos=1, pid=1))
        t.expect(R.PUBACK)
        # an expired CRL: nobody of that CA gets in, and the log says why
        shutil.copy(pki.crl(out="crl3.pem", next_update="210101000000Z"), crl)
        gw.signal(signal.SIGHUP)
        gwtest.wait_until(lambda: "generation 3" in gw.log(), what="TLS reload 3")
        assert "expired at" in gw.log()
        assert tls_refused(tport, client_context(pki.ca_cert, good, gkey))
    finally:
        procs.stop_all()
        peer.stop()


def test_sighup_reloads_certificate_without_dropping(procs, pki):
    peer = AmqpPeer().start()
    try:
        gw, port, tport = start_tls_gateway(procs, peer, pki)
        old = TlsRawClient(tport, client_context(pki.ca_cert))
        assert old.peer_cn() == "gw-server-1"
        assert old.connect("keep") == (0, 0)
        # replace the pair in place (as an operator would), then SIGHUP
        cert2, key2 = pki.issue("server2", "gw-server-2", server=True)
        shutil.copy(cert2, pki.dir / "server.pem")
        shutil.copy(key2, pki.dir / "server.key")
        gw.signal(signal.SIGHUP)
        gwtest.wait_until(lambda: "SIGHUP: reloaded TLS certificates (generation 2)" in gw.log(),
                          what="TLS reload")
        new = TlsRawClient(tport, client_context(pki.ca_cert))
        assert new.peer_cn() == "gw-server-2"
        assert new.connect("fresh") == (0, 0)
        # the connection opened before the reload still works
        old.send(R.publish("k/1", b"still here", qos=1, pid=3))
        assert R.pid_of(old.expect(R.PUBACK)[1]) == 3
        # a broken pair is refused and the current one keeps serving
        (pki.dir / "server.key").write_text("garbage")
        gw.signal(signal.SIGHUP)
        gwtest.wait_until(lambda: "TLS reload failed" in gw.log(), what="failed reload logged")
        again = TlsRawClient(tport, client_context(pki.ca_cert))
        assert again.peer_cn() == "gw-server-2"
        assert again.connect("again") == (0, 0)
    finally:
        procs.stop_all()
        peer.stop()


def test_tls_options_are_checked(tmp_path):
    def run(*args):
        return subprocess.run([gwtest.binary("gateway", "mqtt-gateway"), "--workers", "1",
                               "--mqtt-listen", "127.0.0.1:0", *args],
                              capture_output=True, text=True, timeout=20)
    r = run("--mqtts-listen", "127.0.0.1:0")
    assert r.returncode == 2 and "--tls-cert" in r.stderr
    r = run("--mqtts-listen", "127.0.0.1:0", "--tls-cert", str(tmp_path / "no.pem"),
            "--tls-key", str(tmp_path / "no.key"))
    assert r.returncode == 2 and "no.pem" in r.stderr
    r = run("--tls-client-cert", "sometimes")
    assert r.returncode == 2
    r = run("--mqtts-listen", "127.0.0.1:0", "--tls-cert", str(tmp_path / "no.pem"),
            "--tls-key", str(tmp_path / "no.key"), "--tls-crl", str(tmp_path / "crl.pem"))
    assert r.returncode == 2 and "--tls-crl needs --tls-client-cert" in r.stderr
