"""Blocks are shared only between engines whose KV bytes are the same:
another model seed (weights), KV dtype or tensor-parallel rank finds none
of them, while the same configuration in a fresh engine finds them all."""

import dataclasses
import unittest

import engine_env as E
import torch
from refmodel import TEST_MODEL


class NamespacingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.agent = E.Agent(block_size="4KiB", pool_dram="32MiB").start()
        cls.agent.create_lease()
        g = torch.Generator().manual_seed(3)
        cls.prompt = torch.randint(0, TEST_MODEL.vocab, (160,), generator=g).tolist()
        # The owner of the blocks: seed 0, float32, rank 0 of 1.
        eng = E.make_engine(cls.agent, TEST_MODEL)
        first = eng.prefill("owner", cls.prompt)
        eng.flush()
        eng.close()
        assert first.hit_tokens == 0
        cls.stored = len(cls.prompt) // 16   # blocks per layer

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()

    def hit(self, cfg, **over):
        eng = E.make_engine(self.agent, cfg, **over)
        try:
            r = eng.prefill("probe", self.prompt)
            return r.hit_tokens
        finally:
            eng.flush()
            eng.close()

    def test_same_configuration_hits(self):
        self.assertEqual(self.hit(TEST_MODEL), (len(self.prompt) - 1) // 16 * 16)

    def test_other_seed_misses(self):
        self.assertEqual(self.hit(dataclasses.replace(TEST_MODEL, seed=1)), 0)

    def test_other_dtype_misses(self):
        self.assertEqual(self.hit(dataclasses.replace(TEST_MODEL, dtype=torch.bfloat16)), 0)
        self.assertEqual(self.hit(dataclasses.replace(TEST_MODEL, dtype=torch.float64)), 0)

    def test_other_tensor_parallel_rank_misses(self):
        self.assertEqual(self.hit(TEST_MODEL, tp_rank=1, tp_size=2), 0)
        self.assertEqual(self.hit(TEST_MODEL, tp_rank=0, tp_size=2), 0)

    def test_other_tenant_misses(self):
        self.assertEqual(self.hit(TEST_MODEL, tenant_salt="tenant-b"), 0)


if __name__ == "__main__":
    unittest.main()
