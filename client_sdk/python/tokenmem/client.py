"""The tokenmem client: put and get KV blocks through the node's agent.

A Client is a session with the agent over its data socket, proved by a
lease; attach() maps a pool into this process, so a get is a lookup in
shared memory and one copy straight into the destination, with no request
to the agent. Pure Python over libtokenmem's C ABI (tokenmem/tokenmem.h)
with ctypes; CPython only (Debian's python3 is).

    client = Client.from_env()          # TOKENMEM_AGENT_SOCKET, TOKENMEM_LEASE
    pool = client.attach("llama3-8b")   # or attach() for TOKENMEM_DEFAULT_POOL
    pool.put(key, kv_bytes)
    n = pool.get(key, out=numpy_array)  # bytes written, or None on a miss

Keys: a tokenmem.keys.Key, an (hi, lo) pair of ints, 16 bytes (Key.to_bytes,
big-endian) or 32 hex digits.

Buffers: sources are any object with the buffer protocol (bytes, bytearray,
memoryview, array.array, numpy arrays, ...), C-contiguous; destinations are
writable ones. The library reads and writes them in place: a get copies the
block once, into the destination; a put copies it once, into the pool. A
block may be given as a list of buffers (for example one per layer): its
bytes are their concatenation, in order.

Errors raise TokenmemError with .code (a StatusCode) and the library's
message; a miss is not an error (get returns None, remove returns False).
StatusCode.UNAVAILABLE means the agent is gone: the session is over, make a
new Client (blocks already mapped stay readable meanwhile).

Thread safety: a Client and its Pools may be used from many threads; the
library releases the GIL during every call.
"""

import ctypes
import enum
import operator
import os
from typing import Iterable, List, Optional, Sequence, Tuple

from . import _lib
from .keys import Key

__all__ = ["Client", "Pool", "StatusCode", "TokenmemError"]

_c = ctypes
_U64_MAX = 2**64 - 1


class StatusCode(enum.IntEnum):
    """tm_status / tokenmem::StatusCode values."""

    OK = 0
    NOT_FOUND = 1
    INVALID_ARGUMENT = 2
    ALREADY_EXISTS = 3
    RESOURCE_EXHAUSTED = 4
    PERMISSION_DENIED = 5
    FAILED_PRECONDITION = 6
    CORRUPTION = 7
    IO_ERROR = 8
    UNAVAILABLE = 9
    INTERNAL = 10


def _status(code: int):
    try:
        return StatusCode(code)
    except ValueError:
        return code


class TokenmemError(Exception):
    """A failed call. code: a StatusCode; message: what the library said.

    Batched calls also set codes (a list, one StatusCode per item) and, for
    gets and puts, lengths.
    """

    def __init__(self, code: int, message: str, codes=None, lengths=None):
        self.code = _status(code)
        self.message = message
        self.codes = codes
        self.lengths = lengths
        name = self.code.name if isinstance(self.code, StatusCode) else str(code)
        super().__init__("%s: %s" % (name, message) if message else name)


class _Iovec(_c.Structure):
    _fields_ = [("data", _c.c_void_p), ("len", _c.c_size_t)]


_Key = _lib.TmKey
_KeyP = _c.POINTER(_Key)
_Handle = _c.c_void_p


