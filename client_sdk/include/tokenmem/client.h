// tokenmem::Client and tokenmem::Pool: the SDK's data paths.
//
// Local or remote. When the agent is on this node the client uses the
// local path described below (ClientOptions::socket_path). When it is on
// another node, the client speaks the remote data protocol to the agent's
// remote listener over UCX (ClientOptions::agent_address): every call is a
// request to the agent, the blocks' bytes travel straight between the
// caller's buffers and the network, and the API is the same except that
// pins are refused (kFailedPrecondition: "pin is not available on the
// remote path"). Client::remote() and Pool::remote() tell which path is in
// use. A remote session ends (kUnavailable) as a local one does, when the
// agent goes away or a reply does not come within the timeout.
//
// A Client is one session with the node's agent over the agent's data
// socket (a Unix SOCK_SEQPACKET socket, proto/.../layout/local_protocol.h),
// proved by a lease. Attaching a pool maps the pool's block index, its
// client area and its memory segments into this process (segments
// read-only for a read-only lease). From then on:
//
//   - Reads do not involve the agent. A get finds the key in the shared
//     index and copies the block out of the mapped segment (one memcpy per
//     destination piece), then checks that the index entry did not change
//     during the copy; if it did, it tries again (a bounded number of
//     times, then reports a miss). The bytes handed back are always the
//     bytes of a committed put, never torn ones. The agent is asked only
//     for a block on NVMe (FETCH, then the block is read from memory) and
//     for a segment this process has not mapped yet (SEGMENTS).
//   - Writes reserve slots in batches, copy the caller's bytes straight
//     into them, and commit keys, lengths and CRC32Cs in batches; the agent
//     publishes the blocks. A block is visible to readers once its commit
//     has been answered.
//   - Pools with scope: cluster are shared by the agents of a cluster: a
//     committed block is forwarded (asynchronously) to its key's owner, and
//     a key missing from the local index is asked of the agent (one FETCH
//     per call for all such keys; the agent fetches them from their owners
//     into this node's memory) before the call reports a miss. Pools with
//     scope: local never send a request for a miss. See docs/sdk.md.
//
// Thread safety: a Client and its Pools may be used from any number of
// threads at once. Requests to the agent are serialized on the client's
// socket (one request/reply exchange at a time); reads take no lock. On
// the remote path, requests of many threads are in flight at once.
//
// Errors are Status values; nothing here throws. A miss is kNotFound.
// When the agent goes away (killed, restarted), every call that needs it
// returns kUnavailable within the client's timeout, and the session stays
// over: connect a new Client (and attach again) to go on. Reads of blocks
// in memory already mapped keep working meanwhile.
//
// Lifetime: a Pool keeps its own reference to the session, so it may
// outlive the Client that attached it. Destroying the last reference to a
// Pool unmaps everything it mapped; pointers into pool memory are never
// handed out, so nothing dangles. Do not use a Client in a child process
// after fork().
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenmem/common/block_key.h"
#include "tokenmem/common/status.h"

