"""Helpers for the will-service system tests (tests/system/test_will_*.py).

- will_message()/will_clear_message(): AMQP_WILL / AMQP_WILL_CLEAR as the
  gateway sends them (spec/mqtt-over-amqp.md).
- WillLink: a will sender on a proton BlockingConnection that reports the
  outcome (state, condition, description) of each message and the error
  condition of a detach.
- WillEnv: starts will-service (and the publish sink) with procs on free
  ports, reads what the sink received and what the store holds.
"""
import json
import os
import sqlite3

from proton import Condition, Delivery, Endpoint, Message, int32, symbol
from proton.utils import BlockingConnection, LinkDetached

import gwtest

HERE = os.path.dirname(os.path.abspath(__file__))
PY = "/usr/bin/python3"
LWT = "$mqtt.lwtservice"

STATE_NAMES = {
    Delivery.ACCEPTED: "accepted",
    Delivery.REJECTED: "rejected",
    Delivery.RELEASED: "released",
    Delivery.MODIFIED: "modified",
}


def will_message(topic, payload, qos, retain):
    m = Message(subject="will", address=topic, durable=qos > 0, body=payload, inferred=True)
    m.annotations = {symbol("x-opt-retain-message"): bool(retain),
                     symbol("x-opt-mqtt-qos"): int32(qos)}
    return m


def will_clear_message():
    return Message(subject="will-clear")


class WillLink:
    """A sender to $mqtt.lwtservice named `name` (the MQTT client id)."""

    def __init__(self, conn, name, address=LWT):
        self.conn = conn
        self.sender = conn.create_sender(address, name=name)
        self.link = self.sender.link

    def send(self, msg, timeout=10):
        """Send unsettled; wait for the peer's settlement. Returns
        (state name, condition name or None, description or None)."""
        dlv = self.link.send(msg)
        self.conn.wait(lambda: dlv.remote_state in STATE_NAMES or dlv.settled,
                       timeout=timeout, msg="outcome of a will message")
        cond = dlv.remote.condition
        state = STATE_NAMES.get(dlv.remote_state, str(dlv.remote_state))
        dlv.settle()
        return state, (cond.name if cond else None), (cond.description if cond else None)

    def close(self, cond=None, desc=None, timeout=10):
        """Detach (close) the link, with an error condition if cond is given."""
        if cond:
            self.link.condition = Condition(cond, desc)
        self.link.close()
        try:
            self.conn.wait(lambda: self.link.state & Endpoint.REMOTE_CLOSED, timeout=timeout,
                           msg="will link close")
        except LinkDetached:
            pass

    def wait_detached(self, timeout=10):
        """Wait until the service detaches this link; its condition name."""
        try:
            self.conn.wait(lambda: self.link.state & Endpoint.REMOTE_CLOSED, timeout=timeout,
                           msg="detach by the will service")
        except LinkDetached:
            pass
        cond = self.link.remote_condition
        return cond.name if cond else None

    def attached(self):
        return bool(self.link.state & Endpoint.REMOTE_ACTIVE)


class WillEnv:
    """One will-service under test, its store, and the publish sink."""

    def __init__(self, procs, tmp_path):
        self.procs = procs
        self.tmp = tmp_path
        self.store = str(tmp_path / "wills.db")
        self.sink_port = gwtest.free_port()
        self.sink_out = str(tmp_path / "sink.jsonl")
        self.port = None
        self.service = None
        self.sink = None
        self.conns = []
        self.starts = 0

    # --- processes ------------------------------------------------------

    def start_sink(self, mode="accept", count=0, anonymous_relay=False):
        args = [PY, os.path.join(HERE, "will_sink.py"), "--port", str(self.sink_port),
                "--out", self.sink_out, "--mode", mode, "--count", str(count)]
        if anonymous_relay:
            args.append("--anonymous-relay")
        self.sink = self.procs.start(args, "sink", ready_port=self.sink_port)
        return self.sink

    def start_service(self, *extra, grace="0", delay="0", port=None):
        self.starts += 1
        self.port = port or gwtest.free_port()
        args = [gwtest.binary("services", "will", "will-service"),
                "--listen", "127.0.0.1:%d" % self.port,
                "--publish-url", "amqp://127.0.0.1:%d" % self.sink_port,
                "--store", self.store,
                "--grace-seconds", grace, "--will-delay", delay,
                "--retry-min", "50ms", "--retry-max", "300ms",
                "--log-level", "debug"] + list(extra)
        self.service = self.procs.start(args, "will-service-%d" % self.starts,
                                        ready_port=self.port)
        return self.service

    def connect(self):
        conn = BlockingConnection("amqp://127.0.0.1:%d" % self.port, timeout=10)
        self.conns.append(conn)
        return conn

    def client_process(self, name, topic, payload, qos=1, retain=False):
        """A gateway stand-in in its own process (to be killed)."""
        args = [PY, os.path.join(HERE, "will_client.py"), "--port", str(self.port),
                "--name", name, "--topic", topic, "--payload", payload, "--qos", str(qos)]
        if retain:
            args.append("--retain")
        return self.procs.start(args, "client-%s" % name, ready_log="WILL accepted")

    def close_all(self):
        for c in self.conns:
            try:
                c.close()
            except Exception:
                pass
        self.conns = []

    # --- observations ---------------------------------------------------

    def received(self):
        try:
            with open(self.sink_out) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def wait_received(self, n, timeout=10):
        return gwtest.wait_until(lambda: len(self.received()) >= n and self.received(),
                                 timeout=timeout, what="%d message(s) at the sink" % n)

    def rows(self, table="wills"):
        db = sqlite3.connect(self.store, timeout=5)
        try:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute("SELECT * FROM %s" % table)]
        finally:
            db.close()

    def will_row(self, name):
        for r in self.rows():
            if r["name"] == name:
                return r
        return None

    def wait_store_empty(self, timeout=10):
        gwtest.wait_until(lambda: not self.rows("wills") and not self.rows("publishing"),
                          timeout=timeout, what="empty will store")

    def wait_log(self, text, timeout=10):
        gwtest.wait_until(lambda: text in self.service.log(), timeout=timeout,
                          what="'%s' in the will-service log" % text)


def payload_of(rec):
    """The body bytes of a message recorded by the sink."""
    body = rec["body"]
    if isinstance(body, dict) and "hex" in body:
        return bytes.fromhex(body["hex"])
    if isinstance(body, str):
        return body.encode()
    raise AssertionError("unexpected body %r" % (body,))

