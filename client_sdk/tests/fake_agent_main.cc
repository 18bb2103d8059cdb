// tokenmem_fake_agent: the FakeAgent as a process, for the C and Python
// tests of the SDK.
//
//   tokenmem_fake_agent --socket PATH [--lease ID:SECRET] [--pool NAME]
//                       [--block-size BYTES] [--read-only] [--nvme-block HEX=TEXT]...
//
// Prints "ready" on stdout once it listens, then serves until its stdin
// reaches end of file (the test closes it, or dies) or it gets SIGTERM.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include "fake_agent.h"

int main(int argc, char** argv) {
  tokenmem::testing::FakeAgentOptions options;
  std::vector<std::pair<std::string, std::string>> nvme_blocks;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << arg << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--socket") {
      options.socket_path = value();
    } else if (arg == "--lease") {
      const std::string lease = value();
      const size_t colon = lease.find(':');
      options.lease_id = lease.substr(0, colon);
      options.lease_secret = colon == std::string::npos ? "" : lease.substr(colon + 1);
    } else if (arg == "--pool") {
      options.pools = {value()};
    } else if (arg == "--block-size") {
      options.block_size = std::strtoull(value().c_str(), nullptr, 10);
    } else if (arg == "--read-only") {
      options.read_only = true;
    } else if (arg == "--nvme-block") {
      const std::string v = value();
      const size_t eq = v.find('=');
      nvme_blocks.emplace_back(v.substr(0, eq), eq == std::string::npos ? "" : v.substr(eq + 1));
    } else {
      std::cerr << "unknown argument " << arg << "\n";
      return 2;
    }
  }
  if (options.socket_path.empty()) {
    std::cerr << "--socket is required\n";
    return 2;
  }
  tokenmem::testing::FakeAgent agent(options);
  tokenmem::Status s = agent.Start();
  if (!s.ok()) {
    std::cerr << s.ToString() << "\n";
    return 1;
  }
  for (const auto& [hex, text] : nvme_blocks) {
    auto key = tokenmem::BlockKey::FromHex(hex);
    if (!key.ok() || !agent.Store(options.pools[0], *key, text, 2).ok()) {
      std::cerr << "bad --nvme-block " << hex << "\n";
      return 2;
    }
  }
  std::cout << "ready" << std::endl;
  char buf[256];
  while (std::fread(buf, 1, sizeof(buf), stdin) > 0) {
  }
  agent.Stop();
  return 0;
}
