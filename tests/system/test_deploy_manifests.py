"""Deployment artefacts: OpenShift/Kubernetes manifests, Containerfile,
Qpid Dispatch Router configuration.

Run: GW_BUILD_DIR=<build> /usr/bin/python3 -m pytest tests/system/test_deploy_manifests.py

Nothing here talks to a cluster or a container engine (there is none in CI);
instead every claim the manifests make is checked against the real thing it
refers to:
- every flag in a container's args, every environment variable and every key
  of a JSON config ConfigMap is an option of that binary (parsed from the
  real `<binary> --help`; a binary that is not built is skipped by name),
  with a value of the option's type; and each config, as mounted, is loaded
  by the real binary, which must come up and stop cleanly;
- ports: Service targetPorts, containerPorts, listen flags (MQTT, MQTT over
  TLS, HTTP), the router's listeners, the HTTP probes, the Prometheus scrape
  annotations and the URLs between components agree; publications on the
  topic roots the router link-routes go there on per-topic links
  (relay=never), everything else straight to the subscription-service;
- the whole stack runs from the shipped configs (only addresses, paths and
  certificates moved to tmp/loopback): paho over the gateway's own TLS
  listener publishes and receives, the probes' endpoints answer, every metric
  named in docs/operations.md is served, and a certificate replaced on disk
  is served after SIGHUP;
- the optional password/ACL mounts: the commented environment variables are
  real options, their paths are the example objects' keys, and the examples
  load in the real gateway; the memory limit fits max-connections times the
  RSS per client measured in docs/performance.md;
- qdrouterd.conf parses under the router's own rules and its link routes
  send every address of spec 2.2 (defaults read from core/src/spec/) to the
  right service - and router-local or anonymous traffic to none;
- the Containerfile's packages exist in Debian 12, its runtime stages carry
  no -dev package, it builds the targets CMake defines and runs as a numeric
  non-root user;
- containers/entrypoint.sh really raises the open-files limit.
"""
import copy
import glob
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

import deploy_qdr
import gwtest
import svc_http
from gw_tls_certs import Pki

# python3-yaml: not in scripts/deps.sh yet; skip the module rather than break collection.
yaml = pytest.importorskip("yaml")

REPO = gwtest.REPO
OPENSHIFT = os.path.join(REPO, "openshift")
K8S = os.path.join(OPENSHIFT, "kubernetes")
CONTAINERFILE = os.path.join(REPO, "containers", "Containerfile")

# image name -> (path of the binary under the build dir, environment prefix)
BINARIES = {
    "mqtt-gateway": (("gateway", "mqtt-gateway"), "GW_"),
    "will-service": (("services", "will", "will-service"), "WILL_"),
    "subscription-service": (("services", "subscription", "subscription-service"), "SUBS_"),
}
KNOWN_KINDS = {"ConfigMap", "Deployment", "StatefulSet", "Service", "Secret", "NetworkPolicy",
               "PodDisruptionBudget", "Route", "Kustomization", "Template"}

sys.path.insert(0, OPENSHIFT)
import gen_manifests  # noqa: E402


# --------------------------------------------------------------------------
# helpers


def load_yaml(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def k8s_objects():
    objs = []
    with open(os.path.join(K8S, "kustomization.yaml")) as f:
        kust = yaml.safe_load(f)
    for name in kust["resources"]:
        objs.extend(load_yaml(os.path.join(K8S, name)))
    return objs


def template():
    (tpl,) = load_yaml(os.path.join(OPENSHIFT, "template.yaml"))
    return tpl


def process_template(tpl, overrides=None):
    """What `oc process` does with the parameters' defaults: ${X} inside strings,
    ${{X}} as a whole value replaced by the parameter parsed as JSON."""
    params = {p["name"]: p.get("value", "") for p in tpl["parameters"]}
    params.update(overrides or {})
    used = set()

    def sub(value):
        if isinstance(value, dict):
            return {k: sub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [sub(v) for v in value]
        if not isinstance(value, str):
            return value
        m = re.fullmatch(r"\$\{\{(\w+)\}\}", value)
        if m:
            used.add(m.group(1))
            return json.loads(params[m.group(1)])

        def one(mm):
            used.add(mm.group(1))
            if mm.group(1) not in params:
                raise AssertionError("template uses undeclared parameter %s" % mm.group(1))
            return params[mm.group(1)]
        return re.sub(r"\$\{\{?(\w+)\}?\}", one, value)

    objs = sub(copy.deepcopy(tpl["objects"]))
    return objs, used


def openshift_objects():
    objs, _ = process_template(template())
    return objs


FLAVORS = {"kubernetes": k8s_objects, "openshift": openshift_objects}


def by_kind(objs, kind):
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def workloads(objs):
    return [o for o in objs if o["kind"] in ("Deployment", "StatefulSet")]


def pod_spec(workload):
    return workload["spec"]["template"]["spec"]


def image_name(image):
    """'reg/x/mqtt-gateway:0.1.0' -> 'mqtt-gateway'."""
    return image.rsplit("/", 1)[-1].split(":")[0]


def configmap_file(objs, container, pod, path):
    """Text of the file at path inside container, from its ConfigMap volume."""
    for vm in container.get("volumeMounts", []):
        mount = vm["mountPath"].rstrip("/") + "/"
        if not path.startswith(mount):
            continue
        vol = next(v for v in pod["volumes"] if v["name"] == vm["name"])
        assert "configMap" in vol, "%s is not on a ConfigMap volume" % path
        cm = by_kind(objs, "ConfigMap")[vol["configMap"]["name"]]
        return cm["data"][path[len(mount):]]
    raise AssertionError("%s is not mounted in container %s" % (path, container["name"]))


_HELP_CACHE = {}


def binary_options(image):
    """{option: {"type": ..., "choices": [...]}} parsed from the real --help."""
    parts, _ = BINARIES[image]
    path = os.path.join(gwtest.BUILD, *parts)
    if not os.path.exists(path):
        pytest.skip("%s not built (GW_BUILD_DIR=%s)" % (os.path.join(*parts), gwtest.BUILD))
    if path not in _HELP_CACHE:
        out = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=30,
                             check=True).stdout
        opts = {}
        current = None
        for line in out.splitlines():
            m = re.match(r"^  --(\[no-\])?([a-z0-9-]+)", line)
            if m:
                current = m.group(2)
                opts[current] = {"type": None, "choices": None, "bool": bool(m.group(1))}
                continue
            m = re.match(r"^\s{6}(bool|int|duration|size|string|enum|list|path);(.*)$", line)
            if m and current:
                opts[current]["type"] = m.group(1)
                c = re.search(r"one of ([a-z0-9., -]+?)(;|$)", m.group(2))
                if c:
                    opts[current]["choices"] = [x.strip() for x in c.group(1).split(",")]
        assert {"config", "help"} <= set(opts), "unexpected --help format of %s" % path
        _HELP_CACHE[path] = opts
    return _HELP_CACHE[path]


def check_value(image, key, value, opt):
    """A JSON config value of the option's type (gw/config.h, 'Value syntax')."""
    t = opt["type"]
    what = "%s: %s = %r" % (image, key, value)
    if t == "list":
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), what
    elif t == "bool":
        assert isinstance(value, bool), what
    elif t == "int":
        assert isinstance(value, int) and not isinstance(value, bool), what
    elif t in ("duration", "size"):
        assert (isinstance(value, int) and value >= 0) or isinstance(value, str), what
    elif t == "enum":
        assert isinstance(value, str) and value.lower() in opt["choices"], what
    else:
        assert isinstance(value, str), what


