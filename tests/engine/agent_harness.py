"""A real tokenmem-agent in a temporary directory, for the engine tests and
the benchmark: config file, control and data sockets, NVMe directory and
log under one directory that stop() removes.

Binaries come from $TOKENMEM_AGENT_BINARY and $TOKENMEM_CTL_BINARY (CTest
sets them), else from <repo>/build.

remote=True also starts the agent's remote (UCX) listener on a free
loopback port: the first start asks for port 0 and reads the port the
agent chose from its log into .address ("127.0.0.1:PORT"); restarts keep
that port, so clients configured with .address find the new agent.
"""

import glob
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[2]


def _binary(var: str, default: str) -> str:
    path = os.environ.get(var) or str(REPO / "build" / default)
    if not os.access(path, os.X_OK):
        raise RuntimeError("%s: %s is not an executable (set %s)" % (var, path, var))
    return path


_REMOTE_LISTENING = re.compile(rb"remote data path listening on (\S+)")


class Agent:
    """pool: name, block_size, dram, nvme as the agent's config spells them;
    remote: also listen on the remote path (.address once started)."""

    def __init__(self, pool="kv", block_size="64KiB", pool_dram="64MiB", pool_nvme="0",
                 dram="128MiB", nvme="0", segment_size="16MiB", low_watermark=0.10,
                 high_watermark=0.20, remote=False):
        self.agent_bin = _binary("TOKENMEM_AGENT_BINARY", "agent/tokenmem-agent")
        self.ctl_bin = _binary("TOKENMEM_CTL_BINARY", "agent/cli/tokenmemctl")
        self.dir = tempfile.mkdtemp(prefix="tm-engine-")
        self.pool = pool
        self.control = os.path.join(self.dir, "agent.sock")
        self.data = os.path.join(self.dir, "agent-data.sock")
        self.nvme_dir = os.path.join(self.dir, "nvme")
        self.log_path = os.path.join(self.dir, "agent.log")
        self.config = os.path.join(self.dir, "agent.yaml")
        self.remote = remote
        self.address = None   # the remote listener's host:port, once started
        self._yaml = (
            "log_level: info\n"
            'control: {socket: "%s", data_socket: "%s"}\n'
            'http: {listen: ""}\n'
            "tiers:\n"
            "  dram: {capacity: %s}\n"
            "  cxl: {capacity: 0}\n"
            '  nvme: {directory: "%s", capacity: %s, segment_size: %s, create_directory: true}\n'
            "movement: {low_watermark: %s, high_watermark: %s, interval_ms: 5}\n"
            "pools:\n"
            '  - {name: "%s", block_size: %s, capacity: {dram: %s, cxl: 0, nvme: %s}, eviction: lru}\n'
            % (self.control, self.data, dram, self.nvme_dir, nvme, segment_size, low_watermark,
               high_watermark, pool, block_size, pool_dram, pool_nvme))
        self._write_config("127.0.0.1:0")
        self.proc = None
        self.lease = None

    def _write_config(self, listen):
        with open(self.config, "w") as f:
            f.write(self._yaml)
            if self.remote:
                f.write('remote: {listen: "%s"}\n' % listen)

    def _remote_address(self, log_from):
        """The address the remote listener logged after offset log_from."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(log_from)
                m = _REMOTE_LISTENING.search(f.read())
        except OSError:
            return None
        return m.group(1).decode() if m else None

    def start(self, timeout=15.0):
        log_from = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        log = open(self.log_path, "ab")
        # Loopback only: UCX would otherwise also use the machine's other interfaces.
        env = dict(os.environ)
        env.setdefault("UCX_NET_DEVICES", "lo")
        os.environ.setdefault("UCX_NET_DEVICES", "lo")   # this process's remote clients too
        self.proc = subprocess.Popen([self.agent_bin, "--config", self.config],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("the agent exited (%s):\n%s" % (self.proc.returncode, self.log_tail()))
            address = self._remote_address(log_from) if self.remote else None
            if os.path.exists(self.data) and (address or not self.remote):
                r = self.ctl("status", check=False)
                if r.returncode == 0:
                    if self.remote and self.address is None:
                        self.address = address
                        self._write_config(address)   # a restart listens there again
                    return self
            time.sleep(0.02)
        self.kill()
        raise RuntimeError("the agent did not answer in %.0f s:\n%s" % (timeout, self.log_tail()))

    def ctl(self, *args, check=True):
        r = subprocess.run([self.ctl_bin, "--socket", self.control, "--timeout", "5", *args],
                           capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError("tokenmemctl %s: %s" % (" ".join(args), r.stderr.strip()))
        return r

    def create_lease(self, quota="1GiB"):
        r = self.ctl("--json", "lease", "create", "--quota", quota, "--owner", "engine-test")
        self.lease = json.loads(r.stdout)["credentials"]
        return self.lease

    def pool_info(self):
        return json.loads(self.ctl("--json", "pool", "get", self.pool).stdout)

    def kill(self, sig=signal.SIGKILL):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self):
        self.kill()
        # The data socket of the dead agent is still on disk; start() waits for a live one.
        for path in (self.control, self.data):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        return self.start()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def segment_files(self):
        return sorted(glob.glob(os.path.join(self.nvme_dir, "**", "seg-*.tmd"), recursive=True))

    def log_tail(self, n=4000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
