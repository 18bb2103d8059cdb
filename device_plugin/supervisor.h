// Supervisor: keeps the plugin registered with the kubelet, across kubelet
// restarts, without restarting the process.
//
// States:
//   kWaitingForKubelet  no kubelet.sock in the device-plugin directory (or
//                       no directory yet); nothing served
//   kRegistering        a fresh PluginEndpoint is started on the plugin's
//                       socket, then Register is called on kubelet.sock
//   kServing            registered; watching the directory
//   kBackoff            the last start or Register failed; waits (doubling
//                       from backoff_initial up to backoff_max), or less if
//                       kubelet.sock is created anew meanwhile
//   kStopped            after Stop()
//
// A restarting kubelet removes every socket in the directory (the plugin's
// included) and creates kubelet.sock again. The supervisor watches the
// directory with inotify and also checks it every recheck_interval; what it
// acts on is the files' identity (device, inode, change time), not the
// events alone, so its own socket's creation and removal never trigger a
// loop:
//   - the plugin's socket is gone or is another file  -> re-create and
//     register (or wait, if kubelet.sock is gone too);
//   - kubelet.sock is another file than at registration, or an event says
//     it was created since -> register again.
// A kubelet that stops without restarting leaves the plugin serving; the
// kubelet removes the socket when it starts again.
//
// Thread-safety: one thread of its own runs the loop; state(),
// registrations(), WaitFor() and RequestRestart() may be called from any
// thread; Start/Stop from the owner.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "plugin_server.h"
#include "registrar.h"
#include "tokenmem/common/status.h"

namespace tokenmem::device_plugin {

enum class SupervisorState { kWaitingForKubelet, kRegistering, kServing, kBackoff, kStopped };

std::string_view StateName(SupervisorState state);

// Starts serving on the socket path; the result serves until destroyed.
using EndpointFactory =
    std::function<Result<std::unique_ptr<PluginEndpoint>>(const std::string& socket_path)>;

struct SupervisorOptions {
  std::string device_plugin_dir;
  std::string kubelet_socket = "kubelet.sock";  // names inside device_plugin_dir
  std::string plugin_socket = "tokenmem.sock";
  std::string resource_name;
  std::chrono::milliseconds backoff_initial{500};
  std::chrono::milliseconds backoff_max{30000};
  std::chrono::milliseconds recheck_interval{1000};
};

// Optional observers, called on the supervisor's thread.
struct SupervisorObservers {
  std::function<void()> registered;           // after each successful Register
  std::function<void(const Status&)> failed;  // after each failed start or Register
};

class Supervisor {
 public:
  // `registrar` must outlive the supervisor.
  Supervisor(SupervisorOptions options, EndpointFactory factory, Registrar* registrar,
             SupervisorObservers observers = {});
  ~Supervisor();  // Stop()
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Sets up inotify and starts the loop. kIoError when inotify or eventfd
  // cannot be had; a missing directory is not an error (it is waited for).
  Status Start();
  // Ends the loop and stops serving. Idempotent.
  void Stop();

  // Serve and register again now (SIGHUP), whatever the state.
  void RequestRestart();

  SupervisorState state() const;
  uint64_t registrations() const;  // successful Register calls so far
  Status last_error() const;       // of the last failed attempt; OK if none yet

  // Blocks until `done(state, registrations)` holds or `timeout` passes;
  // returns whether it held.
  bool WaitFor(const std::function<bool(SupervisorState, uint64_t)>& done,
               std::chrono::milliseconds timeout) const;

 private:
  struct FileId {
    dev_t dev;
    ino_t ino;
    int64_t ctime_ns;
    bool operator==(const FileId&) const = default;
  };
  static std::optional<FileId> Identify(const std::string& path);

  void Run();
  void EnsureWatch();
  // Waits for inotify events, a wake-up, or `timeout`; drains what came.
  void WaitEvents(std::chrono::milliseconds timeout);
  // Reads every queued inotify event without waiting.
  void ReadEvents();
  void SetState(SupervisorState state);
  // One attempt: serve, register. Leaves the state kServing or kBackoff.
  void Register();
  void Fail(const Status& status);

  const SupervisorOptions options_;
  const EndpointFactory factory_;
  Registrar* const registrar_;
  const SupervisorObservers observers_;
  const std::string kubelet_path_;
  const std::string plugin_path_;

  int inotify_fd_ = -1;
  int watch_ = -1;
  int wake_fd_ = -1;  // eventfd: Stop and RequestRestart
  std::thread thread_;

  // Loop-thread only.
  std::unique_ptr<PluginEndpoint> endpoint_;
  std::optional<FileId> kubelet_id_;         // kubelet.sock at the last registration
  std::optional<FileId> plugin_id_;          // the plugin's socket as served
  std::optional<FileId> failed_kubelet_id_;  // kubelet.sock when the last attempt failed
  bool kubelet_created_ = false;  // an event said kubelet.sock was created since Register
  std::chrono::milliseconds backoff_{0};
  std::chrono::steady_clock::time_point backoff_until_;

  mutable std::mutex mu_;
  mutable std::condition_variable changed_;
  SupervisorState state_ = SupervisorState::kWaitingForKubelet;
  uint64_t registrations_ = 0;
  Status last_error_;
  bool stop_ = false;
  bool restart_ = false;
};

}  // namespace tokenmem::device_plugin