def hostport(url_or_listen):
    m = re.fullmatch(r"(?:amqps?://)?([^:/]*):(\d+)", url_or_listen)
    assert m, "not HOST:PORT or amqp://HOST:PORT: %r" % url_or_listen
    return m.group(1), int(m.group(2))


def parse_route(r):
    """'PREFIX=URL[;k=v]...' (gateway --route) -> (prefix, url, {k: v})."""
    prefix, _, rest = r.partition("=")
    url, *opts = rest.split(";")
    assert re.fullmatch(r"amqps?://[^\s=;]+", url), r
    kv = dict(o.split("=", 1) for o in opts)
    assert set(kv) <= {"address", "relay"} and kv.get("relay", "auto") in ("auto", "never"), r
    return prefix, url, kv


def router_conf():
    with open(os.path.join(OPENSHIFT, "qdrouterd.conf")) as f:
        return f.read()


def spec_defaults():
    """The default addresses of spec 2.1, from the code that defines them."""
    with open(os.path.join(REPO, "core", "src", "spec", "spec_addr.c")) as f:
        src = f.read()
    found = dict(re.findall(r'\.(lwt|subctrl|to_prefix|pubrel_prefix)\s*=\s*"([^"]*)"', src))
    assert set(found) == {"lwt", "subctrl", "to_prefix", "pubrel_prefix"}, found
    return found


def service_port(objs, host, port):
    """The Service `host` exposes `port`; returns the (workload, container) behind it."""
    svc = by_kind(objs, "Service").get(host)
    assert svc is not None, "no Service %s" % host
    sp = [p for p in svc["spec"]["ports"] if p["port"] == port]
    assert sp, "Service %s has no port %d" % (host, port)
    sel = svc["spec"]["selector"]
    for w in workloads(objs):
        if all(w["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items()):
            for c in pod_spec(w)["containers"]:
                for cp in c.get("ports", []):
                    if cp["name"] == sp[0]["targetPort"] or cp["containerPort"] == \
                            sp[0]["targetPort"]:
                        return w, c, cp
    raise AssertionError("Service %s:%d selects no container port" % (host, port))


# --------------------------------------------------------------------------
# the generated files


def test_generated_manifests_are_up_to_date():
    stale = []
    for path, text in gen_manifests.render().items():
        with open(path) as f:
            if f.read() != text:
                stale.append(os.path.relpath(path, REPO))
    assert not stale, "edit openshift/gen_manifests.py and rerun it; stale: %s" % stale


def test_router_config_is_embedded_verbatim():
    conf = router_conf()
    for objs in (k8s_objects(), openshift_objects()):
        assert by_kind(objs, "ConfigMap")["mqtt-router-config"]["data"]["qdrouterd.conf"] == conf


@pytest.mark.parametrize("path", sorted(
    [os.path.join(K8S, f) for f in os.listdir(K8S) if f.endswith(".yaml")] +
    [os.path.join(OPENSHIFT, "template.yaml")]))
def test_every_document_has_kind_and_name(path):
    docs = load_yaml(path)
    assert docs, path
    for d in docs:
        assert d["kind"] in KNOWN_KINDS, (path, d["kind"])
        assert d.get("apiVersion"), (path, d["kind"])
        if d["kind"] != "Kustomization":
            assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", d["metadata"]["name"]), path


def test_kustomization_lists_every_manifest_but_the_secret_example():
    with open(os.path.join(K8S, "kustomization.yaml")) as f:
        kust = yaml.safe_load(f)
    files = {f for f in os.listdir(K8S) if f.endswith(".yaml")} - {"kustomization.yaml"}
    assert set(kust["resources"]) == files - {"secret-tls.example.yaml", "auth.example.yaml"}


def test_kustomize_builds():
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl not installed")
    r = subprocess.run([kubectl, "kustomize", K8S], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(r.stdout) if d]
    assert kinds.count("StatefulSet") == 2 and kinds.count("Deployment") == 2, kinds


def test_template_parameters_all_declared_and_used():
    tpl = template()
    declared = {p["name"] for p in tpl["parameters"]}
    objs, used = process_template(tpl)
    assert used == declared, "unused: %s" % (declared - used)
    assert "${" not in json.dumps(objs)
    # ${{...}} values become numbers, and the gateway config stays JSON.
    gw = by_kind(objs, "Deployment")["mqtt-gateway"]
    assert gw["spec"]["replicas"] == 3
    cfg = json.loads(by_kind(objs, "ConfigMap")["mqtt-gateway-config"]["data"]["gateway.json"])
    assert cfg["workers"] == 2
    objs5, _ = process_template(tpl, {"GATEWAY_REPLICAS": "5", "GATEWAY_WORKERS": "4"})
    assert by_kind(objs5, "Deployment")["mqtt-gateway"]["spec"]["replicas"] == 5
    assert json.loads(by_kind(objs5, "ConfigMap")["mqtt-gateway-config"]["data"]
                      ["gateway.json"])["workers"] == 4


@pytest.mark.parametrize("flavor", sorted(FLAVORS))
def test_expected_objects(flavor):
    objs = FLAVORS[flavor]()
    deployments, sts = by_kind(objs, "Deployment"), by_kind(objs, "StatefulSet")
    assert set(deployments) == {"mqtt-router", "mqtt-gateway"}
    assert set(sts) == {"will-service", "subscription-service"}
    assert deployments["mqtt-gateway"]["spec"]["replicas"] > 1
    for name, s in sts.items():
        assert s["spec"]["replicas"] == 1, name  # single-instance services
        (claim,) = s["spec"]["volumeClaimTemplates"]
        mounts = {m["name"]: m["mountPath"] for m in pod_spec(s)["containers"][0]["volumeMounts"]}
        assert mounts[claim["metadata"]["name"]] == "/var/lib/gw", name
        assert s["spec"]["serviceName"] in by_kind(objs, "Service"), name
    gw_ports = {p["port"] for p in by_kind(objs, "Service")["mqtt-gateway"]["spec"]["ports"]}
    assert gw_ports == {1883, 8883}
    routes = by_kind(objs, "Route")
    if flavor == "openshift":
        (route,) = routes.values()
        assert route["spec"]["tls"]["termination"] == "passthrough"
        assert route["spec"]["to"]["name"] == "mqtt-gateway"
        _, _, cp = service_port(objs, "mqtt-gateway", 8883)
        assert route["spec"]["port"]["targetPort"] == cp["name"]
    else:
        assert not routes


@pytest.mark.parametrize("flavor", sorted(FLAVORS))
def test_pods_are_unprivileged_and_bounded(flavor):
    for w in workloads(FLAVORS[flavor]()):
        pod = pod_spec(w)
        assert pod["securityContext"]["runAsNonRoot"] is True, w["metadata"]["name"]
        if flavor == "openshift":
            # restricted SCC: the UID comes from the namespace range
            assert "runAsUser" not in pod["securityContext"]
        for c in pod["containers"]:
            where = "%s/%s" % (w["metadata"]["name"], c["name"])
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            for k in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][k]), where
            names = {p["name"] for p in c["ports"]} | {p["containerPort"] for p in c["ports"]}
            for probe in ("readinessProbe", "livenessProbe"):
                if image_name(c["image"]) in BINARIES:
                    # Our programs: HTTP probes on the named port "http".
                    assert "tcpSocket" not in c[probe], where
                    get = c[probe]["httpGet"]
                    want = "/readyz" if probe == "readinessProbe" else "/healthz"
                    assert (get["path"], get["port"]) == (want, "http"), (where, probe, get)
                else:
                    get = c[probe]["tcpSocket"]
                assert get["port"] in names, "%s %s -> %r" % (where, probe, get["port"])


