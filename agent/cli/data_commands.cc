// put, get, exists: one block at a time (exists: several keys), under a lease.
#include "cli/command_context.h"
#include "cli/commands.h"
#include "cli/file_io.h"
#include "tokenmem/common/block_key.h"
#include "tokenmem/common/units.h"
#include "wire/codes.h"
#include "wire/json_writer.h"
#include "wire/key_bytes.h"

namespace tokenmem::cli {

namespace {

// Lease, pool and the --key values, checked before anything is sent.
struct Target {
  v1::LeaseCredentials lease;
  std::string pool;
  std::vector<BlockKey> keys;
};

Result<Target> TargetFromFlags(const Context& ctx) {
  Target t;
  TM_ASSIGN_OR_RETURN(wire::LeaseString lease, ctx.Lease());
  t.lease = wire::ToCredentials(lease);
  t.pool = *ctx.inv.Get("pool");
  for (const auto& hex : ctx.inv.GetAll("key")) {
    auto key = BlockKey::FromHex(hex);
    if (!key.ok()) return key.status().WithContext("--key " + hex);
    t.keys.push_back(*key);
  }
  return t;
}

}  // namespace

int RunPut(Context& ctx) {
  auto target = TargetFromFlags(ctx);
  if (!target.ok()) return ctx.Usage(target.status().message());
  const std::string file = *ctx.inv.Get("file");
  auto data = ReadWholeFile(file);
  if (!data.ok()) return ctx.Failed(data.status());

  v1::PutRequest request;
  *request.mutable_lease() = target->lease;
  request.set_pool(target->pool);
  v1::BlockWrite* block = request.add_blocks();
  block->set_key(wire::KeyToBytes(target->keys[0]));
  block->set_data(*data);
  grpc::ClientContext call;
  ctx.Prepare(&call);
  v1::PutReply reply;
  grpc::Status s = ctx.stub.Put(&call, request, &reply);
  if (!s.ok()) return ctx.RpcFailed(s);
  if (reply.results_size() != 1) {
    return ctx.Failed(Internal("the agent answered " + std::to_string(reply.results_size()) +
                               " results for 1 block"));
  }
  const v1::PutResult& result = reply.results(0);
  if (result.code() != 0) {
    ctx.err << "tokenmemctl: " << wire::StoreCodeName(result.code()) << ": " << result.message()
            << "\n";
    return kExitError;
  }
  const std::string hex = target->keys[0].ToHex();
  if (ctx.json()) {
    wire::JsonWriter w;
    w.BeginObject()
        .StringField("pool", target->pool)
        .StringField("key", hex)
        .UintField("bytes", data->size())
        .StringField("tier", wire::TierName(result.tier()))
        .EndObject();
    ctx.Print(w.str());
  } else {
    ctx.Print("stored " + HumanBytes(static_cast<double>(data->size())) + " as " + hex +
              " in pool " + target->pool + " (" + std::string(wire::TierName(result.tier())) + ")");
  }
  return kExitOk;
}

int RunGet(Context& ctx) {
  auto target = TargetFromFlags(ctx);
  if (!target.ok()) return ctx.Usage(target.status().message());
  const std::string file = *ctx.inv.Get("file");

  v1::GetRequest request;
  *request.mutable_lease() = target->lease;
  request.set_pool(target->pool);
  request.add_keys(wire::KeyToBytes(target->keys[0]));
  grpc::ClientContext call;
  ctx.Prepare(&call);
  v1::GetReply reply;
  grpc::Status s = ctx.stub.Get(&call, request, &reply);
  if (!s.ok()) return ctx.RpcFailed(s);
  if (reply.blocks_size() != 1) {
    return ctx.Failed(Internal("the agent answered " + std::to_string(reply.blocks_size()) +
                               " blocks for 1 key"));
  }
  const v1::BlockRead& block = reply.blocks(0);
  const std::string hex = target->keys[0].ToHex();
  if (!block.found()) {
    ctx.err << "tokenmemctl: NOT_FOUND: key " << hex << " is not in pool " << target->pool << "\n";
    return kExitMissing;
  }
  if (file == "-") {
    // The block is the output; a report would corrupt it.
    ctx.out.write(block.data().data(), static_cast<std::streamsize>(block.data().size()));
    ctx.out.flush();
    if (!ctx.out) return ctx.Failed(IoError("cannot write standard output"));
    return kExitOk;
  }
  if (Status w = WriteWholeFile(file, block.data()); !w.ok()) return ctx.Failed(w);
  if (ctx.json()) {
    wire::JsonWriter w;
    w.BeginObject()
        .StringField("pool", target->pool)
        .StringField("key", hex)
        .UintField("bytes", block.data().size())
        .StringField("tier", wire::TierName(block.tier()))
        .StringField("file", file)
        .EndObject();
    ctx.Print(w.str());
  } else {
    ctx.Print("read " + HumanBytes(static_cast<double>(block.data().size())) + " from " + hex +
              " in pool " + target->pool + " (" + std::string(wire::TierName(block.tier())) +
              ") into " + file);
  }
  return kExitOk;
}

int RunExists(Context& ctx) {
  auto target = TargetFromFlags(ctx);
  if (!target.ok()) return ctx.Usage(target.status().message());

  v1::ExistsRequest request;
  *request.mutable_lease() = target->lease;
  request.set_pool(target->pool);
  for (const BlockKey& key : target->keys) request.add_keys(wire::KeyToBytes(key));
  grpc::ClientContext call;
  ctx.Prepare(&call);
  v1::ExistsReply reply;
  grpc::Status s = ctx.stub.Exists(&call, request, &reply);
  if (!s.ok()) return ctx.RpcFailed(s);
  if (reply.present_size() != static_cast<int>(target->keys.size())) {
    return ctx.Failed(Internal("the agent answered " + std::to_string(reply.present_size()) +
                               " answers for " + std::to_string(target->keys.size()) + " keys"));
  }
  size_t present = 0;
  for (bool p : reply.present()) present += p ? 1 : 0;
  if (ctx.json()) {
    wire::JsonWriter w;
    w.BeginObject().StringField("pool", target->pool).Key("keys").BeginArray();
    for (size_t i = 0; i < target->keys.size(); ++i) {
      w.BeginObject()
          .StringField("key", target->keys[i].ToHex())
          .BoolField("present", reply.present(static_cast<int>(i)))
          .EndObject();
    }
    w.EndArray()
        .UintField("present", present)
        .UintField("absent", target->keys.size() - present)
        .EndObject();
    ctx.Print(w.str());
  } else {
    std::string text;
    for (size_t i = 0; i < target->keys.size(); ++i) {
      text += target->keys[i].ToHex() +
              (reply.present(static_cast<int>(i)) ? "  present\n" : "  absent\n");
    }
    ctx.Print(text);
  }
  return present == target->keys.size() ? kExitOk : kExitMissing;
}

}  // namespace tokenmem::cli
