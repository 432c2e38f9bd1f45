"""Tiny AMQP 1.0 sender (python3-qpid-proton) for test_load_tool.py.

Listens on 127.0.0.1:PORT. When a receiver attaches (mqtt-load --amqp-url),
it sends COUNT messages on that link, each a data section holding the
mqtt-load payload header (publisher id u32, sequence u64, CLOCK_MONOTONIC
send time u64 ns, big endian) plus filler up to SIZE bytes, as credit
allows. Prints "listening" when ready and "sent COUNT" when done; exits 0 on
SIGTERM.

usage: load_amqp_sender.py PORT COUNT [SIZE] [PUBLISHER_ID]
"""
import os
import signal
import struct
import sys
import time

from proton import Message
from proton.handlers import MessagingHandler
from proton.reactor import Container


class Sender(MessagingHandler):
    def __init__(self, port, count, size, pub):
        super().__init__(auto_accept=False, auto_settle=True)
        self.port = port
        self.count = count
        self.size = max(size, 20)
        self.pub = pub
        self.sent = 0
        self.filler = b"x" * (self.size - 20)

    def on_start(self, event):
        event.container.listen("127.0.0.1:%d" % self.port)
        print("listening", flush=True)

    def on_link_opening(self, event):
        link = event.link
        if link.is_sender:
            link.source.address = link.remote_source.address
            link.target.address = link.remote_target.address

    def on_sendable(self, event):
        sender = event.sender
        while sender.credit > 0 and self.sent < self.count:
            hdr = struct.pack(">IQQ", self.pub, self.sent, time.monotonic_ns())
            sender.send(Message(body=hdr + self.filler, inferred=True))
            self.sent += 1
            if self.sent == self.count:
                print("sent %d" % self.sent, flush=True)


def main():
    port = int(sys.argv[1])
    count = int(sys.argv[2])
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    pub = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    Container(Sender(port, count, size, pub)).run()


if __name__ == "__main__":
    main()
