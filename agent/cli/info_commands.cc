// status and stats: read-only views of the agent.
#include "cli/command_context.h"
#include "cli/commands.h"
#include "cli/format.h"

namespace tokenmem::cli {

int RunStatus(Context& ctx) {
  grpc::ClientContext call;
  ctx.Prepare(&call);
  v1::StatusReply reply;
  grpc::Status s = ctx.stub.GetStatus(&call, v1::StatusRequest(), &reply);
  if (!s.ok()) return ctx.RpcFailed(s);
  ctx.Print(ctx.json() ? StatusJson(reply) : StatusText(reply));
  return kExitOk;
}

int RunStats(Context& ctx) {
  v1::StatsRequest request;
  if (auto pool = ctx.inv.Get("pool")) request.set_pool(*pool);
  grpc::ClientContext call;
  ctx.Prepare(&call);
  v1::StatsReply reply;
  grpc::Status s = ctx.stub.GetStats(&call, request, &reply);
  if (!s.ok()) return ctx.RpcFailed(s);
  ctx.Print(ctx.json() ? StatsJson(reply) : StatsText(reply));
  return kExitOk;
}

}  // namespace tokenmem::cli
