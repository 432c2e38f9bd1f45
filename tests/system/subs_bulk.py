"""Bulk QoS 1 publisher for subscription-service tests (python3-qpid-proton).

Connects to 127.0.0.1:PORT, attaches a sender to TOPIC (the link target is
the topic, spec 2.6) and sends COUNT QoS 1 publications as fast as the
service's credit allows; body = the sequence number as 8 bytes big endian.
Prints "accepted N" once every outcome is known and exits 0 when all were
accepted, 1 otherwise (prints the first other outcome). While running it
prints "progress ACCEPTED" every EVERY outcomes (default 2000), so a test can follow it.

usage: subs_bulk.py PORT TOPIC COUNT [EVERY]
"""
import struct
import sys

from proton import Delivery, Message, symbol
from proton.handlers import MessagingHandler
from proton.reactor import Container


class Publisher(MessagingHandler):
    def __init__(self, port, topic, count, every=2000):
        super().__init__(auto_accept=False, auto_settle=True)
        self.url = "127.0.0.1:%d" % port
        self.topic = topic
        self.count = count
        self.sent = 0
        self.accepted = 0
        self.other = None
        self.settled = 0
        self.every = every

    def on_start(self, event):
        conn = event.container.connect(self.url, sasl_enabled=False)
        event.container.create_sender(conn, self.topic, name="bulk-%s" % self.topic)

    def on_sendable(self, event):
        link = event.sender
        while link.credit > 0 and self.sent < self.count:
            m = Message(body=struct.pack(">Q", self.sent), durable=True)
            m.inferred = True
            m.annotations = {symbol("x-opt-mqtt-qos"): 1}
            link.send(m)
            self.sent += 1

    def _outcome(self, event, ok):
        self.settled += 1
        if ok:
            self.accepted += 1
        elif self.other is None:
            self.other = str(event.delivery.remote_state)
        if self.settled % self.every == 0:
            print("progress %d" % self.accepted, flush=True)
        if self.settled == self.count:
            print("accepted %d" % self.accepted, flush=True)
            if self.other:
                print("other outcome %s" % self.other, flush=True)
            event.connection.close()

    def on_accepted(self, event):
        self._outcome(event, True)

    def on_rejected(self, event):
        self._outcome(event, False)

    def on_released(self, event):
        self._outcome(event, False)

    def on_modified(self, event):
        self._outcome(event, False)


def main():
    port, topic, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    every = int(sys.argv[4]) if len(sys.argv) > 4 else 2000
    p = Publisher(port, topic, count, every)
    Container(p).run()
    sys.exit(0 if p.accepted == count else 1)


if __name__ == "__main__":
    main()
