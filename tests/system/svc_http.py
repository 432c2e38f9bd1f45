"""HTTP health/metrics helpers for the service tests (will-service,
subscription-service started with --http-listen): GET with urllib, parse the
Prometheus text format into {(name, labels): value}, poll until a metric
reaches a value."""
import re
import urllib.error
import urllib.request

import gwtest

_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)$')


def get(port, path, timeout=5):
    """(status, body text) of GET http://127.0.0.1:port/path."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path),
                                    timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def parse(text):
    """Prometheus text 0.0.4 -> {(name, labels-text): float}; checks HELP/TYPE."""
    out = {}
    typed = {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# TYPE "):
            parts = line.split()
            if parts[2] in typed:
                raise ValueError("TYPE repeated for %r" % parts[2])
            typed[parts[2]] = parts[3]
            continue
        if line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            raise ValueError("not a sample line: %r" % line)
        name, labels, value = m.group(1), m.group(3) or "", m.group(4)
        family = name
        for suffix in ("_bucket", "_sum", "_count"):
            base = name[:-len(suffix)]
            if name.endswith(suffix) and typed.get(base) == "histogram":
                family = base
        if family not in typed:
            raise ValueError("sample without TYPE: %r" % line)
        if name.endswith("_bucket") and family != name and 'le="' not in labels:
            raise ValueError("histogram bucket without le: %r" % line)
        out[(name, labels)] = float(value)
    return out


def metrics(port):
    status, body = get(port, "/metrics")
    if status != 200:
        raise AssertionError("/metrics answered %d: %s" % (status, body))
    return parse(body)


def value(port, name, labels=""):
    return metrics(port).get((name, labels))


def wait_value(port, name, want, labels="", timeout=10):
    """Poll until metric name{labels} == want; returns the whole scrape."""
    last = {}

    def ok():
        last["m"] = metrics(port)
        return last["m"].get((name, labels)) == want and last["m"]
    try:
        return gwtest.wait_until(ok, timeout=timeout,
                                 what="%s{%s} == %s" % (name, labels, want))
    except Exception:
        raise AssertionError("%s{%s}: want %s, last scrape %s" % (
            name, labels, want, last.get("m", {}).get((name, labels))))


def wait_ready(port, want=200, timeout=10):
    """Poll /readyz until it answers want; returns the body."""
    last = {}

    def ok():
        last["r"] = get(port, "/readyz")
        return last["r"][0] == want
    try:
        gwtest.wait_until(ok, timeout=timeout, what="/readyz %d" % want)
    except Exception:
        raise AssertionError("/readyz: want %d, last %r" % (want, last.get("r")))
    return last["r"][1]
