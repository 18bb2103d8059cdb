"""The Python side of the CUDA path (tokenmem.cuda over libtokenmem_cuda.so)
against a real agent. Without a CUDA device (as on the development
machines) it checks what can be checked: the library loads, registering a
pool is refused, a miss is a miss and a hit reports the failed device copy,
so the connector falls back to staging. Skipped when the library was not
built (no CUDA toolkit)."""

import unittest

import numpy as np

import engine_env as E
import tokenmem
import tokenmem.cuda as cuda_path

TM_NOT_FOUND, TM_FAILED_PRECONDITION, TM_INTERNAL = 1, 6, 10


class CudaPathTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.direct = cuda_path.load()
        if cls.direct is None:
            raise unittest.SkipTest("libtokenmem_cuda.so not built (no CUDA toolkit)")
        cls.agent = E.Agent(block_size="16KiB", pool_dram="4MiB").start()
        cls.agent.create_lease()

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()

    def test_without_a_device_the_path_says_so(self):
        lease_id, secret = self.agent.lease.split(":", 1)
        with tokenmem.Client.connect(self.agent.data, lease_id, secret) as client:
            pool = client.attach(self.agent.pool)
            pool.put((1, 1), b"k" * 16384)
            rc = self.direct.register_pool(pool)
            if rc == 0:
                self.skipTest("a CUDA device is present: covered by cuda_c_abi_test")
            self.assertEqual(rc, TM_FAILED_PRECONDITION)
            keys = np.array([[2, 2], [1, 1]], dtype=np.uint64)
            iovcnt = np.array([1, 1], dtype=np.uint64)
            iov = np.array([[0x1000, 16384], [0x2000, 16384]], dtype=np.uint64)  # never touched
            codes = np.zeros(2, dtype=np.int32)
            lengths = np.zeros(2, dtype=np.uint64)
            rc = self.direct.get_many_raw(pool, 2, keys.ctypes.data, iovcnt.ctypes.data,
                                          iov.ctypes.data, codes.ctypes.data, lengths.ctypes.data)
            self.assertEqual(codes[0], TM_NOT_FOUND)
            self.assertEqual(codes[1], TM_INTERNAL)
            self.assertEqual(rc, TM_INTERNAL)
            self.direct.unregister_pool(pool)


if __name__ == "__main__":
    unittest.main()
