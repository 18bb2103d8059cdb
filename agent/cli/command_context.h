// What every command handler uses: the invocation, the stub, the output
// streams, deadlines and the error-reporting conventions of commands.h.
// Internal to tokenmemctl.
#pragma once

#include <grpcpp/client_context.h>

#include <ostream>
#include <string>

#include "cli/args.h"
#include "tokenmem/common/status.h"
#include "tokenmem/v1/control.grpc.pb.h"
#include "wire/lease.h"

namespace tokenmem::cli {

class Context {
 public:
  Context(const Invocation& inv, v1::Control::StubInterface& stub, std::ostream& out,
          std::ostream& err)
      : inv(inv), stub(stub), out(out), err(err) {}

  const Invocation& inv;
  v1::Control::StubInterface& stub;
  std::ostream& out;
  std::ostream& err;

  bool json() const { return inv.global.json; }

  // Gives a call its deadline; use one fresh ClientContext per call.
  void Prepare(grpc::ClientContext* call) const;

  // Print one error line and return the exit status that goes with it.
  int RpcFailed(const grpc::Status& status) const;  // kExitError
  int Failed(const Status& status) const;           // kExitError
  int Usage(const std::string& message) const;      // kExitUsage

  // Writes `text` to `out`, adding a final newline when it lacks one.
  void Print(const std::string& text) const;

  // The lease from --lease, else $TOKENMEM_LEASE; kInvalidArgument when
  // neither is set or the text is not ID:SECRET.
  Result<wire::LeaseString> Lease() const;
};

using Handler = int (*)(Context&);

// One handler per command, by file.
int RunStatus(Context& ctx);        // info_commands.cc
int RunStats(Context& ctx);         // info_commands.cc
int RunPoolCreate(Context& ctx);    // pool_commands.cc
int RunPoolList(Context& ctx);      // pool_commands.cc
int RunPoolGet(Context& ctx);       // pool_commands.cc
int RunPoolDelete(Context& ctx);    // pool_commands.cc
int RunLeaseCreate(Context& ctx);   // lease_commands.cc
int RunLeaseList(Context& ctx);     // lease_commands.cc
int RunLeaseRelease(Context& ctx);  // lease_commands.cc
int RunLeaseBind(Context& ctx);     // lease_commands.cc
int RunPut(Context& ctx);           // data_commands.cc
int RunGet(Context& ctx);           // data_commands.cc
int RunExists(Context& ctx);        // data_commands.cc

}  // namespace tokenmem::cli
