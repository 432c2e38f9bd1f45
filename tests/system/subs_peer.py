"""AMQP client peers (python3-qpid-proton) for subscription-service tests.

`Client` is one AMQP connection to the service, run on a proton Container in
a background thread; tests inject work with client.call(fn). It plays the
gateway (control links, per-client links) or a native AMQP sender/receiver.
Everything received and every outcome is recorded under a lock; tests poll
with client.wait_for() (never a bare sleep).

`GatewaySession` drives the per-client links of one MQTT client the way
mqtt-gateway does (spec 4.2/4.3): L3/L4 receivers, L2 sender, AMQP_LIST or
AMQP_CLOSE, AMQP_SUBSCRIBE/UNSUBSCRIBE, L5 AMQP_PUBREL.
"""
import threading

from proton import Condition, Data, Delivery, Endpoint, Handler, Link, Message, symbol, ulong
from proton.reactor import ApplicationEvent, Container, EventInjector, LinkOption

import pytest

import gwtest

OUTCOMES = {"accept": Delivery.ACCEPTED, "reject": Delivery.REJECTED,
            "release": Delivery.RELEASED, "modify": Delivery.MODIFIED}
STATE_NAMES = {Delivery.ACCEPTED: "accepted", Delivery.REJECTED: "rejected",
               Delivery.RELEASED: "released", Delivery.MODIFIED: "modified"}


class _Modes(LinkOption):
    def __init__(self, snd=None, rcv=None):
        self.snd, self.rcv = snd, rcv

    def apply(self, link):
        if self.snd is not None:
            link.snd_settle_mode = self.snd
        if self.rcv is not None:
            link.rcv_settle_mode = self.rcv


