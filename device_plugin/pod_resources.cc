#include "pod_resources.h"

#include <grpcpp/client_context.h>

#include <algorithm>

#include "kubelet_api.h"
#include "unix_channel.h"
#include "wire/channel.h"
#include "wire/codes.h"

namespace tokenmem::device_plugin {
namespace {

class GrpcPodResources final : public PodResourcesSource {
 public:
  GrpcPodResources(std::shared_ptr<grpc::Channel> channel, std::chrono::milliseconds timeout)
      : stub_(::v1::PodResourcesLister::NewStub(std::move(channel))), timeout_(timeout) {}

  Result<DeviceHolders> ListDeviceHolders(const std::string& resource_name) override {
    grpc::ClientContext ctx;
    wire::SetTimeout(&ctx, timeout_);
    ::v1::ListPodResourcesResponse reply;
    grpc::Status s = stub_->List(&ctx, ::v1::ListPodResourcesRequest(), &reply);
    if (!s.ok()) return wire::FromRpcStatus("PodResources List", s);
    DeviceHolders out;
    for (const auto& pod : reply.pod_resources()) {
      const PodRef ref{pod.namespace_(), pod.name()};
      for (const auto& container : pod.containers()) {
        for (const auto& devices : container.devices()) {
          if (devices.resource_name() != resource_name) continue;
          for (const auto& id : devices.device_ids()) {
            // Init and app containers of one pod may list the same device.
            std::vector<PodRef>& pods = out[id];
            auto at = std::lower_bound(pods.begin(), pods.end(), ref);
            if (at == pods.end() || *at != ref) pods.insert(at, ref);
          }
        }
      }
    }
    return out;
  }

 private:
  std::unique_ptr<::v1::PodResourcesLister::Stub> stub_;
  const std::chrono::milliseconds timeout_;
};

}  // namespace

Result<std::set<std::string>> PodResourcesSource::AssignedDevices(
    const std::string& resource_name) {
  TM_ASSIGN_OR_RETURN(DeviceHolders holders, ListDeviceHolders(resource_name));
  std::set<std::string> out;
  for (const auto& [id, pods] : holders) out.insert(id);
  return out;
}

Result<std::unique_ptr<PodResourcesSource>> MakeGrpcPodResources(
    const std::string& socket_path, std::chrono::milliseconds timeout) {
  TM_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel, UnixChannel(socket_path));
  return std::unique_ptr<PodResourcesSource>(new GrpcPodResources(std::move(channel), timeout));
}

}  // namespace tokenmem::device_plugin
