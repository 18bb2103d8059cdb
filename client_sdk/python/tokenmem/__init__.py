"""tokenmem: the Python client of the tokenmem KV-cache store.

Pure Python over libtokenmem's C ABI (ctypes); see tokenmem._lib for how the
library is found. Token keys (tokenmem.keys) give the same 128-bit keys as
the C++ and C APIs, as frozen in docs/token-keys.md.
"""

from .keys import Key, KeyNamespace, chain_keys, namespace_seed, prefix_keys

__all__ = ["Key", "KeyNamespace", "chain_keys", "namespace_seed", "prefix_keys"]
__version__ = "0.1.0"
from .client import Client, Pool, StatusCode, TokenmemError  # noqa: E402
__all__ += ["Client", "Pool", "StatusCode", "TokenmemError"]
