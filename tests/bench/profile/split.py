import os
import sys, re, glob, collections
for f in sorted(glob.glob(os.path.join(os.environ.get('GW_PROF_OUT', '/tmp/gw-profile'), '*.dso.txt'))):
    per = collections.defaultdict(lambda: collections.Counter())
    for line in open(f):
        m = re.match(r'\s*([\d.]+)%\s+(\S+(?: \S+)?)\s{2,}(\S+)', line)
        if not m: continue
        pct, comm, dso = float(m[1]), m[2].strip(), m[3]
        if 'kernel' in dso: c='kernel'
        elif 'proton' in dso: c='proton'
        elif dso.startswith('libc'): c='libc'
        elif 'sqlite' in dso: c='sqlite'
        elif 'libevent' in dso: c='libevent'
        elif dso in ('mqtt-gateway','subscription-service','will-service','mosquitto'): c='own'
        else: c='other'
        per[comm][c]+=pct
    print(f.split('/')[-1])
    for comm, cnt in per.items():
        tot=sum(cnt.values())
        if tot<1: continue
        print(f"   {comm:18s} {tot:5.1f}% of samples: " + " ".join(f"{k} {100*v/tot:.0f}%" for k,v in cnt.most_common()))
