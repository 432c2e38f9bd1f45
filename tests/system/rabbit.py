"""A private RabbitMQ 3.10 (rabbitmq_amqp1_0 + rabbitmq_mqtt) on free loopback
ports, for system tests and the benchmark harness.

Each instance owns everything under one directory: its config, enabled
plugins file, mnesia, logs, a HOME with its own Erlang cookie, and a private
epmd (started by us on its own port, stopped by us). Nothing is shared with
the Debian package's service or with another instance, so several may run at
once. All listeners (AMQP 0-9-1 + AMQP 1.0, MQTT, Erlang distribution, epmd)
are bound to 127.0.0.1.

Use from a test module, as a session-scoped fixture (one broker for the whole
pytest session, ~10 s to start):

    pytest_plugins = ["rabbit"]        # registers the fixture once, globally

    def test_x(rabbit_session):
        rabbit_session.amqp_url        # amqp://127.0.0.1:<port> (AMQP 1.0)
        rabbit_session.mqtt_port

(`pytest_plugins` in a test module is preferred over `from rabbit import
rabbit_session`: an imported fixture is a separate definition per importing
module, so two modules importing it would start two brokers.)

Outside pytest (bench harness):

    r = RabbitMQ("/tmp/dir").start(); ...; r.stop()

Address mapping (RabbitMQ 3.10 plugins, verified by test_rabbit_fixture.py):
  * MQTT publish to topic a/b  ->  exchange amq.topic, routing key "a.b"
    ('/' and '.' are swapped; MQTT '+' and '#' become '*' and '#').
  * AMQP 1.0 receiver source "/exchange/amq.topic/a.b" (binding key, so
    "/exchange/amq.topic/bench.#" gets every bench/... topic) gets an
    exclusive auto-delete queue bound to it.
  * AMQP 1.0 "/queue/<name>": a durable queue (declared if missing);
    "/exchange/amq.topic/<key>" as a sender target publishes with that key.
  * Bodies: MQTT -> AMQP 1.0 arrives as one data section (the payload).
    AMQP 1.0 -> MQTT: the MQTT payload is the body only if the message is a
    single data section (proton: Message(body=b"..", inferred=True)); an
    amqp-value body reaches MQTT still encoded (00 53 77 a0 ..).

If rabbitmq-server is not installed the fixture skips (install it with
`apt-get install -y rabbitmq-server`, or scripts/deps.sh with
GW_DEPS_EXTRA=1); stop the package's own service (`service rabbitmq-server
stop`) if it auto-started: it is not used.
"""
import os
import shutil
import signal
import socket
import subprocess
import time

RABBIT_BIN_DIR = "/usr/lib/rabbitmq/bin"
RABBITMQ_SERVER = os.path.join(RABBIT_BIN_DIR, "rabbitmq-server")
RABBITMQCTL = os.path.join(RABBIT_BIN_DIR, "rabbitmqctl")
EPMD = shutil.which("epmd") or "/usr/bin/epmd"

SKIP_REASON = ("rabbitmq-server is not installed (apt-get install -y rabbitmq-server, "
               "or GW_DEPS_EXTRA=1 scripts/deps.sh)")


def available():
    """True when the RabbitMQ server scripts and epmd are installed."""
    return (os.access(RABBITMQ_SERVER, os.X_OK) and os.access(RABBITMQCTL, os.X_OK)
            and os.access(EPMD, os.X_OK))


