// Registers a MAP_SHARED memfd mapping (what a pool segment is) with CUDA
// and copies from it to the GPU and back. Skipped without a CUDA device.
#include "tokenmem/cuda_host_register.h"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <vector>

namespace tokenmem::cuda {
namespace {

class SharedMapping {
 public:
  explicit SharedMapping(size_t len) : len_(len) {
    int fd = ::memfd_create("tm-cuda-test", MFD_CLOEXEC);
    if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(len)) != 0) return;
    void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    if (p != MAP_FAILED) data_ = p;
  }
  ~SharedMapping() {
    if (data_ != nullptr) ::munmap(data_, len_);
  }
  void* data() const { return data_; }
  size_t len() const { return len_; }

 private:
  void* data_ = nullptr;
  size_t len_;
};

TEST(CudaHostRegisterTest, NoDeviceIsReportedNotFatal) {
  if (DeviceCount() > 0) GTEST_SKIP() << "a CUDA device is present";
  HostRange r{reinterpret_cast<void*>(4096), 4096};
  auto reg = RegisteredRanges::Register(std::span(&r, 1));
  ASSERT_FALSE(reg.ok());
  EXPECT_EQ(reg.status().code(), StatusCode::kFailedPrecondition);
}

TEST(CudaHostRegisterTest, CopiesFromRegisteredSharedMemory) {
  if (DeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  constexpr size_t kLen = 8 << 20;
  SharedMapping seg(kLen);
  ASSERT_NE(seg.data(), nullptr);
  auto* bytes = static_cast<unsigned char*>(seg.data());
  for (size_t i = 0; i < kLen; ++i) bytes[i] = static_cast<unsigned char>(i * 131 + 7);

  HostRange r{seg.data(), seg.len()};
  auto reg = RegisteredRanges::Register(std::span(&r, 1));
  ASSERT_TRUE(reg.ok()) << reg.status().ToString();
  EXPECT_TRUE(reg->Contains(bytes + 4096, 65536));
  EXPECT_FALSE(reg->Contains(bytes + kLen - 10, 20));

  void* dev = nullptr;
  ASSERT_EQ(cudaMalloc(&dev, kLen), cudaSuccess);
  // Scattered 64 KiB pieces, as a layer's blocks are.
  for (size_t off = 0; off < kLen; off += 65536) {
    Status s =
        CopyToDevice(static_cast<char*>(dev) + off, bytes + (kLen - 65536 - off), 65536, nullptr);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  std::vector<unsigned char> back(kLen);
  ASSERT_EQ(cudaMemcpy(back.data(), dev, kLen, cudaMemcpyDeviceToHost), cudaSuccess);
  for (size_t off = 0; off < kLen; off += 65536) {
    ASSERT_EQ(std::memcmp(back.data() + off, bytes + (kLen - 65536 - off), 65536), 0) << off;
  }
  cudaFree(dev);
}

}  // namespace
}  // namespace tokenmem::cuda
