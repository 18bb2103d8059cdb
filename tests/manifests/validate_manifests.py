#!/usr/bin/env python3
"""Validates operator_manifests/ and the helm/tokenmem chart.

- Renders the chart (tests/manifests/helmrender, Go text/template + sprig)
  with its default values and with values-alt.yaml; the output must be
  valid YAML, and NOTES.txt must render.
- Every object, rendered or in operator_manifests/, is decoded into the
  python3-kubernetes model of its kind, refusing unknown fields and
  missing required ones (what `kubectl apply --validate=strict` refuses).
  ServiceMonitor and PrometheusRule (no models) are checked by hand.
- TokenMemoryPool objects are checked against the CRD's own
  openAPIV3Schema with python3-jsonschema, and bad pools must be refused.
- The chart's copies (crds/, files/) equal operator_manifests' files.
- The renderer is built here (GOPATH mode against Debian's Go packages,
  no network) when it is missing or older than its source; the build's
  Go cache lives beside it, so later runs take a second.
- The remote path and the cluster are wired consistently: the agent
  config's remote.listen port is the DaemonSet's and the headless Service's
  "remote" port, cluster.dns_name is that Service's DNS name and port,
  cluster.secret_file lies in the mount of the Secret that the chart (or
  cluster-secret.yaml) creates; remote.enabled=false renders no remote and
  no cluster, cluster.enabled=false no cluster and no Secret. The chart's
  generated secret is random and kept across upgrades (lookup). The plain
  manifests' remote and cluster sections equal the chart's.
- With --agent, every agent config the manifests carry passes
  `tokenmem-agent --check-config` (secret_file pointed at a temporary file),
  and a cluster without remote.listen is refused.
Exit 0 on success, 1 with a list of failures otherwise.
"""
import argparse
import base64
import copy
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

SKIP = 77  # CTest's SKIP_RETURN_CODE: a Debian package is missing
try:
    import yaml
    import jsonschema
    import kubernetes.client as k8s
    from kubernetes.client.configuration import Configuration
except ImportError as e:
    print(f"skipped: {e} (apt-get install python3-yaml python3-jsonschema python3-kubernetes)")
    sys.exit(SKIP)

FAILURES = []


def fail(msg):
    FAILURES.append(msg)


def check(cond, msg):
    if not cond:
        fail(msg)
    return cond


# --- Kubernetes models -------------------------------------------------------

KINDS = {
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Secret"): "V1Secret",
    ("v1", "Service"): "V1Service",
    ("v1", "Pod"): "V1Pod",
    ("apps/v1", "DaemonSet"): "V1DaemonSet",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "V1ClusterRole",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "V1ClusterRoleBinding",
    ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding",
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): "V1CustomResourceDefinition",
    ("networking.k8s.io/v1", "NetworkPolicy"): "V1NetworkPolicy",
}
# Fields of type resource.Quantity, which the models type as str but the
# API server also takes as numbers.
QUANTITY_FIELDS = {"limits", "requests", "sizeLimit", "capacity", "allocatable"}
CONFIG = Configuration()
CONFIG.client_side_validation = True


def decode(value, typ, path, field=""):
    """Builds the model for `typ` from `value`; records errors."""
    if value is None:
        return None
    m = re.fullmatch(r"list\[(.*)\]", typ)
    if m:
        if not check(isinstance(value, list), f"{path}: expected a list"):
            return None
        return [decode(v, m.group(1), f"{path}[{i}]", field) for i, v in enumerate(value)]
    m = re.fullmatch(r"dict\(str, (.*)\)", typ)
    if m:
        if not check(isinstance(value, dict), f"{path}: expected a map"):
            return None
        return {k: decode(v, m.group(1), f"{path}.{k}", field) for k, v in value.items()}
    if typ == "object":
        return value
    if typ == "str":
        ok = isinstance(value, str) or (field in QUANTITY_FIELDS and isinstance(value, (int, float))
                                        and not isinstance(value, bool))
        check(ok, f"{path}: expected a string, got {value!r}")
        return str(value)
    if typ == "int":
        check(isinstance(value, int) and not isinstance(value, bool), f"{path}: expected an integer, got {value!r}")
        return value
    if typ == "float":
        check(isinstance(value, (int, float)) and not isinstance(value, bool), f"{path}: expected a number")
        return value
    if typ == "bool":
        check(isinstance(value, bool), f"{path}: expected a boolean, got {value!r}")
        return value
    if typ == "datetime":
        return value
    cls = getattr(k8s, typ)
    if not check(isinstance(value, dict), f"{path}: expected an object ({typ})"):
        return None
    reverse = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    kwargs = {}
    for key, v in value.items():
        if key not in reverse:
            fail(f"{path}: unknown field {key!r} in {typ}")
            continue
        attr = reverse[key]
        kwargs[attr] = decode(v, cls.openapi_types[attr], f"{path}.{key}", key)
    try:
        return cls(local_vars_configuration=CONFIG, **kwargs)
    except (ValueError, TypeError) as e:
        fail(f"{path}: {typ}: {e}")
        return None


def validate_monitoring(obj, where):
    kind = obj["kind"]
    spec = obj.get("spec", {})
    if kind == "ServiceMonitor":
        check(set(spec) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"},
              f"{where}: unexpected ServiceMonitor spec keys {sorted(spec)}")
        check(spec.get("selector", {}).get("matchLabels"), f"{where}: ServiceMonitor without a selector")
        for ep in spec.get("endpoints", []):
            check(set(ep) <= {"port", "path", "interval", "scrapeTimeout", "relabelings", "metricRelabelings", "scheme"},
                  f"{where}: unexpected endpoint keys {sorted(ep)}")
            for r in ep.get("relabelings", []):
                check(set(r) <= {"sourceLabels", "targetLabel", "replacement", "regex", "action", "separator"},
                      f"{where}: unexpected relabeling keys {sorted(r)}")
    elif kind == "PrometheusRule":
        check(list(spec) == ["groups"], f"{where}: PrometheusRule spec must hold only groups")
        for g in spec.get("groups", []):
            check(g.get("name") and g.get("rules"), f"{where}: rule group without name or rules")
            for r in g.get("rules", []):
                check(("alert" in r) != ("record" in r) and r.get("expr"), f"{where}: bad rule {r.get('alert')}")


