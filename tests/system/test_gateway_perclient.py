"""mqtt-gateway system tests: --connection-mode per-client (one AMQP
connection per MQTT client, SASL from CONNECT, CONNACK 4/5 on refusal)."""
import gwtest
import gw_mqtt_raw as R
from gw_amqp_peer import AmqpPeer
from gw_gateway_env import start_gateway


def start(procs, **peer_kw):
    peer = AmqpPeer(**peer_kw).start()
    try:
        gw, port = start_gateway(procs, peer.port, "--connection-mode", "per-client",
                                 "--connect-timeout", "2s", wait_up=False)
    except Exception:
        peer.stop()
        raise
    return peer, gw, port


def test_per_client_connection_lifecycle(procs):
    peer, gw, port = start(procs)
    try:
        assert peer.conn_opens == 0  # no shared connection in this mode
        c = R.RawClient(port)
        assert c.connect("pc1", keepalive=30, will=("w/pc1", b"x", 0, False)) == (0, 0)
        assert peer.conn_opens == 1 and peer.container_ids == ["pc1"]
        c.send(R.publish("t/pc", b"y", qos=1, pid=4))
        c.expect(R.PUBACK)
        c2 = R.RawClient(port)
        assert c2.connect("pc2") == (0, 0)
        assert peer.conn_opens == 2
        c2.send(R.DISCONNECT_PKT)
        assert c2.is_closed()
        peer.wait_for(lambda: peer.transport_closes >= 1, what="pc2's connection closed")
        c.close()  # brute: the will link is detached with an error first
        d = peer.detach_of("pc1")
        assert d["condition"] == "amqp:link:detach-forced"
        peer.wait_for(lambda: peer.transport_closes >= 2, what="pc1's connection closed")
    finally:
        procs.stop_all()
        peer.stop()


def test_per_client_bad_credentials_connack_4(procs):
    # the peer offers no PLAIN: SASL fails for a client with credentials
    peer, gw, port = start(procs)
    try:
        c = R.RawClient(port)
        assert c.connect("pc3", username="u", password="p")[1] == 4
        assert c.is_closed()
    finally:
        procs.stop_all()
        peer.stop()


def test_per_client_anonymous_refused_connack_5(procs):
    peer, gw, port = start(procs, sasl_mechs="EXTERNAL")
    try:
        c = R.RawClient(port)
        assert c.connect("pc4")[1] == 5
        assert c.is_closed()
    finally:
        procs.stop_all()
        peer.stop()


def test_per_client_unreachable_connack_3(procs):
    gw, port = start_gateway(procs, gwtest.free_port(), "--connection-mode", "per-client",
                             wait_up=False)
    c = R.RawClient(port)
    assert c.connect("pc5")[1] == 3
