#include "tier/memory_segment.h"

#include <fcntl.h>
#include <numa.h>
#include <numaif.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <utility>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14; older libc headers lack it
#endif
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010  // Linux 5.1; older libc headers lack it
#endif

#include "tokenmem/common/log.h"
#include "topology/numa_topology.h"

namespace tokenmem::tier {
namespace {

// memfd_create's limit: NAME_MAX minus the "memfd:" prefix it adds.
constexpr size_t kMaxMemfdName = 249;

std::string NodeListText(const std::vector<int>& nodes) {
  std::string s;
  for (int n : nodes) {
    if (!s.empty()) s += ',';
    s += std::to_string(n);
  }
  return s;
}

// Checks the ids; returns true when they were checked against this machine's
// memory nodes, false when only their range could be checked.
Result<bool> CheckNodes(const std::vector<int>& nodes) {
  for (int n : nodes) {
    if (n < 0 || n > kMaxNumaNode) {
      return InvalidArgument("NUMA node " + std::to_string(n) + " is out of range [0, " +
                             std::to_string(kMaxNumaNode) + "]");
    }
  }
  if (nodes.empty()) return true;
  Result<std::vector<int>> present = topology::ListMemoryNodes("/sys");
  if (!present.ok()) return false;
  for (int n : nodes) {
    if (!std::binary_search(present->begin(), present->end(), n)) {
      return InvalidArgument(
          "NUMA node " + std::to_string(n) +
          " is not a memory node of this machine (memory nodes: " + NodeListText(*present) + ")");
    }
  }
  return true;
}

// Physical memory that a segment on `nodes` (the whole machine when empty)
// could ever get; 0 when unknown.
uint64_t PhysicalBytes(const std::vector<int>& nodes) {
  if (!nodes.empty() && numa_available() >= 0) {
    uint64_t sum = 0;
    for (int n : nodes) {
      const long long size = numa_node_size64(n, nullptr);
      if (size > 0) sum += static_cast<uint64_t>(size);
    }
    return sum;
  }
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page_size = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0) return 0;
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size);
}

// Binds [addr, addr + len) to `nodes`. Returns whether the binding applied;
// an error only when the refusal cannot be explained by a kernel or sandbox
// without mempolicy support.
Result<bool> BindToNodes(void* addr, uint64_t len, const std::vector<int>& nodes,
                         bool nodes_verified) {
  constexpr int kBitsPerWord = sizeof(unsigned long) * CHAR_BIT;
  const int max_node = *std::max_element(nodes.begin(), nodes.end());
  std::vector<unsigned long> mask(static_cast<size_t>(max_node / kBitsPerWord + 1), 0);
  for (int n : nodes) mask[n / kBitsPerWord] |= 1ul << (n % kBitsPerWord);
  // The kernel reads maxnode - 1 bits.
  const unsigned long maxnode = mask.size() * kBitsPerWord + 1;
  if (::mbind(addr, len, MPOL_BIND, mask.data(), maxnode, 0) == 0) return true;
  const int err = errno;
  const std::string what = "mbind to NUMA nodes " + NodeListText(nodes);
  if (err == EPERM || err == ENOSYS || err == EINVAL) {
    if (err == EINVAL && !nodes_verified) {
      return InvalidArgument(what + ": " + std::strerror(err) +
                             " (the nodes may not exist; /sys could not be read to tell)");
    }
    TM_LOG(Warn, "tier") << what << " refused (" << std::strerror(err)
                         << "); the segment is not bound";
    return false;
  }
  return ErrnoError(what, err);
}

}  // namespace

Status ValidateNumaNodes(const std::vector<int>& numa_nodes) {
  return CheckNodes(numa_nodes).status();
}