def _declare(lib):
    table = {
        "tm_client_connect": (_c.c_int, [_c.c_char_p, _c.c_char_p, _c.c_char_p, _c.c_uint32,
                                         _c.POINTER(_Handle)]),
        "tm_client_from_env": (_c.c_int, [_c.POINTER(_Handle)]),
        "tm_client_close": (None, [_Handle]),
        "tm_client_connected": (_c.c_int, [_Handle]),
        "tm_pool_attach": (_c.c_int, [_Handle, _c.c_char_p, _c.POINTER(_Handle)]),
        "tm_pool_close": (None, [_Handle]),
        "tm_pool_block_size": (_c.c_uint64, [_Handle]),
        "tm_pool_read_only": (_c.c_int, [_Handle]),
        "tm_put": (_c.c_int, [_Handle, _KeyP, _c.c_void_p, _c.c_size_t]),
        "tm_get": (_c.c_int, [_Handle, _KeyP, _c.c_void_p, _c.c_size_t,
                              _c.POINTER(_c.c_size_t)]),
        "tm_put_many": (_c.c_int, [_Handle, _c.c_size_t, _KeyP, _c.POINTER(_c.c_size_t),
                                   _c.POINTER(_Iovec), _c.POINTER(_c.c_int),
                                   _c.POINTER(_c.c_size_t)]),
        "tm_get_many": (_c.c_int, [_Handle, _c.c_size_t, _KeyP, _c.POINTER(_c.c_size_t),
                                   _c.POINTER(_Iovec), _c.POINTER(_c.c_int),
                                   _c.POINTER(_c.c_size_t)]),
        "tm_contains": (_c.c_int, [_Handle, _KeyP]),
        "tm_lookup_prefix": (_c.c_size_t, [_Handle, _KeyP, _c.c_size_t]),
        "tm_remove": (_c.c_int, [_Handle, _KeyP, _c.c_size_t, _c.POINTER(_c.c_int)]),
        "tm_pin": (_c.c_int, [_Handle, _KeyP, _c.c_size_t, _c.POINTER(_c.c_int)]),
        "tm_unpin": (_c.c_int, [_Handle, _KeyP, _c.c_size_t, _c.POINTER(_c.c_int)]),
        "tm_last_error": (_c.c_char_p, []),
    }
    try:
        for name, (restype, argtypes) in table.items():
            fn = getattr(lib, name)
            fn.restype = restype
            fn.argtypes = argtypes
    except AttributeError as e:
        raise ImportError(
            "tokenmem: %s lacks a client function (%s); it is older than this package"
            % (_lib.path, e)
        ) from None
    return lib


_tm = _declare(_lib.lib)


def _raise(code: int, **extra):
    # tm_last_error is per thread and ctypes runs the call on this thread.
    message = (_tm.tm_last_error() or b"").decode("utf-8", "replace")
    raise TokenmemError(code, message, **extra)


# ---- keys -----------------------------------------------------------------


def _key_halves(key) -> Tuple[int, int]:
    if isinstance(key, (bytes, bytearray)):
        if len(key) != 16:
            raise ValueError("a key given as bytes is 16 bytes, got %d" % len(key))
        k = Key.from_bytes(bytes(key))
        return k.hi, k.lo
    if isinstance(key, str):
        k = Key.from_hex(key)
        return k.hi, k.lo
    try:
        hi, lo = key
        hi, lo = operator.index(hi), operator.index(lo)
    except (TypeError, ValueError):
        raise TypeError(
            "a key is a Key, an (hi, lo) pair of ints, 16 bytes or 32 hex digits; got %s"
            % type(key).__name__
        ) from None
    if not (0 <= hi <= _U64_MAX and 0 <= lo <= _U64_MAX):
        raise ValueError("key halves must be in [0, 2**64 - 1]")
    return hi, lo


def _key(key) -> _Key:
    return _Key(*_key_halves(key))


def _key_array(keys) -> Tuple[object, int]:
    keys = list(keys)
    arr = (_Key * max(len(keys), 1))()
    for i, k in enumerate(keys):
        arr[i].hi, arr[i].lo = _key_halves(k)
    return arr, len(keys)


# ---- buffers --------------------------------------------------------------


class _PyBuffer(_c.Structure):
    """CPython's Py_buffer, for read-only buffers that ctypes cannot share."""

    _fields_ = [
        ("buf", _c.c_void_p),
        ("obj", _c.c_void_p),
        ("len", _c.c_ssize_t),
        ("itemsize", _c.c_ssize_t),
        ("readonly", _c.c_int),
        ("ndim", _c.c_int),
        ("format", _c.c_char_p),
        ("shape", _c.c_void_p),
        ("strides", _c.c_void_p),
        ("suboffsets", _c.c_void_p),
        ("internal", _c.c_void_p),
    ]


_api = _c.pythonapi
_api.PyObject_GetBuffer.argtypes = [_c.py_object, _c.POINTER(_PyBuffer), _c.c_int]
_api.PyObject_GetBuffer.restype = _c.c_int
_api.PyBuffer_Release.argtypes = [_c.POINTER(_PyBuffer)]
_api.PyBuffer_Release.restype = None
_api.PyBytes_FromStringAndSize.argtypes = [_c.c_void_p, _c.c_ssize_t]
_api.PyBytes_FromStringAndSize.restype = _c.py_object
_api.PyBytes_AsString.argtypes = [_c.py_object]
_api.PyBytes_AsString.restype = _c.c_void_p
_PyBUF_SIMPLE = 0


