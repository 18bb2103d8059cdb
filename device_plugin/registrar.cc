#include "registrar.h"

#include <grpcpp/client_context.h>

#include "kubelet_api.h"
#include "tokenmem/common/log.h"
#include "unix_channel.h"
#include "wire/channel.h"
#include "wire/codes.h"

namespace tokenmem::device_plugin {
namespace {

class GrpcRegistrar final : public Registrar {
 public:
  explicit GrpcRegistrar(std::chrono::milliseconds timeout) : timeout_(timeout) {}

  Status Register(const Registration& registration) override {
    TM_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                        UnixChannel(registration.kubelet_socket));
    auto stub = ::v1beta1::Registration::NewStub(channel);
    ::v1beta1::RegisterRequest request;
    request.set_version(kDevicePluginApiVersion);
    request.set_endpoint(registration.endpoint);
    request.set_resource_name(registration.resource_name);
    request.mutable_options()->set_pre_start_required(false);
    request.mutable_options()->set_get_preferred_allocation_available(true);
    grpc::ClientContext ctx;
    wire::SetTimeout(&ctx, timeout_);
    // Wait for the socket to accept within the deadline rather than failing
    // at once: the kubelet may be a moment away from listening.
    ctx.set_wait_for_ready(true);
    ::v1beta1::Empty reply;
    grpc::Status s = stub->Register(&ctx, request, &reply);
    if (!s.ok()) return wire::FromRpcStatus("Register", s);
    return Status::Ok();
  }

 private:
  const std::chrono::milliseconds timeout_;
};

}  // namespace

std::unique_ptr<Registrar> MakeGrpcRegistrar(std::chrono::milliseconds timeout) {
  return std::make_unique<GrpcRegistrar>(timeout);
}

}  // namespace tokenmem::device_plugin
