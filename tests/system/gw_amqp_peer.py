"""A scriptable AMQP 1.0 peer (python3-qpid-proton) that plays router + Will
Service + Subscription Service for mqtt-gateway system tests.

It listens on a free loopback port, records every link attach (name,
source/target, settle modes), every detach (with its error condition) and
every message (all fields), and answers according to `policy`:

  policy["will"], ["close"], ["list"], ["subscribe"], ["unsubscribe"],
  ["pubrel"], ["publish"] : "accept" | "reject" | "release" | "hold" | "ignore"
      hold: no disposition; the test settles it later with peer.settle(rec, ...)
      ignore: like hold (kept for readability of "does not answer")
      or a callable(record) returning one of those
  policy["credit"]        : credit granted on every link the gateway sends on
  policy["credit_for"]    : {address: credit} overrides (e.g. a topic with 0)
  policy["session_present"]: {client_id: bool} for AMQP_SUBSCRIPTIONS
  policy["subscriptions"]  : {client_id: {filter: qos}}
  policy["send_subscriptions"]: answer AMQP_LIST with AMQP_SUBSCRIPTIONS

Threading: proton's Container runs in a background thread; tests inject work
with peer.call(fn) (EventInjector + ApplicationEvent) which runs fn on the
container thread and returns its result. Recorded data is guarded by a lock;
tests read snapshots and poll with peer.wait_for().
"""
import threading
import time

from proton import Condition, Delivery, Endpoint, Handler, Message, symbol, ulong

from proton.reactor import ApplicationEvent, Container, EventInjector

import gwtest

OUTCOMES = {"accept": Delivery.ACCEPTED, "reject": Delivery.REJECTED,
            "release": Delivery.RELEASED, "modify": Delivery.MODIFIED}


