// Making room for a listening Unix socket.
#pragma once

#include <cstdint>
#include <filesystem>

#include "tokenmem/common/status.h"

namespace tokenmem {

// Gets `path` ready for bind(): creates its directory, and removes a socket
// file left by a process that died. INVALID_ARGUMENT when the path does not
// fit a socket address; FAILED_PRECONDITION when something other than a
// socket is there, or when a live server of `socket_type` (SOCK_STREAM,
// SOCK_SEQPACKET) still answers on it. Nothing is removed in those cases.
Status PrepareSocketPath(const std::filesystem::path& path, int socket_type);

// A listening Unix socket of `socket_type` at `path` (prepared as above)
// whose file has `mode` from the start: bound under a narrowed umask, so it
// is never wider than asked, then chmod-ed. The listening fd, or an error
// naming the step; a socket file it created is removed again on failure.
Result<int> ListenUnixSocket(const std::filesystem::path& path, int socket_type, uint32_t mode,
                             int backlog);

}  // namespace tokenmem
