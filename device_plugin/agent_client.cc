#include "agent_client.h"

#include <grpcpp/client_context.h>

#include "tokenmem/v1/control.grpc.pb.h"
#include "unix_channel.h"
#include "wire/channel.h"
#include "wire/codes.h"

namespace tokenmem::device_plugin {
namespace {

TierKind FromProto(v1::TierKind kind) {
  switch (kind) {
    case v1::TIER_KIND_DRAM:
      return TierKind::kDram;
    case v1::TIER_KIND_CXL:
      return TierKind::kCxl;
    case v1::TIER_KIND_NVME:
      return TierKind::kNvme;
    default:
      return TierKind::kUnknown;
  }
}

class GrpcAgentClient final : public AgentClient {
 public:
  GrpcAgentClient(std::shared_ptr<grpc::Channel> channel, std::chrono::milliseconds timeout)
      : stub_(v1::Control::NewStub(std::move(channel))), timeout_(timeout) {}

  Result<AgentStatus> GetStatus() override {
    grpc::ClientContext ctx;
    wire::SetTimeout(&ctx, timeout_);
    v1::StatusReply reply;
    grpc::Status s = stub_->GetStatus(&ctx, v1::StatusRequest(), &reply);
    if (!s.ok()) return wire::FromRpcStatus("GetStatus", s);
    AgentStatus out;
    out.node_name = reply.node_name();
    out.version = reply.version();
    for (const auto& tier : reply.tiers()) {
      TierReport t;
      t.kind = FromProto(tier.kind());
      t.numa_nodes.assign(tier.numa_nodes().begin(), tier.numa_nodes().end());
      t.capacity_bytes = tier.capacity_bytes();
      t.reserved_bytes = tier.reserved_bytes();
      out.tiers.push_back(std::move(t));
    }
    return out;
  }

  Result<GrantedLease> CreateLease(const LeaseRequest& request) override {
    grpc::ClientContext ctx;
    wire::SetTimeout(&ctx, timeout_);
    v1::CreateLeaseRequest req;
    req.set_quota_bytes(request.quota_bytes);
    for (const auto& pool : request.pools) req.add_pools(pool);
    req.set_owner(request.owner);
    req.set_namespace_(request.pod_namespace);
    req.set_namespace_pending(request.namespace_pending);
    v1::LeaseInfo reply;
    grpc::Status s = stub_->CreateLease(&ctx, req, &reply);
    if (!s.ok()) return wire::FromRpcStatus("CreateLease", s);
    if (reply.id().empty() || reply.secret().empty()) {
      return Internal("CreateLease: the agent answered without a lease id or secret");
    }
    return GrantedLease{reply.id(), reply.secret(), reply.quota_bytes()};
  }

  Status ReleaseLease(const std::string& id) override {
    grpc::ClientContext ctx;
    wire::SetTimeout(&ctx, timeout_);
    v1::ReleaseLeaseRequest req;
    req.set_id(id);
    v1::ReleaseLeaseReply reply;
    grpc::Status s = stub_->ReleaseLease(&ctx, req, &reply);
    if (!s.ok()) return wire::FromRpcStatus("ReleaseLease", s);
    return Status::Ok();
  }

  Result<std::vector<LeaseRecord>> ListLeases() override {
    grpc::ClientContext ctx;
    wire::SetTimeout(&ctx, timeout_);
    v1::ListLeasesReply reply;
    grpc::Status s = stub_->ListLeases(&ctx, v1::ListLeasesRequest(), &reply);
    if (!s.ok()) return wire::FromRpcStatus("ListLeases", s);
    std::vector<LeaseRecord> out;
    out.reserve(reply.leases_size());
    for (const auto& lease : reply.leases()) {
      LeaseRecord record;
      record.id = lease.id();
      record.owner = lease.owner();
      record.quota_bytes = lease.quota_bytes();
      record.used_bytes = lease.used_bytes();
      record.created_unix_seconds = lease.created_unix_seconds();
      record.pod_namespace = lease.namespace_();
      record.namespace_pending = lease.namespace_pending();
      out.push_back(std::move(record));
    }
    return out;
  }

  Status BindLease(const std::string& id, const std::string& pod_namespace) override {
    grpc::ClientContext ctx;
    wire::SetTimeout(&ctx, timeout_);
    v1::BindLeaseRequest req;
    req.set_id(id);
    req.set_namespace_(pod_namespace);
    v1::LeaseInfo reply;
    grpc::Status s = stub_->BindLease(&ctx, req, &reply);
    if (!s.ok()) return wire::FromRpcStatus("BindLease", s);
    return Status::Ok();
  }

 private:
  std::unique_ptr<v1::Control::Stub> stub_;
  const std::chrono::milliseconds timeout_;
};

}  // namespace

Result<std::unique_ptr<AgentClient>> ConnectAgent(const std::string& control_socket,
                                                  std::chrono::milliseconds timeout) {
  TM_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel, UnixChannel(control_socket));
  return std::unique_ptr<AgentClient>(new GrpcAgentClient(std::move(channel), timeout));
}

}  // namespace tokenmem::device_plugin
