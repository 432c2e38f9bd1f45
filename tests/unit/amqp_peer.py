#!/usr/bin/python3
"""A real AMQP 1.0 peer for tests/unit/test_amqp_python.c.

Listens on an ephemeral 127.0.0.1 port, prints "PORT <n>" on stdout, serves
ONE connection, prints "RESULT key=value ..." and exits.

  amqp_peer.py echo [--mechs MECHS] [--tls CERT KEY]
      python3-qpid-proton container. Every message received on any link is
      checked (id == n-th message, subject "test", body "msg-<id>",
      application property n == id), accepted (rejected with
      amqp:invalid-field if a check fails, amqp:not-allowed if its subject is
      "reject-me") and echoed on the sender link the peer attaches (source
      "echo") with subject "echo".
  amqp_peer.py client PORT USER PASS
      python3-qpid-proton client: connects to 127.0.0.1:PORT with SASL PLAIN
      (insecure mechs allowed), closes as soon as the connection is open and
      reports whether it opened and the error condition if any.
  amqp_peer.py plain USER PASS
      proton's built-in SASL cannot verify PLAIN on the server side (no
      Cyrus), so this mode speaks the SASL layer itself (frames encoded with
      proton.Data): offers PLAIN, checks the credentials, answers the outcome,
      then checks that the AMQP protocol header follows a successful outcome.
"""
import socket
import struct
import sys

from proton import Condition, Data, Message
from proton.handlers import MessagingHandler
from proton.reactor import Container

TIME_LIMIT = 30.0


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Echo(MessagingHandler):
    def __init__(self, mechs, ssl_files):
        super().__init__(prefetch=50, auto_accept=False)
        self.mechs = mechs
        self.ssl_files = ssl_files
        self.received = 0
        self.bad = 0
        self.rejected = 0
        self.echoed = 0
        self.sender = None
        self.queue = []
        self.user = "-"
        self.mech = "-"
        self.container_id = "-"
        self.done = False

    def on_start(self, event):
        acc = event.container.acceptor("127.0.0.1", 0)
        if self.ssl_files:
            from proton import SSLDomain
            dom = SSLDomain(SSLDomain.MODE_SERVER)
            dom.set_credentials(self.ssl_files[0], self.ssl_files[1], None)
            dom.set_peer_authentication(SSLDomain.ANONYMOUS_PEER)
            acc.set_ssl_domain(dom)
        self.acceptor = acc
        event.container.schedule(TIME_LIMIT, self)
        out("PORT %d" % acc._selectable.getsockname()[1])

    def on_timer_task(self, event):
        self.finish(event, "timeout")

    def on_connection_bound(self, event):
        sasl = event.transport.sasl()
        if self.mechs:
            sasl.allowed_mechs(self.mechs)

    def on_connection_opened(self, event):
        t = event.transport
        self.user = t.user or "-"
        try:
            self.mech = t.sasl().mech or "-"
        except Exception:
            self.mech = "-"
        self.container_id = event.connection.remote_container or "-"

    def on_link_opened(self, event):
        if event.link.is_sender:
            self.sender = event.link

    def on_message(self, event):
        m = event.message
        n = self.received
        self.received += 1
        ok = (m.id == n and m.body == "msg-%d" % n and
              (m.properties or {}).get("n") == n)
        if m.subject == "reject-me":
            event.delivery.local.condition = Condition("amqp:not-allowed", "as asked")
            self.reject(event.delivery)
            self.rejected += 1
            return
        if not ok or m.subject != "test":
            self.bad += 1
            event.delivery.local.condition = Condition("amqp:invalid-field",
                                                       "unexpected message %r" % (m,))
            self.reject(event.delivery)
            return
        self.accept(event.delivery)
        self.queue.append(Message(id=m.id, subject="echo", body=m.body))
        self.flush()

    def on_sendable(self, event):
        self.flush()

    def flush(self):
        while self.queue and self.sender is not None and self.sender.credit > 0:
            self.sender.send(self.queue.pop(0))
            self.echoed += 1

    def on_transport_closed(self, event):
        self.finish(event, "closed")

    def finish(self, event, why):
        if self.done:
            return
        self.done = True
        out("RESULT end=%s received=%d bad=%d rejected=%d echoed=%d user=%s mech=%s container=%s" %
            (why, self.received, self.bad, self.rejected, self.echoed, self.user, self.mech,
             self.container_id))
        self.acceptor.close()
        event.container.stop()


