// lease create | list | release.
#include "cli/command_context.h"
#include "cli/commands.h"
#include "cli/format.h"
#include "tokenmem/common/units.h"
#include "wire/json_writer.h"

namespace tokenmem::cli {

int RunLeaseCreate(Context& ctx) {
  v1::CreateLeaseRequest request;
  auto quota = ParseByteSize(*ctx.inv.Get("quota"));
  if (!quota.ok()) return ctx.Usage("--quota: " + quota.status().message());
  if (*quota == 0) return ctx.Usage("--quota must be more than 0 bytes");
  request.set_quota_bytes(*quota);
  for (const auto& pool : ctx.inv.GetAll("pool")) request.add_pools(pool);
  request.set_read_only(ctx.inv.Has("read-only"));
  if (auto owner = ctx.inv.Get("owner")) request.set_owner(*owner);
  if (auto ns = ctx.inv.Get("namespace")) request.set_namespace_(*ns);

  grpc::ClientContext call;
  ctx.Prepare(&call);
  v1::LeaseInfo reply;
  grpc::Status s = ctx.stub.CreateLease(&call, request, &reply);
  if (!s.ok()) return ctx.RpcFailed(s);
  ctx.Print(ctx.json() ? LeaseJson(reply) : LeaseCreatedText(reply));
  return kExitOk;
}

int RunLeaseList(Context& ctx) {
  grpc::ClientContext call;
  ctx.Prepare(&call);
  v1::ListLeasesReply reply;
  grpc::Status s = ctx.stub.ListLeases(&call, v1::ListLeasesRequest(), &reply);
  if (!s.ok()) return ctx.RpcFailed(s);
  ctx.Print(ctx.json() ? LeasesJson(reply) : LeasesText(reply));
  return kExitOk;
}

int RunLeaseBind(Context& ctx) {
  v1::BindLeaseRequest request;
  request.set_id(ctx.inv.positionals[0]);
  request.set_namespace_(ctx.inv.positionals[1]);
  grpc::ClientContext call;
  ctx.Prepare(&call);
  v1::LeaseInfo reply;
  grpc::Status s = ctx.stub.BindLease(&call, request, &reply);
  if (!s.ok()) return ctx.RpcFailed(s);
  ctx.Print(ctx.json() ? LeaseJson(reply)
                       : "lease " + reply.id() + " is in namespace " + reply.namespace_());
  return kExitOk;
}

int RunLeaseRelease(Context& ctx) {
  v1::ReleaseLeaseRequest request;
  request.set_id(ctx.inv.positionals[0]);
  grpc::ClientContext call;
  ctx.Prepare(&call);
  v1::ReleaseLeaseReply reply;
  grpc::Status s = ctx.stub.ReleaseLease(&call, request, &reply);
  if (!s.ok()) return ctx.RpcFailed(s);
  if (ctx.json()) {
    wire::JsonWriter w;
    w.BeginObject()
        .StringField("released", request.id())
        .UintField("released_blocks", reply.released_blocks())
        .EndObject();
    ctx.Print(w.str());
  } else {
    std::string text = "released lease " + request.id();
    if (reply.released_blocks() > 0) {
      text += " (" + std::to_string(reply.released_blocks()) + " blocks released)";
    }
    ctx.Print(text);
  }
  return kExitOk;
}

}  // namespace tokenmem::cli
