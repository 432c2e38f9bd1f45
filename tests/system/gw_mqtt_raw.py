"""Minimal raw MQTT 3.1.1 client for byte-exact system tests (no library in
between): encoders for every client packet and a blocking reader."""
import socket
import struct
import time

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14


def enc_len(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            b |= 0x80
        out.append(b)
        if not n:
            return bytes(out)


def enc_str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def packet(first, body=b""):
    return bytes([first]) + enc_len(len(body)) + body


def connect(client_id, clean=True, keepalive=60, will=None, username=None, password=None,
            proto="MQTT", level=4):
    flags = 0x02 if clean else 0
    payload = enc_str(client_id)
    if will:
        topic, msg, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += enc_str(topic) + enc_str(msg)
    if username is not None:
        flags |= 0x80
        payload += enc_str(username)
    if password is not None:
        flags |= 0x40
        payload += enc_str(password)
    body = enc_str(proto) + bytes([level, flags]) + struct.pack("!H", keepalive) + payload
    return packet(0x10, body)


def publish(topic, payload=b"", qos=0, pid=None, retain=False, dup=False):
    first = 0x30 | (qos << 1) | (0x01 if retain else 0) | (0x08 if dup else 0)
    body = enc_str(topic)
    if qos:
        body += struct.pack("!H", pid)
    return packet(first, body + payload)


def ack(ptype, pid):
    first = (ptype << 4) | (0x02 if ptype == PUBREL else 0)
    return packet(first, struct.pack("!H", pid))


def subscribe(pid, filters):
    body = struct.pack("!H", pid) + b"".join(enc_str(f) + bytes([q]) for f, q in filters)
    return packet(0x82, body)


def unsubscribe(pid, filters):
    return packet(0xA2, struct.pack("!H", pid) + b"".join(enc_str(f) for f in filters))


PINGREQ_PKT = packet(0xC0)
DISCONNECT_PKT = packet(0xE0)


class Closed(Exception):
    pass


class RawClient:
    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no packet")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise Closed()
            self.buf += chunk

    def recv_packet(self, timeout=5.0):
        """(type, flags, body); raises Closed on EOF, socket.timeout if none."""
        deadline = time.monotonic() + timeout
        self._fill(2, deadline)
        mult, n, i = 1, 0, 1
        while True:
            self._fill(i + 1, deadline)
            b = self.buf[i]
            n += (b & 0x7F) * mult
            mult *= 128
            i += 1
            if not b & 0x80:
                break
        self._fill(i + n, deadline)
        first, body = self.buf[0], self.buf[i:i + n]
        self.buf = self.buf[i + n:]
        return first >> 4, first & 0x0F, body

    def expect(self, ptype, timeout=5.0):
        t, flags, body = self.recv_packet(timeout)
        if t != ptype:
            raise AssertionError(f"expected packet type {ptype}, got {t} flags={flags} body={body!r}")
        return flags, body

    def connect(self, client_id, **kw):
        """Send CONNECT; return (session_present, return_code)."""
        self.send(connect(client_id, **kw))
        _, body = self.expect(CONNACK)
        return body[0] & 1, body[1]

    def no_packet(self, within=0.5):
        """True if nothing arrives within the bound (negative check)."""
        try:
            self.recv_packet(within)
        except socket.timeout:
            return True
        return False

    def is_closed(self, timeout=5.0):
        """Wait until the gateway closes the connection (packets before EOF are skipped)."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.recv_packet(max(0.01, deadline - time.monotonic()))
        except Closed:
            return True
        except socket.timeout:
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def parse_publish(flags, body):
    qos = (flags >> 1) & 3
    tl = struct.unpack("!H", body[:2])[0]
    topic = body[2:2 + tl].decode()
    off = 2 + tl
    pid = None
    if qos:
        pid = struct.unpack("!H", body[off:off + 2])[0]
        off += 2
    return {"topic": topic, "qos": qos, "pid": pid, "retain": bool(flags & 1),
            "dup": bool(flags & 8), "payload": body[off:]}


def pid_of(body):
    return struct.unpack("!H", body[:2])[0]
