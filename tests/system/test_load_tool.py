"""System tests of the benchmark load tool mqtt-load (tests/bench/mqtt_load)
against a real mosquitto broker and a real python3-qpid-proton AMQP sender.

Run: GW_BUILD_DIR=<build> /usr/bin/python3 -m pytest tests/system/test_load_tool.py
"""
import json
import os
import time
import subprocess

import pytest

import gwtest

MOSQUITTO = "/usr/sbin/mosquitto"
HERE = os.path.dirname(os.path.abspath(__file__))

pytestmark = pytest.mark.skipif(not os.path.exists(MOSQUITTO), reason="mosquitto not installed")


def load_bin():
    return gwtest.binary("tests", "bench", "mqtt_load", "mqtt-load")


def start_mosquitto(procs, tmp_path, extra=(), name="mosquitto"):
    port = gwtest.free_port()
    conf = tmp_path / f"{name}.conf"
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false",
             "set_tcp_nodelay true"] + list(extra)
    conf.write_text("\n".join(lines) + "\n")
    proc = procs.start([MOSQUITTO, "-c", str(conf)], name, ready_port=port)
    return port, proc


def run_load(args, timeout=120, expect_rc=(0,)):
    """Run mqtt-load to completion; return (json dict, stderr). Exactly one
    JSON line on stdout, no sanitizer report on stderr."""
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    res = subprocess.run([load_bin()] + [str(a) for a in args], capture_output=True, text=True,
                         timeout=timeout, env=env)
    for marker in gwtest.SANITIZER_MARKERS:
        assert marker not in res.stderr, res.stderr[-8000:]
    assert res.returncode in expect_rc, f"rc={res.returncode}\n{res.stderr[-4000:]}"
    lines = [l for l in res.stdout.splitlines() if l.strip()]
    assert len(lines) == 1, f"expected one JSON line, got {res.stdout!r}"
    return json.loads(lines[0]), res.stderr


def check_latency(out):
    lat = out["latency_us"]
    for key in ("count", "min", "mean", "p50", "p90", "p99", "p999", "max"):
        assert key in lat, key
    assert lat["count"] > 0
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"]


# mosquitto acknowledges but DROPS incoming QoS 2 messages beyond
# max_inflight_messages (default 20) per client; with --window 100 that loses
# messages (see test_detects_broker_loss). Allow the window we use.
MOSQ_WINDOW = ["max_inflight_messages 1000"]


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_one_to_one(procs, tmp_path, qos):
    port, _ = start_mosquitto(procs, tmp_path, MOSQ_WINDOW)
    n = 20000
    out, err = run_load(["--port", port, "--qos", qos, "--messages", n, "--publishers", 1,
                         "--subscribers", 1, "--window", 100, "--drain", "10s",
                         "--label", f"qos{qos}", "--client-prefix", f"t{qos}-"])
    assert out["mode"] == "pubsub" and out["label"] == f"qos{qos}" and out["qos"] == qos
    assert out["sent"] == n
    assert out["expected"] == n
    assert out["ooo"] == 0
    assert out["foreign"] == 0 and out["protocol_errors"] == 0 and out["errors"] == 0
    assert out["delivered"] <= n
    check_latency(out)
    assert out["publish_rate"] > 0 and out["delivered_rate"] > 0
    if qos == 0:
        # QoS 0 may be dropped: what did not arrive is "missing", never "lost".
        assert out["delivered"] + out["missing"] == n
        assert out["lost"] == 0
    else:
        assert out["acked"] == n
        assert out["delivered"] == n
        assert out["lost"] == 0 and out["unacked_missing"] == 0
        assert out["complete"] is True
    if qos == 2:
        assert out["dups"] == 0
    assert f"qos {qos}" in err  # the human summary went to stderr


def test_fan_out_and_exact_topics(procs, tmp_path):
    """4 publishers, 4 subscribers on bench/%s (one publisher each), 2 loops."""
    port, _ = start_mosquitto(procs, tmp_path, MOSQ_WINDOW)
    out, _ = run_load(["--port", port, "--qos", 1, "--messages", 4000, "--publishers", 4,
                       "--subscribers", 4, "--sub-topic", "bench/%s", "--threads", 2, "--json"])
    assert out["sent"] == 4000 and out["expected"] == 4000 and out["delivered"] == 4000
    assert out["lost"] == 0 and out["dups"] == 0 and out["ooo"] == 0

    # bench/# on every subscriber: each message is expected 3 times.
    out, _ = run_load(["--port", port, "--qos", 1, "--messages", 3000, "--publishers", 2,
                       "--subscribers", 3, "--client-prefix", "fan-", "--json"])
    assert out["expected"] == 9000 and out["delivered"] == 9000 and out["lost"] == 0


def test_detects_broker_loss(procs, tmp_path):
    """The tool must be able to fail: mosquitto with its default
    max_inflight_messages (20) PUBRECs and then discards incoming QoS 2
    messages beyond 20 in flight; a 100-message window must show them lost."""
    port, _ = start_mosquitto(procs, tmp_path, name="mosquitto-default")
    out, err = run_load(["--port", port, "--qos", 2, "--messages", 5000, "--window", 100,
                         "--drain", "1s"])
    assert out["acked"] == 5000
    assert out["lost"] > 0
    assert out["delivered"] + out["lost"] == 5000
    assert out["complete"] is False and out["drain_timed_out"] is True
    assert "lost %d" % out["lost"] in err


