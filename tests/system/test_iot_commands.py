"""IoT mode (issue 9): commands at QoS 1. The gateway grants QoS 1 on the
command filter, sends commands as QoS 1 PUBLISH and settles the AMQP
delivery `accepted` only on the device's PUBACK; a device that goes away
first hands its unacknowledged commands back as `modified`. Real gateway,
raw MQTT devices, python3-qpid-proton north-bound peer (iot_env.IotEnv)."""
import pytest
from proton import Message

import gwtest
import gw_mqtt_raw as R
from iot_env import IotEnv, REQ_TOPIC, read_publish

ADDR = "command/acme/dev1"


@pytest.fixture
def env(procs, tmp_path):
    e = IotEnv(procs, tmp_path)
    yield e
    e.close()


def _subscribed(env, cid, qos=1, granted=1):
    c = env.dev1(cid)
    c.send(R.subscribe(1, [("command///req/#", qos)]))
    _, body = c.expect(R.SUBACK)
    assert list(body[2:]) == [granted]
    env.peer.link(f"$mqtt.cmd.{cid}.{ADDR}")
    gwtest.wait_until(lambda: env.peer.credit_of(ADDR) == 16, what="command link credit")
    return c


def test_qos1_command_accepted_only_after_puback(env):
    c = _subscribed(env, "q1", qos=2, granted=1)  # QoS 2 asked: 1 granted
    out = env.send_command("acme", "dev1", "setVolume", b"3",
                           reply_to="command_response/acme/app", correlation_id="k1")
    p = read_publish(c)
    assert p["qos"] == 1 and p["pid"] and p["payload"] == b"3"
    assert REQ_TOPIC.match(p["topic"]).group(6) == "setVolume"
    # not settled while the device has not acknowledged; it holds one credit
    assert c.no_packet(within=0.3)
    assert not out["remote_settled"] and out.get("remote_state") is None
    assert env.peer.credit_of(ADDR) == 15
    c.send(R.ack(R.PUBACK, p["pid"]))
    env.peer.wait_for(lambda: out["remote_settled"], what="command settled")
    assert str(out["remote_state"]) == "ACCEPTED"
    gwtest.wait_until(lambda: env.peer.credit_of(ADDR) == 16, what="credit back")
    # a PUBACK for an unknown id is ignored; the connection stays up
    c.send(R.ack(R.PUBACK, 4321))
    # a pre-settled command cannot be acknowledged: QoS 0
    m = Message(address=ADDR, subject="ping", body=b"")
    m.inferred = True
    env.peer.send_on(ADDR, m, presettled=True)
    p = read_publish(c)
    assert p["qos"] == 0 and p["topic"] == "command///req//ping"


def test_device_gone_before_puback_command_modified(env):
    c = _subscribed(env, "q2")
    out = env.send_command("acme", "dev1", "reboot", b"now")
    p = read_publish(c)
    assert p["qos"] == 1
    c.close()  # no PUBACK
    env.peer.wait_for(lambda: out["remote_settled"], what="command settled after disconnect")
    assert str(out["remote_state"]) == "MODIFIED"
    # unsubscribe before PUBACK: the same
    c = _subscribed(env, "q3")
    out = env.send_command("acme", "dev1", "reboot", b"again")
    assert read_publish(c)["qos"] == 1
    c.send(R.unsubscribe(2, ["command///req/#"]))
    c.expect(R.UNSUBACK)
    env.peer.wait_for(lambda: out["remote_settled"], what="command settled after unsubscribe")
    assert str(out["remote_state"]) == "MODIFIED"


def test_qos1_inflight_window_is_the_link_credit(env):
    c = _subscribed(env, "q4")
    outs = [env.send_command("acme", "dev1", f"n{i}", b"%d" % i) for i in range(17)]
    pubs = [read_publish(c) for _ in range(16)]
    assert [p["payload"] for p in pubs] == [b"%d" % i for i in range(16)]
    assert c.no_packet(within=0.3)  # the 17th waits for credit
    assert env.peer.credit_of(ADDR) == 0
    c.send(R.ack(R.PUBACK, pubs[0]["pid"]))
    p = read_publish(c)
    assert p["payload"] == b"16" and p["qos"] == 1
    env.peer.wait_for(lambda: outs[0]["remote_settled"], what="first settled")
    assert str(outs[0]["remote_state"]) == "ACCEPTED"
    assert not any(o["remote_settled"] for o in outs[1:])
    # QoS 0 subscription keeps the old behaviour: accepted once written
    c.send(R.subscribe(3, [("c///q/#", 0)]))
    _, body = c.expect(R.SUBACK)
    assert list(body[2:]) == [0]
    out = env.send_command("acme", "dev1", "late", b"x")
    # the in-flight ones still hold credit: acknowledge them all
    for p in pubs[1:] + [p]:
        c.send(R.ack(R.PUBACK, p["pid"]))
    p = read_publish(c)
    assert p["qos"] == 0 and p["topic"].startswith("c///q/")
    env.peer.wait_for(lambda: out["remote_settled"], what="QoS 0 command settled")
    assert str(out["remote_state"]) == "ACCEPTED"
    env.peer.wait_for(lambda: all(o["remote_settled"] for o in outs), what="all settled")
