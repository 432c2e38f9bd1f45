#!/usr/bin/python3
"""Generate the deployment manifests from one description.

    /usr/bin/python3 openshift/gen_manifests.py          # (re)write the files
    /usr/bin/python3 openshift/gen_manifests.py --check  # exit 1 if out of date

Writes
    openshift/kubernetes/{router,will-service,subscription-service,gateway,
                          networkpolicy}.yaml, kustomization.yaml,
                          secret-tls.example.yaml, auth.example.yaml
    openshift/template.yaml   (OpenShift Template: the same objects plus a
                               passthrough Route, parameters for images,
                               replicas, storage)

The Kubernetes manifests and the Template differ only where the platforms
differ (security context: fixed UID 10001 vs. OpenShift's arbitrary UID;
gateway Service: LoadBalancer vs. ClusterIP + Route; TLS secret: created by
the operator vs. OpenShift's service-serving certificate). The router
configuration is openshift/qdrouterd.conf, embedded verbatim.
Edit this file, not the generated ones; tests/system/test_deploy_manifests.py
fails when they are out of date.
"""
import json
import os
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
K8S_DIR = os.path.join(HERE, "kubernetes")
VERSION = "0.1.0"
PART_OF = "mqtt-amqp-gateway"

# Ports: the only place they are chosen.
MQTT_PORT = 1883
MQTTS_PORT = 8883
ROUTER_PORT = 5672           # gateways and AMQP applications (role normal)
ROUTER_SERVICES_PORT = 5673  # will-service, subscription-service (route-container)
SERVICE_PORT = 5672          # --listen of both services
HTTP_PORT = 8080             # --http-listen of all three: /healthz, /readyz, /metrics

ROUTER = "mqtt-router"
GATEWAY = "mqtt-gateway"
WILL = "will-service"
SUBS = "subscription-service"

# Topic roots that the router link-routes (openshift/qdrouterd.conf,
# topics-<root>-in/out). The gateway sends MQTT publications on these roots
# through the router with relay=never: per-topic sender links, which follow
# link routes (the router's anonymous relay does not).
ROUTED_TOPIC_ROOTS = ["sensors/"]

# Gateway sizing. RSS per MQTT client, all three processes summed, measured
# in docs/performance.md (scenario 6: 33.2 KB); rounded up.
RSS_PER_CONNECTION_KIB = 34
GATEWAY_MEMORY_LIMIT_MIB = 1024
# Connections per pod: 20000 x 34 KiB = 664 MiB of the 1 GiB limit, the rest
# for output backlogs of slow clients (out-buffer-high-watermark) and the
# AMQP side. Also below the router's ~30000 sessions per gateway worker.
GATEWAY_MAX_CONNECTIONS = 20000

# Above the TLS Secret's mount in the generated Deployment.
TLS_RELOAD_NOTE = [
    "A renewed Secret reaches these files within ~1-2 min (whole-volume mount, no",
    "subPath); the gateway uses it after SIGHUP: kubectl exec POD -c mqtt-gateway --",
    "sh -c 'kill -HUP 1' (docs/operations.md 10, 11), or kubectl rollout restart.",
]

# Optional authentication: a Secret with the password file and a ConfigMap
# with the ACL file, mounted when they exist (optional volumes). They are
# switched on by uncommenting the environment variables below in the
# generated Deployment (see docs/operations.md 3.4).
AUTH_SECRET = GATEWAY + "-auth"
ACL_CONFIGMAP = GATEWAY + "-acl"
AUTH_DIR = "/etc/gw-auth"
ACL_DIR = "/etc/gw-acl"
AUTH_ENV_EXAMPLE = [
    "Authentication and ACLs (docs/operations.md 3.4): create the Secret %s" % AUTH_SECRET,
    "and/or the ConfigMap %s (shape: auth.example.yaml), then uncomment:" % ACL_CONFIGMAP,
    "- name: GW_PASSWORD_FILE",
    "  value: %s/passwd" % AUTH_DIR,
    "- name: GW_ACL_FILE",
    "  value: %s/acl" % ACL_DIR,
    "- name: GW_ALLOW_ANONYMOUS",
    "  value: \"false\"",
]


