// Token keys: the 128-bit block keys an engine derives from token IDs.
//
// A KeyNamespace names everything that makes KV bytes differ or must not be
// shared. Its canonical encoding ("tokenmem-ns-v1") hashes to a seed; each
// full block of tokens then gets key_i = H(key_{i-1}, tokens of block i),
// with key_{-1} = seed, so one key names a block together with its whole
// prefix and two sequences share keys exactly as far as they share full
// blocks. H is XXH3-128. The bytes are frozen in docs/token-keys.md and
// pinned by client_sdk/testdata/token_key_vectors.json; the C ABI
// (tokenmem/tokenmem_keys.h) and the Python package give identical keys.
//
// Thread safety: every function here is pure (no state, no seeds drawn at
// run time), so any thread may call any of them at any time, and every
// process on every machine gets the same keys.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenmem/common/block_key.h"
#include "tokenmem/common/status.h"

namespace tokenmem {

// The version tag that opens every namespace encoding; a new encoding gets
// a new tag, never new meaning for this one.
inline constexpr std::string_view kKeyNamespaceTag = "tokenmem-ns-v1";
// The longest string field, in bytes.
inline constexpr size_t kKeyNamespaceMaxString = 1024;

// Strings are byte strings (UTF-8 by convention) hashed as given: no
// normalization, no trimming. Defaults are a single-rank engine with
// 16-token blocks and no tenant salt.
struct KeyNamespace {
  std::string model;           // required, non-empty
  std::string revision;        // weights revision, e.g. a commit hash
  std::string kv_dtype;        // e.g. "fp16", "bf16", "fp8_e4m3"
  std::string kv_layout;       // e.g. "nhd-per-layer"
  uint32_t tp_rank = 0;        // < tp_size
  uint32_t tp_size = 1;        // >= 1
  uint32_t pp_rank = 0;        // < pp_size
  uint32_t pp_size = 1;        // >= 1
  uint32_t block_tokens = 16;  // tokens per block, >= 1
  std::string tenant_salt;     // may be empty

  // OK, or InvalidArgument naming the first bad field: empty model, a
  // string longer than kKeyNamespaceMaxString bytes or holding a NUL byte,
  // a size of 0, a rank not below its size, block_tokens of 0.
  Status Validate() const;
};

// The canonical encoding's bytes (see docs/token-keys.md), or Validate()'s
// error. Exposed so that tests and other implementations can compare bytes.
Result<std::string> EncodeKeyNamespace(const KeyNamespace& ns);

// XXH3-128 of the canonical encoding, or Validate()'s error.
Result<BlockKey> NamespaceSeed(const KeyNamespace& ns);

// Keys of the full blocks of `tokens`, chained from `seed`: one key per
// block_tokens tokens, none for a trailing partial block. block_tokens must
// be the namespace's; 0 gives no keys.
std::vector<BlockKey> ChainKeys(std::span<const uint32_t> tokens, uint32_t block_tokens,
                                const BlockKey& seed);

// Extends a chain incrementally: appends to `keys` the keys of the full
// blocks of `tokens`, chained from keys.back(), or from `seed` when `keys`
// is empty. `tokens` are the tokens after the ones already keyed and must
// start at a block boundary. Returns how many keys it appended.
size_t ChainKeys(std::span<const uint32_t> tokens, uint32_t block_tokens, const BlockKey& seed,
                 std::vector<BlockKey>& keys);

// Without allocating: writes the first min(n, out.size()) keys of the chain
// from `prev` to `out` and returns n = tokens.size() / block_tokens (0 when
// block_tokens is 0).
size_t ChainKeysInto(std::span<const uint32_t> tokens, uint32_t block_tokens, const BlockKey& prev,
                     std::span<BlockKey> out);

// NamespaceSeed + ChainKeys with the namespace's block_tokens.
Result<std::vector<BlockKey>> PrefixKeys(const KeyNamespace& ns, std::span<const uint32_t> tokens);

}  // namespace tokenmem