def _plain(v):
    """Proton values -> plain Python for comparisons."""
    if isinstance(v, dict):
        return {str(k) if isinstance(k, symbol) else _plain(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, memoryview):
        return bytes(v)
    return v


class _Handler(Handler):
    def __init__(self, peer):
        super().__init__()
        self.peer = peer

    # -- plumbing -------------------------------------------------------
    def on_reactor_init(self, event):
        p = self.peer
        p.container = event.container
        p.acceptor = event.container.listen("127.0.0.1:%d" % p.port)
        p.injector = EventInjector()
        event.container.selectable(p.injector)
        p._ready.set()

    def on_call(self, event):
        fn, box, done = event.subject
        try:
            box["result"] = fn()
        except Exception as e:  # reported to the calling thread
            box["error"] = e
        done.set()

    # -- endpoints ------------------------------------------------------
    def on_connection_bound(self, event):
        if self.peer.sasl_mechs and event.transport is not None:
            event.transport.sasl().allowed_mechs(self.peer.sasl_mechs)

    def on_connection_remote_open(self, event):
        c = event.connection
        p = self.peer
        if c.state & Endpoint.LOCAL_UNINIT:
            if p.anonymous_relay:
                c.offered_capabilities = symbol("ANONYMOUS-RELAY")
            c.open()
        with p.lock:
            p.connections.append(c)
            p.conn_opens += 1
            p.container_ids.append(c.remote_container)

    def on_connection_remote_close(self, event):
        if event.connection.state & Endpoint.LOCAL_ACTIVE:
            event.connection.close()

    def on_transport_closed(self, event):
        p = self.peer
        with p.lock:
            p.transport_closes += 1
            c = event.connection
            if c in p.connections:
                p.connections.remove(c)

    def on_session_remote_open(self, event):
        if event.session.state & Endpoint.LOCAL_UNINIT:
            event.session.open()
        with self.peer.lock:
            self.peer.sessions_begun += 1

    def on_session_remote_close(self, event):
        if event.session.state & Endpoint.LOCAL_ACTIVE:
            event.session.close()
        with self.peer.lock:
            self.peer.sessions_ended += 1

    def on_link_remote_open(self, event):
        link = event.link
        p = self.peer
        rec = {
            "name": link.name,
            "gateway_role": "sender" if link.is_receiver else "receiver",
            "source": link.remote_source.address,
            "target": link.remote_target.address,
            "snd_settle_mode": link.remote_snd_settle_mode,
            "rcv_settle_mode": link.remote_rcv_settle_mode,
            "open": True,
            "link": link,
            "session": link.session,
        }
        if link.state & Endpoint.LOCAL_UNINIT:
            link.source.copy(link.remote_source)
            link.target.copy(link.remote_target)
            link.snd_settle_mode = link.remote_snd_settle_mode
            link.rcv_settle_mode = link.remote_rcv_settle_mode
            link.open()
        if link.is_receiver:
            credit = p.policy["credit_for"].get(rec["target"], p.policy["credit"])
            if credit:
                link.flow(credit)
        else:
            with p.lock:
                p.client_senders[rec["source"]] = link
        with p.lock:
            p.links.append(rec)

    def _on_link_end(self, event, closed):
        link = event.link
        p = self.peer
        cond = link.remote_condition
        with p.lock:
            role = "sender" if link.is_receiver else "receiver"
            for rec in p.links:
                # By identity: a link of the same name may already be open
                # in another session (a takeover's attach can precede the
                # old link's detach on the wire).
                if rec["name"] == link.name and rec["gateway_role"] == role and \
                        int(rec["link"]._impl) == int(link._impl):
                    rec["open"] = False
            p.detaches.append({"name": link.name, "closed": closed,
                               "condition": cond.name if cond else None,
                               "description": cond.description if cond else None,
                               "gateway_role": "sender" if link.is_receiver else "receiver"})
            if not link.is_receiver:
                src = link.remote_source.address
                cur = p.client_senders.get(src)
                if cur is not None and cur.name == link.name and not (
                        cur.state & Endpoint.REMOTE_ACTIVE):
                    del p.client_senders[src]
        if link.state & Endpoint.LOCAL_ACTIVE:
            if closed:
                link.close()
            else:
                link.detach()

    def on_link_remote_close(self, event):
        self._on_link_end(event, True)

    def on_link_remote_detach(self, event):
        self._on_link_end(event, False)

    def on_link_flow(self, event):
        link = event.link
        if link.is_sender:
            self.peer._pump(link)

    # -- deliveries -----------------------------------------------------
    def on_delivery(self, event):
        dlv = event.delivery
        link = dlv.link
        p = self.peer
        if link.is_sender:
            key = (link.name, dlv.tag)
            with p.lock:
                out = p.unsettled_out.get(key)
                if out is not None:
                    out["remote_state"] = dlv.remote_state
                    out["remote_settled"] = dlv.settled
                    if dlv.settled:
                        del p.unsettled_out[key]
            if dlv.settled:
                dlv.settle()
            return
        # receiver: the gateway sent something
        if dlv.partial:
            return
        key = (link.name, dlv.tag)
        with p.lock:
            rec_existing = p.unsettled_in.get(key)
        if rec_existing is not None:
            # a state change of a delivery we already hold (rcv-settle second)
            rec_existing["remote_settled"] = dlv.settled
            if dlv.settled:
                rec_existing["done"] = True
                rec_existing["delivery"] = None
                with p.lock:
                    p.unsettled_in.pop(key, None)
                dlv.settle()
            return
        data = link.recv(dlv.pending)
        link.advance()
        msg = Message()
        msg.decode(data)
        target = link.remote_target.address
        rec = {
            "link": link.name,
            "link_target": target,
            "to": msg.address,
            "subject": msg.subject,
            "id": msg.id,
            "correlation_id": msg.correlation_id,
            "reply_to": msg.reply_to,
            "durable": msg.durable,
            "delivery_count": msg.delivery_count,
            "annotations": _plain(msg.annotations or {}),
            "properties": _plain(msg.properties or {}),  # application properties
            "content_type": msg.content_type,
            "creation_time": msg.creation_time,
            "ttl": msg.ttl,
            "body": _plain(msg.body),
            "presettled": dlv.settled,
            "delivery": dlv,
            "key": key,
            "outcome": None,
            "remote_settled": dlv.settled,
            "rcv_settle_mode": link.rcv_settle_mode,
            "t": time.monotonic(),
        }
        with p.lock:
            p.messages.append(rec)
        if not (p.policy.get("hold_credit") and target not in (p.lwt, p.subctrl)):
            link.flow(1)
        if dlv.settled:
            rec["done"] = True
            dlv.settle()
            return
        with p.lock:
            p.unsettled_in[key] = rec
        action = p._policy_for(rec)
        if callable(action):
            action = action(rec)
        if action in OUTCOMES:
            p._settle(rec, action)
        if rec["subject"] == "list" and action == "accept" and p.policy["send_subscriptions"]:
            cid = (rec["reply_to"] or "")[len(p.to_prefix):-len(".control")]
            p._send_subscriptions(cid, rec["reply_to"])


class AmqpPeer:
    def __init__(self, anonymous_relay=False, sasl_mechs=None):
        self.port = gwtest.free_port()
        self.sasl_mechs = sasl_mechs
        self.container_ids = []
        self.anonymous_relay = anonymous_relay
        self.lwt = "$mqtt.lwtservice"
        self.subctrl = "$mqtt.subscriptionservice"
        self.to_prefix = "$mqtt.to."
        self.lock = threading.RLock()
        self.links = []
        self.detaches = []
        self.messages = []
        self.outbound = []
        self.connections = []
        self.conn_opens = 0
        self.transport_closes = 0
        self.sessions_begun = 0
        self.sessions_ended = 0
        self.client_senders = {}
        self.unsettled_in = {}
        self.unsettled_out = {}
        self._queues = {}
        self.policy = {
            "will": "accept", "close": "accept", "list": "accept", "subscribe": "accept",
            "unsubscribe": "accept", "pubrel": "accept", "publish": "accept",
            "credit": 100, "credit_for": {}, "session_present": {}, "subscriptions": {},
            "send_subscriptions": True,
        }
        self._ready = threading.Event()
        self.container = None
        self.thread = None

    # -- lifecycle ------------------------------------------------------
    def start(self):
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("AMQP peer did not start")
        gwtest.wait_until(lambda: gwtest.port_open(self.port), what="AMQP peer port")
        return self

    def _run(self):
        Container(_Handler(self)).run()

    def call(self, fn, timeout=5.0):
        """Run fn() on the container thread; return its result."""
        box, done = {}, threading.Event()
        self.injector.trigger(ApplicationEvent("call", subject=(fn, box, done)))
        if not done.wait(timeout):
            raise TimeoutError("AMQP peer call timed out")
        if "error" in box:
            raise box["error"]
        return box.get("result")

    def drop(self):
        """Stop listening and close every connection's socket (peer down)."""
        def do():
            self.acceptor.close()
            for c in list(self.connections):
                t = c.transport
                if t is not None:
                    t.close_tail()
                    t.close_head()
        self.call(do)

    def stop(self):
        if self.thread is None:
            return
        try:
            def do():
                try:
                    self.acceptor.close()
                except Exception:
                    pass
                for c in list(self.connections):
                    t = c.transport
                    if t is not None:
                        t.close_tail()
                        t.close_head()
                self.injector.close()
                self.container.stop()
            self.call(do)
        except Exception:
            pass
        self.thread.join(5)
        self.thread = None

    # -- queries (any thread) -------------------------------------------
    def wait_for(self, pred, timeout=5.0, what="peer condition"):
        def check():
            with self.lock:
                return pred()
        return gwtest.wait_until(check, timeout=timeout, what=what)

    def links_named(self, name):
        with self.lock:
            return [l for l in self.links if l["name"] == name]

    def ss_links(self):
        """Open L2 links (target $mqtt.subscriptionservice): one per gateway
        connection, shared by its clients (spec 2.2)."""
        with self.lock:
            return [r for r in self.links if r["open"] and r["target"] == self.subctrl]

    def link(self, name, timeout=5.0):
        return self.wait_for(lambda: next((l for l in self.links if l["name"] == name), None),
                             timeout, f"link {name}")

    def msgs(self, **kw):
        with self.lock:
            return [m for m in self.messages if all(m.get(k) == v for k, v in kw.items())]

    def wait_msg(self, timeout=5.0, **kw):
        return self.wait_for(lambda: next((m for m in self.messages
                                           if all(m.get(k) == v for k, v in kw.items())), None),
                             timeout, f"message {kw}")

    def detach_of(self, name, timeout=5.0):
        return self.wait_for(lambda: next((d for d in self.detaches if d["name"] == name), None),
                             timeout, f"detach of {name}")

    # -- scripted actions (run on the container thread) ------------------
    def _policy_for(self, rec):
        if rec["link_target"] == self.lwt:
            return self.policy["will"] if rec["subject"] == "will" else "accept"
        if rec["link_target"] == self.subctrl:
            return self.policy.get(rec["subject"], "accept")
        if rec["subject"] == "pubrel":
            return self.policy["pubrel"]
        return self.policy["publish"]

    def _settle(self, rec, action, condition=None):
        dlv = rec["delivery"]
        if condition and action == "reject":
            dlv.local.condition = Condition(condition, "rejected by the test peer")
        dlv.update(OUTCOMES[action])
        rec["outcome"] = action
        # rcv-settle-mode second: settle only once the sender settled.
        if rec["rcv_settle_mode"] != 1 or dlv.settled:
            rec["done"] = True
            with self.lock:
                self.unsettled_in.pop(rec["key"], None)
            dlv.settle()

    def settle(self, rec, action="accept", condition=None):
        self.call(lambda: self._settle(rec, action, condition))

    def _send_subscriptions(self, cid, control_addr):
        subs = self.policy["subscriptions"].get(cid, {})
        m = Message(subject="subscriptions", body=dict(subs))
        m.annotations = {symbol("x-opt-session-present"):
                         bool(self.policy["session_present"].get(cid, False))}
        self._enqueue(control_addr, m, presettled=False)

    def _enqueue(self, addr, msg, presettled):
        rec = {"addr": addr, "msg": msg, "presettled": presettled, "delivery": None,
               "remote_state": None, "remote_settled": False}
        with self.lock:
            self.outbound.append(rec)
        self._queues.setdefault(addr, []).append(rec)
        link = self.client_senders.get(addr)
        if link is not None:
            self._pump(link)
        return rec

    def _pump(self, link):
        q = self._queues.get(link.remote_source.address, [])
        while q and link.credit > 0:
            rec = q.pop(0)
            dlv = link.send(rec["msg"])
            with self.lock:
                rec["delivery"] = dlv
                rec["key"] = (link.name, dlv.tag)
                if not rec["presettled"]:
                    self.unsettled_out[rec["key"]] = rec
            if rec["presettled"]:
                dlv.settle()

    def send_to_client(self, client_id, topic="t", body=b"x", qos=0, message_id=None,
                       delivery_count=0, retain=False, subject=None, presettled=None):
        """Queue a message on $mqtt.to.<id>.publish (sent when credit allows)."""
        def do():
            m = Message(address=topic, body=body, subject=subject)
            m.inferred = isinstance(body, bytes)  # bytes -> Data section
            m.durable = qos > 0
            if delivery_count:
                m.delivery_count = delivery_count
            if message_id is not None:
                m.id = ulong(message_id)
            if subject is None:
                m.annotations = {symbol("x-opt-mqtt-qos"): qos,
                                 symbol("x-opt-retain-message"): retain}
            pre = (qos == 0) if presettled is None else presettled
            return self._enqueue(f"{self.to_prefix}{client_id}.publish", m, pre)
        return self.call(do)

    def send_on(self, addr, msg, presettled=False):
        """Queue msg on the gateway's receiver whose source is addr (sent when
        it has credit); returns the outbound record (remote_state, ...)."""
        return self.call(lambda: self._enqueue(addr, msg, presettled))

    def close_link(self, name, condition=None, description=None):
        """Detach/close the peer end of a link, optionally with an error condition."""
        def do():
            for rec in self.links:
                if rec["name"] == name and rec["open"]:
                    link = rec["link"]
                    if condition:
                        link.condition = Condition(condition, description)
                    link.close()
                    rec["open"] = False
                    return True
            return False
        return self.call(do)

    def end_session_of(self, name, condition=None):
        """End (from the peer) the AMQP session holding the open link `name`."""
        def do():
            for rec in self.links:
                if rec["name"] == name and rec["open"]:
                    ssn = rec["session"]
                    if condition:
                        ssn.condition = Condition(condition)
                    ssn.close()
                    return True
            return False
        return self.call(do)

    def credit_of(self, addr):
        """Credit the gateway granted on its receiver for addr (our sender)."""
        return self.call(lambda: self.client_senders[addr].credit
                         if addr in self.client_senders else None)

    def grant(self, target, n):
        """Give n more credit on the gateway's sender link(s) to target."""
        def do():
            for rec in self.links:
                if rec["target"] == target and rec["open"] and rec["link"].is_receiver:
                    rec["link"].flow(n)
        self.call(do)