class Flavor:
    """What differs between plain Kubernetes and the OpenShift Template."""

    def __init__(self, openshift):
        self.openshift = openshift

    def image(self, name):
        if self.openshift:
            return "${IMAGE_REGISTRY}/%s:${IMAGE_TAG}" % name
        return "localhost/mqtt-amqp/%s:%s" % (name, VERSION)

    def router_image(self):
        return "${ROUTER_IMAGE}" if self.openshift else "quay.io/interconnectedcloud/qdrouterd:1.19.0"

    def param(self, name, default):
        """A Template parameter inside a string, or its default."""
        return "${%s}" % name if self.openshift else default

    def int_param(self, name, default):
        return "${{%s}}" % name if self.openshift else default

    def pod_security(self):
        sc = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
        if not self.openshift:
            # OpenShift's restricted SCC assigns UID/GID/fsGroup from the
            # namespace range; fixing them there would be refused.
            sc.update({"runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001})
        return sc


def labels(component):
    return {"app.kubernetes.io/name": component, "app.kubernetes.io/part-of": PART_OF}


def meta(name, component, **extra):
    m = {"name": name, "labels": labels(component)}
    m.update(extra)
    return m


def container_security():
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}}


def http_probes(port_name="http"):
    """Readiness: /readyz (gateway: every AMQP connection up; services: store
    open and listener or router connection up). Liveness: /healthz (the
    process answers). A pod that is not ready leaves the Service endpoints:
    a gateway whose AMQP side is down gets no new clients."""
    return {
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": port_name},
                           "initialDelaySeconds": 2, "periodSeconds": 5,
                           "timeoutSeconds": 2, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": port_name},
                          "initialDelaySeconds": 10, "periodSeconds": 10,
                          "timeoutSeconds": 5, "failureThreshold": 6},
    }


def scrape_annotations():
    """Prometheus' kubernetes_sd convention (prometheus.io/* pod annotations)."""
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(HTTP_PORT),
            "prometheus.io/path": "/metrics"}


def http_listen():
    return "0.0.0.0:%d" % HTTP_PORT


def tcp_probes(port_name, initial=2):
    return {
        "readinessProbe": {"tcpSocket": {"port": port_name}, "initialDelaySeconds": initial,
                           "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"tcpSocket": {"port": port_name}, "initialDelaySeconds": 10,
                          "periodSeconds": 10, "failureThreshold": 6},
    }


def resources(req_cpu, req_mem, lim_cpu, lim_mem):
    return {"requests": {"cpu": req_cpu, "memory": req_mem},
            "limits": {"cpu": lim_cpu, "memory": lim_mem}}


def config_map(name, component, data):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(name, component),
            "data": data}


def to_json(obj):
    return json.dumps(obj, indent=2) + "\n"


# --- router ------------------------------------------------------------------

