"""tokenmem as SGLang's HiCache L3 backend, driven the way HiCacheController
drives it (sglang_harness.py) against a real agent: loaded through the
storage backend factory, pages backed up from one host pool come back
bit-exact into a fresh one for every host layout, batch_exists counts the
leading pages held, TP ranks keep their own shards (MLA ranks share one),
a page gone in the middle ends the prefix, the agent dying between the
existence check and the reads gives misses and never wrong KV, and the
reference model's logits from restored KV equal recompute's bitwise."""

import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import sglang_harness as H  # noqa: E402  (puts the SGLang stand-in on sys.path)
import torch  # noqa: E402
from agent_harness import Agent  # noqa: E402
from refmodel import TEST_MODEL, Hooks, Model, PagedKVCache  # noqa: E402
from sglang.srt.mem_cache.hicache_storage import HiCacheStorageConfig  # noqa: E402
from sglang.srt.mem_cache.storage import StorageBackendFactory  # noqa: E402
from tokenmem.connector.sglang_backend import (  # noqa: E402
    TokenmemHiCacheStorage, UnsupportedHostPool)

P = 16   # tokens per page, as TEST_MODEL's


def tokens_of(seed, n):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, TEST_MODEL.vocab, (n,), generator=g).tolist()


def filled(pool, seed):
    g = torch.Generator().manual_seed(seed)
    pool.kv_buffer.copy_(torch.randn(pool.kv_buffer.shape, generator=g))
    return pool


def same_bytes(a, b):
    return torch.equal(a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8))


def extra_config(agent, salt, **over):
    conf = dict(backend_name="tokenmem", module_path="tokenmem.connector.sglang_backend",
                class_name="TokenmemHiCacheStorage", interface_v1=1, tokenmem_pool=agent.pool,
                tokenmem_socket=agent.data, tokenmem_lease=agent.lease, tokenmem_salt=salt,
                tokenmem_timeout_s=5, tokenmem_reconnect_interval_s=0)
    conf.update(over)
    return conf


class Base(unittest.TestCase):
    AGENT = dict(block_size="16KiB", pool_dram="48MiB", dram="96MiB")

    @classmethod
    def setUpClass(cls):
        cls.agent = Agent(**cls.AGENT).start()
        cls.agent.create_lease()

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()

    def setUp(self):
        self.controllers = []

    def tearDown(self):
        for c in self.controllers:
            c.close()

    def ctrl(self, pool, rank=0, size=1, **over):
        c = H.Controller(pool, extra_config=extra_config(self.agent, self.id(), **over),
                         tp_rank=rank, tp_size=size)
        self.controllers.append(c)
        return c

    def assert_pages_equal(self, src, src_idx, dst, dst_idx, pages):
        for i in range(pages):
            self.assertTrue(same_bytes(src.get_data_page(int(src_idx[i * src.page_size])),
                                       dst.get_data_page(int(dst_idx[i * dst.page_size]))),
                            "page %d differs" % i)


