#include "control/proto_convert.h"

namespace tokenmem::control {
namespace {
constexpr pool::TierKind kTiers[] = {pool::TierKind::kDram, pool::TierKind::kCxl,
                                     pool::TierKind::kNvme};
}

grpc::Status ToGrpc(const Status& status) {
  using grpc::StatusCode;
  StatusCode code = StatusCode::INTERNAL;
  switch (status.code()) {
    case tokenmem::StatusCode::kOk:
      return grpc::Status::OK;
    case tokenmem::StatusCode::kNotFound:
      code = StatusCode::NOT_FOUND;
      break;
    case tokenmem::StatusCode::kInvalidArgument:
      code = StatusCode::INVALID_ARGUMENT;
      break;
    case tokenmem::StatusCode::kAlreadyExists:
      code = StatusCode::ALREADY_EXISTS;
      break;
    case tokenmem::StatusCode::kResourceExhausted:
      code = StatusCode::RESOURCE_EXHAUSTED;
      break;
    case tokenmem::StatusCode::kPermissionDenied:
      code = StatusCode::PERMISSION_DENIED;
      break;
    case tokenmem::StatusCode::kFailedPrecondition:
      code = StatusCode::FAILED_PRECONDITION;
      break;
    case tokenmem::StatusCode::kCorruption:
      code = StatusCode::DATA_LOSS;
      break;
    case tokenmem::StatusCode::kIoError:
      code = StatusCode::INTERNAL;
      break;
    case tokenmem::StatusCode::kUnavailable:
      code = StatusCode::UNAVAILABLE;
      break;
    case tokenmem::StatusCode::kInternal:
      code = StatusCode::INTERNAL;
      break;
  }
  return {code, status.message()};
}

Result<BlockKey> KeyFromBytes(const std::string& bytes) {
  if (bytes.size() != 16) {
    return InvalidArgument("a block key is 16 bytes, got " + std::to_string(bytes.size()));
  }
  BlockKey key;
  for (int i = 0; i < 8; ++i) key.hi = (key.hi << 8) | static_cast<unsigned char>(bytes[i]);
  for (int i = 8; i < 16; ++i) key.lo = (key.lo << 8) | static_cast<unsigned char>(bytes[i]);
  return key;
}

std::string KeyToBytes(const BlockKey& key) {
  std::string out(16, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(key.hi >> (56 - 8 * i));
  for (int i = 0; i < 8; ++i) out[8 + i] = static_cast<char>(key.lo >> (56 - 8 * i));
  return out;
}

v1::TierKind ToProto(pool::TierKind tier) {
  switch (tier) {
    case pool::TierKind::kDram:
      return v1::TIER_KIND_DRAM;
    case pool::TierKind::kCxl:
      return v1::TIER_KIND_CXL;
    case pool::TierKind::kNvme:
      return v1::TIER_KIND_NVME;
  }
  return v1::TIER_KIND_UNSPECIFIED;
}

Result<pool::TierKind> FromProto(v1::TierKind tier) {
  switch (tier) {
    case v1::TIER_KIND_DRAM:
      return pool::TierKind::kDram;
    case v1::TIER_KIND_CXL:
      return pool::TierKind::kCxl;
    case v1::TIER_KIND_NVME:
      return pool::TierKind::kNvme;
    default:
      return InvalidArgument("unknown tier kind " + std::to_string(static_cast<int>(tier)));
  }
}

Result<pool::PoolSpec> FromProto(const v1::PoolSpec& in) {
  pool::PoolSpec spec;
  spec.name = in.name();
  spec.block_size = in.block_size();
  for (const auto& c : in.capacity()) {
    TM_ASSIGN_OR_RETURN(pool::TierKind tier, FromProto(c.tier()));
    spec.capacity.of(tier) = c.bytes();
  }
  switch (in.eviction()) {
    case v1::EVICTION_POLICY_UNSPECIFIED:
    case v1::EVICTION_POLICY_LRU:
      spec.eviction = pool::EvictionPolicy::kLru;
      break;
    case v1::EVICTION_POLICY_NONE:
      spec.eviction = pool::EvictionPolicy::kNone;
      break;
    default:
      return InvalidArgument("unknown eviction policy " +
                             std::to_string(static_cast<int>(in.eviction())));
  }
  spec.ttl_seconds = in.ttl_seconds();
  switch (in.scope()) {
    case v1::POOL_SCOPE_UNSPECIFIED:
    case v1::POOL_SCOPE_LOCAL:
      spec.scope = pool::PoolScope::kLocal;
      break;
    case v1::POOL_SCOPE_CLUSTER:
      spec.scope = pool::PoolScope::kCluster;
      break;
    default:
      return InvalidArgument("unknown pool scope " + std::to_string(static_cast<int>(in.scope())));
  }
  spec.allowed_namespaces.assign(in.allowed_namespaces().begin(), in.allowed_namespaces().end());
  pool::NormalizeNamespaces(&spec.allowed_namespaces);
  return spec;
}

void ToProto(const pool::PoolSpec& spec, v1::PoolSpec* out) {
  out->set_name(spec.name);
  out->set_block_size(spec.block_size);
  for (pool::TierKind t : kTiers) {
    if (spec.capacity.of(t) == 0) continue;
    auto* c = out->add_capacity();
    c->set_tier(ToProto(t));
    c->set_bytes(spec.capacity.of(t));
  }
  out->set_eviction(spec.eviction == pool::EvictionPolicy::kNone ? v1::EVICTION_POLICY_NONE
                                                                 : v1::EVICTION_POLICY_LRU);
  out->set_ttl_seconds(spec.ttl_seconds);
  out->set_scope(spec.scope == pool::PoolScope::kCluster ? v1::POOL_SCOPE_CLUSTER
                                                         : v1::POOL_SCOPE_LOCAL);
  for (const auto& ns : spec.allowed_namespaces) out->add_allowed_namespaces(ns);
}

namespace {
void UsageToProto(const pool::PoolSnapshot& s,
                  google::protobuf::RepeatedPtrField<v1::TierUsage>* out) {
  for (pool::TierKind t : kTiers) {
    const auto& u = s.usage[static_cast<size_t>(t)];
    if (u.capacity_bytes == 0) continue;
    auto* p = out->Add();
    p->set_tier(ToProto(t));
    p->set_capacity_bytes(u.capacity_bytes);
    p->set_used_bytes(u.used_bytes);
    p->set_blocks(u.blocks);
    p->set_pinned_blocks(u.pinned_blocks);
  }
}
}  // namespace

void ToProto(const pool::PoolSnapshot& snapshot, v1::PoolInfo* out) {
  ToProto(snapshot.spec, out->mutable_spec());
  UsageToProto(snapshot, out->mutable_usage());
}

void ToProto(const pool::PoolSnapshot& s, v1::PoolStats* out) {
  const auto& c = s.counters;
  out->set_pool(s.spec.name);
  out->set_puts(c.puts);
  out->set_gets(c.gets);
  out->set_misses(c.misses);
  out->set_prefix_lookups(c.prefix_lookups);
  out->set_prefix_keys_matched(c.prefix_keys_matched);
  out->set_expired(c.expired);
  out->set_checksum_failures(c.checksum_failures);
  out->set_quota_rejections(c.quota_rejections);
  out->set_capacity_rejections(c.capacity_rejections);
  out->set_io_errors(c.io_errors);
  for (pool::TierKind t : kTiers) {
    if (s.usage[static_cast<size_t>(t)].capacity_bytes == 0) continue;
    const auto& tc = c.tiers[static_cast<size_t>(t)];
    auto* p = out->add_tiers();
    p->set_tier(ToProto(t));
    p->set_hits(tc.hits);
    p->set_bytes_read(tc.bytes_read);
    p->set_bytes_written(tc.bytes_written);
    p->set_demotions_out(tc.demotions_out);
    p->set_promotions_in(tc.promotions_in);
    p->set_bytes_demoted_out(tc.bytes_demoted_out);
    p->set_bytes_promoted_in(tc.bytes_promoted_in);
    p->set_evictions(tc.evictions);
  }
  UsageToProto(s, out->mutable_usage());
}

}  // namespace tokenmem::control
