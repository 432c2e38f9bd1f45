"""spec 2.3 and 2.5: the control address space ($mqtt. by default) is
reserved. MQTT clients can neither publish into it, subscribe to it, use it
as a will topic, nor take a client id that starts with it."""
import pytest

import gwtest
import gw_mqtt_raw as R
from gw_gateway_env import make_env, teardown_env


@pytest.fixture
def env(procs):
    e = make_env(procs)
    yield e
    teardown_env(e)


def connected(env, cid="r1"):
    c = env.client()
    assert c.connect(cid) == (0, 0)
    gwtest.wait_until(lambda: env.peer.credit_of(f"$mqtt.to.{cid}.publish"), what="credit")
    return c


def test_reserved_filter_gets_0x80_and_never_reaches_the_service(env):
    c = connected(env)
    c.send(R.subscribe(5, [("$mqtt.to.victim.publish", 1), ("ok/+", 1), ("$mqtt.lwtservice", 0)]))
    _, body = c.expect(R.SUBACK)
    assert body == b"\x00\x05\x80\x01\x80"
    m = env.peer.wait_msg(subject="subscribe")
    assert m["body"] == {"ok/+": 1}


def test_reserved_publish_is_acked_and_dropped(env):
    peer = env.peer
    c = connected(env)
    c.send(R.publish("$mqtt.lwtservice", b"forged", qos=1, pid=3))
    _, body = c.expect(R.PUBACK)
    assert body == b"\x00\x03"
    c.send(R.publish("$mqtt.to.victim.publish", b"forged", qos=0))
    # A normal publish behind them on the same connection is forwarded;
    # by the time it arrives, the reserved ones would have been too.
    c.send(R.publish("ok/t", b"fine", qos=1, pid=4))
    peer.wait_msg(to="ok/t")
    assert [m for m in peer.messages if (m.get("to") or "").startswith("$mqtt.")] == []
    assert not [m for m in peer.messages if m.get("body") == b"forged"]


def test_reserved_client_id_refused(env):
    c = env.client()
    assert c.connect("$mqtt.lwtservice") == (0, 2)
    assert c.is_closed()
    # Others are still served.
    connected(env, "after")


def test_reserved_will_topic_refused(env):
    c = env.client()
    assert c.connect("w1", will=("$mqtt.subscriptionservice", b"x", 1, False)) == (0, 5)
    assert c.is_closed()
