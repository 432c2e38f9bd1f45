"""Helpers for the IoT-mode system tests (issue 9): the real mqtt-gateway with
an --iot-listen listener (and a plain --mqtt-listen one) in front of the
scriptable AMQP peer (gw_amqp_peer.AmqpPeer), which plays the Hono
north-bound side: it takes telemetry/<tenant>, event/<tenant> and
command_response/... messages, and sends commands on command/<t>/<d>."""
import re
import subprocess

from proton import Message

import gwtest
import gw_mqtt_raw as R
from gw_amqp_peer import AmqpPeer
from gw_gateway_env import start_gateway
from test_gateway_metrics import scrape

USERS = (("dev1@acme", "pw1"), ("dev2@other", "pw2"), ("gw1@acme", "pw3"))


def passwd(path, user, password, create=False):
    args = [gwtest.binary("tools", "mqtt-passwd"), "-b", "-i", "1000"]
    if create:
        args.append("-c")
    subprocess.run(args + [str(path), user, password], check=True, capture_output=True,
                   timeout=30)


class IotEnv:
    def __init__(self, procs, tmp_path, *args, anonymous_relay=False, policy=None,
                 users=USERS, http=False):
        self.procs = procs
        self.peer = AmqpPeer(anonymous_relay=anonymous_relay)
        if policy:
            self.peer.policy.update(policy)
        self.peer.start()
        pw = tmp_path / "passwd"
        for i, (u, p) in enumerate(users):
            passwd(pw, u, p, create=(i == 0))
        self.iot_port = gwtest.free_port()
        self.http_port = gwtest.free_port() if http else None
        extra = ["--http-listen", f"127.0.0.1:{self.http_port}"] if http else []
        try:
            self.gw, self.port = start_gateway(
                procs, self.peer.port, "--iot-listen", f"127.0.0.1:{self.iot_port}",
                "--password-file", str(pw), "--allow-anonymous", "true", *extra, *args)
            gwtest.wait_until(lambda: gwtest.port_open(self.iot_port), what="IoT listener")
        except Exception:
            self.peer.stop()
            raise

    def device(self, client_id, user=None, password=None, expect_rc=0):
        """A raw MQTT device on the IoT listener, connected (CONNACK checked)."""
        c = R.RawClient(self.iot_port)
        kw = {}
        if user is not None:
            kw["username"] = user
            kw["password"] = password.encode()
        sp, rc = c.connect(client_id, **kw)
        assert rc == expect_rc, (client_id, rc)
        assert sp == 0
        return c

    def dev1(self, cid="d1"):
        return self.device(cid, "dev1@acme", "pw1")

    def msgs_to(self, addr):
        return self.peer.msgs(link_target=addr) or [m for m in self.peer.msgs() if m["to"] == addr]

    def wait_to(self, addr, n=1, timeout=5.0):
        return self.peer.wait_for(lambda: len([m for m in self.peer.messages
                                               if m["to"] == addr]) >= n,
                                  timeout, f"{n} message(s) to {addr}") and \
            [m for m in self.peer.msgs() if m["to"] == addr]

    def send_command(self, tenant, device, name, body=b"", reply_to=None, correlation_id=None):
        m = Message(address=f"command/{tenant}/{device}", subject=name, body=body,
                    reply_to=reply_to, correlation_id=correlation_id)
        m.inferred = isinstance(body, bytes)  # bytes -> Data section
        return self.peer.send_on(f"command/{tenant}/{device}", m)

    def metrics(self):
        return scrape(self.http_port)

    def close(self):
        try:
            self.procs.stop_all()
        finally:
            self.peer.stop()


def read_publish(c, timeout=5.0):
    """(topic, payload, qos) of the next PUBLISH."""
    flags, body = c.expect(R.PUBLISH, timeout)
    p = R.parse_publish(flags, body)
    return p


REQ_TOPIC = re.compile(r"^(command|c)/([^/]*)/([^/]*)/(req|q)/([0-9a-f]{16})?/(.+)$")
