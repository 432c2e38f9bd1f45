"""will-service behind a Qpid Dispatch Router: link-routed will links arrive
renamed "<client id>@<gateway container id>"; on router connections
(--connect) the will-service keys wills by the name without that suffix, so
that the steal across gateways (spec 5.1) and the adoption of an orphaned
will after a restart work through the router as they do directly.

Run: GW_BUILD_DIR=<build> /usr/bin/python3 -m pytest tests/system/test_will_router_names.py
"""
import os
import signal

import pytest

import gwtest
import will_peers
from will_peers import (env, payload_of)  # env: a fixture


def router(env, name, links, *extra):
    port = gwtest.free_port()
    args = [will_peers.PY, os.path.join(will_peers.HERE, "will_router_names.py"),
            "--port", str(port), "--topic", "dev/" + name]
    for link in links:
        args += ["--link", link]
    return port, env.procs.start(args + list(extra), name, ready_port=port)


def wait_log(proc, text, timeout=10):
    gwtest.wait_until(lambda: text in proc.log(), timeout=timeout, what=repr(text))


def test_steal_across_gateways_through_router(env):
    env.start_sink()
    trigger = str(env.tmp / "lost")
    port, r = router(env, "steal", ["c1@gw-a-w1", "c1@gw-b-w1"], "--trigger", trigger)
    env.start_service("--connect", "amqp://127.0.0.1:%d" % port)
    wait_log(r, "WILL accepted c1@gw-b-w1")
    # The older link (other gateway) was detached as stolen: no will published.
    wait_log(r, "DETACHED c1@gw-a-w1 amqp:link:stolen")
    rows = env.rows()
    assert [row["name"] for row in rows] == ["c1"]
    assert rows[0]["topic"] == "dev/steal/1"
    # The newer link is lost: its own will (not the stolen one's) is published.
    open(trigger, "w").close()
    recs = env.wait_received(1)
    assert [rec["to"] for rec in recs] == ["dev/steal/1"]
    assert payload_of(recs[0]) == b"via-router-1"
    env.wait_store_empty()


def test_orphan_adopted_after_restart_through_router(env):
    env.start_sink()
    port, r1 = router(env, "before", ["c2@gw-a-w1"])
    env.start_service("--connect", "amqp://127.0.0.1:%d" % port)
    wait_log(r1, "WILL accepted c2@gw-a-w1")
    env.service.signal(signal.SIGTERM)   # a stop keeps the wills
    env.service.proc.wait(timeout=10)
    assert env.service.proc.returncode == 0
    assert [row["name"] for row in env.rows()] == ["c2"]

    # The client is back through another gateway (another container id)
    # before the grace period ends: it owns the stored will again.
    trigger = str(env.tmp / "lost2")
    port2, r2 = router(env, "after", ["c2@gw-b-w3"], "--no-will", "--trigger", trigger)
    env.start_service("--connect", "amqp://127.0.0.1:%d" % port2, grace="30")
    wait_log(r2, "ATTACHED c2@gw-b-w3")
    env.wait_log("within the grace period): will kept")
    assert env.received() == []
    # Its link is lost: the will it adopted is published at once (not after 30 s).
    open(trigger, "w").close()
    recs = env.wait_received(1, timeout=10)
    assert [rec["to"] for rec in recs] == ["dev/before/0"]
    env.wait_store_empty()


def test_direct_connections_keep_the_at_sign(env):
    # Only router connections strip the suffix: directly, "a@b" is a client id.
    env.start_sink()
    env.start_service()
    conn = env.connect()
    for name in ("x@y", "x"):
        link = will_peers.WillLink(conn, name)
        assert link.send(will_peers.will_message("t/" + name, b"p", 1, False))[0] == "accepted"
    assert sorted(row["name"] for row in env.rows()) == ["x", "x@y"]
