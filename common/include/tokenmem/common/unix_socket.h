// Making room for a listening Unix socket.
#pragma once

#include <filesystem>

#include "tokenmem/common/status.h"

namespace tokenmem {

// Gets `path` ready for bind(): creates its directory, and removes a socket
// file left by a process that died. INVALID_ARGUMENT when the path does not
// fit a socket address; FAILED_PRECONDITION when something other than a
// socket is there, or when a live server of `socket_type` (SOCK_STREAM,
// SOCK_SEQPACKET) still answers on it. Nothing is removed in those cases.
Status PrepareSocketPath(const std::filesystem::path& path, int socket_type);

}  // namespace tokenmem