def test_rate_and_duration(procs, tmp_path):
    port, _ = start_mosquitto(procs, tmp_path, MOSQ_WINDOW)
    out, _ = run_load(["--port", port, "--qos", 1, "--rate", 2000, "--duration", "1500ms",
                       "--warmup", "500ms", "--publishers", 2, "--json"])
    # 2000 msg/s for 1.5 s, paced: about 3000 sent, never much more.
    assert 2400 <= out["sent"] <= 3100, out["sent"]
    assert 1500 <= out["publish_rate"] <= 2300, out["publish_rate"]
    assert out["sent_measured"] < out["sent"]  # the warm-up part is not measured
    assert out["delivered"] == out["sent"] and out["lost"] == 0


def test_connections_mode(procs, tmp_path):
    port, mosq = start_mosquitto(procs, tmp_path)
    out, err = run_load(["--port", port, "--connections", 200, "--pid", mosq.proc.pid,
                         "--will", "--label", "conn200"])
    assert out["mode"] == "connections"
    assert out["connected"] == 200 and out["errors"] == 0 and out["complete"] is True
    assert out["connect_rate"] > 0
    assert out["pids"] == [str(mosq.proc.pid)]
    assert out["rss_before_bytes"] > 0 and out["rss_after_bytes"] > 0
    assert out["rss_per_conn_bytes"] > 0
    assert "bytes/connection" in err


def _peer_ips(port):
    """Local (source) addresses of the established connections to 127.0.0.1:port."""
    r = subprocess.run(["ss", "-Htn", "state", "established", f"( dport = :{port} )"],
                       capture_output=True, text=True, timeout=10)
    return {line.split()[2].rsplit(":", 1)[0] for line in r.stdout.splitlines() if line.strip()}


@pytest.mark.parametrize("spread", [True, False])
def test_connections_spread_over_source_addresses(procs, tmp_path, spread):
    port, mosq = start_mosquitto(procs, tmp_path)
    flag = "--spread-source" if spread else "--no-spread-source"
    p = subprocess.Popen([load_bin(), "--port", str(port), "--connections", "300", "--hold", "3s",
                          "--json", flag], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ips = set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(ips) < 200 and p.poll() is None:
            ips |= _peer_ips(port)
            time.sleep(0.1)
        if spread:
            assert len(ips) >= 200, ips  # 127.0.0.2 .. 127.0.0.254
            assert "127.0.0.1" not in ips
        else:
            assert ips == {"127.0.0.1"}
    finally:
        out, _ = p.communicate(timeout=30)
    assert json.loads(out.decode().strip().splitlines()[-1])["connected"] == 300


def test_connack_refusal_reported(procs, tmp_path):
    port, _ = start_mosquitto(procs, tmp_path, ["allow_anonymous false"],
                              name="mosquitto-closed")
    # allow_anonymous false after true: mosquitto takes the last value.
    out, err = run_load(["--port", port, "--messages", 10, "--setup-timeout", "5s"],
                        expect_rc=(1,))
    assert out["connack_errors"] >= 1 and out["complete"] is False
    assert "CONNACK refused: return code 5" in err


def test_bad_option_exit_2():
    res = subprocess.run([load_bin(), "--qos", "3"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 2
    assert "qos" in res.stderr and res.stdout == ""


def test_amqp_receiver(procs, tmp_path):
    """One AMQP receiver fed by a python3-qpid-proton sender of payload headers."""
    port = gwtest.free_port()
    n = 5000
    procs.start(["/usr/bin/python3",
                 os.path.join(HERE, "load_amqp_sender.py"), str(port), str(n)],
                "amqp-sender", ready_log="listening")
    out, _ = run_load(["--publishers", 0, "--subscribers", 0, "--amqp-url",
                       f"amqp://127.0.0.1:{port}", "--amqp-address", "bench/amqp",
                       "--messages", n, "--duration", "60s", "--json"])
    assert out["amqp_receivers"] == 1
    assert out["delivered"] == n
    assert out["dups"] == 0 and out["ooo"] == 0 and out["missing"] == 0
    assert out["foreign"] == 0 and out["complete"] is True
    check_latency(out)


def test_tracker_and_histogram_selftest():
    """Sequence tracker (gaps, ooo, dups, split gaps) and histogram
    percentiles checked on known inputs (tests/bench/mqtt_load/selftest.c)."""
    exe = gwtest.binary("tests", "bench", "mqtt_load", "mqtt-load-selftest")
    res = subprocess.run([exe], capture_output=True, text=True, timeout=60)
    for marker in gwtest.SANITIZER_MARKERS:
        assert marker not in res.stderr, res.stderr
    assert res.returncode == 0, res.stderr
    assert "mqtt-load-selftest: ok" in res.stdout
