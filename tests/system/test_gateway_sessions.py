"""mqtt-gateway: clients share AMQP sessions on a worker's connection
(--amqp-session-clients, spec 4.1 common rules). Real gateway, scriptable
python-qpid-proton peer, raw MQTT sockets."""
import subprocess

import pytest

import gwtest
import gw_mqtt_raw as R
from gw_gateway_env import make_env, teardown_env


def client_links(peer, cid):
    """Open links of a clean-session client with a will: L1 and L4 (no L3;
    L2 is the connection's, spec 2.2)."""
    names = {cid, f"$mqtt.to.{cid}.publish"}
    with peer.lock:
        return [r for r in peer.links if r["name"] in names and r["open"]]


def sessions_of(peer, cids):
    """client id -> the one session object holding all its open links."""
    out = {}
    for cid in cids:
        links = peer.wait_for(lambda: (lambda ls: len(ls) == 2 and ls)(client_links(peer, cid)),
                              what=f"2 links of {cid}")
        ssns = {int(r["session"]._impl) for r in links}
        assert len(ssns) == 1, f"links of {cid} span {len(ssns)} sessions"
        out[cid] = ssns.pop()
    return out


@pytest.fixture
def env4(procs):
    e = make_env(procs, "--amqp-session-clients", "4")
    yield e
    teardown_env(e)


def test_clients_share_sessions_up_to_the_bound(env4):
    peer = env4.peer
    begun0 = peer.sessions_begun
    cids = [f"s{i}" for i in range(10)]
    clients = []
    for cid in cids:
        c = env4.client()
        assert c.connect(cid, will=(f"w/{cid}", b"x", 0, False)) == (0, 0)
        clients.append(c)
    by_client = sessions_of(peer, cids)
    # joined in order: 4 + 4 + 2
    groups = [by_client[c] for c in cids]
    assert groups[0:4] == [groups[0]] * 4
    assert groups[4:8] == [groups[4]] * 4
    assert groups[8:10] == [groups[8]] * 2
    assert len({groups[0], groups[4], groups[8]}) == 3
    # three client sessions, and the session of the connection's shared L2
    assert peer.sessions_begun - begun0 == 3 + 1
    assert len(peer.ss_links()) == 1

    # A session ends when its last client leaves (once full); the others stay.
    ended0 = peer.sessions_ended
    for c in clients[0:3]:
        c.send(R.DISCONNECT_PKT)
        assert c.is_closed()
    assert peer.sessions_ended == ended0
    clients[3].send(R.DISCONNECT_PKT)
    assert clients[3].is_closed()
    peer.wait_for(lambda: peer.sessions_ended == ended0 + 1, what="first session ended")
    # Its neighbours are unaffected.
    for c in clients[4:]:
        c.send(R.PINGREQ_PKT)
        c.expect(R.PINGRESP)
    # The open (not full) session takes the next client.
    c = env4.client()
    assert c.connect("s10", will=("w/s10", b"x", 0, False)) == (0, 0)
    assert sessions_of(peer, ["s10"])["s10"] == groups[8]


def test_quick_reconnect_does_not_join_its_predecessors_session(env4):
    """The old links may still be half-closed when the new CONNECT attaches
    links of the same names: proton at both ends would match the new attach
    to the old link, so the client begins another session."""
    peer = env4.peer
    for i in range(20):
        c = env4.client()
        assert c.connect("rq", clean=(i % 2 == 0), will=("w/rq", b"%d" % i, 0, False)) == (0, 0)
        c.send(R.PINGREQ_PKT)
        c.expect(R.PINGRESP)
        c.close()  # brute: the will link is detached with an error
    c = env4.client()
    assert c.connect("rq", will=("w/rq", b"last", 0, False)) == (0, 0)
    c.send(R.PINGREQ_PKT)
    c.expect(R.PINGRESP)
    assert len(client_links(peer, "rq")) == 2
    # Every will reached the peer, each on a link that worked.
    wills = peer.wait_for(lambda: (lambda w: len(w) >= 21 and w)(peer.msgs(subject="will")))
    assert [w["body"] for w in wills[:20]] == [b"%d" % i for i in range(20)]
    assert "ERROR" not in env4.log() and "assert" not in env4.log().lower()


def test_takeover_storm_in_one_worker(env4):
    prev = None
    for i in range(12):
        c = env4.client()
        assert c.connect("ts", will=("w/ts", b"%d" % i, 0, False)) == (0, 0)
        if prev is not None:
            assert prev.is_closed()
        prev = c
    prev.send(R.PINGREQ_PKT)
    prev.expect(R.PINGRESP)
    assert len(client_links(env4.peer, "ts")) == 2


