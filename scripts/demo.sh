#!/usr/bin/env bash
# Quick start, command 1: install what is missing, build, start
# tokenmem-agent on its embedded default configuration (DRAM tier plus a
# file-backed NVMe tier under /var/lib/tokenmem/nvme, control socket
# /run/tokenmem/agent.sock), then run the chat demo workload against it.
# The agent keeps running afterwards so its status can be inspected.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
# Only what the demo runs: the tests build with ./scripts/test.sh.
TOKENMEM_TARGETS="tokenmem-agent tokenmemctl tokenmem-demo" ./scripts/build.sh
BUILD_DIR=${TOKENMEM_BUILD_DIR:-build}
AGENT="$BUILD_DIR/agent/tokenmem-agent"
CTL="$BUILD_DIR/agent/cli/tokenmemctl"
DEMO="$BUILD_DIR/examples/demo/tokenmem-demo"
SOCKET=/run/tokenmem/agent.sock
DATA_SOCKET=/run/tokenmem/data/agent-data.sock
LOG=/var/log/tokenmem-agent.log
PIDFILE=/run/tokenmem/agent.pid

if "$CTL" --socket "$SOCKET" --timeout 2 status >/dev/null 2>&1; then
  echo "[tokenmem] an agent already answers on $SOCKET; using it"
else
  mkdir -p /run/tokenmem
  echo "[tokenmem] starting $AGENT (embedded default configuration), log in $LOG"
  nohup "$AGENT" >"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 100); do
    "$CTL" --socket "$SOCKET" --timeout 2 status >/dev/null 2>&1 && break
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
      echo "[tokenmem] the agent exited; its log:" >&2
      tail -n 20 "$LOG" >&2
      exit 1
    fi
    sleep 0.1
  done
fi

"$CTL" --socket "$SOCKET" status
echo
"$DEMO" --socket "$SOCKET" --data-socket "$DATA_SOCKET" "$@"
cat <<EOT

The agent is still running (pid $(cat "$PIDFILE" 2>/dev/null || echo "?"), log $LOG):
  $CTL --socket $SOCKET status
  $CTL --socket $SOCKET stats --pool demo
  $CTL --socket $SOCKET pool list
Stop it with: kill \$(cat $PIDFILE)
EOT
