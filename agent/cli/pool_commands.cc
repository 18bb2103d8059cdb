// pool create | list | get | delete.
#include <charconv>

#include "cli/command_context.h"
#include "cli/commands.h"
#include "cli/format.h"
#include "tokenmem/common/units.h"
#include "wire/json_writer.h"

namespace tokenmem::cli {

namespace {

constexpr uint64_t kDefaultBlockSize = 256 * 1024;

Result<uint64_t> SizeFlag(const Context& ctx, std::string_view flag, uint64_t fallback) {
  auto text = ctx.inv.Get(flag);
  if (!text) return fallback;
  auto size = ParseByteSize(*text);
  if (!size.ok()) return size.status().WithContext("--" + std::string(flag));
  return size;
}

Result<uint64_t> CountFlag(const Context& ctx, std::string_view flag) {
  auto text = ctx.inv.Get(flag);
  if (!text) return uint64_t{0};
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), v);
  if (ec != std::errc() || end != text->data() + text->size()) {
    return InvalidArgument("--" + std::string(flag) + " wants a whole number of seconds, got '" +
                           *text + "'");
  }
  return v;
}

// The PoolSpec that the flags describe, or the first flag at fault.
Result<v1::PoolSpec> SpecFromFlags(const Context& ctx) {
  v1::PoolSpec spec;
  spec.set_name(ctx.inv.positionals[0]);
  TM_ASSIGN_OR_RETURN(uint64_t block_size, SizeFlag(ctx, "block-size", kDefaultBlockSize));
  spec.set_block_size(block_size);
  constexpr std::pair<std::string_view, v1::TierKind> kTierFlags[] = {
      {"dram", v1::TIER_KIND_DRAM}, {"cxl", v1::TIER_KIND_CXL}, {"nvme", v1::TIER_KIND_NVME}};
  for (const auto& [flag, tier] : kTierFlags) {
    TM_ASSIGN_OR_RETURN(uint64_t bytes, SizeFlag(ctx, flag, 0));
    if (bytes == 0) continue;
    v1::TierCapacity* c = spec.add_capacity();
    c->set_tier(tier);
    c->set_bytes(bytes);
  }
  if (auto eviction = ctx.inv.Get("eviction")) {
    if (*eviction == "lru") {
      spec.set_eviction(v1::EVICTION_POLICY_LRU);
    } else if (*eviction == "none") {
      spec.set_eviction(v1::EVICTION_POLICY_NONE);
    } else {
      return InvalidArgument("--eviction is lru or none, got '" + *eviction + "'");
    }
  }
  TM_ASSIGN_OR_RETURN(uint64_t ttl, CountFlag(ctx, "ttl"));
  spec.set_ttl_seconds(ttl);
  if (auto scope = ctx.inv.Get("scope")) {
    if (*scope == "local") {
      spec.set_scope(v1::POOL_SCOPE_LOCAL);
    } else if (*scope == "cluster") {
      spec.set_scope(v1::POOL_SCOPE_CLUSTER);
    } else {
      return InvalidArgument("--scope is local or cluster, got '" + *scope + "'");
    }
  }
  for (const auto& ns : ctx.inv.GetAll("allowed-namespace")) spec.add_allowed_namespaces(ns);
  return spec;
}

}  // namespace

int RunPoolCreate(Context& ctx) {
  auto spec = SpecFromFlags(ctx);
  if (!spec.ok()) return ctx.Usage(spec.status().message());
  v1::CreatePoolRequest request;
  *request.mutable_spec() = *spec;
  grpc::ClientContext call;
  ctx.Prepare(&call);
  v1::PoolInfo reply;
  grpc::Status s = ctx.stub.CreatePool(&call, request, &reply);
  if (!s.ok()) return ctx.RpcFailed(s);
  if (ctx.json()) {
    ctx.Print(PoolJson(reply));
  } else {
    ctx.Print("created pool " + reply.spec().name() + "\n\n" + PoolText(reply));
  }
  return kExitOk;
}

int RunPoolList(Context& ctx) {
  grpc::ClientContext call;
  ctx.Prepare(&call);
  v1::ListPoolsReply reply;
  grpc::Status s = ctx.stub.ListPools(&call, v1::ListPoolsRequest(), &reply);
  if (!s.ok()) return ctx.RpcFailed(s);
  ctx.Print(ctx.json() ? PoolsJson(reply) : PoolsText(reply));
  return kExitOk;
}

int RunPoolGet(Context& ctx) {
  v1::GetPoolRequest request;
  request.set_name(ctx.inv.positionals[0]);
  grpc::ClientContext call;
  ctx.Prepare(&call);
  v1::PoolInfo reply;
  grpc::Status s = ctx.stub.GetPool(&call, request, &reply);
  if (!s.ok()) return ctx.RpcFailed(s);
  ctx.Print(ctx.json() ? PoolJson(reply) : PoolText(reply));
  return kExitOk;
}

int RunPoolDelete(Context& ctx) {
  v1::DeletePoolRequest request;
  request.set_name(ctx.inv.positionals[0]);
  grpc::ClientContext call;
  ctx.Prepare(&call);
  v1::DeletePoolReply reply;
  grpc::Status s = ctx.stub.DeletePool(&call, request, &reply);
  if (!s.ok()) return ctx.RpcFailed(s);
  if (ctx.json()) {
    wire::JsonWriter w;
    w.BeginObject().StringField("deleted", request.name()).EndObject();
    ctx.Print(w.str());
  } else {
    ctx.Print("deleted pool " + request.name());
  }
  return kExitOk;
}

}  // namespace tokenmem::cli
