// RemoteConnection: the client side of the remote data protocol (frame.h)
// over one UCX endpoint. The SDK uses it when the agent is on another
// node; agents use it to talk to their peers.
//
// Connect() opens the endpoint and presents the lease (HELLO) before
// anything else. Call() sends one request and waits for its reply; any
// number of threads may call at once, and their requests are in flight
// together on the one endpoint.
//
// Payloads never go through an intermediate buffer here: a PUT's payload
// is sent from the caller's pieces, and a GET's blocks are received
// straight into the caller's destination pieces (rendezvous) or copied
// there once from UCX's receive buffer (small, eager messages).
//
// Failures: when the agent goes away or a reply does not come within the
// timeout, the call returns kUnavailable, the connection is over
// (connected() turns false) and every other call in flight returns
// kUnavailable too; make a new connection. A returned call never touches
// the caller's buffers again.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "tokenmem/common/status.h"
#include "tokenmem/transport/frame.h"

namespace tokenmem::transport {

struct ConnectOptions {
  std::string address;  // "host:port" of the agent's remote listener
  std::string lease_id;
  std::string lease_secret;
  std::chrono::milliseconds timeout = std::chrono::seconds(10);
  std::string name = "tokenmem-client";  // for logs and the progress thread
};

// One contiguous piece of caller memory.
struct Piece {
  void* data;
  size_t len;
};

class RemoteConnection {
 public:
  // kInvalidArgument: malformed address or credentials. kUnavailable: no
  // agent there, or no answer in time. kPermissionDenied / kNotFound: the
  // agent refused the lease.
  static Result<std::shared_ptr<RemoteConnection>> Connect(const ConnectOptions& options);
  ~RemoteConnection();
  RemoteConnection(const RemoteConnection&) = delete;
  RemoteConnection& operator=(const RemoteConnection&) = delete;

  const std::string& peer_node() const;  // the agent's node name (from HELLO)
  bool connected() const;

  // Sends `request` (its id is assigned here) and waits for the reply.
  // PUT: `payload` holds the blocks' bytes, in item order, in as many
  // pieces as convenient; their total must equal request.PayloadBytes().
  // GET: `destinations[i]` are item i's pieces; a found block's bytes fill
  // them in order. The reply's status is the whole request's; a reply that
  // is not OK comes back as that error.
  Result<Reply> Call(Request request, std::span<const Piece> payload = {},
                     std::span<const std::span<const Piece>> destinations = {});

  struct Impl;

 private:
  explicit RemoteConnection(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tokenmem::transport
