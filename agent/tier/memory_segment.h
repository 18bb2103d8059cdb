// MemorySegment: one shared-memory segment of a memory tier, backed by a memfd
// so that its fd can be passed to clients (SCM_RIGHTS) and mapped by them at
// their own address.
//
// Creation order: memfd_create(MFD_CLOEXEC | MFD_ALLOW_SEALING), ftruncate,
// mmap(PROT_READ | PROT_WRITE, MAP_SHARED), mbind(MPOL_BIND) of the whole range
// to the requested NUMA nodes, fallocate of the whole memfd (so that missing
// memory fails here, with a Status, instead of as SIGBUS on first touch), then
// seals F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL so that no client holding the
// fd can resize it under the agent or add seals of its own.
//
// SegmentWriters::kAgentOnly (the default) also seals F_SEAL_FUTURE_WRITE:
// from then on no descriptor of the file, the agent's included, can create a
// writable shared mapping, write(), fallocate or mprotect a mapping writable,
// whatever access the descriptor was opened with. That covers a client that
// reopens its read-only descriptor through /proc/self/fd/N with O_RDWR. The
// mapping the agent made before sealing stays writable, so only the agent can
// change the bytes. (Linux >= 5.1; Create fails on older kernels.) The price:
// the memory cannot be handed back while any process still maps the file (a
// hole cannot be punched into a sealed file), so it is freed when the agent
// and every client have dropped their descriptors and mappings.
//
// Thread-safety: a MemorySegment is immutable after Create; data() may be read
// and written from any thread (synchronising the bytes is the caller's job).
// Moving or destroying one must not race with other uses of it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tokenmem/common/status.h"

namespace tokenmem::tier {

// Largest node id accepted anywhere (the kernel's limit is below this).
inline constexpr int kMaxNumaNode = 1023;

// OK when every id is a memory node of this machine. kInvalidArgument, naming
// the node, when an id is negative or above kMaxNumaNode, or when
// /sys/devices/system/node lists the machine's memory nodes and the id is not
// among them. Without a readable sysfs only the range is checked.
Status ValidateNumaNodes(const std::vector<int>& numa_nodes);

// Who may write a segment's bytes.
enum class SegmentWriters {
  kAgentOnly,  // F_SEAL_FUTURE_WRITE: clients can only ever read it
  kAnyHolder,  // any process holding a read-write descriptor (client areas)
};

class MemorySegment {
 public:
  // A mapped, fully allocated, zero-filled segment of `bytes` (rounded up to
  // the page size), named `name` in /proc/<pid>/fd and /proc/<pid>/maps.
  // With a non-empty `numa_nodes`, its pages are bound (MPOL_BIND) to those
  // nodes; where the kernel or a sandbox refuses mbind (EPERM, ENOSYS, EINVAL)
  // although the nodes exist, a warning is logged and the segment is unbound.
  // Errors: kInvalidArgument for bytes == 0, a name longer than 249 bytes or a
  // node that ValidateNumaNodes rejects; kResourceExhausted when bytes exceeds
  // the physical memory of the requested nodes (of the machine when unbound) or
  // the memory cannot be allocated; kIoError (with the failing call and errno
  // text) for other failures. Nothing is left behind on error.
  static Result<MemorySegment> Create(const std::string& name, uint64_t bytes,
                                      const std::vector<int>& numa_nodes,
                                      SegmentWriters writers = SegmentWriters::kAgentOnly);

  MemorySegment(MemorySegment&& other) noexcept;
  MemorySegment& operator=(MemorySegment&& other) noexcept;
  MemorySegment(const MemorySegment&) = delete;
  MemorySegment& operator=(const MemorySegment&) = delete;
  ~MemorySegment();  // munmap and close; clients' mappings and fds stay valid

  // The memfd (owned by the segment, O_CLOEXEC); -1 after a move.
  int fd() const { return fd_; }
  // The agent's mapping, size() bytes; nullptr after a move.
  std::byte* data() const { return data_; }
  uint64_t size() const { return size_; }
  // Whether mbind applied the requested nodes (false when none were requested
  // or the kernel refused).
  bool bound() const { return bound_; }

 private:
  MemorySegment(int fd, std::byte* data, uint64_t size, bool bound)
      : fd_(fd), data_(data), size_(size), bound_(bound) {}
  void Release();

  int fd_ = -1;
  std::byte* data_ = nullptr;
  uint64_t size_ = 0;
  bool bound_ = false;
};

// The NUMA node holding the page at `addr` in this process, faulting it in if
// needed (get_mempolicy(MPOL_F_NODE | MPOL_F_ADDR)). kIoError when the kernel
// cannot tell (e.g. addr not mapped, or no NUMA support).
Result<int> NodeOfAddress(const void* addr);

}  // namespace tokenmem::tier