class _Pinned:
    """Addresses of buffers, held (exported) until release()."""

    def __init__(self):
        self._keep = []
        self._views = []

    def address(self, obj, writable: bool) -> Tuple[Optional[int], int]:
        """(address, length) of obj's bytes, in place; None for 0 bytes."""
        if isinstance(obj, bytes) and not writable:
            self._keep.append(obj)
            return _c.cast(_c.c_char_p(obj), _c.c_void_p).value, len(obj)
        try:
            view = memoryview(obj)
        except TypeError:
            raise TypeError(
                "expected an object with the buffer protocol, got %s" % type(obj).__name__
            ) from None
        if not view.c_contiguous:
            raise ValueError("buffers must be C-contiguous")
        n = view.nbytes
        if view.readonly:
            if writable:
                raise TypeError("a destination must be writable, got a read-only %s"
                                % type(obj).__name__)
            if n == 0:
                return None, 0
            pb = _PyBuffer()
            _api.PyObject_GetBuffer(view, _c.byref(pb), _PyBUF_SIMPLE)
            self._views.append(pb)
            return pb.buf, n
        if n == 0:
            return None, 0
        if view.ndim != 1 or view.format != "B":
            view = view.cast("B")
        arr = (_c.c_char * n).from_buffer(view)  # shares the memory; blocks resizing
        self._keep.append(arr)
        return _c.addressof(arr), n

    def release(self):
        for pb in self._views:
            _api.PyBuffer_Release(_c.byref(pb))
        self._views.clear()
        self._keep.clear()


def _pieces(data) -> list:
    """A block's buffers: data itself, or the items of a list/tuple of buffers."""
    if isinstance(data, (list, tuple)):
        return list(data)
    return [data]


class _Fresh:
    """A new bytes object of n bytes that the library fills before anyone
    else sees it: a get without a destination then copies the block once."""

    def __init__(self, n: int):
        self.data = _api.PyBytes_FromStringAndSize(None, n)
        self.address = _api.PyBytes_AsString(self.data)
        self.length = n


# ---- client and pools -----------------------------------------------------


class Client:
    """A session with the node's tokenmem agent. Use connect() or from_env()."""

    def __init__(self, handle):
        self._h = handle

    @classmethod
    def connect(cls, socket_path: str, lease_id: str, lease_secret: Optional[str] = None,
                timeout: float = 10.0) -> "Client":
        """Connects to the agent's data socket with a lease.

        lease_id may be "ID:SECRET" when lease_secret is omitted. timeout
        (seconds) bounds each request to the agent.
        """
        if lease_secret is None:
            lease_id, sep, lease_secret = str(lease_id).partition(":")
            if not sep:
                raise ValueError("lease must be ID:SECRET, or pass lease_secret")
        timeout_ms = int(timeout * 1000)
        if timeout_ms <= 0 or timeout_ms > 0xFFFFFFFF:
            raise ValueError("timeout must be positive and below 49 days")
        h = _Handle()
        rc = _tm.tm_client_connect(_text(os.fsencode(socket_path), "socket path"), _text(lease_id, "lease id"),
                                   _text(lease_secret, "lease secret"), timeout_ms, _c.byref(h))
        if rc != 0:
            _raise(rc)
        return cls(h)

    @classmethod
    def from_env(cls) -> "Client":
        """Connects with TOKENMEM_AGENT_SOCKET and TOKENMEM_LEASE ("ID:SECRET");
        TOKENMEM_DEFAULT_POOL names what attach() attaches by default.
        TokenmemError(INVALID_ARGUMENT) names a missing or malformed variable."""
        h = _Handle()
        rc = _tm.tm_client_from_env(_c.byref(h))
        if rc != 0:
            _raise(rc)
        return cls(h)

    def attach(self, pool: Optional[str] = None) -> "Pool":
        """Maps the pool (None: TOKENMEM_DEFAULT_POOL) and returns it."""
        self._check()
        h = _Handle()
        name = None if pool is None else _text(pool, "pool name")
        rc = _tm.tm_pool_attach(self._h, name, _c.byref(h))
        if rc != 0:
            _raise(rc)
        return Pool(h, pool)

    @property
    def connected(self) -> bool:
        """False once the session with the agent is over."""
        return self._h is not None and bool(_tm.tm_client_connected(self._h))

    def close(self):
        """Ends the session; pools attached stay usable until closed."""
        if self._h is not None:
            _tm.tm_client_close(self._h)
            self._h = None

    def _check(self):
        if self._h is None:
            raise ValueError("the client is closed")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may be gone
            pass


