/* Token keys, C ABI: the 128-bit block keys an engine derives from token IDs.
 *
 * A key namespace (model, weights revision, KV dtype and layout, parallel
 * ranks, tokens per block, tenant salt) hashes to a 128-bit seed; each full
 * block of tokens then gets the key H(previous key, the block's tokens), so
 * a block's key names its whole prefix. The exact bytes are specified in
 * docs/token-keys.md (namespace encoding "tokenmem-ns-v1", XXH3-128) and
 * pinned by client_sdk/testdata/token_key_vectors.json; the C++ API
 * (tokenmem/token_keys.h) and the Python package give identical keys.
 *
 * Thread safety: every function here is pure. It reads only its arguments,
 * writes only its output buffers, keeps no state and allocates nothing that
 * outlives the call, so any thread may call any function at any time.
 * Callers own every buffer; no function keeps a pointer after it returns.
 */
#ifndef TOKENMEM_TOKENMEM_KEYS_H_
#define TOKENMEM_TOKENMEM_KEYS_H_

#include <stddef.h>
#include <stdint.h>

#include "tokenmem/tm_export.h"
#include "tokenmem/tm_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A block key; the same two halves as tokenmem::BlockKey. */
typedef struct tm_key {
  uint64_t hi;
  uint64_t lo;
} tm_key;

/* Strings are NUL-terminated byte strings (UTF-8 by convention, never
 * normalized: the bytes are what is hashed), at most TM_NAMESPACE_MAX_STRING
 * bytes each. NULL means "" for every string except model, which must be a
 * non-empty string. Field order is the order of the canonical encoding. */
typedef struct tm_namespace {
  const char* model;       /* required, e.g. "meta-llama/Llama-3.1-8B" */
  const char* revision;    /* weights revision, e.g. a commit hash */
  const char* kv_dtype;    /* e.g. "fp16", "bf16", "fp8_e4m3" */
  const char* kv_layout;   /* e.g. "nhd-per-layer" */
  uint32_t tp_rank;        /* tensor-parallel rank, < tp_size */
  uint32_t tp_size;        /* >= 1 */
  uint32_t pp_rank;        /* pipeline-parallel rank, < pp_size */
  uint32_t pp_size;        /* >= 1 */
  uint32_t block_tokens;   /* tokens per block, >= 1 */
  const char* tenant_salt; /* keeps tenants' blocks apart; may be "" */
} tm_namespace;

#define TM_NAMESPACE_MAX_STRING 1024
/* tm_key_to_hex writes this many digits plus a NUL. */
#define TM_KEY_HEX_LEN 32
/* tm_chain_keys' answer to invalid arguments. */
#define TM_CHAIN_INVALID ((size_t)-1)

/* Fills *ns with the defaults: all strings NULL, ranks 0, sizes 1,
 * block_tokens 16. The caller then sets model and whatever else differs. */
TM_API void tm_namespace_init(tm_namespace* ns);

/* Validates *ns and writes its 128-bit seed to *out.
 * Returns TM_OK, or TM_INVALID_ARGUMENT when ns or out is NULL, model is
 * NULL or empty, a string exceeds TM_NAMESPACE_MAX_STRING bytes, a size is 0
 * or a rank is not below its size, or block_tokens is 0; then *out is left
 * unchanged and, when err is not NULL and err_len > 0, err receives a
 * NUL-terminated message naming the field (truncated to err_len - 1 bytes).
 * On success err is set to "" (when err_len > 0). */
TM_API int tm_namespace_seed(const tm_namespace* ns, tm_key* out, char* err, size_t err_len);

/* Keys of the full blocks of tokens[0, n_tokens), chained from *prev:
 * out[0] = H(*prev, block 0), out[i] = H(out[i-1], block i).
 * Pass the namespace seed as prev to key a sequence from its start, or the
 * key of the last full block already keyed to extend a chain (tokens must
 * then start at the next block boundary). block_tokens must equal the
 * namespace's block_tokens for the keys to match other engines' keys.
 * Returns the number of full blocks, n_tokens / block_tokens; a trailing
 * partial block gets no key. Writes min(that, out_cap) keys to out, so
 * out_cap = 0 (out may then be NULL) just counts. Returns TM_CHAIN_INVALID
 * and writes nothing when block_tokens is 0, prev is NULL, tokens is NULL
 * with n_tokens > 0, or out is NULL with out_cap > 0. */
TM_API size_t tm_chain_keys(const uint32_t* tokens, size_t n_tokens, uint32_t block_tokens,
                            const tm_key* prev, tm_key* out, size_t out_cap);

/* Writes the key as 32 lower-case hex digits, hi first, plus a NUL:
 * out must hold TM_KEY_HEX_LEN + 1 bytes. The same text as
 * tokenmem::BlockKey::ToHex. Does nothing when key or out is NULL. */
TM_API void tm_key_to_hex(const tm_key* key, char* out);

/* Parses exactly 32 hex digits (either case) followed by a NUL.
 * Returns TM_OK, or TM_INVALID_ARGUMENT (hex or out NULL, wrong length, a
 * non-hex character) leaving *out unchanged. */
TM_API int tm_key_from_hex(const char* hex, tm_key* out);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* TOKENMEM_TOKENMEM_KEYS_H_ */
