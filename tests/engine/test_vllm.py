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

class ParallelLayoutTest(VllmTestBase):
    """Two TP ranks, each saving and loading its own shard, across the
    layouts the attention backends allocate; blocks saved by one backend
    are loaded by another (the stored bytes have one canonical order)."""

    CASES = [
        # (saver backend, loader backend, kernel block, tp, mla)
        ("flash_attn", "flashinfer_hnd", None, 2, False),
        ("flashinfer_hnd", "flashinfer_nhd", 8, 2, False),
        ("flashinfer_nhd", "flash_attn", 8, 1, False),
        ("mla", "mla", None, 2, True),
        ("mla", "mla", 8, 1, True),
    ]

    def test_bitwise_across_ranks_and_layouts(self):
        for saver, loader, kernel, tp, mla in self.CASES:
            with self.subTest(saver=saver, loader=loader, kernel=kernel, tp=tp):
                name = "m-%s-%s-%s-%d" % (saver, loader, kernel, tp)
                reqs = [("a", tokens(30), {}), ("b", tokens(30)[:80] + tokens(31, 30), {})]
                kw = dict(tp=tp, mla=mla, model_name=name)
                self.serve(self.engine(backend=saver, **kw), reqs[:1])
                e = self.engine(backend=loader, kernel_block=kernel, **kw)
                got = self.serve(e, reqs)
                self.assertEqual(e.scheduler.hits["a"], (0, 96))     # every block loaded
                self.assertEqual(sum(e.scheduler.hits["b"]), 80)    # then vLLM's own cache serves b
                self.assertSameLogits(got, self.reference(reqs, backend=loader, kernel_block=kernel, **kw))

    def test_each_rank_keeps_its_own_shard(self):
        reqs = [("a", tokens(40), {})]
        e = self.engine(tp=2, model_name="shards")
        self.serve(e, reqs)
        keys = e.scheduler.connector._sched.keys.keys(tokens(40))   # [blocks, ranks * layers, 2]
        self.assertEqual(keys.shape[1], 2 * TEST_MODEL.layers)
        self.assertEqual(len({(int(k[0]), int(k[1])) for k in keys.reshape(-1, 2)}), keys.shape[0] * keys.shape[1])
        # Rank 1's block 2 gone: the lookup stops there for every rank.
        from tokenmem.client import Client

        c = Client.connect(self.agent.data, self.agent.lease)
        pool = c.attach(self.agent.pool)
        self.assertTrue(pool.remove((int(keys[2, TEST_MODEL.layers, 0]), int(keys[2, TEST_MODEL.layers, 1]))))
        pool.close()
        c.close()
        e2 = self.engine(tp=2, model_name="shards")
        got = self.serve(e2, [("b", tokens(40), {})])
        self.assertEqual(e2.scheduler.hits["b"], (0, 32))
        self.assertSameLogits(got, self.reference([("b", tokens(40), {})], tp=2))


class RequestKeyTest(VllmTestBase):
    def hits(self, first, second):
        self.serve(self.engine(), [("first", tokens(50), first)])
        e = self.engine()
        got = self.serve(e, [("second", tokens(50), second)])
        self.assertSameLogits(got, self.reference([("second", tokens(50), second)]))
        return e.scheduler.hits["second"][1]

    def test_cache_salt_separates_tenants(self):
        self.assertEqual(self.hits({"cache_salt": "tenant-a"}, {"cache_salt": "tenant-b"}), 0)

    def test_same_salt_shares(self):
        self.assertEqual(self.hits({"cache_salt": "tenant-a"}, {"cache_salt": "tenant-a"}), 96)

    def test_lora_adapters_do_not_share(self):
        a, b = H.LoRARequest("sql", 1), H.LoRARequest("chat", 2)
        self.assertEqual(self.hits({"lora": a}, {"lora": b}), 0)

    def test_same_lora_adapter_shares(self):
        a = H.LoRARequest("sql", 1)
        self.assertEqual(self.hits({"lora": a}, {"lora": a}), 96)

    def test_another_image_shares_only_the_blocks_before_it(self):
        self.assertEqual(self.hits({"images": [(40, 20, "img-1")]}, {"images": [(40, 20, "img-2")]}), 32)

    def test_same_image_shares_everything(self):
        self.assertEqual(self.hits({"images": [(40, 20, "img-1")]}, {"images": [(40, 20, "img-1")]}), 96)


