// Session: the SDK's connection to the agent's data socket, shared by a
// Client and the Pools it attached.
//
// Thread-safe: Call() holds a mutex for the whole request/reply exchange,
// so concurrent callers take turns. Every send and receive is bounded by
// the client's timeout. Any transport failure (the agent closed the socket
// or died, a timeout, a malformed reply) ends the session for good: the
// socket is shut down and every later Call() returns kUnavailable at once.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "local/fd.h"
#include "tokenmem/client.h"
#include "tokenmem/common/status.h"
#include "tokenmem/layout/local_protocol.h"

namespace tokenmem {

class Session {
 public:
  struct Reply {
    // The reply payload, starting with its int32 code (always 0 here).
    std::vector<std::byte> payload;
    // Descriptors that came with the reply, in order; closed with the Reply.
    std::vector<client_internal::UniqueFd> fds;
  };

  // Connects and says HELLO with the lease. Errors as Client::Connect.
  static Result<std::shared_ptr<Session>> Open(const ClientOptions& options);

  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Sends one request of `type` and waits for its reply. A reply whose code
  // is not 0 becomes that Status, carrying the agent's message.
  Result<Reply> Call(uint16_t type, std::span<const std::byte> payload);

  bool broken() const { return broken_.load(std::memory_order_acquire); }

  // OK while the lease holds; PERMISSION_DENIED naming the lease once the
  // agent released it (read from the lease's state page, which HELLO's
  // reply mapped: one load, no system call). Always OK with an agent that
  // sends no state page.
  Status LeaseStatus() const {
    const auto* page = static_cast<const layout::LeaseStatePage*>(lease_state_.base());
    if (page == nullptr || page->state.load(std::memory_order_acquire) == layout::kLeaseActive) {
      return Status::Ok();
    }
    return PermissionDenied("lease '" + lease_id_ + "' was released by the agent's operator");
  }
  const std::string& socket_path() const { return path_; }

 private:
  Session(std::string path, client_internal::UniqueFd fd, std::chrono::milliseconds timeout);
  // Ends the session (caller holds mu_) and returns `why`.
  Status Break(Status why);
  // The agent's reason for closing the connection, in `message` or waiting
  // on the socket (see session.cc).
  static std::optional<Status> RefusalIn(std::span<const std::byte> message);
  std::optional<Status> PendingRefusal();
  Status Hello(const ClientOptions& options);

  const std::string path_;
  const std::chrono::milliseconds timeout_;
  std::mutex mu_;
  client_internal::UniqueFd fd_;          // guarded by mu_
  uint32_t next_request_id_ = 1;          // guarded by mu_
  std::vector<std::byte> recv_buffer_;    // guarded by mu_
  std::string broken_reason_;             // guarded by mu_
  std::string lease_id_;                  // set by Hello, then constant
  client_internal::Mapping lease_state_;  // read-only; set by Hello, then constant
  std::atomic<bool> broken_{false};
};

}  // namespace tokenmem