class Pool:
    """One attached pool. Obtain it from Client.attach()."""

    def __init__(self, handle, name):
        self._h = handle
        self.name = name
        self.block_size = int(_tm.tm_pool_block_size(handle))
        self.read_only = bool(_tm.tm_pool_read_only(handle))

    # -- single blocks --

    def put(self, key, data) -> None:
        """Stores data (a buffer, or a list of buffers concatenated) under key,
        replacing any block of that key. Raises TokenmemError
        (INVALID_ARGUMENT: larger than block_size; RESOURCE_EXHAUSTED;
        PERMISSION_DENIED: read-only lease; UNAVAILABLE)."""
        self._check()
        if isinstance(data, (list, tuple)):
            self.put_many([(key, data)])
            return
        k = _key(key)
        pins = _Pinned()
        try:
            addr, n = pins.address(data, writable=False)
            rc = _tm.tm_put(self._h, _c.byref(k), addr, n)
        finally:
            pins.release()
        if rc != 0:
            _raise(rc)

    def get(self, key, out=None):
        """The block of key, or None on a miss.

        Without out: returns the block as bytes. With out (a writable buffer,
        or a list of them filled in order): copies the block into it and
        returns its length; the rest of out is untouched. Raises
        TokenmemError(INVALID_ARGUMENT) when out is too small (nothing is
        copied; .lengths[0] is the size needed).
        """
        self._check()
        if out is None:
            return self.get_many([(key, None)])[0]
        if isinstance(out, (list, tuple)):
            return self.get_many([(key, out)])[0]
        k = _key(key)
        n = _c.c_size_t(0)
        pins = _Pinned()
        try:
            addr, cap = pins.address(out, writable=True)
            rc = _tm.tm_get(self._h, _c.byref(k), addr, cap, _c.byref(n))
        finally:
            pins.release()
        if rc == StatusCode.NOT_FOUND:
            return None
        if rc != 0:
            _raise(rc, codes=[_status(rc)], lengths=[n.value])
        return n.value

    # -- batches --

    def put_many(self, items: Iterable[Tuple[object, object]]) -> None:
        """Stores many blocks in one call: items are (key, buffer) or
        (key, [buffers...]). Raises TokenmemError when any block failed: its
        .codes says which (every other block was still stored)."""
        self._check()
        self._many(_tm.tm_put_many, items, writable=False)

    def get_many(self, items: Sequence[Tuple[object, object]]) -> List[object]:
        """Reads many blocks in one call. items are (key, out) with out a
        writable buffer, a list of them, or None. Returns one entry per item:
        None for a miss; else the length written (out given) or the block as
        bytes (out None). Raises TokenmemError when a block failed other
        than by a miss (.codes, .lengths per item)."""
        self._check()
        items = list(items)
        prepared = [(key, _Fresh(self.block_size) if out is None else out) for key, out in items]
        codes, lengths = self._many(_tm.tm_get_many, prepared, writable=True)
        result = []
        for (key, out), code, length in zip(prepared, codes, lengths):
            if code == StatusCode.NOT_FOUND:
                result.append(None)
            elif isinstance(out, _Fresh):
                result.append(out.data if length == out.length else out.data[:length])
            else:
                result.append(length)
        return result

    def _many(self, fn, items, writable):
        items = list(items)
        n = len(items)
        keys = (_Key * max(n, 1))()
        iovcnt = (_c.c_size_t * max(n, 1))()
        flat = []
        pins = _Pinned()
        try:
            for i, (key, data) in enumerate(items):
                keys[i].hi, keys[i].lo = _key_halves(key)
                if isinstance(data, _Fresh):
                    flat.append((data.address, data.length))
                    iovcnt[i] = 1
                    continue
                pieces = _pieces(data)
                iovcnt[i] = len(pieces)
                for p in pieces:
                    flat.append(pins.address(p, writable))
            iov = (_Iovec * max(len(flat), 1))()
            for j, (addr, length) in enumerate(flat):
                iov[j].data = addr
                iov[j].len = length
            codes = (_c.c_int * max(n, 1))()
            lengths = (_c.c_size_t * max(n, 1))()
            rc = fn(self._h, n, keys, iovcnt, iov, codes, lengths)
        finally:
            pins.release()
        code_list = [_status(c) for c in codes[:n]]
        length_list = list(lengths[:n])
        if rc != 0:
            _raise(rc, codes=code_list, lengths=length_list)
        return code_list, length_list

    # -- presence --

    def contains(self, key) -> bool:
        """True when the pool holds key in any tier. Local; never blocks."""
        self._check()
        rc = _tm.tm_contains(self._h, _c.byref(_key(key)))
        if rc not in (0, StatusCode.NOT_FOUND):
            _raise(rc)
        return rc == 0

    __contains__ = contains

    def lookup_prefix(self, keys: Iterable[object]) -> int:
        """How many leading keys (a chain) the pool holds. When some are on
        NVMe the agent starts bringing them into memory. Never raises for
        absent keys."""
        self._check()
        arr, n = _key_array(keys)
        return int(_tm.tm_lookup_prefix(self._h, arr, n))

    # -- removal and pins --

    def remove(self, key) -> bool:
        """Removes the block; False when the pool did not hold it."""
        return self._keys(_tm.tm_remove, [key])[0]

    def pin(self, key) -> bool:
        """Keeps the block in memory until unpin; False when absent."""
        return self._keys(_tm.tm_pin, [key])[0]

    def unpin(self, key) -> bool:
        """False when the block is absent."""
        return self._keys(_tm.tm_unpin, [key])[0]

    def remove_many(self, keys) -> List[bool]:
        return self._keys(_tm.tm_remove, keys)

    def pin_many(self, keys) -> List[bool]:
        return self._keys(_tm.tm_pin, keys)

    def unpin_many(self, keys) -> List[bool]:
        return self._keys(_tm.tm_unpin, keys)

    def _keys(self, fn, keys):
        self._check()
        arr, n = _key_array(keys)
        codes = (_c.c_int * max(n, 1))()
        rc = fn(self._h, arr, n, codes)
        code_list = [_status(c) for c in codes[:n]]
        if rc != 0:
            _raise(rc, codes=code_list)
        return [c == StatusCode.OK for c in code_list]

    # -- lifetime --

    def close(self):
        """Releases the pool; it is unmapped when its last handle goes."""
        if self._h is not None:
            _tm.tm_pool_close(self._h)
            self._h = None

    def _check(self):
        if self._h is None:
            raise ValueError("the pool is closed")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may be gone
            pass