# --- CRD schemas ---------------------------------------------------------------

def to_json_schema(s):
    """openAPIV3Schema -> JSON Schema; unknown fields refused (strict field validation)."""
    s = copy.deepcopy(s)
    if s.pop("x-kubernetes-int-or-string", False):
        pattern = s.pop("pattern", None)
        string = {"type": "string"}
        if pattern:
            string["pattern"] = pattern
        s = {"anyOf": [{"type": "integer"}, string], **s}
    for k in [k for k in s if k.startswith("x-kubernetes-")]:
        s.pop(k)
    if s.get("format") in ("int32", "int64", "date-time"):
        s.pop("format")
    if "properties" in s:
        s["properties"] = {k: to_json_schema(v) for k, v in s["properties"].items()}
        if "metadata" not in s["properties"] or s.get("type") != "object" or True:
            s.setdefault("additionalProperties", False)
    if "items" in s:
        s["items"] = to_json_schema(s["items"])
    return s


def apply_defaults(obj, s):
    if not isinstance(obj, dict):
        return
    for k, sub in s.get("properties", {}).items():
        if k not in obj and "default" in sub:
            obj[k] = copy.deepcopy(sub["default"])
        if k in obj:
            apply_defaults(obj[k], sub)


def crd_schema(crd):
    (v,) = crd["spec"]["versions"]
    return v["schema"]["openAPIV3Schema"]


def pool_errors(pool, schema):
    errs = [e.message for e in jsonschema.Draft4Validator(to_json_schema(schema)).iter_errors(pool)]
    name = pool.get("metadata", {}).get("name", "")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", name) or len(name) > 63:
        errs.append(f"bad pool name {name!r}")
    return errs


def check_crds(crds, examples):
    pool_crd = crds.get("tokenmemorypools.tokenmem.io")
    node_crd = crds.get("tokenmemorynodes.tokenmem.io")
    if not (check(pool_crd, "no TokenMemoryPool CRD") and check(node_crd, "no TokenMemoryNode CRD")):
        return
    for crd in (pool_crd, node_crd):
        (v,) = crd["spec"]["versions"]
        check(crd["spec"]["group"] == "tokenmem.io" and v["name"] == "v1alpha1", "CRD group/version")
        check(v.get("subresources", {}).get("status") == {}, f"{crd['metadata']['name']}: no status subresource")
        check(v.get("additionalPrinterColumns"), f"{crd['metadata']['name']}: no printer columns")
    schema = crd_schema(pool_crd)
    spec = schema["properties"]["spec"]["properties"]
    check(spec["evictionPolicy"]["enum"] == ["lru", "none"] and spec["evictionPolicy"]["default"] == "lru",
          "evictionPolicy enum/default")
    check(spec["scope"]["enum"] == ["node", "cluster"] and spec["scope"]["default"] == "node", "scope enum/default")
    check(spec["ttlSeconds"]["default"] == 0 and spec["ttlSeconds"]["minimum"] == 0, "ttlSeconds default/minimum")
    check("conditions" in schema["properties"]["status"]["properties"], "pool status has no conditions")
    node_status = crd_schema(node_crd)["properties"]["status"]["properties"]
    for k in ("tiers", "capacityBytes", "usedBytes", "pools", "health"):
        check(k in node_status, f"TokenMemoryNode status lacks {k}")

    for where, pool in examples:
        errs = pool_errors(pool, schema)
        check(not errs, f"{where}: valid pool refused: {errs}")

    base = {"apiVersion": "tokenmem.io/v1alpha1", "kind": "TokenMemoryPool", "metadata": {"name": "p"},
            "spec": {"blockSize": "256Ki", "capacity": {"dram": "1Gi"}}}
    defaulted = copy.deepcopy(base)
    apply_defaults(defaulted, schema)
    check(defaulted["spec"].get("evictionPolicy") == "lru" and defaulted["spec"].get("scope") == "node"
          and defaulted["spec"].get("ttlSeconds") == 0, f"defaults not applied: {defaulted['spec']}")
    check(not pool_errors(defaulted, schema), "the minimal defaulted pool is refused")
    good = [("blockSize int", {"blockSize": 4096}), ("blockSize MiB", {"blockSize": "2MiB"}),
            ("capacity int", {"capacity": {"nvme": 1073741824}}), ("capacity GB", {"capacity": {"nvme": "10GB"}}),
            ("capacity 1.5Gi", {"capacity": {"dram": "1.5Gi"}}), ("no eviction", {"evictionPolicy": "none"}),
            ("cluster", {"scope": "cluster", "allowedNamespaces": ["a", "b-c"]})]
    bad = [("evictionPolicy fifo", {"evictionPolicy": "fifo"}), ("negative ttl", {"ttlSeconds": -1}),
           ("ttl string", {"ttlSeconds": "60"}), ("blockSize word", {"blockSize": "abc"}),
           ("blockSize bare M", {"blockSize": "2M"}), ("blockSize zero", {"blockSize": "0"}),
           ("blockSize negative", {"blockSize": "-4096"}), ("capacity bare G", {"capacity": {"dram": "1G"}}),
           ("capacity unknown tier", {"capacity": {"hbm": "1Gi"}}), ("capacity empty", {"capacity": {}}),
           ("scope region", {"scope": "region"}), ("namespace upper", {"allowedNamespaces": ["Prod"]}),
           ("unknown field", {"replicas": 3})]
    for label, patch in good + bad:
        obj = copy.deepcopy(base)
        obj["spec"].update(patch)
        errs = pool_errors(obj, schema)
        if (label, patch) in good:
            check(not errs, f"pool with {label} refused: {errs}")
        else:
            check(errs, f"pool with {label} accepted")
    for name in ("Bad", "-x", "a" * 64, "a_b"):
        obj = copy.deepcopy(base)
        obj["metadata"]["name"] = name
        check(pool_errors(obj, schema), f"pool name {name!r} accepted")
    obj = copy.deepcopy(base)
    del obj["spec"]["blockSize"]
    check(pool_errors(obj, schema), "pool without blockSize accepted")


