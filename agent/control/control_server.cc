#include "control/control_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "tokenmem/common/log.h"
#include "tokenmem/common/unix_socket.h"

namespace tokenmem::control {
Result<std::unique_ptr<ControlServer>> ControlServer::Start(const ControlServerOptions& options,
                                                            pool::PoolManager* pools,
                                                            pool::LeaseTable* leases,
                                                            const AgentInfo* info) {
  std::unique_ptr<ControlServer> server(new ControlServer());
  TM_RETURN_IF_ERROR(PrepareSocketPath(options.socket_path, SOCK_STREAM));
  const int max_message =
      static_cast<int>(std::min<uint64_t>(options.max_message_bytes, INT32_MAX));

  server->unix_service_ = std::make_unique<ControlService>(pools, leases, info, "");
  grpc::ServerBuilder unix_builder;
  unix_builder.AddListeningPort("unix:" + options.socket_path.string(),
                                grpc::InsecureServerCredentials());
  unix_builder.RegisterService(server->unix_service_.get());
  unix_builder.SetMaxReceiveMessageSize(max_message);
  unix_builder.SetMaxSendMessageSize(max_message);
  // The socket is created with the process umask: narrow it for the window
  // before chmod so the socket is never wider than asked.
  mode_t old_mask = ::umask(0177);
  server->unix_server_ = unix_builder.BuildAndStart();
  ::umask(old_mask);
  if (!server->unix_server_) {
    return IoError("cannot serve on unix:" + options.socket_path.string() +
                   " (see gRPC's message above)");
  }
  server->socket_path_ = options.socket_path;
  if (::chmod(options.socket_path.c_str(), options.socket_mode) != 0) {
    return ErrnoError("chmod " + options.socket_path.string(), errno);
  }
  TM_LOG(INFO, "control") << "serving on unix:" << options.socket_path.string();

  if (!options.tcp_listen.empty()) {
    if (options.admin_token.empty()) return InvalidArgument("TCP control needs an admin token");
    server->tcp_service_ =
        std::make_unique<ControlService>(pools, leases, info, options.admin_token);
    grpc::ServerBuilder tcp_builder;
    tcp_builder.AddListeningPort(options.tcp_listen, grpc::InsecureServerCredentials(),
                                 &server->tcp_port_);
    tcp_builder.RegisterService(server->tcp_service_.get());
    tcp_builder.SetMaxReceiveMessageSize(max_message);
    tcp_builder.SetMaxSendMessageSize(max_message);
    server->tcp_server_ = tcp_builder.BuildAndStart();
    if (!server->tcp_server_ || server->tcp_port_ == 0) {
      return IoError("cannot listen on " + options.tcp_listen);
    }
    TM_LOG(INFO, "control") << "serving on tcp " << options.tcp_listen << " (port "
                            << server->tcp_port_ << ", admin token required)";
  }
  return server;
}

void ControlServer::Shutdown() {
  if (stopped_) return;
  stopped_ = true;
  // Calls in flight get a moment to finish; idle client connections would
  // otherwise hold Shutdown until the deadline.
  auto deadline = std::chrono::system_clock::now() + std::chrono::milliseconds(500);
  if (tcp_server_) tcp_server_->Shutdown(deadline);
  if (unix_server_) unix_server_->Shutdown(deadline);
  if (!socket_path_.empty()) ::unlink(socket_path_.c_str());
}

ControlServer::~ControlServer() { Shutdown(); }

}  // namespace tokenmem::control
