import re, sys, subprocess, collections
f = sys.argv[1]
out = subprocess.run(["perf","report","-i",f,"--no-children","-g","none","--sort","comm,dso,sym","--stdio"],capture_output=True,text=True).stdout
cat = collections.defaultdict(collections.Counter)
for line in out.splitlines():
    m = re.match(r'\s*([\d.]+)%\s+(mqtt-gateway|subscription-se|mosquitto)\s+(\S+)\s+\[(.)\]\s+(\S+)', line)
    if not m: continue
    pct, comm, dso, k, sym = float(m[1]), m[2], m[3], m[4], m[5]
    if 'proton' in dso:
        if re.match(r'pn_(object|class|record|incref|decref|free|new|hash|map|list|string|void|strdup|buffer)', sym): c='proton-objects/strings'
        elif re.match(r'pn_(data|encoder|decoder|amqp_encode|amqp_decode|bytes|value)|pni_(encoder|decoder|data)|pn_(message_(encode|decode|data))', sym) or 'encode' in sym or 'decode' in sym: c='proton-codec'
        elif sym.startswith('0x'): c='proton-unknown'
        else: c='proton-engine'
    elif 'sqlite' in dso: c='sqlite'
    elif dso.startswith('libc'):
        c = 'libc-malloc/free' if re.search(r'malloc|free|calloc|realloc|tcache|consolidate|arena', sym) else ('libc-mem*' if re.search(r'mem|str', sym) else 'libc-other')
    elif 'kernel' in dso:
        if re.search(r'finish_task_switch|_raw_spin_unlock|schedule|try_to_wake|pv_queued', sym): c='kernel-sched/wakeup'
        else: c='kernel-other(net,syscall,io)'
    elif 'libevent' in dso: c='libevent'
    elif dso in ('mqtt-gateway','subscription-service','mosquitto'): c='own'
    else: c='other'
    cat[comm][c]+=pct
for comm, cnt in cat.items():
    tot=sum(cnt.values())
    print(f"  {comm} ({tot:.0f}% of samples): " + ", ".join(f"{k} {100*v/tot:.0f}%" for k,v in cnt.most_common() if 100*v/tot>=1))
