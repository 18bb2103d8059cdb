"""The connector over the remote (UCX) path, unchanged: an engine whose
ConnectorConfig names the agent's remote listener (agent_address) instead
of its data socket gets the logits of full recompute, reuses KV across
turns, shares blocks with engines on the local path of the same agent, and
recomputes when the agent dies in the middle of a request.

Exactness rules as in test_exactness.py: chunks on the block grid give
bitwise-equal logits, chunks off it agree within float32 rounding.
"""

import unittest

import engine_env as E
import torch
from refmodel import TEST_MODEL
from test_exactness import SYSTEM, TOLERANCE, chats

PROMPT = 200   # 12 full blocks per layer


def prompt(seed, n=PROMPT):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, TEST_MODEL.vocab, (n,), generator=g).tolist()


def full_blocks(n):
    """Tokens a lookup can promise for an n-token prompt: whole blocks,
    leaving at least the last token to compute."""
    return (n - 1) // 16 * 16


class RemoteTestBase(unittest.TestCase):
    AGENT = dict(pool_dram="32MiB")

    @classmethod
    def setUpClass(cls):
        cls.agent = E.Agent(block_size="4KiB", remote=True, **cls.AGENT).start()
        cls.agent.create_lease()
        cls.model = E.Model(TEST_MODEL)
        cls.ref = E.plain_engine(TEST_MODEL, model=cls.model)

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()

    def engine(self, remote, **over):
        eng = E.make_engine(self.agent, TEST_MODEL, model=self.model, remote=remote, **over)
        self.addCleanup(eng.close)
        return eng

    def check(self, eng, rid, tokens):
        """Prefill through eng's connector; logits must equal recompute's, bitwise."""
        got = eng.prefill(rid, tokens, all_logits=True)
        want = self.ref.prefill(rid, tokens, all_logits=True).logits[got.first_computed:]
        self.assertEqual(got.logits.shape, want.shape)
        self.assertTrue(torch.equal(got.logits, want),
                        "%s: max diff %g" % (rid, (got.logits - want).abs().max()))
        return got

    def assert_path(self, eng, remote):
        self.assertIsNotNone(eng.connector.session.pool(), "the connector did not connect")
        self.assertIs(eng.connector.session.remote, remote)


class RemoteExactnessTest(RemoteTestBase):
    """test_exactness.py's multi-turn chats, every block over the remote path."""

    def run_chats(self, chunk_tokens, revision):
        eng = self.engine(True, chunk_tokens=chunk_tokens, revision=revision)
        ref = E.plain_engine(TEST_MODEL, chunk_tokens=chunk_tokens, model=self.model)
        self.assert_path(eng, True)
        results = []
        all_chats = chats(TEST_MODEL)
        for s, prompts in enumerate(all_chats):
            for t, tokens in enumerate(prompts):
                rid = "s%d-t%d" % (s, t)
                got = eng.prefill(rid, tokens, all_logits=True)
                eng.flush()
                want = ref.prefill(rid, tokens, all_logits=True)
                self.assertEqual(got.reruns, 0, rid)
                self.assertEqual(got.loaded_tokens, got.hit_tokens, rid)
                results.append((s, t, got, want.logits[got.first_computed:]))
        hits = 0
        for s, t, got, _ in results:
            hits += got.hit_tokens
            if (s, t) == (0, 0):
                self.assertEqual(got.hit_tokens, 0)
            else:
                self.assertGreaterEqual(got.hit_tokens, SYSTEM // 16 * 16, (s, t))
            if t > 0:
                self.assertEqual(got.hit_tokens, len(all_chats[s][t - 1]) // 16 * 16, (s, t))
        self.assertGreater(hits, 0)
        self.assertIs(eng.connector.session.remote, True)
        self.assertEqual(eng.connector.session.connects, 1)
        return results

    def test_bitwise_on_block_grid(self):
        for s, t, got, want in self.run_chats(16, "remote-grid16"):
            self.assertEqual(got.logits.shape, want.shape)
            self.assertTrue(torch.equal(got.logits, want),
                            "session %d turn %d: max diff %g" % (s, t, (got.logits - want).abs().max()))

    def test_within_tolerance_off_grid(self):
        for s, t, got, want in self.run_chats(64, "remote-grid64"):
            self.assertEqual(got.logits.shape, want.shape)
            diff = float((got.logits - want).abs().max())
            self.assertLessEqual(diff, TOLERANCE, "session %d turn %d" % (s, t))
            self.assertEqual(int(got.logits[-1].argmax()), int(want[-1].argmax()))


class CrossPathTest(RemoteTestBase):
    """One agent, two engines of the same model: one on the local path, one
    on the remote path. Keys do not depend on the path, so each finds and
    loads what the other saved."""

    def setUp(self):
        self.local = self.engine(False, revision="cross")
        self.remote = self.engine(True, revision="cross")
        self.assert_path(self.local, False)
        self.assert_path(self.remote, True)

    def handoff(self, saver, loader, seed):
        tokens = prompt(seed)
        r = self.check(saver, "save", tokens)
        self.assertEqual(r.hit_tokens, 0)
        saver.flush()
        r = self.check(loader, "load", tokens)
        self.assertEqual((r.hit_tokens, r.loaded_tokens, r.reruns), (full_blocks(PROMPT),) * 2 + (0,))
        # A longer prompt: the loader reuses the saver's blocks and stores
        # its own tail, which the saver then finds in turn.
        longer = tokens + prompt(seed + 100, 60)
        r = self.check(loader, "extend", longer)
        self.assertEqual((r.hit_tokens, r.reruns), (full_blocks(PROMPT), 0))
        loader.flush()
        r = self.check(saver, "back", longer)
        self.assertEqual((r.hit_tokens, r.loaded_tokens, r.reruns), (full_blocks(len(longer)),) * 2 + (0,))

    def test_local_saves_remote_loads(self):
        self.handoff(self.local, self.remote, 11)

    def test_remote_saves_local_loads(self):
        self.handoff(self.remote, self.local, 12)


class RemoteAgentKilledTest(RemoteTestBase):
    """The agent dies after the lookup of a remote request: nothing is
    mapped on this side, so every load fails and is recomputed; later
    requests connect again to the restarted agent at the same address."""

    # Leases live in the NVMe directory, so the lease survives the restart.
    AGENT = dict(pool_dram="32MiB", pool_nvme="4MiB", dram="64MiB", nvme="16MiB",
                 segment_size="1MiB")

    def test_agent_killed_mid_request(self):
        eng = self.engine(True, revision="killed", timeout_s=2.0)
        tokens = prompt(21)
        self.check(eng, "warm", tokens)
        eng.flush()

        def kill(rid, hit):
            self.assertEqual(hit, full_blocks(PROMPT))
            self.agent.kill()

        eng.after_lookup = kill
        longer = tokens + prompt(22, 40)
        r = self.check(eng, "mid-request", longer)
        eng.after_lookup = None
        self.assertLess(r.loaded_tokens, r.hit_tokens)
        self.assertGreaterEqual(r.reruns, 1)
        eng.flush()   # its saves fail or drop; nothing raises

        self.agent.restart()
        self.check(eng, "after-restart", longer)
        eng.flush()
        self.assertGreaterEqual(eng.connector.session.connects, 2)
        self.assertIs(eng.connector.session.remote, True)
        r = self.check(eng, "reuse-again", longer)
        self.assertEqual((r.hit_tokens, r.loaded_tokens), (full_blocks(len(longer)),) * 2)


if __name__ == "__main__":
    unittest.main()