@pytest.mark.parametrize("flavor", sorted(FLAVORS))
def test_http_port_probes_and_scrape_annotations_agree(flavor):
    """The named port "http" is the one --http-listen binds, and the
    Prometheus annotations point at it."""
    objs = FLAVORS[flavor]()
    seen = set()
    for w, pod, c, img in our_containers(objs):
        seen.add(img)
        cfg = json.loads(configmap_file(objs, c, pod, c["args"][c["args"].index("--config") + 1]))
        (http,) = [p for p in c["ports"] if p["name"] == "http"]
        assert hostport(cfg["http-listen"]) == ("0.0.0.0", http["containerPort"]), img
        ann = w["spec"]["template"]["metadata"]["annotations"]
        assert ann["prometheus.io/scrape"] == "true", img
        assert int(ann["prometheus.io/port"]) == http["containerPort"], img
        assert ann["prometheus.io/path"] == "/metrics", img
        # /metrics is not published on a Service: scraped per pod.
        for svc in by_kind(objs, "Service").values():
            targets = [p.get("targetPort") for p in svc["spec"]["ports"]]
            assert "http" not in targets and http["containerPort"] not in targets, svc
    assert seen == set(BINARIES)
    # The services' NetworkPolicy admits the scrape port.
    pol = by_kind(objs, "NetworkPolicy")["mqtt-services"]
    ports = {p["port"] for rule in pol["spec"]["ingress"] for p in rule["ports"]}
    assert gen_manifests.HTTP_PORT in ports


# --------------------------------------------------------------------------
# flags, environment and config files against the real binaries


def our_containers(objs):
    for w in workloads(objs):
        pod = pod_spec(w)
        for c in pod["containers"]:
            img = image_name(c["image"])
            if img in BINARIES:
                yield w, pod, c, img


@pytest.mark.parametrize("flavor", sorted(FLAVORS))
@pytest.mark.parametrize("image", sorted(BINARIES))
def test_flags_env_and_config_keys_are_real_options(flavor, image):
    objs = FLAVORS[flavor]()
    found = [x for x in our_containers(objs) if x[3] == image]
    assert found, "no container runs %s" % image
    opts = binary_options(image)
    prefix = BINARIES[image][1]
    for w, pod, c, _ in found:
        assert "command" not in c, "keep the image's entrypoint (gw-entrypoint)"
        args = c.get("args", [])
        config_path = None
        for i, a in enumerate(args):
            if not a.startswith("--"):
                continue
            name = a[2:].split("=", 1)[0]
            base = name[3:] if name.startswith("no-") and opts.get(name[3:], {}).get("bool") \
                else name
            assert base in opts, "%s: --%s is not an option of %s" % (w["metadata"]["name"],
                                                                        name, image)
            if name == "config":
                config_path = a.split("=", 1)[1] if "=" in a else args[i + 1]
        for e in c.get("env", []):
            assert e["name"].startswith(prefix), e["name"]
            opt = e["name"][len(prefix):].lower().replace("_", "-")
            assert opt in opts, "%s is not an option of %s" % (e["name"], image)
        assert config_path, "%s gets no --config" % image
        cfg = json.loads(configmap_file(objs, c, pod, config_path))
        for key, value in cfg.items():
            assert key in opts and key not in ("config", "help", "version"), \
                "%s: %s is not an option of %s" % (config_path, key, image)
            check_value(image, key, value, opts[key])


def spec_address_options():
    d = spec_defaults()
    return {
        "mqtt-gateway": {"lwt-address": d["lwt"], "subscription-address": d["subctrl"],
                         "to-prefix": d["to_prefix"], "pubrel-prefix": d["pubrel_prefix"]},
        "will-service": {"address": d["lwt"]},
        "subscription-service": {"control-address": d["subctrl"], "to-prefix": d["to_prefix"],
                                 "pubrel-prefix": d["pubrel_prefix"]},
    }


@pytest.mark.parametrize("flavor", sorted(FLAVORS))
def test_address_prefixes_agree_with_spec_defaults(flavor):
    objs = FLAVORS[flavor]()
    for w, pod, c, img in our_containers(objs):
        cfg = json.loads(configmap_file(objs, c, pod, c["args"][c["args"].index("--config") + 1]))
        for key, want in spec_address_options()[img].items():
            assert cfg.get(key, want) == want, (img, key)


@pytest.mark.parametrize("flavor", sorted(FLAVORS))
def test_ports_and_urls_agree(flavor):
    objs = FLAVORS[flavor]()
    conf = deploy_qdr.parse(router_conf())
    listeners = {int(a["port"]): a for s, a, _ in conf if s == "listener"}
    router = by_kind(objs, "Deployment")["mqtt-router"]
    router_ports = {p["containerPort"] for p in pod_spec(router)["containers"][0]["ports"]}
    assert set(listeners) == router_ports

    # Every Service port lands on a container port with the same number.
    for svc in by_kind(objs, "Service").values():
        for p in svc["spec"]["ports"]:
            _, _, cp = service_port(objs, svc["metadata"]["name"], p["port"])
            assert cp["containerPort"] == p["port"], (svc["metadata"]["name"], p)

    cfgs = {}
    for w, pod, c, img in our_containers(objs):
        cfgs[img] = json.loads(configmap_file(objs, c, pod,
                                              c["args"][c["args"].index("--config") + 1]))
        ports = {p["containerPort"] for p in c["ports"]}
        cfg = cfgs[img]
        listen = (cfg.get("mqtt-listen", []) + cfg.get("mqtts-listen", []) +
                  ([cfg["listen"]] if "listen" in cfg else []) + [cfg["http-listen"]])
        assert sorted(hostport(x)[1] for x in listen) == sorted(ports), img

    def target(url):
        host, port = hostport(url)
        w, _, _ = service_port(objs, host, port)
        return w["metadata"]["name"], port

    gw, ws, ss = cfgs["mqtt-gateway"], cfgs["will-service"], cfgs["subscription-service"]
    # Publications not link-routed go straight to the SS (the anonymous relay
    # of the router would not follow link routes, see qdrouterd.conf).
    assert target(gw["amqp-url"]) == ("subscription-service", 5672)
    assert target(ws["publish-url"]) == ("subscription-service", 5672)
    table = deploy_qdr.LinkRouteTable(conf)
    d = spec_defaults()
    routed_roots = set()
    for r in gw["route"]:
        prefix, url, ropts = parse_route(r)
        name, port = target(url)
        if name != "mqtt-router":
            continue
        assert listeners[port].get("role", "normal") == "normal", r
        if prefix.startswith("$mqtt."):
            assert ropts == {}, r
            continue
        # A topic root through the router: per-topic links, and a link route
        # ("in": the gateway sends) that takes them to the SS.
        assert ropts.get("relay") == "never", "%s: the router's relay ignores link routes" % r
        assert "address" not in ropts, r
        for topic in (prefix + "x", prefix + "a/b/c"):
            lr = table.lookup("in", topic)
            assert lr and lr.get("containerId") == "subscription-service", (r, topic)
        routed_roots.add(prefix)
    # Conversely every topic link route of the router has its gateway route.
    for s_, a, _ in conf:
        if s_ == "linkRoute" and a["direction"] == "in" and not \
                a.get("pattern", a.get("prefix", "")).startswith("$mqtt"):
            root = a["pattern"][:-1] if a.get("pattern", "").endswith("/#") else None
            assert root in routed_roots, "linkRoute %s has no gateway route" % a["name"]
    assert routed_roots and not any(p.startswith(d["to_prefix"]) for p in routed_roots)
    for svc_cfg, cid in ((ws, "will-service"), (ss, "subscription-service")):
        name, port = target(svc_cfg["connect"])
        assert name == "mqtt-router" and listeners[port]["role"] == "route-container"
        assert svc_cfg["container-id"] == cid


