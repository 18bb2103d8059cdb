// A pool's blocks straight into device memory, against a real agent. Without
// a CUDA device only the refusal is checked and the rest skips.
#include "tokenmem/cuda_pool.h"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "agent_fixture.h"

namespace tokenmem::cuda {
namespace {

std::vector<std::byte> Pattern(size_t n, uint8_t seed) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std::byte(static_cast<uint8_t>(seed + i * 7));
  return v;
}

TEST(CudaPoolTest, BlocksGoStraightFromThePoolToTheDevice) {
  testing::AgentOptions options;
  options.pools = {{.name = "kv", .block_size = "64KiB", .dram = "4MiB"}};
  testing::AgentProcess agent(options);
  Status started = agent.Start();
  ASSERT_TRUE(started.ok()) << started.ToString();
  auto lease = agent.CreateLease(64 << 20);
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  const auto colon = lease->find(':');
  const std::string data_socket = (agent.dir() / "agent-data.sock").string();
  auto client = Client::Connect(data_socket, lease->substr(0, colon), lease->substr(colon + 1));
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto pool = (*client)->Attach("kv");
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  const auto block = Pattern(65536, 3);
  ASSERT_TRUE((*pool)->Put(BlockKey{1, 1}, block).ok());

  auto pinned = RegisterPool(**pool);
  if (DeviceCount() == 0) {
    EXPECT_EQ(pinned.status().code(), StatusCode::kFailedPrecondition);
    GTEST_SKIP() << "no CUDA device: the device copy is not exercised";
  }
  ASSERT_TRUE(pinned.ok()) << pinned.status().ToString();
  EXPECT_GT(pinned->size(), 0u);

  void* device = nullptr;
  ASSERT_EQ(cudaMalloc(&device, block.size()), cudaSuccess);
  auto n = GetToDevice(**pool, BlockKey{1, 1}, device, block.size(), nullptr);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, block.size());
  std::vector<std::byte> back(block.size());
  ASSERT_EQ(cudaMemcpy(back.data(), device, back.size(), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(back, block);
  EXPECT_EQ(GetToDevice(**pool, BlockKey{9, 9}, device, block.size(), nullptr).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(GetToDevice(**pool, BlockKey{1, 1}, device, 100, nullptr).status().code(),
            StatusCode::kInvalidArgument);
  cudaFree(device);
}

}  // namespace
}  // namespace tokenmem::cuda
