#!/usr/bin/python3
"""Side-by-side benchmark: our stack vs mosquitto 2.0 vs RabbitMQ 3.10.

Run through run.sh (it builds the -O2 tree first); see docs/performance.md.
Systems run ONE AFTER ANOTHER on 127.0.0.1, free ports, with the same
scenarios driven by mqtt-load (tests/bench/mqtt_load, docs/benchmarks.md).
A system that cannot be started is reported "unavailable" and the others
still run; the exit status is 0 unless the harness itself is misused.

Must run with /usr/bin/python3 (tests/system/rabbit.py imports proton).
"""
import argparse
import datetime
import json
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(REPO, "tests", "system"))
import rabbit  # noqa: E402

MOSQUITTO = "/usr/sbin/mosquitto"
SYSTEMS = ("ours", "mosquitto", "rabbitmq")
NOFILE = 20000


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Small helpers: ports, polling, a minimal raw MQTT 3.1.1 client.

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def ms(seconds):
    """mqtt-load duration syntax: integer milliseconds."""
    return f"{int(round(seconds * 1000))}ms"


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


def _utf8(s):
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


def _remlen(n):
    out = bytearray()
    while True:
        d, n = n % 128, n // 128
        out.append(d | (0x80 if n else 0))
        if not n:
            return bytes(out)