def shipped(image, objs=None):
    """(objs, pod, container, config text) of the container running image."""
    objs = objs if objs is not None else k8s_objects()
    (w, pod, c, _), = [x for x in our_containers(objs) if x[3] == image]
    text = configmap_file(objs, c, pod, c["args"][c["args"].index("--config") + 1])
    return objs, pod, c, text


def mount_of(container, volume):
    return next(m for m in container["volumeMounts"] if m["name"] == volume)["mountPath"]


def gateway_tls_moved(text, container, directory, cert, key):
    """The gateway's shipped config with its TLS files moved from the Secret
    mount to directory, holding copies of cert and key."""
    cfg = json.loads(text)
    mount = mount_of(container, "tls")
    for k, src in (("tls-cert", cert), ("tls-key", key)):
        assert cfg[k].startswith(mount + "/"), k
        cfg[k] = str(directory) + cfg[k][len(mount):]
        shutil.copy(src, cfg[k])
    return json.dumps(cfg)


def test_gateway_tls_config():
    """The gateway terminates TLS itself on 8883 with the certificate and key
    of the TLS Secret, mounted as a whole volume (no subPath: a Secret update
    must reach the files for the SIGHUP reload)."""
    objs, pod, gateway, text = shipped("mqtt-gateway")
    assert len(pod["containers"]) == 1, "no sidecar: the gateway has its own TLS listener"
    cfg = json.loads(text)
    (mqtts,) = [p for p in gateway["ports"] if p["name"] == "mqtts"]
    assert [hostport(x)[1] for x in cfg["mqtts-listen"]] == [mqtts["containerPort"]] == [8883]
    secret_mount = next(m for m in gateway["volumeMounts"] if m["name"] == "tls")
    assert "subPath" not in secret_mount and secret_mount["readOnly"] is True
    for key in ("tls-cert", "tls-key"):
        assert os.path.dirname(cfg[key]) == secret_mount["mountPath"], key
    assert cfg.get("tls-client-cert", "none") == "none" or cfg.get("tls-ca")
    secret = next(v for v in pod["volumes"] if v["name"] == "tls")["secret"]["secretName"]
    (example,) = load_yaml(os.path.join(K8S, "secret-tls.example.yaml"))
    assert example["metadata"]["name"] == secret
    assert {os.path.basename(cfg["tls-cert"]), os.path.basename(cfg["tls-key"])} == \
        set(example["stringData"])
    for value in example["stringData"].values():
        assert "-----BEGIN" not in value  # placeholders only, never a key
    # OpenShift: the service CA fills the same secret name; the Route passes TLS through.
    os_objs = openshift_objects()
    os_svc = by_kind(os_objs, "Service")["mqtt-gateway"]
    assert os_svc["metadata"]["annotations"][
        "service.beta.openshift.io/serving-cert-secret-name"] == secret
    os_pod = pod_spec(by_kind(os_objs, "Deployment")["mqtt-gateway"])
    assert next(v for v in os_pod["volumes"] if v["name"] == "tls")["secret"]["secretName"] \
        == secret


def commented_env(path):
    """[(name, value)] of the commented-out env entries in a generated file."""
    with open(path) as f:
        text = f.read()
    return re.findall(r'^\s*# - name: (\w+)\n\s*#   value: "?([^"\n]*)"?$', text, re.M)


@pytest.mark.parametrize("flavor", sorted(FLAVORS))
def test_optional_auth_mounts_and_commented_env(flavor):
    objs = FLAVORS[flavor]()
    pod = pod_spec(by_kind(objs, "Deployment")["mqtt-gateway"])
    (gateway,) = pod["containers"]
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["auth"]["secret"]["optional"] is True
    assert vols["acl"]["configMap"]["optional"] is True
    examples = {(o["kind"], o["metadata"]["name"]): o
                for o in load_yaml(os.path.join(K8S, "auth.example.yaml"))}
    files = {}
    for vol, kind, key in (("auth", "Secret", "secret"), ("acl", "ConfigMap", "configMap")):
        src = vols[vol][key]
        name = src.get("secretName") or src.get("name")
        ex = examples[(kind, name)]
        data = ex.get("stringData") or ex.get("data")
        for k, v in data.items():
            files[os.path.join(mount_of(gateway, vol), k)] = v
    path = os.path.join(K8S, "gateway.yaml") if flavor == "kubernetes" else \
        os.path.join(OPENSHIFT, "template.yaml")
    env = dict(commented_env(path))
    assert set(env) == {"GW_PASSWORD_FILE", "GW_ACL_FILE", "GW_ALLOW_ANONYMOUS"}, env
    assert not {e["name"] for e in gateway.get("env", [])} & set(env)
    opts = binary_options("mqtt-gateway")
    for name, value in env.items():
        opt = opts[name[3:].lower().replace("_", "-")]
        if opt["type"] == "enum":
            assert value in opt["choices"], (name, value)
    assert {env["GW_PASSWORD_FILE"], env["GW_ACL_FILE"]} == set(files)
    for value in files.values():
        assert "pbkdf2" not in value and "-----BEGIN" not in value  # no real secret


def test_auth_examples_load_in_the_gateway(procs, tmp_path):
    """The example password file (plus one line made by mqtt-passwd, as the
    comment says) and ACL, with the commented env switched on: anonymous
    CONNECT gets 5, a wrong password 4, the right one passes authentication
    (then 3: no AMQP peer here)."""
    binary_options("mqtt-gateway")
    passwd_tool = os.path.join(gwtest.BUILD, "tools", "mqtt-passwd")
    if not os.path.exists(passwd_tool):
        pytest.skip("tools/mqtt-passwd not built")
    import paho.mqtt.client as mqtt
    objs, pod, gateway, text = shipped("mqtt-gateway")
    pki = Pki(tmp_path)
    text = gateway_tls_moved(text, gateway, tmp_path, *pki.issue("s", "localhost", server=True))
    ex = load_yaml(os.path.join(K8S, "auth.example.yaml"))
    passwd = tmp_path / "passwd"
    passwd.write_text(next(o for o in ex if o["kind"] == "Secret")["stringData"]["passwd"])
    subprocess.run([passwd_tool, "-b", "-i", "1000", str(passwd), "device1", "s3cret"],
                   check=True, capture_output=True, timeout=30)
    acl = tmp_path / "acl"
    acl.write_text(next(o for o in ex if o["kind"] == "ConfigMap")["data"]["acl"])
    env = dict(commented_env(os.path.join(K8S, "gateway.yaml")))
    env.update({"GW_PASSWORD_FILE": str(passwd), "GW_ACL_FILE": str(acl),
                "GW_CONTAINER_ID": "mqtt-gateway-test-0"})
    cfg = tmp_path / "gateway.json"
    cfg.write_text(text)
    port, closed = gwtest.free_port(), "amqp://127.0.0.1:%d" % gwtest.free_port()
    gw = procs.start([gwtest.binary("gateway", "mqtt-gateway"), "--config", str(cfg),
                      "--mqtt-listen", "127.0.0.1:%d" % port,
                      "--mqtts-listen", "127.0.0.1:%d" % gwtest.free_port(),
                      "--http-listen", "127.0.0.1:%d" % gwtest.free_port(),
                      "--amqp-url", closed, "--route=$mqtt.=" + closed],
                     "mqtt-gateway", ready_port=port, env=env)

    def connack(user, password):
        import threading
        done, rc = threading.Event(), []
        cl = mqtt.Client(client_id="auth-%s" % user)
        if user:
            cl.username_pw_set(user, password)
        cl.on_connect = lambda c, u, f, r: (rc.append(r), done.set())
        cl.on_disconnect = lambda c, u, r: done.set()
        cl.connect("127.0.0.1", port, 10)
        cl.loop_start()
        try:
            gwtest.wait_until(done.is_set, timeout=15, what="CONNACK for %s" % user)
        finally:
            cl.loop_stop()
            cl.disconnect()
        return rc[0] if rc else None

    assert connack(None, None) == 5
    assert connack("device1", "wrong") == 4
    assert connack("device1", "s3cret") == 3
    gw.stop()


