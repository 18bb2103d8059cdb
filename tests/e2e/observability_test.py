#!/usr/bin/python3
"""End-to-end observability test: a real Prometheus scrapes a real agent.

Starts tokenmem-agent (temporary socket, NVMe directory, loopback HTTP
port), runs the demo workload against it twice, and has a real Prometheus
server (Debian package `prometheus`) scrape it every second with the alert
rules of operator_manifests/monitoring/prometheus-rules.yaml loaded. Then:

  - /healthz, /readyz and /v1/status answer;
  - `promtool check metrics` passes on /metrics;
  - `promtool check rules` passes on the rules (the PrometheusRule's spec);
  - Prometheus loaded and evaluated every rule without error, and every
    rule expression runs through /api/v1/query;
  - every expression of the Grafana dashboard, with its variables set to
    "all" and to this node and pool, returns data through /api/v1/query,
    and the variables' label_values() queries find this node and pool;
  - the reuse panels show real reuse (hit ratio and bytes read above 0);
  - once the agent is stopped, TokenmemAgentDown's expression fires.

Exits 77 (CTest's skip code here) when prometheus or promtool is missing.
Every process it starts is stopped and the temporary directory removed,
also on failure. Standard library only.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

SKIP = 77
NODE = "e2e-node"
POOL = "demo"
JOB = "tokenmem-agent"


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5.0):
    """(status, body) of a GET; status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except (urllib.error.URLError, ConnectionError, socket.timeout, OSError):
        return 0, ""


def wait_for(what, predicate, timeout, interval=0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class Processes:
    """Child processes that are stopped however the test ends."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.children = []  # (name, Popen, log path)

    def start(self, name, argv):
        log_path = os.path.join(self.workdir, name + ".log")
        log = open(log_path, "wb")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=self.workdir)
        log.close()
        self.children.append((name, proc, log_path))
        return proc

    def stop(self, proc, timeout=10.0):
        if proc.poll() is not None:
            return proc.returncode
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def stop_all(self):
        for _, proc, _ in reversed(self.children):
            self.stop(proc)

    def log_tails(self, lines=25):
        out = []
        for name, _, path in self.children:
            try:
                with open(path, "rb") as f:
                    text = f.read().decode("utf-8", "replace").splitlines()
            except OSError:
                continue
            out.append(f"--- {name} log (last {lines} lines) ---")
            out.extend(text[-lines:])
        return "\n".join(out)


class Prometheus:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"

    def api(self, path, **params):
        url = self.base + path + "?" + urllib.parse.urlencode(params, doseq=True)
        status, body = http_get(url, timeout=10)
        check(status != 0, f"Prometheus does not answer {path}")
        try:
            reply = json.loads(body)
        except ValueError:
            raise Failure(f"{path}: not JSON (HTTP {status}): {body[:200]}")
        return reply

    def query(self, expr):
        reply = self.api("/api/v1/query", query=expr)
        check(reply.get("status") == "success",
              f"query failed: {expr}\n  {reply.get('errorType')}: {reply.get('error')}")
        return reply["data"]["result"]

    def series(self, selector):
        reply = self.api("/api/v1/series", **{"match[]": selector})
        check(reply.get("status") == "success", f"series {selector}: {reply.get('error')}")
        return reply["data"]


def extract_rule_groups(path):
    """The PrometheusRule's spec, dedented: a plain rules file."""
    with open(path) as f:
        lines = f.read().split("\n")
    check("spec:" in lines, f"{path}: no top-level 'spec:' line")
    body = lines[lines.index("spec:") + 1:]
    for line in body:
        check(line == "" or line.startswith("  "),
              f"{path}: 'spec:' must be the last top-level key (found {line!r})")
    return "\n".join(line[2:] for line in body) + "\n"


def dashboard_queries(path):
    """(panel title, expr) of every target, and the variables' queries."""
    with open(path) as f:
        dashboard = json.load(f)
    exprs = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    exprs.append((p.get("title", "?"), t["expr"]))
            walk(p.get("panels", []))

    walk(dashboard.get("panels", []))
    variables = {}
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        variables[v["name"]] = q.get("query") if isinstance(q, dict) else q
    return exprs, variables


BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}


def substitute(expr, values):
    def repl(m):
        name = m.group(1) or m.group(2)
        if name in BUILTINS:
            return BUILTINS[name]
        if name in values:
            return values[name]
        raise Failure(f"unknown variable ${name} in {expr}")

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", repl, expr)