Result<MemorySegment> MemorySegment::Create(const std::string& name, uint64_t bytes,
                                            const std::vector<int>& numa_nodes,
                                            SegmentWriters writers) {
  if (bytes == 0) return InvalidArgument("segment \"" + name + "\": size is 0");
  if (name.size() > kMaxMemfdName) {
    return InvalidArgument("segment name longer than " + std::to_string(kMaxMemfdName) +
                           " bytes: \"" + name + "\"");
  }
  TM_ASSIGN_OR_RETURN(const bool nodes_verified, CheckNodes(numa_nodes));
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t physical = PhysicalBytes(numa_nodes);
  if (bytes > physical && physical != 0) {
    return ResourceExhausted(
        "segment \"" + name + "\": " + std::to_string(bytes) + " bytes exceed the " +
        std::to_string(physical) + " bytes of physical memory on " +
        (numa_nodes.empty() ? "this machine" : "NUMA nodes " + NodeListText(numa_nodes)));
  }
  if (bytes > static_cast<uint64_t>(INT64_MAX) - page) {
    return InvalidArgument("segment \"" + name + "\": size " + std::to_string(bytes) +
                           " is too large");
  }
  const uint64_t size = (bytes + page - 1) / page * page;

  const int fd = ::memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return ErrnoError("memfd_create \"" + name + "\"", errno);
  // From here on the segment owns fd (and the mapping once made); any error
  // return releases them.
  MemorySegment seg(fd, nullptr, size, false);
  const auto fail = [&](std::string_view call, int err) {
    return ErrnoError("segment \"" + name + "\": " + std::string(call), err);
  };

  if (::ftruncate(fd, static_cast<off_t>(size)) != 0) return fail("ftruncate", errno);
  void* addr = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (addr == MAP_FAILED) {
    const int err = errno;
    if (err == ENOMEM) {
      return ResourceExhausted("segment \"" + name + "\": mmap of " + std::to_string(size) +
                               " bytes: " + std::strerror(err));
    }
    return fail("mmap", err);
  }
  seg.data_ = static_cast<std::byte*>(addr);

  if (!numa_nodes.empty()) {
    Result<bool> bound = BindToNodes(addr, size, numa_nodes, nodes_verified);
    if (!bound.ok()) return bound.status().WithContext("segment \"" + name + "\"");
    seg.bound_ = *bound;
  }

  int rc;
  do {
    rc = ::fallocate(fd, 0, 0, static_cast<off_t>(size));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    const int err = errno;
    if (err == ENOSPC || err == ENOMEM) {
      return ResourceExhausted(
          "segment \"" + name + "\": cannot allocate " + std::to_string(size) + " bytes" +
          (numa_nodes.empty() ? "" : " on NUMA nodes " + NodeListText(numa_nodes)) + ": " +
          std::strerror(err));
    }
    return fail("fallocate", err);
  }
  // fallocate leaves shmem pages "not yet written": a client's read-only
  // MAP_POPULATE skips them, and every first read of a page would fault.
  // Faulting them in writable here (zero-filled, as fallocate promised)
  // lets clients map the whole segment at attach.
  if (::madvise(addr, size, MADV_POPULATE_WRITE) != 0) {
    const int err = errno;
    if (err != EINVAL) return fail("madvise(MADV_POPULATE_WRITE)", err);
    // Kernels before 5.14: touch one byte per page.
    auto* bytes = static_cast<volatile std::byte*>(addr);
    for (uint64_t off = 0; off < size; off += 4096) bytes[off] = std::byte{0};
  }
  // F_SEAL_SEAL last, in the same call: nobody can add or drop seals later.
  const int seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL |
                    (writers == SegmentWriters::kAgentOnly ? F_SEAL_FUTURE_WRITE : 0);
  if (::fcntl(fd, F_ADD_SEALS, seals) != 0) return fail("fcntl(F_ADD_SEALS)", errno);
  return seg;
}

MemorySegment::MemorySegment(MemorySegment&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      bound_(std::exchange(other.bound_, false)) {}

MemorySegment& MemorySegment::operator=(MemorySegment&& other) noexcept {
  if (this != &other) {
    Release();
    fd_ = std::exchange(other.fd_, -1);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    bound_ = std::exchange(other.bound_, false);
  }
  return *this;
}

MemorySegment::~MemorySegment() { Release(); }

void MemorySegment::Release() {
  if (data_ != nullptr && ::munmap(data_, size_) != 0) {
    TM_LOG(Error, "tier") << "munmap of a " << size_ << "-byte segment: " << std::strerror(errno);
  }
  if (fd_ >= 0) ::close(fd_);
  data_ = nullptr;
  fd_ = -1;
  size_ = 0;
}

Result<int> NodeOfAddress(const void* addr) {
  int node = -1;
  if (::get_mempolicy(&node, nullptr, 0, const_cast<void*>(addr), MPOL_F_NODE | MPOL_F_ADDR) != 0) {
    return ErrnoError("get_mempolicy(MPOL_F_NODE | MPOL_F_ADDR)", errno);
  }
  return node;
}

}  // namespace tokenmem::tier