def _text(value, what: str) -> bytes:
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        data = value.encode("utf-8")
    else:
        raise TypeError("%s must be str or bytes, not %s" % (what, type(value).__name__))
    if b"\0" in data:
        raise ValueError("%s contains a NUL byte" % what)
    return data


# ---- raw batches: addresses in, codes out (for engine connectors) ----------
#
# The calls above take Python buffers and check them; an engine moving
# thousands of per-layer pieces per step wants to hand the library arrays it
# built itself (with numpy, from tensor data pointers) in one call. These
# take plain integer addresses and check nothing: the caller keeps every
# array alive and correctly sized for the call, exactly as the C ABI
# (tokenmem/tokenmem.h) says.
#   keys:    n tm_key, 16 bytes each (hi then lo, native uint64)
#   iovcnt:  n size_t
#   iov:     sum(iovcnt) tm_iovec (address, length as native uint64 pairs)
#   codes:   n int (written)
#   lengths: n size_t (written), or 0
# They return the call's tm_status (0 when every block succeeded or missed;
# otherwise the first failure's code) and never raise for a block's result:
# read the codes. last_error() gives the message of this thread's last call.

_RAW_VOIDS = {
    "tm_get_many": [_Handle, _c.c_size_t] + [_c.c_void_p] * 5,
    "tm_put_many": [_Handle, _c.c_size_t] + [_c.c_void_p] * 5,
    "tm_lookup_prefix": [_Handle, _c.c_void_p, _c.c_size_t],
}
_raw = {}
for _name, _args in _RAW_VOIDS.items():
    _fn = _lib.lib[_name]  # a separate function object: its argtypes are ours alone
    _fn.argtypes = _args
    _fn.restype = _c.c_size_t if _name == "tm_lookup_prefix" else _c.c_int
    _raw[_name] = _fn


