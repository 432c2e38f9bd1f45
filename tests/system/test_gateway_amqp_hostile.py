"""Issue 7: AMQP peers that send garbage or oversized frames.

A raw-socket "AMQP peer" answers the gateway's connection with bytes that
are not AMQP, or with a valid protocol header followed by a frame that
declares 2 GiB. The gateway must log a framing error, drop that
connection, keep reconnecting with back-off, stay up (CONNACK 3 while its
AMQP side is down) and never buffer the declared size."""
import socket
import threading

import pytest

import gw_mqtt_raw as R
import gwtest

GATEWAY = ("gateway", "mqtt-gateway")

SASL_HDR = b"AMQP\x03\x01\x00\x00"
AMQP_HDR = b"AMQP\x00\x01\x00\x00"
# A complete, pipelined SASL exchange (AMQP 1.0 5.3): sasl-mechanisms offering
# ANONYMOUS, then sasl-outcome ok, so that the AMQP frames after it are read.
SASL_MECHS = (b"\x00\x00\x00\x19\x02\x01\x00\x00"  # frame: size 25, doff 2, SASL
              b"\x00\x53\x40\xc0\x0c\x01\xa3\x09ANONYMOUS")
SASL_OK = b"\x00\x00\x00\x10\x02\x01\x00\x00" b"\x00\x53\x44\xc0\x03\x01\x50\x00"


class HostilePeer:
    """Accepts connections and answers each with `reply` (bytes), then waits
    for the gateway to close. Counts connections."""

    def __init__(self, reply):
        self.reply = reply
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(4096)  # the gateway's protocol header
                    conn.sendall(self.reply)
                    while conn.recv(4096):
                        pass
                except OSError:
                    pass

    def close(self):
        self.stop = True
        self.t.join(timeout=5)
        self.sock.close()


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@pytest.mark.parametrize("reply", [
    b"HTTP/1.1 400 Bad Request\r\n\r\n" + bytes(range(256)) * 4,  # not AMQP at all
    SASL_HDR + b"\xff\xff\xff\xff" + b"\x02\x01\x00\x00" + b"x" * 64,  # SASL frame of 4 GiB
    SASL_HDR + SASL_MECHS + SASL_OK + AMQP_HDR
    + b"\x7f\xff\xff\xff" + b"\x02\x00\x00\x00" + b"y" * 4096,  # AMQP frame of 2 GiB
], ids=["garbage", "huge-sasl-frame", "huge-amqp-frame"])
def test_hostile_amqp_peer(procs, reply):
    peer = HostilePeer(reply)
    try:
        port = gwtest.free_port()
        gw = procs.start([gwtest.binary(*GATEWAY), "--mqtt-listen", f"127.0.0.1:{port}",
                          "--amqp-url", f"amqp://127.0.0.1:{peer.port}", "--workers", "1"],
                         "gw", ready_port=port)
        before = rss_kb(gw.proc.pid)
        # Several connections in a row: it keeps reconnecting (back-off), each refused.
        gwtest.wait_until(lambda: peer.accepted >= 3, timeout=20, what="three reconnects")
        assert gw.alive()
        c = R.RawClient(port)
        assert c.connect("h1") == (0, 3)
        grown = rss_kb(gw.proc.pid) - before
        assert grown < 32 * 1024, f"RSS grew by {grown} KB"
        assert "amqp:connection:framing-error" in gw.log()
        if reply.startswith(SASL_HDR + SASL_MECHS):
            # The SASL exchange passed and the frame header was refused at
            # once for its declared size (proton 0.37 words a frame above the
            # local maximum, 256 KiB here, "malformed frame"); it did not wait
            # for 2 GiB of body, and RSS did not grow (checked above).
            assert "framing-error malformed frame" in gw.log(), gw.log()[-3000:]
    finally:
        peer.close()