class BackendTest(Base):
    def test_loaded_through_the_factory(self):
        c = self.ctrl(H.HostPool(2, 2, 16, 8, P, "page_first"))
        self.assertIsInstance(c.storage, TokenmemHiCacheStorage)
        self.assertTrue(c.zero_copy)
        conf = extra_config(self.agent, "x")
        del conf["module_path"]
        cfg = HiCacheStorageConfig(0, 1, 0, 1, 0, 1, False, False, False, "m", extra_config=conf)
        with self.assertRaises(ValueError):
            StorageBackendFactory.create_backend("dynamic", cfg, None)

    def test_unsupported_layout_is_refused(self):
        class SplitPool:   # an Ascend-style pool with separate K and V buffers
            layout, page_size, kv_buffer = "page_first_kv_split", P, torch.zeros(4, 2, P, 1, 8)

        c = self.ctrl(H.HostPool(2, 2, 16, 8, P, "page_first"))
        with self.assertRaisesRegex(UnsupportedHostPool, "page_first_kv_split"):
            c.storage.register_mem_pool_host(SplitPool())

    def test_page_larger_than_block_reports_misses(self):
        pool = filled(H.HostPool(4, 4, 32, 4, P, "page_first"), 1)   # 64 KiB pages
        c = self.ctrl(pool)
        toks = tokens_of(1, 2 * P)
        self.assertEqual(c.backup(pool.alloc(2 * P), toks), 0)
        self.assertEqual(c.hit_query(toks)[1], 0)

    def test_backup_then_prefetch_is_bit_exact_for_every_layout(self):
        cases = [(False, l) for l in H.MHA_LAYOUTS] + [(True, l) for l in H.MLA_LAYOUTS]
        for seed, (mla, layout) in enumerate(cases):
            with self.subTest(mla=mla, layout=layout):
                dim = 64 if mla else 16
                src = filled(H.HostPool(2, 2, dim, 8, P, layout, mla=mla), seed)
                toks = tokens_of(seed, 3 * P + 5)
                src.alloc(P)   # host slots not starting at 0
                idx = src.alloc(3 * P)
                writer = self.ctrl(src)
                # Straight from the host pool: per page 2 x layers pieces for MHA
                # layer_first (layers for MLA), one run of K and one of V otherwise.
                want = (2 if layout == "layer_first" else 1) if mla else (
                    4 if layout == "layer_first" else 2)
                self.assertEqual(writer.storage.pages.pieces, want)
                self.assertEqual(writer.backup(idx, toks[:3 * P]), 3 * P)
                # Zero-copy reads, and the flat-page path reading the same blocks.
                for v1 in (1, 0):
                    dst = H.HostPool(2, 2, dim, 8, P, layout, mla=mla)
                    dst.alloc(2 * P)
                    [(didx, done)] = H.prefetch([self.ctrl(dst, interface_v1=v1)], toks)
                    self.assertEqual(done, 3 * P)
                    self.assert_pages_equal(src, idx, dst, didx, 3)
                # The flat-page path writes what zero-copy reads.
                toks2 = tokens_of(100 + seed, 2 * P)
                idx2 = src.alloc(2 * P)
                self.assertEqual(self.ctrl(src, interface_v1=0).backup(idx2, toks2), 2 * P)
                dst = H.HostPool(2, 2, dim, 8, P, layout, mla=mla)
                [(didx, done)] = H.prefetch([self.ctrl(dst)], toks2)
                self.assertEqual(done, 2 * P)
                self.assert_pages_equal(src, idx2, dst, didx, 2)

    def test_batch_exists_counts_the_leading_pages(self):
        # 140 small pages: the controller's queries span two batches of 128.
        src = filled(H.HostPool(1, 1, 8, 150, 4, "layer_first"), 7)
        c = self.ctrl(src)
        toks = tokens_of(7, 140 * 4)
        idx = src.alloc(140 * 4)
        self.assertEqual(c.backup(idx, toks), 140 * 4)
        self.assertEqual(c.hit_query(toks)[1], 140 * 4)
        hashes = H.page_hashes(toks, 4)
        self.assertEqual(c.storage.batch_exists(hashes[:2] + ["00" * 32] + hashes[3:6]), 2)
        self.assertEqual(c.storage.batch_exists(["00" * 32] + hashes[:3]), 0)
        self.assertTrue(c.storage.exists(hashes[5]))
        # A page gone from the middle ends the prefix there.
        pool = c.storage.session.pool()
        key = tuple(int(x) for x in c.storage.keys_of([hashes[70]])[0])
        self.assertTrue(pool.remove(key))
        self.assertEqual(c.hit_query(toks)[1], 70 * 4)
        dst = H.HostPool(1, 1, 8, 150, 4, "layer_first")
        [(didx, done)] = H.prefetch([self.ctrl(dst)], toks)
        self.assertEqual(done, 70 * 4)
        self.assert_pages_equal(src, idx, dst, didx, 70)

    def test_page_removed_between_exists_and_get(self):
        src = filled(H.HostPool(2, 2, 16, 8, P, "page_first_direct"), 8)
        c = self.ctrl(src)
        toks = tokens_of(8, 6 * P)
        idx = src.alloc(6 * P)
        c.backup(idx, toks)
        key = tuple(int(x) for x in c.storage.keys_of(H.page_hashes(toks, P)[4:5])[0])
        dst = H.HostPool(2, 2, 16, 8, P, "page_first_direct")

        def remove(hit):
            self.assertEqual(hit, 6 * P)
            self.assertTrue(c.storage.session.pool().remove(key))

        [(didx, done)] = H.prefetch([self.ctrl(dst)], toks, between=remove)
        self.assertEqual(done, 4 * P)
        self.assert_pages_equal(src, idx, dst, didx, 4)

    def test_tp_ranks_keep_their_shards(self):
        toks = tokens_of(9, 4 * P)
        srcs = [filled(H.HostPool(2, 1, 16, 8, P, "page_first"), 20 + r) for r in range(2)]
        ranks = [self.ctrl(s, rank=r, size=2) for r, s in enumerate(srcs)]
        idx = [s.alloc(4 * P) for s in srcs]
        self.assertEqual(ranks[0].backup(idx[0], toks), 4 * P)
        # Rank 1 finds nothing of rank 0's shard; the ranks agree on no hit.
        self.assertEqual(ranks[1].hit_query(toks)[1], 0)
        dsts = [H.HostPool(2, 1, 16, 8, P, "page_first") for _ in range(2)]
        got = H.prefetch([self.ctrl(d, rank=r, size=2) for r, d in enumerate(dsts)], toks)
        self.assertEqual([done for _, done in got], [0, 0])
        self.assertEqual(ranks[1].backup(idx[1], toks), 4 * P)
        dsts = [H.HostPool(2, 1, 16, 8, P, "page_first") for _ in range(2)]
        got = H.prefetch([self.ctrl(d, rank=r, size=2) for r, d in enumerate(dsts)], toks)
        for r in range(2):
            self.assertEqual(got[r][1], 4 * P)
            self.assert_pages_equal(srcs[r], idx[r], dsts[r], got[r][0], 4)
        self.assertFalse(same_bytes(srcs[0].get_data_page(0), srcs[1].get_data_page(0)))

    def test_mla_ranks_share_one_copy(self):
        toks = tokens_of(10, 3 * P)
        src = filled(H.HostPool(2, 1, 64, 8, P, "page_first", mla=True), 30)
        other = filled(H.HostPool(2, 1, 64, 8, P, "page_first", mla=True), 31)
        r0, r1 = self.ctrl(src, rank=0, size=2), self.ctrl(other, rank=1, size=2)
        # SGLang backs up MLA KV from rank 0 only; rank 1 reads rank 0's pages.
        self.assertEqual(r1.backup(other.alloc(3 * P), toks), 0)
        idx = src.alloc(3 * P)
        self.assertEqual(r0.backup(idx, toks), 3 * P)
        hashes = H.page_hashes(toks, P)
        self.assertTrue((r0.storage.keys_of(hashes) == r1.storage.keys_of(hashes)).all())
        dsts = [H.HostPool(2, 1, 64, 8, P, "page_first", mla=True) for _ in range(2)]
        got = H.prefetch([self.ctrl(d, rank=r, size=2) for r, d in enumerate(dsts)], toks)
        for r in range(2):
            self.assertEqual(got[r][1], 3 * P)
            self.assert_pages_equal(src, idx, dsts[r], got[r][0], 3)


