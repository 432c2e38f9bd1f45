"""Helpers for the will-service system tests (tests/system/test_will_*.py).

- will_message()/will_clear_message(): AMQP_WILL / AMQP_WILL_CLEAR as the
  gateway sends them (spec/mqtt-over-amqp.md).
- WillLink: a will sender on a proton BlockingConnection that reports the
  outcome (state, condition, description) of each message and the error
  condition of a detach.
- WillEnv: starts will-service (and the publish sink) with procs on free
  ports, reads what the sink received and what the store holds.
- Shared will link (L1s, spec 3.4a): shared_will_message(),
  shared_clear_message(), shared_publish_message() and SharedWillLink, a
  sender whose target carries the capability mqtt-shared-will.
"""
import json
import os
import sqlite3

from proton import Condition, Data, Delivery, Endpoint, Handler, Message, int32, symbol
from proton.reactor import LinkOption
from proton.utils import BlockingConnection, LinkDetached

import pytest

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


SHARED_CAP = "mqtt-shared-will"


def shared_will_message(client_id, topic, payload, qos, retain):
    """AMQP_WILL on an L1s: the will of client_id (correlation-id)."""
    m = will_message(topic, payload, qos, retain)
    m.correlation_id = client_id
    return m


def shared_clear_message(client_id):
    return Message(subject="will-clear", correlation_id=client_id)


def shared_publish_message(client_id, reason=None):
    """AMQP_WILL_PUBLISH (spec 3.4a); reason: application property, optional."""
    m = Message(subject="will-publish", correlation_id=client_id)
    if reason is not None:
        m.properties = {"reason": reason}
    return m


class SharedCapability(LinkOption):
    """Target capability mqtt-shared-will, as one symbol or as an array."""

    def __init__(self, as_array=False):
        self.as_array = as_array

    def apply(self, link):
        caps = link.target.capabilities
        if self.as_array:
            caps.put_array(False, Data.SYMBOL)
            caps.enter()
            caps.put_symbol(symbol("x-other-capability"))
            caps.put_symbol(symbol(SHARED_CAP))
            caps.exit()
        else:
            caps.put_symbol(symbol(SHARED_CAP))


class SettleOrder(Handler):
    """Link handler: the delivery tags in the order their terminal outcomes
    arrived from the peer (the order in which it settled them)."""

    def __init__(self):
        super().__init__()
        self.tags = []

    def on_delivery(self, event):
        d = event.delivery
        if d.remote_state in STATE_NAMES and d.tag not in self.seen():
            self.tags.append(d.tag)

    def seen(self):
        return set(self.tags)


class SharedWillLink(WillLink):
    """A shared will link (L1s): one sender for many clients, each message
    naming its client in correlation-id. name: any (not a key).
    record_order: keep the order of the peer's settlements (self.order.tags)."""

    def __init__(self, conn, name, address=LWT, as_array=False, record_order=False):
        self.conn = conn
        self.order = SettleOrder() if record_order else None
        self.sender = conn.create_sender(address, name=name, handler=self.order,
                                         options=SharedCapability(as_array))
        self.link = self.sender.link

    def send_nowait(self, msg):
        """Queue an unsettled transfer; returns its delivery."""
        return self.link.send(msg)

    def outcomes(self, dlvs, timeout=30):
        """Wait until every delivery is settled by the peer; their
        (state, condition, description), in the order of dlvs."""
        self.conn.wait(lambda: all(d.remote_state in STATE_NAMES or d.settled for d in dlvs),
                       timeout=timeout, msg="outcomes of %d will messages" % len(dlvs))
        out = []
        for d in dlvs:
            cond = d.remote.condition
            out.append((STATE_NAMES.get(d.remote_state, str(d.remote_state)),
                        cond.name if cond else None, cond.description if cond else None))
            d.settle()
        return out

    def send_all(self, msgs, timeout=30):
        """Send every message back to back, then wait for all outcomes;
        the list of state names."""
        dlvs = [self.send_nowait(m) for m in msgs]
        return [o[0] for o in self.outcomes(dlvs, timeout)]


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

    def shared_client_process(self, name, ids, topic, payload, qos=1, retain=False):
        """A gateway stand-in with one shared will link (L1s) named name, in
        its own process (to be killed): the will of each client id in ids is
        topic/<id>, payload "<payload>-<id>"."""
        args = [PY, os.path.join(HERE, "will_client.py"), "--port", str(self.port),
                "--name", name, "--topic", topic, "--payload", payload, "--qos", str(qos),
                "--shared-ids", ",".join(ids)]
        if retain:
            args.append("--retain")
        return self.procs.start(args, "shared-client-%s" % name,
                                ready_log="SHARED WILLS accepted")

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


# Shared by the will-service test modules.
FORCED = "amqp:link:detach-forced"
HELD = 'state="held"'
COMMITS = "gw_will_store_commits_total"


@pytest.fixture
def env(procs, tmp_path):
    """A WillEnv (service, sink, clients) torn down after the test."""
    e = WillEnv(procs, tmp_path)
    yield e
    e.close_all()


def topics(recs):
    return [r["to"] for r in recs]


def wait_topic(env, topic, timeout=10):
    """Wait until the sink received a message to topic; return everything received."""
    return gwtest.wait_until(lambda: topic in topics(env.received()) and env.received(),
                             timeout=timeout, what="a will on %s at the sink" % topic)
