#include "tokenmem/token_keys.h"

// Inlined so the library carries its own XXH3 (no runtime dependency on
// libxxhash's version) and may keep a streaming state on the stack.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>

namespace tokenmem {
namespace {

// Blocks up to this many tokens are copied into a stack buffer and hashed
// in one call; larger ones are streamed. XXH3 gives the same hash either
// way, and nothing allocates.
constexpr size_t kStackBlockTokens = 256;
constexpr size_t kKeyBytes = 16;

void PutU32(uint32_t v, unsigned char* p) {
  p[0] = static_cast<unsigned char>(v);
  p[1] = static_cast<unsigned char>(v >> 8);
  p[2] = static_cast<unsigned char>(v >> 16);
  p[3] = static_cast<unsigned char>(v >> 24);
}

void PutU64(uint64_t v, unsigned char* p) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}

void AppendU32(std::string& out, uint32_t v) {
  unsigned char b[4];
  PutU32(v, b);
  out.append(reinterpret_cast<const char*>(b), sizeof(b));
}

void AppendString(std::string& out, std::string_view s) {
  AppendU32(out, static_cast<uint32_t>(s.size()));
  out.append(s);
}

BlockKey Hash128(const void* data, size_t len) {
  XXH128_hash_t h = XXH3_128bits(data, len);
  return BlockKey{.hi = h.high64, .lo = h.low64};
}

Status CheckString(std::string_view field, std::string_view value) {
  if (value.size() > kKeyNamespaceMaxString) {
    return InvalidArgument("key namespace: " + std::string(field) + " is " +
                           std::to_string(value.size()) + " bytes, more than the limit of " +
                           std::to_string(kKeyNamespaceMaxString));
  }
  if (size_t nul = value.find('\0'); nul != std::string_view::npos) {
    return InvalidArgument("key namespace: " + std::string(field) +
                           " contains a NUL byte at offset " + std::to_string(nul));
  }
  return Status::Ok();
}

Status CheckRank(std::string_view rank_field, uint32_t rank, std::string_view size_field,
                 uint32_t size) {
  if (size == 0) {
    return InvalidArgument("key namespace: " + std::string(size_field) + " must be at least 1");
  }
  if (rank >= size) {
    return InvalidArgument("key namespace: " + std::string(rank_field) + " (" +
                           std::to_string(rank) + ") must be less than " + std::string(size_field) +
                           " (" + std::to_string(size) + ")");
  }
  return Status::Ok();
}

void PutKey(const BlockKey& key, unsigned char* p) {
  PutU64(key.lo, p);
  PutU64(key.hi, p + 8);
}

// Writes n tokens at p, 4 bytes little-endian each.
void PutTokens(const uint32_t* block, size_t n, unsigned char* p) {
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(p, block, n * sizeof(uint32_t));
  } else {
    for (size_t i = 0; i < n; ++i) PutU32(block[i], p + 4 * i);
  }
}

// One link: H(prev as 16 bytes little-endian (lo, then hi) || each token as
// 4 bytes little-endian).
BlockKey Link(const BlockKey& prev, const uint32_t* block, size_t block_tokens) {
  if (block_tokens <= kStackBlockTokens) {
    std::array<unsigned char, kKeyBytes + 4 * kStackBlockTokens> buf;
    PutKey(prev, buf.data());
    PutTokens(block, block_tokens, buf.data() + kKeyBytes);
    return Hash128(buf.data(), kKeyBytes + block_tokens * sizeof(uint32_t));
  }
  XXH3_state_t state;
  XXH3_INITSTATE(&state);
  XXH3_128bits_reset(&state);
  unsigned char buf[4 * kStackBlockTokens];
  PutKey(prev, buf);
  XXH3_128bits_update(&state, buf, kKeyBytes);
  for (size_t done = 0; done < block_tokens;) {
    const size_t n = std::min(kStackBlockTokens, block_tokens - done);
    PutTokens(block + done, n, buf);
    XXH3_128bits_update(&state, buf, 4 * n);
    done += n;
  }
  XXH128_hash_t h = XXH3_128bits_digest(&state);
  return BlockKey{.hi = h.high64, .lo = h.low64};
}

}  // namespace

