#include "kubelet_standin.h"

#include <sys/stat.h>

#include <filesystem>
#include <system_error>

#include "unix_channel.h"

namespace tokenmem::device_plugin::testing {

namespace fs = std::filesystem;

class RegistrationService final : public ::v1beta1::Registration::Service {
 public:
  grpc::Status Register(grpc::ServerContext*, const ::v1beta1::RegisterRequest* request,
                        ::v1beta1::Empty*) override {
    RegisterAttempt attempt{*request, grpc::StatusCode::OK, "", std::chrono::steady_clock::now()};
    {
      std::lock_guard<std::mutex> lock(mu);
      if (request->version() != kDevicePluginApiVersion) {
        attempt.answer = grpc::StatusCode::INVALID_ARGUMENT;
        attempt.message = "unsupported API version " + request->version();
      } else if (refusals_left > 0) {
        --refusals_left;
        attempt.answer = refusal_code;
        attempt.message = refusal_message;
      } else {
        requests.push_back(*request);
      }
      attempts.push_back(attempt);
    }
    cv.notify_all();
    if (attempt.answer != grpc::StatusCode::OK)
      return grpc::Status(attempt.answer, attempt.message);
    return grpc::Status::OK;
  }

  mutable std::mutex mu;
  mutable std::condition_variable cv;
  std::vector<::v1beta1::RegisterRequest> requests;  // accepted
  std::vector<RegisterAttempt> attempts;             // all
  int refusals_left = 0;
  grpc::StatusCode refusal_code = grpc::StatusCode::UNAVAILABLE;
  std::string refusal_message;
};

class PodResourcesService final : public ::v1::PodResourcesLister::Service {
 public:
  grpc::Status List(grpc::ServerContext*, const ::v1::ListPodResourcesRequest*,
                    ::v1::ListPodResourcesResponse* reply) override {
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& [pod_name, containers] : pods) {
      auto* pod = reply->add_pod_resources();
      pod->set_name(pod_name);
      pod->set_namespace_(namespaces[pod_name]);
      for (const auto& [container_name, held] : containers) {
        auto* container = pod->add_containers();
        container->set_name(container_name);
        auto* devices = container->add_devices();
        devices->set_resource_name(held.first);
        for (const auto& id : held.second) devices->add_device_ids(id);
      }
    }
    return grpc::Status::OK;
  }

  std::mutex mu;
  // pod -> container -> (resource, device IDs)
  std::map<std::string, std::map<std::string, std::pair<std::string, std::vector<std::string>>>>
      pods;
  std::map<std::string, std::string> namespaces;  // pod -> its namespace
};

Result<std::unique_ptr<KubeletStandIn>> KubeletStandIn::Start(
    const std::string& device_plugin_dir, const std::string& pod_resources_socket) {
  std::unique_ptr<KubeletStandIn> self(new KubeletStandIn());
  self->dir_ = device_plugin_dir;
  self->pods_ = std::make_unique<PodResourcesService>();
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + pod_resources_socket, grpc::InsecureServerCredentials());
  builder.RegisterService(self->pods_.get());
  self->pods_server_ = builder.BuildAndStart();
  if (!self->pods_server_) return IoError("cannot serve PodResources on " + pod_resources_socket);
  self->registration_ = std::make_unique<RegistrationService>();
  TM_RETURN_IF_ERROR(self->ServeRegistration());
  return self;
}

Status KubeletStandIn::ServeRegistration() {
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + kubelet_socket(), grpc::InsecureServerCredentials());
  builder.RegisterService(registration_.get());
  registration_server_ = builder.BuildAndStart();
  if (!registration_server_) return IoError("cannot serve Registration on " + kubelet_socket());
  return Status::Ok();
}

KubeletStandIn::~KubeletStandIn() {
  const auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(1);
  if (registration_server_) registration_server_->Shutdown(deadline);
  if (pods_server_) pods_server_->Shutdown(deadline);
}

Status KubeletStandIn::Restart() {
  registration_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  registration_server_.reset();
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    struct stat st {};
    if (::lstat(entry.path().c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
      fs::remove(entry.path(), ec);
    }
  }
  return ServeRegistration();
}

std::vector<::v1beta1::RegisterRequest> KubeletStandIn::registrations() const {
  std::lock_guard<std::mutex> lock(registration_->mu);
  return registration_->requests;
}

bool KubeletStandIn::WaitForRegistrations(size_t count, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(registration_->mu);
  return registration_->cv.wait_for(lock, timeout,
                                    [&] { return registration_->requests.size() >= count; });
}

void KubeletStandIn::RefuseRegistrations(int count, grpc::StatusCode code,
                                         const std::string& message) {
  std::lock_guard<std::mutex> lock(registration_->mu);
  registration_->refusals_left = count;
  registration_->refusal_code = code;
  registration_->refusal_message = message;
}

std::vector<RegisterAttempt> KubeletStandIn::attempts() const {
  std::lock_guard<std::mutex> lock(registration_->mu);
  return registration_->attempts;
}

void KubeletStandIn::SetContainer(const std::string& pod, const std::string& container,
                                  const std::string& resource,
                                  const std::vector<std::string>& devices,
                                  const std::string& pod_namespace) {
  std::lock_guard<std::mutex> lock(pods_->mu);
  pods_->pods[pod][container] = {resource, devices};
  pods_->namespaces.emplace(pod, pod_namespace);
}

void KubeletStandIn::RemovePod(const std::string& pod) {
  std::lock_guard<std::mutex> lock(pods_->mu);
  pods_->pods.erase(pod);
  pods_->namespaces.erase(pod);
}

std::unique_ptr<::v1beta1::DevicePlugin::Stub> DialPlugin(const std::string& socket_path,
                                                          std::chrono::milliseconds timeout) {
  auto channel = UnixChannel(socket_path);
  if (!channel.ok()) return nullptr;
  if (!(*channel)->WaitForConnected(std::chrono::system_clock::now() + timeout)) return nullptr;
  return ::v1beta1::DevicePlugin::NewStub(*channel);
}

WatchRecorder::WatchRecorder(::v1beta1::DevicePlugin::Stub* stub) {
  thread_ = std::thread([this, stub] {
    auto reader = stub->ListAndWatch(&ctx_, ::v1beta1::Empty());
    ::v1beta1::ListAndWatchResponse response;
    while (reader->Read(&response)) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        updates_.push_back(response);
      }
      cv_.notify_all();
    }
    (void)reader->Finish();
    {
      std::lock_guard<std::mutex> lock(mu_);
      ended_ = true;
    }
    cv_.notify_all();
  });
}

WatchRecorder::~WatchRecorder() {
  ctx_.TryCancel();
  if (thread_.joinable()) thread_.join();
}

bool WatchRecorder::WaitFor(const std::function<bool(const ::v1beta1::ListAndWatchResponse&)>& done,
                            std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return !updates_.empty() && done(updates_.back()); });
}

size_t WatchRecorder::updates() const {
  std::lock_guard<std::mutex> lock(mu_);
  return updates_.size();
}

::v1beta1::ListAndWatchResponse WatchRecorder::latest() const {
  std::lock_guard<std::mutex> lock(mu_);
  return updates_.empty() ? ::v1beta1::ListAndWatchResponse() : updates_.back();
}

bool WatchRecorder::ended() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ended_;
}

size_t CountHealth(const ::v1beta1::ListAndWatchResponse& list, const std::string& health) {
  size_t n = 0;
  for (const auto& d : list.devices()) n += d.health() == health ? 1 : 0;
  return n;
}

}  // namespace tokenmem::device_plugin::testing
