"""tokenmem's vLLM V1 connector inside a faithful replay of vLLM
(vllm_harness.py): loaded the way vLLM loads it, right beside vLLM's own
prefix cache, under tensor parallelism, with every KV layout the attention
backends allocate, through preemption, chunked prefill and failed loads.

Every test compares the logits of every generated token with an engine
that has no connector, bitwise (the harness computes one token row at a
time, so no schedule changes any product's shape)."""

import os
import time
import unittest

import engine_env as E
import torch
import vllm_harness as H
from refmodel import TEST_MODEL

import tokenmem.connector.worker as worker_module

PROMPT = 100      # 6 full blocks usable (the last token is always computed)


def tokens(seed, n=PROMPT):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, TEST_MODEL.vocab, (n,), generator=g).tolist()


class VllmTestBase(unittest.TestCase):
    FLAVOR = "current"

    def setUp(self):
        H.load_vllm(self.FLAVOR)
        self.agent = E.Agent(block_size="4KiB").start()
        self.agent.create_lease()
        self.weights = H.ModelWeights(TEST_MODEL, mla_latent=32)
        self.engines = []

    def tearDown(self):
        for e in self.engines:
            e.close()
        self.agent.stop()

    def extra(self, **over):
        d = {"pool": self.agent.pool, "socket": self.agent.data, "lease": self.agent.lease,
             "timeout_s": 5.0, "reconnect_interval_s": 0.0}
        d.update(over)
        return d

    def engine(self, connector=True, **kw):
        kw.setdefault("legacy", self.FLAVOR == "legacy")
        extra = kw.pop("extra", {})
        e = H.Engine(self.weights, connector=connector,
                     extra=self.extra(**extra) if connector else None, **kw)
        self.engines.append(e)
        return e

    def serve(self, engine, requests):
        """requests: [(id, prompt, kwargs)]; runs them all; logits by id."""
        for rid, prompt, kw in requests:
            engine.request(rid, prompt, **kw)
        engine.run()
        return engine.logits

    def assertSameLogits(self, got, want):
        self.assertEqual(sorted(got), sorted(want))
        for rid in want:
            self.assertEqual(len(got[rid]), len(want[rid]), rid)
            for i, (a, b) in enumerate(zip(got[rid], want[rid])):
                self.assertTrue(torch.equal(a, b), "%s token %d: max diff %g" % (rid, i, (a - b).abs().max()))

    def reference(self, requests, **kw):
        kw.pop("extra", None)
        return self.serve(self.engine(connector=False, **kw), requests)


class LoadingTest(VllmTestBase):
    def test_factory_builds_both_roles_with_the_current_constructor(self):
        e = self.engine()
        conn = e.scheduler.connector
        self.assertEqual(type(conn).__name__, "TokenmemConnectorV1")
        from vllm.distributed.kv_transfer.kv_connector.v1.base import SupportsHMA

        self.assertIsInstance(conn, SupportsHMA)
        self.assertIs(conn._kv_cache_config, e.kcfg)

    def test_hybrid_models_are_refused_clearly(self):
        with self.assertRaisesRegex(ValueError, "hybrid KV caches are not supported.*SlidingWindowSpec"):
            self.engine(hybrid=True)

    def test_unknown_extra_config_is_refused(self):
        with self.assertRaisesRegex(ValueError, "unknown kv_connector_extra_config keys"):
            self.engine(extra={"pol": "x"})

    def test_unmovable_layout_is_refused_at_registration(self):
        e = self.engine()
        r = e.runners[0]
        bad = {n: t.permute(0, 1, 3, 2, 4).contiguous().permute(0, 1, 3, 2, 4)[:, :, :, :, :]
               for n, t in r.kv.items()}
        weird = {n: torch.zeros(t.shape[2], t.shape[1], 2, t.shape[3], t.shape[4]).permute(1, 2, 0, 3, 4)
                 for n, t in r.kv.items()}
        r.connector.register_kv_caches(bad)   # HND is movable
        with self.assertRaisesRegex(ValueError, "lies outside the page"):
            r.connector.register_kv_caches(weird)

    def test_shutdown_stops_threads_and_closes_sessions(self):
        e = self.engine()
        self.serve(e, [("a", tokens(1), {})])
        w = e.runners[0].connector._worker
        e.close()
        self.engines.remove(e)
        self.assertIsNone(e.runners[0].connector._worker)
        with self.assertRaises(RuntimeError):
            w._saver.submit(lambda: None)


class PrefixCacheTest(VllmTestBase):
    def test_loads_only_beyond_the_engines_own_hit_and_never_touch_shared_pages(self):
        base = tokens(2)
        other = base[:48] + tokens(3, 40)
        self.serve(self.engine(), [("warm", base, {})])          # stores 6 blocks
        e = self.engine()
        self.serve(e, [("other", other, {})])                    # vLLM's own cache: 3 blocks of base
        probe = H.Request("p", other)
        shared = [e.scheduler.kv.cached[h] for h in probe.block_hashes(16)[:3]]
        before = {n: t.clone() for n, t in e.runners[0].kv.items()}
        stats = e.runners[0].connector._worker.stats
        loaded = stats.load_blocks
        got = self.serve(e, [("again", base, {})])
        self.assertEqual(e.scheduler.hits["again"], (48, 48))
        self.assertEqual(stats.load_blocks - loaded, 3 * TEST_MODEL.layers)   # blocks 3..5, each layer
        for n, t in e.runners[0].kv.items():
            for b in shared:
                self.assertTrue(torch.equal(t[:, b], before[n][:, b]), "shared page %d changed" % b)
        want = self.reference([("other", other, {}), ("again", base, {})])
        self.assertSameLogits(got, want)

    def test_default_configuration_prefix_cache_on_with_chunked_prefill(self):
        reqs = [("s%d" % i, tokens(10)[:64] + tokens(20 + i, 40), {"max_tokens": 3}) for i in range(3)]
        self.serve(self.engine(), reqs[:1])
        e = self.engine(budget=24)   # chunks off the block grid, several requests per step
        got = self.serve(e, reqs)
        self.assertGreater(e.scheduler.external_hits, 0)
        self.assertSameLogits(got, self.reference(reqs, budget=24))


if __name__ == "__main__":
    unittest.main()
