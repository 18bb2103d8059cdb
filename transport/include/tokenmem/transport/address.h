// "host:port" to a socket address, for UCX listeners and endpoints.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "tokenmem/common/status.h"

namespace tokenmem::transport {

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
};

// Resolves "host:port" ("[v6]:port" for IPv6 literals) to its first
// address. An empty host means every interface (for listeners).
// kInvalidArgument for a malformed text, kUnavailable when the name does
// not resolve.
Result<SocketAddress> ResolveAddress(std::string_view host_port);

// The numeric "host:port" of an address.
std::string FormatAddress(const sockaddr* address);

}  // namespace tokenmem::transport
