"""A Qpid Dispatch Router stand-in that renames link-routed will links.

Dispatch forwards a link-routed attach to the route-container with the
link name rewritten to "<name>@<container id of the attaching connection>"
(qpid-dispatch: lookup_client.c disambiguated_link_name(), forwarder.c
qdr_forward_link_direct_CT). The will-service --connect's to us; over that
connection we attach, in order, one will sender per --link NAME@CONTAINER
(the next one once the previous one's AMQP_WILL is settled, or at once with
--no-will) and print:
  "WILL <outcome> <link name>"      per AMQP_WILL settled
  "DETACHED <link name> <condition>" when the will-service detaches a link
  "ATTACHED <link name>"            when the will-service answers an attach
Once the file --trigger exists, the last link is detached with
qd:routed-link-lost (as the router does when it loses the gateway).
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
        self.conn = None
        self.links = []
        self.sent = set()
        self.triggered = False

    def on_start(self, event):
        event.container.listen("127.0.0.1:%d" % self.args.port)
        event.container.schedule(0.05, self)
        print("ROUTER READY", flush=True)

    def on_timer_task(self, event):
        if not self.triggered and self.args.trigger and os.path.exists(self.args.trigger) \
                and self.links:
            self.triggered = True
            last = self.links[-1]
            last.condition = Condition("qd:routed-link-lost", "router lost the link")
            last.close()
            print("ROUTED-LINK-LOST %s" % last.name, flush=True)
        event.container.schedule(0.05, self)

    def attach_next(self, container):
        i = len(self.links)
        if i >= len(self.args.link):
            return
        self.links.append(container.create_sender(self.conn, will_peers.LWT,
                                                  name=self.args.link[i]))
        if self.args.no_will:
            self.attach_next(container)

    def on_connection_opened(self, event):
        self.conn = event.connection
        self.attach_next(event.container)

    def on_link_opened(self, event):
        print("ATTACHED %s" % event.link.name, flush=True)

    def on_sendable(self, event):
        link = event.sender
        if self.args.no_will or link.name in self.sent:
            return
        self.sent.add(link.name)
        i = self.links.index(link)
        link.send(will_peers.will_message("%s/%d" % (self.args.topic, i), b"via-router-%d" % i,
                                          1, False))

    def on_settled(self, event):
        print("WILL %s %s" % (will_peers.STATE_NAMES.get(event.delivery.remote_state, "?"),
                              event.link.name), flush=True)
        self.attach_next(event.container)

    def on_link_closing(self, event):
        print("DETACHED %s -" % event.link.name, flush=True)

    def on_link_error(self, event):
        # Not the default (which closes the connection): only this link goes.
        cond = event.link.remote_condition
        print("DETACHED %s %s" % (event.link.name, cond.name if cond else "-"), flush=True)
        event.link.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--link", action="append", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--no-will", action="store_true")
    ap.add_argument("--trigger")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    Container(Router(args)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