def router_objects(fl):
    with open(os.path.join(HERE, "qdrouterd.conf")) as f:
        conf = f.read()
    cm = config_map(ROUTER + "-config", ROUTER, {"qdrouterd.conf": conf})
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": meta(ROUTER, ROUTER),
        "spec": {
            # One router: link routes bind every $mqtt.* address to the one
            # WS and the one SS; a second router needs inter-router
            # listeners/connectors (mode interior), see docs/router.md.
            "replicas": 1,
            "selector": {"matchLabels": labels(ROUTER)},
            "template": {
                "metadata": {"labels": labels(ROUTER)},
                "spec": {
                    "securityContext": fl.pod_security(),
                    "containers": [{
                        "name": "qdrouterd",
                        "image": fl.router_image(),
                        "command": ["qdrouterd", "-c", "/etc/qpid-dispatch/qdrouterd.conf"],
                        "ports": [
                            {"name": "amqp", "containerPort": ROUTER_PORT},
                            {"name": "amqp-services", "containerPort": ROUTER_SERVICES_PORT},
                        ],
                        **tcp_probes("amqp"),
                        "resources": resources("250m", "256Mi", "2", "1Gi"),
                        "securityContext": container_security(),
                        "volumeMounts": [
                            {"name": "config", "mountPath": "/etc/qpid-dispatch", "readOnly": True},
                            {"name": "tmp", "mountPath": "/tmp"},
                        ],
                    }],
                    "volumes": [
                        {"name": "config", "configMap": {"name": ROUTER + "-config"}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": meta(ROUTER, ROUTER),
        "spec": {
            "selector": labels(ROUTER),
            "ports": [
                {"name": "amqp", "port": ROUTER_PORT, "targetPort": "amqp"},
                {"name": "amqp-services", "port": ROUTER_SERVICES_PORT,
                 "targetPort": "amqp-services"},
            ],
        },
    }
    return [cm, deployment, service]


# --- services (StatefulSets) ------------------------------------------------------

def service_objects(fl, component, binary, cfg, storage_param, storage_default,
                    res):
    cfg_file = component + ".json"
    cm = config_map(component + "-config", component, {cfg_file: to_json(cfg)})
    sts = {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": meta(component, component),
        "spec": {
            # Single instance: the service owns its SQLite store and every
            # address it serves (see docs/operations.md, "Scale").
            "replicas": 1,
            "serviceName": component + "-headless",
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate"},
            "selector": {"matchLabels": labels(component)},
            "template": {
                "metadata": {"labels": labels(component), "annotations": scrape_annotations()},
                "spec": {
                    "securityContext": fl.pod_security(),
                    # Time for a clean stop (commit, close links) before SIGKILL.
                    "terminationGracePeriodSeconds": 30,
                    "containers": [{
                        "name": component,
                        "image": fl.image(binary),
                        "args": ["--config", "/etc/gw/" + cfg_file],
                        "ports": [{"name": "amqp", "containerPort": SERVICE_PORT},
                                  {"name": "http", "containerPort": HTTP_PORT}],
                        **http_probes(),
                        "resources": res,
                        "securityContext": container_security(),
                        "volumeMounts": [
                            {"name": "config", "mountPath": "/etc/gw", "readOnly": True},
                            {"name": "data", "mountPath": "/var/lib/gw"},
                            {"name": "tmp", "mountPath": "/tmp"},
                        ],
                    }],
                    "volumes": [
                        {"name": "config", "configMap": {"name": component + "-config"}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data", "labels": labels(component)},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": fl.param(storage_param,
                                                                   storage_default)}},
                },
            }],
        },
    }
    svc = {
        "apiVersion": "v1", "kind": "Service", "metadata": meta(component, component),
        "spec": {"selector": labels(component),
                 "ports": [{"name": "amqp", "port": SERVICE_PORT, "targetPort": "amqp"}]},
    }
    headless = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": meta(component + "-headless", component),
        "spec": {"clusterIP": "None", "selector": labels(component),
                 "ports": [{"name": "amqp", "port": SERVICE_PORT, "targetPort": "amqp"}]},
    }
    return [cm, sts, svc, headless]


def will_config(fl):
    return {
        # Direct connections (and the tcpSocket probe) on 5672; link-routed
        # will links arrive over the connection to the router (route-container,
        # container id = the linkRoute's containerId).
        "listen": "0.0.0.0:%d" % SERVICE_PORT,
        "connect": "amqp://%s:%d" % (ROUTER, ROUTER_SERVICES_PORT),
        "container-id": WILL,
        "address": "$mqtt.lwtservice",
        # Wills are publications: straight to the SS. The will-service uses
        # the anonymous relay when offered (it has no relay=never), and the
        # router's relay would not follow the topic link routes.
        "publish-url": "amqp://%s:%d" % (SUBS, SERVICE_PORT),
        "http-listen": http_listen(),
        "store": "/var/lib/gw/wills.db",
        "store-sync": "full",
        "grace-seconds": 30,
        "log-level": fl.param("LOG_LEVEL", "info"),
        "log-format": "json",
    }


def subs_config(fl):
    return {
        "listen": "0.0.0.0:%d" % SERVICE_PORT,
        "connect": "amqp://%s:%d" % (ROUTER, ROUTER_SERVICES_PORT),
        "container-id": SUBS,
        "control-address": "$mqtt.subscriptionservice",
        "to-prefix": "$mqtt.to.",
        "pubrel-prefix": "$mqtt.",
        "store": "/var/lib/gw/subscriptions.db",
        "store-sync": "full",
        "max-queued-messages": 1000,
        "max-queued-bytes": "16M",
        "overflow-policy": "drop-new",
        "http-listen": http_listen(),
        "log-level": fl.param("LOG_LEVEL", "info"),
        "log-format": "json",
    }


# --- gateway -------------------------------------------------------------------

def gateway_config(fl):
    return {
        "mqtt-listen": ["0.0.0.0:%d" % MQTT_PORT],
        # MQTT over TLS, terminated by the gateway itself. Certificate and key
        # come from the TLS Secret mounted at /etc/gw-tls; SIGHUP reloads them
        # (docs/operations.md, "TLS certificate rotation").
        "mqtts-listen": ["0.0.0.0:%d" % MQTTS_PORT],
        "tls-cert": "/etc/gw-tls/tls.crt",
        "tls-key": "/etc/gw-tls/tls.key",
        "tls-min-version": "1.2",
        # /healthz, /readyz (probes), /metrics (Prometheus).
        "http-listen": http_listen(),
        # Default route: publications on topic roots the router does not
        # link-route go straight to the SS (anonymous relay).
        "amqp-url": "amqp://%s:%d" % (SUBS, SERVICE_PORT),
        # The protocol's own addresses ($mqtt.lwtservice,
        # $mqtt.subscriptionservice, $mqtt.to.<id>.*, $mqtt.<id>.pubrel) go
        # through the router, which link-routes them to the services; so do
        # publications on the link-routed topic roots, on per-topic links
        # (relay=never), because the router's anonymous relay ignores link routes.
        "route": ["$mqtt.=amqp://%s:%d" % (ROUTER, ROUTER_PORT)] +
                 ["%s=amqp://%s:%d;relay=never" % (root, ROUTER, ROUTER_PORT)
                  for root in ROUTED_TOPIC_ROOTS],
        "max-connections": GATEWAY_MAX_CONNECTIONS,
        # 0 would mean "cores of the node", not of the pod's CPU limit.
        "workers": fl.int_param("GATEWAY_WORKERS", 2),
        "connection-mode": "shared",
        "lwt-address": "$mqtt.lwtservice",
        "subscription-address": "$mqtt.subscriptionservice",
        "to-prefix": "$mqtt.to.",
        "pubrel-prefix": "$mqtt.",
        "shutdown-timeout": "3s",
        "log-level": fl.param("LOG_LEVEL", "info"),
        "log-format": "json",
    }


def gateway_objects(fl):
    cfg = gateway_config(fl)
    cfg_text = to_json(cfg)
    if fl.openshift:
        # Unquote the integer parameter: "${{GATEWAY_WORKERS}}" -> ${GATEWAY_WORKERS}
        cfg_text = cfg_text.replace('"${{GATEWAY_WORKERS}}"', "${GATEWAY_WORKERS}")
    cm = config_map(GATEWAY + "-config", GATEWAY, {"gateway.json": cfg_text})
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": meta(GATEWAY, GATEWAY),
        "spec": {
            "replicas": fl.int_param("GATEWAY_REPLICAS", 3),
            "selector": {"matchLabels": labels(GATEWAY)},
            # Clients of a stopped pod reconnect to the others; one pod at a time.
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels(GATEWAY), "annotations": scrape_annotations()},
                "spec": {
                    "securityContext": fl.pod_security(),
                    # --shutdown-timeout (3s) plus margin.
                    "terminationGracePeriodSeconds": 15,
                    "affinity": {"podAntiAffinity": {
                        "preferredDuringSchedulingIgnoredDuringExecution": [{
                            "weight": 100,
                            "podAffinityTerm": {
                                "topologyKey": "kubernetes.io/hostname",
                                "labelSelector": {"matchLabels": labels(GATEWAY)},
                            },
                        }],
                    }},
                    "containers": [{
                        "name": GATEWAY,
                        "image": fl.image(GATEWAY),
                        "args": ["--config", "/etc/gw/gateway.json"],
                        "env": [{
                            # AMQP container id = pod name (router logs, qdstat -c).
                            "name": "GW_CONTAINER_ID",
                            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                        }],
                        "ports": [
                            {"name": "mqtt", "containerPort": MQTT_PORT},
                            {"name": "mqtts", "containerPort": MQTTS_PORT},
                            {"name": "http", "containerPort": HTTP_PORT},
                        ],
                        **http_probes(),
                        "resources": resources("500m", "512Mi", "2",
                                               "%dMi" % GATEWAY_MEMORY_LIMIT_MIB),
                        "securityContext": container_security(),
                        "volumeMounts": [
                            {"name": "config", "mountPath": "/etc/gw", "readOnly": True},
                            # Not below /etc/gw: a mount point cannot be created inside
                            # the read-only ConfigMap volume. Whole-volume mounts (no
                            # subPath), so that a Secret update reaches the files.
                            {"name": "tls", "mountPath": "/etc/gw-tls", "readOnly": True},
                            {"name": "auth", "mountPath": AUTH_DIR, "readOnly": True},
                            {"name": "acl", "mountPath": ACL_DIR, "readOnly": True},
                        ],
                    }],
                    "volumes": [
                        {"name": "config", "configMap": {"name": GATEWAY + "-config"}},
                        {"name": "tls", "secret": {"secretName": fl.param(
                            "TLS_SECRET_NAME", GATEWAY + "-tls")}},
                        # Optional: empty directories while they do not exist.
                        {"name": "auth", "secret": {"secretName": AUTH_SECRET,
                                                    "optional": True}},
                        {"name": "acl", "configMap": {"name": ACL_CONFIGMAP,
                                                      "optional": True}},
                    ],
                },
            },
        },
    }
    svc_meta = meta(GATEWAY, GATEWAY)
    svc_spec = {
        "selector": labels(GATEWAY),
        "ports": [
            {"name": "mqtt", "port": MQTT_PORT, "targetPort": "mqtt"},
            {"name": "mqtts", "port": MQTTS_PORT, "targetPort": "mqtts"},
        ],
    }
    if fl.openshift:
        # OpenShift's service CA issues tls.crt/tls.key for
        # mqtt-gateway.<namespace>.svc into this secret. Devices must trust
        # the service CA, or set TLS_SECRET_NAME to a secret of your own
        # (docs/operations.md).
        svc_meta["annotations"] = {
            "service.beta.openshift.io/serving-cert-secret-name": GATEWAY + "-tls"}
    else:
        # Devices are outside the cluster; the client address is kept.
        svc_spec["type"] = "LoadBalancer"
        svc_spec["externalTrafficPolicy"] = "Local"
    service = {"apiVersion": "v1", "kind": "Service", "metadata": svc_meta, "spec": svc_spec}
    pdb = {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": meta(GATEWAY, GATEWAY),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels(GATEWAY)}},
    }
    objs = [cm, deployment, service, pdb]
    if fl.openshift:
        objs.append({
            "apiVersion": "route.openshift.io/v1", "kind": "Route",
            "metadata": meta(GATEWAY + "-mqtts", GATEWAY),
            "spec": {
                "host": "${MQTT_HOSTNAME}",
                "to": {"kind": "Service", "name": GATEWAY, "weight": 100},
                "port": {"targetPort": "mqtts"},
                # The router passes the TLS stream through by SNI; the
                # gateway (--mqtts-listen) terminates it. Clients connect to 443.
                "tls": {"termination": "passthrough",
                        "insecureEdgeTerminationPolicy": "None"},
                "wildcardPolicy": "None",
            },
        })
    return objs


