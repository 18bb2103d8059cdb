#include "demo/runner.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#include "demo/block_content.h"
#include "demo/conversation.h"
#include "tokenmem/common/units.h"
#include "tokenmem/token_keys.h"
#include "wire/codes.h"

namespace tokenmem::demo {

namespace {

// Keeps each batch small: within gRPC's message limits on the control path,
// and a bounded buffer on either path.
constexpr uint64_t kBatchBytes = 2ull << 20;

std::string_view AsText(std::span<const std::byte> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

}  // namespace

// What one turn round did, for its progress line.
struct DemoRunner::Round {
  uint64_t prompts = 0;
  uint64_t prompt_tokens = 0;
  uint64_t reused_tokens = 0;
  uint64_t stored = 0;
  uint64_t read = 0;
  TierArray hits{};
};

TierArray TierHits(const v1::PoolStats& stats) {
  TierArray hits{};
  for (const v1::TierCounters& c : stats.tiers()) {
    size_t tier = static_cast<size_t>(c.tier());
    if (tier < hits.size()) hits[tier] += c.hits();
  }
  return hits;
}

DemoRunner::DemoRunner(v1::Control::StubInterface& stub, BlockStoreOpener open_store,
                       DemoOptions options, std::ostream& progress)
    : stub_(stub),
      open_store_(std::move(open_store)),
      options_(std::move(options)),
      progress_(progress) {}

void DemoRunner::Prepare(grpc::ClientContext* call) const {
  call->set_deadline(std::chrono::system_clock::now() + options_.timeout);
}

size_t DemoRunner::BatchBlocks() const {
  return static_cast<size_t>(
      std::max<uint64_t>(1, kBatchBytes / std::max<uint64_t>(1, report_.kv_bytes_per_block)));
}

Status DemoRunner::EnsurePool() {
  v1::PoolInfo info;
  {
    grpc::ClientContext call;
    Prepare(&call);
    v1::GetPoolRequest request;
    request.set_name(options_.pool);
    grpc::Status s = stub_.GetPool(&call, request, &info);
    if (!s.ok() && s.error_code() != grpc::StatusCode::NOT_FOUND) {
      return wire::FromRpcStatus("GetPool", s);
    }
    if (!s.ok()) {
      v1::CreatePoolRequest create;
      v1::PoolSpec* spec = create.mutable_spec();
      spec->set_name(options_.pool);
      spec->set_block_size(options_.block_size);
      spec->set_eviction(v1::EVICTION_POLICY_LRU);
      const std::pair<v1::TierKind, uint64_t> tiers[] = {{v1::TIER_KIND_DRAM, options_.dram},
                                                         {v1::TIER_KIND_CXL, options_.cxl},
                                                         {v1::TIER_KIND_NVME, options_.nvme}};
      for (const auto& [tier, bytes] : tiers) {
        if (bytes == 0) continue;
        v1::TierCapacity* c = spec->add_capacity();
        c->set_tier(tier);
        c->set_bytes(bytes);
      }
      grpc::ClientContext create_call;
      Prepare(&create_call);
      grpc::Status cs = stub_.CreatePool(&create_call, create, &info);
      if (!cs.ok()) return wire::FromRpcStatus("CreatePool", cs);
      report_.pool_created = true;
    }
  }
  report_.block_size = info.spec().block_size();
  report_.kv_bytes_per_block =
      options_.kv_bytes_per_block != 0 ? options_.kv_bytes_per_block : report_.block_size;
  if (report_.kv_bytes_per_block > report_.block_size) {
    return InvalidArgument("--kv-bytes-per-block " + FormatByteSize(report_.kv_bytes_per_block) +
                           " is larger than pool '" + options_.pool + "''s block size " +
                           FormatByteSize(report_.block_size));
  }
  return Status::Ok();
}

Status DemoRunner::EnsureLease() {
  std::string text = options_.lease;
  if (text.empty()) {
    const char* env = std::getenv(wire::kLeaseEnvVar);
    if (env != nullptr) text = env;
  }
  if (!text.empty()) {
    TM_ASSIGN_OR_RETURN(lease_, wire::ParseLease(text));
    report_.lease_id = lease_.id;
    return Status::Ok();
  }
  v1::CreateLeaseRequest request;
  request.set_quota_bytes(options_.quota);
  request.add_pools(options_.pool);
  request.set_owner("tokenmem-demo");
  grpc::ClientContext call;
  Prepare(&call);
  v1::LeaseInfo info;
  grpc::Status s = stub_.CreateLease(&call, request, &info);
  if (!s.ok()) return wire::FromRpcStatus("CreateLease", s);
  lease_ = {info.id(), info.secret()};
  report_.lease_id = info.id();
  report_.lease_created = true;
  return Status::Ok();
}

void DemoRunner::ReleaseLease() {
  if (!report_.lease_created || options_.keep_lease) return;
  v1::ReleaseLeaseRequest request;
  request.set_id(lease_.id);
  grpc::ClientContext call;
  Prepare(&call);
  v1::ReleaseLeaseReply reply;
  grpc::Status s = stub_.ReleaseLease(&call, request, &reply);
  if (!s.ok()) {
    // Not fatal: the workload is done. Say so, since the lease stays.
    progress_ << "warning: " << wire::FromRpcStatus("ReleaseLease", s).message() << "\n";
    return;
  }
  report_.lease_released = true;
  report_.released_blocks = reply.released_blocks();
}

Result<size_t> DemoRunner::ReadBack(BlockStore& store, const std::vector<BlockKey>& keys,
                                    size_t matched, Round* round) {
  const size_t batch = BatchBlocks();
  const size_t bytes = report_.kv_bytes_per_block;
  // One buffer per batch, a slice per block: a block that is longer than
  // the demo wrote does not fit, and the store says so.
  std::vector<std::byte> memory(std::min(batch, matched) * bytes);
  std::vector<std::span<std::byte>> buffers;
  std::vector<BlockOutcome> outcomes;
  for (size_t begin = 0; begin < matched; begin += batch) {
    const size_t end = std::min(matched, begin + batch);
    const std::span<const BlockKey> chunk(keys.data() + begin, end - begin);
    buffers.clear();
    for (size_t i = 0; i < chunk.size(); ++i) {
      buffers.emplace_back(memory.data() + i * bytes, bytes);
    }
    outcomes.assign(chunk.size(), BlockOutcome{});
    TM_RETURN_IF_ERROR(store.GetMany(chunk, buffers, outcomes));
    for (size_t i = 0; i < chunk.size(); ++i) {
      const BlockKey& key = chunk[i];
      const BlockOutcome& got = outcomes[i];
      if (got.code == StatusCode::kNotFound) {
        // Gone since the lookup: the prefix ends here and the rest is recomputed.
        report_.vanished_blocks += matched - (begin + i);
        return begin + i;
      }
      const bool too_long = got.code == StatusCode::kInvalidArgument && got.length > bytes;
      if (got.code != StatusCode::kOk && !too_long) {
        return CallError("reading block " + key.ToHex(), Status(got.code, got.message));
      }
      ++report_.blocks_read;
      ++round->read;
      report_.bytes_read += got.length;
      if (store.tiers_per_read()) {
        size_t tier = static_cast<size_t>(got.tier);
        if (tier >= report_.hits_by_tier.size()) tier = 0;
        ++report_.hits_by_tier[tier];
        ++round->hits[tier];
      }
      const std::string_view data = AsText(buffers[i].first(std::min(got.length, bytes)));
      if (too_long || !VerifyBlock(key, bytes, data)) {
        ++report_.verification_failures;
        progress_ << "VERIFICATION FAILED: block " << key.ToHex() << " in pool " << options_.pool
                  << " (" << got.length << " bytes, " << bytes << " expected";
        if (store.tiers_per_read()) progress_ << ", from " << wire::TierName(got.tier);
        progress_ << ")\n";
        return begin + i;  // recompute it and what follows, as an engine would
      }
    }
  }
  return matched;
}

Status DemoRunner::Store(BlockStore& store, const std::vector<BlockKey>& keys, size_t from,
                         Round* round) {
  const size_t batch = BatchBlocks();
  const size_t bytes = report_.kv_bytes_per_block;
  std::vector<std::string> contents;
  std::vector<std::span<const std::byte>> blocks;
  std::vector<BlockOutcome> outcomes;
  for (size_t begin = from; begin < keys.size(); begin += batch) {
    const size_t end = std::min(keys.size(), begin + batch);
    const std::span<const BlockKey> chunk(keys.data() + begin, end - begin);
    contents.clear();
    blocks.clear();
    for (const BlockKey& key : chunk) {
      contents.push_back(BlockContent(key, bytes));  // the "prefill" of this block
    }
    for (const std::string& c : contents) blocks.push_back(std::as_bytes(std::span(c)));
    outcomes.assign(chunk.size(), BlockOutcome{});
    TM_RETURN_IF_ERROR(store.PutMany(chunk, blocks, outcomes));
    for (const BlockOutcome& r : outcomes) {
      if (r.code != StatusCode::kOk) {
        if (report_.put_failures++ == 0) {
          report_.first_put_failure = std::string(StatusCodeName(r.code));
          if (!r.message.empty()) report_.first_put_failure += ": " + r.message;
        }
        continue;
      }
      ++report_.blocks_stored;
      ++round->stored;
      report_.bytes_stored += bytes;
    }
  }
  return Status::Ok();
}

Status DemoRunner::PlayTurn(BlockStore& store, Session& session, int turn, const BlockKey& seed,
                            Round* round) {
  std::vector<uint32_t> prompt =
      session.Prompt(UserMessage(options_.seed, session.id(), turn, options_.user_tokens));
  std::vector<BlockKey> keys = ChainKeys(prompt, options_.block_tokens, seed);
  ++round->prompts;
  round->prompt_tokens += prompt.size();

  size_t matched = 0;
  if (!keys.empty()) {
    TM_ASSIGN_OR_RETURN(matched, store.LookupPrefix(keys));
    matched = std::min(matched, keys.size());
  }
  report_.blocks_looked_up += keys.size();
  report_.blocks_matched += matched;

  TM_ASSIGN_OR_RETURN(size_t reused, ReadBack(store, keys, matched, round));
  round->reused_tokens += reused * options_.block_tokens;
  TM_RETURN_IF_ERROR(Store(store, keys, reused, round));
  session.Append(prompt, ReplyTokens(options_.seed, session.id(), turn, options_.reply_tokens));
  return Status::Ok();
}

Result<v1::PoolStats> DemoRunner::FetchStats() {
  v1::StatsRequest request;
  request.set_pool(options_.pool);
  grpc::ClientContext call;
  Prepare(&call);
  v1::StatsReply reply;
  grpc::Status s = stub_.GetStats(&call, request, &reply);
  if (!s.ok()) return wire::FromRpcStatus("GetStats", s);
  for (const auto& p : reply.pools()) {
    if (p.pool() == options_.pool) return p;
  }
  return NotFound("GetStats: the agent has no statistics for pool '" + options_.pool + "'");
}

void DemoRunner::PrintRound(uint32_t turn, const Round& round) {
  char line[320];
  std::snprintf(
      line, sizeof(line),
      "turn %u/%u: %llu prompts, %llu tokens, %llu reused (%.1f%%), %llu blocks stored, %llu "
      "read back (%sdram %llu, cxl %llu, nvme %llu)\n",
      turn + 1, options_.turns, static_cast<unsigned long long>(round.prompts),
      static_cast<unsigned long long>(round.prompt_tokens),
      static_cast<unsigned long long>(round.reused_tokens),
      round.prompt_tokens ? 100.0 * static_cast<double>(round.reused_tokens) /
                                static_cast<double>(round.prompt_tokens)
                          : 0.0,
      static_cast<unsigned long long>(round.stored), static_cast<unsigned long long>(round.read),
      report_.hits_per_read ? "" : "pool hits: ",
      static_cast<unsigned long long>(round.hits[v1::TIER_KIND_DRAM]),
      static_cast<unsigned long long>(round.hits[v1::TIER_KIND_CXL]),
      static_cast<unsigned long long>(round.hits[v1::TIER_KIND_NVME]));
  progress_ << line << std::flush;
}

Status DemoRunner::Play(BlockStore& store) {
  report_.path = std::string(store.path());
  report_.path_description = store.description();
  report_.hits_per_read = store.tiers_per_read();
  TM_ASSIGN_OR_RETURN(const BlockKey seed, NamespaceSeed(KeyNamespaceOf(options_)));

  // Without tiers per read, the pool's hit counters tell them, round by round.
  TierArray counted{};
  if (!report_.hits_per_read) {
    TM_ASSIGN_OR_RETURN(v1::PoolStats before, FetchStats());
    counted = TierHits(before);
  }

  std::vector<Session> sessions;
  const std::vector<uint32_t> system = SystemPrompt(options_.seed, options_.system_prompt_tokens);
  for (uint32_t s = 0; s < options_.sessions; ++s) {
    sessions.emplace_back(static_cast<int>(s), system);
  }
  for (uint32_t turn = 0; turn < options_.turns; ++turn) {
    Round round;
    Status failure = Status::Ok();
    for (Session& session : sessions) {
      failure = PlayTurn(store, session, static_cast<int>(turn), seed, &round);
      if (!failure.ok()) break;
    }
    report_.prompts += round.prompts;
    report_.prompt_tokens += round.prompt_tokens;
    report_.reused_tokens += round.reused_tokens;
    TM_RETURN_IF_ERROR(failure);
    if (!report_.hits_per_read) {
      TM_ASSIGN_OR_RETURN(v1::PoolStats now, FetchStats());
      const TierArray hits = TierHits(now);
      for (size_t t = 0; t < hits.size(); ++t) {
        // Counters only grow while the agent runs; never report a negative.
        round.hits[t] = hits[t] >= counted[t] ? hits[t] - counted[t] : 0;
        report_.hits_by_tier[t] += round.hits[t];
      }
      counted = hits;
      report_.pool_stats = std::move(now);
    }
    PrintRound(turn, round);
  }
  if (report_.hits_per_read) {
    TM_ASSIGN_OR_RETURN(report_.pool_stats, FetchStats());
  }
  return Status::Ok();
}

Result<DemoReport> DemoRunner::Run() {
  auto start = std::chrono::steady_clock::now();
  report_ = DemoReport();
  report_.pool = options_.pool;
  report_.block_tokens = options_.block_tokens;
  report_.sessions = options_.sessions;
  report_.turns = options_.turns;
  TM_RETURN_IF_ERROR(EnsurePool());
  TM_RETURN_IF_ERROR(EnsureLease());

  Status failure = Status::Ok();
  {
    // The store (and with it any session under the lease) closes before the
    // lease is released.
    auto store = open_store_(options_.pool, lease_);
    failure = store.ok() ? Play(**store) : store.status();
  }
  ReleaseLease();
  if (!failure.ok()) return failure;
  report_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report_;
}

}  // namespace tokenmem::demo
