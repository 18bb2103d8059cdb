#include "supervisor.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "tokenmem/common/log.h"

namespace tokenmem::device_plugin {
namespace {

constexpr char kLog[] = "supervisor";

}  // namespace

std::string_view StateName(SupervisorState state) {
  switch (state) {
    case SupervisorState::kWaitingForKubelet:
      return "waiting-for-kubelet";
    case SupervisorState::kRegistering:
      return "registering";
    case SupervisorState::kServing:
      return "serving";
    case SupervisorState::kBackoff:
      return "backoff";
    case SupervisorState::kStopped:
      return "stopped";
  }
  return "unknown";
}

Supervisor::Supervisor(SupervisorOptions options, EndpointFactory factory, Registrar* registrar,
                       SupervisorObservers observers)
    : options_(std::move(options)),
      factory_(std::move(factory)),
      registrar_(registrar),
      observers_(std::move(observers)),
      kubelet_path_(
          (std::filesystem::path(options_.device_plugin_dir) / options_.kubelet_socket).string()),
      plugin_path_(
          (std::filesystem::path(options_.device_plugin_dir) / options_.plugin_socket).string()),
      backoff_(options_.backoff_initial) {}

Supervisor::~Supervisor() {
  Stop();
  if (inotify_fd_ >= 0) ::close(inotify_fd_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

Status Supervisor::Start() {
  if (thread_.joinable()) return FailedPrecondition("supervisor already started");
  inotify_fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotify_fd_ < 0) return ErrnoError("inotify_init1", errno);
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) return ErrnoError("eventfd", errno);
  EnsureWatch();
  thread_ = std::thread([this] { Run(); });
  return Status::Ok();
}

void Supervisor::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_ && !thread_.joinable()) return;
    stop_ = true;
  }
  if (wake_fd_ >= 0) {
    const uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof(one));
  }
  if (thread_.joinable()) thread_.join();
}

void Supervisor::RequestRestart() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    restart_ = true;
  }
  if (wake_fd_ >= 0) {
    const uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof(one));
  }
}

SupervisorState Supervisor::state() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_;
}

uint64_t Supervisor::registrations() const {
  std::lock_guard<std::mutex> lock(mu_);
  return registrations_;
}

Status Supervisor::last_error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_error_;
}

bool Supervisor::WaitFor(const std::function<bool(SupervisorState, uint64_t)>& done,
                         std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return changed_.wait_for(lock, timeout, [&] { return done(state_, registrations_); });
}

std::optional<Supervisor::FileId> Supervisor::Identify(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return std::nullopt;
  return FileId{st.st_dev, st.st_ino,
                static_cast<int64_t>(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec};
}

void Supervisor::SetState(SupervisorState state) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ == state) return;
    state_ = state;
  }
  TM_LOG(Info, kLog) << "state: " << StateName(state);
  changed_.notify_all();
}

void Supervisor::EnsureWatch() {
  if (watch_ >= 0 || inotify_fd_ < 0) return;
  watch_ = ::inotify_add_watch(inotify_fd_, options_.device_plugin_dir.c_str(),
                               IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO |
                                   IN_DELETE_SELF | IN_MOVE_SELF | IN_ATTRIB);
  if (watch_ < 0) {
    if (errno != ENOENT) {
      TM_LOG(Warn, kLog) << "cannot watch " << options_.device_plugin_dir << ": "
                         << std::strerror(errno) << "; checking it every "
                         << options_.recheck_interval.count() << " ms instead";
    }
    return;
  }
  TM_LOG(Info, kLog) << "watching " << options_.device_plugin_dir << " for "
                     << options_.kubelet_socket;
}

void Supervisor::WaitEvents(std::chrono::milliseconds timeout) {
  pollfd fds[2] = {{inotify_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
  const int ms = static_cast<int>(std::max<int64_t>(0, timeout.count()));
  const int n = ::poll(fds, 2, ms);
  if (n < 0 && errno != EINTR) {
    TM_LOG(Warn, kLog) << "poll: " << std::strerror(errno);
    return;
  }
  if (fds[1].revents & POLLIN) {
    uint64_t value;
    (void)!::read(wake_fd_, &value, sizeof(value));
  }
  if (fds[0].revents & POLLIN) ReadEvents();
}

void Supervisor::ReadEvents() {
  alignas(inotify_event) char buf[4096];
  for (;;) {
    const ssize_t len = ::read(inotify_fd_, buf, sizeof(buf));
    if (len <= 0) break;
    for (ssize_t off = 0; off < len;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
      if (ev->mask & IN_IGNORED) watch_ = -1;  // the directory went away
      if (ev->len > 0 && options_.kubelet_socket == ev->name &&
          (ev->mask & (IN_CREATE | IN_MOVED_TO))) {
        kubelet_created_ = true;
      }
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
    }
  }
}

void Supervisor::Fail(const Status& status) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    last_error_ = status;
  }
  TM_LOG(Warn, kLog) << "registration with the kubelet failed: " << status.ToString()
                     << "; trying again in " << backoff_.count() << " ms";
  if (observers_.failed) observers_.failed(status);
  failed_kubelet_id_ = Identify(kubelet_path_);
  backoff_until_ = std::chrono::steady_clock::now() + backoff_;
  backoff_ = std::min(backoff_ * 2, options_.backoff_max);
  SetState(SupervisorState::kBackoff);
}

