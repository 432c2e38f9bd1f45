#!/usr/bin/python3
"""Profile driver: one fresh system per (scenario, mode).
modes: plain (/proc CPU + rusage), stat (perf stat syscall tracepoints), rec (perf record -g).
usage: prof.py SCEN[,SCEN..] MODE[,MODE..] [system=ours|mosquitto]"""
import json, os, signal, subprocess, sys, tempfile, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
WORK = os.environ.get("GW_PROF_OUT", "/tmp/gw-profile")

sys.path.insert(0, os.path.join(ROOT, "tests", "bench", "harness"))
import bench  # noqa: E402

B = os.path.abspath(os.environ.get("GW_PROF_BUILD", os.path.join(ROOT, "build-prof")))
OUT = os.path.join(WORK, "raw")
LOAD = os.path.join(B, "tests/bench/mqtt_load/mqtt-load")
DUR, WARM = 8.0, 1.0
TICK = os.sysconf("SC_CLK_TCK")

SC = ["read", "readv", "recvfrom", "recvmsg", "write", "writev", "sendto", "sendmsg",
      "epoll_wait", "epoll_pwait", "epoll_ctl", "fdatasync", "fsync", "pwrite64", "pread64",
      "futex", "mmap", "munmap", "brk", "madvise", "lseek", "fcntl", "clock_gettime",
      "getrandom", "eventfd2"]
EVENTS = ",".join(["task-clock", "raw_syscalls:sys_enter"] + [f"syscalls:sys_enter_{s}" for s in SC])


def scen_args(sc, s):
    common = ["--payload", "100", "--json", "--label", f"s{sc}", "--client-prefix", f"s{sc}-",
              "--topic", f"s{sc}/%p", "--sub-topic", f"s{sc}/#"]
    timed = ["--duration", f"{int(DUR*1000)}ms", "--warmup", f"{int(WARM*1000)}ms", "--drain", "16s"]
    if sc == "1":
        x = ["--qos", 0, "--publishers", 1, "--subscribers", 1] + timed
    elif sc == "2":
        x = ["--qos", 1, "--publishers", 1, "--subscribers", 1, "--window", 100] + timed
    elif sc == "3":
        x = ["--qos", 1, "--publishers", 100, "--subscribers", 1, "--window", 100,
             "--setup-timeout", "60s"] + timed
    elif sc in ("4a", "4b"):
        q = 0 if sc == "4a" else 1
        common = [c.replace(f"s{sc}", f"s4q{q}") for c in common]
        x = ["--qos", q, "--publishers", 1, "--subscribers", 0, "--amqp-url", s.amqp_url,
             "--amqp-address", f"s4q{q}/#", "--amqp-receivers", 1] + timed
    elif sc == "5":
        x = ["--qos", 1, "--publishers", 1, "--subscribers", 1, "--window", 1000,
             "--rate", 20000] + timed
    elif sc == "7":
        x = ["--qos", 1, "--publishers", 1, "--subscribers", 0, "--window", 100,
             "--messages", 100000, "--duration", "600s", "--drain", "10s"]
    return [LOAD, "--port", str(s.mqtt_port)] + common + [str(v) for v in x]


def threads_cpu(pid):
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/stat") as f:
                raw = f.read()
            comm = raw[raw.index("(") + 1:raw.rindex(")")]
            fl = raw.rsplit(")", 1)[1].split()
            out[f"{comm}-{t}"] = (int(fl[11]) + int(fl[12])) / TICK
        except (OSError, ValueError):
            pass
    return out


def machine_cpu():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fl = f.read().rsplit(")", 1)[1].split()
    return int(fl[11]) / TICK, int(fl[12]) / TICK


