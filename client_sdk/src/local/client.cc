// tokenmem::Client: connecting, the environment, attaching pools.
#include "tokenmem/client.h"

#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "local/pool_impl.h"
#include "local/session.h"
#include "local/wire.h"
#include "remote/remote_pool.h"
#include "tokenmem/layout/local_protocol.h"

namespace tokenmem {
namespace {

using client_internal::PayloadReader;
using client_internal::PayloadWriter;
using client_internal::PoolMap;
using client_internal::RemotePool;
using client_internal::UniqueFd;

constexpr size_t kMaxPoolName = 63;  // the wire field is 64 bytes, NUL-padded

std::string EnvOrEmpty(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

bool ParseDecimal(std::string_view text, uint64_t* out) {
  if (text.empty() || text.size() > 20) return false;
  uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - digit) / 10) return false;
    v = v * 10 + digit;
  }
  *out = v;
  return true;
}

}  // namespace

Client::Client(ClientOptions options, std::shared_ptr<Session> session)
    : options_(std::move(options)), session_(std::move(session)) {}

Client::Client(ClientOptions options, std::shared_ptr<transport::RemoteConnection> remote)
    : options_(std::move(options)), remote_(std::move(remote)) {}

Client::~Client() = default;

Result<std::unique_ptr<Client>> Client::Connect(const ClientOptions& options) {
  if (!options.socket_path.empty()) {
    TM_ASSIGN_OR_RETURN(std::shared_ptr<Session> session, Session::Open(options));
    return std::unique_ptr<Client>(new Client(options, std::move(session)));
  }
  if (!options.agent_address.empty()) {
    TM_ASSIGN_OR_RETURN(std::shared_ptr<transport::RemoteConnection> remote,
                        client_internal::ConnectRemote(options));
    return std::unique_ptr<Client>(new Client(options, std::move(remote)));
  }
  return InvalidArgument(
      "no agent to connect to: set ClientOptions::socket_path (the agent's data socket on this "
      "node) or ClientOptions::agent_address (host:port of its remote listener)");
}

Result<std::unique_ptr<Client>> Client::Connect(std::string_view socket_path,
                                                std::string_view lease_id,
                                                std::string_view lease_secret) {
  ClientOptions options;
  options.socket_path = std::string(socket_path);
  options.lease_id = std::string(lease_id);
  options.lease_secret = std::string(lease_secret);
  return Connect(options);
}

Result<ClientOptions> Client::OptionsFromEnv() {
  ClientOptions options;
  options.socket_path = EnvOrEmpty(kEnvAgentSocket);
  options.agent_address = EnvOrEmpty(kEnvAgentAddress);
  if (options.agent_address.empty()) {
    const std::string endpoints = EnvOrEmpty(kEnvRemoteEndpoints);
    options.agent_address = endpoints.substr(0, endpoints.find(','));
  }
  if (options.socket_path.empty() && options.agent_address.empty()) {
    return InvalidArgument(std::string(kEnvAgentSocket) + " and " + kEnvAgentAddress +
                           " are not set: one must name the agent, by its data socket on this "
                           "node (for example /run/tokenmem/data.sock) or by the host:port of "
                           "its remote listener");
  }
  const std::string lease = EnvOrEmpty(kEnvLease);
  if (lease.empty()) {
    return InvalidArgument(std::string(kEnvLease) +
                           " is not set: it must hold the lease as ID:SECRET");
  }
  const size_t colon = lease.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == lease.size()) {
    return InvalidArgument(std::string(kEnvLease) + " is malformed: expected ID:SECRET");
  }
  options.lease_id = lease.substr(0, colon);
  options.lease_secret = lease.substr(colon + 1);
  options.default_pool = EnvOrEmpty(kEnvDefaultPool);
  const std::string quota = EnvOrEmpty(kEnvQuotaBytes);
  if (!quota.empty() && !ParseDecimal(quota, &options.quota_bytes)) {
    return InvalidArgument(std::string(kEnvQuotaBytes) +
                           " is malformed: expected a decimal number of bytes, got '" + quota +
                           "'");
  }
  return options;
}

