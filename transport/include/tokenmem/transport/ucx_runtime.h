// UcxRuntime: one UCX context, one worker and the thread that drives it.
//
// UCX workers here run in single-thread mode: only the progress thread
// touches the worker, its endpoints and its requests. Other threads hand
// work to it with Post(), which wakes the thread if it sleeps. The thread
// spins on ucp_worker_progress for a short while after the last event (a
// reply usually follows soon) and then sleeps on the worker's event fd.
//
// Transports are UCX's choice, steered by the usual UCX_* environment
// variables (UCX_TLS=tcp forces TCP, for example): RDMA verbs where NICs
// exist, TCP and shared memory elsewhere.
#pragma once

#include <ucp/api/ucp.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "tokenmem/common/status.h"

namespace tokenmem::transport {

// kUnavailable for connection-level failures, kInternal otherwise.
Status UcsError(std::string_view what, ucs_status_t status);

struct RuntimeOptions {
  std::string name;  // for logs and the thread name
  // How long the thread keeps polling after the last event before it
  // sleeps. Longer: lower latency, more CPU.
  std::chrono::microseconds spin = std::chrono::microseconds(50);
  // For listeners: a restarted agent gets its port back at once, although
  // connections of its previous life may still be in TIME_WAIT. Sets
  // UCX_TCP_CM_REUSEADDR=y unless the environment sets it.
  bool reuse_address = false;
  // Payloads up to this many bytes go eagerly (eager_limit.h); unset: the
  // node's default (DefaultEagerMaxBytes()).
  std::optional<size_t> eager_max_bytes;
};

class UcxRuntime {
 public:
  static Result<std::unique_ptr<UcxRuntime>> Create(RuntimeOptions options);
  ~UcxRuntime();  // Stop()s, then destroys the worker and the context
  UcxRuntime(const UcxRuntime&) = delete;
  UcxRuntime& operator=(const UcxRuntime&) = delete;

  ucp_context_h context() const { return context_; }
  // The largest active-message header the worker carries.
  size_t max_header() const { return max_header_; }
  ucp_worker_h worker() const { return worker_; }
  // The UCP_AM_SEND_FLAG_* for a payload of `bytes` (eager or UCX's choice).
  uint32_t AmSendFlags(size_t bytes) const;

  // Starts the progress thread. Handlers and listeners may be set up
  // before (from the creating thread) or later through Post().
  Status Start();
  // Runs everything posted so far, then joins the thread. `on_stop`, when
  // given, runs on the progress thread first (to close endpoints).
  void Stop(std::function<void()> on_stop = {});

  // Runs `task` on the progress thread, in order. Tasks posted after
  // Stop() never run.
  void Post(std::function<void()> task);
  bool OnProgressThread() const { return std::this_thread::get_id() == thread_.get_id(); }

  // Drives the worker until `done()` or `timeout`; progress-thread only
  // (or before Start). False on timeout.
  bool ProgressUntil(const std::function<bool()>& done, std::chrono::milliseconds timeout);

 private:
  explicit UcxRuntime(RuntimeOptions options) : options_(std::move(options)) {}
  void Loop();
  bool RunPosted();
  void Wake();

  RuntimeOptions options_;
  size_t eager_max_bytes_ = 0;
  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  int worker_fd_ = -1;
  size_t max_header_ = 0;
  int wake_fd_ = -1;  // eventfd written by Post()
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> sleeping_{false};
  std::mutex mu_;
  std::deque<std::function<void()>> tasks_;
  bool accepting_ = true;  // guarded by mu_
};

// The buffer and count to give an _nbx send or receive for `iov` (not
// empty): a single entry as a contiguous buffer, which UCX moves without
// walking a list per fragment; more as an IOV list, whose datatype is set
// in `param`. `iov` must outlive the operation.
std::pair<void*, size_t> IovArgument(std::vector<ucp_dt_iov_t>& iov, ucp_request_param_t& param);

// Waits for a UCX request returned by an _nbx call on the progress thread:
// NULL is done, an error pointer is that error. Frees the request.
Status WaitRequest(UcxRuntime& runtime, void* request, std::chrono::milliseconds timeout,
                   std::string_view what);

}  // namespace tokenmem::transport