def _free_ports(n):
    """n distinct ports that were free a moment ago on 127.0.0.1."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _wait_until(predicate, timeout, what, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def _port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def mqtt_connack_ok(port, client_id="rabbit-ready", timeout=2.0):
    """Send a raw MQTT 3.1.1 CONNECT (clean session, keep alive 10, no
    credentials) and return True on CONNACK return code 0."""
    cid = client_id.encode()
    var = b"\x00\x04MQTT\x04\x02\x00\x0a" + len(cid).to_bytes(2, "big") + cid
    pkt = bytes([0x10, len(var)]) + var
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(pkt)
            buf = b""
            while len(buf) < 4:
                chunk = s.recv(4 - len(buf))
                if not chunk:
                    return False
                buf += chunk
            ok = buf[0] == 0x20 and buf[1] == 2 and buf[3] == 0
            if ok:
                s.sendall(b"\xe0\x00")  # DISCONNECT
            return ok
    except OSError:
        return False


def amqp_open_ok(url, timeout=2.0):
    """Open and close an AMQP 1.0 connection with python3-qpid-proton."""
    try:
        from proton.utils import BlockingConnection
    except ImportError as e:  # wrong interpreter: say so instead of waiting
        raise RuntimeError("python3-qpid-proton not importable; use /usr/bin/python3") from e
    try:
        conn = BlockingConnection(url, timeout=timeout)
    except Exception:  # ConnectionException, Timeout, socket errors
        return False
    try:
        conn.close()
    except Exception:
        pass
    return True


class RabbitMQ:
    """One private RabbitMQ node. Attributes after start(): amqp_port (AMQP
    0-9-1 and AMQP 1.0), mqtt_port, dist_port, epmd_port, node, amqp_url,
    base (its directory)."""

    def __init__(self, base, extra_conf=()):
        self.base = str(base)
        self.extra_conf = list(extra_conf)
        (self.amqp_port, self.mqtt_port, self.dist_port,
         self.epmd_port) = _free_ports(4)
        self.node = f"rabbit-{self.amqp_port}@localhost"
        self.amqp_url = f"amqp://127.0.0.1:{self.amqp_port}"
        self.proc = None
        self.epmd = None
        self._log = None
        self._epmd_log = None
        self.log_path = os.path.join(self.base, "rabbitmq-server.out")
        self.env = self._make_env()

    def _make_env(self):
        home = os.path.join(self.base, "home")
        for d in ("home", "mnesia", "log"):
            os.makedirs(os.path.join(self.base, d), exist_ok=True)
        # The cookie must exist with mode 0400 before the CLI tools run.
        cookie = os.path.join(home, ".erlang.cookie")
        if not os.path.exists(cookie):
            with open(cookie, "w") as f:
                f.write("gwtest" + os.urandom(12).hex())
            os.chmod(cookie, 0o400)
        conf = os.path.join(self.base, "rabbitmq.conf")
        lines = [
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}",
            f"mqtt.listeners.tcp.default = 127.0.0.1:{self.mqtt_port}",
            "loopback_users = none",
            "mqtt.allow_anonymous = true",
            "mqtt.default_user = guest",
            "mqtt.default_pass = guest",
            "amqp1_0.default_user = guest",
            "log.console = false",
            "log.file.level = warning",
            # Tests and benchmarks may push a lot through a tmp dir.
            "disk_free_limit.absolute = 50MB",
            "vm_memory_high_watermark.relative = 0.6",
        ] + self.extra_conf
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        plugins = os.path.join(self.base, "enabled_plugins")
        with open(plugins, "w") as f:
            f.write("[rabbitmq_amqp1_0,rabbitmq_mqtt].\n")
        env = dict(os.environ)
        env.update({
            "HOME": home,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_CONFIG_FILE": conf,
            "RABBITMQ_ENABLED_PLUGINS_FILE": plugins,
            "RABBITMQ_MNESIA_BASE": os.path.join(self.base, "mnesia"),
            "RABBITMQ_LOG_BASE": os.path.join(self.base, "log"),
            "RABBITMQ_CONF_ENV_FILE": os.path.join(self.base, "rabbitmq-env.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": os.path.join(self.base, "advanced.config"),
            "RABBITMQ_PID_FILE": os.path.join(self.base, "rabbit.pid"),
            # Distribution only on loopback.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        })
        # Ignore the package's /etc/rabbitmq/rabbitmq-env.conf.
        open(env["RABBITMQ_CONF_ENV_FILE"], "a").close()
        return env

    def start(self, timeout=90.0):
        """Start epmd and the node; return once AMQP 1.0 opens and MQTT
        CONNECT is accepted (both plugins up)."""
        self._epmd_log = open(os.path.join(self.base, "epmd.out"), "ab")
        self.epmd = subprocess.Popen([EPMD, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                                     stdout=self._epmd_log, stderr=subprocess.STDOUT,
                                     env=self.env, start_new_session=True)
        try:
            _wait_until(lambda: self._check_alive(self.epmd, "epmd") and _port_open(self.epmd_port),
                        10, "epmd")
            self._log = open(self.log_path, "ab")
            self.proc = subprocess.Popen([RABBITMQ_SERVER], stdout=self._log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=self.env, start_new_session=True, cwd=self.base)
            _wait_until(lambda: self._check_alive(self.proc, "rabbitmq-server")
                        and _port_open(self.amqp_port) and _port_open(self.mqtt_port),
                        timeout, "RabbitMQ listeners", interval=0.2)
            _wait_until(lambda: amqp_open_ok(self.amqp_url), 20, "RabbitMQ AMQP 1.0 open",
                        interval=0.2)
            _wait_until(lambda: mqtt_connack_ok(self.mqtt_port), 20, "RabbitMQ MQTT CONNACK",
                        interval=0.2)
        except BaseException:
            self.stop(check=False)
            raise
        return self

    def _check_alive(self, proc, name):
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode} before ready:\n"
                               f"{self.log()[-4000:]}")
        return True

    def log(self):
        """Console output plus the node's own log file."""
        text = ""
        for path in (self.log_path, os.path.join(self.base, "log", f"{self.node}.log")):
            try:
                with open(path, "r", errors="replace") as f:
                    text += f"--- {path}\n" + f.read()
            except FileNotFoundError:
                pass
        return text

    def ctl(self, *args, timeout=60):
        """Run rabbitmqctl against this node; return CompletedProcess."""
        return subprocess.run([RABBITMQCTL, "-n", self.node] + [str(a) for a in args],
                              env=self.env, capture_output=True, text=True, timeout=timeout)

    def beam_pids(self):
        """Pids of the Erlang VM(s) under the server script (for RSS)."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            try:
                with open(f"/proc/{pid}/comm") as f:
                    comm = f.read().strip()
                kids = []
                for tid in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{tid}/children") as f:
                        kids += [int(x) for x in f.read().split()]
            except OSError:
                continue
            if comm.startswith("beam"):
                found.append(pid)
            todo += kids
        return found

    def stop(self, timeout=60.0, check=True):
        """SIGTERM the server script (it runs a graceful stop of the node),
        wait, then stop our epmd. Returns the server's exit code."""
        code = None
        try:
            if self.proc is not None and self.proc.poll() is None:
                try:
                    os.kill(self.proc.pid, signal.SIGTERM)
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    # The whole group: the script, erl and beam.smp.
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(timeout=10)
                    if check:
                        raise AssertionError("RabbitMQ did not stop on SIGTERM:\n"
                                             + self.log()[-4000:])
            if self.proc is not None:
                code = self.proc.returncode
                # beam may outlive the script only if something went wrong.
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        finally:
            if self.epmd is not None and self.epmd.poll() is None:
                self.epmd.terminate()
                try:
                    self.epmd.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.epmd.kill()
                    self.epmd.wait(timeout=10)
            for f in (self._log, self._epmd_log):
                if f:
                    f.close()
            self._log = self._epmd_log = None
        return code


try:
    import pytest

    @pytest.fixture(scope="session")
    def rabbit_session(tmp_path_factory):
        """One private RabbitMQ for the pytest session (skips if not installed)."""
        if not available():
            pytest.skip(SKIP_REASON)
        r = RabbitMQ(tmp_path_factory.mktemp("rabbitmq"))
        r.start()
        yield r
        code = r.stop()
        if code not in (0, None):
            raise AssertionError(f"RabbitMQ exited with {code}:\n{r.log()[-4000:]}")
except ImportError:  # used by the bench harness without pytest
    pass
