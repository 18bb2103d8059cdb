"""Token keys: the 128-bit block keys an engine derives from token IDs.

A KeyNamespace (model, weights revision, KV dtype and layout, parallel ranks,
tokens per block, tenant salt) hashes to a seed; each full block of tokens
then gets key_i = H(key_{i-1}, tokens of block i) with key_{-1} = seed. The
bytes are frozen in docs/token-keys.md; this module calls libtokenmem's C
ABI, so its keys are the C++ and C keys, bit for bit.

Keys are Key(hi, lo) named tuples of two unsigned 64-bit ints, the halves of
tokenmem::BlockKey / tm_key: hashable, comparable to plain (hi, lo) tuples,
with key.hex() giving the 32-digit form the C++ and C APIs print.

Errors: TypeError for arguments of the wrong type, ValueError for values the
format does not allow (an invalid namespace, a token ID outside
[0, 2**32 - 1]); the message names the field.

Thread safety: every function is pure and may be called from any thread.
"""

import array
import ctypes
import dataclasses
import operator
import struct
import sys
from typing import Iterable, List, NamedTuple, Tuple, Union

from . import _lib

_U32_MAX = 2**32 - 1
_U64_MAX = 2**64 - 1
# Buffer formats read by value; native 4-byte unsigned ones are passed
# straight to C without a copy.
_INTEGER_FORMATS = frozenset("bBhHiIlLqQnN")
_NATIVE_PREFIXES = ("", "@", "=", "<" if sys.byteorder == "little" else ">")

if array.array("I").itemsize != 4:  # pragma: no cover - every Linux ABI has 4-byte unsigned int
    raise ImportError("tokenmem: array('I') is not 32 bits on this platform")


class Key(NamedTuple):
    """A 128-bit block key: hi and lo are its upper and lower 64 bits."""

    hi: int
    lo: int

    def hex(self) -> str:
        """32 lower-case hex digits, hi first (as BlockKey::ToHex)."""
        return "%016x%016x" % (self.hi, self.lo)

    def to_bytes(self) -> bytes:
        """16 bytes, big-endian: the bytes the hex form spells."""
        return self.hi.to_bytes(8, "big") + self.lo.to_bytes(8, "big")

    @classmethod
    def from_hex(cls, text: str) -> "Key":
        """Parses exactly 32 hex digits (either case); ValueError otherwise."""
        if (
            not isinstance(text, str)
            or len(text) != 32
            or not all(c in "0123456789abcdefABCDEF" for c in text)
        ):
            raise ValueError("a key is 32 hexadecimal digits, got %r" % (text,))
        value = int(text, 16)
        return cls(value >> 64, value & _U64_MAX)

    @classmethod
    def from_bytes(cls, data: bytes) -> "Key":
        """The inverse of to_bytes."""
        if len(data) != 16:
            raise ValueError("a key is 16 bytes, got %d" % len(data))
        return cls(int.from_bytes(data[:8], "big"), int.from_bytes(data[8:], "big"))

    def __str__(self) -> str:
        return self.hex()

    def __repr__(self) -> str:
        return "Key.from_hex(%r)" % self.hex()


@dataclasses.dataclass(frozen=True)
class KeyNamespace:
    """Everything that makes KV bytes differ or must not be shared.

    Strings are str (hashed as UTF-8, never normalized) or bytes (hashed as
    given), at most 1024 bytes, without NUL. model must be non-empty, each
    rank below its size, sizes and block_tokens at least 1; namespace_seed()
    checks this and raises ValueError naming the field.
    """

    model: Union[str, bytes]
    revision: Union[str, bytes] = ""
    kv_dtype: Union[str, bytes] = ""
    kv_layout: Union[str, bytes] = ""
    tp_rank: int = 0
    tp_size: int = 1
    pp_rank: int = 0
    pp_size: int = 1
    block_tokens: int = 16
    tenant_salt: Union[str, bytes] = ""

    def seed(self) -> Key:
        """namespace_seed(self)."""
        return namespace_seed(self)


_STRING_FIELDS = ("model", "revision", "kv_dtype", "kv_layout", "tenant_salt")
_INT_FIELDS = ("tp_rank", "tp_size", "pp_rank", "pp_size", "block_tokens")


def _field_bytes(ns: KeyNamespace, field: str) -> bytes:
    value = getattr(ns, field)
    if isinstance(value, str):
        data = value.encode("utf-8")  # lone surrogates: UnicodeEncodeError, a ValueError
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    else:
        raise TypeError("KeyNamespace.%s must be str or bytes, not %s" % (field, type(value).__name__))
    nul = data.find(b"\0")
    if nul >= 0:
        # C strings end at a NUL, so it must be refused here.
        raise ValueError("key namespace: %s contains a NUL byte at offset %d" % (field, nul))
    return data


def _u32(value, what: str) -> int:
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError("%s must be an int, not %s" % (what, type(value).__name__)) from None
    if not 0 <= v <= _U32_MAX:
        raise ValueError("%s (%d) is outside [0, 2**32 - 1]" % (what, v))
    return v


