#!/usr/bin/python3
"""Per-message CPU and syscalls from raw/results.jsonl and raw/*.stat."""
import json, os, sys

RAW = os.path.join(os.environ.get("GW_PROF_OUT", "/tmp/gw-profile"), "raw")
GROUPS = {
    "rd": ["read", "readv", "recvfrom", "recvmsg"],
    "wr": ["write", "writev", "sendto", "sendmsg"],
    "epoll": ["epoll_wait", "epoll_pwait", "epoll_ctl"],
    "sync": ["fdatasync", "fsync"],
    "pwr": ["pwrite64"],
    "futex": ["futex"],
}


def stat(path):
    ev = {}
    if not os.path.exists(path):
        return None
    for line in open(path):
        if not line.strip() or line.startswith("#"):
            continue
        f = line.strip().split(",")
        try:
            v = float(f[0])
        except ValueError:
            v = 0.0
        name = f[2].replace("syscalls:sys_enter_", "")
        ev[name] = v
    return ev


def n_of(rec, ph):
    r = rec[ph]["res"]
    if ph == "enq":
        return r.get("acked", 0)
    return r.get("delivered") or 0


recs = [json.loads(l) for l in open(f"{RAW}/results.jsonl")]
sel = sys.argv[1:] or None
for rec in recs:
    for ph in ("run", "enq", "drain"):
        if ph not in rec:
            continue
        tag = rec["tag"].rsplit(".", 1)[0]
        if rec["mode"] == "plain":
            r = rec[ph]["res"]
            n = n_of(rec, ph)
            lat = r.get("latency_us") or {}
            rate = r.get("delivered_rate") or r.get("acked_rate") or r.get("drain", {}).get("drain_rate")
            cpu = {k: f"{1e6*(u+s)/max(n,1):.2f}us(sys {100*s/max(u+s,1e-9):.0f}%)"
                   for k, (u, s) in rec[ph]["cpu"].items()}
            print(f"PLAIN {tag}.{ph} n={n} sent={r.get('sent')} rate={rate and round(rate)} "
                  f"p50={lat.get('p50')} p99={lat.get('p99')} lost={r.get('lost')} "
                  f"missing={r.get('missing')} load={rec['load']}->{rec['load_end']} {cpu}")
        elif rec["mode"] == "stat":
            n = n_of(rec, ph)
            base = f"{RAW}/{rec['tag']}" + ("" if ph == "run" else f".{ph}")
            out = []
            for proc in ("gw", "subs", "will", "mosq", "load"):
                ev = stat(f"{base}.{proc}.stat")
                if not ev:
                    continue
                tot = ev.get("raw_syscalls:sys_enter", 0)
                g = {k: sum(ev.get(s, 0) for s in v) for k, v in GROUPS.items()}
                other = tot - sum(g.values())
                det = " ".join(f"{k}={v/n:.3f}" for k, v in g.items() if v)
                top = sorted(((v, k) for k, v in ev.items() if k not in ("task-clock", "raw_syscalls:sys_enter") and v), reverse=True)[:6]
                out.append(f"  {proc}: cpu={1000*ev.get('task-clock',0)/n:.2f}us sys/msg={tot/n:.3f} [{det} other={other/n:.3f}] raw:{' '.join(f'{k}={int(v)}' for v,k in top)}")
            print(f"STAT {tag}.{ph} n={n} rate={round(rec[ph]['res'].get('delivered_rate') or rec[ph]['res'].get('acked_rate') or 0)}")
            print("\n".join(out))
