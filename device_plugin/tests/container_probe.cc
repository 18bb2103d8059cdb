// The "container" of the device plugin's integration test, control-API
// flavour: started with exactly the environment Allocate returned, it uses
// the lease from TOKENMEM_LEASE to fill its quota with blocks through the
// agent's control socket (TOKENMEM_CONTROL_SOCKET), reads them back, and
// checks that one block more is refused with RESOURCE_EXHAUSTED.
// (container_sdk.cc does the same through the SDK and the data socket.)
//
// Says whether the socket directory is a read-only mount (and checks that a
// read-only one refuses writes).
// Prints "stored=N block=B quota=Q" and exits 0 when all holds; otherwise
// says what failed on stderr and exits non-zero.
#include <fcntl.h>
#include <grpcpp/create_channel.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include "tokenmem/common/block_key.h"
#include "tokenmem/v1/control.grpc.pb.h"
#include "wire/channel.h"
#include "wire/codes.h"
#include "wire/key_bytes.h"
#include "wire/lease.h"

namespace {

int Fail(int code, const std::string& what) {
  std::cerr << "container: " << what << "\n";
  return code;
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

std::string BlockBytes(uint64_t i, uint64_t size) {
  std::string data(size, '\0');
  for (uint64_t j = 0; j < size; ++j) data[j] = static_cast<char>((i * 131 + j * 7) & 0xff);
  return data;
}

std::string KeyOf(uint64_t i) {
  return tokenmem::wire::KeyToBytes(tokenmem::BlockKey{0xc0ffee, i});
}

}  // namespace

int main() {
  using namespace tokenmem;
  const std::string data_socket = Env("TOKENMEM_AGENT_SOCKET");
  const std::string control_socket = Env("TOKENMEM_CONTROL_SOCKET");
  const std::string lease_text = Env("TOKENMEM_LEASE");
  const std::string quota_text = Env("TOKENMEM_QUOTA_BYTES");
  const std::string pool = Env("TOKENMEM_DEFAULT_POOL");
  if (data_socket.empty() || control_socket.empty() || lease_text.empty() || quota_text.empty() ||
      pool.empty()) {
    return Fail(2, "missing TOKENMEM_* variables");
  }
  if (std::getenv("PATH") != nullptr || std::getenv("HOME") != nullptr) {
    return Fail(2, "the environment is not exactly Allocate's");
  }
  struct stat st {};
  if (::stat(data_socket.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) {
    return Fail(3, "TOKENMEM_AGENT_SOCKET " + data_socket + " is not a socket here");
  }
  const std::string dir = data_socket.substr(0, data_socket.rfind('/'));
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

  auto lease = wire::ParseLease(lease_text);
  if (!lease.ok()) return Fail(2, lease.status().ToString());
  const uint64_t quota = std::strtoull(quota_text.c_str(), nullptr, 10);
  auto channel = wire::CreateChannel({.socket_path = control_socket});
  if (!channel.ok()) return Fail(3, channel.status().ToString());
  auto stub = v1::Control::NewStub(*channel);

  uint64_t block_size = 0;
  {
    grpc::ClientContext ctx;
    wire::SetTimeout(&ctx, std::chrono::seconds(5));
    v1::GetPoolRequest req;
    req.set_name(pool);
    v1::PoolInfo info;
    grpc::Status s = stub->GetPool(&ctx, req, &info);
    if (!s.ok()) return Fail(3, "GetPool: " + wire::DescribeRpcError(s));
    block_size = info.spec().block_size();
  }
  if (block_size == 0 || quota < block_size) return Fail(4, "quota smaller than one block");
  const uint64_t count = quota / block_size;

  // Fill the quota, a few blocks per call.
  for (uint64_t first = 0; first < count; first += 4) {
    grpc::ClientContext ctx;
    wire::SetTimeout(&ctx, std::chrono::seconds(5));
    v1::PutRequest req;
    *req.mutable_lease() = wire::ToCredentials(*lease);
    req.set_pool(pool);
    for (uint64_t i = first; i < std::min(count, first + 4); ++i) {
      auto* b = req.add_blocks();
      b->set_key(KeyOf(i));
      b->set_data(BlockBytes(i, block_size));
    }
    v1::PutReply reply;
    grpc::Status s = stub->Put(&ctx, req, &reply);
    if (!s.ok()) return Fail(4, "Put within quota: " + wire::DescribeRpcError(s));
    for (const auto& r : reply.results()) {
      if (r.code() != 0) return Fail(4, "Put within quota: " + wire::StoreCodeName(r.code()));
    }
  }
  // Read every block back, byte for byte.
  for (uint64_t i = 0; i < count; ++i) {
    grpc::ClientContext ctx;
    wire::SetTimeout(&ctx, std::chrono::seconds(5));
    v1::GetRequest req;
    *req.mutable_lease() = wire::ToCredentials(*lease);
    req.set_pool(pool);
    req.add_keys(KeyOf(i));
    v1::GetReply reply;
    grpc::Status s = stub->Get(&ctx, req, &reply);
    if (!s.ok()) return Fail(5, "Get: " + wire::DescribeRpcError(s));
    if (reply.blocks_size() != 1 || !reply.blocks(0).found()) {
      return Fail(5, "block " + std::to_string(i) + " missing");
    }
    if (reply.blocks(0).data() != BlockBytes(i, block_size)) {
      return Fail(5, "block " + std::to_string(i) + " differs");
    }
  }
  // One block beyond the quota: refused, cleanly.
  {
    grpc::ClientContext ctx;
    wire::SetTimeout(&ctx, std::chrono::seconds(5));
    v1::PutRequest req;
    *req.mutable_lease() = wire::ToCredentials(*lease);
    req.set_pool(pool);
    auto* b = req.add_blocks();
    b->set_key(KeyOf(count));
    b->set_data(BlockBytes(count, block_size));
    v1::PutReply reply;
    grpc::Status s = stub->Put(&ctx, req, &reply);
    std::string outcome;
    if (!s.ok()) {
      outcome = std::string(wire::RpcCodeName(s.error_code()));
    } else if (reply.results_size() == 1) {
      outcome = wire::StoreCodeName(reply.results(0).code());
    }
    if (outcome != "RESOURCE_EXHAUSTED") {
      return Fail(6, "a put beyond the quota was answered " + (outcome.empty() ? "OK" : outcome));
    }
    std::cout << "beyond quota: " << outcome << "\n";
  }
  std::cout << "stored=" << count << " block=" << block_size << " quota=" << quota << "\n";
  return 0;
}
