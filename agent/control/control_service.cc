#include "control/control_service.h"

#include <grpc/grpc_security_constants.h>

#include <algorithm>
#include <span>
#include <vector>

#include "control/proto_convert.h"
#include "tokenmem/common/log.h"

namespace tokenmem::control {
namespace {

grpc::Status Invalid(const std::string& message) {
  return {grpc::StatusCode::INVALID_ARGUMENT, message};
}

bool SameInConstantTime(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < b.size(); ++i) {
    unsigned char c = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    diff |= static_cast<unsigned char>(c ^ static_cast<unsigned char>(b[i]));
  }
  return diff == 0;
}

}  // namespace

std::string_view TransportName(Transport transport) {
  return transport == Transport::kTcp ? "tcp" : "unix";
}

std::string_view AuthFailureName(AuthFailure failure) {
  switch (failure) {
    case AuthFailure::kNotAdmin:
      return "not_admin";
    case AuthFailure::kNoToken:
      return "no_token";
    case AuthFailure::kWrongToken:
      return "wrong_token";
    case AuthFailure::kNoClientCert:
      return "no_client_cert";
  }
  return "not_admin";
}

ControlService::ControlService(pool::PoolManager* pools, pool::LeaseTable* leases,
                               const AgentInfo* info, CallerPolicy policy)
    : pools_(pools), leases_(leases), info_(info), policy_(std::move(policy)) {}

ControlService::ControlService(pool::PoolManager* pools, pool::LeaseTable* leases,
                               const AgentInfo* info, std::string admin_token)
    : ControlService(
          pools, leases, info,
          CallerPolicy{.transport = admin_token.empty() ? Transport::kUnix : Transport::kTcp,
                       .refuse_all = false,
                       .admin_token = std::move(admin_token),
                       .require_client_cert = false,
                       .on_failure = {}}) {}

template <typename Body>
grpc::Status ControlService::Observed(std::string_view operation, Body&& body) {
  if (info_ == nullptr || !info_->observe_operation) return body();
  const auto started = std::chrono::steady_clock::now();
  grpc::Status status = body();
  info_->observe_operation(operation, std::chrono::steady_clock::now() - started, status.ok());
  return status;
}

grpc::Status ControlService::Refuse(AuthFailure failure, grpc::StatusCode code,
                                    std::string message) const {
  if (policy_.on_failure) policy_.on_failure(policy_.transport, failure);
  return {code, std::move(message)};
}

grpc::Status ControlService::Authorize(const grpc::ServerContext* ctx) const {
  if (policy_.refuse_all) {
    return Refuse(AuthFailure::kNotAdmin, grpc::StatusCode::PERMISSION_DENIED,
                  "the control API is for node admins only: this socket admits uid 0 and the "
                  "agent's control.admin_uids and control.admin_gids, and the calling process "
                  "is none of them (tenants use the data socket with their lease)");
  }
  if (policy_.require_client_cert) {
    // The handshake already verified any certificate presented against the
    // client CA; what is left to check is that one was presented at all.
    auto auth = ctx->auth_context();
    if (auth == nullptr || auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME).empty()) {
      return Refuse(AuthFailure::kNoClientCert, grpc::StatusCode::UNAUTHENTICATED,
                    "this listener requires a client certificate signed by the agent's "
                    "control.tls_client_ca_file (mTLS); the connection presented none");
    }
  }
  if (policy_.admin_token.empty()) return grpc::Status::OK;
  const auto& metadata = ctx->client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return Refuse(AuthFailure::kNoToken, grpc::StatusCode::UNAUTHENTICATED,
                  "missing 'authorization: Bearer <token>' metadata (the admin token)");
  }
  std::string_view value(it->second.data(), it->second.size());
  constexpr std::string_view kBearer = "Bearer ";
  if (value.substr(0, kBearer.size()) != kBearer ||
      !SameInConstantTime(value.substr(kBearer.size()), policy_.admin_token)) {
    return Refuse(AuthFailure::kWrongToken, grpc::StatusCode::UNAUTHENTICATED, "wrong admin token");
  }
  return grpc::Status::OK;
}

