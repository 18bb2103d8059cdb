// How tools reach an agent's control API: over its Unix socket, or over TCP
// with the admin token that the agent demands there.
//
// Channels are gRPC channels: thread-safe, connect lazily on the first call
// and reconnect by themselves after the agent restarts.
#pragma once

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include <chrono>
#include <memory>
#include <string>

#include "tokenmem/common/status.h"

namespace tokenmem::wire {

// The environment variable naming the agent's socket, and the socket used
// when neither a flag nor that variable names one.
inline constexpr char kSocketEnvVar[] = "TOKENMEM_CONTROL_SOCKET";
inline constexpr char kDefaultSocketPath[] = "/run/tokenmem/agent.sock";

struct Endpoint {
  std::string socket_path{};  // the agent's Unix socket; used when `address` is empty
  std::string address{};      // HOST:PORT for TCP
  std::string admin_token{};  // when set, every call carries "authorization: Bearer <token>"
  // TCP over TLS (PEM files): set tls_ca_file to verify the agent's
  // certificate; add the client certificate and key for an agent that
  // requires mTLS. tls_server_name: the name checked against the agent's
  // certificate instead of the host in `address`.
  std::string tls_ca_file{};
  std::string tls_cert_file{};
  std::string tls_key_file{};
  std::string tls_server_name{};
};

// $TOKENMEM_CONTROL_SOCKET when set and non-empty, else kDefaultSocketPath.
std::string DefaultSocketPath();

// The gRPC target string: "unix:<socket_path>" or the address.
std::string TargetOf(const Endpoint& endpoint);

// A channel to `endpoint` (not yet connected). kInvalidArgument when neither
// a socket nor an address is given, the socket path is too long for a Unix
// socket address, or TLS files are given for a Unix socket, a certificate
// without its key (or the reverse) or either without a CA; kIoError when a
// TLS file cannot be read. Messages received may be of any size.
Result<std::shared_ptr<grpc::Channel>> CreateChannel(const Endpoint& endpoint);

// The admin token stored in `path`, surrounding whitespace removed.
// kIoError when the file cannot be read, kInvalidArgument when it is empty.
Result<std::string> ReadAdminTokenFile(const std::string& path);

// Gives the call that uses `context` a deadline `timeout` from now.
void SetTimeout(grpc::ClientContext* context, std::chrono::milliseconds timeout);

}  // namespace tokenmem::wire