class RawMqtt:
    """Just enough MQTT 3.1.1 for session control and a fast drain: the hot
    loop parses whole receive buffers and answers every PUBACK of one read in
    a single send."""

    def __init__(self, port, client_id, clean, keepalive=60, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        var = b"\x00\x04MQTT\x04" + bytes([0x02 if clean else 0x00]) + \
            keepalive.to_bytes(2, "big") + _utf8(client_id)
        try:
            self.sock.sendall(b"\x10" + _remlen(len(var)) + var)
            pkt = self._read_packet()
            if pkt is None or pkt[0] >> 4 != 2 or pkt[1][1] != 0:
                raise ConnectionError(f"CONNACK refused or missing for {client_id}: {pkt!r}")
        except BaseException:
            self.sock.close()
            raise
        self.session_present = bool(pkt[1][0] & 1)

    def _read_packet(self):
        while True:
            p = self._parse_one()
            if p is not None:
                return p
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data

    def _parse_one(self):
        b = self.buf
        if len(b) < 2:
            return None
        mult, n, i = 1, 0, 1
        while True:
            if i >= len(b):
                return None
            n += (b[i] & 0x7F) * mult
            mult *= 128
            i += 1
            if not b[i - 1] & 0x80:
                break
            if i > 4:
                raise ConnectionError("bad remaining length")
        if len(b) < i + n:
            return None
        pkt = (b[0], bytes(b[i:i + n]))
        del b[:i + n]
        return pkt

    def subscribe(self, topic, qos):
        var = b"\x00\x01" + _utf8(topic) + bytes([qos])
        self.sock.sendall(b"\x82" + _remlen(len(var)) + var)
        while True:
            pkt = self._read_packet()
            if pkt is None:
                raise ConnectionError("closed before SUBACK")
            if pkt[0] >> 4 == 9:
                if pkt[1][2] == 0x80:
                    raise ConnectionError("SUBACK failure")
                return pkt[1][2]

    def disconnect(self):
        try:
            self.sock.sendall(b"\xe0\x00")
        except OSError:
            pass
        self.sock.close()

    def drain(self, expected, timeout):
        """Receive QoS 1 PUBLISHes of mqtt-load payloads (u32 pub, u64 seq,
        ...) until `expected` distinct (pub 0) sequence numbers arrived or no
        message came for `timeout` seconds. Returns counts and timings."""
        seen = bytearray(expected)
        distinct = dups = foreign = total = 0
        t_first = t_last = None
        t0 = time.monotonic()
        self.sock.settimeout(timeout)
        buf = self.buf
        # PUBLISHes may have come in the same read as the CONNACK: parse what
        # is buffered before waiting for more (the broker may be waiting for
        # our PUBACKs to send anything else).
        data = b"" if buf else None
        while distinct < expected:
            if data is None:
                try:
                    data = self.sock.recv(1 << 18)
                except socket.timeout:
                    break
                if not data:
                    break
                buf += data
            data = None
            i, n_buf, acks = 0, len(buf), []
            while n_buf - i >= 2:
                h = buf[i]
                mult, rl, j = 1, 0, i + 1
                while j < n_buf:
                    c = buf[j]
                    rl += (c & 0x7F) * mult
                    mult *= 128
                    j += 1
                    if not c & 0x80:
                        break
                else:
                    break
                end = j + rl
                if end > n_buf:
                    break
                if h >> 4 == 3:
                    qos = (h >> 1) & 3
                    tl = (buf[j] << 8) | buf[j + 1]
                    p = j + 2 + tl
                    if qos:
                        acks.append(b"\x40\x02" + bytes(buf[p:p + 2]))
                        p += 2
                    total += 1
                    if end - p >= 12:
                        pub, seq = struct.unpack_from(">IQ", buf, p)
                        if pub == 0 and seq < expected:
                            if seen[seq]:
                                dups += 1
                            else:
                                seen[seq] = 1
                                distinct += 1
                        else:
                            foreign += 1
                    else:
                        foreign += 1
                elif h >> 4 == 6:  # PUBREL (QoS 2): PUBCOMP
                    acks.append(b"\x70\x02" + bytes(buf[j:j + 2]))
                i = end
            del buf[:i]
            now = time.monotonic()
            if t_first is None and total:
                t_first = now
            t_last = now
            if acks:
                self.sock.sendall(b"".join(acks))
        drain_s = (t_last - t0) if t_last else 0.0
        return {"delivered": distinct, "dups": dups, "foreign": foreign, "received": total,
                "drain_s": drain_s,
                "drain_rate": distinct / drain_s if drain_s > 0 else 0.0,
                "first_after_s": (t_first - t0) if t_first else None}


def mqtt_ready(port):
    """CONNACK 0 for a clean session (the gateway answers 3 until its AMQP
    side is up)."""
    try:
        RawMqtt(port, f"bench-ready-{os.getpid()}", clean=True, timeout=2).disconnect()
        return True
    except (OSError, ConnectionError):
        return False


# --------------------------------------------------------------------------
# Systems under test.

class Unavailable(Exception):
    pass


class Proc:
    def __init__(self, args, log_path, env=None):
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.p = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, env=env, start_new_session=True)

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def tail(self, n=1500):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def stop(self, timeout=15):
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=10)
        self._log.close()
        return self.p.returncode


class System:
    name = "?"
    amqp = False   # offers an AMQP 1.0 endpoint for scenario 4

    def __init__(self, workdir):
        self.workdir = workdir
        self.mqtt_port = None

    def alive(self):
        return True

    def pids(self):
        return []


