"""subscription-service: no acknowledged message is lost (spec 6 back-pressure).

An online subscriber slower than its publishers is never cut short: the
publisher stops getting credit (and so stops being acknowledged) while the
subscriber's queue is above --online-high-watermark. An offline persistent
session holds a long queue (packet ids are given at the first transfer, so
the queue is not bounded by 65535) and drains it completely.
"""
import os
import struct
import sys
import time

import gwtest
from subs_peer import GatewaySession, Service, clients  # noqa: F401 (clients: fixture)

HERE = os.path.dirname(os.path.abspath(__file__))
BULK = os.path.join(HERE, "subs_bulk.py")


def bulk(procs, port, topic, n, every=2000, name="bulk"):
    return procs.start([sys.executable, BULK, str(port), topic, str(n), str(every)], name)


def accepted_so_far(p):
    """Highest "progress N" / "accepted N" the publisher printed."""
    best = 0
    for line in p.log().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("progress", "accepted"):
            best = max(best, int(parts[1]))
    return best


def seqs(msgs):
    return [struct.unpack(">Q", m["body"])[0] for m in msgs]


def bp_service(procs, tmp_path, hwm, credit, stall):
    """A subscription-service with a small online high watermark."""
    return Service(procs, tmp_path, ["--online-high-watermark", str(hwm),
                                     "--link-credit", str(credit),
                                     "--backpressure-stall", stall]).start()


def held_subscriber(c, cid, filt):
    """A persistent session online with no credit: its queue can only grow."""
    g = GatewaySession(c, cid)
    assert g.list()[0] == "accepted"
    assert g.subscribe({filt: 1})[0] == "accepted"
    return g


def test_slow_online_subscriber_backpressure_no_loss(procs, tmp_path, clients):
    hwm, credit, n = 100, 50, 4000
    svc = bp_service(procs, tmp_path, hwm, credit, "60s")
    c = clients(svc.port)
    g = held_subscriber(c, "slow", "bp/#")
    # Online (L4 attached) but no credit yet: the queue can only grow.
    pub = bulk(procs, svc.port, "bp/x", n, every=10)
    # The publisher gets at most hwm + one credit window through, then waits.
    gwtest.wait_until(lambda: accepted_so_far(pub) >= hwm and (
        accepted_so_far(pub) >= 2000 or "publisher credit withheld" in svc.proc.log()),
        timeout=30, what="back-pressure on")
    # While the subscriber takes nothing, no credit comes back: the publisher
    # stays below the bound at any moment (old behaviour: all n accepted,
    # then dropped from the full queue).
    assert pub.alive()
    assert accepted_so_far(pub) <= hwm + credit
    # Slow consumer: a few messages at a time, each settled on its own.
    got = []
    while len(got) < n:
        if not g.pub.messages:
            g.grant(8)
        c.wait_for(lambda: len(g.pub.messages) > 0, timeout=20,
                   what="next message (have %d)" % len(got))
        with c.lock:
            batch = list(g.pub.messages)
            del g.pub.messages[:]
        for rec in batch:
            c.settle(rec, "accept", flow=0)
        got.extend(batch)
    gwtest.wait_until(lambda: not pub.alive(), timeout=30, what="publisher done")
    assert pub.stop() == 0
    assert "accepted %d" % n in pub.log()
    # Every accepted message delivered, exactly once, in order.
    assert seqs(got) == list(range(n))
    assert all(m["delivery_count"] == 0 for m in got)
    svc.proc.stop()
    log = svc.proc.log()
    assert "queue full" not in log
    assert "dropped=0" in log


def test_backpressure_holds_only_the_publishers_that_feed_the_slow_queue(procs, tmp_path,
                                                                         clients):
    """Spec 6.3 rule 4: while 'slow' is above the mark, the publisher that
    feeds it gets no credit back, but a publisher whose messages go
    elsewhere (a fast subscriber, or nobody) keeps going."""
    hwm, credit, n = 100, 50, 3000
    svc = bp_service(procs, tmp_path, hwm, credit, "60s")
    c = clients(svc.port)
    slow = held_subscriber(c, "slow", "bp/slow/#")
    fast = GatewaySession(c, "fast")
    assert fast.close() == "accepted"
    assert fast.subscribe({"bp/fast/#": 1})[0] == "accepted"
    fast.pub.auto_accept = True
    fast.grant(1000)
    held = bulk(procs, svc.port, "bp/slow/x", n, every=10, name="held")
    gwtest.wait_until(lambda: "publisher credit withheld" in svc.proc.log(), timeout=30,
                      what="back-pressure on")
    # the other publishers run to the end while 'slow' stays above the mark
    free = bulk(procs, svc.port, "bp/fast/y", n, every=500, name="free")
    nobody = bulk(procs, svc.port, "bp/nobody", n, every=500, name="nobody")
    for p in (free, nobody):
        gwtest.wait_until(lambda p=p: not p.alive(), timeout=60, what="%s done" % p.name)
        assert p.stop() == 0 and "accepted %d" % n in p.log()
    fast.wait_msgs(n, timeout=30)
    assert held.alive()
    assert accepted_so_far(held) <= hwm + credit
    # the slow subscriber drains: the held publisher finishes, nothing lost
    slow.pub.auto_accept = True
    slow.grant(1000)
    gwtest.wait_until(lambda: not held.alive(), timeout=60, what="held publisher done")
    assert held.stop() == 0 and "accepted %d" % n in held.log()
    assert seqs(slow.wait_msgs(n, timeout=30)) == list(range(n))