class RefModelTest(Base):
    def test_logits_from_restored_kv_equal_recompute(self):
        cfg, model = TEST_MODEL, Model(TEST_MODEL)
        toks = tokens_of(11, 100)
        stored = len(toks) // P * P

        def run(cache, pages, start):
            out = []
            for s in range(start, len(toks), P):   # chunks on the page grid
                chunk = torch.tensor(toks[s:s + P])
                out.append(model.forward_chunk(cache, pages, chunk, s, Hooks(), slice(None)))
            return torch.cat(out)

        ref_cache = PagedKVCache(cfg, 8)
        ref_pages = ref_cache.alloc(7)
        want = run(ref_cache, ref_pages, 0)
        t = torch.arange(stored)
        for layout in ("layer_first", "page_first", "page_head"):
            with self.subTest(layout=layout):
                # Two TP ranks, one KV head each: device -> host -> tokenmem.
                hosts = [H.HostPool(cfg.layers, 1, cfg.head_dim, 8, P, layout) for _ in range(2)]
                idx = [h.alloc(stored) for h in hosts]
                for l in range(cfg.layers):
                    kv = ref_cache.layers[l][torch.tensor(ref_pages)[t // P], :, t % P]
                    for r, h in enumerate(hosts):
                        h.write_tokens(l, idx[r], kv[:, 0, r:r + 1], kv[:, 1, r:r + 1])
                for r, h in enumerate(hosts):
                    self.assertEqual(self.ctrl(h, rank=r, size=2).backup(idx[r], toks), stored)
                # A fresh engine: tokenmem -> host -> device, then compute the rest.
                fresh = [H.HostPool(cfg.layers, 1, cfg.head_dim, 8, P, layout) for _ in range(2)]
                got = H.prefetch([self.ctrl(h, rank=r, size=2) for r, h in enumerate(fresh)], toks)
                self.assertEqual(got[0][1], stored)
                cache = PagedKVCache(cfg, 8)
                cache.alloc(1)
                pages = cache.alloc(7)
                page_t = torch.tensor(pages)[t // P]
                for l in range(cfg.layers):
                    for r, h in enumerate(fresh):
                        k, v = h.read_tokens(l, got[r][0])
                        cache.layers[l][page_t, 0, t % P, r:r + 1] = k
                        cache.layers[l][page_t, 1, t % P, r:r + 1] = v
                logits = run(cache, pages, stored)
                self.assertTrue(torch.equal(logits, want[stored:]),
                                "max diff %g" % (logits - want[stored:]).abs().max())


class AgentDeathTest(Base):
    # The lease is kept in the NVMe directory, so it survives a restart.
    AGENT = dict(block_size="16KiB", pool_dram="32MiB", pool_nvme="4MiB", dram="64MiB",
                 nvme="16MiB", segment_size="1MiB")

    def test_agent_killed_between_exists_and_get(self):
        toks = tokens_of(12, 5 * P)
        src = filled(H.HostPool(2, 2, 16, 12, P, "page_first"), 40)
        c = self.ctrl(src)
        idx = src.alloc(5 * P)
        self.assertEqual(c.backup(idx, toks), 5 * P)
        dst = H.HostPool(2, 2, 16, 8, P, "page_first")
        garbage = torch.full_like(dst.kv_buffer, float("nan"))
        dst.kv_buffer.copy_(garbage)

        def kill(hit):
            self.assertEqual(hit, 5 * P)
            self.agent.kill()

        reader = self.ctrl(dst)
        [(didx, done)] = H.prefetch([reader], toks, between=kill)
        # Reads of a session that began before the kill are served from the
        # pool memory it still maps (exact) or fail (missing); never other bytes.
        self.assertLessEqual(done, 5 * P)
        self.assert_pages_equal(src, idx, dst, didx, done // P)
        # A backend that first connects while the agent is down finds nothing,
        # and backups fail; nothing raises.
        dst1 = H.HostPool(2, 2, 16, 8, P, "page_first")
        [(_, done1)] = H.prefetch([self.ctrl(dst1)], toks)
        self.assertEqual(done1, 0)
        toks2 = tokens_of(13, 2 * P)
        self.assertEqual(c.backup(src.alloc(2 * P), toks2), 0)
        self.agent.restart()
        # A later call connects again and works with the new agent.
        idx3 = src.alloc(2 * P)
        self.assertEqual(c.backup(idx3, toks2), 2 * P)
        dst2 = H.HostPool(2, 2, 16, 8, P, "page_first")
        [(d3, done3)] = H.prefetch([self.ctrl(dst2)], toks2)
        self.assertEqual(done3, 2 * P)
        self.assert_pages_equal(src, idx3, dst2, d3, 2)
        self.assertGreaterEqual(c.storage.session.connects, 2)


if __name__ == "__main__":
    unittest.main()
