"""Qpid Dispatch Router 1.x configuration: parser and link-route matcher.

Used by test_deploy_manifests.py to check openshift/qdrouterd.conf without a
router binary. Both halves follow the router's own code (Dispatch 1.x):

- parse(): python/qpid_dispatch_internal/management/config.py, Config._parse:
  a line starting with '#' is a comment; on a "pattern:" line the value is
  the first blank-delimited word ('#' is a wildcard there); on every other
  line everything after '#' is a comment; "word {" opens a section and "}"
  closes it; "key: value" is one attribute. Keys are camelCased
  ("worker-threads" -> "workerThreads").
- LinkRouteTable: router_core/agent_config_link_route.c and
  agent_config_address.c (qdra_config_address_validate_pattern_CT: leading
  and trailing separators stripped, a prefix P becomes the pattern "P/#"),
  and parse_tree.c: tokens are separated by '.' or '/', '*' matches one
  token, '#' zero or more; at each token an exact token beats '*', which
  beats '#'. One tree per direction ("in": client senders, "out": client
  receivers); the link-route lookup happens before any message-routing
  lookup, and anonymous (null) termini are never link-routed.
"""
import re

# Attributes accepted per section (the subset of qdrouter.json we allow;
# an unknown key is far more likely a typo than a feature).
KNOWN_ATTRIBUTES = {
    "router": {"mode", "id", "workerThreads", "defaultDistribution", "saslConfigPath",
               "saslConfigName", "debugDump", "allowUnsettledMulticast"},
    "listener": {"name", "host", "port", "role", "cost", "sslProfile", "saslMechanisms",
                 "authenticatePeer", "requireEncryption", "requireSsl", "maxFrameSize",
                 "maxSessions", "maxSessionFrames", "idleTimeoutSeconds", "stripAnnotations",
                 "linkCapacity", "multiTenant", "failoverList", "http", "logMessage",
                 "protocolFamily", "trustedCerts", "saslPlugin"},
    "connector": {"name", "host", "port", "role", "cost", "sslProfile", "saslMechanisms",
                  "allowRedirect", "maxFrameSize", "maxSessions", "maxSessionFrames",
                  "idleTimeoutSeconds", "stripAnnotations", "linkCapacity", "verifyHostName",
                  "saslUsername", "saslPassword", "logMessage", "protocolFamily"},
    "linkRoute": {"name", "prefix", "pattern", "containerId", "connection", "distribution",
                  "direction", "addExternalPrefix", "delExternalPrefix"},
    "address": {"name", "prefix", "pattern", "distribution", "waypoint", "ingressPhase",
                "egressPhase", "priority", "fallback"},
    "autoLink": {"name", "address", "direction", "phase", "containerId", "connection",
                 "externalAddress", "fallback"},
    "sslProfile": {"name", "certFile", "keyFile", "caCertFile", "passwordFile", "password",
                   "uidFormat", "displayNameFile", "ciphers", "protocols"},
    "log": {"module", "enable", "output", "includeTimestamp", "includeSource", "timestamp",
            "source"},
}
ROLES = {"normal", "inter-router", "route-container", "edge"}
SEPARATORS = "./"


class ConfigError(Exception):
    pass


def camelcase(key):
    parts = key.split("-")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def parse(text):
    """[(section, {key: value}, line_number)] of a qdrouterd.conf text."""
    begin = re.compile(r"^([\w-]+)[ \t]*\{$")
    attr = re.compile(r"^([\w-]+)[ \t]*:[ \t]*(.+)$")
    sections = []
    current = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key = line.split(":")[0].strip().lower()
        if key == "pattern":
            value = line.split(":", 1)[1].split()
            if current is None or not value:
                raise ConfigError("line %d: pattern outside a section or empty" % lineno)
            current[1]["pattern"] = value[0]
            continue
        line = line.split("#")[0].strip()
        if not line:
            continue
        m = begin.match(line)
        if m:
            if current is not None:
                raise ConfigError("line %d: section inside section" % lineno)
            current = (camelcase(m.group(1)), {}, lineno)
            continue
        if line == "}":
            if current is None:
                raise ConfigError("line %d: '}' without a section" % lineno)
            sections.append(current)
            current = None
            continue
        m = attr.match(line)
        if not m or current is None:
            raise ConfigError("line %d: not 'key: value' inside a section: %r" % (lineno, raw))
        value = m.group(2).strip()
        if any(c in value for c in '{}"\\'):
            # The router turns the file into JSON with regular expressions.
            raise ConfigError("line %d: value %r would break the router's parser" %
                              (lineno, value))
        k = camelcase(m.group(1))
        if k in current[1]:
            raise ConfigError("line %d: %s given twice" % (lineno, k))
        current[1][k] = value
    if current is not None:
        raise ConfigError("section %s (line %d) not closed" % (current[0], current[2]))
    return sections


