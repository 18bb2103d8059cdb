#include "tokenmem/transport/eager_limit.h"

#include <ucp/api/ucp.h>

#include <cstdlib>
#include <system_error>

namespace tokenmem::transport {

size_t DefaultEagerMaxBytes(const std::filesystem::path& sysfs_root) {
  if (std::getenv("UCX_RNDV_THRESH") != nullptr) return 0;  // the operator chose
  std::error_code ec;
  std::filesystem::directory_iterator devices(sysfs_root / "class" / "infiniband", ec);
  if (!ec && devices != std::filesystem::directory_iterator()) return 0;
  return kTcpEagerMaxBytes;
}

uint32_t EagerSendFlag(size_t bytes, size_t eager_max_bytes) {
  return bytes > 0 && bytes <= eager_max_bytes ? UCP_AM_SEND_FLAG_EAGER : 0;
}

}  // namespace tokenmem::transport