Status KeyNamespace::Validate() const {
  if (model.empty()) return InvalidArgument("key namespace: model must not be empty");
  TM_RETURN_IF_ERROR(CheckString("model", model));
  TM_RETURN_IF_ERROR(CheckString("revision", revision));
  TM_RETURN_IF_ERROR(CheckString("kv_dtype", kv_dtype));
  TM_RETURN_IF_ERROR(CheckString("kv_layout", kv_layout));
  TM_RETURN_IF_ERROR(CheckRank("tp_rank", tp_rank, "tp_size", tp_size));
  TM_RETURN_IF_ERROR(CheckRank("pp_rank", pp_rank, "pp_size", pp_size));
  if (block_tokens == 0) {
    return InvalidArgument("key namespace: block_tokens must be at least 1");
  }
  TM_RETURN_IF_ERROR(CheckString("tenant_salt", tenant_salt));
  return Status::Ok();
}

Result<std::string> EncodeKeyNamespace(const KeyNamespace& ns) {
  TM_RETURN_IF_ERROR(ns.Validate());
  std::string out;
  out.reserve(4 * 6 + kKeyNamespaceTag.size() + ns.model.size() + ns.revision.size() +
              ns.kv_dtype.size() + ns.kv_layout.size() + 4 * 5 + ns.tenant_salt.size());
  AppendString(out, kKeyNamespaceTag);
  AppendString(out, ns.model);
  AppendString(out, ns.revision);
  AppendString(out, ns.kv_dtype);
  AppendString(out, ns.kv_layout);
  AppendU32(out, ns.tp_rank);
  AppendU32(out, ns.tp_size);
  AppendU32(out, ns.pp_rank);
  AppendU32(out, ns.pp_size);
  AppendU32(out, ns.block_tokens);
  AppendString(out, ns.tenant_salt);
  return out;
}

Result<BlockKey> NamespaceSeed(const KeyNamespace& ns) {
  TM_ASSIGN_OR_RETURN(std::string encoding, EncodeKeyNamespace(ns));
  return Hash128(encoding.data(), encoding.size());
}

size_t ChainKeysInto(std::span<const uint32_t> tokens, uint32_t block_tokens, const BlockKey& prev,
                     std::span<BlockKey> out) {
  if (block_tokens == 0) return 0;
  const size_t blocks = tokens.size() / block_tokens;
  const size_t n = blocks < out.size() ? blocks : out.size();
  if (n == 0) return blocks;

  BlockKey key = prev;
  for (size_t i = 0; i < n; ++i) {
    key = Link(key, tokens.data() + i * block_tokens, block_tokens);
    out[i] = key;
  }
  return blocks;
}

std::vector<BlockKey> ChainKeys(std::span<const uint32_t> tokens, uint32_t block_tokens,
                                const BlockKey& seed) {
  std::vector<BlockKey> keys;
  ChainKeys(tokens, block_tokens, seed, keys);
  return keys;
}

size_t ChainKeys(std::span<const uint32_t> tokens, uint32_t block_tokens, const BlockKey& seed,
                 std::vector<BlockKey>& keys) {
  if (block_tokens == 0) return 0;
  const size_t blocks = tokens.size() / block_tokens;
  if (blocks == 0) return 0;
  const BlockKey prev = keys.empty() ? seed : keys.back();
  const size_t old_size = keys.size();
  keys.resize(old_size + blocks);
  ChainKeysInto(tokens, block_tokens, prev, std::span<BlockKey>(keys).subspan(old_size));
  return blocks;
}

Result<std::vector<BlockKey>> PrefixKeys(const KeyNamespace& ns, std::span<const uint32_t> tokens) {
  TM_ASSIGN_OR_RETURN(BlockKey seed, NamespaceSeed(ns));
  return ChainKeys(tokens, ns.block_tokens, seed);
}

}  // namespace tokenmem
