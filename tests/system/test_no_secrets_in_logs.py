"""Issue 7: no secrets in logs. The gateway authenticates to a real
subscription-service with SASL PLAIN, the password given in its AMQP URL;
with debug logging on, neither process may write the password anywhere."""
import gwtest

GATEWAY = ("gateway", "mqtt-gateway")
SUBS = ("services", "subscription", "subscription-service")
SECRET = "s3cr3t-Pa55"


def test_amqp_url_password_never_logged(procs, tmp_path):
    subs_port = gwtest.free_port()
    subs = procs.start([gwtest.binary(*SUBS), "--listen", f"127.0.0.1:{subs_port}",
                        "--store", str(tmp_path / "subs.db"), "--sasl-mechs", "PLAIN",
                        "--username", "gw", "--password", SECRET, "--log-level", "trace"],
                       "subs", ready_port=subs_port)
    port = gwtest.free_port()
    gw = procs.start([gwtest.binary(*GATEWAY), "--mqtt-listen", f"127.0.0.1:{port}",
                      "--amqp-url", f"amqp://gw:{SECRET}@127.0.0.1:{subs_port}",
                      "--workers", "1", "--log-level", "trace"], "gw", ready_port=port,
                     ready_log=f"AMQP connection to amqp://gw:***@127.0.0.1:{subs_port} up")
    # The service saw an authenticated peer, so the password really was used.
    gwtest.wait_until(lambda: "connection up" in subs.log(), what="subs saw the gateway")
    # A wrong password is refused (the check above is not vacuous) ...
    bad_port = gwtest.free_port()
    bad = procs.start([gwtest.binary(*GATEWAY), "--mqtt-listen", f"127.0.0.1:{bad_port}",
                       "--amqp-url", f"amqp://gw:wrong-{SECRET}@127.0.0.1:{subs_port}",
                       "--workers", "1", "--log-level", "trace"], "gw-bad", ready_port=bad_port)
    gwtest.wait_until(lambda: "unauthorized" in bad.log() or "auth" in bad.log().lower(),
                      what="SASL failure logged")
    assert f"AMQP connection to amqp://gw:***@127.0.0.1:{subs_port} up" not in bad.log()
    # ... and no log line of any process carries the secret.
    for p in (subs, gw, bad):
        assert SECRET not in p.log(), f"{p.name} logged the password"