# --- driving ----------------------------------------------------------------------

def validate_docs(docs, where, crds, pools, agent_configs):
    kinds = []
    for i, obj in enumerate(docs):
        if obj is None:
            continue
        w = f"{where}#{i} {obj.get('kind')} {obj.get('metadata', {}).get('name')}"
        if not check(isinstance(obj, dict) and "apiVersion" in obj and "kind" in obj, f"{w}: not an object"):
            continue
        kinds.append(obj["kind"])
        key = (obj["apiVersion"], obj["kind"])
        if key in KINDS:
            decode(obj, KINDS[key], w)
        elif obj["apiVersion"] == "monitoring.coreos.com/v1":
            validate_monitoring(obj, w)
        elif key == ("tokenmem.io/v1alpha1", "TokenMemoryPool"):
            pools.append((w, obj))
        else:
            fail(f"{w}: unexpected kind {key}")
        if obj["kind"] == "CustomResourceDefinition":
            crds.setdefault(obj["metadata"]["name"], obj)
        if obj["kind"] == "ConfigMap" and "agent.yaml" in obj.get("data", {}):
            agent_configs.append((w, obj["data"]["agent.yaml"]))
    return kinds


def load(path):
    try:
        with open(path) as f:
            return list(yaml.safe_load_all(f))
    except yaml.YAMLError as e:
        fail(f"{path}: not YAML: {e}")
        return []


def render(renderer, chart, args):
    r = subprocess.run([renderer, "--chart", chart] + args, capture_output=True, text=True)
    if not check(r.returncode == 0, f"helmrender {' '.join(args)} failed: {r.stderr}"):
        return None
    return r.stdout