def test_gateway_memory_limit_fits_max_connections():
    """max-connections x the RSS per client measured in docs/performance.md
    (scenario 6, "ours") stays within 75 % of the gateway's memory limit."""
    with open(os.path.join(REPO, "docs", "performance.md")) as f:
        perf = f.read()
    m = re.search(r"^\| 6 \| connect rate / RSS per client \| [0-9.,]+ conn/s / ([0-9.]+) KB",
                  perf, re.M)
    assert m, "docs/performance.md: scenario 6 row not found"
    kib = float(m.group(1)) * 1000 / 1024
    assert gen_manifests.RSS_PER_CONNECTION_KIB >= kib
    units = {"Mi": 2 ** 20, "Gi": 2 ** 30}
    for flavor in FLAVORS:
        objs = FLAVORS[flavor]()
        objs_, pod, gateway, text = shipped("mqtt-gateway", objs)
        lim = gateway["resources"]["limits"]["memory"]
        mm = re.fullmatch(r"(\d+)(Mi|Gi)", lim)
        limit = int(mm.group(1)) * units[mm.group(2)]
        maxc = json.loads(text)["max-connections"]
        assert 0 < maxc and maxc * kib * 1024 <= 0.75 * limit, (flavor, maxc, lim)
        # ... and below the router's sessions per gateway worker (router.md).
        assert maxc / json.loads(text)["workers"] < 30000


# --------------------------------------------------------------------------
# the stack from the shipped configs


def documented_metrics():
    """{prefix: [metric names]} named in docs/operations.md, section 9."""
    with open(os.path.join(REPO, "docs", "operations.md")) as f:
        doc = f.read()
    sec = doc[doc.index("## 9."):doc.index("## 10.")]
    out = {}
    # in the tables and in the example alert expressions
    for n in re.findall(r"\b((?:mqtt_gateway|gw_will|gw_subs)_[a-z_]+)", sec):
        n = re.sub(r"_(bucket|sum|count)$", "", n)  # histogram series -> family
        out.setdefault(n.split("_")[0] + "_" + n.split("_")[1], set()).add(n)
    return out


def metric_families(text):
    fams = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            fams.add(line.split()[2])
    return fams


def http_status(port, path):
    """Status of GET path, or None while nothing listens yet (the HTTP
    endpoint has its own thread and may bind after the main listener)."""
    import urllib.error
    try:
        return svc_http.get(port, path)[0]
    except (urllib.error.URLError, OSError):
        return None


def _tls_ok(port, ca):
    import socket
    import ssl
    ctx = ssl.create_default_context(cafile=ca)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost"):
                return True
    except ssl.SSLError:
        return False


