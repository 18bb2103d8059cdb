#include "nvme/uring_queue.h"

#include <liburing.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

#include "tokenmem/common/log.h"

namespace tokenmem::nvme {
namespace {

// EINTR/EAGAIN and short transfers per operation before giving up.
constexpr int kMaxRetries = 100;

uint32_t ThreadHint() {
  static std::atomic<uint32_t> next{0};
  thread_local const uint32_t hint = next.fetch_add(1, std::memory_order_relaxed);
  return hint;
}

std::string Describe(const UringQueue::Op& op) {
  return std::string(op.kind == UringQueue::OpKind::kRead ? "read " : "write ") +
         std::to_string(op.length) + " bytes at offset " + std::to_string(op.offset);
}

}  // namespace

struct UringQueue::Ring {
  std::mutex mu;
  io_uring ring{};
  // Set after a failed submit: SQEs may be left in the ring that must never
  // reach the kernel with their (by then freed) buffers. Guarded by mu.
  bool poisoned = false;
};

UringQueue::UringQueue(uint32_t depth) : depth_(depth) {}

UringQueue::~UringQueue() {
  for (auto& r : rings_) io_uring_queue_exit(&r->ring);
}

Result<std::unique_ptr<UringQueue>> UringQueue::Create(const Options& options) {
  if (options.rings == 0 || options.rings > 256) {
    return InvalidArgument("io_uring ring count must be 1..256, got " +
                           std::to_string(options.rings));
  }
  if (options.depth == 0 || options.depth > 4096) {
    return InvalidArgument("io_uring queue depth must be 1..4096, got " +
                           std::to_string(options.depth));
  }
  std::unique_ptr<UringQueue> queue(new UringQueue(options.depth));
  for (uint32_t i = 0; i < options.rings; ++i) {
    auto ring = std::make_unique<Ring>();
    const int rc = io_uring_queue_init(options.depth, &ring->ring, 0);
    if (rc < 0) {
      Status s = ErrnoError("io_uring_queue_init", -rc);
      if (rc == -EPERM || rc == -ENOSYS) {
        s = IoError(s.message() +
                    " (io_uring is disabled here: check the kernel.io_uring_disabled sysctl "
                    "and the container's seccomp profile)");
      }
      return s;
    }
    queue->rings_.push_back(std::move(ring));
  }
  return queue;
}

Status UringQueue::Run(std::span<Op> ops) { return Run(ops, Hooks{}); }

Status UringQueue::Run(std::span<Op> ops, const Hooks& hooks) {
  for (size_t i = 0; i < ops.size(); ++i) {
    Op& op = ops[i];
    op.status = Status::Ok();
    if (op.fd < 0 || op.buffer == nullptr || op.length == 0 || op.length > kMaxOpLength) {
      op.status = InvalidArgument("I/O operation " + std::to_string(i) + " (" + Describe(op) +
                                  ") needs an fd, a buffer and a length of 1.." +
                                  std::to_string(kMaxOpLength));
      if (hooks.in_flight) hooks.in_flight();
      return op.status;
    }
  }
  if (ops.empty()) {
    if (hooks.in_flight) hooks.in_flight();
    return Status::Ok();
  }

  const size_t n = rings_.size();
  const size_t hint = ThreadHint() % n;
  for (size_t k = 0; k < n; ++k) {
    Ring& r = *rings_[(hint + k) % n];
    std::unique_lock<std::mutex> lock(r.mu, std::try_to_lock);
    if (lock.owns_lock() && !r.poisoned) return RunOnRing(r, ops, hooks);
  }
  for (size_t k = 0; k < n; ++k) {
    Ring& r = *rings_[(hint + k) % n];
    std::unique_lock<std::mutex> lock(r.mu);
    if (!r.poisoned) return RunOnRing(r, ops, hooks);
  }
  if (hooks.in_flight) hooks.in_flight();
  return IoError("every io_uring instance of this queue has failed");
}

Status UringQueue::RunOnRing(Ring& r, std::span<Op> ops, const Hooks& hooks) {
  struct Progress {
    uint32_t done = 0;
    int retries = 0;
  };
  std::vector<Progress> progress(ops.size());
  std::vector<uint32_t> again;  // ops to (re)submit before taking new ones
  size_t next = 0;              // first op never submitted
  uint32_t prepared = 0;        // SQEs filled but not yet accepted by the kernel
  uint32_t in_flight = 0;       // accepted by the kernel, completion not yet reaped
  int stalled = 0;              // consecutive submits that made no progress
  bool hook_ran = !hooks.in_flight;

  auto fail = [&](uint32_t idx, Status s) { ops[idx].status = std::move(s); };
  auto retry_or_fail = [&](uint32_t idx, Status s) {
    if (++progress[idx].retries > kMaxRetries) {
      fail(idx, std::move(s));
    } else {
      again.push_back(idx);
    }
  };

  while (true) {
    // Fill the submission queue, up to `depth` operations outstanding.
    while (in_flight + prepared < depth_ && (!again.empty() || next < ops.size())) {
      io_uring_sqe* sqe = io_uring_get_sqe(&r.ring);
      if (sqe == nullptr) break;  // full until the next submit
      uint32_t idx;
      if (!again.empty()) {
        idx = again.back();
        again.pop_back();
      } else {
        idx = static_cast<uint32_t>(next++);
      }
      Op& op = ops[idx];
      const uint32_t done = progress[idx].done;
      if (op.kind == OpKind::kRead) {
        io_uring_prep_read(sqe, op.fd, op.buffer + done, op.length - done, op.offset + done);
      } else {
        io_uring_prep_write(sqe, op.fd, op.buffer + done, op.length - done, op.offset + done);
      }
      io_uring_sqe_set_data64(sqe, idx);
      ++prepared;
    }

    if (prepared > 0) {
      const int rc = io_uring_submit(&r.ring);
      if (rc > 0) {
        const uint32_t accepted = std::min<uint32_t>(static_cast<uint32_t>(rc), prepared);
        prepared -= accepted;
        in_flight += accepted;
        stalled = 0;
        if (!hook_ran) {
          hook_ran = true;
          hooks.in_flight();
        }
      } else if (rc == 0 || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY) {
        // The kernel is short of resources: reap completions (if any) and
        // try again; back off briefly when nothing is in flight.
        if (++stalled > kMaxRetries) {
          r.poisoned = true;
        } else if (in_flight == 0) {
          std::this_thread::sleep_for(std::chrono::microseconds(100));
          continue;
        }
      } else {
        TM_LOG(ERROR, "nvme") << "io_uring_submit failed: " << ErrnoError("", -rc).message()
                              << "; retiring this ring";
        r.poisoned = true;
      }
      if (r.poisoned) {
        // Nothing more is submitted on this ring. Every op not finished
        // and not in flight fails now; in-flight ones are reaped below.
        const Status s = IoError("io_uring submission failed");
        for (uint32_t idx : again) fail(idx, s);
        again.clear();
        for (; next < ops.size(); ++next) fail(static_cast<uint32_t>(next), s);
        prepared = 0;  // never submitted again: the ring is retired
      }
    }

    if (in_flight == 0) {
      if (prepared == 0 && again.empty() && next >= ops.size()) break;
      continue;
    }

    // Wait for at least one completion, then reap all that are ready.
    io_uring_cqe* cqe = nullptr;
    int wait_failures = 0;
    while (true) {
      const int rc = io_uring_wait_cqe(&r.ring, &cqe);
      if (rc == 0) break;
      if (rc == -EINTR || rc == -EAGAIN) continue;
      // Returning now would let the kernel write into buffers the callers
      // are about to free, so keep trying and stop the process if the
      // ring stays broken.
      if (++wait_failures > kMaxRetries) {
        TM_LOG(ERROR, "nvme") << "io_uring_wait_cqe keeps failing ("
                              << ErrnoError("", -rc).message() << ") with " << in_flight
                              << " operations in flight; aborting";
        std::abort();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(&r.ring, head, cqe) {
      ++seen;
      --in_flight;
      const uint32_t idx = static_cast<uint32_t>(io_uring_cqe_get_data64(cqe));
      const int res = cqe->res;
      Op& op = ops[idx];
      if (res == -EINTR || res == -EAGAIN) {
        retry_or_fail(idx, ErrnoError(Describe(op), -res));
      } else if (res < 0) {
        fail(idx, ErrnoError(Describe(op), -res));
      } else if (res == 0) {
        fail(idx, IoError(Describe(op) + ": " +
                          (op.kind == OpKind::kRead ? "end of file after " : "no progress after ") +
                          std::to_string(progress[idx].done) + " bytes"));
      } else {
        progress[idx].done += static_cast<uint32_t>(res);
        if (progress[idx].done < op.length) {
          retry_or_fail(idx, IoError(Describe(op) + ": too many short transfers"));
        } else if (hooks.done) {
          hooks.done(idx);
        }
      }
    }
    io_uring_cq_advance(&r.ring, seen);
    if (r.poisoned) {
      for (uint32_t idx : again) fail(idx, IoError("io_uring submission failed"));
      again.clear();
    }
  }

  if (!hook_ran) hooks.in_flight();
  for (const Op& op : ops) {
    if (!op.status.ok()) return op.status;
  }
  return Status::Ok();
}

}  // namespace tokenmem::nvme