def label_values(prom, query, label_expected):
    m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", query)
    check(m is not None, f"variable query is not label_values(selector, label): {query}")
    selector, label = m.group(1), m.group(2)
    found = {s.get(label) for s in prom.series(selector)} - {None}
    check(label_expected in found,
          f"{query}: expected {label_expected!r} among the values, got {sorted(found)}")


def sample_value(result):
    return float(result[0]["value"][1])


def run(args, procs, tmp):
    prometheus = shutil.which("prometheus")
    promtool = shutil.which("promtool")
    for binary in (args.agent, args.demo):
        check(os.access(binary, os.X_OK), f"{binary} is not built")

    source = args.source_dir
    rules_yaml = os.path.join(source, "operator_manifests", "monitoring", "prometheus-rules.yaml")
    dashboard_json = os.path.join(source, "operator_manifests", "monitoring",
                                  "grafana-dashboard.json")

    # promtool check rules on the PrometheusRule's groups.
    rules_path = os.path.join(tmp, "rules.yaml")
    with open(rules_path, "w") as f:
        f.write(extract_rule_groups(rules_yaml))
    r = subprocess.run([promtool, "check", "rules", rules_path], capture_output=True, text=True)
    check(r.returncode == 0, f"promtool check rules failed:\n{r.stdout}{r.stderr}")

    # The agent.
    agent_port = free_port()
    agent_url = f"http://127.0.0.1:{agent_port}"
    sock = os.path.join(tmp, "agent.sock")
    config = os.path.join(tmp, "agent.yaml")
    # The remote path and a cluster whose only peer address is the agent
    # itself (it recognises itself and pings nobody), so the remote and
    # cluster families exist and their panels have data.
    remote_port = free_port()
    secret = os.path.join(tmp, "cluster-secret")
    with open(secret, "w") as f:
        f.write("e2e-cluster-secret\n")
    with open(config, "w") as f:
        f.write(f"""node_name: {NODE}
control: {{socket: "{sock}", data_socket: ""}}
http: {{listen: "127.0.0.1:{agent_port}"}}
remote: {{listen: "127.0.0.1:{remote_port}"}}
cluster: {{peers: ["127.0.0.1:{remote_port}"], secret_file: "{secret}"}}
tiers:
  dram: {{capacity: 64MiB}}
  nvme: {{directory: "{tmp}/nvme", capacity: 512MiB, segment_size: 64MiB, create_directory: true}}
pools: []
""")
    agent = procs.start("agent", [args.agent, "--config", config])
    wait_for("the agent's /readyz",
             lambda: agent.poll() is None and http_get(agent_url + "/readyz")[0] == 200
             or check(agent.poll() is None, "the agent exited"), 15)
    status, body = http_get(agent_url + "/healthz")
    check(status == 200 and body == "ok\n", f"/healthz: {status} {body!r}")

    # Prometheus, scraping every second, with the rules.
    prom_port = free_port()
    prom_config = os.path.join(tmp, "prometheus.yml")
    with open(prom_config, "w") as f:
        f.write(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - {rules_path}
scrape_configs:
  - job_name: {JOB}
    static_configs:
      - targets: ["127.0.0.1:{agent_port}"]
        labels:
          node: {NODE}
""")
    prom_proc = procs.start("prometheus", [
        prometheus, f"--config.file={prom_config}",
        f"--storage.tsdb.path={os.path.join(tmp, 'prometheus-data')}",
        f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"])
    prom = Prometheus(prom_port)
    wait_for("Prometheus to be ready",
             lambda: http_get(prom.base + "/-/ready")[0] == 200
             or check(prom_proc.poll() is None, "prometheus exited"), 30)
    wait_for("the first scrape", lambda: prom.query(f'up{{job="{JOB}"}} == 1'), 20)

    # The workload, twice: the second run reuses what the first stored.
    for i in range(2):
        r = subprocess.run([args.demo, "--socket", sock, "--json"], capture_output=True,
                           text=True, timeout=120)
        check(r.returncode == 0, f"demo run {i + 1} failed ({r.returncode}):\n{r.stderr[-2000:]}")
        time.sleep(2)

    # Wait until Prometheus holds what the agent now reports, then a few
    # more scrapes so that rates have samples on both sides.
    status, metrics = http_get(agent_url + "/metrics")
    check(status == 200, f"/metrics: HTTP {status}")
    m = re.search(r'^tokenmem_puts_total\{pool="demo"\} (\S+)$', metrics, re.M)
    check(m is not None, "/metrics has no tokenmem_puts_total for pool demo")
    puts = float(m.group(1))
    check(puts > 0, "the demo stored nothing")
    wait_for("Prometheus to scrape the final counters",
             lambda: [s for s in prom.query(f'tokenmem_puts_total{{pool="{POOL}"}}')
                      if float(s["value"][1]) >= puts], 20)
    time.sleep(3)

    # promtool check metrics on a live scrape.
    r = subprocess.run([promtool, "check", "metrics"], input=metrics, capture_output=True,
                       text=True)
    check(r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(),
          f"promtool check metrics ({r.returncode}):\n{r.stdout}{r.stderr}")

    # /v1/status.
    status, body = http_get(agent_url + "/v1/status")
    check(status == 200, f"/v1/status: HTTP {status}")
    doc = json.loads(body)
    check(doc["node_name"] == NODE and doc["ready"] is True, f"/v1/status: {body[:300]}")
    check(any(p["name"] == POOL for p in doc["pools"]), "/v1/status lists no demo pool")
    check(doc["peers"] == [], "/v1/status: peers should be empty")

    # Rules: loaded, evaluated without error, and each expression runs.
    def rules_evaluated():
        groups = prom.api("/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        done = [r for r in rules if not r.get("lastEvaluation", "").startswith("0001-")]
        return rules if rules and len(done) == len(rules) else None

    rules = wait_for("every rule to be evaluated", rules_evaluated, 20)
    check(len(rules) >= 10, f"only {len(rules)} rules loaded")
    for rule in rules:
        check(rule["health"] == "ok", f"rule {rule['name']}: {rule.get('lastError')}")
        prom.query(rule["query"])
    firing = [a for a in prom.api("/api/v1/alerts")["data"]["alerts"] if a["state"] == "firing"]
    check(not firing, f"alerts firing on a healthy agent: {firing}")

    # Dashboard: every expression returns data, for "all" and for one node
    # and pool; the variables find them.
    exprs, variables = dashboard_queries(dashboard_json)
    check(len(exprs) >= 38, f"only {len(exprs)} dashboard expressions")
    check(set(variables) == {"node", "pool"}, f"dashboard variables: {sorted(variables)}")
    label_values(prom, substitute(variables["node"], {}), NODE)
    label_values(prom, substitute(variables["pool"], {"node": ".*"}), POOL)
    label_values(prom, substitute(variables["pool"], {"node": NODE}), POOL)
    for values in ({"node": ".*", "pool": ".*"}, {"node": NODE, "pool": POOL}):
        for title, expr in exprs:
            q = substitute(expr, values)
            check(prom.query(q), f"panel '{title}' returns no data for {values}:\n  {q}")
    all_values = {"node": ".*", "pool": ".*"}
    for title, minimum in (("Hit ratio", 0.5), ("Bytes reused", 1.0)):
        expr = next(e for t, e in exprs if t == title)
        value = sample_value(prom.query(substitute(expr, all_values)))
        check(value >= minimum, f"panel '{title}' shows {value}, expected >= {minimum}")

    # Stop the agent: the agent-down alert's expression must see it.
    check(procs.stop(agent) == 0, "the agent did not exit cleanly on SIGTERM")
    down_expr = next(r["query"] for r in rules if r["name"] == "TokenmemAgentDown")
    down = wait_for("TokenmemAgentDown's expression to fire", lambda: prom.query(down_expr), 20)
    check(down[0]["metric"].get("node") == NODE, f"agent-down result lacks node: {down}")

    print(f"ok: {len(rules)} rules, {len(exprs)} dashboard expressions, "
          f"{len(metrics.splitlines())} metric lines")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agent", required=True)
    parser.add_argument("--demo", required=True)
    parser.add_argument("--source-dir", required=True)
    args = parser.parse_args()
    args.agent = os.path.abspath(args.agent)
    args.demo = os.path.abspath(args.demo)
    args.source_dir = os.path.abspath(args.source_dir)

    missing = [b for b in ("prometheus", "promtool") if shutil.which(b) is None]
    if missing:
        print(f"SKIP: {' and '.join(missing)} not installed (Debian package 'prometheus')")
        return SKIP

    tmp = tempfile.mkdtemp(prefix="tokenmem-e2e-")
    procs = Processes(tmp)
    try:
        run(args, procs, tmp)
        return 0
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        print(procs.log_tails(), file=sys.stderr)
        return 1
    except Exception:
        print(procs.log_tails(), file=sys.stderr)
        raise
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
