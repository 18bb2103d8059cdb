"""Faults between the store and the engine never give wrong KV: a block
evicted between lookup and load, the agent restarting in the middle of a
request, and a corrupted block on NVMe each make the engine recompute what
it could not load, and its logits stay those of full recompute (bitwise:
chunks on the block grid, see test_exactness.py)."""

import json
import os
import struct
import time
import unittest

import engine_env as E
import torch
from refmodel import TEST_MODEL

PROMPT = 200   # 12 full blocks per layer


def prompt(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, TEST_MODEL.vocab, (PROMPT,), generator=g).tolist()


class FaultTestBase(unittest.TestCase):
    AGENT = {}

    def setUp(self):
        self.agent = E.Agent(block_size="4KiB", **self.AGENT).start()
        self.agent.create_lease()
        self.model = E.Model(TEST_MODEL)
        self.ref = E.plain_engine(TEST_MODEL, model=self.model)
        self.eng = E.make_engine(self.agent, TEST_MODEL, model=self.model)

    def tearDown(self):
        self.eng.close()
        self.agent.stop()

    def check(self, rid, tokens):
        """Prefill through the connector; its logits must equal recompute's."""
        got = self.eng.prefill(rid, tokens, all_logits=True)
        want = self.ref.prefill(rid, tokens, all_logits=True).logits[got.first_computed:]
        self.assertTrue(torch.equal(got.logits, want),
                        "%s: max diff %g" % (rid, (got.logits - want).abs().max()))
        return got

    def store(self, rid, tokens):
        r = self.check(rid, tokens)
        self.eng.flush()
        return r

    def keys(self, tokens):
        return self.eng.connector.scheduler.keys.keys(tokens)   # [blocks, layers, 2]

    def stats(self):
        r = self.agent.ctl("--json", "stats", "--pool", self.agent.pool)
        return json.loads(r.stdout)


class EvictionTest(FaultTestBase):
    AGENT = dict(pool_dram="32MiB")

    def test_block_evicted_between_lookup_and_load(self):
        tokens = prompt(1)
        self.store("warm", tokens)
        keys = self.keys(tokens)
        pool = self.eng.connector.session.pool()
        victim = (5, 1)   # block 5 of layer 1: layer 0 loads fine, layer 1 falls short

        def evict(rid, hit):
            self.assertEqual(hit, 192)
            self.assertTrue(pool.remove(tuple(int(x) for x in keys[victim])))

        self.eng.after_lookup = evict
        r = self.check("evicted", tokens)
        self.eng.after_lookup = None
        self.assertEqual(r.hit_tokens, 192)
        self.assertEqual(r.reruns, 1)
        self.assertEqual(r.loaded_tokens, 5 * 16)
        self.eng.flush()
        # The recompute stored the block again: the next request reuses everything.
        r = self.check("again", tokens)
        self.assertEqual((r.hit_tokens, r.loaded_tokens, r.reruns), (192, 192, 0))

    def test_lookup_misses_removed_block(self):
        tokens = prompt(2)
        self.store("warm", tokens)
        pool = self.eng.connector.session.pool()
        self.assertTrue(pool.remove(tuple(int(x) for x in self.keys(tokens)[3, 0])))
        r = self.check("after-remove", tokens)
        self.assertEqual((r.hit_tokens, r.reruns), (48, 0))