def plain(v):
    if isinstance(v, dict):
        return {str(k) if isinstance(k, symbol) else plain(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, memoryview):
        return bytes(v)
    return v


class Rx:
    """A receiver link and what arrived on it."""

    def __init__(self, address, name):
        self.address, self.name = address, name
        self.link = None
        self.messages = []
        self.opened = False
        self.closed = None  # error condition name ('' for clean) once detached


class Out:
    """A delivery we sent and its outcome."""

    def __init__(self):
        self.delivery = None
        self.state = None
        self.settled = False
        self.condition = None
        self.description = None


class _H(Handler):
    def __init__(self, c):
        super().__init__()
        self.c = c

    def on_reactor_init(self, event):
        c = self.c
        c.container = event.container
        c.injector = EventInjector()
        event.container.selectable(c.injector)
        if c.listen:
            # plays a router: the service connects to us (--connect)
            c.acceptor = event.container.listen("127.0.0.1:%d" % c.port)
        else:
            c.conn = event.container.connect("127.0.0.1:%d" % c.port, handler=self,
                                             reconnect=False)
        c._ready.set()

    def on_call(self, event):
        fn, box, done = event.subject
        try:
            box["result"] = fn()
        except Exception as e:
            box["error"] = e
        done.set()

    def on_connection_remote_open(self, event):
        if self.c.listen:
            conn = event.connection
            if conn.state & Endpoint.LOCAL_UNINIT:
                conn.open()
            self.c.conn = conn
        with self.c.lock:
            self.c.up = True

    def on_connection_remote_close(self, event):
        if event.connection.state & Endpoint.LOCAL_ACTIVE:
            event.connection.close()

    def on_session_remote_close(self, event):
        if event.session.state & Endpoint.LOCAL_ACTIVE:
            event.session.close()

    def on_transport_closed(self, event):
        with self.c.lock:
            self.c.down = True

    def on_link_remote_open(self, event):
        rx = self.c.rx_of.get(event.link.name)
        if rx:
            with self.c.lock:
                rx.opened = True

    def _end(self, event):
        link = event.link
        cond = link.remote_condition
        name = cond.name if cond else ""
        with self.c.lock:
            self.c.detaches.append((link.name, name, cond.description if cond else None))
            rx = self.c.rx_of.get(link.name)
            if rx:
                rx.closed = name
            tx = self.c.tx_of.get(link.name)
            if tx is not None:
                tx["closed"] = name
        if link.state & Endpoint.LOCAL_ACTIVE:
            link.close()

    def on_link_remote_close(self, event):
        self._end(event)

    def on_link_remote_detach(self, event):
        self._end(event)

    def on_delivery(self, event):
        c = self.c
        dlv = event.delivery
        link = dlv.link
        if link.is_sender:
            out = c.out_of.get((link.name, str(dlv.tag)))
            with c.lock:
                if out is not None:
                    out.state = dlv.remote_state
                    out.settled = dlv.settled
                    cnd = dlv.remote.condition
                    out.condition = cnd.name if cnd else None
                    out.description = cnd.description if cnd else None
            if dlv.settled:
                dlv.settle()
            return
        if not dlv.readable or dlv.partial:
            return
        rx = c.rx_of.get(link.name)
        data = link.recv(dlv.pending)
        link.advance()
        m = Message()
        m.decode(data)
        rec = {"msg": m, "delivery": dlv, "subject": m.subject, "to": m.address,
               "id": m.id, "delivery_count": m.delivery_count, "durable": m.durable,
               "annotations": plain(m.annotations or {}), "body": plain(m.body),
               "settled": dlv.settled, "link": link.name, "seq": c.next_seq()}
        if dlv.settled:
            dlv.settle()
        with c.lock:
            if rx is not None:
                rx.messages.append(rec)
        if rx is not None and rx.auto_accept and not rec["settled"]:
            dlv.update(Delivery.ACCEPTED)
            dlv.settle()
            link.flow(1)


class Client:
    def __init__(self, port, listen=False):
        self.port = port
        self.listen = listen
        self.lock = threading.RLock()
        self.rx_of = {}
        self.tx_of = {}
        self.out_of = {}
        self.detaches = []
        self.up = False
        self.down = False
        self._ready = threading.Event()
        self.thread = None
        self.conn = None
        self.nlinks = 0
        self.seq = 0

    def next_seq(self):
        """Arrival order across all links of this connection."""
        self.seq += 1
        return self.seq

    def start(self):
        self.thread = threading.Thread(target=lambda: Container(_H(self)).run(), daemon=True)
        self.thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("client did not start")
        if not self.listen:
            self.wait_for(lambda: self.up, what="connection open")
        return self

    def call(self, fn, timeout=5.0):
        box, done = {}, threading.Event()
        self.injector.trigger(ApplicationEvent("call", subject=(fn, box, done)))
        if not done.wait(timeout):
            raise TimeoutError("client call timed out")
        if "error" in box:
            raise box["error"]
        return box.get("result")

    def wait_for(self, pred, timeout=5.0, what="condition"):
        def check():
            with self.lock:
                return pred()
        return gwtest.wait_until(check, timeout=timeout, what=what)

    # -- links ----------------------------------------------------------
    def receiver(self, address, name=None, credit=10, settled=False, auto_accept=False,
                 wait=True, extra_opts=()):
        rx = Rx(address, name or address)
        rx.auto_accept = auto_accept

        def do():
            opts = [_Modes(snd=Link.SND_SETTLED if settled else Link.SND_UNSETTLED,
                           rcv=Link.RCV_FIRST), *extra_opts]
            link = self.container.create_receiver(self.conn, address, name=rx.name,
                                                  options=opts)
            self.rx_of[rx.name] = rx
            rx.link = link
            if credit:
                link.flow(credit)
        self.call(do)
        if wait:
            self.wait_for(lambda: rx.opened, what=f"attach of {address}")
        return rx

    def sender(self, address, name=None, rcv_second=False, wait_credit=True):
        box = {"closed": None}

        def do():
            opts = [_Modes(snd=Link.SND_UNSETTLED,
                           rcv=Link.RCV_SECOND if rcv_second else Link.RCV_FIRST)]
            self.nlinks += 1
            link = self.container.create_sender(
                self.conn, address, name=name or "%s-%d" % (address or "anon", self.nlinks),
                options=opts)
            self.tx_of[link.name] = box
            box["link"] = link
        self.call(do)
        if wait_credit:
            self.wait_for(lambda: box["closed"] is not None or box["link"].credit > 0,
                          what=f"credit on {address}")
        return box

    def send(self, tx, msg, settled=False):
        out = Out()

        def do():
            link = tx["link"]
            dlv = link.send(msg)
            out.delivery = dlv
            if settled:
                dlv.settle()
                out.settled = True
            else:
                self.out_of[(link.name, str(dlv.tag))] = out
        self.call(do)
        return out

    def wait_outcome(self, out, timeout=5.0):
        self.wait_for(lambda: out.state is not None, timeout=timeout, what="outcome")
        return STATE_NAMES.get(out.state, out.state)

    def settle(self, rec, outcome="accept", flow=1):
        def do():
            d = rec["delivery"]
            if outcome:
                d.update(OUTCOMES[outcome])
            d.settle()
            if flow:
                d.link.flow(flow)
        self.call(do)

    def settle_out(self, out):
        self.call(lambda: out.delivery.settle())

    def flow(self, rx, n):
        self.call(lambda: rx.link.flow(n))

    def close_link(self, link, cond=None, desc=None):
        def do():
            if cond:
                link.condition = Condition(cond, desc)
            link.close()
        self.call(do)

    def stop(self, clean=True):
        if self.thread is None:
            return
        try:
            def do():
                if self.listen:
                    self.acceptor.close()
                if self.conn is None:
                    pass
                elif clean:
                    self.conn.close()
                elif self.conn.transport is not None:
                    t = self.conn.transport
                    if t is not None:
                        t.close_tail()
                        t.close_head()
            self.call(do)
            if clean:
                try:
                    self.wait_for(lambda: self.down, timeout=3, what="close")
                except TimeoutError:
                    pass

            def fin():
                self.injector.close()
                self.container.stop()
            self.call(fin)
        except Exception:
            pass
        self.thread.join(5)
        self.thread = None


def publish_msg(topic, body=b"x", qos=1, retain=False, message_id=None, to=True,
                delivery_count=0):
    m = Message()
    if to:
        m.address = topic
    m.body = body
    m.inferred = True  # Data section for bytes
    m.durable = qos > 0
    m.annotations = {symbol("x-opt-mqtt-qos"): qos, symbol("x-opt-retain-message"): retain}
    if message_id is not None:
        m.id = ulong(message_id)
    if delivery_count:
        m.delivery_count = delivery_count
    return m


def control_message(subject, correlation_id, message_id=None, body=None, reply_to=None):
    """A control message for $mqtt.subscriptionservice (spec 3.5-3.8, 3.12):
    correlation-id as given (normally $mqtt.to.<id>.publish)."""
    m = Message()
    m.subject = subject
    m.correlation_id = correlation_id
    if reply_to:
        m.reply_to = reply_to
    if message_id is not None:
        m.id = ulong(message_id)
    if body is not None:
        m.body = body
    return m


class GatewaySession:
    """The per-client links of one MQTT client, as mqtt-gateway opens them."""

    CTRL = "$mqtt.subscriptionservice"

    def __init__(self, client, cid, credit=32):
        self.c = client
        self.cid = cid
        self.ctl_addr = f"$mqtt.to.{cid}.control"
        self.pub_addr = f"$mqtt.to.{cid}.publish"
        self.ctl = client.receiver(self.ctl_addr, credit=4)
        self.pub = client.receiver(self.pub_addr, credit=0)
        self.tx = client.sender(self.CTRL, name=f"{self.CTRL}.{cid}")
        self.credit = credit
        self.pubrel_tx = None
        self.next_pid = 1

    def _ctrl(self, subject, body=None, message_id=None, reply_to=None, corr=None):
        return self.c.send(self.tx, control_message(
            subject, corr if corr is not None else self.pub_addr, message_id=message_id,
            body=body, reply_to=reply_to))

    def list(self):
        """AMQP_LIST; returns (outcome, subscriptions map, session_present)."""
        n = len(self.ctl.messages)
        out = self._ctrl("list", reply_to=self.ctl_addr)
        outcome = self.c.wait_outcome(out)
        if outcome != "accepted":
            return outcome, None, None
        rec = self.c.wait_for(lambda: len(self.ctl.messages) > n and self.ctl.messages[n],
                              what="AMQP_SUBSCRIPTIONS")
        self.c.settle(rec, "accept")
        return outcome, rec["body"], rec["annotations"].get("x-opt-session-present"), rec

    def close(self):
        return self.c.wait_outcome(self._ctrl("close"))

    def grant(self, n=None):
        self.c.flow(self.pub, self.credit if n is None else n)

    def subscribe(self, filters):
        pid = self.next_pid
        self.next_pid += 1
        out = self._ctrl("subscribe", body={k: v for k, v in filters.items()}, message_id=pid)
        return self.c.wait_outcome(out), out

    def unsubscribe(self, filters):
        pid = self.next_pid
        self.next_pid += 1
        out = self._ctrl("unsubscribe", body=list(filters), message_id=pid)
        return self.c.wait_outcome(out)

    def pubrel(self, message_id):
        if self.pubrel_tx is None:
            addr = f"$mqtt.{self.cid}.pubrel"
            self.pubrel_tx = self.c.sender(addr, name=addr)
        m = Message()
        m.subject = "pubrel"
        m.id = ulong(message_id)
        return self.c.wait_outcome(self.c.send(self.pubrel_tx, m))

    def wait_msgs(self, n, timeout=5.0):
        self.c.wait_for(lambda: len(self.pub.messages) >= n, timeout=timeout,
                        what=f"{n} messages on {self.pub_addr} (have {len(self.pub.messages)})")
        with self.c.lock:
            return list(self.pub.messages)


class _SourceCaps(LinkOption):
    """Source capabilities of a receiver: one symbol, or an array of them."""

    def __init__(self, caps, as_array=False):
        self.caps, self.as_array = list(caps), as_array

    def apply(self, link):
        d = link.source.capabilities
        if self.as_array:
            d.put_array(False, Data.SYMBOL)
            d.enter()
            for cap in self.caps:
                d.put_symbol(symbol(cap))
            d.exit()
        else:
            d.put_symbol(symbol(self.caps[0]))


SHARED_DELIVERY_CAP = "mqtt-shared-delivery"
ANNO_DLINK = symbol("x-opt-mqtt-delivery-link")
ANNO_WINDOW = symbol("x-opt-mqtt-window")
ANNO_SERIAL = symbol("x-opt-mqtt-client-serial")


def shared_receiver(client, name, credit=10000, as_array=False, wait=True):
    """An L4s (spec 2.2): a receiver whose source carries the capability
    mqtt-shared-delivery; link name = source address."""
    return client.receiver(name, name=name, credit=credit, wait=wait,
                           extra_opts=[_SourceCaps([SHARED_DELIVERY_CAP], as_array=as_array)])


def serial_of(rec):
    """x-opt-mqtt-client-serial of a delivery on an L4s (delivery annotation), or None."""
    ins = rec["msg"].instructions or {}
    return ins.get(ANNO_SERIAL, ins.get("x-opt-mqtt-client-serial"))


class SharedGateway:
    """One gateway connection in --delivery-link shared mode (spec 3.12):
    one L2 and one L4s on a Client; per-client L3 only for AMQP_LIST."""

    CTRL = "$mqtt.subscriptionservice"

    def __init__(self, client, container, credit=10000):
        self.c = client
        self.container = container
        self.name = f"$mqtt.to.$mqtt.delivery.{container}"
        self.l4s = shared_receiver(client, self.name, credit=credit)
        self.tx = client.sender(self.CTRL, name=f"{self.CTRL}.{container}")
        self.l3 = {}
        self.next_pid = 1

    def ctrl_msg(self, subject, cid, window=None, serial=None, link=True, reply_to=None,
                 body=None, message_id=None):
        m = control_message(subject, f"$mqtt.to.{cid}.publish", message_id=message_id,
                            body=body, reply_to=reply_to)
        ann = {}
        if link:
            ann[ANNO_DLINK] = self.name if link is True else link
        if window is not None:
            ann[ANNO_WINDOW] = window
        if serial is not None:
            ann[ANNO_SERIAL] = ulong(serial)
        if ann:
            m.annotations = ann
        return m

    def send(self, m):
        return self.c.send(self.tx, m)

    def close(self, cid, window, serial, **kw):
        """AMQP_CLOSE registering cid on this L4s; returns the outcome."""
        return self.c.wait_outcome(self.send(self.ctrl_msg("close", cid, window, serial, **kw)))

    def list(self, cid, window, serial, on_l4s=False, **kw):
        """AMQP_LIST registering cid on this L4s; returns (outcome,
        subscriptions, session_present). AMQP_SUBSCRIPTIONS comes on the
        client's L3 (attached first), or with on_l4s on the L4s itself
        (reply-to = the L4s name, spec 3.12: no L3)."""
        if on_l4s:
            n = len(self.subscriptions(serial))
            out = self.send(self.ctrl_msg("list", cid, window, serial, reply_to=self.name, **kw))
            outcome = self.c.wait_outcome(out)
            if outcome != "accepted":
                return outcome, None, None
            rec = self.c.wait_for(lambda: len(self.subscriptions(serial)) > n and
                                  self.subscriptions(serial)[n], what="AMQP_SUBSCRIPTIONS on L4s")
            return outcome, rec["body"], rec["annotations"].get("x-opt-session-present")
        ctl = f"$mqtt.to.{cid}.control"
        if cid not in self.l3:
            self.l3[cid] = self.c.receiver(ctl, credit=4)
        rx = self.l3[cid]
        n = len(rx.messages)
        out = self.send(self.ctrl_msg("list", cid, window, serial, reply_to=ctl, **kw))
        outcome = self.c.wait_outcome(out)
        if outcome != "accepted":
            return outcome, None, None
        rec = self.c.wait_for(lambda: len(rx.messages) > n and rx.messages[n],
                              what="AMQP_SUBSCRIPTIONS")
        self.c.settle(rec, "accept")
        return outcome, rec["body"], rec["annotations"].get("x-opt-session-present")

    def offline(self, cid, serial, link=True):
        m = self.ctrl_msg("offline", cid, None, serial, link=link)
        return self.c.wait_outcome(self.send(m))

    def subscribe(self, cid, filters):
        pid = self.next_pid
        self.next_pid += 1
        m = self.ctrl_msg("subscribe", cid, link=False, body=dict(filters), message_id=pid)
        return self.c.wait_outcome(self.send(m))

    def received(self, serial=None):
        """Deliveries on the L4s so far, AMQP_STOLEN and AMQP_SUBSCRIPTIONS
        excepted (those for serial only, if given)."""
        with self.c.lock:
            return [r for r in self.l4s.messages
                    if r["subject"] not in ("stolen", "subscriptions") and
                    (serial is None or serial_of(r) == serial)]

    def subscriptions(self, serial=None):
        """AMQP_SUBSCRIPTIONS received on the L4s (for serial only, if given)."""
        with self.c.lock:
            return [r for r in self.l4s.messages if r["subject"] == "subscriptions" and
                    (serial is None or serial_of(r) == serial)]

    def stolen(self):
        """Serials of the AMQP_STOLEN received on the L4s."""
        with self.c.lock:
            return [serial_of(r) for r in self.l4s.messages if r["subject"] == "stolen"]


class Service:
    """subscription-service under test: start/stop/kill with one store."""

    def __init__(self, procs, tmp_path, extra=(), name="subs"):
        self.procs = procs
        self.store = str(tmp_path / "subs.db")
        self.extra = list(extra)
        self.name = name
        self.n = 0
        self.proc = None
        self.port = None

    def start(self):
        self.port = gwtest.free_port()
        self.n += 1
        args = [gwtest.binary("services", "subscription", "subscription-service"),
                "--listen", f"127.0.0.1:{self.port}", "--store", self.store,
                "--store-sync", "normal", "--log-level", "debug"] + self.extra
        self.proc = self.procs.start(args, f"{self.name}{self.n}", ready_port=self.port)
        return self

    def client(self):
        return Client(self.port).start()


def start_with_http(procs, tmp_path, *extra):
    """A Service with --http-listen on a free port (its port in .hport),
    started, its HTTP port open."""
    hport = gwtest.free_port()
    s = Service(procs, tmp_path, extra=["--http-listen", "127.0.0.1:%d" % hport] +
                list(extra)).start()
    gwtest.wait_until(lambda: gwtest.port_open(hport), what="http port")
    s.hport = hport
    return s


@pytest.fixture
def clients():
    """Factory of started Client peers (import it into a test module);
    stopped after the test."""
    made = []

    def make(port):
        c = Client(port).start()
        made.append(c)
        return c
    yield make
    for c in made:
        c.stop()
