#include "cluster/discovery.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

namespace tokenmem::cluster {
namespace {

void AppendUnique(std::vector<std::string>* list, std::string value) {
  if (std::find(list->begin(), list->end(), value) == list->end()) {
    list->push_back(std::move(value));
  }
}

}  // namespace

std::string JoinHostPort(const std::string& host, uint16_t port) {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

Result<std::vector<std::string>> ResolveWithGetaddrinfo(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &result);
  if (rc != 0) {
    std::string why = rc == EAI_SYSTEM ? ErrnoError("getaddrinfo", errno).message()
                                       : std::string(::gai_strerror(rc));
    return Unavailable("cannot resolve '" + host + "': " + why);
  }
  std::vector<std::string> out;
  for (addrinfo* ai = result; ai != nullptr; ai = ai->ai_next) {
    char text[INET6_ADDRSTRLEN] = {};
    const void* addr = nullptr;
    if (ai->ai_family == AF_INET) {
      addr = &reinterpret_cast<const sockaddr_in*>(ai->ai_addr)->sin_addr;
    } else if (ai->ai_family == AF_INET6) {
      addr = &reinterpret_cast<const sockaddr_in6*>(ai->ai_addr)->sin6_addr;
    } else {
      continue;
    }
    if (::inet_ntop(ai->ai_family, addr, text, sizeof(text)) != nullptr) AppendUnique(&out, text);
  }
  ::freeaddrinfo(result);
  return out;
}

Discovery::Discovery(config::ClusterConfig config, Resolver resolver)
    : config_(std::move(config)), resolver_(std::move(resolver)) {}

Status Discovery::Refresh() {
  if (config_.dns_name.empty()) return Status::Ok();
  auto hp = config::ParseHostPort(config_.dns_name);
  if (!hp.ok()) return hp.status().WithContext("cluster.dns_name");
  auto resolved = resolver_(hp->host);
  if (!resolved.ok()) {
    return Unavailable("cluster.dns_name '" + config_.dns_name +
                       "': " + resolved.status().message() + " (keeping the last good list)");
  }
  if (resolved->empty()) {
    return Unavailable("cluster.dns_name '" + config_.dns_name +
                       "': no addresses (keeping the last good list)");
  }
  std::vector<std::string> addresses;
  for (const std::string& ip : *resolved) AppendUnique(&addresses, JoinHostPort(ip, hp->port));
  std::lock_guard lock(mu_);
  dns_addresses_ = std::move(addresses);
  return Status::Ok();
}

std::vector<std::string> Discovery::Addresses() const {
  std::vector<std::string> out;
  for (const std::string& peer : config_.peers) AppendUnique(&out, peer);
  std::lock_guard lock(mu_);
  for (const std::string& a : dns_addresses_) AppendUnique(&out, a);
  return out;
}

}  // namespace tokenmem::cluster
