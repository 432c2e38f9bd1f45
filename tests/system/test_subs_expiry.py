"""subscription-service --session-expiry: a persistent session offline longer
than the expiry is deleted with its subscriptions and queued messages (what
mosquitto calls persistent_client_expiration); an online one never is; the
time offline is stored and counts across a restart.

Run: GW_BUILD_DIR=<build> /usr/bin/python3 -m pytest tests/system/test_subs_expiry.py
"""
import sqlite3
import time

import gwtest
import svc_http
from subs_peer import GatewaySession, publish_msg, start_with_http, clients  # noqa: F401 (clients: fixture)

PERSISTENT = 'kind="persistent"'


def rows(svc, sql, *args):
    db = sqlite3.connect(svc.store, timeout=5)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def offline_at(svc, cid):
    r = rows(svc, "SELECT offline_at FROM sessions WHERE id = ?", cid)
    return r[0][0] if r else "gone"


def persistent(c, cid, filters, grant=True):
    g = GatewaySession(c, cid)
    assert g.list()[0] == "accepted"
    assert g.subscribe(filters)[0] == "accepted"
    if grant:
        g.grant()
    return g


def publish(c, topic, body, qos=1):
    tx = c.sender(None)
    assert c.wait_outcome(c.send(tx, publish_msg(topic, body, qos=qos))) == "accepted"


def test_offline_session_expires_online_one_stays(procs, tmp_path, clients):
    svc = start_with_http(procs, tmp_path, "--session-expiry", "1500ms")
    off = clients(svc.port)
    persistent(off, "ex.gone", {"ex/#": 1}, grant=False)
    on = clients(svc.port)
    g_on = persistent(on, "ex.stay", {"ex/#": 1})
    off.stop(clean=False)  # ex.gone's gateway connection is lost: offline
    t_off = time.time()
    pub = clients(svc.port)
    publish(pub, "ex/a", b"queued")
    on.settle(g_on.wait_msgs(1)[0])
    assert rows(svc, "SELECT count(*) FROM queue WHERE id = 'ex.gone'") == [(1,)]
    # the sweep records when it went offline (epoch ms), in the store
    gwtest.wait_until(lambda: isinstance(offline_at(svc, "ex.gone"), int), what="offline_at")
    assert abs(offline_at(svc, "ex.gone") / 1000 - t_off) < 2
    assert offline_at(svc, "ex.stay") is None

    svc_http.wait_value(svc.hport, "gw_subs_sessions_expired_total", 1, timeout=10)
    assert time.time() - t_off >= 1.5
    # the delete commits with the next batch
    gwtest.wait_until(lambda: offline_at(svc, "ex.gone") == "gone", what="session row gone")
    assert rows(svc, "SELECT count(*) FROM subs WHERE id = 'ex.gone'") == [(0,)]
    assert rows(svc, "SELECT count(*) FROM queue WHERE id = 'ex.gone'") == [(0,)]
    assert rows(svc, "SELECT count(*) FROM msgs") == [(0,)]  # no queue row refers to it
    assert svc_http.value(svc.hport, "gw_subs_sessions", PERSISTENT) == 1
    assert "persistent session offline for" in svc.proc.log()

    # the client comes back: a new session, nothing queued
    back = clients(svc.port)
    g = GatewaySession(back, "ex.gone")
    outcome, subs, present, _ = g.list()
    assert (outcome, subs, present) == ("accepted", {}, False)
    # ex.stay was online all along (longer than the expiry): still there
    assert svc_http.value(svc.hport, "gw_subs_sessions_expired_total") == 1
    again = clients(svc.port)
    outcome, subs, present, _ = GatewaySession(again, "ex.stay").list()  # takeover
    assert (subs, present) == ({"ex/#": 1}, True)


def test_back_online_clears_the_offline_time(procs, tmp_path, clients):
    svc = start_with_http(procs, tmp_path, "--session-expiry", "2s")
    c = clients(svc.port)
    persistent(c, "ex.back", {"b/#": 1})
    c.stop(clean=False)
    gwtest.wait_until(lambda: isinstance(offline_at(svc, "ex.back"), int), what="offline_at")
    c2 = clients(svc.port)
    g2 = GatewaySession(c2, "ex.back")
    assert g2.list()[2] is True
    g2.grant()
    gwtest.wait_until(lambda: offline_at(svc, "ex.back") is None, what="offline_at cleared")
    # online for longer than the expiry: kept
    t0 = time.monotonic()
    gwtest.wait_until(lambda: time.monotonic() - t0 > 2.5, what="2.5 s online", timeout=5)
    assert svc_http.value(svc.hport, "gw_subs_sessions_expired_total") == 0
    assert svc_http.value(svc.hport, "gw_subs_sessions", PERSISTENT) == 1


def test_offline_time_counts_across_restart(procs, tmp_path, clients):
    expiry = 4.0
    svc = start_with_http(procs, tmp_path, "--session-expiry", "4s")
    c = clients(svc.port)
    persistent(c, "ex.rs", {"r/#": 1}, grant=False)
    c.stop(clean=False)
    gwtest.wait_until(lambda: isinstance(offline_at(svc, "ex.rs"), int), what="offline_at")
    t_off = offline_at(svc, "ex.rs") / 1000
    # restart 3 s into the 4 s: the session must go ~1 s after the restart,
    # not 4 s (as it would if a restart reset the clock)
    gwtest.wait_until(lambda: time.time() - t_off > expiry - 1, what="3 s offline", timeout=10)
    svc.proc.stop()
    assert svc.proc.proc.returncode == 0
    assert isinstance(offline_at(svc, "ex.rs"), int)
    hport2 = gwtest.free_port()
    svc.extra = ["--http-listen", "127.0.0.1:%d" % hport2, "--session-expiry", "4s"]
    svc.start()
    t_restart = time.time()
    gwtest.wait_until(lambda: gwtest.port_open(hport2), what="http port")
    svc_http.wait_value(hport2, "gw_subs_sessions_expired_total", 1, timeout=10)
    assert time.time() - t_restart < expiry - 0.5
    assert time.time() - t_off >= expiry
    gwtest.wait_until(lambda: offline_at(svc, "ex.rs") == "gone", what="session row gone")


def test_bad_values_refused(procs, tmp_path):
    import subprocess
    for bad in ("-1s", "11y", "soon"):
        r = subprocess.run([gwtest.binary("services", "subscription", "subscription-service"),
                            "--listen", "127.0.0.1:0", "--store", str(tmp_path / "x.db"),
                            "--session-expiry", bad], capture_output=True, text=True, timeout=20)
        assert r.returncode == 2 and "session-expiry" in r.stderr, (bad, r.stderr)
