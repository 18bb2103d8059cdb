#include "cli/commands.h"

#include <cstdlib>
#include <string_view>
#include <utility>

#include "cli/command_context.h"
#include "wire/codes.h"

namespace tokenmem::cli {

namespace {

constexpr std::pair<std::string_view, Handler> kHandlers[] = {
    {"status", RunStatus},
    {"stats", RunStats},
    {"pool create", RunPoolCreate},
    {"pool list", RunPoolList},
    {"pool get", RunPoolGet},
    {"pool delete", RunPoolDelete},
    {"lease create", RunLeaseCreate},
    {"lease list", RunLeaseList},
    {"lease release", RunLeaseRelease},
    {"lease bind", RunLeaseBind},
    {"put", RunPut},
    {"get", RunGet},
    {"exists", RunExists},
};

}  // namespace

void Context::Prepare(grpc::ClientContext* call) const {
  call->set_deadline(std::chrono::system_clock::now() + inv.global.timeout);
}

int Context::RpcFailed(const grpc::Status& status) const {
  err << "tokenmemctl: " << wire::DescribeRpcError(status) << "\n";
  return kExitError;
}

int Context::Failed(const Status& status) const {
  err << "tokenmemctl: " << status.ToString() << "\n";
  return kExitError;
}

int Context::Usage(const std::string& message) const { return ReportUsageError(err, message); }

void Context::Print(const std::string& text) const {
  out << text;
  if (text.empty() || text.back() != '\n') out << '\n';
}

Result<wire::LeaseString> Context::Lease() const {
  if (auto flag = inv.Get("lease")) return wire::ParseLease(*flag);
  const char* env = std::getenv(wire::kLeaseEnvVar);
  if (env == nullptr || env[0] == '\0') {
    return InvalidArgument("no lease: give --lease ID:SECRET or set " +
                           std::string(wire::kLeaseEnvVar));
  }
  auto lease = wire::ParseLease(env);
  if (!lease.ok()) return lease.status().WithContext(wire::kLeaseEnvVar);
  return lease;
}

int ReportUsageError(std::ostream& err, const std::string& message) {
  err << "tokenmemctl: " << message << "\n"
      << "Run 'tokenmemctl help' for the commands and their options.\n";
  return kExitUsage;
}

int RunCommand(const Invocation& inv, v1::Control::StubInterface& stub, std::ostream& out,
               std::ostream& err) {
  Context ctx(inv, stub, out, err);
  for (const auto& [name, handler] : kHandlers) {
    if (inv.command != nullptr && inv.command->name == name) return handler(ctx);
  }
  return ctx.Usage("no handler for this command");
}

}  // namespace tokenmem::cli