namespace tokenmem {

// The environment that the device plugin hands a container (FromEnv).
// At least one of TOKENMEM_AGENT_SOCKET and TOKENMEM_AGENT_ADDRESS is set.
inline constexpr char kEnvAgentSocket[] = "TOKENMEM_AGENT_SOCKET";    // the local data socket
inline constexpr char kEnvAgentAddress[] = "TOKENMEM_AGENT_ADDRESS";  // "host:port", remote
// What the device plugin hands out ("host:port,..."); the first is used when
// TOKENMEM_AGENT_ADDRESS is not set.
inline constexpr char kEnvRemoteEndpoints[] = "TOKENMEM_REMOTE_ENDPOINTS";
inline constexpr char kEnvLease[] = "TOKENMEM_LEASE";               // required: "ID:SECRET"
inline constexpr char kEnvDefaultPool[] = "TOKENMEM_DEFAULT_POOL";  // optional
inline constexpr char kEnvQuotaBytes[] = "TOKENMEM_QUOTA_BYTES";    // optional, informational

struct ClientOptions {
  // Where the agent is: socket_path when it is on this node (preferred when
  // both are set), else agent_address.
  std::string socket_path;    // the agent's data socket (control.data_socket)
  std::string agent_address;  // "host:port" of the agent's remote listener
  std::string lease_id;       // at most 63 bytes
  std::string lease_secret;   // at most 63 bytes; never logged
  std::string default_pool;   // what AttachDefault attaches; may be empty
  uint64_t quota_bytes = 0;   // the lease's quota as the plugin reported it; 0: unknown
  // How long one request may wait for the agent's reply (and for a send);
  // past it the session is over and calls return kUnavailable.
  std::chrono::milliseconds timeout = std::chrono::seconds(10);
};

// One piece of a block's bytes in the caller's memory. A block is the
// concatenation of its pieces, in order (for example one piece per layer).
struct IoVec {
  void* data;  // read by puts, written by gets
  size_t len;
};

// One block of a batched call: its key and where its bytes are (puts) or
// go (gets). The pieces must stay valid during the call.
struct BlockIo {
  BlockKey key;
  std::span<const IoVec> pieces;
};

// What happened to one block of a batched call.
struct IoResult {
  StatusCode code = StatusCode::kOk;  // kOk, kNotFound (miss) or an error
  // Gets: the block's length; with kOk that many bytes were written across
  // the pieces in order (the rest of the pieces is untouched); with
  // kInvalidArgument because the pieces are too small, the length they
  // would need. Puts: the bytes stored.
  size_t length = 0;
};

class Session;  // the socket to the agent (internal)
class Pool;
namespace transport {
class RemoteConnection;  // the remote path's connection (internal)
}

class Client {
 public:
  // Connects to the agent and presents the lease: over the data socket
  // when options.socket_path is set, else to options.agent_address over
  // the remote path.
  // kInvalidArgument: neither is set; empty or too long socket path, lease
  //   id or secret; a socket that is not a SOCK_SEQPACKET data socket; a
  //   malformed address.
  // kUnavailable: no agent listens there, or it did not answer in time.
  // kPermissionDenied / kNotFound: the agent refused the lease.
  static Result<std::unique_ptr<Client>> Connect(const ClientOptions& options);
  static Result<std::unique_ptr<Client>> Connect(std::string_view socket_path,
                                                 std::string_view lease_id,
                                                 std::string_view lease_secret);

  // Options from the environment: $TOKENMEM_AGENT_SOCKET and/or
  // $TOKENMEM_AGENT_ADDRESS (at least one), $TOKENMEM_LEASE ("ID:SECRET"),
  // $TOKENMEM_DEFAULT_POOL, $TOKENMEM_QUOTA_BYTES (a decimal number of
  // bytes). kInvalidArgument naming the variable that is missing or
  // malformed; the message never contains the secret.
  static Result<ClientOptions> OptionsFromEnv();
  // OptionsFromEnv(), then the local path when the socket is set, exists
  // and an agent answers on it; when the socket is unset, does not exist
  // or gives kUnavailable and $TOKENMEM_AGENT_ADDRESS is set, the remote
  // path. Otherwise the local attempt's error.
  static Result<std::unique_ptr<Client>> FromEnv();

  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Maps the pool named `pool_name`. Attaching a pool that this client has
  // attached and whose Pool is still alive returns that same Pool.
  // kNotFound: no such pool. kPermissionDenied: the lease may not use it
  // (another pool, or a pool for other namespaces). kUnavailable: the agent
  // is gone, or it still answered kUnavailable when options().timeout
  // passed (it does so for a pool restricted to some namespaces while the
  // lease's namespace is being bound; Attach asks again meanwhile).
  // kIoError: mapping failed.
  Result<std::shared_ptr<Pool>> Attach(std::string_view pool_name);
  // Attach(options().default_pool); kFailedPrecondition when there is none.
  Result<std::shared_ptr<Pool>> AttachDefault();

  const ClientOptions& options() const { return options_; }
  // False once the session with the agent is over.
  bool connected() const;
  // True when this client talks to the agent over the remote path.
  bool remote() const { return remote_ != nullptr; }

 private:
  Client(ClientOptions options, std::shared_ptr<Session> session);
  Client(ClientOptions options, std::shared_ptr<transport::RemoteConnection> remote);
  Result<std::shared_ptr<Pool>> AttachOnce(const std::string& name);

  ClientOptions options_;
  std::shared_ptr<Session> session_;                     // local path
  std::shared_ptr<transport::RemoteConnection> remote_;  // remote path
  std::mutex pools_mu_;
  std::unordered_map<std::string, std::weak_ptr<Pool>> pools_;
};

class Pool {
 public:
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  const std::string& name() const;
  // The largest block the pool stores, in bytes.
  uint64_t block_size() const;
  // True for a read-only lease: segments are mapped read-only, and puts
  // and removes are refused here (kPermissionDenied) without asking the
  // agent. Pins go to the agent, which decides.
  bool read_only() const;
  // True when the pool was attached over the remote path.
  bool remote() const;