grpc::Status ControlService::Open(const grpc::ServerContext* ctx, const v1::LeaseCredentials& creds,
                                  const std::string& pool_name,
                                  const google::protobuf::RepeatedPtrField<std::string>& keys,
                                  bool write, Access* access) const {
  if (auto auth = Authorize(ctx); !auth.ok()) return auth;
  if (creds.id().empty()) return Invalid("a lease id is required");
  if (Status s = pool::ValidatePoolName(pool_name); !s.ok()) return ToGrpc(s);
  if (auto s = CheckKeyCount(static_cast<size_t>(keys.size())); !s.ok()) return s;
  access->keys.reserve(keys.size());
  for (int i = 0; i < keys.size(); ++i) {
    auto key = KeyFromBytes(keys[i]);
    if (!key.ok()) return ToGrpc(key.status().WithContext("key " + std::to_string(i)));
    access->keys.push_back(*key);
  }
  auto lease = leases_->Authenticate(creds.id(), creds.secret(), pool_name, write);
  if (!lease.ok()) return ToGrpc(lease.status());
  auto pool = pools_->Find(pool_name);
  if (!pool.ok()) return ToGrpc(pool.status());
  if (Status s = (*lease)->AdmittedTo(pool_name, (*pool)->spec().allowed_namespaces); !s.ok()) {
    return ToGrpc(s);
  }
  access->lease = std::move(lease).value();
  access->pool = std::move(pool).value();
  return grpc::Status::OK;
}

grpc::Status ControlService::CheckKeyCount(size_t count) const {
  if (count <= kMaxKeysPerCall) return grpc::Status::OK;
  limits::Note(info_ != nullptr ? info_->limits : nullptr, limits::Limit::kRequestSize);
  return Invalid("at most " + std::to_string(kMaxKeysPerCall) + " keys per call, got " +
                 std::to_string(count));
}

grpc::Status ControlService::CheckReplyBytes(size_t keys, uint64_t block_size) const {
  const uint64_t limit = info_ != nullptr ? info_->max_reply_bytes : 0;
  // Every key may hit a full block, and each block's framing in the reply
  // (message tag and length, data tag and length, found, tier) stays under
  // 16 bytes. keys <= kMaxKeysPerCall and block_size < 2^32: no overflow.
  constexpr uint64_t kFramingPerBlock = 16;
  const uint64_t worst = static_cast<uint64_t>(keys) * (block_size + kFramingPerBlock);
  if (limit == 0 || worst <= limit) return grpc::Status::OK;
  limits::Note(info_->limits, limits::Limit::kRequestSize);
  return Invalid("a get of " + std::to_string(keys) + " blocks of " + std::to_string(block_size) +
                 " bytes could answer " + std::to_string(worst) +
                 " bytes, more than the control API sends in one message "
                 "(control.max_message_size = " +
                 std::to_string(limit) + "): ask for at most " +
                 std::to_string(std::max<uint64_t>(limit / (block_size + kFramingPerBlock), 1)) +
                 " keys per call");
}

grpc::Status ControlService::GetStatus(grpc::ServerContext* ctx, const v1::StatusRequest*,
                                       v1::StatusReply* reply) {
  if (auto auth = Authorize(ctx); !auth.ok()) return auth;
  reply->set_version(info_->version);
  reply->set_node_name(info_->node_name);
  reply->set_uptime_seconds(std::chrono::duration_cast<std::chrono::seconds>(
                                std::chrono::steady_clock::now() - info_->started)
                                .count());
  const pool::TierCapacities reserved = pools_->Reserved();
  for (const auto& tier : info_->tiers) {
    auto* t = reply->add_tiers();
    t->set_kind(ToProto(tier.kind));
    for (int node : tier.numa_nodes) t->add_numa_nodes(node);
    t->set_capacity_bytes(tier.capacity_bytes);
    t->set_reserved_bytes(reserved.of(tier.kind));
    t->set_path(tier.path);
  }
  reply->set_pools(static_cast<uint32_t>(pools_->List().size()));
  reply->set_leases(static_cast<uint32_t>(leases_->size()));
  reply->set_recovered_blocks(pools_->recovered_blocks());
  return grpc::Status::OK;
}