class Mosquitto(System):
    name = "mosquitto"

    def start(self):
        if not os.access(MOSQUITTO, os.X_OK):
            raise Unavailable(f"{MOSQUITTO} not installed")
        self.mqtt_port = free_port()
        conf = os.path.join(self.workdir, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write("\n".join([
                f"listener {self.mqtt_port} 127.0.0.1",
                "allow_anonymous true",
                "persistence false",
                "set_tcp_nodelay true",
                # Default 20: mosquitto 2.0 PUBRECs and then DROPS incoming QoS 2
                # beyond 20 in flight (docs/benchmarks.md); also bounds outgoing.
                "max_inflight_messages 1000",
                # Default 1000 queued per client; scenario 7 queues 100 000.
                "max_queued_messages 200000",
            ]) + "\n")
        self.proc = Proc([MOSQUITTO, "-c", conf], os.path.join(self.workdir, "mosquitto.log"))
        try:
            wait_until(lambda: self._check() and mqtt_ready(self.mqtt_port), 15, "mosquitto")
        except (TimeoutError, Unavailable):
            self.stop()
            raise
        return self

    def _check(self):
        if not self.proc.alive():
            raise Unavailable(f"mosquitto exited: {self.proc.tail()}")
        return True

    def alive(self):
        return self.proc.alive()

    def pids(self):
        return [self.proc.pid]

    def stop(self):
        self.proc.stop()


class RabbitMQ(System):
    name = "rabbitmq"
    amqp = True

    def start(self):
        if not rabbit.available():
            raise Unavailable(rabbit.SKIP_REASON)
        self.r = rabbit.RabbitMQ(self.workdir)
        try:
            self.r.start()
        except (RuntimeError, TimeoutError) as e:
            raise Unavailable(f"RabbitMQ did not start: {e}")
        self.mqtt_port = self.r.mqtt_port
        self.amqp_url = self.r.amqp_url
        return self

    def amqp_address(self, root):
        # MQTT topic <root>/<p> is routing key <root>.<p> on amq.topic.
        return f"/exchange/amq.topic/{root}.#"

    def alive(self):
        return self.r.proc is not None and self.r.proc.poll() is None

    def pids(self):
        return self.r.beam_pids()

    def stop(self):
        self.r.stop(check=False)


class Ours(System):
    """subscription-service + will-service + mqtt-gateway wired as the repo's
    run.sh does (no router; the gateway's --route table)."""
    name = "ours"
    amqp = True

    def __init__(self, workdir, build):
        super().__init__(workdir)
        self.build = build
        self.procs = []

    def _bin(self, *parts):
        p = os.path.join(self.build, *parts)
        if not os.access(p, os.X_OK):
            raise Unavailable(f"{p} not built")
        return p

    def start(self):
        level = os.environ.get("GW_BENCH_LOG_LEVEL", "warn")
        subs = self._bin("services", "subscription", "subscription-service")
        will = self._bin("services", "will", "will-service")
        gw = self._bin("gateway", "mqtt-gateway")
        subs_port, will_port, self.mqtt_port = free_port(), free_port(), free_port()
        self.amqp_url = f"amqp://127.0.0.1:{subs_port}"
        w = self.workdir
        try:
            self._start([subs, "--listen", f"127.0.0.1:{subs_port}",
                         "--store", os.path.join(w, "subscriptions.db"),
                         "--log-level", level], "subscription-service", subs_port)
            self._start([will, "--listen", f"127.0.0.1:{will_port}",
                         "--store", os.path.join(w, "wills.db"),
                         "--publish-url", self.amqp_url, "--log-level", level],
                        "will-service", will_port)
            # --inflight-window 1000: the same per-subscriber in-flight bound
            # as mosquitto's max_inflight_messages 1000 below (default 32).
            self._start([gw, "--mqtt-listen", f"127.0.0.1:{self.mqtt_port}",
                         "--inflight-window", "1000",
                         "--amqp-url", self.amqp_url,
                         "--route", f"$mqtt.lwtservice=amqp://127.0.0.1:{will_port}",
                         "--log-level", level], "mqtt-gateway", self.mqtt_port)
            wait_until(lambda: self._check() and mqtt_ready(self.mqtt_port), 20,
                       "gateway CONNACK 0")
        except (TimeoutError, OSError, Unavailable) as e:
            self.stop()
            raise Unavailable(f"stack did not start: {e}")
        return self

    def _start(self, args, name, port):
        p = Proc(args, os.path.join(self.workdir, f"{name}.log"))
        p.name = name
        self.procs.append(p)
        wait_until(lambda: self._check() and port_open(port), 20, f"{name} port {port}")

    def _check(self):
        for p in self.procs:
            if not p.alive():
                raise Unavailable(f"{p.name} exited with {p.p.returncode}: {p.tail()}")
        return True

    def amqp_address(self, root):
        # A native subscriber on the subscription-service: source = topic filter.
        return f"{root}/#"

    def alive(self):
        return all(p.alive() for p in self.procs)

    def pids(self):
        return [p.pid for p in self.procs]

    def stop(self):
        for p in reversed(self.procs):  # gateway first
            p.stop()
        self.procs = []


def cpu_seconds(pids):
    """utime + stime of the processes (all their threads), in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def settle(sysobj, limit=60.0, window=0.5, busy=0.15):
    """Wait until the system under test is idle (< `busy` of a core over
    `window` s), so that a backlog left by one scenario does not compete with
    the next. Returns the seconds waited, or None if it stayed busy."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        pids = sysobj.pids()
        c0, w0 = cpu_seconds(pids), time.monotonic()
        # This sleep is the measurement window of a poll, not a synchronisation.
        time.sleep(window)
        if cpu_seconds(pids) - c0 < busy * (time.monotonic() - w0):
            return round(time.monotonic() - t0, 2)
    return None


# --------------------------------------------------------------------------
# Scenarios.

class Runner:
    def __init__(self, args):
        self.args = args
        self.load = os.path.join(args.build_dir, "tests", "bench", "mqtt_load", "mqtt-load")
        self.dur = args.duration
        self.warm = min(1.0, self.dur / 5)

    def mqtt_load(self, label, sysobj, extra, timeout):
        # Every scenario has its own topics and client ids: a backlog a
        # system still holds from the previous scenario cannot reach this
        # one's subscribers.
        cmd = [self.load, "--port", str(sysobj.mqtt_port), "--payload", "100", "--json",
               "--label", label, "--client-prefix", f"{label}-",
               "--topic", f"{label}/%p", "--sub-topic", f"{label}/#"] + [str(x) for x in extra]
        t0 = time.monotonic()
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"mqtt-load timed out after {timeout}s", "cmd": cmd}
        lines = [l for l in res.stdout.splitlines() if l.strip()]
        if res.returncode != 0 or len(lines) != 1:
            return {"error": f"mqtt-load rc={res.returncode}: {res.stderr.strip()[-600:]}",
                    "cmd": cmd}
        out = json.loads(lines[0])
        out["wall_s"] = time.monotonic() - t0
        out["cmd"] = " ".join(cmd[1:])
        return out

    def timed(self, dur):
        # A system may accept faster than it delivers; give the backlog time
        # to arrive so that "lost" means lost, not late.
        return ["--duration", ms(dur), "--warmup", ms(self.warm),
                "--drain", ms(min(60.0, max(5.0, 2 * dur)))]

    # Each returns {metric: value, ...} plus "raw" runs.
    def s1(self, s):
        r = self.mqtt_load("s1", s, ["--qos", 0, "--publishers", 1, "--subscribers", 1]
                           + self.timed(self.dur), self.dur + 60)
        return self.pick(r, delivered_rate="delivered_rate")

    def s2(self, s):
        r = self.mqtt_load("s2", s, ["--qos", 1, "--publishers", 1, "--subscribers", 1,
                                     "--window", 100] + self.timed(self.dur), self.dur + 60)
        return self.pick(r, delivered_rate="delivered_rate")

    def s3(self, s):
        r = self.mqtt_load("s3", s, ["--qos", 1, "--publishers", 100, "--subscribers", 1,
                                     "--window", 100,
                                     "--setup-timeout", "60s"]
                           + self.timed(self.dur), self.dur + 120)
        return self.pick(r, delivered_rate="delivered_rate")

    def s4(self, s, qos):
        if not s.amqp:
            return {"na": "no AMQP 1.0 endpoint"}
        r = self.mqtt_load(f"s4q{qos}", s, ["--qos", qos, "--publishers", 1, "--subscribers", 0,
                                            "--amqp-url", s.amqp_url,
                                            "--amqp-address", s.amqp_address(f"s4q{qos}"),
                                            "--amqp-receivers", 1]
                           + self.timed(self.dur), self.dur + 60)
        return self.pick(r, delivered_rate="delivered_rate")

    def s5(self, s):
        r = self.mqtt_load("s5", s, ["--qos", 1, "--publishers", 1, "--subscribers", 1,
                                     "--window", 1000, "--rate", 20000]
                           + self.timed(self.dur), self.dur + 60)
        m = self.pick(r, delivered_rate="delivered_rate")
        if "raw" in m and "error" not in m["raw"]:
            m["p50_us"] = r["latency_us"]["p50"]
            m["p99_us"] = r["latency_us"]["p99"]
        return m

    def s6(self, s):
        n = max(100, int(15000 * self.args.scale))
        extra = ["--connections", n, "--will", "--persistent", "--connect-concurrency", 100,
                 "--setup-timeout", "600s", "--hold", "0s"]
        for pid in s.pids():
            extra += ["--pid", pid]
        r = self.mqtt_load("s6", s, extra, 900)
        m = self.pick(r, connect_rate="connect_rate", rss_per_conn="rss_per_conn_bytes")
        m["connections"] = n
        if "raw" in m and "error" not in m["raw"] and r.get("connected") != n:
            m["error"] = f"only {r.get('connected')} of {n} connected"
        return m

    def s7(self, s):
        n = max(1000, int(100000 * self.args.scale))
        cid = "s7-s0"
        try:
            c = RawMqtt(s.mqtt_port, cid, clean=False)
            c.subscribe("s7/#", 1)
            c.disconnect()
        except (OSError, ConnectionError) as e:
            return {"error": f"session setup: {e}"}
        # The subscriber is offline for a moment before publishing starts:
        # the system has finished processing its DISCONNECT (CPU idle).
        settle(s, limit=10.0)
        r = self.mqtt_load("s7", s, ["--qos", 1, "--publishers", 1, "--subscribers", 0,
                                     "--window", 100, "--messages", n, "--duration", "600s",
                                     "--drain", "10s"], 700)
        if "error" in r:
            return {"error": "enqueue: " + r["error"], "raw": {"enqueue": r}}
        # Every PUBACK is the system's promise to keep the message: drain
        # at once, without waiting.
        try:
            c = RawMqtt(s.mqtt_port, cid, clean=False)
        except (OSError, ConnectionError) as e:
            return {"error": f"reconnect: {e}", "raw": {"enqueue": r}}
        d = c.drain(n, timeout=max(10.0, self.dur))
        c.disconnect()
        lost = r["acked"] - d["delivered"]
        m = {"enqueue_rate": r["acked_rate"], "drain_rate": d["drain_rate"],
                "lost": lost, "acked": r["acked"], "delivered": d["delivered"],
                "dups": d["dups"], "session_present": c.session_present,
                "raw": {"enqueue": r, "drain": d}}
        if not c.session_present:
            m["error"] = "reconnect: CONNACK session present = 0"
        return m

    @staticmethod
    def pick(r, **fields):
        if "error" in r:
            return {"error": r["error"], "raw": r}
        m = {k: r.get(v) for k, v in fields.items()}
        if "expected" in r:
            # QoS 1: acknowledged, never delivered; QoS 0: sent, never
            # delivered (allowed); still in flight at the end of the drain.
            m["not_delivered"] = r["lost"] + r["missing"] + r["unacked_missing"]
        for k in ("lost", "missing", "unacked_missing", "dups", "complete", "publish_rate",
                  "drain_timed_out"):
            if k in r:
                m[k] = r[k]
        m["raw"] = r
        return m


