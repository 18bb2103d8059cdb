"""Reused KV gives the logits of full recompute, over multi-turn chats that
share a system prompt, against a real tokenmem-agent.

Two arithmetic regimes (docs/engine-integration.md, "Exactness"):
- chunks on a grid that is a multiple of the block size: a reused prefix
  changes no operand of any later computation, so logits must be bitwise
  equal;
- chunks off that grid (64-token chunks, so the first computed chunk after
  a hit is shorter than the one recompute runs): the same values come out
  of matrix products of other shapes, whose summation order may differ, so
  logits must agree within a tolerance of float32 rounding.
"""

import unittest

import engine_env as E
import torch
from refmodel import TEST_MODEL

SYSTEM = 100      # system prompt tokens (6 full blocks and a bit)
TOLERANCE = 1e-4  # absolute, on logits of magnitude ~1-10 (float32 epsilon ~1.2e-7)


def chats(cfg, sessions=2, turns=3, seed=7):
    g = torch.Generator().manual_seed(seed)
    rand = lambda n: torch.randint(0, cfg.vocab, (n,), generator=g).tolist()  # noqa: E731
    system = rand(SYSTEM)
    out = []
    for _ in range(sessions):
        history, prompts = list(system), []
        for _ in range(turns):
            history += rand(int(torch.randint(20, 60, (1,), generator=g)))   # the user's message
            prompts.append(list(history))
            history += rand(int(torch.randint(10, 30, (1,), generator=g)))   # the reply
        out.append(prompts)
    return out


class ExactnessTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.agent = E.Agent(block_size="4KiB", pool_dram="32MiB").start()
        cls.agent.create_lease()
        cls.model = E.Model(TEST_MODEL)

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()

    def run_chats(self, chunk_tokens, revision):
        cfg = TEST_MODEL
        eng = E.make_engine(self.agent, cfg, chunk_tokens=chunk_tokens, model=self.model,
                            revision=revision)
        ref = E.plain_engine(cfg, chunk_tokens=chunk_tokens, model=self.model)
        results = []
        try:
            for s, prompts in enumerate(chats(cfg)):
                for t, prompt in enumerate(prompts):
                    rid = "s%d-t%d" % (s, t)
                    got = eng.prefill(rid, prompt, all_logits=True)
                    eng.flush()   # the next turn then finds every block of this one
                    want = ref.prefill(rid, prompt, all_logits=True)
                    self.assertEqual(got.reruns, 0)
                    results.append((s, t, len(prompt), got, want.logits[got.first_computed:]))
        finally:
            eng.close()
        # Reuse happened: every turn but the very first found stored blocks.
        for s, t, n, got, _ in results:
            if (s, t) == (0, 0):
                self.assertEqual(got.hit_tokens, 0)
            else:
                self.assertGreaterEqual(got.hit_tokens, SYSTEM // 16 * 16, (s, t))
            if t > 0:  # the previous turn's prompt is stored, bar its partial block
                prev = len(chats(TEST_MODEL)[s][t - 1])
                self.assertEqual(got.hit_tokens, prev // 16 * 16, (s, t))
        return results

    def test_bitwise_on_block_grid(self):
        for s, t, n, got, want in self.run_chats(16, "grid16"):
            self.assertEqual(got.logits.shape, want.shape)
            self.assertTrue(torch.equal(got.logits, want),
                            "session %d turn %d: max diff %g" % (s, t, (got.logits - want).abs().max()))

    def test_within_tolerance_off_grid(self):
        worst = 0.0
        for s, t, n, got, want in self.run_chats(64, "grid64"):
            diff = float((got.logits - want).abs().max())
            worst = max(worst, diff)
            self.assertLessEqual(diff, TOLERANCE, "session %d turn %d" % (s, t))
            self.assertEqual(int(got.logits[-1].argmax()), int(want[-1].argmax()))
        print("off-grid worst |logit difference|: %g" % worst)


if __name__ == "__main__":
    unittest.main()
