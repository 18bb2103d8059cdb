"""Smoke test of `tokenmem-bench remote`: a tiny run of every phase, and
the JSON checked for shape and sense (not for the targets: a shared test
machine's figures are noise).

usage: remote_bench_smoke.py PATH/TO/tokenmem-bench
"""
import json
import shutil
import subprocess
import sys

ROUNDS = 2


def fail(message):
    print("remote bench smoke: " + message, file=sys.stderr)
    sys.exit(1)


def check_figures(name, figures):
    for field in ("bytes_per_second", "p50_us", "p99_us", "ops", "seconds"):
        if field not in figures:
            fail(f"{name}: no {field}")
    if figures["ops"] <= 0 or figures["bytes_per_second"] <= 0:
        fail(f"{name}: nothing was moved: {figures}")
    if not 0 < figures["p50_us"] <= figures["p99_us"]:
        fail(f"{name}: p50 {figures['p50_us']} and p99 {figures['p99_us']} out of order")


def check_rounds(name, side):
    by_round = side.get("get_bytes_per_second_by_round")
    if not isinstance(by_round, list) or len(by_round) != ROUNDS:
        fail(f"{name}: expected {ROUNDS} rounds of get figures, got {by_round}")
    # The case keeps each side's best round.
    if abs(max(by_round) - side["get"]["bytes_per_second"]) > 1e-6 * max(by_round):
        fail(f"{name}: the kept get figure is not the best round's")


def main():
    if len(sys.argv) != 2:
        fail(__doc__)
    command = [sys.argv[1], "--json", "remote", "--sizes", "64KiB,1MiB", "--concurrency", "1,2",
               "--seconds", "0.2", "--rounds", str(ROUNDS), "--working-set", "4MiB"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if run.returncode != 0:
        fail(f"exit {run.returncode}: {run.stderr[-2000:]}")
    report = json.loads(run.stdout)["remote"]
    if report["rounds"] != ROUNDS or report["transport"] != "tcp":
        fail(f"unexpected header: rounds {report['rounds']}, transport {report['transport']}")
    have_redis = shutil.which("redis-server") is not None
    have_iperf3 = shutil.which("iperf3") is not None
    if have_iperf3 and not report.get("iperf3_bytes_per_second"):
        fail("iperf3 is installed but no figure came back: " + report.get("iperf3_error", ""))
    cases = report["cases"]
    wanted = {(b, c) for b in (64 << 10, 1 << 20) for c in (1, 2)}
    if {(c["block_size"], c["concurrency"]) for c in cases} != wanted:
        fail(f"cases {[(c['block_size'], c['concurrency']) for c in cases]}, wanted {wanted}")
    for case in cases:
        name = f"{case['block_size']} B c{case['concurrency']}"
        check_figures(name + " get", case["tokenmem"]["get"])
        check_figures(name + " put", case["tokenmem"]["put"])
        check_rounds(name, case["tokenmem"])
        if have_redis:
            if "redis" not in case:
                fail(name + ": redis-server is installed but no Redis figures came back: " +
                     report.get("redis_error", ""))
            check_figures(name + " redis get", case["redis"]["get"])
            check_rounds(name + " redis", case["redis"])
            ratio = case["tokenmem"]["get"]["bytes_per_second"] / case["redis"]["get"][
                "bytes_per_second"]
            if abs(ratio - case["get_vs_redis"]) > 1e-6 * ratio:
                fail(name + ": get_vs_redis is not tokenmem get / Redis GET")
    targets = report["targets"]
    for field in ("get_vs_iperf3_1mib_c1", "get_vs_redis_1mib_c1", "iperf3_target_met",
                  "redis_target_met", "met"):
        if field not in targets:
            fail("targets: no " + field)
    print(f"remote bench smoke: {len(cases)} cases, {ROUNDS} rounds, redis {have_redis}, "
          f"iperf3 {have_iperf3}: ok")


if __name__ == "__main__":
    main()
