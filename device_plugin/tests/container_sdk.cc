// The "container" of the device plugin's integration test, SDK flavour:
// started with exactly the environment Allocate returned, it connects with
// tokenmem::Client::FromEnv (the data socket TOKENMEM_AGENT_SOCKET and the
// lease TOKENMEM_LEASE), attaches TOKENMEM_DEFAULT_POOL, fills the quota
// (TOKENMEM_QUOTA_BYTES) with blocks, reads them back, and checks that one
// block more is refused with kResourceExhausted.
//
// Says whether the socket directory is a read-only mount (and checks that a
// read-only one refuses writes).
// Prints "stored=N block=B quota=Q" and exits 0 when all holds.
#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "tokenmem/client.h"

namespace {

int Fail(int code, const std::string& what) {
  std::cerr << "container: " << what << "\n";
  return code;
}

std::vector<std::byte> BlockBytes(uint64_t i, uint64_t size) {
  std::vector<std::byte> data(size);
  for (uint64_t j = 0; j < size; ++j) data[j] = static_cast<std::byte>((i * 131 + j * 7) & 0xff);
  return data;
}

}  // namespace

int main() {
  using namespace tokenmem;
  if (std::getenv("PATH") != nullptr || std::getenv("HOME") != nullptr) {
    return Fail(2, "the environment is not exactly Allocate's");
  }
  const char* socket = std::getenv(kEnvAgentSocket);
  if (socket == nullptr) return Fail(2, "no TOKENMEM_AGENT_SOCKET");
  const std::string dir = std::string(socket).substr(0, std::string(socket).rfind('/'));
  const std::string probe = dir + "/write-probe";
  // The mount must be read-only where it is a real mount; the write probe
  // confirms what statvfs says.
  struct statvfs vfs {};
  const bool ro_mount = ::statvfs(dir.c_str(), &vfs) == 0 && (vfs.f_flag & ST_RDONLY) != 0;
  const int fd = ::open(probe.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  const int err = errno;
  if (fd >= 0) {
    ::close(fd);
    ::unlink(probe.c_str());
    if (ro_mount) return Fail(3, "a read-only mount took a write");
  } else if (ro_mount && err != EROFS) {
    return Fail(3, std::string("writing the socket directory: ") + std::strerror(err));
  }
  std::cout << "socket directory read-only: " << (ro_mount ? "yes" : "no") << "\n";

  auto client = Client::FromEnv();
  if (!client.ok()) return Fail(3, "FromEnv: " + client.status().ToString());
  const uint64_t quota = (*client)->options().quota_bytes;
  auto pool = (*client)->AttachDefault();
  if (!pool.ok()) return Fail(3, "AttachDefault: " + pool.status().ToString());
  const uint64_t block_size = (*pool)->block_size();
  if (block_size == 0 || quota < block_size) return Fail(4, "quota smaller than one block");
  const uint64_t count = quota / block_size;

  for (uint64_t i = 0; i < count; ++i) {
    Status s = (*pool)->Put(BlockKey{0xc0ffee, i}, BlockBytes(i, block_size));
    if (!s.ok()) return Fail(4, "Put " + std::to_string(i) + " within quota: " + s.ToString());
  }
  std::vector<std::byte> out(block_size);
  for (uint64_t i = 0; i < count; ++i) {
    auto n = (*pool)->Get(BlockKey{0xc0ffee, i}, out);
    if (!n.ok()) return Fail(5, "Get " + std::to_string(i) + ": " + n.status().ToString());
    if (*n != block_size || out != BlockBytes(i, block_size)) {
      return Fail(5, "block " + std::to_string(i) + " differs");
    }
  }
  Status beyond = (*pool)->Put(BlockKey{0xc0ffee, count}, BlockBytes(count, block_size));
  if (beyond.code() != StatusCode::kResourceExhausted) {
    return Fail(6, "a put beyond the quota was answered " + beyond.ToString());
  }
  std::cout << "beyond quota: RESOURCE_EXHAUSTED\n";
  std::cout << "stored=" << count << " block=" << block_size << " quota=" << quota << "\n";
  return 0;
}
