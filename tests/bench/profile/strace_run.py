import sys, os, subprocess, time, tempfile, signal
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
WORK = os.environ.get("GW_PROF_OUT", "/tmp/gw-profile")
sys.path.insert(0, os.path.join(ROOT, "tests", "bench", "harness")); sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench, prof
system = sys.argv[1]
wd = tempfile.mkdtemp(dir=os.path.join(WORK, "work"))
s = bench.Ours(wd, prof.B) if system == "ours" else bench.Mosquitto(wd)
s.start()
try:
    pids = {"gw": s.procs[2].pid, "subs": s.procs[0].pid} if system == "ours" else {"mosq": s.proc.pid}
    bench.settle(s, limit=10)
    load = subprocess.Popen(prof.scen_args("2", s), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(3)  # into the steady part of the 8 s run (a measurement window, not a sync)
    st = [subprocess.Popen(["strace", "-c", "-f", "-o", os.path.join(WORK, "raw", f"{system}.s2.strace.{n}.txt"), "-p", str(p)]) for n, p in pids.items()]
    time.sleep(3)
    for p in st: p.send_signal(signal.SIGINT)
    for p in st: p.wait()
    load.communicate()
finally:
    s.stop()
