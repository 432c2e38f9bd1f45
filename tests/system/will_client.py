"""A gateway stand-in for will-service tests, as a separate process so that
the test can kill it (-9) to drop its connection the hard way.

  will_client.py --port P --name CLIENT_ID --topic T --payload TEXT --qos N [--retain]

Attaches a sender named CLIENT_ID to $mqtt.lwtservice, sends AMQP_WILL,
prints "WILL accepted" (or the outcome) and then keeps the connection
serviced (heartbeats) until killed.
"""
import argparse
import sys

from proton import Timeout
from proton.utils import BlockingConnection

import will_peers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--payload", default="")
    ap.add_argument("--qos", type=int, default=1)
    ap.add_argument("--retain", action="store_true")
    args = ap.parse_args()
    conn = BlockingConnection("amqp://127.0.0.1:%d" % args.port, timeout=10)
    link = will_peers.WillLink(conn, args.name)
    state, cond, desc = link.send(will_peers.will_message(
        args.topic, args.payload.encode(), args.qos, args.retain))
    print("WILL %s" % state, flush=True)
    while True:
        try:
            conn.wait(lambda: False, timeout=3600)
        except Timeout:
            pass


if __name__ == "__main__":
    sys.exit(main())
