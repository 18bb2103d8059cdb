// ControlServer: serves ControlService on the agent's Unix socket (always)
// and on TCP (optional, admin token required).
//
// The socket's directory is created when missing; a stale socket file left
// by a dead agent is replaced, but a socket that still answers means another
// agent runs there, which is an error. The socket gets the configured mode.
#pragma once

#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <memory>
#include <string>

#include "control/control_service.h"

namespace tokenmem::control {

struct ControlServerOptions {
  std::filesystem::path socket_path;
  uint32_t socket_mode = 0660;
  std::string tcp_listen;   // "host:port"; empty: no TCP
  std::string admin_token;  // required when tcp_listen is set
  uint64_t max_message_bytes = 256ull << 20;
};

class ControlServer {
 public:
  static Result<std::unique_ptr<ControlServer>> Start(const ControlServerOptions& options,
                                                      pool::PoolManager* pools,
                                                      pool::LeaseTable* leases,
                                                      const AgentInfo* info);
  ~ControlServer();  // Shutdown()

  // Stops accepting calls, lets running ones finish (up to a deadline) and
  // removes the socket file.
  void Shutdown();

  // The TCP port actually bound (useful with port 0), or 0 without TCP.
  int tcp_port() const { return tcp_port_; }

 private:
  ControlServer() = default;
  std::filesystem::path socket_path_;
  std::unique_ptr<ControlService> unix_service_;
  std::unique_ptr<ControlService> tcp_service_;
  std::unique_ptr<grpc::Server> unix_server_;
  std::unique_ptr<grpc::Server> tcp_server_;
  int tcp_port_ = 0;
  bool stopped_ = false;
};

}  // namespace tokenmem::control
