// IoObserver: a process-wide hook that sees every block read and write an
// NvmeStore sends to the device (Read, Write, Invalidate), for latency
// metrics. Stores find it through CurrentIoObserver() on each I/O, so it
// can be installed once, before any store opens, without the code that
// builds the stores knowing about it. Recovery scans at Open are not
// reported: they are start-up work, not served I/O.
//
// Thread-safety: Set/Clear/Current may be called from any thread. The
// observer is called from whichever thread did the I/O, concurrently, so
// ObserveIo must be thread-safe and cheap (no I/O, no long locks). Whoever
// installs an observer keeps it alive until it has cleared it and no store
// is doing I/O any more.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace tokenmem::nvme {

enum class IoOp { kRead, kWrite };

class IoObserver {
 public:
  virtual ~IoObserver() = default;
  // `bytes`: what went to or came from the device (a write's table page
  // included);
  // `ok`: false when the kernel or device reported an error (a checksum
  // failure found after a successful read still counts as ok here).
  virtual void ObserveIo(IoOp op, std::chrono::nanoseconds elapsed, uint64_t bytes, bool ok) = 0;
};

namespace io_observer_internal {
inline std::atomic<IoObserver*> current{nullptr};
}  // namespace io_observer_internal

// Installs `observer` for every store of the process, replacing any other;
// nullptr installs none.
inline void SetIoObserver(IoObserver* observer) {
  io_observer_internal::current.store(observer, std::memory_order_release);
}

// Removes `observer` if it is the one installed; leaves another one alone
// (so two owners in one process, as in tests, cannot clear each other's).
inline void ClearIoObserver(IoObserver* observer) {
  IoObserver* expected = observer;
  io_observer_internal::current.compare_exchange_strong(expected, nullptr,
                                                        std::memory_order_acq_rel);
}

// The installed observer, or nullptr.
inline IoObserver* CurrentIoObserver() {
  return io_observer_internal::current.load(std::memory_order_acquire);
}

}  // namespace tokenmem::nvme
