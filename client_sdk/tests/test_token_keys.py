"""Tests of the Python token keys against the shared vector file.

Runs with Debian's /usr/bin/python3 and the standard library; numpy and
python3-xxhash are used when installed. Needs the tokenmem package on
PYTHONPATH and, usually, TOKENMEM_LIBRARY (ctest sets both).

Besides the library's answers, this file holds an independent reference of
the format written from docs/token-keys.md alone: the namespace encoding in
pure Python, and, with python3-xxhash, the seeds and chains as well.
"""

import array
import json
import os
import pathlib
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

import tokenmem
from tokenmem import Key, KeyNamespace, chain_keys, namespace_seed, prefix_keys
from tokenmem import _lib

try:
    import numpy
except ImportError:
    numpy = None

try:
    import xxhash
except ImportError:
    xxhash = None

HERE = pathlib.Path(__file__).resolve().parent
VECTORS = pathlib.Path(
    os.environ.get("TOKENMEM_KEY_VECTORS", HERE.parent / "testdata" / "token_key_vectors.json")
)
U32_MAX = 2**32 - 1


def load_vectors():
    with open(VECTORS, encoding="ascii") as f:
        return json.load(f)


def namespace_from(d):
    return KeyNamespace(**d)


# --- the reference: docs/token-keys.md in a few lines of Python ---------------


def ref_encode(d):
    def string(s):
        b = s.encode("utf-8") if isinstance(s, str) else s
        return struct.pack("<I", len(b)) + b

    return (
        string("tokenmem-ns-v1")
        + string(d["model"])
        + string(d["revision"])
        + string(d["kv_dtype"])
        + string(d["kv_layout"])
        + struct.pack(
            "<5I", d["tp_rank"], d["tp_size"], d["pp_rank"], d["pp_size"], d["block_tokens"]
        )
        + string(d["tenant_salt"])
    )


def ref_hash(data):
    value = xxhash.xxh3_128(data).intdigest()  # XXH3-128, seed 0, default secret
    return Key(value >> 64, value & (2**64 - 1))


def ref_chain(prev, block, tokens):
    keys = []
    for i in range(len(tokens) // block):
        prev_bytes = struct.pack("<QQ", prev.lo, prev.hi)
        prev = ref_hash(prev_bytes + struct.pack("<%dI" % block, *tokens[i * block : (i + 1) * block]))
        keys.append(prev)
    return keys


class VectorFileTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.v = load_vectors()
        cls.by_name = {n["name"]: n for n in cls.v["namespaces"]}

    def test_seeds(self):
        self.assertGreaterEqual(len(self.v["namespaces"]), 6)
        for entry in self.v["namespaces"]:
            with self.subTest(entry["name"]):
                ns = namespace_from(entry["namespace"])
                self.assertEqual(namespace_seed(ns).hex(), entry["seed"])
                self.assertEqual(ns.seed(), Key.from_hex(entry["seed"]))

    def test_chains(self):
        self.assertGreaterEqual(len(self.v["chains"]), 10)
        for c in self.v["chains"]:
            with self.subTest(c["name"]):
                entry = self.by_name[c["namespace"]]
                ns = namespace_from(entry["namespace"])
                want = [Key.from_hex(k) for k in c["keys"]]
                self.assertEqual(prefix_keys(ns, c["tokens"]), want)
                seed = Key.from_hex(entry["seed"])
                self.assertEqual(chain_keys(c["tokens"], ns.block_tokens, seed), want)
                self.assertEqual(
                    chain_keys(array.array("I", c["tokens"]), ns.block_tokens, seed), want
                )
                self.assertEqual([k.hex() for k in want], c["keys"])

    def test_raw_chains(self):
        self.assertGreaterEqual(len(self.v["raw_chains"]), 3)
        for r in self.v["raw_chains"]:
            with self.subTest(r["name"]):
                got = chain_keys(r["tokens"], r["block_tokens"], Key.from_hex(r["prev"]))
                self.assertEqual([k.hex() for k in got], r["keys"])

    def test_invalid_namespaces_name_the_field(self):
        self.assertGreaterEqual(len(self.v["invalid_namespaces"]), 8)
        for entry in self.v["invalid_namespaces"]:
            with self.subTest(entry["name"]):
                ns = namespace_from(entry["namespace"])
                with self.assertRaises(ValueError) as cm:
                    namespace_seed(ns)
                self.assertIn(entry["field"], str(cm.exception))
                with self.assertRaises(ValueError):
                    prefix_keys(ns, [1] * 32)


class ReferenceTest(unittest.TestCase):
    """The format implemented again from the spec, without the library."""

    @classmethod
    def setUpClass(cls):
        cls.v = load_vectors()

    def test_encoding_matches_the_vectors(self):
        for entry in self.v["namespaces"]:
            with self.subTest(entry["name"]):
                self.assertEqual(ref_encode(entry["namespace"]).hex(), entry["encoding_hex"])

    @unittest.skipIf(xxhash is None, "python3-xxhash is not installed")
    def test_hashes_match_the_vectors(self):
        seeds = {}
        for entry in self.v["namespaces"]:
            seed = ref_hash(ref_encode(entry["namespace"]))
            self.assertEqual(seed.hex(), entry["seed"], entry["name"])
            seeds[entry["name"]] = (seed, entry["namespace"]["block_tokens"])
        for c in self.v["chains"]:
            seed, block = seeds[c["namespace"]]
            self.assertEqual([k.hex() for k in ref_chain(seed, block, c["tokens"])], c["keys"])
        for r in self.v["raw_chains"]:
            got = ref_chain(Key.from_hex(r["prev"]), r["block_tokens"], r["tokens"])
            self.assertEqual([k.hex() for k in got], r["keys"], r["name"])

    @unittest.skipIf(xxhash is None, "python3-xxhash is not installed")
    def test_random_namespaces_and_chains_match_the_library(self):
        rng = random.Random(20240607)
        alphabet = "abcXYZ019-_/.é通🚀\u00a0"

        def text():
            return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))

        for i in range(60):
            tp_size, pp_size = rng.randrange(1, 9), rng.randrange(1, 5)
            d = {
                "model": text() or "m",
                "revision": text(),
                "kv_dtype": rng.choice(["fp16", "bf16", "fp8_e4m3", ""]),
                "kv_layout": text(),
                "tp_rank": rng.randrange(tp_size),
                "tp_size": tp_size,
                "pp_rank": rng.randrange(pp_size),
                "pp_size": pp_size,
                "block_tokens": rng.choice([1, 2, 3, 16, 64, 255, 256, 257, 513]),
                "tenant_salt": text(),
            }
            tokens = [rng.choice([0, U32_MAX, rng.randrange(2**32)]) for _ in range(rng.randrange(0, 1200))]
            with self.subTest(i=i, ns=d):
                seed = ref_hash(ref_encode(d))
                self.assertEqual(namespace_seed(namespace_from(d)), seed)
                self.assertEqual(
                    prefix_keys(namespace_from(d), tokens), ref_chain(seed, d["block_tokens"], tokens)
                )


