// libtokenmem_cuda's C ABI against a real agent, through libtokenmem.so.
// Without a CUDA device: registration is refused, misses are misses and a
// hit reports the failed device copy; with one, blocks reach the device.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "agent_fixture.h"
#include "tokenmem/tokenmem_cuda.h"

namespace tokenmem {
namespace {

TEST(CudaCAbiTest, GetManyCopiesBlocksToTheDeviceOrSaysWhyNot) {
  testing::AgentOptions options;
  options.pools = {{.name = "kv", .block_size = "64KiB", .dram = "4MiB"}};
  testing::AgentProcess agent(options);
  Status started = agent.Start();
  ASSERT_TRUE(started.ok()) << started.ToString();
  auto lease = agent.CreateLease(64 << 20);
  ASSERT_TRUE(lease.ok());
  const auto colon = lease->find(':');
  tm_client* client = nullptr;
  ASSERT_EQ(
      tm_client_connect((agent.dir() / "agent-data.sock").c_str(), lease->substr(0, colon).c_str(),
                        lease->substr(colon + 1).c_str(), 10000, &client),
      TM_OK);
  tm_pool* pool = nullptr;
  ASSERT_EQ(tm_pool_attach(client, "kv", &pool), TM_OK);
  std::string block(65536, 'k');
  const tm_key hit{1, 1}, miss{2, 2};
  ASSERT_EQ(tm_put(pool, &hit, block.data(), block.size()), TM_OK);

  int devices = 0;
  const bool gpu = cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0;
  void* device = nullptr;
  if (gpu) {
    ASSERT_EQ(cudaMalloc(&device, 2 * block.size()), cudaSuccess);
  }
  EXPECT_EQ(tm_cuda_register_pool(pool), gpu ? TM_OK : TM_FAILED_PRECONDITION);

  // Two pieces per block; the miss never touches the device.
  char* base = static_cast<char*>(device);
  const tm_key keys[2] = {miss, hit};
  const size_t iovcnt[2] = {2, 2};
  const tm_iovec iov[4] = {
      {base, 1000}, {base + 1000, 64536}, {base + 65536, 30000}, {base + 95536, 35536}};
  int codes[2] = {-1, -1};
  size_t lengths[2] = {7, 7};
  int rc = tm_cuda_get_many(pool, 2, keys, iovcnt, iov, codes, lengths, nullptr);
  EXPECT_EQ(codes[0], TM_NOT_FOUND);
  if (gpu) {
    EXPECT_EQ(rc, TM_OK);
    EXPECT_EQ(codes[1], TM_OK);
    EXPECT_EQ(lengths[1], block.size());
    std::string back(block.size(), '\0');
    ASSERT_EQ(cudaMemcpy(back.data(), base + 65536, back.size(), cudaMemcpyDeviceToHost),
              cudaSuccess);
    EXPECT_EQ(back, block);
    tm_cuda_unregister_pool(pool);
    cudaFree(device);
  } else {
    EXPECT_EQ(rc, TM_INTERNAL);  // the device copy failed: no device
    EXPECT_EQ(codes[1], TM_INTERNAL);
  }
  // Pieces too small: the needed length, nothing copied.
  const tm_iovec small[1] = {{base, 100}};
  const size_t one[1] = {1};
  EXPECT_EQ(tm_cuda_get_many(pool, 1, &hit, one, small, codes, lengths, nullptr),
            TM_INVALID_ARGUMENT);
  EXPECT_EQ(lengths[0], block.size());
  tm_pool_close(pool);
  tm_client_close(client);
}

}  // namespace
}  // namespace tokenmem
