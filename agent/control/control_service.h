// ControlService: the gRPC control API (proto/tokenmem/v1/control.proto)
// in front of the pools and leases. It validates every request at the door
// and answers with a clear status; it holds no storage logic of its own.
//
// Thread-safe: gRPC calls the handlers from many threads.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "limits/limits.h"
#include "pool/lease_table.h"
#include "pool/pool_manager.h"
#include "tokenmem/v1/control.grpc.pb.h"

namespace tokenmem::control {

// Sees how long each data call took: `operation` is one of put, get,
// exists, lookup_prefix, delete, pin, unpin; `ok` is false when the call as a
// whole failed (a refused put of one block inside a successful reply is ok).
// Called from gRPC's threads, concurrently: must be thread-safe and cheap.
using OperationObserver =
    std::function<void(std::string_view operation, std::chrono::nanoseconds elapsed, bool ok)>;

// What GetStatus reports about the agent itself.
struct AgentInfo {
  struct Tier {
    pool::TierKind kind;
    std::vector<int> numa_nodes;
    uint64_t capacity_bytes = 0;
    std::string path;
  };
  std::string version;
  std::string node_name;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::vector<Tier> tiers;
  // Not reported: where the service sends its call latencies; empty: nowhere.
  OperationObserver observe_operation;
  // Not reported: the largest message the server sends (its
  // control.max_message_size); 0: no limit. A Get whose reply could be
  // larger is refused before anything is allocated for it.
  uint64_t max_reply_bytes = 0;
  // Not reported: told of each request refused for its size; may be null.
  limits::LimitObserver* limits = nullptr;
};

inline constexpr size_t kMaxKeysPerCall = 65536;

// Who may call: the control API is the node admin's plane
// (docs/security-admin-plane.md), authenticated on every transport.
enum class Transport { kUnix = 0, kTcp = 1 };
inline constexpr int kTransportCount = 2;
std::string_view TransportName(Transport transport);  // "unix", "tcp"

// Why a call was refused; the `reason` label of
// tokenmem_control_auth_failures_total.
enum class AuthFailure {
  kNotAdmin = 0,      // Unix peer whose uid/gids are not admitted (PERMISSION_DENIED)
  kNoToken = 1,       // TCP call without "authorization: Bearer" (UNAUTHENTICATED)
  kWrongToken = 2,    // TCP call with another token (UNAUTHENTICATED)
  kNoClientCert = 3,  // mTLS on, and the connection presented no certificate (UNAUTHENTICATED)
};
inline constexpr int kAuthFailureCount = 4;
// "not_admin", "no_token", "wrong_token", "no_client_cert".
std::string_view AuthFailureName(AuthFailure failure);

// Told about each refused call, from gRPC's threads: must be thread-safe.
using AuthFailureObserver = std::function<void(Transport, AuthFailure)>;

struct CallerPolicy {
  Transport transport = Transport::kUnix;
  // Every call is refused with PERMISSION_DENIED: the service that answers
  // Unix connections from peers who are not node admins.
  bool refuse_all = false;
  // Non-empty: every call must carry "authorization: Bearer <admin_token>".
  std::string admin_token;
  // Every call's connection must have presented a client certificate
  // (verified by the TLS handshake against the configured CA).
  bool require_client_cert = false;
  AuthFailureObserver on_failure;  // empty: refusals are not reported
};

class ControlService final : public tokenmem::v1::Control::Service {
 public:
  // Every call, whatever its method, is first checked against `policy`;
  // a refusal is the call's whole answer and changes nothing.
  ControlService(pool::PoolManager* pools, pool::LeaseTable* leases, const AgentInfo* info,
                 CallerPolicy policy);
  // The same with only an admin token (empty: no check, for a transport
  // whose callers were admitted before gRPC saw them).
  ControlService(pool::PoolManager* pools, pool::LeaseTable* leases, const AgentInfo* info,
                 std::string admin_token);

