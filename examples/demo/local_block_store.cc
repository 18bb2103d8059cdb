#include "demo/local_block_store.h"

namespace tokenmem::demo {

namespace {

// Codes that end the session or say the call itself was wrong: the run
// cannot go on, so the call fails instead of the block.
bool EndsTheCall(StatusCode code) {
  return code == StatusCode::kUnavailable || code == StatusCode::kInternal;
}

}  // namespace

Result<std::unique_ptr<LocalBlockStore>> LocalBlockStore::Open(const std::string& data_socket,
                                                               const std::string& pool,
                                                               const wire::LeaseString& lease,
                                                               std::chrono::milliseconds timeout) {
  ClientOptions options;
  options.socket_path = data_socket;
  options.lease_id = lease.id;
  options.lease_secret = lease.secret;
  options.timeout = timeout;
  auto client = Client::Connect(options);
  if (!client.ok()) return CallError("Connect", client.status());
  auto attached = (*client)->Attach(pool);
  if (!attached.ok()) return CallError("Attach", attached.status());
  return std::unique_ptr<LocalBlockStore>(
      new LocalBlockStore(data_socket, std::move(client).value(), std::move(attached).value()));
}

LocalBlockStore::LocalBlockStore(std::string data_socket, std::unique_ptr<Client> client,
                                 std::shared_ptr<Pool> pool)
    : data_socket_(std::move(data_socket)), client_(std::move(client)), pool_(std::move(pool)) {}

std::string LocalBlockStore::description() const {
  return "SDK, shared memory via " + data_socket_;
}

Result<size_t> LocalBlockStore::LookupPrefix(std::span<const BlockKey> keys) {
  return static_cast<size_t>(pool_->LookupPrefix(keys));
}

Status LocalBlockStore::Collect(std::string_view call, const Status& status,
                                std::span<BlockOutcome> outcomes) {
  bool alone = true;  // every failure belongs to its own block
  bool first = true;
  for (size_t i = 0; i < outcomes.size(); ++i) {
    const IoResult& r = results_[i];
    outcomes[i] = BlockOutcome{.code = r.code, .length = r.length};
    if (r.code == StatusCode::kOk || r.code == StatusCode::kNotFound) continue;
    if (EndsTheCall(r.code)) alone = false;
    if (first) outcomes[i].message = status.message();
    first = false;
  }
  // A failed call with no failed item was refused before any item ran.
  if (!status.ok() && (!alone || first)) return CallError(call, status);
  return Status::Ok();
}

Status LocalBlockStore::GetMany(std::span<const BlockKey> keys,
                                std::span<const std::span<std::byte>> buffers,
                                std::span<BlockOutcome> outcomes) {
  if (buffers.size() != keys.size() || outcomes.size() != keys.size()) {
    return InvalidArgument("GetMany: keys, buffers and outcomes differ in number");
  }
  // One piece per block, each a slice of the caller's memory: the SDK copies
  // every block straight from the pool's segment into it.
  pieces_.resize(keys.size());
  items_.resize(keys.size());
  results_.assign(keys.size(), IoResult{});
  for (size_t i = 0; i < keys.size(); ++i) {
    pieces_[i] = IoVec{buffers[i].data(), buffers[i].size()};
    items_[i] = BlockIo{keys[i], std::span<const IoVec>(&pieces_[i], 1)};
  }
  Status s = pool_->GetMany(items_, results_);
  return Collect("GetMany", s, outcomes);
}

Status LocalBlockStore::PutMany(std::span<const BlockKey> keys,
                                std::span<const std::span<const std::byte>> blocks,
                                std::span<BlockOutcome> outcomes) {
  if (blocks.size() != keys.size() || outcomes.size() != keys.size()) {
    return InvalidArgument("PutMany: keys, blocks and outcomes differ in number");
  }
  pieces_.resize(keys.size());
  items_.resize(keys.size());
  results_.assign(keys.size(), IoResult{});
  for (size_t i = 0; i < keys.size(); ++i) {
    // IoVec is shared by gets and puts; a put only reads through it.
    pieces_[i] = IoVec{const_cast<std::byte*>(blocks[i].data()), blocks[i].size()};
    items_[i] = BlockIo{keys[i], std::span<const IoVec>(&pieces_[i], 1)};
  }
  Status s = pool_->PutMany(items_, results_);
  return Collect("PutMany", s, outcomes);
}

BlockStoreOpener LocalStoreOpener(std::string data_socket, std::chrono::milliseconds timeout) {
  return [data_socket = std::move(data_socket), timeout](
             const std::string& pool,
             const wire::LeaseString& lease) -> Result<std::unique_ptr<BlockStore>> {
    auto store = LocalBlockStore::Open(data_socket, pool, lease, timeout);
    if (!store.ok()) return store.status();
    return std::unique_ptr<BlockStore>(std::move(store).value());
  };
}

}  // namespace tokenmem::demo