def test_peer_ending_a_session_closes_only_its_clients(env4):
    peer = env4.peer
    cids = [f"e{i}" for i in range(6)]
    clients = {}
    for cid in cids:
        c = env4.client()
        assert c.connect(cid, will=(f"w/{cid}", cid.encode(), 0, False)) == (0, 0)
        clients[cid] = c
    by_client = sessions_of(peer, cids)
    assert by_client["e0"] == by_client["e3"] != by_client["e4"]
    assert peer.end_session_of("e0")
    for cid in cids[:4]:
        assert clients[cid].is_closed(), cid
    for cid in cids[4:]:
        clients[cid].send(R.PINGREQ_PKT)
        clients[cid].expect(R.PINGRESP)
    # The clients of the ended session can come back (in a new session).
    c = env4.client()
    assert c.connect("e0") == (0, 0)
    assert "AMQP session ended by the peer" in env4.log()


def test_one_session_per_client_when_bound_is_1(procs):
    e = make_env(procs, "--amqp-session-clients", "1")
    try:
        cids = ["o1", "o2", "o3"]
        clients = [e.client() for _ in cids]
        for c, cid in zip(clients, cids):
            assert c.connect(cid, will=(f"w/{cid}", b"x", 0, False)) == (0, 0)
        by_client = sessions_of(e.peer, cids)
        assert len(set(by_client.values())) == 3
    finally:
        teardown_env(e)


def test_session_bound_is_validated():
    for bad in ("0", "1025", "x"):
        r = subprocess.run([gwtest.binary("gateway", "mqtt-gateway"), "--amqp-session-clients", bad],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 2, bad
        assert "amqp-session-clients" in r.stderr


# -- the shared L2 (spec 2.2): one per connection, credit shared ----------

def test_shared_l2_credit_queues_clients_in_order(procs):
    """The SS grants 1 credit on L2: concurrent CONNECTs and SUBSCRIBEs wait
    for it in turn; every client gets its CONNACK and its own SUBACK."""
    e = make_env(procs, policy={"credit_for": {"$mqtt.subscriptionservice": 1}})
    try:
        clients = [e.client() for _ in range(12)]
        for i, c in enumerate(clients):
            c.send(R.connect(f"q{i}", clean=(i % 2 == 0)))
        for c in clients:
            _, body = c.expect(R.CONNACK)
            assert body[1] == 0
        for i, c in enumerate(clients):
            c.send(R.subscribe(100 + i, [(f"q/{i}", 1)]))
        for i, c in enumerate(clients):
            _, body = c.expect(R.SUBACK)
            assert body == bytes([0, 100 + i, 1])
        subs = e.peer.msgs(subject="subscribe")
        assert sorted(m["correlation_id"] for m in subs) == \
            sorted(f"$mqtt.to.q{i}.publish" for i in range(12))
        assert len({m["link"] for m in subs}) == 1
        assert len(e.peer.ss_links()) == 1
    finally:
        teardown_env(e)


def test_outcome_for_a_client_that_left(procs):
    e = make_env(procs, policy={"subscribe": "hold"})
    try:
        gone = e.client()
        assert gone.connect("gone1") == (0, 0)
        gone.send(R.subscribe(5, [("g/#", 1)]))
        held = e.peer.wait_msg(subject="subscribe")
        gone.close()
        e.peer.detach_of("$mqtt.to.gone1.publish")
        e.peer.settle(held, "accept")  # its client is gone: settled, nothing else
        e.peer.call(lambda: e.peer.policy.update({"subscribe": "accept"}))
        c = e.client()
        assert c.connect("stay1") == (0, 0)
        c.send(R.subscribe(6, [("s/#", 0)]))
        _, body = c.expect(R.SUBACK)
        assert body == b"\x00\x06\x00"
    finally:
        teardown_env(e)


def test_shared_l2_detached_by_the_peer(procs):
    e = make_env(procs, policy={"subscribe": "hold"})
    try:
        waiting = e.client()
        assert waiting.connect("w1") == (0, 0)
        idle = e.client()
        assert idle.connect("w2") == (0, 0)
        waiting.send(R.subscribe(9, [("x", 1)]))
        e.peer.wait_msg(subject="subscribe")
        (l2,) = e.peer.ss_links()
        assert e.peer.close_link(l2["name"], "amqp:internal-error", "test")
        # the client whose SUBACK can no longer come is closed; the idle one stays
        assert waiting.is_closed()
        idle.send(R.PINGREQ_PKT)
        idle.expect(R.PINGRESP)
        # the next control message attaches a new L2
        e.peer.call(lambda: e.peer.policy.update({"subscribe": "accept"}))
        idle.send(R.subscribe(10, [("y", 0)]))
        _, body = idle.expect(R.SUBACK)
        assert body == b"\x00\x0a\x00"
        assert len(e.peer.ss_links()) == 1 and e.peer.ss_links()[0]["link"] is not l2["link"]
        assert "shared subscription-service link detached by the peer" in e.log()
    finally:
        teardown_env(e)
