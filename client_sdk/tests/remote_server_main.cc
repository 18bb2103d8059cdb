// A remote agent for the SDK's C and Python tests: pools in DRAM only and
// the agent's remote server on 127.0.0.1 (a free port). Prints
// "ADDRESS LEASE_ID SECRET" and a newline once it listens, then serves
// until its standard input is closed.
//
// Pools: "p1" (4 KiB blocks) and "big" (1 MiB blocks). The lease may use
// every pool; its quota is 1 GiB unless --quota BYTES says otherwise.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "pool/lease_table.h"
#include "pool/pool_manager.h"
#include "remote/remote_server.h"

namespace {

using namespace tokenmem;

int Fail(const std::string& what, const Status& status) {
  std::fprintf(stderr, "remote_server_main: %s: %s\n", what.c_str(), status.ToString().c_str());
  return 1;
}

pool::PoolSpec Spec(const std::string& name, uint64_t block, uint64_t dram) {
  pool::PoolSpec spec;
  spec.name = name;
  spec.block_size = block;
  spec.capacity = {.dram = dram};
  return spec;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t quota = 1ull << 30;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quota") == 0 && i + 1 < argc) {
      quota = std::strtoull(argv[++i], nullptr, 10);
    } else {
      std::fprintf(stderr, "usage: %s [--quota BYTES]\n", argv[0]);
      return 2;
    }
  }
  pool::PoolManagerOptions options;
  options.tier_capacity = {.dram = 128ull << 20};
  auto pools = pool::PoolManager::Open(options);
  if (!pools.ok()) return Fail("opening the pools", pools.status());
  if (auto p = (*pools)->Create(Spec("p1", 4096, 32ull << 20)); !p.ok()) {
    return Fail("creating p1", p.status());
  }
  if (auto p = (*pools)->Create(Spec("big", 1ull << 20, 64ull << 20)); !p.ok()) {
    return Fail("creating big", p.status());
  }
  pool::LeaseTable leases;
  auto lease = leases.Create(pool::LeaseOptions{.quota_bytes = quota});
  if (!lease.ok()) return Fail("creating the lease", lease.status());

  remote::RemoteServerOptions server_options;
  server_options.listen = "127.0.0.1:0";
  remote::HandlerOptions handler;
  handler.pools = pools->get();
  handler.leases = &leases;
  handler.node_name = "remote-test-node";
  auto server = remote::RemoteServer::Start(server_options, handler);
  if (!server.ok()) return Fail("starting the remote server", server.status());

  std::printf("%s %s %s\n", (*server)->address().c_str(), lease->account->id().c_str(),
              lease->secret.c_str());
  std::fflush(stdout);
  char buf[256];
  while (true) {
    const ssize_t n = ::read(STDIN_FILENO, buf, sizeof(buf));
    if (n == 0) break;
    if (n < 0 && errno != EINTR) break;
  }
  server->reset();
  return 0;
}
