// ControlServer: serves ControlService on the agent's Unix socket (always)
// and on TCP (optional), authenticating every caller on both
// (docs/security-admin-plane.md):
//   - Unix socket: the connecting process's credentials (SO_PEERCRED). Node
//     admins (uid 0, admin_uids, admin_gids) reach the API; every call on a
//     connection from anyone else is answered PERMISSION_DENIED. The socket
//     file's mode (0600 by default) is a second fence, not the only one.
//   - TCP: every call carries the admin token; with a client CA, every
//     connection also presents a certificate it signed (mTLS). Without TLS
//     files the token crosses the network in the clear.
// Refusals are UNAUTHENTICATED / PERMISSION_DENIED with a message saying
// what is missing, and are reported to on_auth_failure.
//
// The socket's directory is created when missing; a stale socket file left
// by a dead agent is replaced, but a socket that still answers means another
// agent runs there, which is an error.
#pragma once

#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "control/control_service.h"
#include "control/peer_listener.h"

namespace tokenmem::control {

struct ControlServerOptions {
  std::filesystem::path socket_path;
  uint32_t socket_mode = 0600;
  std::vector<uint32_t> admin_uids;  // admitted on the Unix socket besides uid 0
  std::vector<uint32_t> admin_gids;  // primary or supplementary group admitted
  std::string tcp_listen;            // "host:port"; empty: no TCP
  std::string admin_token;           // required when tcp_listen is set
  // PEM text (not paths). Certificate and key: TLS on TCP; with the client
  // CA as well: mTLS. All empty: plain TCP.
  std::string tls_cert_pem;
  std::string tls_key_pem;
  std::string tls_client_ca_pem;
  uint64_t max_message_bytes = 256ull << 20;
  AuthFailureObserver on_auth_failure;  // may be empty
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
  // Two gRPC servers behind the one Unix socket: connections from node
  // admins go to the first, all others to the second, whose service refuses
  // every call. Deciding per connection (not per call from a table keyed by
  // connection) leaves no window in which a call could be judged by
  // another connection's credentials.
  std::unique_ptr<ControlService> unix_service_;
  std::unique_ptr<ControlService> refusing_service_;
  std::unique_ptr<ControlService> tcp_service_;
  std::unique_ptr<grpc::Server> unix_server_;
  std::unique_ptr<grpc::Server> refusing_server_;
  std::unique_ptr<grpc::Server> tcp_server_;
  std::unique_ptr<PeerListener> listener_;
  int tcp_port_ = 0;
  bool stopped_ = false;
};

}  // namespace tokenmem::control
