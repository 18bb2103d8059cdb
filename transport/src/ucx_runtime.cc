#include "tokenmem/transport/ucx_runtime.h"

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "tokenmem/common/log.h"
#include "tokenmem/transport/eager_limit.h"
#include "tokenmem/transport/frame.h"

namespace tokenmem::transport {

Status UcsError(std::string_view what, ucs_status_t status) {
  StatusCode code = StatusCode::kInternal;
  switch (status) {
    case UCS_ERR_UNREACHABLE:
    case UCS_ERR_CONNECTION_RESET:
    case UCS_ERR_ENDPOINT_TIMEOUT:
    case UCS_ERR_TIMED_OUT:
    case UCS_ERR_CANCELED:
    case UCS_ERR_REJECTED:
    case UCS_ERR_NOT_CONNECTED:
    case UCS_ERR_IO_ERROR:
      code = StatusCode::kUnavailable;
      break;
    case UCS_ERR_BUSY:
      code = StatusCode::kUnavailable;
      break;
    case UCS_ERR_NO_MEMORY:
    case UCS_ERR_EXCEEDS_LIMIT:
      code = StatusCode::kResourceExhausted;
      break;
    case UCS_ERR_INVALID_PARAM:
    case UCS_ERR_INVALID_ADDR:
      code = StatusCode::kInvalidArgument;
      break;
    default:
      break;
  }
  return Status(code, std::string(what) + ": " + ucs_status_string(status));
}

namespace {
// Room in a TCP segment for UCX's own headers beside the largest eager
// payload and the largest frame header.
constexpr size_t kTcpSegmentHeadroom = 8 << 10;
}  // namespace

Result<std::unique_ptr<UcxRuntime>> UcxRuntime::Create(RuntimeOptions options) {
  std::unique_ptr<UcxRuntime> rt(new UcxRuntime(std::move(options)));
  if (rt->options_.reuse_address && getenv("UCX_TCP_CM_REUSEADDR") == nullptr) {
    // UCX reads its transports' settings from the environment only (the
    // context's config does not reach the connection manager).
    setenv("UCX_TCP_CM_REUSEADDR", "y", 0);
  }
  ucp_config_t* config = nullptr;
  ucs_status_t st = ucp_config_read(nullptr, nullptr, &config);
  if (st != UCS_OK) return UcsError("reading the UCX configuration", st);
  rt->eager_max_bytes_ = rt->options_.eager_max_bytes.value_or(DefaultEagerMaxBytes());
  if (rt->eager_max_bytes_ > 0) {
    // An eager message larger than one TCP segment arrives in pieces that
    // UCX first gathers into a buffer of its own: a copy more per message.
    // Segments that hold the largest eager payload avoid it (64 KiB gets at
    // concurrency 8: 2.1-2.5 -> 2.7-3.2 GiB/s over loopback TCP). Transport
    // settings go by their bare names here (UCX applies them to every
    // transport that has them; of the non-RDMA ones only TCP does), and an
    // operator's UCX_TCP_* variable wins.
    const std::string seg =
        std::to_string((rt->eager_max_bytes_ + kTcpSegmentHeadroom) >> 10) + "k";
    for (const char* name : {"TX_SEG_SIZE", "RX_SEG_SIZE"}) {
      if (getenv(("UCX_TCP_" + std::string(name)).c_str()) != nullptr) continue;  // the operator's
      ucs_status_t set = ucp_config_modify(config, name, seg.c_str());
      if (set != UCS_OK) {
        TM_LOG(DEBUG, "ucx") << "cannot set " << name << ": " << ucs_status_string(set);
      }
    }
  }
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_NAME;
  params.features = UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
  params.name = rt->options_.name.c_str();
  st = ucp_init(&params, config, &rt->context_);
  ucp_config_release(config);
  if (st != UCS_OK) return UcsError("initializing UCX", st);

  ucp_worker_params_t wp{};
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wp.thread_mode = UCS_THREAD_MODE_SINGLE;
  st = ucp_worker_create(rt->context_, &wp, &rt->worker_);
  if (st != UCS_OK) return UcsError("creating a UCX worker", st);
  // Frames ride in AM headers; a worker that cannot carry the largest one
  // would abort inside UCX later, so refuse it now.
  ucp_worker_attr_t attr{};
  attr.field_mask = UCP_WORKER_ATTR_FIELD_MAX_AM_HEADER;
  st = ucp_worker_query(rt->worker_, &attr);
  if (st != UCS_OK) return UcsError("querying the UCX worker", st);
  if (attr.max_am_header < kLargestFrameBytes) {
    return Status(StatusCode::kFailedPrecondition,
                  "UCX carries active-message headers of at most " +
                      std::to_string(attr.max_am_header) + " bytes; tokenmem needs " +
                      std::to_string(kLargestFrameBytes));
  }
  rt->max_header_ = attr.max_am_header;
  st = ucp_worker_get_efd(rt->worker_, &rt->worker_fd_);
  if (st != UCS_OK) return UcsError("getting the UCX worker's event fd", st);
  rt->wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (rt->wake_fd_ < 0) return ErrnoError("eventfd", errno);
  return rt;
}

UcxRuntime::~UcxRuntime() {
  Stop();
  if (worker_ != nullptr) ucp_worker_destroy(worker_);
  if (context_ != nullptr) ucp_cleanup(context_);
  if (wake_fd_ >= 0) close(wake_fd_);
}

Status UcxRuntime::Start() {
  if (thread_.joinable()) return Status(StatusCode::kFailedPrecondition, "already started");
  thread_ = std::thread([this] { Loop(); });
  std::string thread_name = options_.name.substr(0, 15);
  pthread_setname_np(thread_.native_handle(), thread_name.c_str());
  return Status();
}

void UcxRuntime::Stop(std::function<void()> on_stop) {
  if (!thread_.joinable()) return;
  if (on_stop) Post(std::move(on_stop));
  stopping_.store(true);
  Wake();
  thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  accepting_ = false;
  tasks_.clear();
}

void UcxRuntime::Post(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!accepting_) return;
    tasks_.push_back(std::move(task));
  }
  if (sleeping_.load()) Wake();
}

