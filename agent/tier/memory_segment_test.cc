#include "tier/memory_segment.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

namespace tokenmem::tier {
namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kPage = 4096;

// A second, independent mapping of a segment's fd, as a client would make.
class ClientMapping {
 public:
  ClientMapping(int fd, uint64_t size, int prot = PROT_READ | PROT_WRITE) : size_(size) {
    void* p = ::mmap(nullptr, size, prot, MAP_SHARED, fd, 0);
    EXPECT_NE(p, MAP_FAILED) << std::strerror(errno);
    data_ = p == MAP_FAILED ? nullptr : static_cast<std::byte*>(p);
  }
  ~ClientMapping() {
    if (data_ != nullptr) ::munmap(data_, size_);
  }
  std::byte* data() const { return data_; }

 private:
  std::byte* data_ = nullptr;
  uint64_t size_;
};

// The mempolicy field ("default", "bind:0", ...) of the /proc/self/numa_maps
// line for the mapping that starts at `addr`; empty when there is none.
std::string NumaMapsPolicy(const void* addr) {
  char start[32];
  std::snprintf(start, sizeof(start), "%lx ", reinterpret_cast<unsigned long>(addr));
  std::ifstream maps("/proc/self/numa_maps");
  for (std::string line; std::getline(maps, line);) {
    if (line.starts_with(start)) {
      const size_t from = std::strlen(start);
      return line.substr(from, line.find(' ', from) - from);
    }
  }
  return "";
}

TEST(MemorySegmentTest, CreateWriteRead) {
  Result<MemorySegment> seg = MemorySegment::Create("tokenmem:test:rw", kMiB, {});
  ASSERT_TRUE(seg.ok()) << seg.status().ToString();
  EXPECT_GE(seg->fd(), 0);
  ASSERT_NE(seg->data(), nullptr);
  EXPECT_EQ(seg->size(), kMiB);
  EXPECT_FALSE(seg->bound());
  if (std::filesystem::exists("/proc/self/numa_maps")) {
    EXPECT_EQ(NumaMapsPolicy(seg->data()), "default");
  }
  for (uint64_t i = 0; i < kMiB; i += 997) EXPECT_EQ(seg->data()[i], std::byte{0}) << i;
  for (uint64_t i = 0; i < kMiB; ++i) seg->data()[i] = static_cast<std::byte>(i * 7 + 3);
  for (uint64_t i = 0; i < kMiB; ++i) {
    ASSERT_EQ(seg->data()[i], static_cast<std::byte>(i * 7 + 3)) << i;
  }
}

TEST(MemorySegmentTest, SizeIsRoundedUpToAPage) {
  Result<MemorySegment> seg = MemorySegment::Create("tokenmem:test:round", kPage + 1, {});
  ASSERT_TRUE(seg.ok()) << seg.status().ToString();
  EXPECT_EQ(seg->size(), 2 * kPage);
  struct stat st {};
  ASSERT_EQ(::fstat(seg->fd(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 2 * kPage);
}

TEST(MemorySegmentTest, FdIsNamedAndCloseOnExec) {
  Result<MemorySegment> seg = MemorySegment::Create("tokenmem:test:named", kPage, {});
  ASSERT_TRUE(seg.ok()) << seg.status().ToString();
  const std::string link =
      std::filesystem::read_symlink("/proc/self/fd/" + std::to_string(seg->fd())).string();
  EXPECT_NE(link.find("memfd:tokenmem:test:named"), std::string::npos) << link;
  EXPECT_NE(::fcntl(seg->fd(), F_GETFD) & FD_CLOEXEC, 0);
}

TEST(MemorySegmentTest, SecondMappingOfTheFdSharesTheBytes) {
  Result<MemorySegment> seg =
      MemorySegment::Create("tokenmem:test:share", 4 * kPage, {}, SegmentWriters::kAnyHolder);
  ASSERT_TRUE(seg.ok()) << seg.status().ToString();
  std::memset(seg->data(), 0x5a, seg->size());
  std::memcpy(seg->data() + kPage, "tokenmem", 8);

  ClientMapping client(seg->fd(), seg->size());
  ASSERT_NE(client.data(), nullptr);
  ASSERT_NE(client.data(), seg->data());
  EXPECT_EQ(std::memcmp(client.data(), seg->data(), seg->size()), 0);
  EXPECT_EQ(std::memcmp(client.data() + kPage, "tokenmem", 8), 0);

  // Writes go both ways: it is one object, not a copy.
  client.data()[3 * kPage] = std::byte{0x11};
  EXPECT_EQ(seg->data()[3 * kPage], std::byte{0x11});
}

TEST(MemorySegmentTest, SealsForbidResizing) {
  Result<MemorySegment> seg = MemorySegment::Create("tokenmem:test:seals", 2 * kPage, {});
  ASSERT_TRUE(seg.ok()) << seg.status().ToString();
  const int seals = ::fcntl(seg->fd(), F_GET_SEALS);
  EXPECT_EQ(seals, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL | F_SEAL_FUTURE_WRITE);
  EXPECT_NE(::ftruncate(seg->fd(), kPage), 0);
  EXPECT_EQ(errno, EPERM);
  EXPECT_NE(::ftruncate(seg->fd(), 4 * kPage), 0);
  EXPECT_NE(::fcntl(seg->fd(), F_ADD_SEALS, F_SEAL_WRITE), 0);
}

TEST(MemorySegmentTest, SharedWritableSegmentIsNotWriteSealed) {
  Result<MemorySegment> seg =
      MemorySegment::Create("tokenmem:test:anyholder", kPage, {}, SegmentWriters::kAnyHolder);
  ASSERT_TRUE(seg.ok()) << seg.status().ToString();
  EXPECT_EQ(::fcntl(seg->fd(), F_GET_SEALS), F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
}

// The attack a read-only lease could try: reopen the descriptor it was sent
// through /proc/self/fd with O_RDWR, then write. Every way in must fail while
// the agent's own mapping keeps writing.
TEST(MemorySegmentTest, AgentOnlySegmentRefusesEveryOtherWriter) {
  Result<MemorySegment> seg = MemorySegment::Create("tokenmem:test:sealed", 2 * kPage, {});
  ASSERT_TRUE(seg.ok()) << seg.status().ToString();
  std::memcpy(seg->data(), "agent", 5);
  const std::string path = "/proc/self/fd/" + std::to_string(seg->fd());
  const int rw = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(rw, 0) << "reopening O_RDWR is allowed; the seal is what refuses writes";
  EXPECT_EQ(::mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, rw, 0), MAP_FAILED);
  EXPECT_EQ(errno, EPERM);
  EXPECT_LT(::write(rw, "x", 1), 0);
  EXPECT_LT(::pwrite(rw, "x", 1, 0), 0);
  EXPECT_NE(::fallocate(rw, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, kPage), 0);
  void* ro = ::mmap(nullptr, kPage, PROT_READ, MAP_SHARED, rw, 0);
  ASSERT_NE(ro, MAP_FAILED);
  EXPECT_NE(::mprotect(ro, kPage, PROT_READ | PROT_WRITE), 0);
  EXPECT_EQ(std::memcmp(ro, "agent", 5), 0);
  std::memcpy(seg->data(), "still", 5);  // the agent's mapping predates the seal
  EXPECT_EQ(std::memcmp(ro, "still", 5), 0);
  ::munmap(ro, kPage);
  ::close(rw);
}

TEST(MemorySegmentTest, MappingOfAPassedFdOutlivesTheSegment) {
  int client_fd = -1;
  {
    Result<MemorySegment> seg = MemorySegment::Create("tokenmem:test:outlive", kPage, {});
    ASSERT_TRUE(seg.ok()) << seg.status().ToString();
    std::memcpy(seg->data(), "kept", 4);
    client_fd = ::dup(seg->fd());
    ASSERT_GE(client_fd, 0);
  }
  {
    ClientMapping client(client_fd, kPage, PROT_READ);  // sealed: clients map read-only
    ASSERT_NE(client.data(), nullptr);
    EXPECT_EQ(std::memcmp(client.data(), "kept", 4), 0);
  }
  ::close(client_fd);
}

TEST(MemorySegmentTest, MoveTransfersOwnership) {
  Result<MemorySegment> made = MemorySegment::Create("tokenmem:test:move", kPage, {});
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  MemorySegment a = std::move(made).value();
  const int fd = a.fd();
  std::byte* data = a.data();
  MemorySegment b = std::move(a);
  EXPECT_EQ(a.fd(), -1);  // NOLINT(bugprone-use-after-move): checking the moved-from state
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_EQ(b.fd(), fd);
  EXPECT_EQ(b.data(), data);
  b.data()[0] = std::byte{1};

  Result<MemorySegment> other = MemorySegment::Create("tokenmem:test:move2", kPage, {});
  ASSERT_TRUE(other.ok());
  b = std::move(other).value();  // releases the first segment
  EXPECT_NE(b.data(), nullptr);
  EXPECT_EQ(b.data()[0], std::byte{0});
}

TEST(MemorySegmentTest, BindingToNodeZeroPlacesPagesOnNodeZero) {
  if (!std::filesystem::exists("/sys/devices/system/node/node0")) {
    GTEST_SKIP() << "no NUMA node 0 in sysfs";
  }
  Result<MemorySegment> seg = MemorySegment::Create("tokenmem:test:node0", 64 * kPage, {0});
  ASSERT_TRUE(seg.ok()) << seg.status().ToString();
  if (!seg->bound()) GTEST_SKIP() << "the kernel refused mbind here";
  if (std::filesystem::exists("/proc/self/numa_maps")) {
    EXPECT_EQ(NumaMapsPolicy(seg->data()), "bind:0");
  }
  for (uint64_t off = 0; off < seg->size(); off += kPage) {
    Result<int> node = NodeOfAddress(seg->data() + off);
    ASSERT_TRUE(node.ok()) << node.status().ToString();
    EXPECT_EQ(*node, 0) << "page at offset " << off;
  }
}

TEST(MemorySegmentTest, NodeOfAddressFailsForUnmappedMemory) {
  void* p = ::mmap(nullptr, kPage, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  ASSERT_EQ(::munmap(p, kPage), 0);
  Result<int> node = NodeOfAddress(p);
  ASSERT_FALSE(node.ok());
  EXPECT_EQ(node.status().code(), StatusCode::kIoError);
}

TEST(MemorySegmentTest, ZeroSizeIsInvalid) {
  Result<MemorySegment> seg = MemorySegment::Create("tokenmem:test:zero", 0, {});
  ASSERT_FALSE(seg.ok());
  EXPECT_EQ(seg.status().code(), StatusCode::kInvalidArgument);
}

TEST(MemorySegmentTest, AbsurdSizesAreResourceExhausted) {
  for (uint64_t bytes : {uint64_t{1} << 50, UINT64_MAX}) {
    Result<MemorySegment> seg = MemorySegment::Create("tokenmem:test:huge", bytes, {});
    ASSERT_FALSE(seg.ok()) << bytes;
    EXPECT_EQ(seg.status().code(), StatusCode::kResourceExhausted) << seg.status().ToString();
    EXPECT_NE(seg.status().message().find(std::to_string(bytes)), std::string::npos)
        << seg.status().ToString();
  }
}

TEST(MemorySegmentTest, NonexistentNumaNodeIsInvalid) {
  Result<MemorySegment> seg = MemorySegment::Create("tokenmem:test:node63", kPage, {63});
  ASSERT_FALSE(seg.ok());
  EXPECT_EQ(seg.status().code(), StatusCode::kInvalidArgument) << seg.status().ToString();
  EXPECT_NE(seg.status().message().find("63"), std::string::npos) << seg.status().ToString();

  for (int bad : {-1, kMaxNumaNode + 1}) {
    Result<MemorySegment> r = MemorySegment::Create("tokenmem:test:badnode", kPage, {bad});
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_TRUE(ValidateNumaNodes({}).ok());
  if (std::filesystem::exists("/sys/devices/system/node/has_memory")) {
    EXPECT_TRUE(ValidateNumaNodes({0}).ok());
    EXPECT_FALSE(ValidateNumaNodes({0, 63}).ok());
  }
}

TEST(MemorySegmentTest, OverlongNameIsInvalid) {
  Result<MemorySegment> seg = MemorySegment::Create(std::string(300, 'n'), kPage, {});
  ASSERT_FALSE(seg.ok());
  EXPECT_EQ(seg.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tokenmem::tier