  // Stores `data` (at most block_size() bytes) under `key`, replacing any
  // block of that key. kInvalidArgument: too large. kPermissionDenied:
  // read-only lease. kResourceExhausted: quota or capacity. kUnavailable:
  // the agent is gone.
  Status Put(const BlockKey& key, std::span<const std::byte> data);

  // Copies the block into `out` and returns its length. kNotFound on a miss
  // (also after a block kept changing under the reader). kInvalidArgument
  // when `out` is smaller than the block (block_size() bytes always
  // suffice); nothing is copied then. A block on NVMe is fetched into
  // memory first, which needs the agent (kUnavailable without it). In a
  // cluster pool a miss here is asked of the agent first (the key's owner
  // may hold it); if that fails the result is still the miss.
  Result<size_t> Get(const BlockKey& key, std::span<std::byte> out);

  // Batched, scatter-gather. results.size() must equal items.size()
  // (kInvalidArgument otherwise, nothing done). Each item gets its own
  // result. Returns OK when every item succeeded or missed; otherwise the
  // status of the first item that failed (its code and a message), with
  // every item's outcome still in `results`. Any number of items: requests
  // to the agent go in batches of at most layout::kMaxBatch (remote: of at
  // most 256 items and about 32 MiB).
  Status PutMany(std::span<const BlockIo> items, std::span<IoResult> results);
  Status GetMany(std::span<const BlockIo> items, std::span<IoResult> results);

  // For DMA engines (a GPU copying KV straight from token memory): the
  // pool's memory segments mapped in this process now, to register with
  // the device (cudaHostRegister). Segments mapped later are not in it;
  // empty on the remote path.
  std::vector<IoVec> MappedRegions() const;
  // Hands the block's bytes, where they lie in the mapped pool, to `copy`,
  // which must have finished reading them when it returns (a synchronous
  // device copy, for example); then checks that the block did not change
  // meanwhile, and if it did, calls `copy` again with the new bytes
  // (bounded, then a miss). Returns the block's length. A block on NVMe is
  // fetched into memory first. kNotFound on a miss; `copy`'s own error as
  // it is; kFailedPrecondition on the remote path.
  using InPlaceCopy = std::function<Status(std::span<const std::byte>)>;
  Result<size_t> ReadInPlace(const BlockKey& key, const InPlaceCopy& copy);

  // True when the pool holds `key` in any tier (NVMe included). Local only
  // (remote: one EXISTS request; false when it fails). Cluster pools: a key
  // missing here is fetched from its owner (one FETCH), true when it came.
  bool Contains(const BlockKey& key) const;

  // How many leading keys of `keys` (a chain) the pool holds, in any tier.
  // Probes the shared index locally, many keys ahead at once. When some of
  // the matched blocks are on NVMe, it also tells the agent (one LOOKUP
  // request with those keys, answered before this returns) so that it
  // starts bringing them into memory for the gets that follow; if that
  // request fails the count is still returned. Never fails. Remote: the
  // agent counts (and promotes); when a request fails, the keys matched
  // before it are the count. Cluster pools, when the local probe stops
  // short: the rest of the chain is fetched from other nodes in growing
  // windows of FETCH requests (at most 256 keys per call), then probed
  // again; the count includes what arrived.
  uint32_t LookupPrefix(std::span<const BlockKey> keys);

  // Single keys: kNotFound when the pool does not hold the key.
  // kPermissionDenied when the lease may not (Remove: any read-only lease).
  // kUnavailable: the agent is gone.
  Status Remove(const BlockKey& key);
  // A pinned block stays in memory: it is never demoted, dropped or expired.
  // Remote pools: kFailedPrecondition, pin is not available there.
  Status Pin(const BlockKey& key);
  Status Unpin(const BlockKey& key);

  // Batched forms: results.size() must equal keys.size(). Returns as
  // PutMany does: OK when every key succeeded or was not found.
  Status RemoveMany(std::span<const BlockKey> keys, std::span<StatusCode> results);
  Status PinMany(std::span<const BlockKey> keys, std::span<StatusCode> results);
  Status UnpinMany(std::span<const BlockKey> keys, std::span<StatusCode> results);

  struct Impl;  // internal

 private:
  friend class Client;
  friend Impl& PoolImplForTesting(Pool& pool);
  explicit Pool(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tokenmem