grpc::Status ControlService::CreatePool(grpc::ServerContext* ctx, const v1::CreatePoolRequest* req,
                                        v1::PoolInfo* reply) {
  if (auto auth = Authorize(ctx); !auth.ok()) return auth;
  auto spec = FromProto(req->spec());
  if (!spec.ok()) return ToGrpc(spec.status());
  if (spec->block_size == 0) spec->block_size = pool::PoolSpec{}.block_size;
  auto pool = pools_->Create(*spec);
  if (!pool.ok()) return ToGrpc(pool.status());
  ToProto((*pool)->Snapshot(), reply);
  return grpc::Status::OK;
}

grpc::Status ControlService::GetPool(grpc::ServerContext* ctx, const v1::GetPoolRequest* req,
                                     v1::PoolInfo* reply) {
  if (auto auth = Authorize(ctx); !auth.ok()) return auth;
  if (Status s = pool::ValidatePoolName(req->name()); !s.ok()) return ToGrpc(s);
  auto pool = pools_->Find(req->name());
  if (!pool.ok()) return ToGrpc(pool.status());
  ToProto((*pool)->Snapshot(), reply);
  return grpc::Status::OK;
}

grpc::Status ControlService::ListPools(grpc::ServerContext* ctx, const v1::ListPoolsRequest*,
                                       v1::ListPoolsReply* reply) {
  if (auto auth = Authorize(ctx); !auth.ok()) return auth;
  for (const auto& pool : pools_->List()) ToProto(pool->Snapshot(), reply->add_pools());
  return grpc::Status::OK;
}

grpc::Status ControlService::DeletePool(grpc::ServerContext* ctx, const v1::DeletePoolRequest* req,
                                        v1::DeletePoolReply*) {
  if (auto auth = Authorize(ctx); !auth.ok()) return auth;
  return ToGrpc(pools_->Delete(req->name()));
}

namespace {
// Everything but the secret, which only CreateLease's reply carries.
void LeaseToProto(const pool::LeaseAccount& account, v1::LeaseInfo* out) {
  out->set_id(account.id());
  out->set_quota_bytes(account.options().quota_bytes);
  out->set_used_bytes(account.used_bytes());
  for (const auto& p : account.options().pools) out->add_pools(p);
  out->set_read_only(account.options().read_only);
  out->set_owner(account.options().owner);
  out->set_created_unix_seconds(account.created_unix_seconds());
  out->set_namespace_(account.namespace_name());
  out->set_namespace_pending(account.namespace_pending());
}
}  // namespace

grpc::Status ControlService::CreateLease(grpc::ServerContext* ctx,
                                         const v1::CreateLeaseRequest* req, v1::LeaseInfo* reply) {
  if (auto auth = Authorize(ctx); !auth.ok()) return auth;
  pool::LeaseOptions options;
  options.quota_bytes = req->quota_bytes();
  for (const auto& name : req->pools()) {
    if (Status s = pool::ValidatePoolName(name); !s.ok()) return ToGrpc(s);
    options.pools.push_back(name);
  }
  options.read_only = req->read_only();
  options.owner = req->owner();
  options.namespace_name = req->namespace_();
  options.namespace_pending = req->namespace_pending();
  auto lease = leases_->Create(std::move(options));
  if (!lease.ok()) return ToGrpc(lease.status());
  LeaseToProto(*lease->account, reply);
  reply->set_secret(lease->secret);
  return grpc::Status::OK;
}

grpc::Status ControlService::BindLease(grpc::ServerContext* ctx, const v1::BindLeaseRequest* req,
                                       v1::LeaseInfo* reply) {
  if (auto auth = Authorize(ctx); !auth.ok()) return auth;
  if (req->id().empty()) return Invalid("a lease id is required");
  auto lease = leases_->Bind(req->id(), req->namespace_());
  if (!lease.ok()) return ToGrpc(lease.status());
  LeaseToProto(**lease, reply);
  return grpc::Status::OK;
}

