// Runs one parsed tokenmemctl command against an agent.
//
// Output contract: results go to `out` (a table, or one JSON object with
// --json); errors go to `err` as one line "tokenmemctl: <CODE>: <message>",
// CODE being the gRPC status name for a failed call. Every call carries the
// --timeout deadline. Not thread-safe (one command at a time per stream).
#pragma once

#include <ostream>

#include "cli/args.h"
#include "tokenmem/v1/control.grpc.pb.h"

namespace tokenmem::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;    // the agent refused or could not be reached; I/O failed
inline constexpr int kExitUsage = 2;    // bad arguments; nothing was sent
inline constexpr int kExitMissing = 3;  // get: the key is not stored; exists: some key is absent

// Runs `inv` (its command must not be "help") and returns the exit status.
int RunCommand(const Invocation& inv, v1::Control::StubInterface& stub, std::ostream& out,
               std::ostream& err);

// Prints "tokenmemctl: <message>" and a hint to run help; returns kExitUsage.
int ReportUsageError(std::ostream& err, const std::string& message);

}  // namespace tokenmem::cli