void UcxRuntime::Wake() {
  uint64_t one = 1;
  // EAGAIN means the counter is already non-zero: the loop wakes anyway.
  (void)!write(wake_fd_, &one, sizeof(one));
}

bool UcxRuntime::RunPosted() {
  std::deque<std::function<void()>> batch;
  {
    std::lock_guard<std::mutex> lock(mu_);
    batch.swap(tasks_);
  }
  for (auto& task : batch) task();
  return !batch.empty();
}

void UcxRuntime::Loop() {
  auto idle_since = std::chrono::steady_clock::now();
  while (true) {
    bool busy = RunPosted();
    while (ucp_worker_progress(worker_) != 0) busy = true;
    if (stopping_.load()) {
      // Finish what was posted before Stop() (endpoint closes), then leave.
      while (RunPosted()) {
        while (ucp_worker_progress(worker_) != 0) {
        }
      }
      return;
    }
    auto now = std::chrono::steady_clock::now();
    if (busy) {
      idle_since = now;
      continue;
    }
    if (now - idle_since < options_.spin) continue;
    ucs_status_t st = ucp_worker_arm(worker_);
    if (st == UCS_ERR_BUSY) continue;  // events arrived meanwhile
    sleeping_.store(true);
    bool pending;
    {
      std::lock_guard<std::mutex> lock(mu_);
      pending = !tasks_.empty();
    }
    if (!pending && !stopping_.load()) {
      pollfd fds[2] = {{worker_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
      int n = poll(fds, 2, 100);
      if (n < 0 && errno != EINTR) {
        TM_LOG(ERROR, "ucx") << options_.name << ": poll failed: " << std::strerror(errno);
      }
      uint64_t count;
      (void)!read(wake_fd_, &count, sizeof(count));
    }
    sleeping_.store(false);
    idle_since = std::chrono::steady_clock::now();
  }
}

bool UcxRuntime::ProgressUntil(const std::function<bool()>& done,
                               std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (ucp_worker_progress(worker_) == 0 && std::chrono::steady_clock::now() > deadline) {
      return false;
    }
  }
  return true;
}

uint32_t UcxRuntime::AmSendFlags(size_t bytes) const {
  return EagerSendFlag(bytes, eager_max_bytes_);
}

std::pair<void*, size_t> IovArgument(std::vector<ucp_dt_iov_t>& iov, ucp_request_param_t& param) {
  if (iov.size() == 1) return {iov[0].buffer, iov[0].length};
  param.op_attr_mask |= UCP_OP_ATTR_FIELD_DATATYPE;
  param.datatype = ucp_dt_make_iov();
  return {iov.data(), iov.size()};
}

Status WaitRequest(UcxRuntime& runtime, void* request, std::chrono::milliseconds timeout,
                   std::string_view what) {
  if (request == nullptr) return Status();
  if (UCS_PTR_IS_ERR(request)) return UcsError(what, UCS_PTR_STATUS(request));
  ucs_status_t st = UCS_INPROGRESS;
  bool finished = runtime.ProgressUntil(
      [&] {
        st = ucp_request_check_status(request);
        return st != UCS_INPROGRESS;
      },
      timeout);
  if (!finished) {
    ucp_request_cancel(runtime.worker(), request);
    runtime.ProgressUntil([&] { return ucp_request_check_status(request) != UCS_INPROGRESS; },
                          std::chrono::milliseconds(1000));
    ucp_request_free(request);
    return Status(StatusCode::kUnavailable, std::string(what) + ": timed out");
  }
  ucp_request_free(request);
  if (st != UCS_OK) return UcsError(what, st);
  return Status();
}

}  // namespace tokenmem::transport