def test_stack_over_tls_from_shipped_configs(procs, tmp_path):
    """subscription-service, will-service and mqtt-gateway run from their
    shipped ConfigMaps; only listen addresses (loopback, free ports), the
    store paths, the TLS files' directory and the router (absent here: its
    link routes are replaced by direct routes to the services, keeping the
    routes' options) are changed. paho over the gateway's own TLS listener
    (certificate made now, verified by the client) publishes on a routed
    topic root (relay=never) and on another one, and receives both; the probe
    endpoints answer 200 and every metric named in docs/operations.md is
    served. Then the certificate is replaced on disk and, after SIGHUP, the
    gateway serves the new one."""
    for img in BINARIES:
        binary_options(img)  # skips when not built
    import ssl
    import threading
    import paho.mqtt.client as mqtt

    objs = k8s_objects()
    pki = Pki(tmp_path)
    cert, key = pki.issue("server", "localhost", server=True)
    tls_dir = tmp_path / "gw-tls"
    tls_dir.mkdir()
    closed = "amqp://127.0.0.1:%d" % gwtest.free_port()  # no router here
    # Ports are picked right before each start (a shorter window for another
    # process to take them on this shared machine).
    ports = {}
    started = {}
    for img in ("subscription-service", "will-service", "mqtt-gateway"):
        _, pod, c, text = shipped(img, objs)
        listen, http = ports[img] = (gwtest.free_port(), gwtest.free_port())
        args = [gwtest.binary(*BINARIES[img][0])]
        env = None
        if img == "mqtt-gateway":
            cfg = json.loads(gateway_tls_moved(text, c, tls_dir, cert, key))
            tls_files = (cfg["tls-cert"], cfg["tls-key"])
            ss = "amqp://127.0.0.1:%d" % ports["subscription-service"][0]
            ws = "amqp://127.0.0.1:%d" % ports["will-service"][0]
            routes = []
            for r in cfg["route"]:
                prefix, url, ropts = parse_route(r)
                assert hostport(url)[0] == "mqtt-router", r
                if prefix.startswith("$mqtt."):
                    # what the link routes do: the will address to the WS, the rest to the SS
                    routes += ["%s=%s" % (cfg["lwt-address"], ws), "%s=%s" % (prefix, ss)]
                else:
                    routes.append(";".join(["%s=%s" % (prefix, ss)] +
                                           ["%s=%s" % kv for kv in sorted(ropts.items())]))
            cfg["route"] = routes
            mqtts = gwtest.free_port()
            args += ["--mqtt-listen", "127.0.0.1:%d" % listen,
                     "--mqtts-listen", "127.0.0.1:%d" % mqtts, "--amqp-url", ss]
            env = {"GW_CONTAINER_ID": "mqtt-gateway-test-0"}
            text = json.dumps(cfg)
        else:
            args += ["--listen", "127.0.0.1:%d" % listen, "--connect", closed,
                     "--store", str(tmp_path / (img + ".db"))]
            if img == "will-service":
                args += ["--publish-url",
                         "amqp://127.0.0.1:%d" % ports["subscription-service"][0]]
        cfg_path = tmp_path / (img + ".json")
        cfg_path.write_text(text)
        args += ["--config", str(cfg_path), "--http-listen", "127.0.0.1:%d" % http]
        started[img] = procs.start(args, img, ready_port=listen, env=env)
    for img, (_, http) in ports.items():
        gwtest.wait_until(lambda: http_status(http, "/readyz") == 200, timeout=20,
                          what="%s /readyz" % img)
        assert http_status(http, "/healthz") == 200, img

    def tls_client(cid):
        cl = mqtt.Client(client_id=cid, clean_session=True)
        cl.tls_set(ca_certs=pki.ca_cert, cert_reqs=ssl.CERT_REQUIRED,
                   tls_version=ssl.PROTOCOL_TLS_CLIENT)
        connected = threading.Event()
        cl.on_connect = lambda c, u, f, rc: rc == 0 and connected.set()
        cl.connect("localhost", mqtts, 30)
        cl.loop_start()
        gwtest.wait_until(connected.is_set, timeout=15, what="CONNACK 0 over TLS for " + cid)
        return cl

    got, subscribed = [], threading.Event()
    sub = tls_client("deploy-sub")
    try:
        sub.on_message = lambda c, u, m: got.append((m.topic, m.payload))
        sub.on_subscribe = lambda c, u, mid, q: subscribed.set()
        sub.subscribe([("sensors/#", 1), ("other/#", 1)])
        gwtest.wait_until(subscribed.is_set, timeout=15, what="SUBACK")
        pub = tls_client("deploy-pub")
        try:
            infos = [pub.publish("sensors/1/temp", b"21.5", qos=1),
                     pub.publish("other/x", b"y", qos=1)]
            for i in infos:
                i.wait_for_publish()
        finally:
            pub.loop_stop()
            pub.disconnect()
        gwtest.wait_until(lambda: len(got) >= 2, timeout=15, what="both messages over TLS")
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert sorted(got) == [("other/x", b"y"), ("sensors/1/temp", b"21.5")]

    # Metrics: the documented names exist; the traffic was counted.
    doc = documented_metrics()
    prefixes = {"mqtt-gateway": "mqtt_gateway", "will-service": "gw_will",
                "subscription-service": "gw_subs"}
    for img, (_, http) in ports.items():
        status, text = svc_http.get(http, "/metrics")
        assert status == 200, img
        fams = metric_families(text)
        want = doc.get(prefixes[img], set())
        assert len(want) >= 5, "docs/operations.md names too few %s metrics" % img
        assert want <= fams, "%s does not serve %s" % (img, sorted(want - fams))
    m = svc_http.parse(svc_http.get(ports["mqtt-gateway"][1], "/metrics")[1])
    assert sum(v for (n, lab), v in m.items() if n == "mqtt_gateway_messages_in_total") >= 2

    # Certificate rotation: a new pair from another CA, renamed into place as
    # the kubelet swaps a Secret volume; the new CA is refused until SIGHUP.
    (tmp_path / "ca2").mkdir()
    pki2 = Pki(tmp_path / "ca2", ca_name="gw-test-ca2")
    cert2, key2 = pki2.issue("server2", "localhost", server=True)
    assert _tls_ok(mqtts, pki.ca_cert) and not _tls_ok(mqtts, pki2.ca_cert)
    for src, dst in ((cert2, tls_files[0]), (key2, tls_files[1])):
        shutil.copy(src, dst + ".new")
        os.replace(dst + ".new", dst)
    assert not _tls_ok(mqtts, pki2.ca_cert)  # files alone change nothing
    started["mqtt-gateway"].signal(__import__("signal").SIGHUP)
    gwtest.wait_until(lambda: _tls_ok(mqtts, pki2.ca_cert), timeout=15,
                      what="new certificate after SIGHUP")
    assert not _tls_ok(mqtts, pki.ca_cert)
    assert "SIGHUP: reloaded TLS certificates" in started["mqtt-gateway"].log()  # operations.md 11
    for img in ("mqtt-gateway", "will-service", "subscription-service"):
        started[img].stop()


def test_gateway_attaches_through_the_router_are_all_link_routed(procs, tmp_path):
    """The gateway from its shipped config, with the router replaced by a
    recording AMQP peer that offers ANONYMOUS-RELAY as Dispatch always does,
    and the subscription-service's direct address by another. Every link the
    gateway attaches to the router has an address that qdrouterd.conf
    link-routes to a service container (nothing would be message-routed and
    released), including the publication on a routed topic root, which takes
    a per-topic link (relay=never) instead of the relay; the publication on
    another root takes the SS's relay directly."""
    binary_options("mqtt-gateway")
    import gw_mqtt_raw as R
    from gw_amqp_peer import AmqpPeer
    objs, pod, c, text = shipped("mqtt-gateway")
    text = gateway_tls_moved(text, c, tmp_path, *Pki(tmp_path).issue("s", "localhost",
                                                                     server=True))
    cfg = json.loads(text)
    router, ss = AmqpPeer(anonymous_relay=True).start(), AmqpPeer(anonymous_relay=True).start()
    try:
        routes = []
        for r in cfg["route"]:
            prefix, url, ropts = parse_route(r)
            assert hostport(url)[0] == "mqtt-router", r
            routes.append(";".join(["%s=amqp://127.0.0.1:%d" % (prefix, router.port)] +
                                   ["%s=%s" % kv for kv in sorted(ropts.items())]))
        assert hostport(cfg["amqp-url"])[0] == "subscription-service"
        cfg["route"] = routes
        cfg["amqp-url"] = "amqp://127.0.0.1:%d" % ss.port
        cfg_path = tmp_path / "gateway.json"
        cfg_path.write_text(json.dumps(cfg))
        port, http = gwtest.free_port(), gwtest.free_port()
        gw = procs.start([gwtest.binary("gateway", "mqtt-gateway"), "--config", str(cfg_path),
                          "--mqtt-listen", "127.0.0.1:%d" % port,
                          "--mqtts-listen", "127.0.0.1:%d" % gwtest.free_port(),
                          "--http-listen", "127.0.0.1:%d" % http],
                         "mqtt-gateway", ready_port=port,
                         env={"GW_CONTAINER_ID": "mqtt-gateway-test-0"})
        gwtest.wait_until(lambda: http_status(http, "/readyz") == 200, timeout=20,
                          what="gateway /readyz")
        cl = R.RawClient(port)
        assert cl.connect("dev1", will=("devices/dev1/state", b"offline", 1, False)) == (0, 0)
        cl.send(R.publish("sensors/1/temp", b"21.5", qos=1, pid=1))
        assert R.pid_of(cl.expect(R.PUBACK)[1]) == 1
        cl.send(R.publish("other/x", b"y", qos=1, pid=2))
        assert R.pid_of(cl.expect(R.PUBACK)[1]) == 2
        m = router.wait_msg(to="sensors/1/temp")
        assert m["link_target"] == "sensors/1/temp"  # a per-topic link, not the relay
        assert ss.wait_msg(to="other/x")["link_target"] is None  # direct, relay
        assert not ss.msgs(to="sensors/1/temp") and not router.msgs(to="other/x")

        table = deploy_qdr.LinkRouteTable(deploy_qdr.parse(router_conf()))
        with router.lock:
            links = list(router.links)
        kinds = set()
        for link in links:
            direction, addr = ("in", link["target"]) if link["gateway_role"] == "sender" \
                else ("out", link["source"])
            lr = table.lookup(direction, addr)
            assert lr is not None, "not link-routed: %s %s %r" % (link["name"], direction, addr)
            assert lr["containerId"] in ("will-service", "subscription-service"), link
            kinds.add((direction, lr["name"]))
        # the will, control, both per-client receivers and the topic link were there
        assert {("in", "will-in"), ("in", "subscription-control"),
                ("out", "subscription-to-client"), ("in", "topics-sensors-in")} <= kinds, kinds
        cl.send(R.DISCONNECT_PKT)
        gw.stop()
    finally:
        procs.stop_all()
        router.stop()
        ss.stop()


