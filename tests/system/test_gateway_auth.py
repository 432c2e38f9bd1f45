"""mqtt-gateway system tests: authentication and authorisation (issue 7):
password files made by the real mqtt-passwd tool, ACL files, anonymous
policy, certificate identity, SIGHUP reload."""
import signal
import subprocess

import pytest

import gwtest
import gw_mqtt_raw as R
from gw_amqp_peer import AmqpPeer
from gw_gateway_env import start_gateway, start_mqtts_gateway
from gw_tls_certs import Pki, TlsRawClient, client_context

ACL = """\
user alice
topic readwrite alice/#
topic deny alice/secret/#

tenant acme
topic readwrite %t/common/#

anonymous
topic read public/#

pattern
topic write devices/%u/%c/up
"""


def passwd(path, user, password, create=False):
    args = [gwtest.binary("tools", "mqtt-passwd"), "-b", "-i", "1000"]
    if create:
        args.append("-c")
    subprocess.run(args + [str(path), user, password], check=True, capture_output=True,
                   timeout=30)


@pytest.fixture
def files(tmp_path):
    pw = tmp_path / "passwd"
    passwd(pw, "alice", "wonderland", create=True)
    passwd(pw, "bob@acme", "builder")
    acl = tmp_path / "acl"
    acl.write_text(ACL)
    return pw, acl


@pytest.fixture
def peer():
    p = AmqpPeer().start()
    yield p
    p.stop()


def test_passwords_and_anonymous(procs, peer, files):
    pw, acl = files
    gw, port = start_gateway(procs, peer.port, "--password-file", str(pw))
    c = R.RawClient(port)
    assert c.connect("a1", username="alice", password=b"wonderland") == (0, 0)
    assert R.RawClient(port).connect("a2", username="alice", password=b"nope")[1] == 4
    assert R.RawClient(port).connect("a3", username="mallory", password=b"x")[1] == 4
    assert R.RawClient(port).connect("a4", username="alice")[1] == 4  # no password
    # anonymous refused by default when a password file is set: CONNACK 5
    assert R.RawClient(port).connect("a5")[1] == 5
    # refused clients never reached the AMQP side
    assert not peer.links_named("$mqtt.to.a2.control")
    assert not peer.links_named("$mqtt.to.a5.control")
    # the first client works
    c.send(R.publish("x/y", b"1", qos=1, pid=1))
    c.expect(R.PUBACK)
    assert "user alice authenticated" in gw.log()


def test_allow_anonymous_explicit(procs, peer, files):
    pw, acl = files
    gw, port = start_gateway(procs, peer.port, "--password-file", str(pw),
                             "--allow-anonymous", "true")
    assert R.RawClient(port).connect("anon") == (0, 0)
    assert R.RawClient(port).connect("b", username="bob@acme", password=b"builder") == (0, 0)


def test_no_password_file_anonymous_by_default_and_refusable(procs, peer):
    gw, port = start_gateway(procs, peer.port)
    assert R.RawClient(port).connect("anon1") == (0, 0)
    # without a password file user names are taken as given (no local check)
    assert R.RawClient(port).connect("u1", username="who", password=b"ever") == (0, 0)
    procs.stop_all()
    gw, port = start_gateway(procs, peer.port, "--allow-anonymous", "false",
                             name="mqtt-gateway-2")
    assert R.RawClient(port).connect("anon2")[1] == 5