def check_daemonset(ds, where, expect_dp=True):
    spec = ds["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in spec["containers"]}
    check(spec.get("priorityClassName") == "system-node-critical", f"{where}: priorityClassName")
    check(spec.get("nodeSelector", {}).get("tokenmem.io/node") == "true", f"{where}: nodeSelector")
    check(spec.get("tolerations"), f"{where}: no tolerations")
    agent = containers.get("agent")
    if not check(agent, f"{where}: no agent container"):
        return
    check(agent["livenessProbe"]["httpGet"]["path"] == "/healthz", f"{where}: agent liveness")
    check(agent["readinessProbe"]["httpGet"]["path"] == "/readyz", f"{where}: agent readiness")
    caps = agent["securityContext"]["capabilities"]
    check(caps["drop"] == ["ALL"] and caps.get("add") == ["IPC_LOCK"], f"{where}: agent capabilities {caps}")
    check(not agent["securityContext"].get("privileged"), f"{where}: agent privileged")
    if expect_dp:
        dp = containers.get("device-plugin")
        if check(dp, f"{where}: no device-plugin container"):
            sc = dp["securityContext"]
            check(sc.get("privileged") or sc["capabilities"] == {"drop": ["ALL"]}, f"{where}: dp capabilities")
            mounts = {m["mountPath"] for m in dp["volumeMounts"]}
            for p in ("/var/lib/kubelet/device-plugins", "/var/lib/kubelet/pod-resources", "/run/tokenmem"):
                check(p in mounts, f"{where}: device plugin lacks mount {p}")
    for v in spec["volumes"]:
        hp = v.get("hostPath")
        if hp and hp["path"].startswith("/dev/"):
            check(hp.get("type", "") in ("", "CharDevice"), f"{where}: {hp['path']} must not be {hp.get('type')}")


# --- remote path and cluster ---------------------------------------------------

def find(docs, kind, pred=lambda d: True):
    return [d for d in docs if d and d.get("kind") == kind and pred(d)]


def agent_config(docs, where):
    """The agent.yaml of the ConfigMap in docs, parsed; None (and a failure) if absent or not YAML."""
    cms = find(docs, "ConfigMap", lambda d: "agent.yaml" in d.get("data", {}))
    if not check(len(cms) == 1, f"{where}: {len(cms)} agent ConfigMaps"):
        return None
    try:
        cfg = yaml.safe_load(cms[0]["data"]["agent.yaml"])
    except yaml.YAMLError as e:
        fail(f"{where}: agent.yaml is not YAML: {e}")
        return None
    check(isinstance(cfg, dict), f"{where}: agent.yaml is not a map")
    return cfg if isinstance(cfg, dict) else None


def named_port(ports, name):
    return next((p for p in ports or [] if p.get("name") == name), None)


def check_probes(where, agent, cfg):
    """The kubelet's probes go to http.probe_listen's port, which slow clients of the main
    HTTP port cannot starve (docs/limits.md)."""
    listen = str((cfg.get("http") or {}).get("probe_listen", ""))
    host, _, port = listen.rpartition(":")
    if not check(host == "0.0.0.0" and port.isdigit(), f"{where}: http.probe_listen {listen!r} is not 0.0.0.0:<port>"):
        return
    probes = named_port(agent.get("ports"), "probes")
    if check(probes, f"{where}: agent container has no containerPort 'probes'"):
        check(str(probes["containerPort"]) == port, f"{where}: containerPort probes {probes} differs from {listen}")
    for kind in ("livenessProbe", "readinessProbe"):
        got = agent[kind]["httpGet"].get("port")
        check(got in ("probes", int(port)), f"{where}: {kind} goes to port {got!r}, not the probe port")


def check_wiring(docs, where, expect_remote, expect_cluster, cluster_domain="cluster.local", existing_secret=None):
    """Checks that config, DaemonSet, headless Service and Secret agree; returns the agent config.

    existing_secret: the name of a Secret the user provides (not rendered);
    None: the mounted Secret must be among docs."""
    cfg = agent_config(docs, where)
    dss = find(docs, "DaemonSet")
    svcs = find(docs, "Service", lambda d: d["spec"].get("clusterIP") == "None")
    if not (cfg is not None and check(len(dss) == 1, f"{where}: {len(dss)} DaemonSets")
            and check(len(svcs) == 1, f"{where}: {len(svcs)} headless Services")):
        return cfg
    ds, svc = dss[0], svcs[0]
    pod = ds["spec"]["template"]
    agent = next(c for c in pod["spec"]["containers"] if c["name"] == "agent")
    labels = pod["metadata"]["labels"]
    check(all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()),
          f"{where}: the headless Service does not select the agent pods")
    check(svc["spec"].get("publishNotReadyAddresses") is True,
          f"{where}: headless Service without publishNotReadyAddresses: true")
    check(svc["metadata"]["namespace"] == ds["metadata"]["namespace"], f"{where}: Service and DaemonSet namespaces")

    svc_port = named_port(svc["spec"].get("ports"), "remote")
    ctr_port = named_port(agent.get("ports"), "remote")
    check_network_policy(docs, where, pod, agent, cfg, expect_remote)
    check_probes(where, agent, cfg)
    if expect_remote:
        remote = cfg.get("remote") or {}
        listen = str(remote.get("listen", ""))
        host, _, port = listen.rpartition(":")
        check(host == "0.0.0.0" and port.isdigit(), f"{where}: remote.listen {listen!r} is not 0.0.0.0:<port>")
        if check(ctr_port, f"{where}: agent container has no containerPort 'remote'"):
            check(str(ctr_port["containerPort"]) == port and ctr_port.get("protocol", "TCP") == "TCP",
                  f"{where}: containerPort remote {ctr_port} differs from remote.listen {listen}")
        if check(svc_port, f"{where}: headless Service has no port 'remote'"):
            check(str(svc_port["port"]) == port and svc_port.get("protocol") == "TCP"
                  and svc_port.get("targetPort") in ("remote", int(port) if port.isdigit() else None),
                  f"{where}: Service port remote {svc_port} does not lead to {listen}")
        check(isinstance(remote.get("max_connections"), int) and isinstance(remote.get("workers"), int),
              f"{where}: remote.max_connections / workers missing: {remote}")
    else:
        check("remote" not in cfg, f"{where}: remote section although the remote path is off")
        check(not svc_port and not ctr_port, f"{where}: remote port although the remote path is off")

    # The control API's token and TLS Secrets are check_admin_plane's.
    secret_vols = [v for v in pod["spec"].get("volumes", [])
                   if "secret" in v and not v["name"].startswith("control-")]
    secrets = find(docs, "Secret")
    if not expect_cluster:
        check("cluster" not in cfg, f"{where}: cluster section although the cluster is off")
        check(not secret_vols, f"{where}: Secret volume although the cluster is off")
        check(not secrets, f"{where}: Secret rendered although the cluster is off")
        return cfg
    c = cfg.get("cluster")
    if not check(isinstance(c, dict), f"{where}: no cluster section"):
        return cfg
    check(expect_remote and "remote" in cfg, f"{where}: cluster without remote")
    port = str(cfg.get("remote", {}).get("listen", "")).rpartition(":")[2]
    want_dns = f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc.{cluster_domain}:{port}"
    check(c.get("dns_name") == want_dns, f"{where}: cluster.dns_name {c.get('dns_name')!r}, want {want_dns!r}")
    check(c.get("heartbeat_timeout_ms", 3000) > c.get("heartbeat_interval_ms", 1000),
          f"{where}: heartbeat timeout not above the interval")
    secret_file = str(c.get("secret_file", ""))
    sdir, _, sfile = secret_file.rpartition("/")
    mounts = {m["name"]: m for m in agent.get("volumeMounts", [])}
    if not check(len(secret_vols) == 1, f"{where}: {len(secret_vols)} Secret volumes, want 1"):
        return cfg
    vol = secret_vols[0]
    m = mounts.get(vol["name"])
    if not check(m, f"{where}: the agent does not mount the Secret volume {vol['name']}"):
        return cfg
    check(m["mountPath"] == sdir and m.get("readOnly") is True,
          f"{where}: secret_file {secret_file} is not in the read-only mount {m['mountPath']}")
    items = vol["secret"].get("items")
    key = next((i["key"] for i in items if i["path"] == sfile), None) if items else sfile
    if not check(key, f"{where}: secret_file {secret_file}: no item of the Secret volume has path {sfile!r}"):
        return cfg
    name = vol["secret"]["secretName"]
    ours = [x for x in secrets if x["metadata"]["name"] == name]
    if existing_secret is not None:
        check(name == existing_secret and not secrets,
              f"{where}: Secret volume {name!r} / rendered Secrets {len(secrets)}, want only {existing_secret!r}")
    elif check(ours, f"{where}: the mounted Secret {name!r} is not among the manifests"):
        data = {**ours[0].get("data", {}), **ours[0].get("stringData", {})}
        check(key in data, f"{where}: Secret {name} has no key {key!r}")
        check(ours[0]["metadata"].get("namespace") == ds["metadata"]["namespace"], f"{where}: Secret namespace")
    return cfg


