// The token-key C ABI: thin, allocation-free where it can be, and never
// lets an exception or a C++ type cross the boundary.
#include <cstring>
#include <exception>
#include <span>
#include <string_view>

#include "tokenmem/token_keys.h"
#include "tokenmem/tokenmem_keys.h"

namespace {

static_assert(TM_NAMESPACE_MAX_STRING == tokenmem::kKeyNamespaceMaxString);
static_assert(TM_INVALID_ARGUMENT == static_cast<int>(tokenmem::StatusCode::kInvalidArgument));
static_assert(TM_NOT_FOUND == static_cast<int>(tokenmem::StatusCode::kNotFound));
static_assert(TM_INTERNAL == static_cast<int>(tokenmem::StatusCode::kInternal));

void SetError(char* err, size_t err_len, std::string_view message) {
  if (err == nullptr || err_len == 0) return;
  const size_t n = message.size() < err_len - 1 ? message.size() : err_len - 1;
  std::memcpy(err, message.data(), n);
  err[n] = '\0';
}

int Fail(char* err, size_t err_len, const tokenmem::Status& status) {
  SetError(err, err_len, status.message());
  return static_cast<int>(status.code());
}

// Reads at most one byte past the limit, so a huge string is reported as
// too long without being scanned to its end.
tokenmem::Status CopyString(const char* s, std::string_view field, std::string& out) {
  if (s == nullptr) {
    out.clear();
    return tokenmem::Status::Ok();
  }
  const size_t len = strnlen(s, TM_NAMESPACE_MAX_STRING + 1);
  if (len > TM_NAMESPACE_MAX_STRING) {
    return tokenmem::InvalidArgument("key namespace: " + std::string(field) +
                                     " is longer than the limit of " +
                                     std::to_string(TM_NAMESPACE_MAX_STRING) + " bytes");
  }
  out.assign(s, len);
  return tokenmem::Status::Ok();
}

tokenmem::Status FromC(const tm_namespace& c, tokenmem::KeyNamespace& ns) {
  TM_RETURN_IF_ERROR(CopyString(c.model, "model", ns.model));
  TM_RETURN_IF_ERROR(CopyString(c.revision, "revision", ns.revision));
  TM_RETURN_IF_ERROR(CopyString(c.kv_dtype, "kv_dtype", ns.kv_dtype));
  TM_RETURN_IF_ERROR(CopyString(c.kv_layout, "kv_layout", ns.kv_layout));
  ns.tp_rank = c.tp_rank;
  ns.tp_size = c.tp_size;
  ns.pp_rank = c.pp_rank;
  ns.pp_size = c.pp_size;
  ns.block_tokens = c.block_tokens;
  TM_RETURN_IF_ERROR(CopyString(c.tenant_salt, "tenant_salt", ns.tenant_salt));
  return tokenmem::Status::Ok();
}

}  // namespace

extern "C" {

TM_API void tm_namespace_init(tm_namespace* ns) {
  if (ns == nullptr) return;
  const tokenmem::KeyNamespace defaults;
  *ns = tm_namespace{};
  ns->tp_rank = defaults.tp_rank;
  ns->tp_size = defaults.tp_size;
  ns->pp_rank = defaults.pp_rank;
  ns->pp_size = defaults.pp_size;
  ns->block_tokens = defaults.block_tokens;
}

TM_API int tm_namespace_seed(const tm_namespace* ns, tm_key* out, char* err, size_t err_len) {
  try {
    if (ns == nullptr || out == nullptr) {
      return Fail(err, err_len,
                  tokenmem::InvalidArgument("tm_namespace_seed: ns and out must not be NULL"));
    }
    if (ns->model == nullptr) {
      return Fail(err, err_len,
                  tokenmem::InvalidArgument("key namespace: model must not be empty"));
    }
    tokenmem::KeyNamespace cpp;
    if (tokenmem::Status s = FromC(*ns, cpp); !s.ok()) return Fail(err, err_len, s);
    tokenmem::Result<tokenmem::BlockKey> seed = tokenmem::NamespaceSeed(cpp);
    if (!seed.ok()) return Fail(err, err_len, seed.status());
    out->hi = seed->hi;
    out->lo = seed->lo;
    SetError(err, err_len, "");
    return TM_OK;
  } catch (const std::exception& e) {  // std::bad_alloc from the copies
    SetError(err, err_len, e.what());
    return TM_INTERNAL;
  }
}

TM_API size_t tm_chain_keys(const uint32_t* tokens, size_t n_tokens, uint32_t block_tokens,
                            const tm_key* prev, tm_key* out, size_t out_cap) {
  if (block_tokens == 0 || prev == nullptr || (tokens == nullptr && n_tokens > 0) ||
      (out == nullptr && out_cap > 0)) {
    return TM_CHAIN_INVALID;
  }
  const size_t blocks = n_tokens / block_tokens;
  const size_t n = blocks < out_cap ? blocks : out_cap;
  // tm_key and BlockKey are layout-twins but distinct types: convert through
  // a small local batch rather than writing one through the other.
  constexpr size_t kBatch = 64;
  tokenmem::BlockKey batch[kBatch];
  tokenmem::BlockKey prev_key{.hi = prev->hi, .lo = prev->lo};
  for (size_t done = 0; done < n;) {
    const size_t m = n - done < kBatch ? n - done : kBatch;
    std::span<const uint32_t> in(tokens + done * block_tokens, m * size_t{block_tokens});
    tokenmem::ChainKeysInto(in, block_tokens, prev_key, std::span<tokenmem::BlockKey>(batch, m));
    for (size_t i = 0; i < m; ++i) out[done + i] = tm_key{.hi = batch[i].hi, .lo = batch[i].lo};
    prev_key = batch[m - 1];
    done += m;
  }
  return blocks;
}

TM_API void tm_key_to_hex(const tm_key* key, char* out) {
  if (key == nullptr || out == nullptr) return;
  const std::string hex = tokenmem::BlockKey{.hi = key->hi, .lo = key->lo}.ToHex();
  std::memcpy(out, hex.data(), TM_KEY_HEX_LEN);
  out[TM_KEY_HEX_LEN] = '\0';
}

TM_API int tm_key_from_hex(const char* hex, tm_key* out) {
  if (hex == nullptr || out == nullptr) return TM_INVALID_ARGUMENT;
  const size_t len = strnlen(hex, TM_KEY_HEX_LEN + 1);
  tokenmem::Result<tokenmem::BlockKey> key =
      tokenmem::BlockKey::FromHex(std::string_view(hex, len));
  if (!key.ok()) return static_cast<int>(key.status().code());
  out->hi = key->hi;
  out->lo = key->lo;
  return TM_OK;
}

}  // extern "C"