def example_block(text, name):
    """The commented-out example between '# example:NAME begin' / 'end',
    with its '#| ' markers removed."""
    lines = text.splitlines()
    try:
        start = lines.index("# example:%s begin" % name)
        end = lines.index("# example:%s end" % name)
    except ValueError:
        raise ConfigError("example %s not found" % name)
    out = []
    for line in lines[start + 1:end]:
        if not line.startswith("#|"):
            raise ConfigError("example %s: line without '#|': %r" % (name, line))
        out.append(line[3:] if line.startswith("#| ") else line[2:])
    return "\n".join(out) + "\n"


def validate(sections):
    """Schema-level checks; returns a list of problems (empty = fine)."""
    problems = []
    names = {}
    for sec, attrs, lineno in sections:
        where = "%s (line %d)" % (sec, lineno)
        known = KNOWN_ATTRIBUTES.get(sec)
        if known is None:
            problems.append("%s: unknown section" % where)
            continue
        for k in attrs:
            if k not in known:
                problems.append("%s: unknown attribute %s" % (where, k))
        if "name" in attrs:
            if attrs["name"] in names:
                problems.append("%s: name %s used twice" % (where, attrs["name"]))
            names[attrs["name"]] = sec
        if sec in ("listener", "connector"):
            if attrs.get("role", "normal") not in ROLES:
                problems.append("%s: role %s" % (where, attrs.get("role")))
            if not attrs.get("port", "").isdigit():
                problems.append("%s: port %r is not a number" % (where, attrs.get("port")))
        if sec == "linkRoute":
            if ("prefix" in attrs) == ("pattern" in attrs):
                problems.append("%s: exactly one of prefix/pattern" % where)
            if attrs.get("direction") not in ("in", "out"):
                problems.append("%s: direction must be in or out" % where)
            if ("containerId" in attrs) == ("connection" in attrs):
                problems.append("%s: exactly one of containerId/connection" % where)
            spec = attrs.get("prefix", attrs.get("pattern", ""))
            if not tokens(spec):
                problems.append("%s: no tokens in %r" % (where, spec))
            if "prefix" in attrs and any(c in attrs["prefix"] for c in "*#"):
                problems.append("%s: wildcard in a prefix" % where)
    for sec, attrs, lineno in sections:
        conn = attrs.get("connection")
        if sec == "linkRoute" and conn is not None and names.get(conn) not in ("listener",
                                                                             "connector"):
            problems.append("linkRoute (line %d): connection %s is no listener/connector"
                            % (lineno, conn))
    if sum(1 for s in sections if s[0] == "router") != 1:
        problems.append("exactly one router section expected")
    return problems


def tokens(s):
    """Tokens of an address or pattern, separators stripped at both ends."""
    s = s.strip(SEPARATORS)
    return re.split(r"[./]", s) if s else []


class _Node:
    def __init__(self):
        self.children = {}
        self.value = None


class LinkRouteTable:
    """The router's link_route_tree[in] / [out]: address -> linkRoute attrs."""

    def __init__(self, sections):
        self.trees = {"in": _Node(), "out": _Node()}
        for sec, attrs, _ in sections:
            if sec != "linkRoute":
                continue
            toks = tokens(attrs["prefix"]) + ["#"] if "prefix" in attrs else \
                tokens(attrs["pattern"])
            node = self.trees[attrs["direction"]]
            for t in toks:
                node = node.children.setdefault(t, _Node())
            if node.value is not None:
                raise ConfigError("two link routes with the same pattern and direction: "
                                  "%s, %s" % (node.value.get("name"), attrs.get("name")))
            node.value = attrs

    def lookup(self, direction, address):
        """The linkRoute that an attach with this address would follow, or None.
        direction: "in" for a client sender (target), "out" for a receiver (source)."""
        if address is None:
            return None  # anonymous relay: message-routed, never link-routed
        return self._retrieve(self.trees[direction], tokens(address), 0)

    def _retrieve(self, node, toks, i):
        if i == len(toks):
            if node.value is not None:
                return node.value
            h = node.children.get("#")
            return self._retrieve(h, toks, i) if h else None
        t = toks[i]
        if t not in ("*", "#") and t in node.children:
            r = self._retrieve(node.children[t], toks, i + 1)
            if r is not None:
                return r
        if "*" in node.children:
            r = self._retrieve(node.children["*"], toks, i + 1)
            if r is not None:
                return r
        if "#" in node.children:
            h = node.children["#"]
            for k in range(i, len(toks) + 1):  # '#' takes as few tokens as it can
                r = self._retrieve(h, toks, k)
                if r is not None:
                    return r
        return None