# Messages that did not arrive: "lost" (QoS 1, acknowledged) + "missing"
# (QoS 0) + still unacknowledged at the end of the drain.
ND = ("not_delivered", "msgs", "lower")

# (id, title, runner, [(metric, unit, better)], fresh system?)
SCENARIOS = [
    ("1", "QoS 0, 1 pub -> 1 sub", lambda R, s: R.s1(s),
     [("delivered_rate", "msg/s", "higher"), ND], False),
    ("2", "QoS 1, 1 -> 1, window 100", lambda R, s: R.s2(s),
     [("delivered_rate", "msg/s", "higher"), ND], False),
    ("3", "QoS 1, 100 pubs -> 1 wildcard sub", lambda R, s: R.s3(s),
     [("delivered_rate", "msg/s", "higher"), ND], False),
    ("4a", "MQTT QoS 0 -> AMQP 1.0 receiver", lambda R, s: R.s4(s, 0),
     [("delivered_rate", "msg/s", "higher"), ND], False),
    ("4b", "MQTT QoS 1 -> AMQP 1.0 receiver", lambda R, s: R.s4(s, 1),
     [("delivered_rate", "msg/s", "higher"), ND], False),
    ("5", "QoS 1 at 20 000 msg/s: latency", lambda R, s: R.s5(s),
     [("p50_us", "us", "lower"), ("p99_us", "us", "lower"),
      ("delivered_rate", "msg/s", "higher"), ND], False),
    ("6", "idle clients, will + persistent", lambda R, s: R.s6(s),
     [("connect_rate", "conn/s", "higher"), ("rss_per_conn", "B/conn", "lower")], True),
    ("7", "100k QoS 1 queued offline, drain", lambda R, s: R.s7(s),
     [("enqueue_rate", "msg/s", "higher"), ("drain_rate", "msg/s", "higher"),
      ("lost", "msgs", "lower")], True),
]