class PreemptionTest(VllmTestBase):
    """Few blocks: vLLM preempts running requests and resumes them later.
    Saves are slowed down so that a save still reading a preempted
    request's pages when they are handed out again would store garbage."""

    def setUp(self):
        super().setUp()
        real = worker_module.put_many_raw

        def slow_put(*a):
            time.sleep(0.02)
            return real(*a)

        worker_module.put_many_raw = slow_put
        self.addCleanup(setattr, worker_module, "put_many_raw", real)

    def test_blocks_taken_from_a_preempted_request_while_its_saves_run(self):
        # r0 decodes into a new block while r1's prefill holds the rest:
        # r1 is preempted and its last saved block goes to r0 in the same
        # step, while r1's saves of the step before are still queued.
        reqs = [("r0", tokens(70, 80), {"max_tokens": 20}), ("r1", tokens(71, 110), {"max_tokens": 4})]
        e = self.engine(num_blocks=8, budget=64)
        got = self.serve(e, reqs)
        self.assertEqual(e.scheduler.preemptions, 1)
        self.assertSameLogits(got, self.reference(reqs, num_blocks=8, budget=64))
        e2 = self.engine()
        again = [(rid + "'", p, kw) for rid, p, kw in reqs]
        got2 = self.serve(e2, again)
        self.assertEqual(e2.scheduler.hits["r1'"][1], 96)
        self.assertSameLogits(got2, self.reference(again))

    def test_preempted_and_resumed_requests_stay_exact(self):
        reqs = [("r%d" % i, tokens(60)[:32] + tokens(61 + i, 50), {"max_tokens": 6}) for i in range(4)]
        e = self.engine(num_blocks=9, budget=32)
        got = self.serve(e, reqs)
        self.assertGreater(e.scheduler.preemptions, 0)
        self.assertSameLogits(got, self.reference(reqs, num_blocks=9, budget=32))
        # What the preempted requests saved is right: a fresh engine loads it all.
        e2 = self.engine(num_blocks=64)
        again = [(rid + "'", p, kw) for rid, p, kw in reqs]
        got2 = self.serve(e2, again)
        self.assertGreater(e2.scheduler.external_hits, 0)
        self.assertSameLogits(got2, self.reference(again))


class LegacyPreemptionTest(PreemptionTest):
    FLAVOR = "legacy"


class LegacyLoadingTest(VllmTestBase):
    FLAVOR = "legacy"

    def test_two_argument_constructor_and_no_hma(self):
        e = self.engine()
        self.assertEqual(type(e.scheduler.connector).__name__, "TokenmemConnectorV1")
        import vllm.distributed.kv_transfer.kv_connector.v1.base as base

        self.assertFalse(hasattr(base, "SupportsHMA"))
        reqs = [("a", tokens(70), {"images": [(20, 10, "x")]})]
        self.serve(e, reqs)
        e2 = self.engine()
        got = self.serve(e2, reqs)
        self.assertEqual(e2.scheduler.hits["a"][1], 96)
        self.assertSameLogits(got, self.reference(reqs))


