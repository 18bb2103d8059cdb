"""Finds and loads libtokenmem.so and declares the C ABI it uses.

Search order (the first that exists wins):
  1. $TOKENMEM_LIBRARY, a path to the library; when set it is the only
     candidate, so a wrong path fails loudly instead of loading another copy;
  2. libtokenmem.so inside this package's directory, then beside it (where
     an install copies the library along with the package);
  3. the repository's build tree, <repo>/build/client_sdk/libtokenmem.so;
  4. the system's search path (ctypes.util.find_library("tokenmem")).

Importing this module raises ImportError, naming every place it looked, when
no library is found or the one found lacks a needed symbol. The loaded
library is process-wide and its functions are thread-safe (see the C header
tokenmem/tokenmem_keys.h).
"""

import ctypes
import ctypes.util
import os
import pathlib

_LIBRARY_NAME = "libtokenmem.so"


class TmKey(ctypes.Structure):
    """tm_key: a 128-bit block key."""

    _fields_ = [("hi", ctypes.c_uint64), ("lo", ctypes.c_uint64)]


class TmNamespace(ctypes.Structure):
    """tm_namespace, field for field."""

    _fields_ = [
        ("model", ctypes.c_char_p),
        ("revision", ctypes.c_char_p),
        ("kv_dtype", ctypes.c_char_p),
        ("kv_layout", ctypes.c_char_p),
        ("tp_rank", ctypes.c_uint32),
        ("tp_size", ctypes.c_uint32),
        ("pp_rank", ctypes.c_uint32),
        ("pp_size", ctypes.c_uint32),
        ("block_tokens", ctypes.c_uint32),
        ("tenant_salt", ctypes.c_char_p),
    ]


TM_OK = 0
TM_INVALID_ARGUMENT = 2
TM_CHAIN_INVALID = ctypes.c_size_t(-1).value
TM_NAMESPACE_MAX_STRING = 1024


def _candidates():
    explicit = os.environ.get("TOKENMEM_LIBRARY")
    if explicit:
        return [explicit]
    package = pathlib.Path(__file__).resolve().parent
    found = [
        package / _LIBRARY_NAME,
        package.parent / _LIBRARY_NAME,
        package.parents[2] / "build" / "client_sdk" / _LIBRARY_NAME,
    ]
    system = ctypes.util.find_library("tokenmem")
    if system:
        found.append(system)
    return [str(p) for p in found]


def _load():
    tried = []
    for path in _candidates():
        # find_library returns a bare soname, which only the loader resolves.
        if os.sep in path and not os.path.exists(path):
            tried.append(path + " (missing)")
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            tried.append("%s (%s)" % (path, e))
    hint = (
        "set TOKENMEM_LIBRARY to the path of libtokenmem.so"
        if os.environ.get("TOKENMEM_LIBRARY") is None
        else "TOKENMEM_LIBRARY is set; point it at an existing libtokenmem.so"
    )
    raise ImportError(
        "tokenmem: cannot load libtokenmem.so; looked at: "
        + "; ".join(tried or ["nothing"])
        + ". Build it (cmake --build build --target tokenmem_client) or "
        + hint
    )


def _declare(lib, path):
    try:
        lib.tm_namespace_init.argtypes = [ctypes.POINTER(TmNamespace)]
        lib.tm_namespace_init.restype = None
        lib.tm_namespace_seed.argtypes = [
            ctypes.POINTER(TmNamespace),
            ctypes.POINTER(TmKey),
            ctypes.c_char_p,
            ctypes.c_size_t,
        ]
        lib.tm_namespace_seed.restype = ctypes.c_int
        lib.tm_chain_keys.argtypes = [
            ctypes.POINTER(ctypes.c_uint32),
            ctypes.c_size_t,
            ctypes.c_uint32,
            ctypes.POINTER(TmKey),
            ctypes.POINTER(TmKey),
            ctypes.c_size_t,
        ]
        lib.tm_chain_keys.restype = ctypes.c_size_t
        lib.tm_key_to_hex.argtypes = [ctypes.POINTER(TmKey), ctypes.c_char_p]
        lib.tm_key_to_hex.restype = None
        lib.tm_key_from_hex.argtypes = [ctypes.c_char_p, ctypes.POINTER(TmKey)]
        lib.tm_key_from_hex.restype = ctypes.c_int
    except AttributeError as e:
        raise ImportError(
            "tokenmem: %s lacks a token-key function (%s); it is older than this package"
            % (path, e)
        ) from None
    return lib


lib, path = _load()
_declare(lib, path)