TARGETS = {
    "1": "ours >= mosquitto and >= 3x RabbitMQ",
    "2": "ours >= mosquitto and >= 3x RabbitMQ",
    "3": "ours >= mosquitto and >= 3x RabbitMQ",
    "4a": "ours >= 1.5x RabbitMQ MQTT->AMQP",
    "4b": "ours >= 1.5x RabbitMQ MQTT->AMQP",
    "5": "ours p99 < 1 ms",
    "6": "ours < 4 KB/client (gateway+services), >= 10 000 conn/s",
    "7": "ours no loss, drain >= 50 000 msg/s",
}


def check_target(sid, res):
    """'met' / 'MISSED (...)' / None (not measurable) for our column."""
    ours = res.get("ours", {})

    def val(system, metric):
        v = res.get(system, {}).get(metric)
        return v if isinstance(v, (int, float)) else None
    o = {k: v for k, v in ours.items() if isinstance(v, (int, float))}
    lost = o.get("lost") or 0
    note = f", lost {lost} acknowledged" if lost and sid != "7" else ""
    status = _check_target(sid, res, val, o)
    if status and note:
        status = ("MISSED (" + note[2:] + ")") if status == "met" else status[:-1] + note + ")"
    return status


def _check_target(sid, res, val, o):
    if sid in ("1", "2", "3"):
        me, mo, ra = val("ours", "delivered_rate"), val("mosquitto", "delivered_rate"), \
            val("rabbitmq", "delivered_rate")
        if me is None:
            return None
        why = []
        if mo is not None and me < mo:
            why.append(f"{me / mo:.2f}x mosquitto")
        if ra is not None and me < 3 * ra:
            why.append(f"{me / ra:.2f}x RabbitMQ")
        return "met" if not why else "MISSED (" + ", ".join(why) + ")"
    if sid in ("4a", "4b"):
        me, ra = val("ours", "delivered_rate"), val("rabbitmq", "delivered_rate")
        if me is None or ra is None:
            return None
        return "met" if me >= 1.5 * ra else f"MISSED ({me / ra:.2f}x RabbitMQ)"
    if sid == "5":
        if "p99_us" not in o:
            return None
        return "met" if o["p99_us"] < 1000 else f"MISSED (p99 {o['p99_us'] / 1000:.2f} ms)"
    if sid == "6":
        if "rss_per_conn" not in o or "connect_rate" not in o:
            return None
        why = []
        if o["rss_per_conn"] >= 4096:
            why.append(f"{o['rss_per_conn'] / 1024:.1f} KB/client")
        if o["connect_rate"] < 10000:
            why.append(f"{o['connect_rate']:.0f} conn/s")
        return "met" if not why else "MISSED (" + ", ".join(why) + ")"
    if sid == "7":
        if "drain_rate" not in o:
            return None
        why = []
        if o.get("lost", 1) != 0:
            why.append(f"lost {o.get('lost')}")
        if o["drain_rate"] < 50000:
            why.append(f"drain {o['drain_rate']:.0f} msg/s")
        return "met" if not why else "MISSED (" + ", ".join(why) + ")"
    return None


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, float) and v < 100:
        return f"{v:.1f}" if v != int(v) else f"{int(v)}"
    return f"{v:,.0f}".replace(",", " ")


