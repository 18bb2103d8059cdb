"""The connector core without a model: keys, layouts with several pieces
per page and several pages per block, the staged (device) path run on CPU
tensors, and the bookkeeping of saves, against a real agent."""

import unittest

import engine_env as E
import numpy as np
import torch
from tokenmem import prefix_keys
from tokenmem.connector import ConnectorConfig, TokenmemConnector
from tokenmem.connector.block_keys import KeySchedule

PAGE = 8          # engine page: 8 tokens; stored block: 16 tokens = 2 pages
HEADS, DIM, LAYERS, PAGES = 2, 32, 3, 32


def vllm_like_cache(fill: bool, seed=0):
    """Per layer one [2, pages, page, heads, dim] tensor: K and V are two
    regions, each page of each contiguous."""
    g = torch.Generator().manual_seed(seed)
    make = (lambda: torch.randn(2, PAGES, PAGE, HEADS, DIM, generator=g)) if fill else \
        (lambda: torch.zeros(2, PAGES, PAGE, HEADS, DIM))
    layers = [make() for _ in range(LAYERS)]
    return layers, [[t[0], t[1]] for t in layers]


class ConnectorCoreTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.agent = E.Agent(block_size="16KiB", pool_dram="16MiB").start()
        cls.agent.create_lease()

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()

    def config(self, **over):
        return ConnectorConfig(model="unit", kv_dtype="float32", block_tokens=16, pool=self.agent.pool,
                               socket=self.agent.data, lease=self.agent.lease,
                               reconnect_interval_s=0.0, **over)

    def test_keys_are_the_sdk_chains(self):
        cfg = self.config()
        tokens = list(range(1000, 1075))
        keys = KeySchedule(cfg, LAYERS).keys(tokens)
        self.assertEqual(keys.shape, (4, LAYERS, 2))
        for layer in range(LAYERS):
            want = prefix_keys(cfg.layer_namespace(layer), tokens)
            self.assertEqual([(int(h), int(l)) for h, l in keys[:, layer]], [tuple(k) for k in want])
        self.assertFalse((keys[:, 0] == keys[:, 1]).all())

    def round_trip(self, staged: bool, revision: str):
        cfg = self.config(revision=revision)
        tokens = list(range(50))   # 3 full blocks of 16
        src_raw, src = vllm_like_cache(True)
        dst_raw, dst = vllm_like_cache(False)
        src_pages = list(range(0, 14, 2)) + [1]        # scattered pages
        dst_pages = list(range(31, 23, -1))
        with TokenmemConnector(cfg, src, page_tokens=PAGE) as a, \
                TokenmemConnector(cfg, dst, page_tokens=PAGE) as b:
            a.layout.staged = b.layout.staged = staged
            self.assertEqual(a.layout.block_bytes, 16 * HEADS * DIM * 4 * 2)
            self.assertEqual(a.scheduler.lookup("r", tokens), 0)
            a.worker.bind(a.scheduler.build_plan([("r", src_pages, 0, len(tokens))]))
            for layer in range(LAYERS):
                a.worker.save_layer(layer)
            in_flight = a.worker.finish_request("r")   # pages held while saves run
            a.worker.wait_for_save()
            self.assertEqual(a.worker.get_finished(), {"r"} if in_flight else set())
            self.assertEqual(a.worker.stats.save_blocks, 3 * LAYERS)

            hit = b.scheduler.lookup("r2", tokens)
            self.assertEqual(hit, 48)
            b.scheduler.allocated("r2", hit)
            b.worker.bind(b.scheduler.build_plan([("r2", dst_pages, hit, len(tokens) - hit)]))
            b.worker.start_load()
            for layer in range(LAYERS):
                b.worker.wait_for_layer_load(layer)
            self.assertEqual(b.worker.take_load_failures(), {})
            self.assertEqual(b.worker.stats.load_blocks, 3 * LAYERS)
            for layer in range(LAYERS):
                for i in range(6):   # 3 blocks = 6 pages
                    self.assertTrue(torch.equal(dst_raw[layer][:, dst_pages[i]], src_raw[layer][:, src_pages[i]]))
                self.assertEqual(float(dst_raw[layer][:, dst_pages[6]].abs().sum()), 0.0)

    def test_in_place_round_trip(self):
        self.round_trip(False, "in-place")

    def test_staged_round_trip(self):
        self.round_trip(True, "staged")

    def test_rejects_non_contiguous_pages(self):
        t = torch.zeros(4, 16, 2, 8).transpose(1, 2)
        with self.assertRaises(ValueError):
            TokenmemConnector(self.config(), [[t]], page_tokens=16)

    def test_no_agent_means_no_hits(self):
        cfg = ConnectorConfig(model="unit", socket=self.agent.dir + "/nothing.sock",
                              lease="a:b", pool="kv", reconnect_interval_s=60)
        _, layers = vllm_like_cache(False)
        with TokenmemConnector(cfg, layers, page_tokens=PAGE) as c:
            self.assertEqual(c.scheduler.lookup("r", list(range(64))), 0)
            c.worker.bind(c.scheduler.build_plan([("r", list(range(8)), 0, 64)]))
            c.worker.save_layer(0)
            c.worker.wait_for_save()
            self.assertEqual(c.worker.stats.save_dropped, 4)


class AdapterImportTest(unittest.TestCase):
    """The engine adapters import without their engines; using one without
    it installed raises ImportError."""

    def test_vllm_adapter_is_guarded(self):
        import tokenmem.connector.vllm_adapter as v
        try:
            import vllm  # noqa: F401
        except ImportError:
            with self.assertRaises(ImportError):
                v.TokenmemConnectorV1
        else:  # pragma: no cover - vLLM is not installable here
            self.assertTrue(callable(v.TokenmemConnectorV1))

    def test_trtllm_adapter_is_guarded(self):
        import tokenmem.connector.trtllm_adapter as t
        try:
            import tensorrt_llm  # noqa: F401
        except ImportError:
            with self.assertRaises(ImportError):
                t.connector_classes(ConnectorConfig(model="m"), 2, 16)


if __name__ == "__main__":
    unittest.main()
