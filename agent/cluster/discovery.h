// Discovery: the addresses of the cluster's peer agents, from the static
// list (cluster.peers) and the DNS name of a headless Service
// (cluster.dns_name, every A/AAAA record a peer).
//
// Addresses are "host:port" with IPv6 hosts in brackets, the form
// config::ParseHostPort reads and the remote listener is dialled with. The
// list may include this agent's own address (a headless Service lists every
// pod): Membership recognises and skips it.
//
// Thread-safe: Refresh and Addresses may be called from any thread.
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "config/agent_config.h"
#include "tokenmem/common/status.h"

namespace tokenmem::cluster {

// Resolves a host name to its IP addresses as text ("10.0.0.2", "fd00::3",
// no brackets). An error or an empty list means the name gave nothing.
using Resolver = std::function<Result<std::vector<std::string>>(const std::string& host)>;

// getaddrinfo(host) for TCP: every A and AAAA record, deduplicated, in the
// order the resolver returned them. kUnavailable when the name does not
// resolve (the message holds gai_strerror's text and the name).
Result<std::vector<std::string>> ResolveWithGetaddrinfo(const std::string& host);

// "host:port", with the host in brackets when it holds a ':' (IPv6).
std::string JoinHostPort(const std::string& host, uint16_t port);

class Discovery {
 public:
  // `config` should have passed config::Validate; peers and dns_name that do
  // not parse are reported by Refresh.
  explicit Discovery(config::ClusterConfig config, Resolver resolver = ResolveWithGetaddrinfo);

  // Re-reads the sources: static peers as given, then dns_name resolved now.
  // OK when every source answered. On a DNS failure (or no records) the
  // addresses from the last good resolution are kept and the error is
  // returned (kUnavailable naming dns_name); the static peers stay in any case.
  Status Refresh();

  // The current list: static peers first (in configured order), then the DNS
  // ones, each address once. Empty before the first Refresh, unless static
  // peers are configured (they are known from construction).
  std::vector<std::string> Addresses() const;

  const config::ClusterConfig& config() const { return config_; }

 private:
  const config::ClusterConfig config_;
  const Resolver resolver_;
  mutable std::mutex mu_;
  std::vector<std::string> dns_addresses_;  // last good resolution
};

}  // namespace tokenmem::cluster
