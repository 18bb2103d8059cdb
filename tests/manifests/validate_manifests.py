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
- With --agent, every agent config the manifests carry passes
  `tokenmem-agent --check-config`.
Exit 0 on success, 1 with a list of failures otherwise.
"""
import argparse
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
    ("v1", "Service"): "V1Service",
    ("v1", "Pod"): "V1Pod",
    ("apps/v1", "DaemonSet"): "V1DaemonSet",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "V1ClusterRole",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "V1ClusterRoleBinding",
    ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding",
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): "V1CustomResourceDefinition",
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
    for path in glob.glob(os.path.join(om, "**", "*.yaml"), recursive=True):
        for d in load(path):
            if d and d.get("kind") == "DaemonSet":
                check_daemonset(d, os.path.relpath(path, src))
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
        if label == "values-alt":
            ds = next(d for d in docs if d and d["kind"] == "DaemonSet")
            c = ds["spec"]["template"]["spec"]["containers"]
            check(c[0]["image"] == "registry.example.com/tokenmem:0.1.0-rc1", "values-alt: image")
            check(not any(v["name"] == "nvme" for v in ds["spec"]["template"]["spec"]["volumes"]),
                  "values-alt: NVMe volume although the tier is off")
            check(c[1]["securityContext"].get("privileged") is True, "values-alt: privileged device plugin")
            check("--unit=2GiB" in c[1]["args"], "values-alt: unit")
    check_crds(crds, pools)

    # Agent configs through the agent's own validation.
    if args.agent and not os.access(args.agent, os.X_OK):
        print(f"note: {args.agent} is not built; agent configs not checked with --check-config")
    elif args.agent:
        with tempfile.TemporaryDirectory() as tmp:
            for where, text in agent_configs:
                path = os.path.join(tmp, "agent.yaml")
                with open(path, "w") as f:
                    f.write(text)
                r = subprocess.run([args.agent, "--config", path, "--check-config"], capture_output=True, text=True)
                check(r.returncode == 0, f"{where}: tokenmem-agent --check-config refused it:\n{r.stdout}{r.stderr}")
    check(agent_configs, "no agent config found")

    if FAILURES:
        print(f"{len(FAILURES)} failure(s):")
        for f in FAILURES:
            print("  -", f)
        return 1
    print(f"ok: operator_manifests, chart (2 value sets), CRD schemas, {len(agent_configs)} agent configs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
