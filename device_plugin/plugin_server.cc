#include "plugin_server.h"

#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "preferred.h"
#include "tokenmem/common/log.h"
#include "unix_channel.h"

namespace tokenmem::device_plugin {
namespace {

constexpr char kLog[] = "plugin";
// How long a ListAndWatch stream sleeps between checks that its kubelet is
// still there (the tracker wakes it at once for changes and for Stop).
constexpr std::chrono::milliseconds kStreamCheck{500};

grpc::StatusCode ToGrpcCode(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return grpc::StatusCode::OK;
    case StatusCode::kNotFound:
      return grpc::StatusCode::NOT_FOUND;
    case StatusCode::kInvalidArgument:
      return grpc::StatusCode::INVALID_ARGUMENT;
    case StatusCode::kAlreadyExists:
      return grpc::StatusCode::ALREADY_EXISTS;
    case StatusCode::kResourceExhausted:
      return grpc::StatusCode::RESOURCE_EXHAUSTED;
    case StatusCode::kPermissionDenied:
      return grpc::StatusCode::PERMISSION_DENIED;
    case StatusCode::kFailedPrecondition:
      return grpc::StatusCode::FAILED_PRECONDITION;
    case StatusCode::kUnavailable:
      return grpc::StatusCode::UNAVAILABLE;
    default:
      return grpc::StatusCode::INTERNAL;
  }
}

grpc::Status ToGrpc(const Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(ToGrpcCode(s.code()), s.message());
}

::v1beta1::ListAndWatchResponse ToResponse(const DeviceSnapshot& snapshot) {
  ::v1beta1::ListAndWatchResponse out;
  for (const auto& d : snapshot.devices) {
    auto* device = out.add_devices();
    device->set_id(d.id);
    device->set_health(d.healthy ? kHealthy : kUnhealthy);
    device->mutable_topology()->add_nodes()->set_id(d.numa_node);
  }
  return out;
}

}  // namespace

class DevicePluginService final : public ::v1beta1::DevicePlugin::Service {
 public:
  DevicePluginService(DeviceTracker* tracker, Allocator* allocator)
      : tracker_(tracker), allocator_(allocator) {}

  void Stop() {
    stopping_.store(true);
    tracker_->Wake();
  }

  grpc::Status GetDevicePluginOptions(grpc::ServerContext*, const ::v1beta1::Empty*,
                                      ::v1beta1::DevicePluginOptions* reply) override {
    reply->set_pre_start_required(false);
    reply->set_get_preferred_allocation_available(true);
    return grpc::Status::OK;
  }

  grpc::Status ListAndWatch(grpc::ServerContext* ctx, const ::v1beta1::Empty*,
                            grpc::ServerWriter<::v1beta1::ListAndWatchResponse>* writer) override {
    DeviceSnapshot snapshot = tracker_->Snapshot();
    TM_LOG(Info, kLog) << "ListAndWatch opened; sending " << snapshot.devices.size() << " devices ("
                       << snapshot.healthy() << " Healthy)";
    if (!writer->Write(ToResponse(snapshot))) return grpc::Status::OK;
    uint64_t sent = snapshot.version;
    while (!stopping_.load() && !ctx->IsCancelled()) {
      snapshot = tracker_->WaitForChange(sent, kStreamCheck);
      if (snapshot.version == sent || stopping_.load()) continue;
      TM_LOG(Info, kLog) << "ListAndWatch update: " << snapshot.healthy() << " Healthy, "
                         << snapshot.unhealthy() << " Unhealthy";
      if (!writer->Write(ToResponse(snapshot))) break;
      sent = snapshot.version;
    }
    TM_LOG(Info, kLog) << "ListAndWatch closed";
    return grpc::Status::OK;
  }

  grpc::Status GetPreferredAllocation(grpc::ServerContext*,
                                      const ::v1beta1::PreferredAllocationRequest* request,
                                      ::v1beta1::PreferredAllocationResponse* reply) override {
    for (const auto& container : request->container_requests()) {
      std::vector<std::string> available(container.available_device_ids().begin(),
                                         container.available_device_ids().end());
      std::vector<std::string> must(container.must_include_device_ids().begin(),
                                    container.must_include_device_ids().end());
      auto chosen = PreferredAllocation(available, must, container.allocation_size());
      if (!chosen.ok()) {
        TM_LOG(Warn, kLog) << "GetPreferredAllocation: " << chosen.status().ToString();
        return ToGrpc(chosen.status());
      }
      auto* out = reply->add_container_responses();
      for (const auto& id : *chosen) out->add_device_ids(id);
    }
    return grpc::Status::OK;
  }

  grpc::Status Allocate(grpc::ServerContext*, const ::v1beta1::AllocateRequest* request,
                        ::v1beta1::AllocateResponse* reply) override {
    auto response = allocator_->Allocate(*request);
    if (!response.ok()) return ToGrpc(response.status());
    *reply = std::move(*response);
    return grpc::Status::OK;
  }

  grpc::Status PreStartContainer(grpc::ServerContext*, const ::v1beta1::PreStartContainerRequest*,
                                 ::v1beta1::PreStartContainerResponse*) override {
    return grpc::Status::OK;
  }

 private:
  DeviceTracker* const tracker_;
  Allocator* const allocator_;
  std::atomic<bool> stopping_{false};
};

Result<std::unique_ptr<PluginServer>> PluginServer::Start(const std::string& socket_path,
                                                          DeviceTracker* tracker,
                                                          Allocator* allocator,
                                                          std::chrono::milliseconds timeout) {
  // Validates the path (absolute, short enough) before anything is touched.
  TM_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> self_check, UnixChannel(socket_path));
  struct stat st {};
  if (::lstat(socket_path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return IoError(socket_path + " is a directory");
    if (::unlink(socket_path.c_str()) != 0 && errno != ENOENT) {
      return ErrnoError("remove stale socket " + socket_path, errno);
    }
  }

  std::unique_ptr<PluginServer> self(new PluginServer());
  self->socket_path_ = socket_path;
  self->tracker_ = tracker;
  self->service_ = std::make_unique<DevicePluginService>(tracker, allocator);
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + socket_path, grpc::InsecureServerCredentials());
  builder.RegisterService(self->service_.get());
  self->server_ = builder.BuildAndStart();
  if (!self->server_) return IoError("cannot serve the device plugin on " + socket_path);
  if (::lstat(socket_path.c_str(), &st) != 0) {
    return ErrnoError("the device plugin socket " + socket_path + " is missing after listen",
                      errno);
  }
  self->inode_ = st.st_ino;
  // Dial it, as the kubelet will: a socket that does not answer is no use.
  if (!self_check->WaitForConnected(std::chrono::system_clock::now() + timeout)) {
    return IoError("the device plugin socket " + socket_path + " does not answer");
  }
  TM_LOG(Info, kLog) << "serving the device-plugin API on " << socket_path;
  return self;
}

PluginServer::~PluginServer() { Stop(); }

void PluginServer::Stop() {
  if (stopped_ || !server_) return;
  stopped_ = true;
  service_->Stop();
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server_->Wait();
  // Remove the socket file only if it is still ours: the kubelet may have
  // removed it, and a newer server may have made another.
  struct stat st {};
  if (::lstat(socket_path_.c_str(), &st) == 0 && st.st_ino == inode_ && S_ISSOCK(st.st_mode)) {
    ::unlink(socket_path_.c_str());
  }
  TM_LOG(Info, kLog) << "stopped serving on " << socket_path_;
}

}  // namespace tokenmem::device_plugin
