"""IoT mode (issue 9 "Identity"): device certificates whose ISSUER names the
tenant (--iot-issuer-tenant-map). Real gateway on --iots-listen, three tenant
CAs made at test time (two mapped, one trusted but unmapped), SIGHUP reload."""
import signal

import gwtest
import gw_mqtt_raw as R
from gw_tls_certs import Pki, TlsRawClient, client_context
from iot_env import IotEnv


def _pkis(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    srv = Pki(d, "srv-ca")
    acme, zeta, rogue = Pki(d, "acme-ca"), Pki(d, "zeta-ca"), Pki(d, "rogue-ca")
    bundle = d / "clients-ca.pem"
    bundle.write_text("".join(open(p.ca_cert).read() for p in (acme, zeta, rogue)))
    return srv, acme, zeta, rogue, str(bundle)


def test_issuer_maps_tenant_isolated_unknown_refused_and_reload(procs, tmp_path):
    srv, acme, zeta, rogue, bundle = _pkis(tmp_path)
    cert, key = srv.issue("server", "gw-server", server=True)
    tmap = tmp_path / "issuers"
    # DN as gw_auth_cert_issuer prints it (RFC 2253), then the tenant
    tmap.write_text("# issuer DN  tenant\nCN=acme-ca acme\n\n  CN=zeta-ca   zeta  \n")
    tport = gwtest.free_port()
    e = IotEnv(procs, tmp_path, "--iots-listen", f"127.0.0.1:{tport}", "--tls-cert", cert,
               "--tls-key", key, "--tls-ca", bundle, "--tls-client-cert", "optional",
               "--iot-issuer-tenant-map", str(tmap))

    def dev(pki, cn, cid, **kw):
        c, k = pki.issue(f"{cid}-cert", cn)
        t = TlsRawClient(tport, client_context(srv.ca_cert, c, k))
        return t, t.connect(cid, **kw)

    try:
        gwtest.wait_until(lambda: gwtest.port_open(tport), what="IoT TLS listener")
        # same device id under two tenant CAs: two different devices
        a, rc = dev(acme, "sensor-1", "a1")
        assert rc == (0, 0)
        z, rc = dev(zeta, "sensor-1", "z1")
        assert rc == (0, 0)
        a.send(R.publish("telemetry", b"from-acme", qos=1, pid=1))
        a.expect(R.PUBACK)
        z.send(R.publish("event", b"from-zeta", qos=1, pid=2))
        z.expect(R.PUBACK)
        (ma,) = e.wait_to("telemetry/acme")
        (mz,) = e.wait_to("event/zeta")
        assert (ma["properties"]["device_id"], ma["properties"]["tenant_id"], ma["body"]) == \
            ("sensor-1", "acme", b"from-acme")
        assert (mz["properties"]["device_id"], mz["properties"]["tenant_id"], mz["body"]) == \
            ("sensor-1", "zeta", b"from-zeta")
        # isolation: a zeta device cannot publish into acme
        z.send(R.publish("telemetry/acme", b"x", qos=1, pid=3))
        assert z.is_closed()
        assert not [m for m in e.peer.msgs() if m["to"] == "telemetry/acme" and
                    m["body"] == b"x"]
        # a user name must agree with the certificate (device id or id@tenant)
        _, rc = dev(acme, "sensor-2", "a2", username="sensor-2@acme", password=b"")
        assert rc == (0, 0)
        _, rc = dev(acme, "sensor-3", "a3", username="sensor-3@zeta", password=b"")
        assert rc == (0, 5)
        # trusted CA whose issuer is not in the map: CONNACK 5
        r, rc = dev(rogue, "sensor-1", "r1")
        assert rc == (0, 5)
        assert "issuer not in --iot-issuer-tenant-map" in e.gw.log()
        # SIGHUP: map the third CA; a broken file keeps the current map
        tmap.write_text(tmap.read_text() + "CN=rogue-ca rogue\n")
        e.gw.signal(signal.SIGHUP)
        gwtest.wait_until(lambda: "SIGHUP: reloaded issuer tenant map" in e.gw.log(),
                          what="issuer map reload")
        r, rc = dev(rogue, "sensor-9", "r2")
        assert rc == (0, 0)
        r.send(R.publish("telemetry", b"now-mapped", qos=1, pid=4))
        r.expect(R.PUBACK)
        (mr,) = e.wait_to("telemetry/rogue")
        assert mr["properties"]["device_id"] == "sensor-9"
        tmap.write_text("CN=acme-ca acme\nCN=acme-ca zeta\n")  # duplicate issuer
        e.gw.signal(signal.SIGHUP)
        gwtest.wait_until(lambda: "issuer tenant map not reloaded" in e.gw.log(),
                          what="failed reload logged")
        _, rc = dev(rogue, "sensor-8", "r3")
        assert rc == (0, 0)
    finally:
        e.close()


def test_bad_issuer_map_refused_at_start(procs, tmp_path):
    srv, acme, _, _, bundle = _pkis(tmp_path)
    cert, key = srv.issue("server", "gw-server", server=True)
    tmap = tmp_path / "issuers"
    tmap.write_text("CN=acme-ca acme\nCN=Zeta Devices,O=Zeta\n")  # no tenant: "O=Zeta" is not one
    import subprocess
    r = subprocess.run([gwtest.binary("gateway", "mqtt-gateway"), "--iots-listen",
                        f"127.0.0.1:{gwtest.free_port()}", "--tls-cert", cert, "--tls-key", key,
                        "--tls-ca", bundle, "--tls-client-cert", "optional",
                        "--iot-issuer-tenant-map", str(tmap), "--amqp-url",
                        f"amqp://127.0.0.1:{gwtest.free_port()}"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "--iot-issuer-tenant-map" in r.stderr and "issuers" in r.stderr