def test_acl_subscribe_publish_will(procs, peer, files):
    pw, acl = files
    hport = gwtest.free_port()
    gw, port = start_gateway(procs, peer.port, "--password-file", str(pw), "--acl-file",
                             str(acl), "--allow-anonymous", "true", "--http-listen",
                             f"127.0.0.1:{hport}")
    a = R.RawClient(port)
    assert a.connect("ca", username="alice", password=b"wonderland") == (0, 0)
    # SUBSCRIBE: denied filters get 0x80 and are not sent to the SS
    a.send(R.subscribe(5, [("alice/x/+", 1), ("alice/#", 1), ("other/#", 0), ("alice/y", 2)]))
    _, body = a.expect(R.SUBACK)
    assert body[2:] == bytes([1, 0x80, 0x80, 2])
    sub = peer.wait_msg(subject="subscribe")
    assert sub["body"] == {"alice/x/+": 1, "alice/y": 2}
    # every filter denied: SUBACK at once, nothing sent
    a.send(R.subscribe(6, [("bob/#", 1)]))
    _, body = a.expect(R.SUBACK)
    assert body == b"\x00\x06\x80"
    assert len(peer.msgs(subject="subscribe")) == 1
    # PUBLISH: denied topics acknowledged and dropped
    a.send(R.publish("alice/ok", b"1", qos=1, pid=1))
    assert R.pid_of(a.expect(R.PUBACK)[1]) == 1
    a.send(R.publish("alice/secret/x", b"2", qos=1, pid=2))
    assert R.pid_of(a.expect(R.PUBACK)[1]) == 2
    a.send(R.publish("bob/x", b"3", qos=0))
    a.send(R.publish("alice/secret/y", b"4", qos=2, pid=3))
    assert R.pid_of(a.expect(R.PUBREC)[1]) == 3
    a.send(R.ack(R.PUBREL, 3))
    assert R.pid_of(a.expect(R.PUBCOMP)[1]) == 3
    # pattern rule with %u and %c
    a.send(R.publish("devices/alice/ca/up", b"5", qos=1, pid=4))
    a.expect(R.PUBACK)
    tos = [m["to"] for m in peer.msgs() if m["subject"] is None]
    assert tos == ["alice/ok", "devices/alice/ca/up"]
    assert "denied by the ACL" in gw.log()
    # tenant rules (%t) for bob@acme
    b = R.RawClient(port)
    assert b.connect("cb", username="bob@acme", password=b"builder") == (0, 0)
    b.send(R.publish("acme/common/t", b"6", qos=1, pid=1))
    b.expect(R.PUBACK)
    peer.wait_msg(to="acme/common/t")
    # will topic denied: CONNACK 5
    assert R.RawClient(port).connect("cw", username="alice", password=b"wonderland",
                                     will=("bob/will", b"x", 0, False))[1] == 5
    assert not peer.links_named("cw")
    # anonymous: read public/# only
    n = R.RawClient(port)
    assert n.connect("cn") == (0, 0)
    n.send(R.subscribe(1, [("public/#", 0), ("alice/#", 0)]))
    assert n.expect(R.SUBACK)[1][2:] == bytes([0, 0x80])
    import test_gateway_metrics as M
    m = M.scrape(hport)
    assert m['mqtt_gateway_acl_denied_total{kind="publish"}'] == 3
    assert m['mqtt_gateway_acl_denied_total{kind="subscribe"}'] == 4
    assert m['mqtt_gateway_acl_denied_total{kind="will"}'] == 1


def test_sighup_reloads_password_and_acl(procs, peer, files):
    pw, acl = files
    gw, port = start_gateway(procs, peer.port, "--password-file", str(pw), "--acl-file",
                             str(acl))
    assert R.RawClient(port).connect("c1", username="carol", password=b"pw")[1] == 4
    a = R.RawClient(port)
    assert a.connect("c2", username="alice", password=b"wonderland") == (0, 0)
    a.send(R.subscribe(1, [("shared/#", 0)]))
    assert a.expect(R.SUBACK)[1][2:] == b"\x80"
    passwd(pw, "carol", "pw")
    acl.write_text(ACL + "\nuser carol\ntopic read shared/#\n"
                   "\npattern\ntopic read shared/#\n")
    gw.signal(signal.SIGHUP)
    gwtest.wait_until(lambda: "SIGHUP: reloaded ACL file" in gw.log() and
                      "SIGHUP: reloaded password file" in gw.log(), what="reload")
    assert R.RawClient(port).connect("c3", username="carol", password=b"pw") == (0, 0)
    # an existing connection sees the new ACL
    a.send(R.subscribe(2, [("shared/#", 0)]))
    assert a.expect(R.SUBACK)[1][2:] == b"\x00"
    # a broken ACL file is refused, the current one stays
    acl.write_text("topic read x\n")
    gw.signal(signal.SIGHUP)
    gwtest.wait_until(lambda: "ACL file not reloaded" in gw.log(), what="failed reload")
    a.send(R.subscribe(3, [("shared/#", 0)]))
    assert a.expect(R.SUBACK)[1][2:] == b"\x00"


