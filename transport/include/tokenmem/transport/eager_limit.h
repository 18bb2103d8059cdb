// When a remote payload is sent eagerly rather than by rendezvous.
//
// Over TCP, UCX's automatic threshold sends payloads from about 64 KiB on
// by rendezvous: one more round trip per message, and no copy saved (TCP
// copies on both sides either way). Sending up to 256 KiB eagerly about
// doubled 64 KiB throughput at concurrency 8 over loopback TCP
// (docs/BENCHMARKS.md). Over RDMA, rendezvous is a zero-copy read into the
// receiver's buffers, so there UCX keeps the choice.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>

namespace tokenmem::transport {

inline constexpr size_t kTcpEagerMaxBytes = 256 << 10;

// The largest payload to send with UCP_AM_SEND_FLAG_EAGER; 0 leaves every
// choice to UCX. kTcpEagerMaxBytes when the node has no RDMA device
// (nothing under <sysfs_root>/class/infiniband: UCX can only use TCP or
// shared memory) and UCX_RNDV_THRESH is not set; 0 otherwise.
size_t DefaultEagerMaxBytes(const std::filesystem::path& sysfs_root = "/sys");

// The UCP_AM_SEND_FLAG_* to add for a payload of `bytes`.
uint32_t EagerSendFlag(size_t bytes, size_t eager_max_bytes);

}  // namespace tokenmem::transport