def _run_with_config(procs, tmp_path, image, cfg_text, extra, env=None):
    parts, _ = BINARIES[image]
    cfg_path = tmp_path / (image + ".json")
    cfg_path.write_text(cfg_text)
    port, http = gwtest.free_port(), gwtest.free_port()
    args = [gwtest.binary(*parts), "--config", str(cfg_path),
            "--http-listen", "127.0.0.1:%d" % http] + extra(port)
    p = procs.start(args, image, ready_port=port, env=env)
    # Our own endpoint answering proves the port check did not see a stranger.
    gwtest.wait_until(lambda: http_status(http, "/healthz") == 200, timeout=15,
                      what="%s /healthz" % image)
    p.stop()


@pytest.mark.parametrize("image", sorted(BINARIES))
def test_binaries_accept_the_shipped_config(procs, tmp_path, image):
    """The ConfigMap's JSON, as mounted, is loaded by the real binary. Only the
    network addresses and the store path are overridden by flags (loopback,
    free ports, tmp_path), so every other value is the shipped one."""
    binary_options(image)  # skips when not built
    objs, pod, c, text = shipped(image)
    closed = "amqp://127.0.0.1:%d" % gwtest.free_port()  # nothing listens: refused at once
    if image == "mqtt-gateway":
        text = gateway_tls_moved(text, c, tmp_path,
                                 *Pki(tmp_path).issue("s", "localhost", server=True))

        def extra(port):
            return ["--mqtt-listen", "127.0.0.1:%d" % port, "--amqp-url", closed,
                    "--mqtts-listen", "127.0.0.1:%d" % gwtest.free_port(),
                    "--route=$mqtt.=" + closed]
        env = {"GW_CONTAINER_ID": "mqtt-gateway-test-0"}
    else:
        def extra(port):
            out = ["--listen", "127.0.0.1:%d" % port, "--connect", closed,
                   "--store", str(tmp_path / "store.db")]
            return out + (["--publish-url", closed] if image == "will-service" else [])
        env = None
    _run_with_config(procs, tmp_path, image, text, extra, env)


@pytest.mark.parametrize("image", ["will-service", "subscription-service"])
def test_services_present_the_link_routes_container_id(procs, tmp_path, image):
    """Each service, started with its shipped config (only addresses moved to
    loopback), dials the route-container listener and opens its connection
    with the container id that the link routes name. The will-service also
    accepts a will link forwarded as a Dispatch router forwards it: over that
    outgoing connection, with the link name rewritten to name@container."""
    binary_options(image)  # skips when not built
    objs = k8s_objects()
    (w, pod, c, _), = [x for x in our_containers(objs) if x[3] == image]
    text = configmap_file(objs, c, pod, c["args"][c["args"].index("--config") + 1])
    cid = json.loads(text)["container-id"]
    routes = [a for s, a, _ in deploy_qdr.parse(router_conf()) if s == "linkRoute"]
    assert cid in {a.get("containerId") for a in routes}

    router_port = gwtest.free_port()
    standin = ["/usr/bin/python3", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "deploy_router_standin.py"),
               "--port", str(router_port)]
    if image == "will-service":
        standin += ["--will-link", "c1@mqtt-gateway-test-w0"]
    router = procs.start(standin, "router-standin", ready_log="READY")

    cfg_path = tmp_path / (image + ".json")
    cfg_path.write_text(text)
    port = gwtest.free_port()
    args = [gwtest.binary(*BINARIES[image][0]), "--config", str(cfg_path),
            "--listen", "127.0.0.1:%d" % port, "--connect", "amqp://127.0.0.1:%d" % router_port,
            "--store", str(tmp_path / "store.db"),
            "--http-listen", "127.0.0.1:%d" % gwtest.free_port()]
    if image == "will-service":
        args += ["--publish-url", "amqp://127.0.0.1:%d" % gwtest.free_port()]
    svc = procs.start(args, image, ready_port=port)
    gwtest.wait_until(lambda: "CONNECTED " in router.log(), timeout=15,
                      what="%s connecting to the router stand-in" % image)
    assert "CONNECTED %s\n" % cid in router.log()
    if image == "will-service":
        gwtest.wait_until(lambda: "WILL " in router.log(), timeout=15, what="will outcome")
        assert "WILL accepted" in router.log()
    svc.stop()


# --------------------------------------------------------------------------
# qdrouterd.conf


def test_router_config_parses_and_validates():
    text = router_conf()
    sections = deploy_qdr.parse(text)
    assert deploy_qdr.validate(sections) == []
    example = deploy_qdr.parse(deploy_qdr.example_block(text, "telemetry-broker"))
    assert deploy_qdr.validate(sections + example) == []
    # The parser is strict enough to catch the usual mistakes.
    for bad in ("router {\n  mode: standalone\n", "linkRoute {\n  prefix: a\n}\n",
                "router {\n  id: x\n}\nlistener {\n  port: amqp {\n}\n"):
        try:
            problems = deploy_qdr.validate(deploy_qdr.parse(bad))
        except deploy_qdr.ConfigError:
            continue
        assert problems, bad


def test_link_routes_send_spec_addresses_to_their_service():
    d = spec_defaults()
    text = router_conf()
    sections = deploy_qdr.parse(text)
    example = deploy_qdr.parse(deploy_qdr.example_block(text, "telemetry-broker"))
    table = deploy_qdr.LinkRouteTable(sections + example)

    def owner(direction, address):
        lr = table.lookup(direction, address)
        return lr and (lr.get("containerId") or lr.get("connection"))

    ws, ss = "will-service", "subscription-service"
    cases = [
        # spec 2.2: L1 .. L5, client ids with dots and slashes
        ("in", d["lwt"], ws),
        ("in", d["subctrl"], ss),
        ("out", d["to_prefix"] + "c1.control", ss),
        ("out", d["to_prefix"] + "c1.publish", ss),
        ("out", d["to_prefix"] + "a.b/c.publish", ss),
        ("in", d["pubrel_prefix"] + "c1.pubrel", ss),
        ("in", d["pubrel_prefix"] + "a.b/c.pubrel", ss),
        # ids that look like the service names stay with the SS
        ("in", d["pubrel_prefix"] + "lwtservice.pubrel", ss),
        ("in", d["pubrel_prefix"] + "to.x.pubrel", ss),
        # native AMQP peers on the example topic roots
        ("in", "sensors/1/temp", ss),
        ("out", "sensors/+/temp", ss),
        ("in", "telemetry/dev1/temp", "telemetry-broker"),
        ("out", "telemetry/#", "telemetry-broker"),
        # never link-routed: router-local, anonymous relay, wrong direction
        ("in", "$management", None),
        ("out", "$management", None),
        ("in", None, None),
        ("in", d["to_prefix"] + "c1.control", None),
        ("out", d["pubrel_prefix"] + "c1.pubrel", None),
        ("in", "other/topic", None),
    ]
    wrong = [(dr, a, owner(dr, a), want) for dr, a, want in cases if owner(dr, a) != want]
    assert not wrong, wrong
    # The link routes' containers are the services' --container-id (checked
    # against the ConfigMaps in test_ports_and_urls_agree).
    cids = {a["containerId"] for s, a, _ in sections if s == "linkRoute" and "containerId" in a}
    assert cids == {ws, ss}


