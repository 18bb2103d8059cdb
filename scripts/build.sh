#!/usr/bin/env bash
# Configures and builds tokenmem into ./build (or $TOKENMEM_BUILD_DIR);
# TOKENMEM_TARGETS="a b" builds only those targets.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${TOKENMEM_BUILD_DIR:-build}
# ccache keys on paths relative to the checkout, so another clone of the
# tree (a CI checkout) reuses what this one compiled (debug info then
# names the checkout that compiled it).
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
export CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-1}
JOBS=${TOKENMEM_JOBS:-$(nproc)}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
echo "[tokenmem] building in $BUILD_DIR with $JOBS jobs"
cmake --build "$BUILD_DIR" -j "$JOBS" ${TOKENMEM_TARGETS:+--target $TOKENMEM_TARGETS}
