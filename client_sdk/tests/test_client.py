"""tokenmem.Client / tokenmem.Pool (Python over the C ABI) against the fake
agent, run as a child process ($TOKENMEM_FAKE_AGENT).

Run with Debian's /usr/bin/python3 and TOKENMEM_LIBRARY pointing at
libtokenmem.so (CTest sets both). numpy cases are skipped without numpy.
"""

import array
import os
import shutil
import subprocess
import tempfile
import threading
import unittest

import tokenmem
from tokenmem import Client, Key, StatusCode, TokenmemError

try:
    import numpy as np
except ImportError:  # pragma: no cover - python3-numpy is installed in CI
    np = None

FAKE = os.environ.get("TOKENMEM_FAKE_AGENT")
NVME_KEY = Key(0x77, 0x77)


class FakeAgent:
    def __init__(self, *extra):
        self.dir = tempfile.mkdtemp(prefix="tmsdkpy.")
        self.socket = os.path.join(self.dir, "data.sock")
        self.proc = subprocess.Popen(
            [FAKE, "--socket", self.socket, "--lease", "lease1:secret1", "--pool", "p1",
             "--nvme-block", NVME_KEY.hex() + "=from nvme", *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = self.proc.stdout.readline()
        if line != b"ready\n":
            raise RuntimeError("fake agent did not start: %r" % line)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        self.proc.stdout.close()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@unittest.skipUnless(FAKE, "TOKENMEM_FAKE_AGENT is not set")
class ClientTest(unittest.TestCase):
    def setUp(self):
        self.agent = FakeAgent()
        self.client = Client.connect(self.agent.socket, "lease1", "secret1", timeout=5)
        self.pool = self.client.attach("p1")

    def tearDown(self):
        self.pool.close()
        self.client.close()
        self.agent.cleanup()

    def test_attach(self):
        self.assertEqual(self.pool.block_size, 4096)
        self.assertFalse(self.pool.read_only)
        self.assertTrue(self.client.connected)
        with self.assertRaises(TokenmemError) as e:
            self.client.attach("nope")
        self.assertEqual(e.exception.code, StatusCode.NOT_FOUND)

    def test_refused_lease(self):
        with self.assertRaises(TokenmemError) as e:
            Client.connect(self.agent.socket, "lease1:guess")
        self.assertEqual(e.exception.code, StatusCode.PERMISSION_DENIED)
        self.assertNotIn("guess", str(e.exception))

    def test_bytes_round_trip_and_miss(self):
        data = os.urandom(4096)
        self.pool.put(Key(1, 2), data)
        got = self.pool.get(Key(1, 2))
        self.assertIsInstance(got, bytes)
        self.assertEqual(got, data)
        self.assertIsNone(self.pool.get(Key(9, 9)))
        self.pool.put((1, 3), b"short")
        self.assertEqual(self.pool.get((1, 3)), b"short")
        self.pool.put((1, 4), b"")
        self.assertEqual(self.pool.get((1, 4)), b"")

    def test_key_forms(self):
        key = Key(0x0102030405060708, 0x090A0B0C0D0E0F10)
        self.pool.put(key, b"k")
        for form in (key, (key.hi, key.lo), key.to_bytes(), key.hex()):
            self.assertEqual(self.pool.get(form), b"k")
            self.assertIn(form, self.pool)
        with self.assertRaises(TypeError):
            self.pool.get(3.5)
        with self.assertRaises(ValueError):
            self.pool.get(b"too short")

    def test_buffers_in_and_out(self):
        data = os.urandom(3000)
        self.pool.put((2, 1), bytearray(data))
        self.pool.put((2, 2), memoryview(data))  # read-only source
        self.pool.put((2, 3), array.array("B", data))
        for lo in (1, 2, 3):
            out = bytearray(4096)
            self.assertEqual(self.pool.get((2, lo), out=out), 3000)
            self.assertEqual(bytes(out[:3000]), data)
            self.assertEqual(bytes(out[3000:]), bytes(1096))  # untouched
        backing = bytearray(5000)
        n = self.pool.get((2, 1), out=memoryview(backing)[1000:])
        self.assertEqual(n, 3000)
        self.assertEqual(bytes(backing[1000:4000]), data)
        self.assertEqual(bytes(backing[:1000]), bytes(1000))

    def test_destination_errors(self):
        self.pool.put((3, 1), b"x" * 100)
        with self.assertRaises(TokenmemError) as e:
            self.pool.get((3, 1), out=bytearray(10))
        self.assertEqual(e.exception.code, StatusCode.INVALID_ARGUMENT)
        self.assertEqual(e.exception.lengths, [100])
        with self.assertRaises(TypeError):
            self.pool.get((3, 1), out=b"read-only" * 20)
        with self.assertRaises(TypeError):
            self.pool.put((3, 2), 12345)
        with self.assertRaises(TokenmemError) as e:
            self.pool.put((3, 3), bytes(4097))
        self.assertEqual(e.exception.code, StatusCode.INVALID_ARGUMENT)

    @unittest.skipUnless(np, "numpy is not installed")
    def test_numpy_arrays(self):
        src = np.arange(1024, dtype=np.float32).reshape(32, 32)  # 4096 bytes
        self.pool.put((4, 1), src)
        dst = np.zeros((32, 32), dtype=np.float32)
        self.assertEqual(self.pool.get((4, 1), out=dst), 4096)
        np.testing.assert_array_equal(dst, src)
        half = np.zeros(2048, dtype=np.float16)
        self.assertEqual(self.pool.get((4, 1), out=half), 4096)
        self.assertEqual(half.tobytes(), src.tobytes())
        self.assertEqual(self.pool.get((4, 1)), src.tobytes())
        ro = np.frombuffer(bytes(range(256)) * 4, dtype=np.uint8)  # read-only array
        self.assertFalse(ro.flags.writeable)
        self.pool.put((4, 2), ro)
        self.assertEqual(self.pool.get((4, 2)), ro.tobytes())
        with self.assertRaises(ValueError):
            self.pool.get((4, 1), out=np.zeros((64, 64), dtype=np.float32)[:, :16])
        with self.assertRaises(TypeError):
            self.pool.get((4, 1), out=ro)

    @unittest.skipUnless(np, "numpy is not installed")
    def test_scatter_gather_per_layer(self):
        layers = 4
        blocks = 6
        src = [[np.random.randint(0, 255, 1024, dtype=np.uint8) for _ in range(layers)]
               for _ in range(blocks)]
        self.pool.put_many([((5, b), src[b]) for b in range(blocks)])
        dst = [[np.zeros(1024, dtype=np.uint8) for _ in range(layers)] for _ in range(blocks)]
        lengths = self.pool.get_many([((5, b), dst[b]) for b in range(blocks)] + [((5, 99), [])])
        self.assertEqual(lengths, [4096] * blocks + [None])
        for b in range(blocks):
            for layer in range(layers):
                np.testing.assert_array_equal(dst[b][layer], src[b][layer])
        # The same blocks as bytes, cut differently.
        whole = self.pool.get_many([((5, b), None) for b in range(blocks)])
        for b in range(blocks):
            self.assertEqual(whole[b], b"".join(x.tobytes() for x in src[b]))
        self.pool.put((5, 100), [b"ab", bytearray(b"cd"), memoryview(b"ef")])
        self.assertEqual(self.pool.get((5, 100)), b"abcdef")
        a, b = bytearray(3), bytearray(3)
        self.assertEqual(self.pool.get((5, 100), out=[a, b]), 6)
        self.assertEqual((a, b), (bytearray(b"abc"), bytearray(b"def")))

    def test_batch_failures_report_each_item(self):
        with self.assertRaises(TokenmemError) as e:
            self.pool.put_many([((6, 1), b"fine"), ((6, 2), bytes(5000))])
        self.assertEqual(e.exception.codes, [StatusCode.OK, StatusCode.INVALID_ARGUMENT])
        self.assertEqual(self.pool.get((6, 1)), b"fine")

    def test_nvme_block_is_fetched(self):
        self.assertIn(NVME_KEY, self.pool)
        self.assertEqual(self.pool.get(NVME_KEY), b"from nvme")

    def test_lookup_pin_remove(self):
        chain = tokenmem.chain_keys(list(range(64)), 16, Key(0, 1))
        for k in chain[:3]:
            self.pool.put(k, k.to_bytes())
        self.assertEqual(self.pool.lookup_prefix(chain), 3)
        self.assertEqual(self.pool.lookup_prefix([]), 0)
        self.assertTrue(self.pool.pin(chain[0]))
        self.assertFalse(self.pool.pin(chain[3]))
        self.assertTrue(self.pool.unpin(chain[0]))
        self.assertEqual(self.pool.remove_many(chain[:4]), [True, True, True, False])
        self.assertFalse(self.pool.remove(chain[0]))
        self.assertFalse(self.pool.contains(chain[0]))

    def test_threads(self):
        errors = []

        def work(t):
            try:
                for i in range(30):
                    data = os.urandom(100 + i)
                    self.pool.put((7, t * 100 + i), data)
                    if self.pool.get((7, t * 100 + i)) != data:
                        errors.append((t, i))
                    self.pool.remove((7, t * 100 + i))  # the fake pool holds 64 blocks
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        self.assertEqual(errors, [])

    def test_agent_death(self):
        self.pool.put((8, 1), b"kept")
        self.agent.stop()
        with self.assertRaises(TokenmemError) as e:
            self.pool.put((8, 2), b"lost")
        self.assertEqual(e.exception.code, StatusCode.UNAVAILABLE)
        self.assertFalse(self.client.connected)
        self.assertEqual(self.pool.get((8, 1)), b"kept")  # mapped memory still reads

    def test_closed_handles(self):
        self.pool.close()
        with self.assertRaises(ValueError):
            self.pool.get((1, 1))
        self.client.close()
        with self.assertRaises(ValueError):
            self.client.attach("p1")


@unittest.skipUnless(FAKE, "TOKENMEM_FAKE_AGENT is not set")
class FromEnvTest(unittest.TestCase):
    VARS = ("TOKENMEM_AGENT_SOCKET", "TOKENMEM_LEASE", "TOKENMEM_DEFAULT_POOL",
            "TOKENMEM_QUOTA_BYTES")

    def setUp(self):
        self.saved = {v: os.environ.pop(v, None) for v in self.VARS}

    def tearDown(self):
        for v, value in self.saved.items():
            os.environ.pop(v, None)
            if value is not None:
                os.environ[v] = value

    def test_from_env(self):
        with self.assertRaises(TokenmemError) as e:
            Client.from_env()
        self.assertEqual(e.exception.code, StatusCode.INVALID_ARGUMENT)
        self.assertIn("TOKENMEM_AGENT_SOCKET", e.exception.message)
        agent = FakeAgent()
        try:
            os.environ["TOKENMEM_AGENT_SOCKET"] = agent.socket
            os.environ["TOKENMEM_LEASE"] = "lease1-no-colon"
            with self.assertRaises(TokenmemError) as e:
                Client.from_env()
            self.assertIn("TOKENMEM_LEASE", e.exception.message)
            os.environ["TOKENMEM_LEASE"] = "lease1:secret1"
            os.environ["TOKENMEM_DEFAULT_POOL"] = "p1"
            with Client.from_env() as client, client.attach() as pool:
                pool.put((1, 1), b"env")
                self.assertEqual(pool.get((1, 1)), b"env")
        finally:
            agent.cleanup()


@unittest.skipUnless(FAKE, "TOKENMEM_FAKE_AGENT is not set")
class ReadOnlyTest(unittest.TestCase):
    def test_read_only_lease(self):
        agent = FakeAgent("--read-only")
        try:
            with Client.connect(agent.socket, "lease1:secret1") as client:
                pool = client.attach("p1")
                self.assertTrue(pool.read_only)
                self.assertEqual(pool.get(NVME_KEY), b"from nvme")
                with self.assertRaises(TokenmemError) as e:
                    pool.put((1, 1), b"no")
                self.assertEqual(e.exception.code, StatusCode.PERMISSION_DENIED)
                pool.close()
        finally:
            agent.cleanup()


if __name__ == "__main__":
    unittest.main()
