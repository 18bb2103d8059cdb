// The remote data path of tokenmem::Pool (remote_pool.h).
#include "remote/remote_pool.h"

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#include "local/pool_impl.h"
#include "tokenmem/transport/frame.h"
#include "tokenmem/transport/remote_connection.h"

namespace tokenmem::client_internal {

static_assert(kMaxItemsPerRequest <= transport::kMaxItems);

namespace {

using transport::Op;
using transport::Piece;
using transport::RemoteConnection;
using transport::Reply;
using transport::Request;

constexpr uint32_t kMaxU32 = std::numeric_limits<uint32_t>::max();

void AppendPieces(std::span<const IoVec> pieces, std::vector<Piece>* out) {
  for (const IoVec& p : pieces) {
    if (p.len > 0) out->push_back(Piece{p.data, p.len});
  }
}

// A reply must answer each item of its request, once.
Status CheckItems(const Reply& reply, size_t expected, std::string_view what) {
  if (reply.items.size() != expected) {
    return Internal("malformed " + std::string(what) +
                    " reply from the agent: " + std::to_string(reply.items.size()) +
                    " results for " + std::to_string(expected) + " items");
  }
  return Status::Ok();
}

// Codes outside the known range are the agent's fault.
StatusCode Known(StatusCode code) {
  const int raw = static_cast<int>(code);
  return raw >= 0 && raw <= static_cast<int>(StatusCode::kInternal) ? code : StatusCode::kInternal;
}

}  // namespace

Result<std::shared_ptr<RemoteConnection>> ConnectRemote(const ClientOptions& options) {
  if (options.lease_id.empty() || options.lease_id.size() > transport::kMaxCredentialBytes ||
      options.lease_secret.empty() ||
      options.lease_secret.size() > transport::kMaxCredentialBytes) {
    return InvalidArgument("the lease id and secret must be 1 to 63 bytes each");
  }
  transport::ConnectOptions connect;
  connect.address = options.agent_address;
  connect.lease_id = options.lease_id;
  connect.lease_secret = options.lease_secret;
  connect.timeout = options.timeout;
  return RemoteConnection::Connect(connect);
}

bool RemoteConnected(const RemoteConnection& connection) { return connection.connected(); }

RemotePool::RemotePool(std::shared_ptr<RemoteConnection> connection, std::string name,
                       uint32_t handle, uint64_t block_size, bool read_only)
    : connection_(std::move(connection)),
      name_(std::move(name)),
      handle_(handle),
      block_size_(block_size),
      read_only_(read_only) {}

Result<std::unique_ptr<RemotePool>> RemotePool::Attach(std::shared_ptr<RemoteConnection> connection,
                                                       const std::string& name) {
  Request request;
  request.op = Op::kAttach;
  request.pool_name = name;
  auto reply = connection->Call(std::move(request));
  if (!reply.ok()) return reply.status().WithContext("ATTACH " + name);
  if (reply->pool == 0 || reply->block_size == 0 || reply->block_size > kMaxU32) {
    return Internal("malformed ATTACH reply from the agent");
  }
  return std::unique_ptr<RemotePool>(new RemotePool(std::move(connection), name, reply->pool,
                                                    reply->block_size, reply->read_only));
}

Status RemotePool::ReadOnlyRefusal() const {
  return PermissionDenied("pool '" + name_ + "' is attached with a read-only lease");
}

Status RemotePool::GetMany(std::span<const BlockIo> items, std::span<IoResult> results) {
  // The agent builds a reply at block_size() per item: keep that bounded.
  const size_t per_request = static_cast<size_t>(
      std::clamp<uint64_t>(kMaxRequestBytes / block_size_, 1, kMaxItemsPerRequest));
  Status first;
  std::vector<Piece> pieces;
  std::vector<std::span<const Piece>> destinations;
  for (size_t begin = 0; begin < items.size(); begin += per_request) {
    const size_t n = std::min(per_request, items.size() - begin);
    Request request;
    request.op = Op::kGet;
    request.pool = handle_;
    request.gets.resize(n);
    size_t piece_count = 0;
    for (size_t j = 0; j < n; ++j) piece_count += items[begin + j].pieces.size();
    pieces.clear();
    pieces.reserve(piece_count);  // the spans below point into it
    destinations.clear();
    for (size_t j = 0; j < n; ++j) {
      const BlockIo& item = items[begin + j];
      const size_t from = pieces.size();
      AppendPieces(item.pieces, &pieces);
      destinations.emplace_back(pieces.data() + from, pieces.size() - from);
      request.gets[j] = {
          item.key, static_cast<uint32_t>(std::min<size_t>(PiecesBytes(item.pieces), kMaxU32))};
    }
    auto reply = connection_->Call(std::move(request), {}, destinations);
    Status batch = reply.ok() ? CheckItems(*reply, n, "GET") : reply.status().WithContext("GET");
    for (size_t j = 0; j < n; ++j) {
      IoResult& result = results[begin + j];
      if (!batch.ok()) {
        result = {batch.code(), 0};
        continue;
      }
      const transport::ItemResult& item = reply->items[j];
      const StatusCode code = Known(item.code);
      const bool has_length = code == StatusCode::kOk || code == StatusCode::kInvalidArgument;
      result = {code, has_length ? item.length : 0};
    }
    if (!first.ok()) continue;
    if (!batch.ok()) {
      first = batch;
      continue;
    }
    for (size_t j = 0; j < n && first.ok(); ++j) {
      const BlockIo& item = items[begin + j];
      const IoResult& result = results[begin + j];
      if (result.code == StatusCode::kInvalidArgument) {
        first = TooSmall(item.key, PiecesBytes(item.pieces), result.length);
      } else {
        NoteFailure(&first, result.code, item.key);
      }
    }
  }
  return first;
}

Status RemotePool::PutMany(std::span<const BlockIo> items, std::span<IoResult> results) {
  Status first;
  std::vector<size_t> todo;
  todo.reserve(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    const size_t bytes = PiecesBytes(items[i].pieces);
    results[i] = {StatusCode::kOk, bytes};
    if (bytes > block_size_) {
      results[i].code = StatusCode::kInvalidArgument;
      if (first.ok()) {
        first = ItemError(StatusCode::kInvalidArgument, items[i].key,
                          std::to_string(bytes) + " bytes exceed the pool's block size " +
                              std::to_string(block_size_));
      }
      continue;
    }
    todo.push_back(i);
  }

  std::vector<Piece> payload;
  for (size_t begin = 0; begin < todo.size();) {
    // As many items as fit the limits, and always at least one.
    size_t n = 0;
    uint64_t bytes = 0;
    while (begin + n < todo.size() && n < kMaxItemsPerRequest) {
      const size_t length = results[todo[begin + n]].length;
      if (n > 0 && bytes + length > kMaxRequestBytes) break;
      bytes += length;
      ++n;
    }
    const std::span<const size_t> batch(todo.data() + begin, n);
    begin += n;

    Request request;
    request.op = Op::kPut;
    request.pool = handle_;
    request.puts.resize(n);
    payload.clear();
    for (size_t j = 0; j < n; ++j) {
      const BlockIo& item = items[batch[j]];
      request.puts[j] = {item.key, static_cast<uint32_t>(results[batch[j]].length)};
      AppendPieces(item.pieces, &payload);
    }
    auto reply = connection_->Call(std::move(request), payload);
    Status whole = reply.ok() ? CheckItems(*reply, n, "PUT") : reply.status().WithContext("PUT");
    for (size_t j = 0; j < n; ++j) {
      IoResult& result = results[batch[j]];
      result.code = whole.ok() ? Known(reply->items[j].code) : whole.code();
      if (whole.ok()) NoteFailure(&first, result.code, items[batch[j]].key);
    }
    if (!whole.ok() && first.ok()) first = whole;
  }
  for (IoResult& result : results) {
    if (result.code != StatusCode::kOk) result.length = 0;
  }
  return first;
}

bool RemotePool::Contains(const BlockKey& key) {
  Request request;
  request.op = Op::kExists;
  request.pool = handle_;
  request.keys.push_back(key);
  auto reply = connection_->Call(std::move(request));
  return reply.ok() && reply->items.size() == 1 && reply->items[0].code == StatusCode::kOk;
}

uint32_t RemotePool::LookupPrefix(std::span<const BlockKey> keys) {
  const size_t total = std::min<size_t>(keys.size(), kMaxU32);
  uint32_t matched = 0;
  for (size_t begin = 0; begin < total; begin += kMaxItemsPerRequest) {
    const size_t n = std::min<size_t>(kMaxItemsPerRequest, total - begin);
    Request request;
    request.op = Op::kLookupPrefix;
    request.pool = handle_;
    request.keys.assign(keys.begin() + begin, keys.begin() + begin + n);
    auto reply = connection_->Call(std::move(request));
    if (!reply.ok()) break;
    const uint32_t m = std::min<uint32_t>(reply->matched, static_cast<uint32_t>(n));
    matched += m;
    if (m < n) break;  // the chain is broken in this part
  }
  return matched;
}

Status RemotePool::RemoveMany(std::span<const BlockKey> keys, std::span<StatusCode> results) {
  if (keys.size() != results.size()) {
    return InvalidArgument(std::to_string(keys.size()) + " keys but " +
                           std::to_string(results.size()) + " results");
  }
  if (read_only_) {
    std::fill(results.begin(), results.end(), StatusCode::kPermissionDenied);
    return ReadOnlyRefusal();
  }
  Status first;
  for (size_t begin = 0; begin < keys.size(); begin += kMaxItemsPerRequest) {
    const size_t n = std::min<size_t>(kMaxItemsPerRequest, keys.size() - begin);
    Request request;
    request.op = Op::kDelete;
    request.pool = handle_;
    request.keys.assign(keys.begin() + begin, keys.begin() + begin + n);
    auto reply = connection_->Call(std::move(request));
    Status whole =
        reply.ok() ? CheckItems(*reply, n, "DELETE") : reply.status().WithContext("DELETE");
    for (size_t j = 0; j < n; ++j) {
      results[begin + j] = whole.ok() ? Known(reply->items[j].code) : whole.code();
      if (whole.ok()) NoteFailure(&first, results[begin + j], keys[begin + j]);
    }
    if (!whole.ok() && first.ok()) first = whole;
  }
  return first;
}

Status RemotePool::Remove(const BlockKey& key) {
  StatusCode code = StatusCode::kOk;
  Status s = RemoveMany(std::span<const BlockKey>(&key, 1), std::span<StatusCode>(&code, 1));
  if (!s.ok()) return s;
  if (code == StatusCode::kNotFound) return NotFound("block " + key.ToHex() + " not found");
  return Status::Ok();
}

Status RemotePool::PinRefused() {
  return FailedPrecondition("pin is not available on the remote path");
}

Status RemotePool::PinManyRefused(std::span<const BlockKey> keys, std::span<StatusCode> results) {
  if (keys.size() != results.size()) {
    return InvalidArgument(std::to_string(keys.size()) + " keys but " +
                           std::to_string(results.size()) + " results");
  }
  std::fill(results.begin(), results.end(), StatusCode::kFailedPrecondition);
  return PinRefused();
}

}  // namespace tokenmem::client_internal