void Supervisor::Register() {
  SetState(SupervisorState::kRegistering);
  // Events so far led here; only a kubelet.sock created from now on means
  // another round.
  ReadEvents();
  kubelet_created_ = false;
  endpoint_.reset();  // a fresh server for every registration
  const std::optional<FileId> kubelet = Identify(kubelet_path_);
  Result<std::unique_ptr<PluginEndpoint>> endpoint = factory_(plugin_path_);
  if (!endpoint.ok()) return Fail(endpoint.status());
  endpoint_ = std::move(*endpoint);
  plugin_id_ = Identify(plugin_path_);
  Status s = registrar_->Register({kubelet_path_, options_.plugin_socket, options_.resource_name});
  if (!s.ok()) {
    endpoint_.reset();
    return Fail(s);
  }
  kubelet_id_ = kubelet;
  backoff_ = options_.backoff_initial;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++registrations_;
  }
  TM_LOG(Info, kLog) << "registered " << options_.resource_name << " with the kubelet at "
                     << kubelet_path_ << " (endpoint " << options_.plugin_socket << ")";
  if (observers_.registered) observers_.registered();
  SetState(SupervisorState::kServing);
}

void Supervisor::Run() {
  auto stopping = [this] {
    std::lock_guard<std::mutex> lock(mu_);
    return stop_;
  };
  auto take_restart = [this] {
    std::lock_guard<std::mutex> lock(mu_);
    const bool restart = restart_;
    restart_ = false;
    return restart;
  };
  while (!stopping()) {
    EnsureWatch();
    const bool restart = take_restart();
    const std::optional<FileId> kubelet = Identify(kubelet_path_);
    switch (state()) {
      case SupervisorState::kWaitingForKubelet:
      case SupervisorState::kRegistering:
        if (kubelet) {
          Register();
          continue;
        }
        SetState(SupervisorState::kWaitingForKubelet);
        WaitEvents(options_.recheck_interval);
        break;
      case SupervisorState::kServing: {
        const std::optional<FileId> plugin = Identify(plugin_path_);
        if (restart) {
          TM_LOG(Info, kLog) << "restart requested: serving and registering anew";
          Register();
          continue;
        }
        if (!plugin || plugin != plugin_id_) {
          TM_LOG(Info, kLog) << plugin_path_ << " was removed (the kubelet restarts?)";
          endpoint_.reset();
          plugin_id_.reset();
          SetState(SupervisorState::kWaitingForKubelet);
          continue;
        }
        // The event catches a quick re-creation that reuses the inode within
        // the file system's timestamp granularity; the identity catches
        // events lost (queue overflow, a watch set up late).
        if (kubelet && (kubelet_created_ || kubelet != kubelet_id_)) {
          TM_LOG(Info, kLog) << kubelet_path_ << " was created anew: the kubelet restarted";
          Register();
          continue;
        }
        WaitEvents(options_.recheck_interval);
        break;
      }
      case SupervisorState::kBackoff: {
        const auto now = std::chrono::steady_clock::now();
        // A kubelet.sock made anew since the failure ends the wait early.
        const bool new_kubelet = kubelet && (kubelet_created_ || kubelet != failed_kubelet_id_);
        if (restart || new_kubelet || now >= backoff_until_) {
          if (kubelet) {
            Register();
          } else {
            SetState(SupervisorState::kWaitingForKubelet);
          }
          continue;
        }
        WaitEvents(
            std::min(options_.recheck_interval,
                     std::chrono::duration_cast<std::chrono::milliseconds>(backoff_until_ - now)));
        break;
      }
      case SupervisorState::kStopped:
        return;
    }
  }
  endpoint_.reset();
  SetState(SupervisorState::kStopped);
}

}  // namespace tokenmem::device_plugin
