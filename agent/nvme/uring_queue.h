// UringQueue: runs batches of reads and writes through a few io_uring
// instances that every file of one store shares.
//
// Design: a small set of rings, each behind its own mutex. A thread that
// runs a batch takes a whole ring, submits the batch (up to `depth`
// operations in flight), reaps the completions itself and gives the ring
// back. So a completion never has to be matched to another thread, no
// reaper thread exists and no wake-up crosses threads. Several rings let
// that many threads have I/O in flight at once: a thread tries the rings
// with try_lock, starting from a per-thread hint so threads spread out, and
// blocks on its hinted ring only when every ring is busy. One ring with a
// shared submission lock would need a completion hand-off between threads
// for no gain at the queue depths one store uses.
//
// Every operation runs to completion: short transfers are continued where
// they stopped, EINTR and EAGAIN (from the syscall or in a completion) are
// retried a bounded number of times; every other failure is that
// operation's error, and the batch's other operations still run.
//
// Thread safety: Run may be called from any number of threads at once.
// The queue must outlive every call (the store destroys it last).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "tokenmem/common/status.h"

namespace tokenmem::nvme {

class UringQueue {
 public:
  struct Options {
    uint32_t rings = 4;   // threads that can have I/O in flight at once
    uint32_t depth = 32;  // operations in flight per ring, 1..4096
  };

  enum class OpKind { kRead, kWrite };
  struct Op {
    OpKind kind = OpKind::kRead;
    int fd = -1;
    std::byte* buffer = nullptr;  // O_DIRECT files need 4096-aligned buffer, offset and length
    uint32_t length = 0;          // 1 .. kMaxOpLength
    uint64_t offset = 0;
    Status status;  // set by Run: OK, or what went wrong with this operation
  };
  static constexpr uint32_t kMaxOpLength = 1u << 30;

  // kInvalidArgument on bad options; kIoError (with a hint) when the kernel
  // refuses io_uring, e.g. when it is disabled by sysctl or seccomp.
  static Result<std::unique_ptr<UringQueue>> Create(const Options& options);
  ~UringQueue();
  UringQueue(const UringQueue&) = delete;
  UringQueue& operator=(const UringQueue&) = delete;

  // Runs every op and returns when all have finished. OK when all succeeded;
  // otherwise the status of the lowest-numbered failed op (each op's own
  // status is in op.status). Ops that fail validation (no fd, no buffer, a
  // length of 0 or over kMaxOpLength) make Run return kInvalidArgument
  // before any I/O starts. Reads at or past the end of the file fail with
  // kIoError ("end of file").
  Status Run(std::span<Op> ops);

  // Work the calling thread does while its operations are in flight, so
  // that CPU work (checksums) overlaps the device's.
  struct Hooks {
    // Called once, right after the first operations reach the kernel (or,
    // when none could be submitted, before Run returns). It must not call
    // Run on this queue: the thread holds one of its rings.
    std::function<void()> in_flight;
    // Called with an op's index as soon as that op has completed
    // successfully, in completion order.
    std::function<void(size_t)> done;
  };
  // Run, calling `hooks` (either may be empty) from the calling thread.
  Status Run(std::span<Op> ops, const Hooks& hooks);

  uint32_t depth() const { return depth_; }

 private:
  struct Ring;
  explicit UringQueue(uint32_t depth);
  Status RunOnRing(Ring& ring, std::span<Op> ops, const Hooks& hooks);

  uint32_t depth_;
  std::vector<std::unique_ptr<Ring>> rings_;
};

}  // namespace tokenmem::nvme
