"""subscription-service operations (issue 6) and the transient-session bound
(issue 5 fix): /readyz and /metrics on --http-listen, SIGHUP, SIGTERM, and a
transient session created by a control message for a client that attaches no
link being dropped after --transient-timeout.

Run: GW_BUILD_DIR=<build> /usr/bin/python3 -m pytest tests/system/test_subs_ops.py
"""
import json
import signal
import time

import pytest
from proton import Message, ulong

import gwtest
import svc_http
from subs_peer import Client, GatewaySession, Service, publish_msg, clients  # noqa: F401 (clients: fixture)

PERSISTENT = 'kind="persistent"'
TRANSIENT = 'kind="transient"'


@pytest.fixture
def hport():
    return gwtest.free_port()


def start(procs, tmp_path, hport, *extra):
    s = Service(procs, tmp_path, extra=["--http-listen", "127.0.0.1:%d" % hport] +
                list(extra)).start()
    gwtest.wait_until(lambda: gwtest.port_open(hport), what="http port")
    return s


def ghost_subscribe(c, tx, cid, filters, pid=1):
    """AMQP_SUBSCRIBE for cid on the control link of another client: no link of cid."""
    m = Message(subject="subscribe", correlation_id="$mqtt.to.%s.publish" % cid, body=filters)
    m.id = ulong(pid)
    return c.wait_outcome(c.send(tx, m))


def test_readyz_and_metrics(procs, tmp_path, hport, clients):
    svc = start(procs, tmp_path, hport)
    assert svc_http.get(hport, "/healthz")[0] == 200
    assert svc_http.wait_ready(hport, 200).strip() == "ready"
    m = svc_http.metrics(hport)
    assert m[("gw_subs_sessions", PERSISTENT)] == 0
    assert m[("gw_subs_commit_seconds_count", "")] == 0

    c = clients(svc.port)
    g = GatewaySession(c, "p1")
    assert g.list()[0] == "accepted"
    assert g.subscribe({"a/+": 1, "b": 0, "q2/#": 2})[0] == "accepted"
    m = svc_http.wait_value(hport, "gw_subs_subscriptions", 3)
    assert m[("gw_subs_sessions", PERSISTENT)] == 1
    assert m[("gw_subs_sessions", TRANSIENT)] == 0

    t = GatewaySession(c, "t1")
    assert t.close() == "accepted"
    svc_http.wait_value(hport, "gw_subs_sessions", 1, TRANSIENT)

    # p1 has no credit yet: publications queue.
    tx = c.sender(None, name="relay")
    for topic, body, qos, retain in [("a/x", b"12345", 1, True), ("b", b"123", 0, False),
                                     ("q2/z", b"1234567", 2, False)]:
        out = c.send(tx, publish_msg(topic, body, qos=qos, retain=retain), settled=qos == 0)
        if qos:
            assert c.wait_outcome(out) == "accepted"
    m = svc_http.wait_value(hport, "gw_subs_messages_in_total", 1, 'qos="0"')
    assert m[("gw_subs_messages_in_total", 'qos="1"')] == 1
    assert m[("gw_subs_messages_in_total", 'qos="2"')] == 1
    assert m[("gw_subs_retained_messages", "")] == 1
    # QoS 0 for an online-but-not-ready client is queued too? Only QoS>0 are
    # certain to be queued: count what the service holds.
    assert m[("gw_subs_queued_messages", "")] >= 2
    assert m[("gw_subs_queued_bytes", "")] >= 12
    assert m[("gw_subs_commits_total", "")] >= 1
    assert m[("gw_subs_commit_seconds_count", "")] == m[("gw_subs_commits_total", "")]
    assert m[("gw_subs_commit_seconds_bucket", 'le="+Inf"')] == \
        m[("gw_subs_commit_seconds_count", "")]

    g.grant()
    msgs = g.wait_msgs(2)
    m = svc_http.wait_value(hport, "gw_subs_messages_out_total", 1, 'qos="2"')
    assert m[("gw_subs_messages_out_total", 'qos="1"')] == 1
    for rec in msgs:
        c.settle(rec, "accept")
    # QoS 1 done on accept; the QoS 2 copy waits for AMQP_PUBREL.
    q2 = [r for r in msgs if r["to"] == "q2/z"][0]
    assert g.pubrel(q2["id"]) == "accepted"
    svc_http.wait_value(hport, "gw_subs_queued_messages", 0)
    assert svc_http.value(hport, "gw_subs_queued_bytes") == 0

    # A second gateway's links for p1: the first ones are stolen.
    c2 = clients(svc.port)
    GatewaySession(c2, "p1")
    svc_http.wait_value(hport, "gw_subs_stolen_links_total", 2)