def tls_secret_example():
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": meta(GATEWAY + "-tls", GATEWAY),
        # Placeholders only. Create the real one with
        #   kubectl create secret tls mqtt-gateway-tls --cert=server.crt --key=server.key
        # (or cert-manager); never commit a real key.
        "stringData": {"tls.crt": "REPLACE-WITH-PEM-CERTIFICATE-CHAIN",
                       "tls.key": "REPLACE-WITH-PEM-PRIVATE-KEY"},
    }


def auth_example():
    """Shapes of the optional password Secret and ACL ConfigMap: placeholders
    and an example ACL, never a real password hash."""
    passwd = ("# Password file of mqtt-gateway (docs/security.md). Replace these\n"
              "# comment lines with lines made by mqtt-passwd, e.g.\n"
              "#   mqtt-passwd -c passwd device1 && kubectl create secret generic %s \\\n"
              "#       --from-file=passwd=passwd\n" % AUTH_SECRET)
    acl = ("# ACL file of mqtt-gateway (docs/security.md): an example.\n"
           "pattern\n"
           "topic write devices/%u/%c/up\n"
           "topic read devices/%u/%c/down\n"
           "topic read sensors/#\n"
           "topic write sensors/%c/#\n")
    secret = {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": meta(AUTH_SECRET, GATEWAY),
        "stringData": {"passwd": passwd},
    }
    return [secret, config_map(ACL_CONFIGMAP, GATEWAY, {"acl": acl})]


