"""A gateway stand-in for will-service tests, as a separate process so that
the test can kill it (-9) to drop its connection the hard way.

  will_client.py --port P --name CLIENT_ID --topic T --payload TEXT --qos N [--retain]

Attaches a sender named CLIENT_ID to $mqtt.lwtservice, sends AMQP_WILL,
prints "WILL accepted" (or the outcome) and then keeps the connection
serviced (heartbeats) until killed.

  will_client.py ... --shared-ids ID1,ID2,...

Instead: attaches one shared will link (L1s, capability mqtt-shared-will)
named CLIENT_ID and sends the will of each id (topic T/<id>, payload
TEXT-<id>), prints "SHARED WILLS accepted N" once all are accepted (else
"SHARED WILLS <outcomes>"), then keeps the connection serviced until killed.
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
    ap.add_argument("--shared-ids", default=None)
    args = ap.parse_args()
    conn = BlockingConnection("amqp://127.0.0.1:%d" % args.port, timeout=10)
    if args.shared_ids is not None:
        ids = [i for i in args.shared_ids.split(",") if i]
        link = will_peers.SharedWillLink(conn, args.name)
        states = link.send_all([will_peers.shared_will_message(
            i, "%s/%s" % (args.topic, i), ("%s-%s" % (args.payload, i)).encode(), args.qos,
            args.retain) for i in ids])
        if states == ["accepted"] * len(ids):
            print("SHARED WILLS accepted %d" % len(ids), flush=True)
        else:
            print("SHARED WILLS %s" % states, flush=True)
    else:
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
