// Sending and receiving one local-protocol message on a SOCK_SEQPACKET
// socket, with file descriptors beside it.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "tokenmem/common/status.h"
#include "tokenmem/layout/local_protocol.h"

namespace tokenmem::local {

struct Message {
  layout::MessageHeader header;
  std::vector<std::byte> payload;
};

// The next message. UNAVAILABLE when the peer closed the connection;
// INVALID_ARGUMENT for a truncated or malformed header (wrong magic or
// version, length that disagrees with the datagram), or attached fds (they
// are closed).
Result<Message> ReceiveMessage(int fd);

// Sends one message with `fds` attached (they stay owned by the caller).
Status SendMessage(int fd, uint16_t type, uint32_t request_id, std::span<const std::byte> payload,
                   std::span<const int> fds = {});

// A reply whose payload is a StatusReply and `status`'s message.
Status SendError(int fd, uint16_t type, uint32_t request_id, const Status& status);

}  // namespace tokenmem::local
