#!/usr/bin/env bash
# Quick start, command 2: install what is missing, build, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
BUILD_DIR=${TOKENMEM_BUILD_DIR:-build}
# Tests send traffic to loopback only: UCX would otherwise also use the
# machine's other interfaces. An operator's setting wins.
export UCX_NET_DEVICES=${UCX_NET_DEVICES:-lo}
echo "[tokenmem] running the tests"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "${TOKENMEM_TEST_JOBS:-2}" "$@"
