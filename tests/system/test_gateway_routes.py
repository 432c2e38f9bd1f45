"""mqtt-gateway system tests: --route options (issue 6): address templates
for foreign brokers and relay=never."""
import re
import subprocess

import gwtest
import gw_mqtt_raw as R
from gw_amqp_peer import AmqpPeer
from gw_gateway_env import start_gateway


def run_gateway(*args):
    return subprocess.run([gwtest.binary("gateway", "mqtt-gateway"), *args],
                          capture_output=True, text=True, timeout=20)


def test_bad_route_options_are_refused():
    for bad in ("a=amqp://h:1;bogus=1", "a=amqp://h:1;address=", "a=amqp://h:1;address={rest}",
                "a=amqp://h:1;address={rest.}{rest}", "a=amqp://h:1;relay=sometimes",
                "a=amqp://h:1;address=x;address=y", "a=;address=x"):
        r = run_gateway("--route", bad, "--workers", "1", "--mqtt-listen", "127.0.0.1:1")
        assert r.returncode == 2, (bad, r.stderr)
        assert "--route" in r.stderr, (bad, r.stderr)


def _two_peers(procs, route_fmt, relay=True):
    main = AmqpPeer(anonymous_relay=relay).start()
    foreign = AmqpPeer(anonymous_relay=relay).start()
    gw, port = start_gateway(procs, main.port, "--route",
                             route_fmt.replace("URL", f"amqp://127.0.0.1:{foreign.port}"),
                             wait_up=False)
    gwtest.wait_until(lambda: len(re.findall(r"AMQP connection to \S+ up\"", gw.log())) >= 2,
                      what="both connections up")
    return main, foreign, gw, port


def test_template_rewrites_target_and_to(procs):
    # the foreign peer offers ANONYMOUS-RELAY, yet the template forces
    # per-topic links whose target is the rewritten address
    main, foreign, gw, port = _two_peers(
        procs, "sensors/=URL;address=/exchange/amq.topic/{topic.}")
    try:
        c = R.RawClient(port)
        assert c.connect("tp") == (0, 0)
        c.send(R.publish("sensors/room1/temp", b"21", qos=1, pid=1))
        assert R.pid_of(c.expect(R.PUBACK)[1]) == 1
        c.send(R.publish("sensors/room2/hum", b"40", qos=0))
        c.send(R.publish("sensors/room1/temp", b"22", qos=2, pid=2))
        assert R.pid_of(c.expect(R.PUBREC)[1]) == 2
        c.send(R.ack(R.PUBREL, 2))
        assert R.pid_of(c.expect(R.PUBCOMP)[1]) == 2
        c.send(R.publish("other/x", b"o", qos=1, pid=3))
        assert R.pid_of(c.expect(R.PUBACK)[1]) == 3

        want = {"/exchange/amq.topic/sensors.room1.temp": [b"21", b"22"],
                "/exchange/amq.topic/sensors.room2.hum": [b"40"]}
        foreign.wait_for(lambda: len(foreign.msgs()) >= 3, what="3 messages at the foreign peer")
        got = {}
        for m in foreign.msgs():
            assert m["to"] == m["link_target"], m
            got.setdefault(m["to"], []).append(m["body"])
            # spec 2.4: the annotations of spec 3.9 are still set
            assert "x-opt-mqtt-qos" in m["annotations"]
        assert got == want
        senders = [l for l in foreign.links if l["name"].startswith("$mqtt.from.tp.")]
        assert senders and all(l["target"] in want for l in senders)
        # the QoS 2 publication used its own rcv-settle-second link
        assert any(l["rcv_settle_mode"] == 1 and l["target"] ==
                   "/exchange/amq.topic/sensors.room1.temp" for l in senders)
        # other topics keep the default route, the anonymous relay and `to` = topic
        assert not main.msgs(to="/exchange/amq.topic/sensors.room1.temp")
        m = main.wait_msg(to="other/x")
        assert m["link_target"] is None
    finally:
        procs.stop_all()
        main.stop()
        foreign.stop()


def test_template_rest_tokens_and_literals(procs):
    main, foreign, gw, port = _two_peers(
        procs, "a/b/=URL;address=q.{rest.}|{rest}|{topic}|{nope}", relay=False)
    try:
        c = R.RawClient(port)
        assert c.connect("rs") == (0, 0)
        c.send(R.publish("a/b/c/d", b"1", qos=1, pid=7))
        c.expect(R.PUBACK)
        c.send(R.publish("a/b/", b"2", qos=1, pid=8))
        c.expect(R.PUBACK)
        m = foreign.wait_msg(to="q.c.d|c/d|a/b/c/d|{nope}")
        assert m["link_target"] == m["to"] and m["body"] == b"1"
        m = foreign.wait_msg(to="q.||a/b/|{nope}")
        assert m["body"] == b"2"
        assert not main.msgs(to="a/b/c/d")
    finally:
        procs.stop_all()
        main.stop()
        foreign.stop()


def test_relay_never_uses_per_topic_links(procs):
    main, foreign, gw, port = _two_peers(procs, "t/=URL;relay=never")
    try:
        c = R.RawClient(port)
        assert c.connect("rn") == (0, 0)
        for i, t in enumerate(("t/1", "t/2", "u/1")):
            c.send(R.publish(t, b"x", qos=1, pid=i + 1))
            c.expect(R.PUBACK)
        fl = [l for l in foreign.links if l["name"].startswith("$mqtt.from.rn.")]
        assert sorted(l["target"] for l in fl) == ["t/1", "t/2"]
        assert [m["to"] for m in foreign.msgs()] == ["t/1", "t/2"]
        # the default route (relay=auto) still uses the peer's anonymous relay
        ml = [l for l in main.links if l["name"].startswith("$mqtt.from.rn.")]
        assert [l["target"] for l in ml] == [None]
        assert main.wait_msg(to="u/1")["link_target"] is None
    finally:
        procs.stop_all()
        main.stop()
        foreign.stop()
