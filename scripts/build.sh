#!/usr/bin/env bash
# Configures and builds tokenmem into ./build (or $TOKENMEM_BUILD_DIR);
# TOKENMEM_TARGETS="a b" builds only those targets.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${TOKENMEM_BUILD_DIR:-build}
JOBS=${TOKENMEM_JOBS:-$(nproc)}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
echo "[tokenmem] building in $BUILD_DIR with $JOBS jobs"
cmake --build "$BUILD_DIR" -j "$JOBS" ${TOKENMEM_TARGETS:+--target $TOKENMEM_TARGETS}