grpc::Status ControlService::ReleaseLease(grpc::ServerContext* ctx,
                                          const v1::ReleaseLeaseRequest* req,
                                          v1::ReleaseLeaseReply*) {
  if (auto auth = Authorize(ctx); !auth.ok()) return auth;
  if (req->id().empty()) return Invalid("a lease id is required");
  return ToGrpc(leases_->Release(req->id()));
}

grpc::Status ControlService::ListLeases(grpc::ServerContext* ctx, const v1::ListLeasesRequest*,
                                        v1::ListLeasesReply* reply) {
  if (auto auth = Authorize(ctx); !auth.ok()) return auth;
  for (const auto& account : leases_->List()) LeaseToProto(*account, reply->add_leases());
  return grpc::Status::OK;
}

grpc::Status ControlService::Put(grpc::ServerContext* ctx, const v1::PutRequest* req,
                                 v1::PutReply* reply) {
  return Observed("put", [&]() -> grpc::Status {
    // Counted before a single key is copied: the request is in memory
    // already (gRPC bounds it by control.max_message_size), nothing more
    // is allocated for a call that will be refused.
    if (auto s = CheckKeyCount(static_cast<size_t>(req->blocks_size())); !s.ok()) return s;
    google::protobuf::RepeatedPtrField<std::string> keys;
    keys.Reserve(req->blocks_size());
    for (const auto& block : req->blocks()) *keys.Add() = block.key();
    Access access;
    if (auto s = Open(ctx, req->lease(), req->pool(), keys, /*write=*/true, &access); !s.ok())
      return s;
    const auto& spec = access.pool->spec();
    for (int i = 0; i < req->blocks_size(); ++i) {
      if (req->blocks(i).data().size() > spec.block_size) {
        limits::Note(info_ != nullptr ? info_->limits : nullptr, limits::Limit::kRequestSize);
        return Invalid("block " + std::to_string(i) + " has " +
                       std::to_string(req->blocks(i).data().size()) + " bytes; pool '" + spec.name +
                       "' holds at most " + std::to_string(spec.block_size));
      }
    }
    const auto& lease = *access.lease;
    const uint64_t need = static_cast<uint64_t>(req->blocks_size()) * spec.block_size;
    if (lease.used_bytes() + need > lease.options().quota_bytes) {
      return {grpc::StatusCode::RESOURCE_EXHAUSTED,
              "lease '" + lease.id() + "' quota exceeded: the batch needs " + std::to_string(need) +
                  " bytes, " +
                  std::to_string(lease.options().quota_bytes -
                                 std::min(lease.used_bytes(), lease.options().quota_bytes)) +
                  " are left"};
    }
    reply->mutable_results()->Reserve(req->blocks_size());
    for (int i = 0; i < req->blocks_size(); ++i) {
      const std::string& data = req->blocks(i).data();
      auto put = access.pool->Put(access.keys[i],
                                  std::as_bytes(std::span(data.data(), data.size())), access.lease);
      auto* result = reply->add_results();
      if (put.ok()) {
        result->set_tier(ToProto(*put));
      } else {
        result->set_code(static_cast<int32_t>(put.status().code()));
        result->set_message(put.status().message());
      }
    }
    return grpc::Status::OK;
  });
}

grpc::Status ControlService::Get(grpc::ServerContext* ctx, const v1::GetRequest* req,
                                 v1::GetReply* reply) {
  return Observed("get", [&]() -> grpc::Status {
    Access access;
    if (auto s = Open(ctx, req->lease(), req->pool(), req->keys(), false, &access); !s.ok())
      return s;
    const uint64_t block_size = access.pool->spec().block_size;
    if (auto s = CheckReplyBytes(access.keys.size(), block_size); !s.ok()) return s;
    for (size_t i = 0; i < access.keys.size(); ++i) reply->add_blocks();
    // One block-sized buffer for the call; each hit is copied out at its
    // own length, so the reply holds what was found, not keys x block size.
    std::vector<std::byte> scratch(block_size);
    // Tail first: the head of a chain ends up the most recently used.
    for (size_t i = access.keys.size(); i-- > 0;) {
      auto* block = reply->mutable_blocks(static_cast<int>(i));
      auto got = access.pool->Get(access.keys[i], scratch);
      if (got.ok()) {
        block->set_data(reinterpret_cast<const char*>(scratch.data()), got->length);
        block->set_found(true);
        block->set_tier(ToProto(got->tier));
      } else if (!got.status().IsNotFound()) {
        return ToGrpc(got.status().WithContext("key " + std::to_string(i)));
      }
    }
    return grpc::Status::OK;
  });
}