class Meter:
    """Wraps one measured phase for a set of named pids."""

    def __init__(self, mode, pids, tag):
        self.mode, self.pids, self.tag = mode, pids, tag
        self.perf = []

    def __enter__(self):
        self.c0 = {n: proc_cpu(p) for n, p in self.pids.items()}
        self.th0 = {n: threads_cpu(p) for n, p in self.pids.items()}
        self.m0 = machine_cpu()
        self.t0 = time.monotonic()
        if self.mode == "stat":
            for n, p in self.pids.items():
                self.perf.append(subprocess.Popen(
                    ["perf", "stat", "-x,", "-e", EVENTS, "-o", f"{OUT}/{self.tag}.{n}.stat",
                     "-p", str(p)], stderr=subprocess.DEVNULL))
        elif self.mode == "trace":
            self.perf.append(subprocess.Popen(
                ["perf", "trace", "-s", "-o", f"{OUT}/{self.tag}.subs.trace", "-p", str(self.pids.get("subs", 0))],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        elif self.mode == "rec":
            self.perf.append(subprocess.Popen(
                ["perf", "record", "-g", "-F", "1999", "-o", f"{OUT}/{self.tag}.perf.data",
                 "-p", ",".join(str(p) for p in self.pids.values())],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(0.5)  # let perf attach (not a sync on the system under test)
        return self

    def __exit__(self, *a):
        self.wall = time.monotonic() - self.t0
        self.cpu = {}
        for n, p in self.pids.items():
            u1, s1 = proc_cpu(p)
            u0, s0 = self.c0[n]
            self.cpu[n] = (u1 - u0, s1 - s0)
        m1 = machine_cpu()
        self.machine_busy = (m1[0] - self.m0[0]) / max(m1[1] - self.m0[1], 1)
        self.threads = {}
        for n, p in self.pids.items():
            t1 = threads_cpu(p)
            self.threads[n] = {k: round(v - self.th0[n].get(k, 0), 2) for k, v in t1.items()
                               if v - self.th0[n].get(k, 0) > 0.05}
        for p in self.perf:
            p.send_signal(signal.SIGINT)
        for p in self.perf:
            p.wait(timeout=120)


def main():
    scens = sys.argv[1].split(",")
    modes = sys.argv[2].split(",")
    system = sys.argv[3] if len(sys.argv) > 3 else "ours"
    os.makedirs(OUT, exist_ok=True)
    os.makedirs(os.path.join(WORK, "work"), exist_ok=True)
    results = []
    for sc in scens:
        for mode in modes:
            tag = f"{system}{os.environ.get('PROF_SUFFIX', '')}.s{sc}.{mode}"
            wd = tempfile.mkdtemp(prefix=f"prof-{tag}-", dir=os.path.join(WORK, "work"))
            s = bench.Ours(wd, B) if system == "ours" else bench.Mosquitto(wd)
            s.start()
            try:
                if system == "ours":
                    pids = {"gw": s.procs[2].pid, "subs": s.procs[0].pid, "will": s.procs[1].pid}
                else:
                    pids = {"mosq": s.proc.pid}
                bench.settle(s, limit=10)
                rec = {"tag": tag, "scen": sc, "mode": mode, "system": system,
                       "load": uptime()}
                if sc == "7":
                    c = bench.RawMqtt(s.mqtt_port, "s7-s0", clean=False)
                    c.subscribe("s7/#", 1)
                    c.disconnect()
                    bench.settle(s, limit=10)
                    with Meter(mode, pids, tag + ".enq") as m:
                        r, lc = load(scen_args(sc, s), mode, tag + ".enq")
                    rec["enq"] = phase(m, r, lc)
                    with Meter(mode, pids, tag + ".drain") as m:
                        c = bench.RawMqtt(s.mqtt_port, "s7-s0", clean=False)
                        d = c.drain(100000, timeout=20)
                        c.disconnect()
                    rec["drain"] = phase(m, {"delivered": d["delivered"], "drain": d}, None)
                else:
                    with Meter(mode, pids, tag) as m:
                        r, lc = load(scen_args(sc, s), mode, tag)
                    rec["run"] = phase(m, r, lc)
                rec["load_end"] = uptime()
            finally:
                s.stop()
            results.append(rec)
            with open(f"{OUT}/results.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")
            print(json.dumps(summ(rec)), flush=True)


def load(cmd, mode, tag):
    if mode == "stat":
        cmd = ["perf", "stat", "-x,", "-e", EVENTS, "-o", f"{OUT}/{tag}.load.stat", "--"] + cmd
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.stdout.read(), p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = status
    lines = [l for l in out.splitlines() if l.strip()]
    r = json.loads(lines[-1]) if lines else {"error": err[-800:]}
    return r, (ru.ru_utime, ru.ru_stime)


def phase(m, r, lc):
    d = {"wall": m.wall, "cpu": m.cpu, "res": r, "threads": m.threads,
         "machine_busy": round(m.machine_busy, 3)}
    if lc:
        d["cpu"] = dict(m.cpu, load=lc)
    return d


def summ(rec):
    out = {"tag": rec["tag"]}
    for ph in ("run", "enq", "drain"):
        if ph not in rec:
            continue
        p = rec[ph]
        r = p["res"]
        n = r.get("delivered") or r.get("acked") or 0
        if ph == "enq":
            n = r.get("acked", 0)
        out[ph] = {"n": n, "rate": r.get("delivered_rate") or r.get("acked_rate") or
                   r.get("drain", {}).get("drain_rate"),
                   "lat": r.get("latency_us"),
                   "us_per_msg": {k: round(1e6 * (u + s) / max(n, 1), 2) for k, (u, s) in p["cpu"].items()},
                   "sys_share": {k: round(s / max(u + s, 1e-9), 2) for k, (u, s) in p["cpu"].items()}}
    return out


def uptime():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


if __name__ == "__main__":
    main()
