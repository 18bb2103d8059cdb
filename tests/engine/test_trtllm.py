"""The TensorRT-LLM adapter under trtllm_harness (the engine's call order,
block reuse, chunked prefill and KV pool layout) against a real agent.
Logits and KV are compared bitwise with recompute: prefill chunks of 16
tokens, the block size, so reuse changes no operand shape."""

import importlib
import os
import sys
import unittest

import engine_env as E   # noqa: F401  (paths)
import torch
import trtllm_harness as H
from refmodel import TEST_MODEL, Weights
from tensorrt_llm.llmapi import KvCacheConfig, KvCacheConnectorConfig, TorchLlmArgs

MODULE = "tokenmem.connector.trtllm_adapter"
CURRENT = "tensorrt_llm._torch.pyexecutor.connectors"
OLD = "tensorrt_llm._torch.pyexecutor.kv_cache_connector"


def prompt(seed, n):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, TEST_MODEL.vocab, (n,), generator=g).tolist()


def adapter(hide=None):
    """The adapter module, fresh, with one interface path hidden."""
    for name in (CURRENT, CURRENT + ".kv_cache_connector", OLD):
        sys.modules.pop(name, None)
    if hide:
        sys.modules[hide] = None   # import of it raises ImportError
    sys.modules.pop(MODULE, None)
    return importlib.import_module(MODULE)


class TrtllmTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.agent = E.Agent(block_size="4KiB", pool_dram="32MiB").start()
        cls.agent.create_lease()
        cls.weights = Weights(TEST_MODEL)
        os.environ.update(TOKENMEM_AGENT_SOCKET=cls.agent.data, TOKENMEM_LEASE=cls.agent.lease,
                          TOKENMEM_POOL=cls.agent.pool, TOKENMEM_NUM_LAYERS=str(TEST_MODEL.layers))

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()

    def tearDown(self):
        for name in (CURRENT, OLD):
            if sys.modules.get(name, 1) is None:
                del sys.modules[name]

    def args(self, revision, tp=1):
        return TorchLlmArgs(model="refllama", revision=revision, tensor_parallel_size=tp,
                            kv_cache_config=KvCacheConfig(tokens_per_block=16, dtype="float32"),
                            kv_connector_config=KvCacheConnectorConfig(
                                connector_module=MODULE, connector_scheduler_class="TokenmemScheduler",
                                connector_worker_class="TokenmemWorker"))

    def engine(self, revision, tp=1, reuse=True, num_blocks=64, **kw):
        return H.Engine(TEST_MODEL, self.args(revision, tp), tp=tp, reuse=reuse, num_blocks=num_blocks,
                        weights=self.weights, **kw)

    def recompute(self, tokens, tp=1):
        eng = H.Engine(TEST_MODEL, None, tp=tp, reuse=False, weights=self.weights)
        req = H.Request(0, tokens, 16)
        eng.submit(req)
        eng.run()
        return torch.cat(req.logits), eng

    def run_one(self, eng, rid, tokens):
        req = H.Request(rid, tokens, 16)
        eng.submit(req)
        eng.run()
        return req

    def check(self, req, tp=1):
        want, ref = self.recompute(req.tokens, tp)
        got = torch.cat(req.logits)
        self.assertTrue(torch.equal(got, want[req.first_computed:]),
                        "max diff %g" % (got - want[req.first_computed:]).abs().max())
        return ref

    def check_kv(self, eng, ref, req):
        """The request's KV in every rank's pool equals recompute's, token by token."""
        full = req.prompt_len // 16
        for rank in range(eng.tp):
            for l in range(TEST_MODEL.layers):
                got = eng.layer_view(rank, l)[torch.tensor(req.blocks[:full])]
                want = ref.layer_view(rank, l)[:full]   # recompute's blocks are 0, 1, ...
                self.assertTrue(torch.equal(got, want), "rank %d layer %d" % (rank, l))

    # -- loading by name ----------------------------------------------------

    def test_loaded_by_name_from_either_interface_path(self):
        for hide, base in ((CURRENT, OLD), (OLD, CURRENT + ".kv_cache_connector")):
            mod = adapter(hide)
            eng = self.engine("path-%s" % base)
            try:
                sched, worker = eng.manager.scheduler, eng.manager.workers[0]
                self.assertIs(type(sched).__mro__[1], sys.modules[base].KvCacheConnectorScheduler)
                self.assertIs(type(worker).__mro__[1], sys.modules[base].KvCacheConnectorWorker)
                self.assertIs(type(sched), mod.TokenmemScheduler)
                tokens = prompt(1, 70)
                first = self.run_one(eng, 1, tokens)
                eng.drain()
                eng.bm.by_prefix.clear()   # forget the engine's own copy: reuse comes from tokenmem
                eng.bm.prefix_of.clear()
                again = self.run_one(eng, 2, tokens)
                self.assertEqual(first.first_computed, 0)
                self.assertEqual(again.first_computed, 64)
                ref = self.check(again)
                self.check_kv(eng, ref, again)
            finally:
                eng.close()
        self.assertEqual(eng.manager.calls[:4], ["get_num_new_matched_tokens", "update_state_after_alloc",
                                                 "build_connector_meta", "get_finished"])

    def test_unknown_layout_refused_at_registration(self):
        mod = adapter()
        cfg, layers, page = mod.resolve(self.args("layout"))
        w = mod.WorkerImpl(cfg, layers, page)
        with self.assertRaisesRegex(ValueError, "unknown KV pool layout"):
            w.register(torch.zeros(8, 2, 16, 2, 16))
        with self.assertRaisesRegex(ValueError, "not contiguous"):
            w.register(torch.zeros(8, 2, 512, 2).transpose(2, 3))
        with self.assertRaisesRegex(ValueError, "holds float16"):
            w.register(torch.zeros(8, 2, 2, 512, dtype=torch.float16))
        with self.assertRaisesRegex(ValueError, "not a pool tensor"):
            w.register({"layer0": torch.zeros(8, 2, 2, 512)})

    # -- accounting after the engine's own reuse ------------------------------

    def test_engine_reuse_then_loads_beyond_it(self):
        adapter()
        eng = self.engine("reuse")
        try:
            base = prompt(2, 40)                   # 2 full blocks in the engine's reuse cache
            self.run_one(eng, 1, base)
            longer = base[:32] + prompt(3, 60)     # 92 tokens: 5 full blocks
            eng2 = self.engine("reuse", num_blocks=64)
            try:
                self.run_one(eng2, 1, longer)      # stores blocks 0-4 in tokenmem
                eng2.drain()
            finally:
                eng2.close()
            loads = []
            orig = eng.manager.scheduler.impl.plan

            def spy(new, cached):
                meta = orig(new, cached)
                loads.extend(r for r in meta.plans[0].loads)
                return meta
            eng.manager.scheduler.impl.plan = spy
            shared = {b: eng.pools[0][b].clone() for b in range(64)}
            req = self.run_one(eng, 2, longer)
            reused = eng.bm.reused[2]
            self.assertEqual(len(reused), 2)                 # the engine's own blocks 0-1
            self.assertEqual(req.first_computed, 80)         # + 3 loaded blocks
            self.assertEqual([(r.start, r.end) for r in loads], [(2, 5)])
            self.assertEqual(loads[0].pages.reshape(-1).tolist(), req.blocks[2:5])
            for b in reused:                                  # shared pages never written
                self.assertTrue(torch.equal(eng.pools[0][b], shared[b]))
            ref = self.check(req)
            self.check_kv(eng, ref, req)
        finally:
            eng.close()

    def test_partial_block_reuse_gets_no_loads(self):
        mod = adapter()
        cfg, layers, page = mod.resolve(self.args("partial"))
        s = mod.SchedulerImpl(cfg, layers, page)
        try:
            self.assertEqual(s.matched("r", prompt(4, 50), 20), 0)
        finally:
            s.close()

    # -- chunked prefill ----------------------------------------------------

    def test_chunked_prefill_saves_only_computed_blocks(self):
        mod = adapter()
        eng = self.engine("chunks")
        saved = []
        orig = eng.manager.scheduler.impl.plan

        def spy(new, cached):
            meta = orig(new, cached)
            for d in list(new) + list(cached):
                top = d.computed_position + d.num_scheduled_tokens
                for r in meta.plans[0].saves:
                    self.assertLessEqual(r.end * 16, top)   # only computed tokens
            saved.extend((r.start, r.end) for r in meta.plans[0].saves)
            return meta
        eng.manager.scheduler.impl.plan = spy
        try:
            tokens = prompt(5, 100)
            req = self.run_one(eng, 1, tokens)
            self.assertEqual(len(req.logits), 7)             # 7 chunks of 16, the last of 4
            self.assertEqual(saved, [(b, b + 1) for b in range(6)])
            eng.drain()
            fresh = self.engine("chunks")
            try:
                again = self.run_one(fresh, 2, tokens)
                self.assertEqual(again.first_computed, 96)
                ref = self.check(again)
                self.check_kv(fresh, ref, again)
            finally:
                fresh.close()
        finally:
            eng.close()

    # -- tensor parallelism ---------------------------------------------------

    def test_two_tp_ranks_each_their_shard(self):
        adapter()
        tokens = prompt(6, 90)
        eng = self.engine("tp2", tp=2)
        try:
            self.run_one(eng, 1, tokens)
            eng.drain()
            w0, w1 = (eng.manager.workers[r].impl for r in (0, 1))
            self.assertEqual((w0.config.tp_rank, w1.config.tp_rank), (0, 1))
            self.assertEqual(w0.core.stats.save_blocks, w1.core.stats.save_blocks)
            self.assertGreater(w0.core.stats.save_blocks, 0)
        finally:
            eng.close()
        # Rank 1's shard alone gone: no block is promised (lookups need every rank).
        sched = eng.manager.scheduler.impl
        core1 = sched.cores[1]
        keys1 = core1.keys.keys(tokens)
        fresh = self.engine("tp2", tp=2)
        try:
            pool = fresh.manager.scheduler.impl.session.pool()
            pool.remove_many([(int(h), int(l)) for h, l in keys1[3].reshape(-1, 2)])
            req = self.run_one(fresh, 2, tokens)
            self.assertEqual(req.first_computed, 48)
            ref = self.check(req, tp=2)
            self.check_kv(fresh, ref, req)
            w0, w1 = (fresh.manager.workers[r].impl for r in (0, 1))
            self.assertEqual(w0.core.stats.load_blocks, w1.core.stats.load_blocks)
        finally:
            fresh.close()

    # -- a block gone between lookup and load -----------------------------------

    def test_block_gone_between_lookup_and_load(self):
        mod = adapter()
        tokens = prompt(7, 120)
        eng = self.engine("gone")
        try:
            self.run_one(eng, 1, tokens)
            eng.drain()
        finally:
            eng.close()
        # Lookups pin what they promise (eviction skips pinned blocks) until
        # the request finishes.
        fresh = self.engine("gone")
        impl = fresh.manager.scheduler.impl
        keys = impl.cores[0].keys.keys(tokens)
        orig = impl.allocated

        def after_lookup(rid, block_ids, position):
            self.assertEqual(len(impl._pins), 7 * TEST_MODEL.layers)   # 7 blocks promised
            orig(rid, block_ids, position)
        impl.allocated = after_lookup
        try:
            req = self.run_one(fresh, 2, tokens)
            self.assertEqual(req.first_computed, 112)
            self.assertEqual(len(impl._pins), 0)              # unpinned when it finished
            self.check(req)
        finally:
            fresh.close()
        # Removed after lookup_prefix but before the pin: the promise shrinks.
        fresh = self.engine("gone")
        impl = fresh.manager.scheduler.impl
        core = impl.cores[0]
        real = core.lookup

        def lookup_then_remove(rid, toks, computed):
            n = real(rid, toks, computed)
            impl.session.pool().remove_many([(int(h), int(l)) for h, l in keys[4].reshape(-1, 2)])
            return n
        core.lookup = lookup_then_remove
        try:
            req = self.run_one(fresh, 3, tokens)
            self.assertEqual(req.first_computed, 64)
            self.assertEqual(impl.pin_shortened, 1)
            self.check(req)
            fresh.drain()
        finally:
            fresh.close()
        # Removed after the pin (an explicit remove overrides it): the engine
        # cannot be told; the worker notices and fails the step.
        fresh = self.engine("gone")
        impl = fresh.manager.scheduler.impl

        def remove_before_layer(when, rank, layer):
            if layer == 0 and fresh.active and fresh.active[0].request_id == 4:
                pool = impl.session.pool()
                pool.remove_many([(int(h), int(l)) for h, l in keys[5].reshape(-1, 2)])
        fresh.worker_hook = remove_before_layer
        try:
            with self.assertRaises(mod.LoadFailed):
                self.run_one(fresh, 4, tokens)
            w = fresh.manager.workers[0]
            self.assertEqual(w.take_failed_load_request_ids(), {"4"})
        finally:
            fresh.close()

    # -- finished requests ------------------------------------------------------

    def test_finished_reported_once_with_saves_in_flight(self):
        adapter()
        eng = self.engine("finish", num_blocks=96)
        try:
            w = eng.manager.workers[0].impl
            gate = __import__("threading").Event()
            real_save = w.core._save

            def slow_save(*a):
                gate.wait(10)
                return real_save(*a)
            w.core._save = slow_save
            reqs = [H.Request(i, prompt(10 + i, 40), 16) for i in range(3)]
            for r in reqs:
                eng.submit(r)
            for _ in range(5):
                eng.step()
            self.assertEqual([r.state for r in reqs], [H.DONE] * 3)
            self.assertEqual(len(eng.saving), 3)              # held: saves in flight
            self.assertEqual(eng.done, [])
            gate.set()
            eng.drain()
            self.assertEqual(sorted(r.request_id for r in eng.done), [0, 1, 2])
            for _ in range(3):                                # nothing reported twice
                eng.step()
            self.assertEqual(len(eng.done), 3)
            self.assertEqual(len(eng.bm.free), 96)
        finally:
            eng.close()


if __name__ == "__main__":
    unittest.main()