def namespace_seed(ns: KeyNamespace) -> Key:
    """The namespace's 128-bit seed; ValueError when the namespace is invalid."""
    if not isinstance(ns, KeyNamespace):
        raise TypeError("namespace_seed needs a KeyNamespace, not %s" % type(ns).__name__)
    strings = {f: _field_bytes(ns, f) for f in _STRING_FIELDS}
    ints = {f: _u32(getattr(ns, f), "key namespace: " + f) for f in _INT_FIELDS}
    c_ns = _lib.TmNamespace(**strings, **ints)
    out = _lib.TmKey()
    err = ctypes.create_string_buffer(512)
    rc = _lib.lib.tm_namespace_seed(ctypes.byref(c_ns), ctypes.byref(out), err, len(err))
    if rc != _lib.TM_OK:
        message = err.value.decode("utf-8", "replace") or "error %d" % rc
        if rc == _lib.TM_INVALID_ARGUMENT:
            raise ValueError(message)
        raise RuntimeError(message)
    return Key(out.hi, out.lo)


TokenInput = Union[Iterable[int], memoryview, array.array]


def _token_array(tokens) -> Tuple[object, int]:
    """(a ctypes uint32 array or None, length), sharing memory when it can."""
    try:
        view = memoryview(tokens)
    except TypeError:
        view = None
    if view is not None:
        if view.ndim != 1:
            raise ValueError("tokens must be one-dimensional, got %d dimensions" % view.ndim)
        fmt = view.format
        code = fmt.lstrip("@=<>!")
        if code not in _INTEGER_FORMATS:
            raise TypeError("tokens must be integers, got buffer format %r" % fmt)
        n = view.shape[0]
        if n == 0:
            return None, 0
        prefix = fmt[: len(fmt) - len(code)]
        if code in "IL" and view.itemsize == 4 and prefix in _NATIVE_PREFIXES and view.c_contiguous:
            array_type = ctypes.c_uint32 * n
            try:
                return array_type.from_buffer(view), n  # shares the caller's memory
            except TypeError:  # read-only buffer: ctypes can only copy it
                return array_type.from_buffer_copy(view), n
        try:
            values = view.tolist()
        except NotImplementedError:  # explicit byte order, e.g. numpy '>u4'
            if struct.calcsize(fmt) != view.itemsize:
                raise TypeError("tokens: unsupported buffer format %r" % fmt) from None
            values = [v for (v,) in struct.iter_unpack(fmt, view.tobytes())]
    else:
        values = tokens
    try:
        arr = array.array("I", values)
    except OverflowError:
        raise ValueError("token IDs must be in [0, 2**32 - 1]") from None
    except TypeError as e:
        raise TypeError("tokens must be integers: %s" % e) from None
    n = len(arr)
    if n == 0:
        return None, 0
    return (ctypes.c_uint32 * n).from_buffer(arr), n


def chain_keys(tokens: TokenInput, block_tokens: int, seed: Union[Key, Tuple[int, int]]) -> List[Key]:
    """Keys of the full blocks of tokens, chained from seed.

    tokens: a sequence of ints, an array.array, or any one-dimensional
    integer buffer (numpy arrays included); a C-contiguous native uint32
    buffer is read in place, anything else is converted (and range-checked).
    block_tokens: the namespace's tokens per block, >= 1.
    seed: the namespace seed, or the key of the last block already keyed to
    extend a chain (tokens then start at the next block boundary).
    Returns len(tokens) // block_tokens keys; a trailing partial block gets
    none.
    """
    block = _u32(block_tokens, "block_tokens")
    if block == 0:
        raise ValueError("block_tokens must be at least 1")
    try:
        hi, lo = seed
        hi, lo = operator.index(hi), operator.index(lo)
    except (TypeError, ValueError):
        raise TypeError("seed must be a Key or an (hi, lo) pair of ints") from None
    if not (0 <= hi <= _U64_MAX and 0 <= lo <= _U64_MAX):
        raise ValueError("seed halves must be in [0, 2**64 - 1]")
    buf, n = _token_array(tokens)
    blocks = n // block
    if blocks == 0:
        return []
    out = (ctypes.c_uint64 * (2 * blocks))()
    prev = _lib.TmKey(hi, lo)
    got = _lib.lib.tm_chain_keys(
        buf, n, block, ctypes.byref(prev), ctypes.cast(out, ctypes.POINTER(_lib.TmKey)), blocks
    )
    if got != blocks:
        raise RuntimeError("tm_chain_keys returned %d for %d blocks" % (got, blocks))
    halves = out[:]
    return list(map(Key._make, zip(halves[0::2], halves[1::2])))


def prefix_keys(ns: KeyNamespace, tokens: TokenInput) -> List[Key]:
    """chain_keys(tokens, ns.block_tokens, namespace_seed(ns))."""
    return chain_keys(tokens, ns.block_tokens, namespace_seed(ns))
