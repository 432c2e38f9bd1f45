"""A stand-in for the router's route-container listener (tests of the deployment).

Listens on 127.0.0.1:--port like qdrouterd's `services` listener. For every
connection it prints "CONNECTED <remote container id>". With --will-link
NAME it then forwards a will link the way a Dispatch router forwards a
link-routed attach (target $mqtt.lwtservice, link name already rewritten to
"<client id>@<gateway container>"), sends one AMQP_WILL and prints
"WILL <outcome>". Prints "READY" once listening. Run with /usr/bin/python3.
"""
import argparse
import os
import signal
import sys

from proton import Message, symbol
from proton.handlers import MessagingHandler
from proton.reactor import Container

class StandIn(MessagingHandler):
    def __init__(self, args):
        super().__init__(auto_settle=True)
        self.args = args
        self.sent = False

    def on_start(self, event):
        event.container.listen("127.0.0.1:%d" % self.args.port)
        print("READY", flush=True)

    def on_connection_opened(self, event):
        remote = event.connection.remote_container
        print("CONNECTED %s" % remote, flush=True)
        if self.args.will_link:
            event.container.create_sender(event.connection, self.args.address,
                                          name=self.args.will_link)

    def on_sendable(self, event):
        if self.sent:
            return
        self.sent = True
        msg = Message(subject="will", address="deploy/check/will", durable=True,
                      body=b"offline", inferred=True)
        msg.annotations = {symbol("x-opt-retain-message"): False,
                           symbol("x-opt-mqtt-qos"): 1}
        event.sender.send(msg)

    def on_accepted(self, event):
        print("WILL accepted", flush=True)

    def on_rejected(self, event):
        print("WILL rejected", flush=True)

    def on_released(self, event):
        print("WILL released", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--will-link")
    ap.add_argument("--address", default="$mqtt.lwtservice")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    Container(StandIn(args)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
