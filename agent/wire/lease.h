// Lease credentials as people and tools pass them around: one string
// "ID:SECRET" (the --lease flag, the TOKENMEM_LEASE environment variable).
// Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "tokenmem/common/status.h"
#include "tokenmem/v1/control.pb.h"

namespace tokenmem::wire {

// The environment variable that tools read a lease from.
inline constexpr char kLeaseEnvVar[] = "TOKENMEM_LEASE";

struct LeaseString {
  std::string id;
  std::string secret;
};

// Splits "ID:SECRET" at the first ':'. kInvalidArgument when the colon is
// missing or either part is empty; the message never contains the secret.
Result<LeaseString> ParseLease(std::string_view text);

// "ID:SECRET": the inverse of ParseLease.
std::string FormatLease(std::string_view id, std::string_view secret);

// The credentials message that data calls carry.
v1::LeaseCredentials ToCredentials(const LeaseString& lease);

}  // namespace tokenmem::wire
