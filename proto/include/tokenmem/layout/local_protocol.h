// The local data protocol between the SDK and the agent on the same node.
// Format version 1; values are frozen.
//
// Transport: a Unix SOCK_SEQPACKET socket (the agent's data socket, beside
// its control socket: /run/tokenmem/agent.sock -> /run/tokenmem/agent-data.sock;
// TOKENMEM_AGENT_SOCKET names it in a container), so each
// send is one message. A message is a MessageHeader followed by `length`
// payload bytes; file descriptors travel beside it as SCM_RIGHTS. Every
// request gets exactly one reply with the same request_id and type | kReply.
// Integers are in the machine's byte order (both ends are on one node).
// Every reply payload starts with an int32 code (a tokenmem::StatusCode,
// 0 = OK). When it is not 0 the payload is a StatusReply and its message,
// whatever the type; otherwise it is the type's reply struct below.
//
// Session: HELLO (lease id and secret) must come first; anything else before
// it, a malformed message or an unknown type gets an error reply and the
// connection is closed. Slots reserved on a connection and not committed
// are freed (and refunded) when it closes, however the client died.
//
// Reading a block never involves the agent: the client finds it in the
// pool's shared index (shm_index.h) and copies it from the mapped segment.
// The agent is asked only to write (RESERVE, COMMIT, ABORT), to bring NVMe
// blocks into memory (FETCH; in a pool with scope: cluster also blocks that
// another node holds), to remove or pin blocks, and for segments a client
// has not mapped yet (SEGMENTS).
#pragma once

#include <atomic>
#include <cstdint>