  grpc::Status GetStatus(grpc::ServerContext* ctx, const v1::StatusRequest* req,
                         v1::StatusReply* reply) override;
  grpc::Status CreatePool(grpc::ServerContext* ctx, const v1::CreatePoolRequest* req,
                          v1::PoolInfo* reply) override;
  grpc::Status GetPool(grpc::ServerContext* ctx, const v1::GetPoolRequest* req,
                       v1::PoolInfo* reply) override;
  grpc::Status ListPools(grpc::ServerContext* ctx, const v1::ListPoolsRequest* req,
                         v1::ListPoolsReply* reply) override;
  grpc::Status DeletePool(grpc::ServerContext* ctx, const v1::DeletePoolRequest* req,
                          v1::DeletePoolReply* reply) override;
  grpc::Status CreateLease(grpc::ServerContext* ctx, const v1::CreateLeaseRequest* req,
                           v1::LeaseInfo* reply) override;
  grpc::Status ReleaseLease(grpc::ServerContext* ctx, const v1::ReleaseLeaseRequest* req,
                            v1::ReleaseLeaseReply* reply) override;
  grpc::Status BindLease(grpc::ServerContext* ctx, const v1::BindLeaseRequest* req,
                         v1::LeaseInfo* reply) override;
  grpc::Status ListLeases(grpc::ServerContext* ctx, const v1::ListLeasesRequest* req,
                          v1::ListLeasesReply* reply) override;
  grpc::Status Put(grpc::ServerContext* ctx, const v1::PutRequest* req,
                   v1::PutReply* reply) override;
  grpc::Status Get(grpc::ServerContext* ctx, const v1::GetRequest* req,
                   v1::GetReply* reply) override;
  grpc::Status Exists(grpc::ServerContext* ctx, const v1::ExistsRequest* req,
                      v1::ExistsReply* reply) override;
  grpc::Status LookupPrefix(grpc::ServerContext* ctx, const v1::LookupPrefixRequest* req,
                            v1::LookupPrefixReply* reply) override;
  grpc::Status Delete(grpc::ServerContext* ctx, const v1::DeleteRequest* req,
                      v1::DeleteReply* reply) override;
  grpc::Status Pin(grpc::ServerContext* ctx, const v1::PinRequest* req,
                   v1::PinReply* reply) override;
  grpc::Status Unpin(grpc::ServerContext* ctx, const v1::PinRequest* req,
                     v1::PinReply* reply) override;
  grpc::Status GetStats(grpc::ServerContext* ctx, const v1::StatsRequest* req,
                        v1::StatsReply* reply) override;

 private:
  struct Access {
    std::shared_ptr<pool::LeaseAccount> lease;
    std::shared_ptr<pool::Pool> pool;
    std::vector<BlockKey> keys;
  };
  grpc::Status Authorize(const grpc::ServerContext* ctx) const;
  grpc::Status Refuse(AuthFailure failure, grpc::StatusCode code, std::string message) const;
  // Authenticates the lease for the pool and parses the keys; any failure
  // is the whole call's answer.
  grpc::Status Open(const grpc::ServerContext* ctx, const v1::LeaseCredentials& creds,
                    const std::string& pool,
                    const google::protobuf::RepeatedPtrField<std::string>& keys, bool write,
                    Access* access) const;
  // Runs `body` and reports its duration and outcome to the observer.
  template <typename Body>
  grpc::Status Observed(std::string_view operation, Body&& body);
  grpc::Status PinOrUnpin(grpc::ServerContext* ctx, const v1::PinRequest* req, v1::PinReply* reply,
                          bool pin);
  // INVALID_ARGUMENT (and a `request_size` report) for a call of `count`
  // keys, more than kMaxKeysPerCall; checked before any key is copied.
  grpc::Status CheckKeyCount(size_t count) const;
  // INVALID_ARGUMENT when the reply to a Get of `keys` blocks of
  // `block_size` bytes could exceed max_reply_bytes.
  grpc::Status CheckReplyBytes(size_t keys, uint64_t block_size) const;

  pool::PoolManager* pools_;
  pool::LeaseTable* leases_;
  const AgentInfo* info_;
  CallerPolicy policy_;
};

}  // namespace tokenmem::control
