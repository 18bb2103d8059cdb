#include "demo/runner.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "demo/block_content.h"
#include "demo/conversation.h"
#include "demo/token_hash.h"
#include "tokenmem/common/units.h"
#include "wire/codes.h"
#include "wire/key_bytes.h"
#include "wire/lease.h"

namespace tokenmem::demo {

namespace {

// Keeps each Put or Get message small next to gRPC's limits.
constexpr uint64_t kBatchBytes = 2ull << 20;

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

DemoRunner::DemoRunner(v1::Control::StubInterface& stub, DemoOptions options,
                       std::ostream& progress)
    : stub_(stub), options_(std::move(options)), progress_(progress) {}

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
    auto lease = wire::ParseLease(text);
    if (!lease.ok()) return lease.status();
    lease_ = wire::ToCredentials(*lease);
    report_.lease_id = lease->id;
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
  lease_.set_id(info.id());
  lease_.set_secret(info.secret());
  report_.lease_id = info.id();
  report_.lease_created = true;
  return Status::Ok();
}

void DemoRunner::ReleaseLease() {
  if (!report_.lease_created || options_.keep_lease) return;
  v1::ReleaseLeaseRequest request;
  request.set_id(lease_.id());
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

Result<size_t> DemoRunner::ReadBack(const std::vector<BlockKey>& keys, size_t matched,
                                    Round* round) {
  const size_t batch = BatchBlocks();
  const size_t bytes = report_.kv_bytes_per_block;
  for (size_t begin = 0; begin < matched; begin += batch) {
    size_t end = std::min(matched, begin + batch);
    v1::GetRequest request;
    *request.mutable_lease() = lease_;
    request.set_pool(options_.pool);
    for (size_t i = begin; i < end; ++i) request.add_keys(wire::KeyToBytes(keys[i]));
    grpc::ClientContext call;
    Prepare(&call);
    v1::GetReply reply;
    grpc::Status s = stub_.Get(&call, request, &reply);
    if (!s.ok()) return wire::FromRpcStatus("Get", s);
    if (reply.blocks_size() != static_cast<int>(end - begin)) {
      return Internal("Get answered " + std::to_string(reply.blocks_size()) + " blocks for " +
                      std::to_string(end - begin) + " keys");
    }
    for (size_t i = begin; i < end; ++i) {
      const v1::BlockRead& block = reply.blocks(static_cast<int>(i - begin));
      if (!block.found()) {
        // Gone since the lookup: the prefix ends here and the rest is recomputed.
        report_.vanished_blocks += matched - i;
        return i;
      }
      ++report_.blocks_read;
      ++round->read;
      report_.bytes_read += block.data().size();
      size_t tier = static_cast<size_t>(block.tier());
      if (tier >= report_.hits_by_tier.size()) tier = 0;
      ++report_.hits_by_tier[tier];
      ++round->hits[tier];
      if (!VerifyBlock(keys[i], bytes, block.data())) {
        ++report_.verification_failures;
        progress_ << "VERIFICATION FAILED: block " << keys[i].ToHex() << " in pool "
                  << options_.pool << " (" << block.data().size() << " bytes from "
                  << wire::TierName(block.tier()) << ")\n";
        return i;  // recompute it and what follows, as an engine would
      }
    }
  }
  return matched;
}

Status DemoRunner::Store(const std::vector<BlockKey>& keys, size_t from, Round* round) {
  const size_t batch = BatchBlocks();
  const size_t bytes = report_.kv_bytes_per_block;
  for (size_t begin = from; begin < keys.size(); begin += batch) {
    size_t end = std::min(keys.size(), begin + batch);
    v1::PutRequest request;
    *request.mutable_lease() = lease_;
    request.set_pool(options_.pool);
    for (size_t i = begin; i < end; ++i) {
      v1::BlockWrite* w = request.add_blocks();
      w->set_key(wire::KeyToBytes(keys[i]));
      w->set_data(BlockContent(keys[i], bytes));  // the "prefill" of this block
    }
    grpc::ClientContext call;
    Prepare(&call);
    v1::PutReply reply;
    grpc::Status s = stub_.Put(&call, request, &reply);
    if (!s.ok()) return wire::FromRpcStatus("Put", s);
    if (reply.results_size() != static_cast<int>(end - begin)) {
      return Internal("Put answered " + std::to_string(reply.results_size()) + " results for " +
                      std::to_string(end - begin) + " blocks");
    }
    for (const v1::PutResult& r : reply.results()) {
      if (r.code() != 0) {
        if (report_.put_failures++ == 0) {
          report_.first_put_failure = wire::StoreCodeName(r.code()) + ": " + r.message();
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

Status DemoRunner::PlayTurn(Session& session, int turn, const BlockKey& root, Round* round) {
  std::vector<uint32_t> prompt =
      session.Prompt(UserMessage(options_.seed, session.id(), turn, options_.user_tokens));
  std::vector<BlockKey> keys = ChainKeys(root, prompt, options_.block_tokens);
  ++round->prompts;
  round->prompt_tokens += prompt.size();

  size_t matched = 0;
  if (!keys.empty()) {
    v1::LookupPrefixRequest request;
    *request.mutable_lease() = lease_;
    request.set_pool(options_.pool);
    for (const BlockKey& k : keys) request.add_keys(wire::KeyToBytes(k));
    grpc::ClientContext call;
    Prepare(&call);
    v1::LookupPrefixReply reply;
    grpc::Status s = stub_.LookupPrefix(&call, request, &reply);
    if (!s.ok()) return wire::FromRpcStatus("LookupPrefix", s);
    matched = std::min<size_t>(reply.matched(), keys.size());
  }
  report_.blocks_looked_up += keys.size();
  report_.blocks_matched += matched;

  TM_ASSIGN_OR_RETURN(size_t reused, ReadBack(keys, matched, round));
  round->reused_tokens += reused * options_.block_tokens;
  TM_RETURN_IF_ERROR(Store(keys, reused, round));
  session.Append(prompt, ReplyTokens(options_.seed, session.id(), turn, options_.reply_tokens));
  return Status::Ok();
}

Status DemoRunner::FetchStats() {
  v1::StatsRequest request;
  request.set_pool(options_.pool);
  grpc::ClientContext call;
  Prepare(&call);
  v1::StatsReply reply;
  grpc::Status s = stub_.GetStats(&call, request, &reply);
  if (!s.ok()) return wire::FromRpcStatus("GetStats", s);
  for (const auto& p : reply.pools()) {
    if (p.pool() == options_.pool) report_.pool_stats = p;
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

  const BlockKey root = NamespaceRoot(options_.model_namespace);
  std::vector<Session> sessions;
  const std::vector<uint32_t> system = SystemPrompt(options_.seed, options_.system_prompt_tokens);
  for (uint32_t s = 0; s < options_.sessions; ++s) {
    sessions.emplace_back(static_cast<int>(s), system);
  }

  Status failure = Status::Ok();
  for (uint32_t turn = 0; turn < options_.turns && failure.ok(); ++turn) {
    Round round;
    for (Session& session : sessions) {
      failure = PlayTurn(session, static_cast<int>(turn), root, &round);
      if (!failure.ok()) break;
    }
    report_.prompts += round.prompts;
    report_.prompt_tokens += round.prompt_tokens;
    report_.reused_tokens += round.reused_tokens;
    if (!failure.ok()) break;

    char line[256];
    std::snprintf(line, sizeof(line),
                  "turn %u/%u: %llu prompts, %llu tokens, %llu reused (%.1f%%), %llu blocks "
                  "stored, %llu read back (dram %llu, cxl %llu, nvme %llu)\n",
                  turn + 1, options_.turns, static_cast<unsigned long long>(round.prompts),
                  static_cast<unsigned long long>(round.prompt_tokens),
                  static_cast<unsigned long long>(round.reused_tokens),
                  round.prompt_tokens ? 100.0 * static_cast<double>(round.reused_tokens) /
                                            static_cast<double>(round.prompt_tokens)
                                      : 0.0,
                  static_cast<unsigned long long>(round.stored),
                  static_cast<unsigned long long>(round.read),
                  static_cast<unsigned long long>(round.hits[v1::TIER_KIND_DRAM]),
                  static_cast<unsigned long long>(round.hits[v1::TIER_KIND_CXL]),
                  static_cast<unsigned long long>(round.hits[v1::TIER_KIND_NVME]));
    progress_ << line << std::flush;
  }
  if (failure.ok()) failure = FetchStats();
  ReleaseLease();
  if (!failure.ok()) return failure;
  report_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report_;
}

}  // namespace tokenmem::demo