Result<std::unique_ptr<Client>> Client::FromEnv() {
  TM_ASSIGN_OR_RETURN(ClientOptions options, OptionsFromEnv());
  if (options.agent_address.empty()) return Connect(options);
  if (!options.socket_path.empty()) {
    struct stat st {};
    if (::stat(options.socket_path.c_str(), &st) == 0) {
      auto local = Connect(options);
      if (local.ok() || local.status().code() != StatusCode::kUnavailable) return local;
    }
  }
  // No agent on this node: the remote path.
  options.socket_path.clear();
  return Connect(options);
}

bool Client::connected() const {
  return remote_ != nullptr ? client_internal::RemoteConnected(*remote_) : !session_->broken();
}

Result<std::shared_ptr<Pool>> Client::AttachDefault() {
  if (options_.default_pool.empty()) {
    return FailedPrecondition("no default pool (set " + std::string(kEnvDefaultPool) +
                              " or ClientOptions::default_pool)");
  }
  return Attach(options_.default_pool);
}

Result<std::shared_ptr<Pool>> Client::Attach(std::string_view pool_name) {
  if (pool_name.empty() || pool_name.size() > kMaxPoolName ||
      pool_name.find('\0') != std::string_view::npos) {
    return InvalidArgument("pool name must be 1 to 63 bytes");
  }
  const std::string name(pool_name);
  // UNAVAILABLE from an agent that is still connected is a pool waiting for
  // something that comes shortly (a device-plugin lease's namespace being
  // bound), so it is asked again until the client's timeout.
  const auto deadline = std::chrono::steady_clock::now() + options_.timeout;
  for (;;) {
    auto pool = AttachOnce(name);
    if (pool.ok() || pool.status().code() != StatusCode::kUnavailable || !connected() ||
        std::chrono::steady_clock::now() >= deadline) {
      return pool;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

Result<std::shared_ptr<Pool>> Client::AttachOnce(const std::string& name) {
  std::lock_guard lock(pools_mu_);
  auto cached = pools_.find(name);
  if (cached != pools_.end()) {
    // A pool the agent deleted or replaced is attached afresh.
    auto pool = cached->second.lock();
    if (pool && (remote_ != nullptr || PoolImplForTesting(*pool).Live().ok())) return pool;
  }
  if (remote_ != nullptr) {
    TM_ASSIGN_OR_RETURN(std::unique_ptr<RemotePool> backend, RemotePool::Attach(remote_, name));
    auto impl = std::make_unique<Pool::Impl>(name, std::move(backend));
    std::shared_ptr<Pool> pool(new Pool(std::move(impl)));
    pools_[name] = pool;
    return pool;
  }

  layout::AttachRequest request{};
  std::memcpy(request.pool, name.data(), name.size());
  PayloadWriter w;
  w.Put(request);
  auto reply = session_->Call(layout::kAttach, w.bytes());
  if (!reply.ok()) return reply.status().WithContext("ATTACH " + name);
  PayloadReader r(reply->payload);
  layout::AttachReply head{};
  std::vector<layout::SegmentInfo> segments;
  layout::StagingInfo staging{};
  if (!r.Get(&head) || !r.GetArray(head.segment_count, &segments) ||
      ((head.flags & layout::kAttachStaging) != 0 && !r.Get(&staging)) ||
      reply->fds.size() != 2 + static_cast<size_t>(head.segment_count) +
                               ((head.flags & layout::kAttachStaging) != 0 ? 1 : 0)) {
    return Internal("malformed ATTACH reply from the agent");
  }
  TM_ASSIGN_OR_RETURN(
      std::unique_ptr<PoolMap> map,
      PoolMap::Create(name, head, std::move(reply->fds[0]), std::move(reply->fds[1])));
  for (size_t i = 0; i < segments.size(); ++i) {
    TM_RETURN_IF_ERROR(map->AddSegment(segments[i], std::move(reply->fds[2 + i])));
  }
  if ((head.flags & layout::kAttachStaging) != 0) {
    TM_RETURN_IF_ERROR(map->AddStaging(staging, std::move(reply->fds.back())));
  }
  auto impl = std::make_unique<Pool::Impl>(session_, name, head.pool_id, std::move(map));
  std::shared_ptr<Pool> pool(new Pool(std::move(impl)));
  pools_[name] = pool;
  return pool;
}

}  // namespace tokenmem
