"""will-service group commit: AMQP_WILL / AMQP_WILL_CLEAR / clean-detach
writes of one loop iteration share one store transaction, and a will is
settled `accepted` only after the commit that holds it.

- many wills sent at once are all accepted with far fewer commits than wills
  (gw_will_store_commits_total), and every accepted will survives a kill -9
  that follows the last `accepted` at once (store rows, then published after
  the restart);
- writes of one name in one batch end in the right state (put/clear,
  clear/put, put/clean detach);
- a will whose link is lost while its put is in the open batch is published
  exactly once.

Run: GW_BUILD_DIR=<build> /usr/bin/python3 -m pytest tests/system/test_will_groupcommit.py
"""
import pytest
from proton import Condition, Endpoint
from proton.utils import LinkDetached

import gwtest
import svc_http
from will_peers import (COMMITS, FORCED, HELD, STATE_NAMES, env, payload_of, will_clear_message,
                        will_message, WillLink)  # env: a fixture


def start(env, *extra, grace="0"):
    hport = gwtest.free_port()
    env.start_service("--http-listen", "127.0.0.1:%d" % hport, "--log-level", "info",
                      *extra, grace=grace)
    gwtest.wait_until(lambda: gwtest.port_open(hport), what="http port")
    return hport


def send_nowait(link, msg):
    """Queue an unsettled transfer without waiting for its outcome."""
    return link.link.send(msg)


def wait_outcomes(conn, dlvs, timeout=30):
    conn.wait(lambda: all(d.remote_state in STATE_NAMES or d.settled for d in dlvs),
              timeout=timeout, msg="outcomes of %d will messages" % len(dlvs))
    return [STATE_NAMES.get(d.remote_state, str(d.remote_state)) for d in dlvs]


def test_concurrent_wills_batched_and_durable_across_kill9(env):
    env.start_sink()
    hport = start(env)
    svc_http.wait_ready(hport, 200)

    # 200 links over 4 connections; every will is queued before any outcome
    # is waited for, so the service reads many transfers per loop iteration.
    n_conn, per_conn = 4, 50
    conns = [env.connect() for _ in range(n_conn)]
    links = [[WillLink(c, "gc-%d-%d" % (ci, i)) for i in range(per_conn)]
             for ci, c in enumerate(conns)]
    dlvs = [[send_nowait(l, will_message("gc/%d/%d" % (ci, i), b"p%d.%d" % (ci, i), 1, False))
             for i, l in enumerate(ls)] for ci, ls in enumerate(links)]
    for c, ds in zip(conns, dlvs):
        assert wait_outcomes(c, ds) == ["accepted"] * per_conn
    # Right after the last `accepted`: no clean shutdown, no chance to flush.
    env.service.kill9()
    total = n_conn * per_conn

    # Durable: every accepted will is a committed row (the WAL is read back).
    rows = {r["name"]: r for r in env.rows("wills")}
    for ci in range(n_conn):
        for i in range(per_conn):
            r = rows.get("gc-%d-%d" % (ci, i))
            assert r is not None, "accepted will gc-%d-%d lost" % (ci, i)
            assert r["topic"] == "gc/%d/%d" % (ci, i)
            assert bytes(r["payload"]) == b"p%d.%d" % (ci, i)
    assert len(rows) == total

    # After the restart (grace 0) every one of them is published, once.
    env.conns = []  # their peer is dead: closing would wait for a time-out
    start(env)
    env.wait_received(total, timeout=30)
    env.wait_store_empty(timeout=30)
    got = sorted(r["to"] for r in env.received())
    assert got == sorted("gc/%d/%d" % (ci, i) for ci in range(n_conn) for i in range(per_conn))


def test_commits_far_below_wills(env):
    env.start_sink()
    hport = start(env)
    svc_http.wait_ready(hport, 200)
    commits0 = svc_http.value(hport, COMMITS)
    lat0 = svc_http.value(hport, "gw_will_store_seconds_count")

    conn = env.connect()
    links = [WillLink(conn, "gb-%d" % i) for i in range(200)]
    dlvs = [send_nowait(l, will_message("gb/%d" % i, b"x", 0, False))
            for i, l in enumerate(links)]
    assert wait_outcomes(conn, dlvs) == ["accepted"] * 200
    m = svc_http.wait_value(hport, "gw_will_stored_total", 200)
    assert m[("gw_will_wills", HELD)] == 200
    commits = m[(COMMITS, "")] - commits0
    batches = m[("gw_will_store_seconds_count", "")] - lat0
    assert 1 <= commits <= 50, "%d commits for 200 wills" % commits
    assert batches == commits  # the latency histogram observes each commit

    # Clean detaches: deletes go into batches too.
    commits0 = m[(COMMITS, "")]
    for link in links:
        link.link.close()
    conn.wait(lambda: all(l.link.state & Endpoint.REMOTE_CLOSED for l in links), timeout=30,
              msg="detaches")
    m = svc_http.wait_value(hport, "gw_will_wills", 0, HELD)
    assert m[(COMMITS, "")] - commits0 <= 100
    assert not env.rows("wills")


