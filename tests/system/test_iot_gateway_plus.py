"""IoT mode (issue 9): a gateway device subscribing `command//+/req/#` gets a
receiver per device that --iot-gateway-map lists for it (plus itself);
commands for a device arrive as command//<device>/req/...; a `*` rule cannot
be enumerated and such a filter is refused. Real gateway, raw devices,
python3-qpid-proton north-bound peer."""
import pytest

import gw_mqtt_raw as R
from iot_env import IotEnv, USERS, read_publish


@pytest.fixture
def env(procs, tmp_path):
    gmap = tmp_path / "gateways"
    gmap.write_text("acme gw1 dev7\nacme gw1 dev8  # listed devices\nacme gw2 *\n")
    e = IotEnv(procs, tmp_path, "--iot-gateway-map", str(gmap),
               users=USERS + (("gw2@acme", "pw4"),))
    yield e
    e.close()


def _sources(env, cid):
    return sorted(l["source"] for l in env.peer.links
                  if l["name"].startswith(f"$mqtt.cmd.{cid}.") and l["open"])


def test_gateway_plus_one_receiver_per_listed_device(env):
    g = env.device("g1", "gw1@acme", "pw3")
    g.send(R.subscribe(1, [("command//+/req/#", 1)]))
    _, body = g.expect(R.SUBACK)
    assert list(body[2:]) == [1]
    want = ["command/acme/dev7", "command/acme/dev8", "command/acme/gw1"]
    env.peer.wait_for(lambda: _sources(env, "g1") == want, what="three command receivers")
    # a command for a listed device: topic names the device, QoS 1, PUBACK -> accepted
    out = env.send_command("acme", "dev8", "blink", b"2")
    p = read_publish(g)
    assert p["topic"] == "command//dev8/req//blink" and p["payload"] == b"2" and p["qos"] == 1
    g.send(R.ack(R.PUBACK, p["pid"]))
    env.peer.wait_for(lambda: out["remote_settled"], what="settled")
    assert str(out["remote_state"]) == "ACCEPTED"
    # the gateway's own commands: no device level
    env.send_command("acme", "gw1", "reset", b"")
    p = read_publish(g)
    assert p["topic"] == "command///req//reset"
    # request/response for a device: answered through the gateway
    env.send_command("acme", "dev7", "get", b"?", reply_to="command_response/acme/app",
                     correlation_id="c7")
    p = read_publish(g)
    parts = p["topic"].split("/")
    assert parts[:4] == ["command", "", "dev7", "req"] and parts[5] == "get"
    g.send(R.ack(R.PUBACK, p["pid"]))
    g.send(R.publish(f"command//dev7/res/{parts[4]}/200", b"ok", qos=1, pid=9))
    g.expect(R.PUBACK)
    (r,) = env.wait_to("command_response/acme/app")
    assert r["correlation_id"] == "c7" and r["properties"]["device_id"] == "dev7"
    # every device got its ttd=-1
    env.peer.wait_for(lambda: sorted(m["properties"]["device_id"] for m in env.peer.msgs()
                                     if m["to"] == "event/acme") == ["dev7", "dev8", "gw1"],
                      what="ttd notifications")
    # no receiver for unlisted devices
    assert not [l for l in env.peer.links if l["source"] == "command/acme/dev1"]
    # UNSUBSCRIBE removes all of them
    g.send(R.unsubscribe(2, ["command//+/req/#"]))
    g.expect(R.UNSUBACK)
    env.peer.wait_for(lambda: _sources(env, "g1") == [], what="receivers detached")


def test_gateway_plus_refused_for_star_rule_and_other_tenant(env):
    g2 = env.device("g2", "gw2@acme", "pw4")
    g2.send(R.subscribe(1, [("command//+/req/#", 0), ("command//dev5/req/#", 0)]))
    _, body = g2.expect(R.SUBACK)
    assert list(body[2:]) == [0x80, 0]  # `*`: subscribe per device instead
    assert "'+' with a `*` gateway rule" in env.gw.log()
    o = env.device("o1", "dev2@other", "pw2")
    o.send(R.subscribe(1, [("command/acme/+/req/#", 1)]))
    _, body = o.expect(R.SUBACK)
    assert list(body[2:]) == [0x80]
    # a device without rules: '+' covers only itself
    d = env.dev1("d1")
    d.send(R.subscribe(1, [("c//+/q/#", 1)]))
    _, body = d.expect(R.SUBACK)
    assert list(body[2:]) == [1]
    env.peer.wait_for(lambda: _sources(env, "d1") == ["command/acme/dev1"], what="own receiver")
