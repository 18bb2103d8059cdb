#include "demo/control_block_store.h"

#include <algorithm>
#include <cstring>

#include "wire/codes.h"
#include "wire/key_bytes.h"

namespace tokenmem::demo {

ControlBlockStore::ControlBlockStore(v1::Control::StubInterface& stub, std::string pool,
                                     const wire::LeaseString& lease,
                                     std::chrono::milliseconds timeout)
    : stub_(stub), pool_(std::move(pool)), lease_(wire::ToCredentials(lease)), timeout_(timeout) {}

std::string ControlBlockStore::description() const {
  return "gRPC LookupPrefix/Get/Put on the control API";
}

void ControlBlockStore::Prepare(grpc::ClientContext* call) const {
  call->set_deadline(std::chrono::system_clock::now() + timeout_);
}

Result<size_t> ControlBlockStore::LookupPrefix(std::span<const BlockKey> keys) {
  v1::LookupPrefixRequest request;
  *request.mutable_lease() = lease_;
  request.set_pool(pool_);
  for (const BlockKey& k : keys) request.add_keys(wire::KeyToBytes(k));
  grpc::ClientContext call;
  Prepare(&call);
  v1::LookupPrefixReply reply;
  grpc::Status s = stub_.LookupPrefix(&call, request, &reply);
  if (!s.ok()) return wire::FromRpcStatus("LookupPrefix", s);
  return std::min<size_t>(reply.matched(), keys.size());
}

Status ControlBlockStore::GetMany(std::span<const BlockKey> keys,
                                  std::span<const std::span<std::byte>> buffers,
                                  std::span<BlockOutcome> outcomes) {
  if (buffers.size() != keys.size() || outcomes.size() != keys.size()) {
    return InvalidArgument("GetMany: keys, buffers and outcomes differ in number");
  }
  v1::GetRequest request;
  *request.mutable_lease() = lease_;
  request.set_pool(pool_);
  for (const BlockKey& k : keys) request.add_keys(wire::KeyToBytes(k));
  grpc::ClientContext call;
  Prepare(&call);
  v1::GetReply reply;
  grpc::Status s = stub_.Get(&call, request, &reply);
  if (!s.ok()) return wire::FromRpcStatus("Get", s);
  if (reply.blocks_size() != static_cast<int>(keys.size())) {
    return Internal("Get: the agent answered " + std::to_string(reply.blocks_size()) +
                    " blocks for " + std::to_string(keys.size()) + " keys");
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    const v1::BlockRead& block = reply.blocks(static_cast<int>(i));
    BlockOutcome& out = outcomes[i];
    out = BlockOutcome();
    if (!block.found()) {
      out.code = StatusCode::kNotFound;
      continue;
    }
    out.tier = block.tier();
    out.length = block.data().size();
    if (block.data().size() > buffers[i].size()) {
      out.code = StatusCode::kInvalidArgument;
      out.message = "the block is larger than its buffer";
      continue;
    }
    std::memcpy(buffers[i].data(), block.data().data(), block.data().size());
  }
  return Status::Ok();
}

Status ControlBlockStore::PutMany(std::span<const BlockKey> keys,
                                  std::span<const std::span<const std::byte>> blocks,
                                  std::span<BlockOutcome> outcomes) {
  if (blocks.size() != keys.size() || outcomes.size() != keys.size()) {
    return InvalidArgument("PutMany: keys, blocks and outcomes differ in number");
  }
  v1::PutRequest request;
  *request.mutable_lease() = lease_;
  request.set_pool(pool_);
  for (size_t i = 0; i < keys.size(); ++i) {
    v1::BlockWrite* w = request.add_blocks();
    w->set_key(wire::KeyToBytes(keys[i]));
    w->set_data(reinterpret_cast<const char*>(blocks[i].data()), blocks[i].size());
  }
  grpc::ClientContext call;
  Prepare(&call);
  v1::PutReply reply;
  grpc::Status s = stub_.Put(&call, request, &reply);
  if (!s.ok()) return wire::FromRpcStatus("Put", s);
  if (reply.results_size() != static_cast<int>(keys.size())) {
    return Internal("Put: the agent answered " + std::to_string(reply.results_size()) +
                    " results for " + std::to_string(keys.size()) + " blocks");
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    const v1::PutResult& r = reply.results(static_cast<int>(i));
    BlockOutcome& out = outcomes[i];
    out = BlockOutcome();
    out.tier = r.tier();
    if (r.code() == 0) {
      out.length = blocks[i].size();
      continue;
    }
    if (r.code() > 0 && r.code() <= static_cast<int32_t>(StatusCode::kInternal)) {
      out.code = static_cast<StatusCode>(r.code());
      out.message = r.message();
    } else {  // a code this build does not know still counts as a failure
      out.code = StatusCode::kInternal;
      out.message = wire::StoreCodeName(r.code()) + ": " + r.message();
    }
  }
  return Status::Ok();
}

BlockStoreOpener ControlStoreOpener(v1::Control::StubInterface& stub,
                                    std::chrono::milliseconds timeout) {
  return [&stub, timeout](const std::string& pool,
                          const wire::LeaseString& lease) -> Result<std::unique_ptr<BlockStore>> {
    return std::unique_ptr<BlockStore>(new ControlBlockStore(stub, pool, lease, timeout));
  };
}

}  // namespace tokenmem::demo