def get_many_raw(pool: "Pool", n: int, keys: int, iovcnt: int, iov: int, codes: int,
                 lengths: int = 0) -> int:
    """tm_get_many over caller-built arrays (addresses); returns its tm_status."""
    pool._check()
    return _raw["tm_get_many"](pool._h, n, keys, iovcnt, iov, codes, lengths or None)


def put_many_raw(pool: "Pool", n: int, keys: int, iovcnt: int, iov: int, codes: int,
                 lengths: int = 0) -> int:
    """tm_put_many over caller-built arrays (addresses); returns its tm_status."""
    pool._check()
    return _raw["tm_put_many"](pool._h, n, keys, iovcnt, iov, codes, lengths or None)


def lookup_prefix_raw(pool: "Pool", keys: int, n: int) -> int:
    """tm_lookup_prefix over n tm_key at address keys."""
    pool._check()
    return int(_raw["tm_lookup_prefix"](pool._h, keys, n))


def last_error() -> str:
    """This thread's message for its last library call ("" after success)."""
    return (_tm.tm_last_error() or b"").decode("utf-8", "replace")


# ---- the remote path: an agent on another node -----------------------------
#
# Client.connect_remote() reaches the agent's remote listener over UCX; pools
# attached through such a client take the same calls, each a request to the
# agent, except that pin/unpin raise TokenmemError(FAILED_PRECONDITION).
# Client.from_env() picks the path itself (TOKENMEM_AGENT_SOCKET when the
# agent answers there, else TOKENMEM_AGENT_ADDRESS).

try:
    _tm.tm_client_connect_remote.restype = _c.c_int
    _tm.tm_client_connect_remote.argtypes = [_c.c_char_p, _c.c_char_p, _c.c_char_p, _c.c_uint32,
                                             _c.POINTER(_Handle)]
    _tm.tm_client_is_remote.restype = _c.c_int
    _tm.tm_client_is_remote.argtypes = [_Handle]
except AttributeError as _e:
    raise ImportError(
        "tokenmem: %s lacks the remote client functions (%s); it is older than this package"
        % (_lib.path, _e)
    ) from None


def _connect_remote(cls, address: str, lease_id: str, lease_secret: Optional[str] = None,
                    timeout: float = 10.0) -> "Client":
    """Connects to an agent on another node: address is "host:port" of its
    remote listener. lease_id may be "ID:SECRET" when lease_secret is
    omitted. timeout (seconds) bounds each request to the agent. Raises
    TokenmemError (UNAVAILABLE: no agent answered; PERMISSION_DENIED /
    NOT_FOUND: the lease was refused; INVALID_ARGUMENT: a malformed
    address)."""
    if lease_secret is None:
        lease_id, sep, lease_secret = str(lease_id).partition(":")
        if not sep:
            raise ValueError("lease must be ID:SECRET, or pass lease_secret")
    timeout_ms = int(timeout * 1000)
    if timeout_ms <= 0 or timeout_ms > 0xFFFFFFFF:
        raise ValueError("timeout must be positive and below 49 days")
    h = _Handle()
    rc = _tm.tm_client_connect_remote(_text(address, "address"), _text(lease_id, "lease id"),
                                      _text(lease_secret, "lease secret"), timeout_ms,
                                      _c.byref(h))
    if rc != 0:
        _raise(rc)
    return cls(h)


def _client_remote(self) -> bool:
    """True when this client talks to the agent over the remote path."""
    return self._h is not None and bool(_tm.tm_client_is_remote(self._h))


Client.connect_remote = classmethod(_connect_remote)
Client.remote = property(_client_remote)