class RestartTest(FaultTestBase):
    # Leases live in the NVMe directory, so the lease survives the restart.
    AGENT = dict(pool_dram="32MiB", pool_nvme="4MiB", dram="64MiB", nvme="16MiB",
                 segment_size="1MiB")

    def test_agent_restart_mid_request(self):
        tokens = prompt(3)
        self.store("warm", tokens)

        def restart(rid, hit):
            self.assertEqual(hit, 192)
            self.agent.restart()

        # The agent dies after the lookup: loads come from memory the old
        # session still maps, or fail and are recomputed; saves fail.
        self.eng.after_lookup = restart
        longer = tokens + prompt(4)[:40]
        self.check("mid-request", longer)
        self.eng.after_lookup = None
        self.eng.flush()
        # A later request connects again and works with the new agent.
        self.check("after-restart", longer)
        self.eng.flush()
        self.assertGreaterEqual(self.eng.connector.session.connects, 2)
        r = self.check("reuse-again", longer)
        self.assertEqual(r.hit_tokens, (len(longer) - 1) // 16 * 16)

    def test_agent_gone_during_saves(self):
        tokens = prompt(5)
        self.check("saving", tokens)   # saves are queued, not waited for
        self.agent.kill()
        self.eng.flush()               # they fail or drop; nothing raises
        # With the agent down, blocks still mapped may be read (they are
        # committed bytes); anything else is recomputed.
        self.check("agent-down", tokens)
        self.agent.restart()
        self.eng.flush()
        self.store("agent-back", tokens)
        r = self.check("reuse", tokens)
        self.assertEqual(r.hit_tokens, 192)


def _live_slots(path):
    """(data offset, key) of live blocks in an NVMe segment file
    (docs/nvme-format.md, format 2: a 4096-byte segment header with
    block_size at 16 and data_offset at 40, then 64-byte slot-table entries
    from offset 4096 with flags at 0 and the key at 8/16, then the data
    areas at data_offset + i * block_size)."""
    out = []
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 4096 or data[0:4] != b"TMSG":
        return out
    (block_size,) = struct.unpack_from("<Q", data, 16)
    (data_offset,) = struct.unpack_from("<Q", data, 40)
    if block_size == 0 or data_offset < 4096 or data_offset > len(data):
        return out
    slots = (len(data) - data_offset) // block_size
    for i in range(slots):
        entry = 4096 + 64 * i
        (flags,) = struct.unpack_from("<I", data, entry)
        if flags == 1:
            hi, lo = struct.unpack_from("<QQ", data, entry + 8)
            out.append((data_offset + i * block_size, (hi, lo)))
    return out


class CorruptNvmeTest(FaultTestBase):
    # A DRAM share of 16 blocks: most blocks are demoted to NVMe.
    AGENT = dict(pool_dram="64KiB", pool_nvme="4MiB", dram="16MiB", nvme="16MiB",
                 segment_size="1MiB")

    def test_corrupted_nvme_block_is_recomputed(self):
        tokens = prompt(6)
        self.store("warm", tokens)
        keys = self.keys(tokens)
        where = {(int(keys[b, l, 0]), int(keys[b, l, 1])): (b, l)
                 for b in range(keys.shape[0]) for l in range(keys.shape[1])}
        deadline = time.monotonic() + 10
        found = []
        while time.monotonic() < deadline:
            found = [(path, off, where[key]) for path in self.agent.segment_files()
                     for off, key in _live_slots(path) if key in where]
            if len(found) >= 4:
                break
            time.sleep(0.02)
        self.assertTrue(found, "no block of the request reached NVMe")
        path, off, (block, layer) = min(found, key=lambda f: f[2])
        fd = os.open(path, os.O_RDWR)
        try:
            byte = os.pread(fd, 1, off + 100)
            os.pwrite(fd, bytes([byte[0] ^ 0x5A]), off + 100)
            os.fsync(fd)
        finally:
            os.close(fd)

        r = self.check("corrupted", tokens)
        # The agent found the bad checksum (promoting after the lookup, or
        # serving the load) and dropped the block: it was recomputed.
        self.assertLessEqual(r.loaded_tokens, block * 16)
        self.assertGreaterEqual(self.stats()["pools"][0]["checksum_failures"], 1)
        self.eng.flush()
        r = self.check("recomputed", tokens)
        self.assertEqual((r.hit_tokens, r.reruns), (192, 0))


if __name__ == "__main__":
    unittest.main()