def test_bad_auth_files_exit_2(tmp_path):
    bad = tmp_path / "acl"
    bad.write_text("topic read x\n")
    for args in (["--password-file", str(tmp_path / "missing")], ["--acl-file", str(bad)],
                 ["--allow-anonymous", "maybe"]):
        r = subprocess.run([gwtest.binary("gateway", "mqtt-gateway"), "--workers", "1",
                            "--mqtt-listen", "127.0.0.1:0", *args],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode == 2, (args, r.stderr)


def test_certificate_identity(procs, peer, tmp_path, files):
    pw, acl = files
    d = tmp_path / "pki"
    d.mkdir()
    pki = Pki(d)
    cert, key = pki.issue("server", "gw", server=True)
    gw, port, tport = start_mqtts_gateway(procs, peer.port, cert, key, pki.ca_cert,
                                          "--tls-client-cert", "optional",
                                          "--password-file", str(pw), "--acl-file", str(acl))
    dcert, dkey = pki.issue("alice", "alice")
    ctx = client_context(pki.ca_cert, dcert, dkey)
    # no user name: the certificate's CN is the user (no password needed), ACL applies
    t = TlsRawClient(tport, ctx)
    assert t.connect("tc1") == (0, 0)
    t.send(R.subscribe(1, [("alice/#", 0), ("bob/#", 0)]))
    assert t.expect(R.SUBACK)[1][2:] == bytes([0x80, 0x80])  # alice/# meets the deny rule
    t.send(R.subscribe(2, [("alice/x", 0)]))
    assert t.expect(R.SUBACK)[1][2:] == b"\x00"
    # same user name as the certificate: fine; another one: CONNACK 5
    assert TlsRawClient(tport, ctx).connect("tc2", username="alice") == (0, 0)
    assert TlsRawClient(tport, ctx).connect("tc3", username="bob@acme",
                                            password=b"builder")[1] == 5
    # without a certificate (optional): password file as usual, anonymous refused
    nctx = client_context(pki.ca_cert)
    assert TlsRawClient(tport, nctx).connect("tc4")[1] == 5
    assert TlsRawClient(tport, nctx).connect("tc5", username="bob@acme",
                                             password=b"builder") == (0, 0)


def test_failed_logins_block_the_address(procs, peer, files):
    """--auth-fail-limit 3 in a 2 s window: the 3rd bad password blocks the
    address; then even right credentials get CONNACK 5 without a password
    verification, except credentials verified recently (the cache); the
    block ends with the window and is logged once."""
    import time
    from test_gateway_metrics import scrape
    pw, _ = files
    hport = gwtest.free_port()
    gw, port = start_gateway(procs, peer.port, "--password-file", str(pw),
                             "--auth-fail-limit", "3", "--auth-fail-window", "2s",
                             "--http-listen", f"127.0.0.1:{hport}")
    c = R.RawClient(port)
    assert c.connect("ok1", username="alice", password=b"wonderland") == (0, 0)
    c.close()
    t0 = time.monotonic()
    for i in range(3):
        c = R.RawClient(port)
        assert c.connect("bad%d" % i, username="alice", password=b"guess%d" % i) == (0, 4)
        assert c.is_closed()
    for cid, user, password in (("b1", "bob@acme", b"builder"), ("b2", "nobody", b"x"),
                                ("b3", "alice", b"guess9")):
        c = R.RawClient(port)
        assert c.connect(cid, username=user, password=password) == (0, 5), cid
        assert c.is_closed()
    # alice's credentials were verified a moment ago: they still get in
    c = R.RawClient(port)
    assert c.connect("ok2", username="alice", password=b"wonderland") == (0, 0)
    c.close()
    gwtest.wait_until(lambda: gwtest.port_open(hport), what="HTTP port")
    m = scrape(hport)
    assert m["mqtt_gateway_auth_failed_total"] == 3  # the blocked ones were not verified
    assert m["mqtt_gateway_auth_blocked_total"] == 3
    assert gw.log().count("failed logins: CONNECTs from this address refused") == 1
    # the window (2 s from the first failure) ends: bob gets in
    gwtest.wait_until(lambda: time.monotonic() - t0 > 2.2, what="window end", timeout=5)
    c = R.RawClient(port)
    assert c.connect("b4", username="bob@acme", password=b"builder") == (0, 0)
    c.close()


def test_auth_fail_limit_off(procs, peer, files):
    pw, _ = files
    gw, port = start_gateway(procs, peer.port, "--password-file", str(pw),
                             "--auth-fail-limit", "0")
    for i in range(12):
        c = R.RawClient(port)
        assert c.connect("x%d" % i, username="alice", password=b"no") == (0, 4)
    c = R.RawClient(port)
    assert c.connect("y", username="alice", password=b"wonderland") == (0, 0)
    c.close()


def test_certificate_issuer_names_the_tenant(procs, peer, tmp_path, files):
    """--tls-issuer-tenant-map on a plain MQTT TLS listener: a verified
    certificate of a mapped CA is user <CN>@<tenant>, so ACL tenant sections
    and %t apply; a trusted CA not in the map gets CONNACK 5; SIGHUP reloads
    the map."""
    import signal
    _, acl = files
    d = tmp_path / "pki"
    d.mkdir()
    srv, acme, rogue = Pki(d, "srv-ca"), Pki(d, "acme-ca"), Pki(d, "rogue-ca")
    bundle = d / "clients-ca.pem"
    bundle.write_text(open(acme.ca_cert).read() + open(rogue.ca_cert).read())
    tmap = tmp_path / "issuers"
    tmap.write_text("CN=acme-ca acme\n")
    cert, key = srv.issue("server", "gw", server=True)
    gw, port, tport = start_mqtts_gateway(procs, peer.port, cert, key, str(bundle),
                                          "--tls-client-cert", "required",
                                          "--acl-file", str(acl),
                                          "--tls-issuer-tenant-map", str(tmap))
    dcert, dkey = acme.issue("dev1", "dev1")
    ctx = client_context(srv.ca_cert, dcert, dkey)
    t = TlsRawClient(tport, ctx)
    assert t.connect("ti1") == (0, 0)
    # tenant acme: `topic readwrite %t/common/#` (the ACL's tenant section)
    t.send(R.subscribe(1, [("acme/common/#", 0), ("zeta/common/#", 0)]))
    assert t.expect(R.SUBACK)[1][2:] == bytes([0x00, 0x80])
    # a user name must be the identity or identity@tenant
    assert TlsRawClient(tport, ctx).connect("ti2", username="dev1@acme") == (0, 0)
    assert TlsRawClient(tport, ctx).connect("ti3", username="dev1") == (0, 0)
    assert TlsRawClient(tport, ctx).connect("ti4", username="dev1@zeta")[1] == 5
    # trusted by --tls-ca but not in the map: refused
    rcert, rkey = rogue.issue("dev2", "dev2")
    rctx = client_context(srv.ca_cert, rcert, rkey)
    assert TlsRawClient(tport, rctx).connect("ti5")[1] == 5
    assert "issuer not in --tls-issuer-tenant-map" in gw.log()
    # map the second CA to acme too (a tenant with two CAs) and reload
    tmap.write_text("CN=acme-ca acme\nCN=rogue-ca acme\n")
    gw.signal(signal.SIGHUP)
    gwtest.wait_until(lambda: "SIGHUP: reloaded issuer tenant map" in gw.log(), what="reload")
    r = TlsRawClient(tport, rctx)
    assert r.connect("ti6") == (0, 0)
    r.send(R.subscribe(1, [("acme/common/x", 0), ("zeta/common/x", 0)]))
    assert r.expect(R.SUBACK)[1][2:] == bytes([0x00, 0x80])