class Client(MessagingHandler):
    def __init__(self, port, user, password):
        super().__init__()
        self.url = "amqp://127.0.0.1:%d" % port
        self.user = user
        self.password = password
        self.opened = 0
        self.cond = "-"
        self.done = False

    def on_start(self, event):
        event.container.connect(self.url, user=self.user, password=self.password,
                                allowed_mechs="PLAIN", allow_insecure_mechs=True,
                                reconnect=False)
        event.container.schedule(TIME_LIMIT, self)

    def on_timer_task(self, event):
        self.finish(event, "timeout")

    def on_connection_opened(self, event):
        self.opened = 1
        event.connection.close()

    def on_transport_error(self, event):
        c = event.transport.condition
        if c:
            self.cond = c.name

    def on_transport_closed(self, event):
        self.finish(event, "closed")

    def finish(self, event, why):
        if self.done:
            return
        self.done = True
        out("RESULT end=%s opened=%d cond=%s" % (why, self.opened, self.cond))
        event.container.stop()


def sasl_frame(build):
    d = Data()
    build(d)
    body = d.encode()
    return struct.pack(">IBBH", 8 + len(body), 2, 1, 0) + body


def read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("peer closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf


def plain(user, password):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    ls.settimeout(TIME_LIMIT)
    out("PORT %d" % ls.getsockname()[1])
    s, _ = ls.accept()
    s.settimeout(TIME_LIMIT)
    result = "error"
    got_user = "-"
    header = 0
    try:
        hdr = read_exact(s, 8)
        if hdr != b"AMQP\x03\x01\x00\x00":
            raise ValueError("not a SASL header: %r" % hdr)

        def mechs(d):
            d.put_described()
            d.enter()
            d.put_ulong(0x40)
            d.put_list()
            d.enter()
            d.put_array(False, Data.SYMBOL)
            d.enter()
            d.put_symbol("PLAIN")
            d.exit()
            d.exit()
            d.exit()
        s.sendall(hdr + sasl_frame(mechs))
        size, doff, ftype, _ = struct.unpack(">IBBH", read_exact(s, 8))
        if size > 65536 or ftype != 1:
            raise ValueError("bad SASL frame size=%d type=%d" % (size, ftype))
        body = read_exact(s, size - 8)[doff * 4 - 8:]
        d = Data()
        d.decode(body)
        init = d.get_object()
        mech, resp = init.value[0], bytes(init.value[1])
        parts = resp.split(b"\x00")
        if int(init.descriptor) != 0x41 or mech != "PLAIN" or len(parts) != 3:
            raise ValueError("bad sasl-init %r" % (init,))
        got_user = parts[1].decode()
        good = parts[1] == user.encode() and parts[2] == password.encode()
        code = 0 if good else 1

        def outcome(dd):
            dd.put_described()
            dd.enter()
            dd.put_ulong(0x44)
            dd.put_list()
            dd.enter()
            dd.put_ubyte(code)
            dd.exit()
            dd.exit()
        s.sendall(sasl_frame(outcome))
        result = "ok" if good else "bad"
        if good:
            header = int(read_exact(s, 8) == b"AMQP\x00\x01\x00\x00")
    except Exception as e:  # reported, the C side checks RESULT
        result = "error:" + type(e).__name__
        sys.stderr.write("amqp_peer: %s\n" % (e,))
    finally:
        s.close()
        ls.close()
    out("RESULT plain=%s user=%s amqp_header=%d" % (result, got_user, header))


def main(argv):
    if len(argv) >= 2 and argv[1] == "plain" and len(argv) == 4:
        plain(argv[2], argv[3])
        return 0
    if len(argv) == 5 and argv[1] == "client":
        Container(Client(int(argv[2]), argv[3], argv[4])).run()
        return 0
    if len(argv) >= 2 and argv[1] == "echo":
        mechs = None
        ssl_files = None
        i = 2
        while i < len(argv):
            if argv[i] == "--mechs":
                mechs = argv[i + 1]
                i += 2
            elif argv[i] == "--tls":
                ssl_files = (argv[i + 1], argv[i + 2])
                i += 3
            else:
                raise SystemExit("unknown option " + argv[i])
        Container(Echo(mechs, ssl_files)).run()
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
