// RemotePool: what a tokenmem::Pool does when its agent is on another node
// (the remote data path, transport/frame.h over a RemoteConnection).
// Internal to the SDK; tokenmem/client.h states the behaviour of each call,
// which is the local path's except for pins (refused here).
//
// Batches are split into requests of at most kMaxItemsPerRequest items
// and about kMaxRequestBytes of payload: a PUT request's payload is its
// blocks' bytes, and a GET request is sized so that the agent's reply
// (which it builds at block_size() per item) stays as small. Requests of
// one batch go one after another; the callers' IoVecs are handed to UCX as
// they are, so blocks are neither gathered nor scattered through a copy.
//
// Thread-safe: the connection takes any number of calls at once, and a
// RemotePool has no mutable state of its own.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "tokenmem/client.h"

namespace tokenmem::client_internal {

// The payload one request carries at most (the agent refuses PUTs over its
// max_batch_bytes, 64 MiB by default). A single block larger than this
// still goes in a request of its own.
inline constexpr uint64_t kMaxRequestBytes = 32ull << 20;

// Items in one request. A frame header travels as the UCX active
// message's header, which UCX limits to about 8 KiB (its worker's
// max_am_header: 8100 bytes over TCP and shared memory); a larger one
// aborts the process when the message goes by rendezvous. 256 items make
// at most 24 + 256 * 20 = 5144 header bytes (GET, PUT), well under it,
// and far fewer than transport::kMaxItems.
inline constexpr size_t kMaxItemsPerRequest = 256;

// Connects to options.agent_address and presents the lease.
// kInvalidArgument: empty or too long lease id or secret, or a malformed
// address. kUnavailable: no agent there, or no answer in time.
// kPermissionDenied / kNotFound: the agent refused the lease.
Result<std::shared_ptr<transport::RemoteConnection>> ConnectRemote(const ClientOptions& options);

// True while the connection lasts.
bool RemoteConnected(const transport::RemoteConnection& connection);

class RemotePool {
 public:
  // ATTACH `name` on the connection. kNotFound: no such pool;
  // kPermissionDenied: the lease may not use it; kUnavailable.
  static Result<std::unique_ptr<RemotePool>> Attach(
      std::shared_ptr<transport::RemoteConnection> connection, const std::string& name);

  uint64_t block_size() const { return block_size_; }
  bool read_only() const { return read_only_; }

  // As Pool's; the caller has checked that results.size() == items.size()
  // (and, for puts, that the lease is not read-only).
  Status PutMany(std::span<const BlockIo> items, std::span<IoResult> results);
  Status GetMany(std::span<const BlockIo> items, std::span<IoResult> results);

  bool Contains(const BlockKey& key);
  uint32_t LookupPrefix(std::span<const BlockKey> keys);

  Status Remove(const BlockKey& key);
  Status RemoveMany(std::span<const BlockKey> keys, std::span<StatusCode> results);

  // There is no remote pin: kFailedPrecondition (every result too).
  static Status PinRefused();
  static Status PinManyRefused(std::span<const BlockKey> keys, std::span<StatusCode> results);

 private:
  RemotePool(std::shared_ptr<transport::RemoteConnection> connection, std::string name,
             uint32_t handle, uint64_t block_size, bool read_only);
  Status ReadOnlyRefusal() const;

  const std::shared_ptr<transport::RemoteConnection> connection_;
  const std::string name_;
  const uint32_t handle_;  // the agent's handle for the pool on this connection
  const uint64_t block_size_;
  const bool read_only_;
};

}  // namespace tokenmem::client_internal
