"""Publish destination for will-service tests: an AMQP 1.0 listener (python
qpid-proton) that records every message it receives as one JSON line.

Run with /usr/bin/python3 (proton). Prints "SINK READY" once listening.

  will_sink.py --port P --out FILE [--mode accept|withhold|release|reject]
               [--count N] [--anonymous-relay]

The first --count deliveries get --mode (withhold: never settled; release;
reject with a condition); every later delivery is accepted.
"""
import argparse
import json
import os
import signal
import sys

from proton import Condition, symbol
from proton.handlers import MessagingHandler
from proton.reactor import Container


def jsonable(v):
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {"hex": bytes(v).hex()}
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    return str(v)


class Sink(MessagingHandler):
    def __init__(self, args):
        super().__init__(auto_accept=False, prefetch=100)
        self.args = args
        self.out = open(args.out, "a", buffering=1)
        self.n = 0
        self.withheld = []

    def on_start(self, event):
        event.container.listen("127.0.0.1:%d" % self.args.port)
        print("SINK READY", flush=True)

    def on_connection_opening(self, event):
        if self.args.anonymous_relay:
            event.connection.offered_capabilities = symbol("ANONYMOUS-RELAY")

    def on_link_opening(self, event):
        # Accept every attach as is (per-topic targets or the anonymous relay).
        if event.link.remote_target.address:
            event.link.target.address = event.link.remote_target.address

    def on_message(self, event):
        self.n += 1
        m = event.message
        d = event.delivery
        special = self.n <= self.args.count
        verdict = self.args.mode if special else "accept"
        if d.settled:
            verdict = "presettled"
        rec = {
            "n": self.n,
            "to": m.address,
            "subject": m.subject,
            "durable": bool(m.durable),
            "delivery_count": m.delivery_count,
            "annotations": jsonable(dict(m.annotations or {})),
            "body": jsonable(m.body),
            "link_target": event.link.remote_target.address,
            "link_rcv_settle_mode": int(event.link.remote_rcv_settle_mode),
            "verdict": verdict,
        }
        self.out.write(json.dumps(rec) + "\n")
        if verdict == "presettled":
            return
        if verdict == "withhold":
            self.withheld.append(d)  # keep it unsettled
        elif verdict == "release":
            self.release(d, delivered=False)
        elif verdict == "reject":
            d.local.condition = Condition("amqp:unauthorized-access", "sink rejects")
            self.reject(d)
        else:
            self.accept(d)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--mode", default="accept",
                    choices=["accept", "withhold", "release", "reject"])
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--anonymous-relay", action="store_true")
    args = ap.parse_args()
    # The harness stops processes with SIGTERM and expects exit status 0.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    try:
        Container(Sink(args)).run()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