namespace tokenmem::layout {

inline constexpr uint32_t kProtocolMagic = 0x4C4D4B54;  // "TKML"
inline constexpr uint16_t kProtocolVersion = 1;
inline constexpr uint32_t kMaxMessageBytes = 192 * 1024;
inline constexpr uint32_t kMaxBatch = 2048;  // items per request
inline constexpr uint32_t kMaxFdsPerMessage = 250;
inline constexpr uint16_t kReply = 0x8000;

enum MessageType : uint16_t {
  kHello = 1,     // HelloRequest -> StatusReply + fd [lease state page] (see LeaseStatePage)
  kAttach = 2,    // AttachRequest -> AttachReply + fds [index, client area, segments...]
  kSegments = 3,  // SegmentsRequest -> SegmentsReply + fds
  kReserve = 4,   // ReserveRequest -> ReserveReply + SlotGrant[count]
  kCommit = 5,    // CommitRequest + CommitItem[count] -> BatchReply + int32 codes[count]
  kAbort = 6,     // AbortRequest + SlotRef[count] -> BatchReply
  kFetch = 7,     // KeysRequest + Key[count] -> BatchReply + int32 codes[count]; brings
                  // NVMe blocks into memory and, in cluster pools, missing ones from
                  // their owners (OK: the block is in memory now)
  kRemove = 8,    // KeysRequest + Key[count] -> BatchReply + int32 codes[count]
  kPin = 9,       // KeysRequest + Key[count] -> BatchReply + int32 codes[count]
  kUnpin = 10,    // KeysRequest + Key[count] -> BatchReply + int32 codes[count]
  kLookup = 11,   // KeysRequest + Key[count] -> BatchReply (value = matched); queues NVMe
                  // promotions and counts the lookup (do not count it in the ClientArea too)
};

struct MessageHeader {
  uint32_t magic;
  uint16_t version;
  uint16_t type;
  uint32_t request_id;
  uint32_t length;  // payload bytes after this header
};

// Codes are tokenmem::StatusCode values (status.h); 0 is OK.
struct StatusReply {
  int32_t code;
  uint32_t message_length;  // followed by the message bytes (no NUL)
};

struct HelloRequest {
  char lease_id[64];  // NUL-padded
  char secret[64];    // NUL-padded
};

// The lease's state, one read-only 4 KiB memfd shared by every connection of
// the lease (HELLO's reply carries it; an older agent sends none). Written
// only by the agent (sealed F_SEAL_FUTURE_WRITE). Reads are served from
// shared memory without asking the agent, so the SDK checks `state` before
// each read: once the lease is released every call fails with
// PERMISSION_DENIED, and the agent refuses and closes the connection at its
// next request.
enum LeaseState : uint32_t {
  kLeaseActive = 0,
  kLeaseReleased = 1,
};
struct LeaseStatePage {
  std::atomic<uint32_t> state;  // LeaseState; release store by the agent
};
inline constexpr uint64_t kLeaseStatePageBytes = 4096;

struct AttachRequest {
  char pool[64];  // NUL-padded
};

// AttachReply::flags bits. Unknown bits are ignored.
inline constexpr uint32_t kAttachReadOnly = 1;  // the lease may not write
// Writes go through a staging segment of this connection's own (the pool's
// segments are sealed against every writer but the agent): a StagingInfo
// follows the SegmentInfo array and its fd comes last, after the segments'.
// Grants then name staging slots (SlotGrant::tier == kStagingTier); COMMIT
// makes the agent copy each slot into the pool and check the checksum on its
// own copy, so nothing the client does to the staging slot afterwards (or
// meanwhile) changes the committed block.
inline constexpr uint32_t kAttachStaging = 4;
inline constexpr uint32_t kStagingTier = 3;
// The pool has scope: cluster. A key the shared index lacks may be held by
// another node's agent: FETCH asks the key's owner for it (a hit is stored
// on this node and the key answers OK; an agent not in a cluster answers
// NOT_FOUND), so clients send FETCH for misses. Without this bit a miss is
// final.
inline constexpr uint32_t kAttachClusterScope = 2;

// Reply to ATTACH. fds: [0] index memfd (read-only), [1] client area memfd
// (read-write), then `segment_count` SegmentInfo entries' fds in order
// (read-only, sealed), then with kAttachStaging the staging memfd.
struct AttachReply {
  int32_t code;
  uint32_t pool_id;  // names the pool in later requests on this connection
  uint64_t index_bytes;
  uint64_t client_area_bytes;
  uint32_t flags;          // kAttachReadOnly | kAttachClusterScope
  uint32_t segment_count;  // SegmentInfo[segment_count] follow
};

struct SegmentInfo {
  uint32_t tier;     // 0 DRAM, 1 CXL
  uint32_t segment;  // segment number within the tier
  uint64_t bytes;
};

// After the SegmentInfo array when kAttachStaging is set.
struct StagingInfo {
  uint64_t bytes;       // the staging memfd's size: slots * slot_bytes
  uint32_t slots;       // staging slot s lies at offset s * slot_bytes
  uint32_t slot_bytes;  // the pool's block size rounded up to a page
};

struct SegmentsRequest {
  uint32_t pool_id;
  uint32_t tier;
  uint32_t first_segment;  // the agent sends this and every later segment of the tier
  uint32_t reserved;
};

struct SegmentsReply {
  int32_t code;
  uint32_t segment_count;  // SegmentInfo[segment_count] follow, one fd each
};

struct ReserveRequest {
  uint32_t pool_id;
  uint32_t count;  // <= kMaxBatch
};

struct SlotGrant {
  uint32_t tier;
  uint32_t slot;
  uint64_t reservation;  // names the grant in COMMIT / ABORT
};

struct ReserveReply {
  int32_t code;    // non-zero: nothing was reserved
  uint32_t count;  // SlotGrant[count] follow
};

struct CommitItem {
  uint64_t reservation;
  uint64_t key_hi;
  uint64_t key_lo;
  uint32_t length;
  uint32_t checksum;  // CRC32C of the `length` bytes written into the slot
};

struct CommitRequest {
  uint32_t pool_id;
  uint32_t count;  // CommitItem[count] follow
};

struct AbortRequest {
  uint32_t pool_id;
  uint32_t count;  // uint64_t reservation[count] follow
};

struct Key {
  uint64_t hi;
  uint64_t lo;
};

struct KeysRequest {
  uint32_t pool_id;
  uint32_t count;  // Key[count] follow
};

struct BatchReply {
  int32_t code;    // non-zero: the whole request failed; a message follows
  uint32_t count;  // per-item int32 codes follow for COMMIT, FETCH, REMOVE, PIN, UNPIN
  uint64_t value;  // LOOKUP: matched keys
};

}  // namespace tokenmem::layout