# --- network policies ---------------------------------------------------------------

def network_policies():
    def from_pods(*names):
        return [{"podSelector": {"matchExpressions": [{
            "key": "app.kubernetes.io/name", "operator": "In", "values": list(names)}]}}]

    router = {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": meta(ROUTER, ROUTER),
        "spec": {
            "podSelector": {"matchLabels": labels(ROUTER)},
            "policyTypes": ["Ingress"],
            "ingress": [
                # Route-container port: only the two services. Whoever connects
                # here with their container id receives their link routes.
                {"from": from_pods(WILL, SUBS),
                 "ports": [{"protocol": "TCP", "port": ROUTER_SERVICES_PORT}]},
                # Gateways and AMQP applications of this namespace.
                {"from": [{"podSelector": {}}],
                 "ports": [{"protocol": "TCP", "port": ROUTER_PORT}]},
            ],
        },
    }
    services = {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": meta("mqtt-services", SUBS),
        "spec": {
            "podSelector": {"matchExpressions": [{
                "key": "app.kubernetes.io/name", "operator": "In", "values": [WILL, SUBS]}]},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"podSelector": {}}],
                 "ports": [{"protocol": "TCP", "port": SERVICE_PORT}]},
                # /metrics for Prometheus in any namespace (narrow the
                # namespaceSelector to your monitoring namespace); kubelet
                # probes come from the node and are not subject to this.
                {"from": [{"namespaceSelector": {}}],
                 "ports": [{"protocol": "TCP", "port": HTTP_PORT}]},
            ],
        },
    }
    return [router, services]


