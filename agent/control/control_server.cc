#include "control/control_server.h"

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_posix.h>
#include <unistd.h>

#include <chrono>

#include "tokenmem/common/log.h"

namespace tokenmem::control {
namespace {

std::unique_ptr<grpc::Server> BuildFdServer(ControlService* service, int max_message) {
  // No listening port: connections arrive one by one from the PeerListener.
  grpc::ServerBuilder builder;
  builder.RegisterService(service);
  builder.SetMaxReceiveMessageSize(max_message);
  builder.SetMaxSendMessageSize(max_message);
  return builder.BuildAndStart();
}

std::shared_ptr<grpc::ServerCredentials> TcpCredentials(const ControlServerOptions& o) {
  if (o.tls_cert_pem.empty()) return grpc::InsecureServerCredentials();
  // With a client CA the certificate is requested and, when presented,
  // verified in the handshake; the service then refuses calls on
  // connections that presented none, with a status saying so (requiring it
  // in the handshake would leave the client only "handshake failed").
  grpc::SslServerCredentialsOptions ssl(o.tls_client_ca_pem.empty()
                                            ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                            : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  ssl.pem_root_certs = o.tls_client_ca_pem;
  ssl.pem_key_cert_pairs.push_back({o.tls_key_pem, o.tls_cert_pem});
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

Result<std::unique_ptr<ControlServer>> ControlServer::Start(const ControlServerOptions& options,
                                                            pool::PoolManager* pools,
                                                            pool::LeaseTable* leases,
                                                            const AgentInfo* info) {
  if (!options.tcp_listen.empty() && options.admin_token.empty()) {
    return InvalidArgument("TCP control needs an admin token");
  }
  if (options.tls_cert_pem.empty() != options.tls_key_pem.empty()) {
    return InvalidArgument("TLS needs both a certificate and its key");
  }
  if (!options.tls_client_ca_pem.empty() && options.tls_cert_pem.empty()) {
    return InvalidArgument("a client CA (mTLS) needs the server's certificate and key");
  }
  std::unique_ptr<ControlServer> server(new ControlServer());
  const int max_message =
      static_cast<int>(std::min<uint64_t>(options.max_message_bytes, INT32_MAX));

  server->unix_service_ = std::make_unique<ControlService>(
      pools, leases, info, CallerPolicy{.transport = Transport::kUnix});
  server->refusing_service_ =
      std::make_unique<ControlService>(pools, leases, info,
                                       CallerPolicy{.transport = Transport::kUnix,
                                                    .refuse_all = true,
                                                    .on_failure = options.on_auth_failure});
  server->unix_server_ = BuildFdServer(server->unix_service_.get(), max_message);
  server->refusing_server_ = BuildFdServer(server->refusing_service_.get(), max_message);
  if (!server->unix_server_ || !server->refusing_server_) {
    return IoError("cannot start the control API's gRPC servers (see gRPC's message above)");
  }
  grpc::Server* admins = server->unix_server_.get();
  grpc::Server* others = server->refusing_server_.get();
  auto listener = PeerListener::Start(
      options.socket_path, options.socket_mode,
      [admins, others, uids = options.admin_uids, gids = options.admin_gids](
          int fd, const PeerCredentials& peer) {
        if (IsNodeAdmin(peer, uids, gids)) {
          grpc::AddInsecureChannelFromFd(admins, fd);
          return;
        }
        TM_LOG(WARN, "control") << "pid " << peer.pid << " (uid " << peer.uid << ", gid "
                                << peer.gid
                                << ") connected to the control socket but is not a node admin; "
                                   "its calls are refused";
        grpc::AddInsecureChannelFromFd(others, fd);
      });
  if (!listener.ok()) return listener.status().WithContext("control socket");
  server->listener_ = std::move(listener).value();
  TM_LOG(INFO, "control") << "serving on unix:" << options.socket_path.string()
                          << " (node admins only: uid 0, " << options.admin_uids.size()
                          << " more uid(s), " << options.admin_gids.size() << " group(s))";

  if (!options.tcp_listen.empty()) {
    server->tcp_service_ = std::make_unique<ControlService>(
        pools, leases, info,
        CallerPolicy{.transport = Transport::kTcp,
                     .admin_token = options.admin_token,
                     .require_client_cert = !options.tls_client_ca_pem.empty(),
                     .on_failure = options.on_auth_failure});
    grpc::ServerBuilder tcp_builder;
    tcp_builder.AddListeningPort(options.tcp_listen, TcpCredentials(options), &server->tcp_port_);
    tcp_builder.RegisterService(server->tcp_service_.get());
    tcp_builder.SetMaxReceiveMessageSize(max_message);
    tcp_builder.SetMaxSendMessageSize(max_message);
    server->tcp_server_ = tcp_builder.BuildAndStart();
    if (!server->tcp_server_ || server->tcp_port_ == 0) {
      return IoError("cannot listen on " + options.tcp_listen + " (see gRPC's message above)");
    }
    const char* security = options.tls_cert_pem.empty()        ? "plain TCP, admin token"
                           : options.tls_client_ca_pem.empty() ? "TLS, admin token"
                                                               : "mTLS, admin token";
    TM_LOG(INFO, "control") << "serving on tcp " << options.tcp_listen << " (port "
                            << server->tcp_port_ << ", " << security << " required)";
  }
  return server;
}

void ControlServer::Shutdown() {
  if (stopped_) return;
  stopped_ = true;
  // No new connections first (and the socket file goes), then the calls in
  // flight get a moment to finish; idle client connections would otherwise
  // hold Shutdown until the deadline.
  if (listener_) listener_->Shutdown();
  auto deadline = std::chrono::system_clock::now() + std::chrono::milliseconds(500);
  if (tcp_server_) tcp_server_->Shutdown(deadline);
  if (unix_server_) unix_server_->Shutdown(deadline);
  if (refusing_server_) refusing_server_->Shutdown(deadline);
}

ControlServer::~ControlServer() { Shutdown(); }

}  // namespace tokenmem::control
