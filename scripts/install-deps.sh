#!/usr/bin/env bash
# Installs the Debian packages tokenmem needs to build, test and run.
# Safe to run again: it only calls apt-get when something is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config ccache
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libibverbs-dev librdmacm-dev libnuma-dev liburing-dev libucx-dev
  prometheus-cpp-dev libcpp-httplib-dev libyaml-cpp-dev
  libgtest-dev libgmock-dev
  libxxhash-dev python3-xxhash
  fio prometheus python3-numpy
  golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v2-dev
  python3-yaml python3-jsonschema python3-kubernetes
  nlohmann-json3-dev libssl-dev openssl
  iperf3 redis-server python3-torch libopenblas0-pthread
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "[tokenmem] dependencies: all ${#PACKAGES[@]} packages present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
echo "[tokenmem] installing: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
