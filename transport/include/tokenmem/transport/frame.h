// The remote data protocol's frames: what a client (an SDK in another pod,
// or a peer agent) and an agent say to each other over UCX.
//
// Every message is one UCX active message: a small header (encoded here)
// and, for PUT requests and GET replies, a payload that is the blocks'
// bytes concatenated in item order. UCX sends large payloads by rendezvous,
// so the receiver chooses where they land (straight into the caller's
// buffers on the client side).
//
// Requests go on AM id kRequestAm, replies on kReplyAm. A reply carries the
// request's id, so many requests may be in flight on one connection and
// be answered in any order.
//
// All integers are little-endian. Decoding never trusts a length: every
// field is bounds-checked, counts and sizes are limited (kMax*), and a
// frame with bytes left over is malformed. A malformed frame is an error
// for its connection only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenmem/common/block_key.h"
#include "tokenmem/common/status.h"

namespace tokenmem::transport {

inline constexpr uint32_t kFrameMagic = 0x31524D54;  // "TMR1"
inline constexpr uint16_t kFrameVersion = 1;
inline constexpr unsigned kRequestAm = 17;
inline constexpr unsigned kReplyAm = 18;

// A frame travels as a UCX active-message header, which UCX caps (about
// 8 KiB over TCP and shared memory): 256 items keep every frame under it.
inline constexpr uint32_t kMaxItems = 256;         // keys in one request
inline constexpr size_t kMaxNameBytes = 253;       // pool and node names
inline constexpr size_t kMaxCredentialBytes = 63;  // lease id and secret
inline constexpr size_t kMaxMessageBytes = 1024;   // error text in a reply
inline constexpr size_t kMaxHeaderBytes = 8 * 1024;
// The largest frame the encoders produce (a GET or PUT of kMaxItems).
inline constexpr size_t kLargestFrameBytes = 24 + 20 * kMaxItems;

enum class Op : uint16_t {
  kHello = 1,   // present the lease; first on every connection
  kAttach = 2,  // open a pool by name; gives a handle
  kPing = 3,    // liveness; answers the agent's node name
  kGet = 4,
  kPut = 5,
  kExists = 6,
  kLookupPrefix = 7,
  kDelete = 8,
};
std::string_view OpName(Op op);

struct GetItem {
  BlockKey key;
  uint32_t capacity = 0;  // bytes the client can take for this block
};
struct PutItem {
  BlockKey key;
  uint32_t length = 0;  // bytes of this block in the payload
};

struct Request {
  Op op = Op::kPing;
  uint64_t id = 0;
  uint32_t pool = 0;  // the handle from kAttach; unused by Hello/Attach/Ping
  // kHello
  std::string lease_id;
  std::string lease_secret;
  // kAttach
  std::string pool_name;
  // kGet
  std::vector<GetItem> gets;
  // kPut
  std::vector<PutItem> puts;
  // kExists, kLookupPrefix, kDelete
  std::vector<BlockKey> keys;

  // Bytes of payload this request carries (the sum of put lengths).
  uint64_t PayloadBytes() const;
};

struct ItemResult {
  StatusCode code = StatusCode::kOk;
  uint32_t length = 0;  // kGet: the block's length (its bytes are in the payload when kOk)
};

struct Reply {
  Op op = Op::kPing;
  uint64_t id = 0;
  StatusCode status = StatusCode::kOk;  // the whole request; items may still fail
  std::string message;                  // when status is not OK
  // kHello, kPing: the agent's node name
  std::string node;
  // kAttach
  uint32_t pool = 0;
  uint64_t block_size = 0;
  bool read_only = false;
  // kGet, kPut, kExists, kDelete: one per item, in order
  std::vector<ItemResult> items;
  // kLookupPrefix
  uint32_t matched = 0;

  // Bytes of payload this reply carries (found get blocks' lengths).
  uint64_t PayloadBytes() const;
};

// Encoders check the limits too, so nothing produced here fails to decode.
Result<std::vector<std::byte>> EncodeRequest(const Request& request);
Result<std::vector<std::byte>> EncodeReply(const Reply& reply);

// kInvalidArgument with a message naming what is wrong.
Result<Request> DecodeRequest(std::span<const std::byte> header);
Result<Reply> DecodeReply(std::span<const std::byte> header);

}  // namespace tokenmem::transport
