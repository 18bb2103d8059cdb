#include "unix_channel.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <sys/un.h>

#include <algorithm>

namespace tokenmem::device_plugin {

Result<std::shared_ptr<grpc::Channel>> UnixChannel(const std::string& path,
                                                   std::chrono::milliseconds max_backoff) {
  if (path.empty() || path.front() != '/') {
    return InvalidArgument("socket path '" + path + "' must be absolute");
  }
  if (path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return InvalidArgument("socket path '" + path + "' is longer than " +
                           std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) +
                           " bytes, the limit of a Unix socket address");
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);  // a busy node's PodResources list may be large
  const int max_ms = static_cast<int>(std::clamp<int64_t>(max_backoff.count(), 10, 60000));
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, std::min(max_ms, 50));
  // GRPC_ARG_MIN_RECONNECT_BACKOFF_MS stays at its default: gRPC uses it as
  // the connect timeout, and lowering it aborts handshakes.
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, max_ms);
  // Each of these channels has one peer; never share subchannels across
  // channels, so one client's backoff does not hold back another's.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel("unix:" + path, grpc::InsecureChannelCredentials(), args);
}

}  // namespace tokenmem::device_plugin