def cell(res, metric):
    if res is None:
        return "not run"
    if "unavailable" in res:
        return "unavailable"
    if "na" in res:
        return "n/a"
    if "error" in res:
        return "error"
    return fmt(res.get(metric))


def print_table(results, systems):
    cols = ["scenario", "metric"] + list(systems)
    others = [s for s in systems if s != "ours"]
    if "ours" in systems:
        cols += [f"ours/{s}" for s in others] + ["target"]
    rows = []
    for sid, title, _, metrics, _ in SCENARIOS:
        if sid not in results:
            continue
        res = results[sid]
        for k, (metric, unit, better) in enumerate(metrics):
            row = [f"{sid} {title}" if k == 0 else "", f"{metric} [{unit}, {better} better]"]
            row += [cell(res.get(s), metric) for s in systems]
            if "ours" in systems:
                for s in others:
                    a, b = res.get("ours", {}).get(metric), res.get(s, {}).get(metric)
                    ok = isinstance(a, (int, float)) and isinstance(b, (int, float)) and b
                    row.append(f"{a / b:.2f}" if ok else "-")
                row.append((check_target(sid, res) or "-") if k == 0 else "")
            rows.append(row)
    widths = [max(len(str(r[i])) for r in rows + [cols]) for i in range(len(cols))]
    line = " | ".join(c.ljust(w) for c, w in zip(cols, widths))
    print(line)
    print("-|-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    # Errors, so that a cell saying "error" can be understood.
    for sid in results:
        for s, res in results[sid].items():
            if isinstance(res, dict) and ("error" in res or "unavailable" in res):
                why = str(res.get("error") or res.get("unavailable")).replace("\n", "; ")
                print(f"  scenario {sid} {s}: {why[:400]}")


def make_system(name, workdir, args):
    if name == "ours":
        return Ours(workdir, args.build_dir)
    if name == "mosquitto":
        return Mosquitto(workdir)
    return RabbitMQ(workdir)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=os.environ.get("GW_BENCH_BUILD",
                                                          os.path.join(REPO, "build-bench")))
    ap.add_argument("--systems", default=",".join(SYSTEMS),
                    help="comma list of ours,mosquitto,rabbitmq (default all)")
    ap.add_argument("--scenarios", default=",".join(s[0] for s in SCENARIOS),
                    help="comma list of 1,2,3,4a,4b,5,6,7 (4 = 4a,4b)")
    ap.add_argument("--duration", type=float, default=10.0,
                    help="seconds of publishing per timed scenario (default 10)")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="fraction of 15 000 clients (6) and 100 000 messages (7)")
    ap.add_argument("--quick", action="store_true", help="3 s scenarios, all systems")
    ap.add_argument("--smoke", action="store_true",
                    help="every scenario ~1 s against mosquitto only (plus --systems if given)")
    ap.add_argument("--out", help="JSON results file (default <build-dir>/bench-<time>.json)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = ap.parse_args()
    if args.quick:
        args.duration = 3.0
    if args.smoke:
        args.duration = 1.0
        args.scale = min(args.scale, 0.05)
        if "--systems" not in sys.argv:
            args.systems = "mosquitto"
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    for s in systems:
        if s not in SYSTEMS:
            ap.error(f"unknown system {s!r}")
    wanted = []
    for s in args.scenarios.split(","):
        s = s.strip()
        wanted += ["4a", "4b"] if s == "4" else [s]
    ids = [sc[0] for sc in SCENARIOS]
    for s in wanted:
        if s not in ids:
            ap.error(f"unknown scenario {s!r}")
    runner = Runner(args)
    if not os.access(runner.load, os.X_OK):
        ap.error(f"{runner.load} not built (run tests/bench/harness/run.sh)")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if nofile < 15000 * args.scale * 1.1 and "6" in wanted:
        log(f"warning: open files limit {nofile} is below what scenario 6 needs")

    work = tempfile.mkdtemp(prefix="gw-bench-")
    started = datetime.datetime.now(datetime.timezone.utc)
    meta = {"started": started.isoformat(timespec="seconds"), "duration_s": args.duration,
            "scale": args.scale, "systems": systems, "scenarios": wanted,
            "host": {"nproc": os.cpu_count(), "loadavg_start": os.getloadavg()},
            "build_dir": args.build_dir, "work_dir": work}
    results = {sid: {} for sid in wanted}

    for name in systems:
        groups = []   # scenario groups sharing one fresh instance
        shared = [sc for sc in SCENARIOS if sc[0] in wanted and not sc[4]]
        if shared:
            groups.append(shared)
        groups += [[sc] for sc in SCENARIOS if sc[0] in wanted and sc[4]]
        for gi, group in enumerate(groups):
            wd = os.path.join(work, f"{name}-{gi}")
            os.makedirs(wd)
            sysobj = make_system(name, wd, args)
            log(f"{name}: starting for scenarios {','.join(sc[0] for sc in group)}")
            try:
                sysobj.start()
            except Unavailable as e:
                log(f"{name}: unavailable: {e}")
                for sc in group:
                    results[sc[0]][name] = {"unavailable": str(e)[:2000]}
                continue
            try:
                for sid, title, fn, _, _ in group:
                    if not sysobj.alive():
                        results[sid][name] = {"error": "system died before this scenario"}
                        continue
                    waited = settle(sysobj)
                    if waited is None:
                        log(f"{name}: still busy after 60 s (backlog of the previous "
                            "scenario?); running anyway")
                    log(f"{name}: scenario {sid} ({title})")
                    t0 = time.monotonic()
                    try:
                        m = fn(runner, sysobj)
                    except (OSError, ConnectionError, TimeoutError, ValueError, KeyError) as e:
                        # e.g. the system reset a connection: record, go on.
                        m = {"error": f"{type(e).__name__}: {e}"}
                    m["scenario_s"] = round(time.monotonic() - t0, 2)
                    m["settle_s"] = waited
                    m["loadavg"] = os.getloadavg()
                    if not sysobj.alive():
                        m["error"] = (m.get("error", "") + " system died during the run").strip()
                    results[sid][name] = m
                    summary = {k: v for k, v in m.items() if k != "raw"}
                    log(f"{name}: {sid}: {json.dumps(summary)}")
            finally:
                sysobj.stop()
    meta["host"]["loadavg_end"] = os.getloadavg()
    meta["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    for sid in wanted:
        results[sid]["target"] = TARGETS.get(sid)
        results[sid]["target_status"] = check_target(sid, results[sid])
    out = args.out or os.path.join(args.build_dir,
                                   f"bench-{started.strftime('%Y%m%dT%H%M%SZ')}.json")
    with open(out, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    print()
    print(f"duration {args.duration:g}s per timed scenario, scale {args.scale:g}, "
          f"load average start {meta['host']['loadavg_start'][0]:.2f} "
          f"end {meta['host']['loadavg_end'][0]:.2f}, {os.cpu_count()} cores")
    print_table(results, systems)
    print(f"\nJSON results: {out}")
    if args.keep:
        print(f"logs: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
