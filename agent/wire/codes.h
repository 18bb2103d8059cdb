// Names for the codes that cross the control protocol, for messages that
// people read: gRPC status codes, tokenmem StatusCodes in PutResult.code,
// and tier kinds. Pure functions; thread-safe.
#pragma once

#include <grpcpp/support/status.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "tokenmem/common/status.h"
#include "tokenmem/v1/control.pb.h"

namespace tokenmem::wire {

// "OK", "INVALID_ARGUMENT", ... as gRPC spells them; "UNKNOWN" for values
// outside the enum.
std::string_view RpcCodeName(grpc::StatusCode code);

// "<CODE>: <message>" for a failed call, e.g. "NOT_FOUND: no pool 'x'".
// A status without a message gives just the code name.
std::string DescribeRpcError(const grpc::Status& status);

// A failed call as a tokenmem Status: the gRPC code mapped to the nearest
// StatusCode (DEADLINE_EXCEEDED and UNAVAILABLE: kUnavailable; codes with no
// counterpart: kInternal), and the message "<call>: <CODE>: <message>" so the
// gRPC name survives.
Status FromRpcStatus(std::string_view call, const grpc::Status& status);

// The name of a tokenmem StatusCode received as an integer (PutResult.code):
// "OK", "RESOURCE_EXHAUSTED", ...; "CODE_<n>" for a value this build does
// not know.
std::string StoreCodeName(int32_t code);

// "dram", "cxl", "nvme"; "unspecified" for TIER_KIND_UNSPECIFIED and
// anything unknown.
std::string_view TierName(v1::TierKind tier);

// "lru", "none", "default" (unspecified: the agent picks LRU).
std::string_view EvictionName(v1::EvictionPolicy policy);

}  // namespace tokenmem::wire
