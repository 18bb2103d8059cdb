// ControlBlockStore: the demo's blocks over the agent's gRPC control API
// (LookupPrefix, Get, Put, each carrying the lease). Every block crosses
// the socket inside a protobuf message, so this is the slow path, kept as
// `--path control` for agents reached over TCP and for comparison. The
// agent says which tier served each get.
// Not thread-safe: one caller at a time.
#pragma once

#include <chrono>
#include <string>

#include "demo/block_store.h"
#include "tokenmem/v1/control.grpc.pb.h"

namespace tokenmem::demo {

class ControlBlockStore final : public BlockStore {
 public:
  // `stub` must outlive the store. `timeout` bounds each call.
  ControlBlockStore(v1::Control::StubInterface& stub, std::string pool,
                    const wire::LeaseString& lease, std::chrono::milliseconds timeout);

  std::string_view path() const override { return "control"; }
  std::string description() const override;
  bool tiers_per_read() const override { return true; }

  // Errors: the failed gRPC call as "<Call>: <CODE>: <message>"; kInternal
  // when the agent answers with the wrong number of results. A block longer
  // than its buffer gets kInvalidArgument with its length.
  Result<size_t> LookupPrefix(std::span<const BlockKey> keys) override;
  Status GetMany(std::span<const BlockKey> keys, std::span<const std::span<std::byte>> buffers,
                 std::span<BlockOutcome> outcomes) override;
  Status PutMany(std::span<const BlockKey> keys, std::span<const std::span<const std::byte>> blocks,
                 std::span<BlockOutcome> outcomes) override;

 private:
  void Prepare(grpc::ClientContext* call) const;

  v1::Control::StubInterface& stub_;
  std::string pool_;
  v1::LeaseCredentials lease_;
  std::chrono::milliseconds timeout_;
};

// Opens ControlBlockStores on `stub` (which must outlive them).
BlockStoreOpener ControlStoreOpener(v1::Control::StubInterface& stub,
                                    std::chrono::milliseconds timeout);

}  // namespace tokenmem::demo
