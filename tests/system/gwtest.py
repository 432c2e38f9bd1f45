"""Shared harness for system tests: real binaries on free loopback ports.

Every process is started with its output captured to a log file under the
test's tmp dir, waited for until its port answers (never a bare sleep), and
stopped with SIGTERM (SIGKILL after a bound). On stop, the log is checked for
AddressSanitizer/UBSan/LeakSanitizer reports, which fail the test.

Environment:
  GW_BUILD_DIR   build directory holding the binaries (default: <repo>/build)
  GW_VALGRIND=1  run our daemons under valgrind --error-exitcode=99
"""
import collections
import os
import signal
import socket
import subprocess
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("GW_BUILD_DIR", os.path.join(REPO, "build"))

SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",
    "ERROR: UndefinedBehaviorSanitizer",
)


def binary(*parts):
    """Path of a built executable, e.g. binary('gateway', 'mqtt-gateway')."""
    path = os.path.join(BUILD, *parts)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not built (GW_BUILD_DIR={BUILD})")
    return path


_handed_out = collections.deque(maxlen=4096)


def free_port():
    """An ephemeral port that was free a moment ago on 127.0.0.1, and not
    one this process handed out recently: the kernel may give the same
    ephemeral port to two probes in a row, and a test that asks for two
    ports (AMQP and HTTP) before starting the daemon would get one twice."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.append(port)
            return port
    raise RuntimeError("no fresh free port in 100 tries")


def wait_until(predicate, timeout=10.0, interval=0.02, what="condition"):
    """Poll predicate() until it returns a truthy value; raise on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class Proc:
    """A real process under test.

    Proc(args, log_path, ready_port=None, env=None).start() starts it and
    waits until ready_port accepts connections (or until ready_log appears
    in its log). stop() sends SIGTERM, waits, and checks exit status and the
    log for sanitizer reports.
    """

    def __init__(self, args, log_path, ready_port=None, ready_log=None, env=None,
                 name=None, valgrind=None):
        self.args = list(args)
        self.log_path = str(log_path)
        self.ready_port = ready_port
        self.ready_log = ready_log
        self.env = dict(os.environ)
        self.env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        self.env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        if env:
            self.env.update(env)
        self.name = name or os.path.basename(self.args[0])
        if valgrind is None:
            valgrind = os.environ.get("GW_VALGRIND") == "1"
        if valgrind:
            self.args = ["valgrind", "--error-exitcode=99", "--leak-check=full",
                         "--errors-for-leak-kinds=definite"] + self.args
        self.proc = None
        self._log = None

    def start(self, timeout=15.0):
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=self.env, start_new_session=True)

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} "
                                   f"before ready:\n{self.log()}")
            if self.ready_port is not None and not port_open(self.ready_port):
                return False
            if self.ready_log is not None and self.ready_log not in self.log():
                return False
            return True

        wait_until(ready, timeout=timeout, what=f"{self.name} ready")
        return self

    def log(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def kill9(self):
        """SIGKILL: a crash as far as peers can tell. No sanitizer check."""
        if self.alive():
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._close()

    def stop(self, timeout=15.0, expect_codes=(0,)):
        """SIGTERM, wait, assert a clean exit and no sanitizer report."""
        if self.proc is None:
            return None
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                self._close()
                raise AssertionError(f"{self.name} did not exit on SIGTERM:\n{self.log()[-4000:]}")
        self._close()
        self.check_sanitizers()
        code = self.proc.returncode
        if expect_codes is not None and code not in expect_codes:
            raise AssertionError(f"{self.name} exited with {code}:\n{self.log()[-4000:]}")
        return code

    def check_sanitizers(self):
        text = self.log()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                raise AssertionError(f"{self.name}: sanitizer report:\n{text[-8000:]}")

    def _close(self):
        if self._log:
            self._log.close()
            self._log = None


class Procs:
    """Tracks processes of one test and stops them all at teardown."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.items = []

    def start(self, args, name, **kw):
        p = Proc(args, self.tmp_path / f"{name}.log", name=name, **kw)
        self.items.append(p)
        return p.start()

    def stop_all(self):
        errors = []
        for p in reversed(self.items):
            try:
                if p.proc is not None and p.proc.returncode is None:
                    p.stop()
                else:
                    p._close()
                    p.check_sanitizers()
            except AssertionError as e:
                errors.append(str(e))
        if errors:
            raise AssertionError("\n".join(errors))
