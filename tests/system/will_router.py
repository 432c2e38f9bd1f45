"""A router stand-in for will-service --connect tests (route-container).

The will service connects to us; over that connection we attach a will
sender named --name to $mqtt.lwtservice (as a router forwarding a
link-routed attach), send AMQP_WILL, print "WILL <outcome>", then either
detach with qd:routed-link-lost (--detach) or hold the link until killed.
Run with /usr/bin/python3. Prints "ROUTER READY" once listening.
"""
import argparse
import os
import signal
import sys

from proton import Condition
from proton.handlers import MessagingHandler
from proton.reactor import Container

import will_peers


class Router(MessagingHandler):
    def __init__(self, args):
        super().__init__(auto_settle=True)
        self.args = args
        self.sent = False

    def on_start(self, event):
        event.container.listen("127.0.0.1:%d" % self.args.port)
        print("ROUTER READY", flush=True)

    def on_connection_opened(self, event):
        event.container.create_sender(event.connection, will_peers.LWT, name=self.args.name)

    def on_sendable(self, event):
        if not self.sent:
            self.sent = True
            event.sender.send(will_peers.will_message(self.args.topic, b"via-router", 1, False))

    def on_settled(self, event):
        print("WILL %s" % will_peers.STATE_NAMES.get(event.delivery.remote_state, "?"),
              flush=True)
        if self.args.detach:
            event.link.condition = Condition("qd:routed-link-lost", "router lost the link")
            event.link.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--detach", action="store_true")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    Container(Router(args)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
