// TokenMemoryPool (JSON, as the API server sends it) -> pool::PoolSpec.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "pool/pool_spec.h"
#include "tokenmem/common/status.h"

namespace tokenmem::k8s {

// Sizes as the CRD takes them: a non-negative integer is bytes; a string is
// digits with an optional binary (Ki, Mi, Gi, Ti, KiB...) or decimal (KB,
// MB, GB, TB) suffix. Bare K, M, G, T are refused: Kubernetes reads them as
// powers of 1000 and the agent's config as powers of 1024.
// kInvalidArgument naming `field` otherwise.
Result<uint64_t> ParseCrdSize(const nlohmann::json& value, const std::string& field);

// The pool the object asks for: metadata.name, spec.blockSize,
// spec.capacity.{dram,cxl,nvme}, spec.evictionPolicy, spec.ttlSeconds,
// spec.scope (node -> PoolScope::kLocal, the default; cluster ->
// PoolScope::kCluster; anything else is an error). The
// spec passes pool::ValidatePoolSpec. kInvalidArgument whose message names
// the field at fault otherwise.
Result<pool::PoolSpec> TranslatePool(const nlohmann::json& object);

}  // namespace tokenmem::k8s