def test_stalled_backpressure_gives_credit_once_per_period(procs, tmp_path, clients):
    """A queue above the mark that does not drain at all (its client also
    publishes and its gateway waits for our credit) must not hold publishers
    forever: after --backpressure-stall one credit window goes through."""
    hwm, credit, n = 50, 20, 300
    svc = bp_service(procs, tmp_path, hwm, credit, "100ms")
    c = clients(svc.port)
    g = held_subscriber(c, "stuck", "st/#")
    pub = bulk(procs, svc.port, "st/x", n, every=10)
    gwtest.wait_until(lambda: not pub.alive(), timeout=60, what="publisher done")
    assert pub.stop() == 0
    assert "accepted %d" % n in pub.log()
    assert "publisher credit given back once" in svc.proc.log()
    g.pub.auto_accept = True
    g.grant(100)
    msgs = g.wait_msgs(n, timeout=30)
    assert seqs(msgs) == list(range(n))
    svc.proc.stop()
    assert "dropped=0" in svc.proc.log()


def drain_count():
    return int(os.environ.get("GW_SUBS_DRAIN_COUNT", "100000"))


def test_offline_queue_long_drained_completely(procs, tmp_path, clients):
    n = drain_count()
    svc = Service(procs, tmp_path, ["--log-level", "info"]).start()
    c = clients(svc.port)
    held_subscriber(c, "off", "off/#")
    c.stop(clean=True)  # offline, persistent (LIST seen, no CLOSE)
    t0 = time.monotonic()
    pub = bulk(procs, svc.port, "off/q", n)
    gwtest.wait_until(lambda: not pub.alive(), timeout=600, what="publisher done")
    assert pub.stop() == 0
    assert "accepted %d" % n in pub.log()
    t_pub = time.monotonic() - t0
    # Back online: every one of them, in order, with packet ids unique among
    # those in flight (given at the first transfer, n may exceed 65535).
    c2 = clients(svc.port)
    g2 = GatewaySession(c2, "off", credit=500)
    g2.pub.auto_accept = True
    assert g2.list()[0] == "accepted"
    t1 = time.monotonic()
    g2.grant()
    g2.wait_msgs(n, timeout=600)
    t_drain = time.monotonic() - t1
    with c2.lock:
        msgs = list(g2.pub.messages)
    assert seqs(msgs) == list(range(n))
    ids = [m["id"] for m in msgs]
    assert all(1 <= int(i) <= 65535 for i in ids)
    svc.proc.stop()
    log = svc.proc.log()
    assert "queue full" not in log and "dropped=0" in log
    print("offline drain n=%d publish %.1fs (%.0f msg/s) drain %.1fs (%.0f msg/s)"
          % (n, t_pub, n / t_pub, t_drain, n / t_drain))


def test_packet_id_given_at_send_survives_kill9(procs, tmp_path, clients):
    """QoS 2 copies queued offline get their packet ids when first sent; those
    ids are durable before the transfer: after kill -9 the same ids come
    again with delivery-count > 0, and the copies never sent follow."""
    svc = Service(procs, tmp_path).start()
    c = clients(svc.port)
    g = GatewaySession(c, "k2")
    assert g.list()[0] == "accepted"
    assert g.subscribe({"k2/#": 2})[0] == "accepted"
    c.stop(clean=False)
    pubc = clients(svc.port)
    tx = pubc.sender(None)
    from subs_peer import publish_msg
    for i in range(5):
        assert pubc.wait_outcome(pubc.send(tx, publish_msg("k2/t", b"%d" % i, qos=2))) == \
            "accepted"
    c2 = clients(svc.port)
    g2 = GatewaySession(c2, "k2", credit=2)
    assert g2.list()[0] == "accepted"
    g2.grant()
    first = g2.wait_msgs(2)  # two in flight (credit 2), three still queued
    assert [m["body"] for m in first] == [b"0", b"1"]
    ids = [int(m["id"]) for m in first]
    assert all(m["delivery_count"] == 0 for m in first)
    svc.proc.kill9()
    c2.stop(clean=False)
    svc.start()
    c3 = clients(svc.port)
    g3 = GatewaySession(c3, "k2", credit=10)
    assert g3.list()[0] == "accepted"
    g3.grant()
    again = g3.wait_msgs(5)
    assert [m["body"] for m in again] == [b"0", b"1", b"2", b"3", b"4"]
    assert [int(m["id"]) for m in again[:2]] == ids
    assert all(m["delivery_count"] > 0 for m in again[:2])
    assert all(m["delivery_count"] == 0 for m in again[2:])
    later = [int(m["id"]) for m in again[2:]]
    assert len(set(later + ids)) == 5  # unique among the unacknowledged