# --- assembly --------------------------------------------------------------------

def all_objects(fl):
    return {
        "router.yaml": router_objects(fl),
        "will-service.yaml": service_objects(
            fl, WILL, "will-service", will_config(fl), "WILL_STORAGE_SIZE", "1Gi",
            resources("100m", "128Mi", "1", "512Mi")),
        "subscription-service.yaml": service_objects(
            fl, SUBS, "subscription-service", subs_config(fl), "SUBS_STORAGE_SIZE", "10Gi",
            resources("500m", "512Mi", "2", "2Gi")),
        "gateway.yaml": gateway_objects(fl),
        "networkpolicy.yaml": network_policies(),
    }


TEMPLATE_PARAMETERS = [
    {"name": "IMAGE_REGISTRY", "value": "image-registry.openshift-image-registry.svc:5000/mqtt-amqp",
     "description": "Registry and repository of the images built by containers/build.sh"},
    {"name": "IMAGE_TAG", "value": VERSION, "description": "Tag of the three images"},
    {"name": "ROUTER_IMAGE", "value": "quay.io/interconnectedcloud/qdrouterd:1.19.0",
     "description": "Qpid Dispatch Router 1.x image (runs qdrouterd -c <config>)"},
    {"name": "GATEWAY_REPLICAS", "value": "3", "description": "mqtt-gateway pods"},
    {"name": "GATEWAY_WORKERS", "value": "2",
     "description": "Worker threads per gateway pod; keep equal to its CPU limit"},
    {"name": "MQTT_HOSTNAME", "value": "",
     "description": "Host name of the MQTT over TLS Route (empty: generated by OpenShift)"},
    {"name": "TLS_SECRET_NAME", "value": "mqtt-gateway-tls",
     "description": "Secret with tls.crt/tls.key for port 8883; the default one is issued "
                    "by the service CA (annotation on the mqtt-gateway Service)"},
    {"name": "WILL_STORAGE_SIZE", "value": "1Gi", "description": "will-service volume"},
    {"name": "SUBS_STORAGE_SIZE", "value": "10Gi", "description": "subscription-service volume"},
    {"name": "LOG_LEVEL", "value": "info", "description": "error|warn|info|debug|trace"},
]