def test_batch_max_bounds_the_batch(env):
    env.start_sink()
    hport = start(env, "--batch-max", "10")
    svc_http.wait_ready(hport, 200)
    commits0 = svc_http.value(hport, COMMITS)
    conn = env.connect()
    links = [WillLink(conn, "bm-%d" % i) for i in range(100)]
    dlvs = [send_nowait(l, will_message("bm/%d" % i, b"x", 1, False))
            for i, l in enumerate(links)]
    assert wait_outcomes(conn, dlvs) == ["accepted"] * 100
    m = svc_http.wait_value(hport, "gw_will_stored_total", 100)
    assert m[(COMMITS, "")] - commits0 >= 10  # 100 writes, at most 10 per commit


def test_same_name_in_one_batch_ends_right(env):
    env.start_sink()
    hport = start(env)
    svc_http.wait_ready(hport, 200)
    conn = env.connect()

    # put then clear on one link, back to back: gone.
    a = WillLink(conn, "pc")
    ds = [send_nowait(a, will_message("pc/1", b"1", 1, False)),
          send_nowait(a, will_clear_message())]
    assert wait_outcomes(conn, ds) == ["accepted", "accepted"]
    # clear then put: present with the put.
    b = WillLink(conn, "cp")
    ds = [send_nowait(b, will_clear_message()),
          send_nowait(b, will_message("cp/2", b"2", 1, True))]
    assert wait_outcomes(conn, ds) == ["accepted", "accepted"]
    # put, put: the last one wins.
    c = WillLink(conn, "pp")
    ds = [send_nowait(c, will_message("pp/1", b"1", 0, False)),
          send_nowait(c, will_message("pp/2", b"2", 2, False))]
    assert wait_outcomes(conn, ds) == ["accepted", "accepted"]
    # put then clean detach at once: the delete follows the put, nothing stays.
    d = WillLink(conn, "pd")
    # the transfer must leave before the detach: wait for the WS's credit
    conn.wait(lambda: d.link.credit > 0, timeout=10, msg="credit on pd")
    send_nowait(d, will_message("pd/1", b"1", 1, False))
    d.link.close()
    try:
        conn.wait(lambda: d.link.state & Endpoint.REMOTE_CLOSED, timeout=10, msg="detach")
    except LinkDetached:
        pass

    def settled_state():
        rows = {r["name"]: r for r in env.rows("wills")}
        return "pd" not in rows and "cp" in rows and rows

    rows = gwtest.wait_until(settled_state, what="final store state")
    assert "pc" not in rows
    assert rows["cp"]["topic"] == "cp/2" and rows["cp"]["retain"] == 1
    assert rows["pp"]["topic"] == "pp/2" and rows["pp"]["qos"] == 2
    m = svc_http.wait_value(hport, "gw_will_wills", 2, HELD)
    # pd's put counts when the service read it before the detach; under load
    # (full suite) it sometimes does not: the state checks above are the
    # point, the put of a link closed cleanly is deleted either way.
    assert m[("gw_will_stored_total", "")] in (4, 5)
    assert m[("gw_will_cleared_total", "")] == 2
    assert env.received() == []  # nothing published by any of this


def test_link_lost_while_put_in_open_batch_published_once(env):
    env.start_sink()
    hport = start(env)
    svc_http.wait_ready(hport, 200)
    conn = env.connect()
    # The transfer and the detach-with-error leave in one write: the detach
    # is handled while the put is still in the open batch.
    links = [WillLink(conn, "lost-%d" % i) for i in range(20)]
    for i, l in enumerate(links):
        send_nowait(l, will_message("lost/%d" % i, b"L%d" % i, 1, False))
        l.link.condition = Condition(FORCED, "keep-alive")
        l.link.close()
    try:
        conn.wait(lambda: all(l.link.state & Endpoint.REMOTE_CLOSED for l in links),
                  timeout=10, msg="detaches")
    except LinkDetached:
        pass
    env.wait_received(20, timeout=20)
    env.wait_store_empty(timeout=20)
    recs = env.received()
    assert sorted(r["to"] for r in recs) == sorted("lost/%d" % i for i in range(20))
    assert {r["to"]: payload_of(r) for r in recs} == {"lost/%d" % i: b"L%d" % i
                                                     for i in range(20)}
    m = svc_http.wait_value(hport, "gw_will_published_total", 20, 'qos="1"')
    assert m[("gw_will_wills", HELD)] == 0