def check_network_policy(docs, where, pod, agent, cfg, expect_remote):
    """The NetworkPolicy selects the agent pods, admits the other agents to
    the remote listener and to UCX's pinned data ports, and the metrics
    port; nothing else."""
    nps = find(docs, "NetworkPolicy")
    if not nps:
        return
    if not check(len(nps) == 1, f"{where}: {len(nps)} NetworkPolicies"):
        return
    spec = nps[0]["spec"]
    labels = pod["metadata"]["labels"]
    sel = spec["podSelector"].get("matchLabels", {})
    check(sel and all(labels.get(k) == v for k, v in sel.items()), f"{where}: the NetworkPolicy does not select the agent pods")
    check(spec.get("policyTypes") == ["Ingress"], f"{where}: NetworkPolicy policyTypes {spec.get('policyTypes')}")
    allowed = set()
    for rule in spec.get("ingress", []):
        for p in rule.get("ports", []):
            allowed.update(range(p["port"], p.get("endPort", p["port"]) + 1))
    metrics = named_port(agent.get("ports"), "metrics")
    check(metrics and metrics["containerPort"] in allowed, f"{where}: NetworkPolicy does not admit the metrics port")
    env = {e["name"]: e.get("value") for e in agent.get("env", [])}
    if not expect_remote:
        check("UCX_TCP_PORT_RANGE" not in env, f"{where}: UCX_TCP_PORT_RANGE without the remote path")
        return
    port = int(str(cfg.get("remote", {}).get("listen", ":0")).rpartition(":")[2] or 0)
    rng = env.get("UCX_TCP_PORT_RANGE", "")
    first, _, last = rng.partition("-")
    if check(first.isdigit() and last.isdigit() and int(first) <= int(last),
             f"{where}: UCX_TCP_PORT_RANGE {rng!r} is not FIRST-LAST"):
        data_ports = set(range(int(first), int(last) + 1))
        check(port not in data_ports, f"{where}: the remote listener's port is inside UCX's data port range")
        remote_rules = [r for r in spec.get("ingress", [])
                        if {port} | data_ports <= {q for p in r.get("ports", [])
                                                   for q in range(p["port"], p.get("endPort", p["port"]) + 1)}]
        if check(remote_rules, f"{where}: no NetworkPolicy rule admits port {port} and UCX's ports {rng}"):
            peers = remote_rules[0].get("from", [])
            check(any(pe.get("podSelector", {}).get("matchLabels") == sel and "namespaceSelector" not in pe
                      for pe in peers), f"{where}: the other agents may not reach the remote ports")
            check(all(pe for pe in peers), f"{where}: an empty peer admits everyone to the remote ports")


def chart_secret_value(docs):
    (sec,) = find(docs, "Secret") or [None]
    if sec is None:
        return None
    (v,) = sec["data"].values()
    return base64.b64decode(v).decode()


def build_renderer(source, out):
    """Builds helmrender into `out` unless it is up to date; False if Go is missing."""
    main_go = os.path.join(source, "main.go")
    if os.path.exists(out) and os.path.getmtime(out) >= os.path.getmtime(main_go):
        return True
    go = shutil.which("go") or ("/usr/bin/go" if os.path.exists("/usr/bin/go") else None)
    sprig = "/usr/share/gocode/src/github.com/Masterminds/sprig"
    if not go or not os.path.isdir(sprig):
        print("skipped: the chart renderer needs golang-go and golang-github-masterminds-sprig-dev")
        return False
    env = dict(os.environ, GO111MODULE="off", GOPATH="/usr/share/gocode", GOFLAGS="",
               GOCACHE=os.path.join(os.path.dirname(os.path.abspath(out)), "go-cache"), CGO_ENABLED="0")
    r = subprocess.run([go, "build", "-o", out, "."], cwd=source, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"building helmrender failed:\n{r.stdout}{r.stderr}")
        sys.exit(1)
    return True