class OldestInterfaceTest(VllmTestBase):
    """An engine whose interface has no get_block_ids_with_load_errors
    cannot recompute a failed load: the step fails, it never attends to
    pages the load did not fill."""

    FLAVOR = "legacy"

    def test_failed_load_fails_the_step(self):
        import vllm.distributed.kv_transfer.kv_connector.v1.base as base

        saved = base._Base.get_block_ids_with_load_errors
        del base._Base.get_block_ids_with_load_errors
        self.addCleanup(setattr, base._Base, "get_block_ids_with_load_errors", saved)
        self.serve(self.engine(), [("a", tokens(90), {})])
        e = self.engine()
        keys = e.scheduler.connector._sched.keys.keys(tokens(90))
        from tokenmem.client import Client

        c = Client.connect(self.agent.data, self.agent.lease)
        pool = c.attach(self.agent.pool)
        self.addCleanup(c.close)
        self.addCleanup(pool.close)
        e.before_forward = lambda out: pool.remove((int(keys[2, 0, 0]), int(keys[2, 0, 1])))
        e.request("b", tokens(90))
        with self.assertRaisesRegex(RuntimeError, "could not be loaded and this vLLM cannot recompute"):
            e.step()


class ChunkedPrefillTest(VllmTestBase):
    def test_only_computed_blocks_are_saved(self):
        e = self.engine(budget=12)
        saved = []
        w = e.runners[0].connector._worker
        real = w.save_layer

        def spy(layer):
            for r in w._plan.saves:
                req = e.scheduler.requests[r.request_id]
                saved.append((r.end * 16, req.num_computed_tokens))
            return real(layer)

        w.save_layer = spy
        self.serve(e, [("a", tokens(80), {})])
        self.assertTrue(saved)
        for end, computed in saved:
            self.assertLessEqual(end, computed)   # computed counts this step's tokens


class LoadFailureTest(VllmTestBase):
    def test_block_removed_between_lookup_and_load_is_recomputed(self):
        reqs = [("a", tokens(90), {})]
        self.serve(self.engine(), reqs)
        e = self.engine()
        keys = e.scheduler.connector._sched.keys.keys(tokens(90))
        from tokenmem.client import Client

        c = Client.connect(self.agent.data, self.agent.lease)
        pool = c.attach(self.agent.pool)

        def remove(out):
            if e.steps == 1:
                pool.remove((int(keys[3, 1, 0]), int(keys[3, 1, 1])))   # block 3, layer 1
        e.before_forward = remove
        got = self.serve(e, [("a'", tokens(90), {})])
        pool.close()
        c.close()
        self.assertEqual(e.scheduler.hits["a'"], (0, 96))
        self.assertEqual(e.loads_failed, 1)
        self.assertSameLogits(got, self.reference([("a'", tokens(90), {})]))
        # The recomputed blocks were saved again.
        e2 = self.engine()
        self.serve(e2, [("a''", tokens(90), {})])
        self.assertEqual(e2.scheduler.hits["a''"], (0, 96))

    def test_agent_killed_mid_request(self):
        reqs = [("a", tokens(91), {"max_tokens": 3})]
        self.serve(self.engine(), reqs)
        e = self.engine()

        def kill(out):
            if e.steps == 1:
                self.agent.kill()
        e.before_forward = kill
        got = self.serve(e, [("b", tokens(91), {"max_tokens": 3})])
        self.assertEqual(e.scheduler.hits["b"], (0, 96))
        self.assertSameLogits(got, self.reference([("b", tokens(91), {"max_tokens": 3})]))
        # The agent comes back (its DRAM tier empty): the engine reconnects and stores again.
        self.agent.restart()
        self.agent.create_lease()
        lease = self.agent.lease
        for conn in [e.scheduler.connector] + [r.connector for r in e.runners]:
            conn._session._config = conn._session._config.__class__(
                **{**conn._session._config.__dict__, "lease": lease})
        self.serve(e, [("c", tokens(92), {})])
        e.runners[0].connector._worker.wait_for_save()
        e3 = self.engine()
        got3 = self.serve(e3, [("d", tokens(92), {})])
        self.assertEqual(e3.scheduler.hits["d"][1], 96)
        self.assertSameLogits(got3, self.reference([("d", tokens(92), {})]))


if __name__ == "__main__":
    unittest.main()
