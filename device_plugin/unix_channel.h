// gRPC channels to Unix sockets on this node (the agent, the kubelet).
// Thread-safe, like the channels themselves.
#pragma once

#include <grpcpp/channel.h>

#include <chrono>
#include <memory>
#include <string>

#include "tokenmem/common/status.h"

namespace tokenmem::device_plugin {

// A channel to the Unix socket at `path` (not yet connected). After the
// peer goes away it tries again within `max_backoff`, not gRPC's default of
// up to two minutes: a local peer that restarts is back in a moment, and
// the plugin must notice. kInvalidArgument when the path is empty, relative
// or too long for a Unix socket address.
Result<std::shared_ptr<grpc::Channel>> UnixChannel(
    const std::string& path, std::chrono::milliseconds max_backoff = std::chrono::seconds(1));

}  // namespace tokenmem::device_plugin
