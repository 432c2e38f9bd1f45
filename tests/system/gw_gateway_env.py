"""Helpers for mqtt-gateway system tests: start the real gateway against the
scriptable AMQP peer (gw_amqp_peer.AmqpPeer) on free loopback ports."""
import gwtest
from gw_amqp_peer import AmqpPeer
from gw_mqtt_raw import RawClient


class GatewayEnv:
    def __init__(self, procs, peer, gw, port):
        self.procs = procs
        self.peer = peer
        self.gw = gw
        self.port = port

    def client(self):
        return RawClient(self.port)

    def log(self):
        return self.gw.log()


def start_gateway(procs, amqp_port, *args, workers=1, wait_up=True, name="mqtt-gateway"):
    port = gwtest.free_port()
    url = f"amqp://127.0.0.1:{amqp_port}"
    # The stand-in peer (gw_amqp_peer) plays a Will Service and a Subscription
    # Service with links per client; the shared will and delivery links (the
    # defaults) are tested against the real services
    # (test_gateway_shared_*.py, test_gateway_e2e.py).
    if "--will-link" not in args:
        args = ("--will-link", "per-client") + tuple(args)
    if "--delivery-link" not in args:
        args = ("--delivery-link", "per-client") + tuple(args)
    argv = [gwtest.binary("gateway", "mqtt-gateway"), "--workers", str(workers),
            "--amqp-url", url, "--mqtt-listen", f"127.0.0.1:{port}",
            "--log-level", "debug", "--shutdown-timeout", "3s", *args]
    gw = procs.start(argv, name, ready_port=port)
    if wait_up:
        # Every worker's shared connection must be UP before clients connect
        # (while it is down, CONNECT gets CONNACK 3 by design).
        gwtest.wait_until(lambda: gw.log().count(f"AMQP connection to {url} up") >= workers,
                          what="gateway AMQP connections up")
    return gw, port


def make_env(procs, *args, workers=1, anonymous_relay=False, policy=None):
    peer = AmqpPeer(anonymous_relay=anonymous_relay)
    if policy:
        peer.policy.update(policy)
    peer.start()
    try:
        gw, port = start_gateway(procs, peer.port, *args, workers=workers)
    except Exception:
        peer.stop()
        raise
    return GatewayEnv(procs, peer, gw, port)


def teardown_env(env):
    try:
        env.procs.stop_all()
    finally:
        env.peer.stop()


def start_mqtts_gateway(procs, peer_port, cert, key, ca, *extra):
    """A gateway with an MQTT TLS listener too: (gw, mqtt port, tls port)."""
    tport = gwtest.free_port()
    gw, port = start_gateway(procs, peer_port, "--mqtts-listen", f"127.0.0.1:{tport}",
                             "--tls-cert", cert, "--tls-key", key, "--tls-ca", ca, *extra)
    return gw, port, tport