def test_router_md_explains_every_entry():
    with open(os.path.join(REPO, "docs", "router.md")) as f:
        doc = f.read()
    text = router_conf()
    sections = deploy_qdr.parse(text) + deploy_qdr.parse(
        deploy_qdr.example_block(text, "telemetry-broker"))
    missing = [a["name"] for s, a, _ in sections if "name" in a and "`%s`" % a["name"] not in doc]
    missing += [s for s, a, _ in sections if "`%s`" % s not in doc]
    for term in ("qd:routed-link-lost", "qd:no-route-to-dest", "credit", "ANONYMOUS-RELAY"):
        if term not in doc:
            missing.append(term)
    assert not missing, "docs/router.md does not mention: %s" % sorted(set(missing))


# --------------------------------------------------------------------------
# Containerfile


def containerfile_stages():
    """[{name, base, packages, copies, user, expose, entrypoint, cmd, runs}]"""
    with open(CONTAINERFILE) as f:
        text = f.read()
    text = re.sub(r"\\\n", " ", text)  # join continuation lines
    stages = []
    args = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, rest = line.partition(" ")
        instr = instr.upper()
        if instr == "ARG" and not stages:
            k, _, v = rest.partition("=")
            args[k] = v
        elif instr == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            base = re.sub(r"\$\{(\w+)\}", lambda mm: args[mm.group(1)], m.group(1))
            stages.append({"name": m.group(2), "base": base, "packages": [], "copies": [],
                           "user": None, "expose": [], "entrypoint": None, "cmd": None,
                           "runs": []})
        elif instr == "RUN":
            st = stages[-1]
            st["runs"].append(rest)
            for m in re.finditer(r"apt-get install ((?:\s*-\S+)*)((?:\s+[a-z0-9][a-z0-9.+-]+)+)",
                                 rest):
                st["packages"].extend(m.group(2).split())
        elif instr == "COPY":
            stages[-1]["copies"].append(rest.split())
        elif instr == "USER":
            stages[-1]["user"] = rest
        elif instr == "EXPOSE":
            stages[-1]["expose"].extend(int(p.split("/")[0]) for p in rest.split())
        elif instr in ("ENTRYPOINT", "CMD"):
            stages[-1][instr.lower()] = json.loads(rest)
    return stages


def inherited(stages, st, key):
    """A stage's value of key, following FROM <earlier stage>."""
    names = {s["name"]: s for s in stages}
    while st is not None:
        if st[key]:
            return st[key]
        st = names.get(st["base"])
    return None


def all_packages(stages, st):
    names = {s["name"]: s for s in stages}
    out = []
    while st is not None:
        out.extend(st["packages"])
        st = names.get(st["base"])
    return out


def test_containerfile_stages_and_users():
    stages = containerfile_stages()
    names = {s["name"]: s for s in stages}
    finals = ["mqtt-gateway", "will-service", "subscription-service"]
    assert "tls-proxy" not in names, "the gateway terminates TLS itself"
    assert set(finals) <= set(names)
    for s in stages:
        root = s
        while root["base"] in names:
            root = names[root["base"]]
        assert root["base"] == "docker.io/library/debian:12", s["name"]
    for n in finals:
        st = names[n]
        assert re.fullmatch(r"[1-9][0-9]*", st["user"] or ""), "%s: USER must be numeric" % n
        assert inherited(stages, st, "entrypoint"), n
        pk = all_packages(stages, st)
        assert not [p for p in pk if p.endswith("-dev")], "%s has -dev packages" % n
        assert not [p for p in pk if p in ("build-essential", "cmake", "gcc")], n
    # Each image exposes exactly the container ports the manifests give it.
    objs = k8s_objects()
    for w in workloads(objs):
        for c in pod_spec(w)["containers"]:
            img = image_name(c["image"])
            if img in names:
                assert sorted(names[img]["expose"]) == sorted(p["containerPort"]
                                                              for p in c["ports"]), img


def test_containerfile_builds_the_cmake_targets():
    stages = containerfile_stages()
    build = next(s for s in stages if s["name"] == "build")
    runs = " ".join(build["runs"])
    for img, (parts, _) in BINARIES.items():
        cmake = os.path.join(REPO, *parts[:-1], "CMakeLists.txt")
        with open(cmake) as f:
            assert re.search(r"add_executable\(\s*%s\b" % re.escape(parts[-1]), f.read()), cmake
        m = re.search(r"--target((?:\s+[a-z0-9-]+)+)", runs)
        assert m and img in m.group(1).split(), "cmake --build --target lacks %s" % img
        assert "/build/%s" % "/".join(parts) in runs, img
        final = next(s for s in stages if s["name"] == img)
        copied = [c for c in final["copies"] if c[0] == "--from=build"]
        assert copied and copied[0][-1] == inherited(stages, final, "entrypoint")[-1], img
    # Sources copied into the build stage exist; nothing secret is copied anywhere.
    for s in stages:
        for c in s["copies"]:
            if c[0].startswith("--from"):
                continue
            for src in c[:-1]:
                assert os.path.exists(os.path.join(REPO, src)), src
                assert not re.search(r"\.(key|pem|p12|jks)$|secret|passw", src, re.I), src
    with open(CONTAINERFILE) as f:
        assert not re.search(r"^\s*ENV\s+\S*(PASSWORD|SECRET|TOKEN)", f.read(), re.M | re.I)


def _package_known(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True,
                       text=True)
    if r.returncode == 0 and "install ok installed" in r.stdout:
        return True
    if not glob.glob("/var/lib/apt/lists/*_Packages*"):
        return None  # apt has no package lists here: cannot tell
    r = subprocess.run(["apt-cache", "policy", pkg], capture_output=True, text=True)
    m = re.search(r"Candidate:\s*(\S+)", r.stdout)
    return bool(m) and m.group(1) != "(none)"


def test_containerfile_packages_exist_in_debian_12():
    if not shutil.which("dpkg-query") or not shutil.which("apt-cache"):
        pytest.skip("not a Debian system")
    with open("/etc/os-release") as f:
        if 'VERSION_ID="12"' not in f.read():
            pytest.skip("not Debian 12")
    pkgs = sorted({p for s in containerfile_stages() for p in s["packages"]})
    assert "libqpid-proton11" in pkgs and "stunnel4" not in pkgs
    status = {p: _package_known(p) for p in pkgs}
    missing = [p for p, ok in status.items() if ok is False]
    assert not missing, "not in Debian 12: %s" % missing
    unknown = [p for p, ok in status.items() if ok is None]
    if unknown:
        pytest.skip("apt has no package lists (run apt-get update) to check %s" % unknown)


def test_entrypoint_raises_the_open_files_limit():
    script = os.path.join(REPO, "containers", "entrypoint.sh")
    assert os.access(script, os.X_OK)
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip("hard open-files limit too low to test (%d)" % hard)
    want = 1048576 if hard == resource.RLIM_INFINITY else hard
    # Lower the soft limit in a shell, then run the entrypoint under it.
    r = subprocess.run(["sh", "-c", 'ulimit -Sn 256 && exec sh "$0" sh -c "ulimit -Sn"', script],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.strip()) == want, (r.stdout, r.stderr)
