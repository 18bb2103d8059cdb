// Host-to-device bandwidth of KV-sized pieces: from a registered MAP_SHARED
// memfd mapping (a tokenmem pool segment) vs from cudaHostAlloc memory.
//   tokenmem-cuda-h2d-bench [--bytes N] [--piece N] [--repeat N]
// Prints one JSON object. Exits 77 without a CUDA device.
#include <cuda_runtime_api.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tokenmem/cuda_host_register.h"

namespace {

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// Best time of `repeat` passes copying `bytes` in `piece`-sized H2D copies.
double TimeCopies(void* dev, const char* src, size_t bytes, size_t piece, int repeat,
                  cudaStream_t stream) {
  double best = 1e30;
  for (int r = 0; r < repeat; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    for (size_t off = 0; off < bytes; off += piece) {
      cudaMemcpyAsync(static_cast<char*>(dev) + off, src + off, std::min(piece, bytes - off),
                      cudaMemcpyHostToDevice, stream);
    }
    cudaStreamSynchronize(stream);
    best = std::min(best, Seconds(std::chrono::steady_clock::now() - t0));
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  size_t bytes = 256ull << 20, piece = 64 << 10;
  int repeat = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--bytes")
      bytes = std::strtoull(argv[i + 1], nullptr, 10);
    else if (a == "--piece")
      piece = std::strtoull(argv[i + 1], nullptr, 10);
    else if (a == "--repeat")
      repeat = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: %s [--bytes N] [--piece N] [--repeat N]\n", argv[0]);
      return 2;
    }
  }
  if (tokenmem::cuda::DeviceCount() == 0) {
    std::printf("{\"skipped\": \"no CUDA device\"}\n");
    return 77;
  }
  int fd = ::memfd_create("tm-h2d-bench", MFD_CLOEXEC);
  if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    std::perror("memfd");
    return 1;
  }
  void* seg = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (seg == MAP_FAILED) {
    std::perror("mmap");
    return 1;
  }
  std::memset(seg, 0x5a, bytes);
  tokenmem::cuda::HostRange range{seg, bytes};
  auto reg = tokenmem::cuda::RegisteredRanges::Register(std::span(&range, 1));
  if (!reg.ok()) {
    std::fprintf(stderr, "%s\n", reg.status().ToString().c_str());
    return 1;
  }
  void* pinned = nullptr;
  void* dev = nullptr;
  cudaStream_t stream;
  if (cudaHostAlloc(&pinned, bytes, cudaHostAllocDefault) != cudaSuccess ||
      cudaMalloc(&dev, bytes) != cudaSuccess || cudaStreamCreate(&stream) != cudaSuccess) {
    std::fprintf(stderr, "CUDA allocation failed\n");
    return 1;
  }
  std::memset(pinned, 0x5a, bytes);
  TimeCopies(dev, static_cast<char*>(pinned), bytes, piece, 1, stream);  // warm up
  const double t_pool = TimeCopies(dev, static_cast<char*>(seg), bytes, piece, repeat, stream);
  const double t_pinned = TimeCopies(dev, static_cast<char*>(pinned), bytes, piece, repeat, stream);
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::printf(
      "{\"device\": \"%s\", \"bytes\": %zu, \"piece\": %zu, \"registered_pool_gbps\": %.3f, "
      "\"cuda_host_alloc_gbps\": %.3f, \"ratio\": %.3f}\n",
      prop.name, bytes, piece, bytes / t_pool / 1e9, bytes / t_pinned / 1e9, t_pinned / t_pool);
  cudaFree(dev);
  cudaFreeHost(pinned);
  cudaStreamDestroy(stream);
  reg = tokenmem::cuda::RegisteredRanges();
  ::munmap(seg, bytes);
  return 0;
}