grpc::Status ControlService::Exists(grpc::ServerContext* ctx, const v1::ExistsRequest* req,
                                    v1::ExistsReply* reply) {
  return Observed("exists", [&]() -> grpc::Status {
    Access access;
    if (auto s = Open(ctx, req->lease(), req->pool(), req->keys(), false, &access); !s.ok())
      return s;
    for (const auto& key : access.keys) reply->add_present(access.pool->Locate(key).ok());
    return grpc::Status::OK;
  });
}

grpc::Status ControlService::LookupPrefix(grpc::ServerContext* ctx,
                                          const v1::LookupPrefixRequest* req,
                                          v1::LookupPrefixReply* reply) {
  return Observed("lookup_prefix", [&]() -> grpc::Status {
    Access access;
    if (auto s = Open(ctx, req->lease(), req->pool(), req->keys(), false, &access); !s.ok())
      return s;
    std::vector<pool::TierKind> tiers;
    reply->set_matched(access.pool->LookupPrefix(access.keys, &tiers));
    for (pool::TierKind t : tiers) reply->add_tiers(ToProto(t));
    return grpc::Status::OK;
  });
}

grpc::Status ControlService::Delete(grpc::ServerContext* ctx, const v1::DeleteRequest* req,
                                    v1::DeleteReply* reply) {
  return Observed("delete", [&]() -> grpc::Status {
    Access access;
    if (auto s = Open(ctx, req->lease(), req->pool(), req->keys(), true, &access); !s.ok())
      return s;
    uint32_t deleted = 0;
    for (const auto& key : access.keys) deleted += access.pool->Remove(key).ok() ? 1 : 0;
    reply->set_deleted(deleted);
    return grpc::Status::OK;
  });
}

grpc::Status ControlService::PinOrUnpin(grpc::ServerContext* ctx, const v1::PinRequest* req,
                                        v1::PinReply* reply, bool pin) {
  Access access;
  if (auto s = Open(ctx, req->lease(), req->pool(), req->keys(), true, &access); !s.ok()) return s;
  uint32_t changed = 0;
  for (const auto& key : access.keys) {
    Status s = pin ? access.pool->Pin(key, access.lease) : access.pool->Unpin(key, access.lease);
    if (s.ok()) {
      ++changed;
    } else if (!s.IsNotFound()) {
      return ToGrpc(s);
    }
  }
  reply->set_changed(changed);
  return grpc::Status::OK;
}

grpc::Status ControlService::Pin(grpc::ServerContext* ctx, const v1::PinRequest* req,
                                 v1::PinReply* reply) {
  return Observed("pin", [&]() -> grpc::Status { return PinOrUnpin(ctx, req, reply, true); });
}

grpc::Status ControlService::Unpin(grpc::ServerContext* ctx, const v1::PinRequest* req,
                                   v1::PinReply* reply) {
  return Observed("unpin", [&]() -> grpc::Status { return PinOrUnpin(ctx, req, reply, false); });
}

grpc::Status ControlService::GetStats(grpc::ServerContext* ctx, const v1::StatsRequest* req,
                                      v1::StatsReply* reply) {
  if (auto auth = Authorize(ctx); !auth.ok()) return auth;
  if (!req->pool().empty()) {
    auto pool = pools_->Find(req->pool());
    if (!pool.ok()) return ToGrpc(pool.status());
    ToProto((*pool)->Snapshot(), reply->add_pools());
    return grpc::Status::OK;
  }
  for (const auto& pool : pools_->List()) ToProto(pool->Snapshot(), reply->add_pools());
  return grpc::Status::OK;
}

}  // namespace tokenmem::control