def kustomization():
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        # secret-tls.example.yaml and auth.example.yaml are deliberately not
        # listed: re-applying the kustomization must never overwrite the real
        # certificate, passwords or ACL.
        "resources": ["router.yaml", "will-service.yaml", "subscription-service.yaml",
                      "gateway.yaml", "networkpolicy.yaml"],
        "images": [{"name": "localhost/mqtt-amqp/%s" % n, "newTag": VERSION}
                   for n in ("mqtt-gateway", "will-service", "subscription-service")],
    }


class _Dumper(yaml.SafeDumper):
    pass


def _str_representer(dumper, data):
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_representer)


def dump(objs, header):
    text = yaml.dump_all(objs, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                         width=100, explicit_start=True)
    out = []
    env_indent = None
    for line in text.splitlines():
        stripped = line.lstrip()
        out.append(line)
        if stripped == "- name: GW_CONTAINER_ID":
            env_indent = line[: len(line) - len(stripped)]
        elif env_indent is not None and stripped == "fieldPath: metadata.name":
            out.extend(env_indent + "# " + t for t in AUTH_ENV_EXAMPLE)
            env_indent = None
        elif stripped == "mountPath: /etc/gw-tls" and out[-2].lstrip() == "- name: tls":
            indent = out[-2][: len(out[-2]) - len(out[-2].lstrip())]
            out[-2:-2] = [indent + "# " + t for t in TLS_RELOAD_NOTE]
    return header + "\n".join(out) + "\n"


HEADER = ("# GENERATED by openshift/gen_manifests.py from one description; edit that\n"
          "# script (and openshift/qdrouterd.conf), then run it. Explained in\n"
          "# docs/operations.md and docs/router.md.\n")


def render():
    """{path: text} of every generated file."""
    files = {}
    k8s = all_objects(Flavor(openshift=False))
    for name, objs in k8s.items():
        files[os.path.join(K8S_DIR, name)] = dump(objs, HEADER)
    files[os.path.join(K8S_DIR, "kustomization.yaml")] = dump([kustomization()], HEADER)
    files[os.path.join(K8S_DIR, "secret-tls.example.yaml")] = dump([tls_secret_example()], HEADER)
    files[os.path.join(K8S_DIR, "auth.example.yaml")] = dump(auth_example(), HEADER)

    os_objs = []
    for objs in all_objects(Flavor(openshift=True)).values():
        os_objs.extend(objs)
    template = {
        "apiVersion": "template.openshift.io/v1",
        "kind": "Template",
        "metadata": {
            "name": PART_OF,
            "annotations": {
                "description": "MQTT 3.1.1 gateway to AMQP 1.0: mqtt-gateway, will-service, "
                               "subscription-service and a Qpid Dispatch Router",
                "tags": "mqtt,amqp,iot,messaging",
            },
        },
        "labels": {"app.kubernetes.io/part-of": PART_OF},
        "objects": os_objs,
        "parameters": TEMPLATE_PARAMETERS,
    }
    files[os.path.join(HERE, "template.yaml")] = dump([template], HEADER)
    return files


def main(argv):
    check = "--check" in argv[1:]
    stale = []
    for path, text in render().items():
        old = None
        if os.path.exists(path):
            with open(path) as f:
                old = f.read()
        if old == text:
            continue
        stale.append(path)
        if not check:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
    if check and stale:
        print("out of date (run openshift/gen_manifests.py): " + ", ".join(stale))
        return 1
    if not check:
        print("written: %d file(s)" % len(stale))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
