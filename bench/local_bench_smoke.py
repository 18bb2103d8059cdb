"""Smoke test of `tokenmem-bench local`: a tiny run of every phase, and the
JSON checked for shape and sense (not for the targets: a shared test
machine's figures are noise).

usage: local_bench_smoke.py PATH/TO/tokenmem-bench
"""
import json
import subprocess
import sys

SIZES = (4096, 64 << 10, 256 << 10, 1 << 20, 4 << 20)
INDEX_BLOCKS = 20000


def fail(message):
    print("local bench smoke: " + message, file=sys.stderr)
    sys.exit(1)


def main():
    if len(sys.argv) != 2:
        fail(__doc__)
    command = [sys.argv[1], "--json", "local", "--working-set", "8MiB", "--samples", "1000",
               "--index-blocks", str(INDEX_BLOCKS)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if run.returncode != 0:
        fail(f"exit {run.returncode}: {run.stderr[-2000:]}")
    report = json.loads(run.stdout)["local"]
    sizes = [s["block_size"] for s in report["sizes"]]
    if tuple(sizes) != SIZES:
        fail(f"block sizes {sizes}, wanted {SIZES}")
    for s in report["sizes"]:
        for field in ("get_bytes_per_second", "put_bytes_per_second",
                      "put_batched_bytes_per_second", "memcpy_bytes_per_second"):
            if not s[field] > 0:
                fail(f"{s['block_size']} B: {field} is {s[field]}")
        ratio = s["get_bytes_per_second"] / s["memcpy_bytes_per_second"]
        if abs(ratio - s["get_to_memcpy"]) > 1e-6 * ratio:
            fail(f"{s['block_size']} B: get_to_memcpy is not get / memcpy")
    latency = report["get_4k_latency_ns"]
    if not 0 < latency["p50"] <= latency["p99"] <= latency["p999"]:
        fail(f"4 KiB latency percentiles out of order: {latency}")
    if report["lookup_prefix"]["matched"] != report["lookup_prefix"]["keys"]:
        fail(f"lookup_prefix matched {report['lookup_prefix']}")
    index = report["index"]
    if index["blocks"] != INDEX_BLOCKS:
        fail(f"index measured over {index['blocks']} blocks")
    # Every block has a key (16 bytes) in each index at the very least.
    if not (index["private_bytes_per_block"] >= 16 and index["shared_bytes_per_block"] >= 16):
        fail(f"index sizes make no sense: {index}")
    total = index["private_bytes_per_block"] + index["shared_bytes_per_block"]
    if abs(total - index["bytes_per_block"]) > 1e-6 * total or \
            index["target_met"] != (total <= 64):
        fail(f"index total or verdict wrong: {index}")
    print(f"local bench smoke: {len(sizes)} sizes, index {total:.0f} B/block: ok")


if __name__ == "__main__":
    main()
