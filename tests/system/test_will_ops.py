"""will-service operations (issue 6): /healthz, /readyz and /metrics on
--http-listen, SIGHUP reload of the log level, SIGTERM bound.

Run: GW_BUILD_DIR=<build> /usr/bin/python3 -m pytest tests/system/test_will_ops.py
"""
import json
import signal
import time

import pytest

import gwtest
import svc_http
from will_peers import (FORCED, HELD, env, will_clear_message, will_message,
                        WillLink)  # env: a fixture


def start(env, *extra):
    hport = gwtest.free_port()
    env.start_service("--http-listen", "127.0.0.1:%d" % hport, *extra)
    gwtest.wait_until(lambda: gwtest.port_open(hport), what="http port")
    return hport


def test_readyz_follows_publisher_connection(env):
    # The publish sink is not there yet: the service is alive, not ready.
    hport = start(env)
    assert svc_http.get(hport, "/healthz")[0] == 200
    body = svc_http.wait_ready(hport, 503)
    assert "publish" in body
    assert svc_http.value(hport, "gw_will_publisher_up") == 0
    env.start_sink()
    svc_http.wait_ready(hport, 200)
    assert svc_http.value(hport, "gw_will_publisher_up") == 1
    # The sink goes away: not ready again.
    env.sink.kill9()
    svc_http.wait_ready(hport, 503)


def test_metrics_follow_will_lifecycle(env):
    env.start_sink()
    hport = start(env)
    svc_http.wait_ready(hport, 200)
    m = svc_http.metrics(hport)
    assert m[("gw_will_wills", HELD)] == 0
    assert m[("gw_will_published_total", 'qos="1"')] == 0
    assert m[("gw_will_store_seconds_count", "")] == 0

    conn = env.connect()
    links = [WillLink(conn, "m-%d" % i) for i in range(3)]
    for i, link in enumerate(links):
        assert link.send(will_message("m/%d" % i, b"p", i, False))[0] == "accepted"
    m = svc_http.wait_value(hport, "gw_will_wills", 3, HELD)
    assert m[("gw_will_stored_total", "")] == 3
    assert m[("gw_will_store_seconds_count", "")] == 3
    assert m[("gw_will_store_seconds_bucket", 'le="+Inf"')] == 3
    assert m[("gw_will_store_seconds_sum", "")] > 0

    # Malformed: counted as a reject, nothing stored.
    bad = WillLink(conn, "m-bad")
    msg = will_message("m/bad", b"p", 1, False)
    msg.annotations = {}
    msg.subject = "nonsense"
    assert bad.send(msg)[0] == "rejected"
    svc_http.wait_value(hport, "gw_will_rejects_total", 1)

    assert links[0].send(will_clear_message())[0] == "accepted"  # gone from the store
    m = svc_http.wait_value(hport, "gw_will_wills", 2, HELD)
    assert m[("gw_will_cleared_total", "")] == 1
    links[1].close(FORCED, "keep-alive")     # QoS 1 will published
    links[2].close(FORCED, "keep-alive")     # QoS 2 will published
    m = svc_http.wait_value(hport, "gw_will_published_total", 1, 'qos="2"')
    m = svc_http.wait_value(hport, "gw_will_published_total", 1, 'qos="1"')
    assert m[("gw_will_published_total", 'qos="0"')] == 0
    m = svc_http.wait_value(hport, "gw_will_wills", 0, 'state="publishing"')
    assert m[("gw_will_wills", HELD)] == 0
    assert m[("gw_will_publish_retries_total", "")] == 0
    links[0].close()                          # clean detach, no will: nothing changes
    assert svc_http.value(hport, "gw_will_published_total", 'qos="0"') == 0


def test_publish_retries_and_rejects_counted(env):
    env.start_sink(mode="reject", count=2)   # the first two publications rejected
    hport = start(env)
    conn = env.connect()
    link = WillLink(conn, "r-1")
    assert link.send(will_message("r/1", b"p", 1, False))[0] == "accepted"
    link.close(FORCED, "gone")
    m = svc_http.wait_value(hport, "gw_will_published_total", 1, 'qos="1"')
    assert m[("gw_will_publish_rejected_total", "")] == 2
    assert m[("gw_will_publish_retries_total", "")] >= 2


def test_sighup_reloads_log_level_from_config_file(env, tmp_path):
    env.start_sink()
    cfg = tmp_path / "will.json"
    cfg.write_text(json.dumps({"log-level": "warn"}))
    hport = gwtest.free_port()
    env.port = gwtest.free_port()
    args = [gwtest.binary("services", "will", "will-service"), "--config", str(cfg),
            "--listen", "127.0.0.1:%d" % env.port,
            "--publish-url", "amqp://127.0.0.1:%d" % env.sink_port,
            "--store", env.store, "--http-listen", "127.0.0.1:%d" % hport]
    env.service = env.procs.start(args, "will-hup", ready_port=env.port)
    conn = env.connect()
    WillLink(conn, "h-1").send(will_message("h/1", b"p", 1, False))
    assert "will stored" not in env.service.log()       # DEBUG line, level warn
    cfg.write_text(json.dumps({"log-level": "debug"}))
    env.service.signal(signal.SIGHUP)
    env.wait_log("configuration reloaded log-level=debug")
    WillLink(conn, "h-2").send(will_message("h/2", b"p", 1, False))
    env.wait_log("will stored")
    # A broken file keeps the running configuration (and the process).
    cfg.write_text("{not json")
    env.service.signal(signal.SIGHUP)
    env.wait_log("configuration invalid; unchanged")
    assert env.service.alive()
    assert svc_http.get(hport, "/healthz")[0] == 200


def test_sigterm_with_links_exits_0_within_bound(env):
    env.start_sink()
    hport = start(env)
    conn = env.connect()
    for i in range(5):
        WillLink(conn, "t-%d" % i).send(will_message("t/%d" % i, b"p", 1, False))
    t0 = time.monotonic()
    env.service.signal(signal.SIGTERM)
    env.service.proc.wait(timeout=10)
    assert env.service.proc.returncode == 0
    assert time.monotonic() - t0 < 5.0  # the stop bound is 3 s
    assert len(env.rows()) == 5           # a stop publishes nothing
    assert not gwtest.port_open(hport)
