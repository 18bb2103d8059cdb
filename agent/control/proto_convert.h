// Conversions between the control protocol's messages and the agent's types.
#pragma once

#include <grpcpp/grpcpp.h>

#include <string>

#include "pool/pool_spec.h"
#include "pool/pool_stats.h"
#include "tokenmem/common/block_key.h"
#include "tokenmem/common/status.h"
#include "tokenmem/v1/control.pb.h"

namespace tokenmem::control {

grpc::Status ToGrpc(const Status& status);

// 16 bytes, hi then lo, each big-endian.
Result<BlockKey> KeyFromBytes(const std::string& bytes);
std::string KeyToBytes(const BlockKey& key);

v1::TierKind ToProto(pool::TierKind tier);
Result<pool::TierKind> FromProto(v1::TierKind tier);

// Unknown tiers, eviction policies or scopes are INVALID_ARGUMENT; nothing else is
// checked here (ValidatePoolSpec does that).
Result<pool::PoolSpec> FromProto(const v1::PoolSpec& spec);
void ToProto(const pool::PoolSpec& spec, v1::PoolSpec* out);
void ToProto(const pool::PoolSnapshot& snapshot, v1::PoolInfo* out);
void ToProto(const pool::PoolSnapshot& snapshot, v1::PoolStats* out);

}  // namespace tokenmem::control