class PropertyTest(unittest.TestCase):
    BASE = KeyNamespace(
        model="meta-llama/Llama-3.1-8B-Instruct",
        revision="main",
        kv_dtype="bf16",
        kv_layout="nhd-per-layer",
        tp_rank=1,
        tp_size=4,
        pp_rank=0,
        pp_size=2,
        block_tokens=16,
        tenant_salt="acme",
    )

    def test_each_field_changed_alone_changes_the_seed(self):
        import dataclasses

        changes = dict(
            model="other",
            revision="v2",
            kv_dtype="fp16",
            kv_layout="hnd",
            tp_rank=2,
            tp_size=8,
            pp_rank=1,
            pp_size=3,
            block_tokens=32,
            tenant_salt="",
        )
        self.assertEqual(set(changes), {f.name for f in dataclasses.fields(KeyNamespace)})
        seeds = {namespace_seed(self.BASE)}
        for field, value in changes.items():
            seeds.add(namespace_seed(dataclasses.replace(self.BASE, **{field: value})))
        self.assertEqual(len(seeds), len(changes) + 1)

    def test_length_prefixes_keep_field_boundaries(self):
        import dataclasses

        a = dataclasses.replace(self.BASE, model="ab", revision="c")
        b = dataclasses.replace(self.BASE, model="a", revision="bc")
        self.assertNotEqual(namespace_seed(a), namespace_seed(b))

    def test_str_and_utf8_bytes_are_the_same_namespace(self):
        import dataclasses

        a = dataclasses.replace(self.BASE, model="模型-é")
        b = dataclasses.replace(self.BASE, model="模型-é".encode("utf-8"))
        self.assertEqual(namespace_seed(a), namespace_seed(b))

    def test_chains_share_keys_exactly_as_far_as_their_full_blocks(self):
        seed = namespace_seed(self.BASE)
        rng = random.Random(5)
        a = [rng.randrange(128256) for _ in range(10 * 16 + 5)]
        ka = chain_keys(a, 16, seed)
        self.assertEqual(len(ka), 10)
        for pos in (0, 15, 16, 77, 159, 160):
            b = list(a)
            b[pos] ^= 1
            kb = chain_keys(b, 16, seed)
            shared = min(pos // 16, len(ka))
            self.assertEqual(ka[:shared], kb[:shared], pos)
            for i in range(shared, len(ka)):
                self.assertNotEqual(ka[i], kb[i], (pos, i))
        self.assertEqual(chain_keys(a + [7] * 48, 16, seed)[:10], ka)

    def test_extending_a_chain_equals_one_call(self):
        seed = namespace_seed(self.BASE)
        tokens = list(range(1000, 1000 + 9 * 16))
        whole = chain_keys(tokens, 16, seed)
        for k in range(1, 9):
            self.assertEqual(chain_keys(tokens[k * 16 :], 16, whole[k - 1]), whole[k:])
        self.assertEqual(chain_keys(tokens, 16, (seed.hi, seed.lo)), whole)

    def test_seed_is_the_same_in_a_fresh_process(self):
        code = (
            "import tokenmem; print(tokenmem.namespace_seed(tokenmem.KeyNamespace("
            "model='m', tenant_salt='t')).hex())"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True,
            env=dict(os.environ, PYTHONHASHSEED="random"),
        ).stdout.strip()
        self.assertEqual(out, namespace_seed(KeyNamespace(model="m", tenant_salt="t")).hex())


class InputTest(unittest.TestCase):
    SEED = Key(0x0123456789ABCDEF, 0xFEDCBA9876543210)
    TOKENS = [0, 1, 2, U32_MAX, 5, 6, 7, 8, 9, 10, 11, 12, 13]  # 3 blocks of 4 + 1

    def expected(self):
        return chain_keys(self.TOKENS, 4, self.SEED)

    def test_sequences_iterables_and_buffers_agree(self):
        want = self.expected()
        self.assertEqual(len(want), 3)
        forms = [
            tuple(self.TOKENS),
            iter(self.TOKENS),
            array.array("I", self.TOKENS),
            array.array("Q", self.TOKENS),
            array.array("l", self.TOKENS),
            memoryview(array.array("I", self.TOKENS)),
            memoryview(array.array("I", self.TOKENS).tobytes()).cast("I"),  # read-only
            memoryview(array.array("I", [9] + self.TOKENS))[1:],  # offset view
        ]
        for form in forms:
            with self.subTest(type(form).__name__):
                self.assertEqual(chain_keys(form, 4, self.SEED), want)

    def test_a_buffer_is_not_modified(self):
        tokens = array.array("I", self.TOKENS)
        chain_keys(tokens, 4, self.SEED)
        self.assertEqual(tokens.tolist(), self.TOKENS)
        tokens.append(1)  # no buffer export outlives the call

    def test_empty_and_partial_give_no_keys(self):
        self.assertEqual(chain_keys([], 16, self.SEED), [])
        self.assertEqual(chain_keys(array.array("I"), 16, self.SEED), [])
        self.assertEqual(chain_keys(list(range(15)), 16, self.SEED), [])

    def test_bad_tokens(self):
        with self.assertRaises(ValueError):
            chain_keys([1, -1, 2, 3], 4, self.SEED)
        with self.assertRaises(ValueError):
            chain_keys([1, 2**32, 2, 3], 4, self.SEED)
        with self.assertRaises(TypeError):
            chain_keys([1, 2.5, 2, 3], 4, self.SEED)
        with self.assertRaises(TypeError):
            chain_keys(array.array("d", [1.0] * 4), 4, self.SEED)
        with self.assertRaises(ValueError):
            chain_keys(memoryview(bytes(32)).cast("I", (2, 4)), 4, self.SEED)

    def test_bad_block_and_seed(self):
        for block in (0, -1, 2**32):
            with self.assertRaises(ValueError, msg=block):
                chain_keys(self.TOKENS, block, self.SEED)
        with self.assertRaises(TypeError):
            chain_keys(self.TOKENS, 4, "seed")
        with self.assertRaises(TypeError):
            chain_keys(self.TOKENS, 4, (1, 2, 3))
        with self.assertRaises(ValueError):
            chain_keys(self.TOKENS, 4, (2**64, 0))

    def test_bad_namespace_types(self):
        with self.assertRaises(TypeError):
            namespace_seed(KeyNamespace(model=5))
        with self.assertRaises(TypeError):
            namespace_seed(KeyNamespace(model="m", tp_size="2"))
        with self.assertRaises(ValueError):
            namespace_seed(KeyNamespace(model="m", tp_rank=2**32, tp_size=2**32))
        with self.assertRaises(ValueError):
            namespace_seed(KeyNamespace(model="m", revision="\ud800"))  # not encodable
        with self.assertRaises(TypeError):
            namespace_seed({"model": "m"})

    @unittest.skipIf(numpy is None, "numpy is not installed")
    def test_numpy_arrays(self):
        want = self.expected()
        for dtype in ("uint32", "int64", "uint64", ">u4", "<u4", ">i8"):
            with self.subTest(dtype):
                self.assertEqual(chain_keys(numpy.array(self.TOKENS, dtype=dtype), 4, self.SEED), want)
        small = [t % 2**31 for t in self.TOKENS]
        self.assertEqual(
            chain_keys(numpy.array(small, dtype=numpy.int32), 4, self.SEED),
            chain_keys(small, 4, self.SEED),
        )
        strided = numpy.zeros(2 * len(self.TOKENS), dtype=numpy.uint32)
        strided[::2] = self.TOKENS
        self.assertEqual(chain_keys(strided[::2], 4, self.SEED), want)
        readonly = numpy.array(self.TOKENS, dtype=numpy.uint32)
        readonly.setflags(write=False)
        self.assertEqual(chain_keys(readonly, 4, self.SEED), want)
        with self.assertRaises(ValueError):
            chain_keys(numpy.array([1, -2, 3, 4], dtype=numpy.int64), 4, self.SEED)
        with self.assertRaises(ValueError):
            chain_keys(numpy.zeros((2, 4), dtype=numpy.uint32), 4, self.SEED)
        with self.assertRaises(TypeError):
            chain_keys(numpy.zeros(4, dtype=numpy.float32), 4, self.SEED)


class KeyTest(unittest.TestCase):
    def test_hex_and_bytes(self):
        k = Key(0x0123456789ABCDEF, 0xFEDCBA9876543210)
        self.assertEqual(k.hex(), "0123456789abcdeffedcba9876543210")
        self.assertEqual(str(k), k.hex())
        self.assertEqual(Key.from_hex(k.hex().upper()), k)
        self.assertEqual(k.to_bytes(), bytes.fromhex(k.hex()))
        self.assertEqual(Key.from_bytes(k.to_bytes()), k)
        self.assertEqual(k, (0x0123456789ABCDEF, 0xFEDCBA9876543210))
        self.assertEqual(eval(repr(k), {"Key": Key}), k)

    def test_bad_hex(self):
        for text in ("", "0" * 31, "0" * 33, "g" * 32, "0x" + "0" * 30, " " + "0" * 31, "_" * 32):
            with self.subTest(text):
                with self.assertRaises(ValueError):
                    Key.from_hex(text)


class LibraryTest(unittest.TestCase):
    def run_python(self, code, env):
        return subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd="/"
        )

    def test_missing_library_is_a_clear_import_error(self):
        env = dict(os.environ, TOKENMEM_LIBRARY="/nonexistent/libtokenmem.so")
        r = self.run_python("import tokenmem", env)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("ImportError: tokenmem: cannot load libtokenmem.so", r.stderr)
        self.assertIn("/nonexistent/libtokenmem.so (missing)", r.stderr)

    def test_library_beside_the_package_is_found(self):
        package = pathlib.Path(tokenmem.__file__).resolve().parent
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copytree(package, pathlib.Path(tmp) / "tokenmem",
                            ignore=shutil.ignore_patterns("__pycache__", "*.so"))
            shutil.copy(_lib.path, pathlib.Path(tmp) / "tokenmem" / "libtokenmem.so")
            env = {k: v for k, v in os.environ.items() if k != "TOKENMEM_LIBRARY"}
            env["PYTHONPATH"] = tmp
            r = self.run_python(
                "import tokenmem, tokenmem._lib as l; print(l.path); "
                "print(tokenmem.KeyNamespace(model='m').seed().hex())",
                env,
            )
            self.assertEqual(r.returncode, 0, r.stderr)
            path, seed = r.stdout.split()
            self.assertEqual(path, str(pathlib.Path(tmp).resolve() / "tokenmem" / "libtokenmem.so"))
            self.assertEqual(seed, namespace_seed(KeyNamespace(model="m")).hex())

    @unittest.skipIf(shutil.which("nm") is None, "nm is not installed")
    def test_library_exports_only_the_c_abi(self):
        out = subprocess.run(
            ["nm", "-D", "--defined-only", _lib.path], check=True, capture_output=True, text=True
        ).stdout
        names = [line.split()[-1] for line in out.splitlines() if line.strip()]
        self.assertIn("tm_chain_keys", names)
        self.assertEqual([n for n in names if not n.startswith("tm_")], [])


if __name__ == "__main__":
    unittest.main()