def test_drops_counted_by_policy(procs, tmp_path, hport, clients):
    svc = start(procs, tmp_path, hport, "--max-queued-messages", "2",
                "--overflow-policy", "drop-oldest")
    c = clients(svc.port)
    g = GatewaySession(c, "d1")
    assert g.list()[0] == "accepted"
    assert g.subscribe({"d": 1})[0] == "accepted"
    # Offline: the bound and the overflow policy apply only to offline
    # sessions (an online one gets back-pressure). Same connection: the
    # detach is processed before the transfers below.
    c.close_link(g.pub.link)
    tx = c.sender(None, name="relay")
    for i in range(5):
        assert c.wait_outcome(c.send(tx, publish_msg("d", b"%d" % i, qos=1))) == "accepted"
    m = svc_http.wait_value(hport, "gw_subs_drops_total", 3, 'reason="drop-oldest"')
    assert m[("gw_subs_drops_total", 'reason="drop-new"')] == 0
    assert m[("gw_subs_queued_messages", "")] == 2


def test_transient_session_without_links_expires(procs, tmp_path, hport, clients):
    svc = start(procs, tmp_path, hport, "--transient-timeout", "400ms")
    c = clients(svc.port)
    # A real client with its links: must survive the sweep.
    live = GatewaySession(c, "live")
    assert live.close() == "accepted"
    assert live.subscribe({"live/#": 1})[0] == "accepted"
    # A control message for "ghost", which never attaches a link.
    tx = c.sender(GatewaySession.CTRL, name="ctl-other")
    assert ghost_subscribe(c, tx, "ghost", {"g/#": 1}) == "accepted"
    m = svc_http.wait_value(hport, "gw_subs_sessions", 2, TRANSIENT)
    assert m[("gw_subs_subscriptions", "")] == 2
    t0 = time.monotonic()
    m = svc_http.wait_value(hport, "gw_subs_transient_expired_total", 1, timeout=5)
    elapsed = time.monotonic() - t0
    assert 0.2 < elapsed < 3.0, elapsed
    assert m[("gw_subs_sessions", TRANSIENT)] == 1
    assert m[("gw_subs_subscriptions", "")] == 1
    # The ghost's subscription is gone: publications to g/# reach nobody and
    # are not queued; live still gets its own.
    live.grant()
    out = c.send(c.sender(None, name="relay"), publish_msg("g/1", b"x", qos=1))
    assert c.wait_outcome(out) == "accepted"
    out = c.send(c.sender(None, name="relay2"), publish_msg("live/1", b"y", qos=1))
    assert c.wait_outcome(out) == "accepted"
    assert [r["to"] for r in live.wait_msgs(1)] == ["live/1"]
    assert svc_http.value(hport, "gw_subs_queued_messages") == 1
    # Links keep a transient session alive past the timeout: only the ghost expired.
    expired = [line for line in svc.proc.log().splitlines()
               if "transient session without links" in line]
    assert len(expired) == 1 and "ghost" in expired[0], expired


def test_persistent_session_without_links_is_kept(procs, tmp_path, hport, clients):
    svc = start(procs, tmp_path, hport, "--transient-timeout", "200ms")
    c = clients(svc.port)
    g = GatewaySession(c, "keep")
    assert g.list()[0] == "accepted"
    assert g.subscribe({"k": 1})[0] == "accepted"
    for link in (g.ctl.link, g.pub.link):
        c.close_link(link)
    # A transient canary, created after the persistent session went offline,
    # expires: by then the persistent one has been swept at least as often.
    tx = c.sender(GatewaySession.CTRL, name="ctl-canary")
    assert ghost_subscribe(c, tx, "canary", {"c": 1}) == "accepted"
    m = svc_http.wait_value(hport, "gw_subs_transient_expired_total", 1, timeout=5)
    assert m[("gw_subs_sessions", PERSISTENT)] == 1
    assert m[("gw_subs_subscriptions", "")] == 1


def test_sighup_and_sigterm(procs, tmp_path, hport, clients):
    cfg = tmp_path / "subs.json"
    cfg.write_text(json.dumps({"log-level": "warn"}))
    port = gwtest.free_port()
    args = [gwtest.binary("services", "subscription", "subscription-service"),
            "--config", str(cfg), "--listen", "127.0.0.1:%d" % port,
            "--store", str(tmp_path / "s.db"), "--http-listen", "127.0.0.1:%d" % hport]
    p = procs.start(args, "subs-hup", ready_port=port)
    c = clients(port)
    g = GatewaySession(c, "h1")
    assert g.list()[0] == "accepted"
    assert "AMQP_SUBSCRIPTIONS sent" not in p.log()   # DEBUG, level warn
    cfg.write_text(json.dumps({"log-level": "debug"}))
    p.signal(signal.SIGHUP)
    gwtest.wait_until(lambda: "configuration reloaded log-level=debug" in p.log(),
                      what="reload logged")
    assert g.list()[0] == "accepted"
    gwtest.wait_until(lambda: "AMQP_SUBSCRIPTIONS sent" in p.log(), what="debug line")
    t0 = time.monotonic()
    p.signal(signal.SIGTERM)
    p.proc.wait(timeout=10)
    assert p.proc.returncode == 0
    assert time.monotonic() - t0 < 5.0  # the stop bound is 3 s
    # Links were detached cleanly (a close, not a transport drop).
    c.wait_for(lambda: c.down, what="connection closed by the service")
