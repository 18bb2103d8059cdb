"""tokenmem.Client over the remote path (Python over the C ABI), against
the agent's remote server run as a child process ($TOKENMEM_REMOTE_SERVER,
tests/remote_server_main.cc).

Run with Debian's /usr/bin/python3 and TOKENMEM_LIBRARY pointing at
libtokenmem.so (CTest sets both).
"""

import os
import subprocess
import time
import unittest

from tokenmem import Client, Key, StatusCode, TokenmemError

SERVER = os.environ.get("TOKENMEM_REMOTE_SERVER")


class RemoteServer:
    def __init__(self):
        self.proc = subprocess.Popen([SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = self.proc.stdout.readline().decode()
        parts = line.split()
        if len(parts) != 3:
            self.stop()
            raise RuntimeError("remote server did not start: %r" % line)
        self.address, self.lease_id, self.secret = parts

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        self.proc.stdout.close()


@unittest.skipUnless(SERVER, "TOKENMEM_REMOTE_SERVER is not set")
class RemoteClientTest(unittest.TestCase):
    def setUp(self):
        self.server = RemoteServer()
        self.client = Client.connect_remote(self.server.address, self.server.lease_id,
                                            self.server.secret, timeout=5)
        self.pool = self.client.attach("p1")

    def tearDown(self):
        self.pool.close()
        self.client.close()
        self.server.stop()

    def test_remote_round_trip(self):
        self.assertTrue(self.client.remote)
        self.assertTrue(self.client.connected)
        self.assertEqual(self.pool.block_size, 4096)
        data = os.urandom(4096)
        self.pool.put(Key(1, 2), data)
        self.assertEqual(self.pool.get(Key(1, 2)), data)
        self.assertIsNone(self.pool.get(Key(9, 9)))
        out = bytearray(4096)
        self.assertEqual(self.pool.get(Key(1, 2), out=out), 4096)
        self.assertEqual(bytes(out), data)

    def test_pieces_batches_and_big_blocks(self):
        pieces = [os.urandom(1000), os.urandom(3000)]
        self.pool.put_many([(Key(3, i), pieces) for i in range(300)])
        outs = [[bytearray(2000), bytearray(2000)] for _ in range(300)]
        got = self.pool.get_many([(Key(3, i), outs[i]) for i in range(300)])
        self.assertEqual(got, [4000] * 300)
        self.assertEqual(bytes(outs[7][0]) + bytes(outs[7][1][:2000]), b"".join(pieces))
        with self.assertRaises(TokenmemError) as e:
            self.pool.get(Key(3, 0), out=bytearray(10))
        self.assertEqual(e.exception.code, StatusCode.INVALID_ARGUMENT)
        self.assertEqual(e.exception.lengths, [4000])

        big = self.client.attach("big")
        block = os.urandom(1 << 20)
        big.put(Key(4, 4), block)
        self.assertEqual(big.get(Key(4, 4)), block)
        big.close()

    def test_presence_removal_and_pins(self):
        keys = [Key(5, i) for i in range(6)]
        for k in keys[:4]:
            self.pool.put(k, b"x" * 100)
        self.assertEqual(self.pool.lookup_prefix(keys), 4)
        self.assertIn(keys[0], self.pool)
        self.assertNotIn(keys[5], self.pool)
        self.assertTrue(self.pool.remove(keys[0]))
        self.assertFalse(self.pool.remove(keys[0]))
        with self.assertRaises(TokenmemError) as e:
            self.pool.pin(keys[1])
        self.assertEqual(e.exception.code, StatusCode.FAILED_PRECONDITION)

    def test_refusals(self):
        with self.assertRaises(TokenmemError) as e:
            Client.connect_remote(self.server.address, self.server.lease_id + ":guess")
        self.assertEqual(e.exception.code, StatusCode.PERMISSION_DENIED)
        self.assertNotIn("guess", str(e.exception))
        with self.assertRaises(TokenmemError) as e:
            Client.connect_remote(self.server.address, "nobody:secret")
        self.assertEqual(e.exception.code, StatusCode.NOT_FOUND)

    def test_from_env_takes_the_address(self):
        saved = {k: os.environ.get(k) for k in
                 ("TOKENMEM_AGENT_SOCKET", "TOKENMEM_AGENT_ADDRESS", "TOKENMEM_LEASE",
                  "TOKENMEM_DEFAULT_POOL")}
        try:
            os.environ.pop("TOKENMEM_AGENT_SOCKET", None)
            os.environ["TOKENMEM_AGENT_ADDRESS"] = self.server.address
            os.environ["TOKENMEM_LEASE"] = self.server.lease_id + ":" + self.server.secret
            os.environ["TOKENMEM_DEFAULT_POOL"] = "p1"
            with Client.from_env() as client:
                self.assertTrue(client.remote)
                with client.attach() as pool:
                    pool.put(Key(6, 6), b"env")
                    self.assertEqual(self.pool.get(Key(6, 6)), b"env")
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def test_unavailable_once_the_agent_is_gone(self):
        self.pool.put(Key(7, 7), b"soon gone")
        self.server.stop()
        start = time.monotonic()
        with self.assertRaises(TokenmemError) as e:
            self.pool.get(Key(7, 7))
        self.assertEqual(e.exception.code, StatusCode.UNAVAILABLE)
        self.assertLess(time.monotonic() - start, 7)
        self.assertFalse(self.client.connected)


if __name__ == "__main__":
    unittest.main()