def check_admin_plane(docs, where, expect_tcp=False, expect_mtls=False):
    """The control socket stays with the agent and the device plugin; pods get only the data
    socket's directory (docs/security-admin-plane.md). With the TCP control listener, its token
    and TLS files are mounted from their Secrets where the config names them."""
    cfg = agent_config(docs, where)
    dss = find(docs, "DaemonSet")
    if cfg is None or not check(len(dss) == 1, f"{where}: {len(dss)} DaemonSets"):
        return
    ctl = cfg.get("control") or {}
    sock, data = str(ctl.get("socket", "")), str(ctl.get("data_socket", ""))
    sock_dir, data_dir = os.path.dirname(sock), os.path.dirname(data)
    check(sock and data and sock_dir != data_dir,
          f"{where}: control.socket {sock!r} and control.data_socket {data!r} share a directory")
    check(str(ctl.get("socket_mode")) == "0600", f"{where}: control.socket_mode {ctl.get('socket_mode')!r}")
    spec = dss[0]["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in spec["containers"]}
    volumes = {v["name"]: v for v in spec["volumes"]}

    def host_dirs(container):
        out = {}
        for m in container.get("volumeMounts", []):
            hp = volumes.get(m["name"], {}).get("hostPath")
            if hp:
                out[m["mountPath"]] = hp["path"]
        return out

    agent_dirs = host_dirs(containers["agent"])
    check(agent_dirs.get(sock_dir) == sock_dir, f"{where}: the agent does not mount {sock_dir}")
    check(agent_dirs.get(data_dir) == data_dir, f"{where}: the agent does not mount {data_dir}")
    dp = containers.get("device-plugin")
    if dp is not None:
        args = dp.get("args", [])
        check(f"--agent-socket={sock}" in args, f"{where}: device plugin --agent-socket is not {sock}")
        check(f"--agent-data-socket={data}" in args,
              f"{where}: device plugin --agent-data-socket is not {data}: pods would get the wrong directory")
        check(host_dirs(dp).get(sock_dir) == sock_dir, f"{where}: the device plugin does not mount {sock_dir}")
        check(not any(e.get("name") == "TOKENMEM_CONTROL_SOCKET" for e in dp.get("env", []) or []),
              f"{where}: TOKENMEM_CONTROL_SOCKET in the device plugin's environment")
    if not expect_tcp:
        check(not ctl.get("tcp_listen"), f"{where}: control.tcp_listen set although controlTcp is off")
        check(not any(n.startswith("control-") for n in volumes), f"{where}: control Secret volumes although off")
        return
    mounts = {m["name"]: m for m in containers["agent"].get("volumeMounts", [])}
    for key, vol in (("admin_token_file", "control-token"), ("tls_cert_file", "control-tls"),
                     ("tls_key_file", "control-tls"), ("tls_client_ca_file", "control-tls")):
        if key.startswith("tls_client_ca") and not expect_mtls:
            check(not ctl.get(key), f"{where}: control.{key} although client certificates are not required")
            continue
        path = str(ctl.get(key, ""))
        m = mounts.get(vol)
        if not (check(path, f"{where}: control.{key} missing") and check(m, f"{where}: no {vol} mount")):
            continue
        check(os.path.dirname(path) == m["mountPath"] and m.get("readOnly") is True,
              f"{where}: control.{key} {path} is not in the read-only mount {m['mountPath']}")
        items = volumes[vol]["secret"].get("items") or []
        check(any(i["path"] == os.path.basename(path) for i in items),
              f"{where}: no item of Secret volume {vol} gives {os.path.basename(path)}")
    port = named_port(containers["agent"].get("ports"), "control")
    check(port and str(ctl.get("tcp_listen", "")).endswith(f":{port['containerPort']}"),
          f"{where}: containerPort control does not match control.tcp_listen {ctl.get('tcp_listen')!r}")


def check_with_agent(agent, agent_configs):
    """tokenmem-agent --check-config on every config, the cluster secret in a temporary file."""
    with tempfile.TemporaryDirectory() as tmp:
        secret = os.path.join(tmp, "cluster-secret")
        with open(secret, "w") as f:
            f.write("s3cret-for-the-manifest-test\n")

        def run(cfg):
            path = os.path.join(tmp, "agent.yaml")
            with open(path, "w") as f:
                yaml.safe_dump(cfg, f)
            return subprocess.run([agent, "--config", path, "--check-config"], capture_output=True, text=True)

        clustered = None
        for where, text in agent_configs:
            cfg = yaml.safe_load(text)
            has_cluster = isinstance(cfg.get("cluster"), dict) and bool(cfg["cluster"].get("secret_file"))
            if has_cluster:
                cfg["cluster"]["secret_file"] = secret
            # The control API's Secret files, with stand-ins (their content is not parsed here).
            for key in ("admin_token_file", "tls_cert_file", "tls_key_file", "tls_client_ca_file"):
                if (cfg.get("control") or {}).get(key):
                    cfg["control"][key] = secret
            r = run(cfg)
            if check(r.returncode == 0, f"{where}: tokenmem-agent --check-config refused it:\n{r.stdout}{r.stderr}"):
                if has_cluster and clustered is None:
                    clustered = cfg
                out = yaml.safe_load(r.stdout)
                for section in ("remote", "cluster"):
                    for k, v in (cfg.get(section) or {}).items():
                        check(out.get(section, {}).get(k) == v,
                              f"{where}: --check-config prints {section}.{k}={out.get(section, {}).get(k)!r}, "
                              f"the config has {v!r}")
        # Why the chart drops the cluster when the remote path is off.
        if check(clustered, "no valid agent config with a cluster"):
            cfg = copy.deepcopy(clustered)
            del cfg["remote"]
            r = run(cfg)
            check(r.returncode != 0 and "remote.listen" in r.stdout + r.stderr,
                  f"the agent did not refuse a cluster for lack of remote.listen:\n{r.stdout}{r.stderr}")


def check_remote_and_cluster(renderer, chart, om, src, rendered, agent_configs):
    """The remote path and the cluster in both value sets, the switches, the secret, and the plain manifests."""
    alt_values = os.path.join(os.path.dirname(os.path.abspath(__file__)), "values-alt.yaml")
    with open(alt_values) as f:
        alt = yaml.safe_load(f)
    base_cfg = None
    if "default" in rendered:
        base_cfg = check_wiring(rendered["default"], "chart[default]", True, True)
        value = chart_secret_value(rendered["default"])
        check(value and re.fullmatch(r"[A-Za-z0-9]{32}", value),
              f"chart[default]: generated cluster secret {value!r} is not 32 random alphanumerics")
    if "values-alt" in rendered:
        docs = rendered["values-alt"]
        cfg = check_wiring(docs, "chart[values-alt]", True, True,
                           existing_secret=alt["cluster"]["secret"]["existingSecret"])
        if cfg:
            check(cfg["remote"]["listen"] == f"0.0.0.0:{alt['remote']['port']}", "values-alt: remote.port")
            check(cfg["cluster"]["heartbeat_interval_ms"] == alt["cluster"]["heartbeatIntervalMs"]
                  and cfg["cluster"]["heartbeat_timeout_ms"] == alt["cluster"]["heartbeatTimeoutMs"]
                  and cfg["cluster"]["forward_queue_blocks"] == alt["cluster"]["forwardQueueBlocks"],
                  f"values-alt: heartbeat / forward queue values not taken: {cfg['cluster']}")
            check([p.get("scope") for p in cfg["pools"]] == [p.get("scope", "local") for p in alt["agent"]["pools"]],
                  "values-alt: pool scopes not taken")

    def render_docs(label, extra):
        out = render(renderer, chart, extra)
        if out is None:
            return None
        check("<no value>" not in out, f"{label}: a value is missing (<no value>)")
        try:
            docs = list(yaml.safe_load_all(out))
        except yaml.YAMLError as e:
            fail(f"chart ({label}) renders invalid YAML: {e}")
            return None
        validate_docs(docs, f"chart[{label}]", {}, [], agent_configs)
        return docs

    # Another release and namespace: the DNS name follows them.
    docs = render_docs("kv/inference", ["--name", "kv", "--namespace", "inference",
                                        "--set", "cluster.clusterDomain=corp.internal"])
    if docs:
        cfg = check_wiring(docs, "chart[kv/inference]", True, True, cluster_domain="corp.internal")
        check(cfg and cfg["cluster"]["dns_name"] == "kv-tokenmem-peers.inference.svc.corp.internal:7471",
              f"chart[kv/inference]: dns_name {cfg and cfg['cluster'].get('dns_name')}")
    # The switches.
    for label, sets, want_remote, want_cluster in (
            ("cluster off", ["cluster.enabled=false"], True, False),
            ("remote off", ["remote.enabled=false"], False, False),
            ("remote off, metrics off", ["remote.enabled=false", "metrics.enabled=false"], False, False),
            ("both off", ["remote.enabled=false", "cluster.enabled=false"], False, False)):
        extra = ["--name", "tokenmem", "--namespace", "tokenmem"]
        for s_ in sets:
            extra += ["--set", s_]
        docs = render_docs(label, extra)
        if docs:
            check_wiring(docs, f"chart[{label}]", want_remote, want_cluster)
            svc = find(docs, "Service")[0]
            check(svc["spec"].get("ports"), f"chart[{label}]: headless Service without ports")
        notes = render(renderer, chart, ["--notes"] + extra)
        if notes is not None and "remote.enabled=false" in sets:
            check("cluster.enabled is ignored" in notes or "cluster.enabled=false" in sets,
                  f"chart[{label}]: NOTES.txt does not say the cluster is off")

    # The generated secret: random per render, the live value kept on upgrade.
    first = render_docs("secret 1", ["--name", "tokenmem", "--namespace", "tokenmem"])
    again = render_docs("secret 2", ["--name", "tokenmem", "--namespace", "tokenmem"])
    if first and again:
        check(chart_secret_value(first) != chart_secret_value(again), "the generated cluster secret is not random")
    with tempfile.TemporaryDirectory() as tmp:
        live = os.path.join(tmp, "live.yaml")
        with open(live, "w") as f:
            yaml.safe_dump_all([
                {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tokenmem-cluster", "namespace": "other"},
                 "data": {"cluster-secret": base64.b64encode(b"x" * 32).decode()}},
                {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tokenmem-cluster", "namespace": "tokenmem"},
                 "data": {"cluster-secret": base64.b64encode(b"kept-across-upgrades").decode()}}], f)
        docs = render_docs("upgrade", ["--name", "tokenmem", "--namespace", "tokenmem", "--objects", live])
        if docs:
            check(chart_secret_value(docs) == "kept-across-upgrades",
                  f"upgrade: the live cluster secret is not kept (got {chart_secret_value(docs)!r})")
        docs = render_docs("upgrade, key renamed", ["--name", "tokenmem", "--namespace", "tokenmem", "--objects", live,
                                                    "--set", "cluster.secret.key=token"])
        if docs:
            v = chart_secret_value(docs)
            check(v and v != "kept-across-upgrades" and len(v) == 32, "upgrade with a new key: not a fresh value")
            check_wiring(docs, "chart[upgrade, key renamed]", True, True)

    # Values the chart refuses.
    with tempfile.TemporaryDirectory() as tmp:
        bad = os.path.join(tmp, "bad.yaml")
        for label, values in (
                ("pool scope node", {"agent": {"pools": [{"name": "p", "blockSize": "256KiB",
                                                          "capacity": {"dram": "1GiB"}, "scope": "node"}]}}),
                ("timeout not above interval", {"cluster": {"heartbeatIntervalMs": 3000, "heartbeatTimeoutMs": 3000}})):
            with open(bad, "w") as f:
                yaml.safe_dump(values, f)
            r = subprocess.run([renderer, "--chart", chart, "-f", bad], capture_output=True, text=True)
            check(r.returncode != 0, f"chart rendered with {label}")

    # The plain manifests: same wiring, same remote and cluster sections as the chart's.
    om_docs = []
    for path in sorted(glob.glob(os.path.join(om, "*.yaml"))):
        om_docs += [d for d in load(path) if d]
    om_cfg = check_wiring(om_docs, "operator_manifests", True, True)
    secret = find(om_docs, "Secret")
    if check(len(secret) == 1, "operator_manifests: no cluster Secret"):
        check(secret[0].get("stringData", {}).get("cluster-secret") == "",
              "operator_manifests/cluster-secret.yaml: the placeholder must stay empty (agents refuse it)")
    if om_cfg and base_cfg:
        for section in ("remote", "cluster"):
            check(om_cfg.get(section) == base_cfg.get(section),
                  f"operator_manifests' {section} section {om_cfg.get(section)} differs from the chart's "
                  f"{base_cfg.get(section)}")
    pools = [d for d in load(os.path.join(om, "examples", "pool.yaml")) if d]
    check(any(p["spec"].get("scope") == "cluster" for p in pools), "examples/pool.yaml has no scope: cluster pool")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--renderer", required=True, help="helmrender binary (built here when stale)")
    ap.add_argument("--agent", help="tokenmem-agent binary for --check-config (optional)")
    args = ap.parse_args()
    src = args.source_dir
    om = os.path.join(src, "operator_manifests")
    chart = os.path.join(src, "helm", "tokenmem")
    if not build_renderer(os.path.join(src, "tests", "manifests", "helmrender"), args.renderer):
        return SKIP

    crds, pools, agent_configs = {}, [], []

    # operator_manifests/
    om_kinds = []
    for path in sorted(glob.glob(os.path.join(om, "**", "*.yaml"), recursive=True)):
        om_kinds += validate_docs(load(path), os.path.relpath(path, src), crds, pools, agent_configs)
    for k in ("CustomResourceDefinition", "ServiceAccount", "ClusterRole", "DaemonSet", "Service", "ConfigMap",
              "ServiceMonitor", "PrometheusRule", "Pod", "TokenMemoryPool"):
        check(k in om_kinds, f"operator_manifests has no {k}")
    om_docs = []
    for path in glob.glob(os.path.join(om, "**", "*.yaml"), recursive=True):
        for d in load(path):
            if d and d.get("kind") == "DaemonSet":
                check_daemonset(d, os.path.relpath(path, src))
            if d and (d.get("kind") == "DaemonSet" or "agent.yaml" in d.get("data", {})):
                om_docs.append(d)
    check_admin_plane(om_docs, "operator_manifests")
    with open(os.path.join(om, "monitoring", "grafana-dashboard.json")) as f:
        dashboard = f.read()
    cm = load(os.path.join(om, "monitoring", "grafana-dashboard-configmap.yaml"))[0]
    check(cm["metadata"]["labels"].get("grafana_dashboard") == "1", "dashboard ConfigMap label")
    check(cm["data"]["tokenmem.json"] == dashboard, "grafana-dashboard-configmap.yaml differs from grafana-dashboard.json")

    # The chart's copies.
    for rel_chart, rel_om in (("files/grafana-dashboard.json", "monitoring/grafana-dashboard.json"),
                              ("files/prometheus-rules.yaml", "monitoring/prometheus-rules.yaml"),
                              ("crds/tokenmem.io_tokenmemorypools.yaml", "crds/tokenmem.io_tokenmemorypools.yaml"),
                              ("crds/tokenmem.io_tokenmemorynodes.yaml", "crds/tokenmem.io_tokenmemorynodes.yaml")):
        with open(os.path.join(chart, rel_chart), "rb") as a, open(os.path.join(om, rel_om), "rb") as b:
            check(a.read() == b.read(), f"helm/tokenmem/{rel_chart} differs from operator_manifests/{rel_om}")

    # The chart, two value sets.
    rules = load(os.path.join(om, "monitoring", "prometheus-rules.yaml"))[0]
    rendered = {}
    for label, extra, expect in (
            ("default", [], {"DaemonSet", "ConfigMap", "Service", "ServiceAccount", "ClusterRole",
                             "CustomResourceDefinition"}),
            ("values-alt", ["-f", os.path.join(os.path.dirname(os.path.abspath(__file__)), "values-alt.yaml")],
             {"DaemonSet", "ServiceMonitor", "PrometheusRule", "ConfigMap"})):
        out = render(args.renderer, chart, ["--name", "tokenmem", "--namespace", "tokenmem", "--include-crds"] + extra)
        if out is None:
            continue
        notes = render(args.renderer, chart, ["--notes"] + extra)
        check(notes and "tokenmem" in notes, f"{label}: NOTES.txt did not render")
        check("<no value>" not in out, f"{label}: a value is missing (<no value>)")
        try:
            docs = list(yaml.safe_load_all(out))
        except yaml.YAMLError as e:
            fail(f"chart ({label}) renders invalid YAML: {e}")
            continue
        kinds = validate_docs(docs, f"chart[{label}]", {}, [], agent_configs)
        rendered[label] = docs
        check(expect <= set(kinds), f"chart ({label}) lacks {expect - set(kinds)}")
        names = [(d["kind"], d["metadata"]["name"]) for d in docs if d]
        check(len(names) == len(set(names)), f"chart ({label}) renders duplicate objects")
        for d in docs:
            if not d:
                continue
            if d["kind"] == "DaemonSet":
                check_daemonset(d, f"chart[{label}]")
            if d["kind"] == "PrometheusRule":
                check(d["spec"] == rules["spec"], f"chart ({label}): PrometheusRule spec differs from the manifest's")
            if d["kind"] == "ConfigMap" and "tokenmem.json" in d.get("data", {}):
                check(d["data"]["tokenmem.json"] == dashboard, f"chart ({label}): dashboard differs")
                check(d["metadata"]["labels"].get("grafana_dashboard") == "1", f"chart ({label}): dashboard label")
        check_admin_plane(docs, f"chart[{label}]", expect_tcp=label == "values-alt",
                          expect_mtls=label == "values-alt")
        if label == "values-alt":
            ds = next(d for d in docs if d and d["kind"] == "DaemonSet")
            c = ds["spec"]["template"]["spec"]["containers"]
            check(c[0]["image"] == "registry.example.com/tokenmem:0.1.0-rc1", "values-alt: image")
            check(not any(v["name"] == "nvme" for v in ds["spec"]["template"]["spec"]["volumes"]),
                  "values-alt: NVMe volume although the tier is off")
            check(c[1]["securityContext"].get("privileged") is True, "values-alt: privileged device plugin")
            check("--unit=2GiB" in c[1]["args"], "values-alt: unit")
    check_crds(crds, pools)
    check_remote_and_cluster(args.renderer, chart, om, src, rendered, agent_configs)

    # Agent configs through the agent's own validation.
    if args.agent and not os.access(args.agent, os.X_OK):
        print(f"note: {args.agent} is not built; agent configs not checked with --check-config")
    elif args.agent:
        check_with_agent(args.agent, agent_configs)
    check(agent_configs, "no agent config found")

    if FAILURES:
        print(f"{len(FAILURES)} failure(s):")
        for f in FAILURES:
            print("  -", f)
        return 1
    print(f"ok: operator_manifests, chart (2 value sets + remote/cluster variants), CRD schemas, "
          f"{len(agent_configs)} agent configs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
