#include "wire/codes.h"

namespace tokenmem::wire {

std::string_view RpcCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    default:
      return "UNKNOWN";
  }
}

std::string DescribeRpcError(const grpc::Status& status) {
  std::string out(RpcCodeName(status.error_code()));
  if (!status.error_message().empty()) {
    out += ": ";
    out += status.error_message();
  }
  return out;
}

Status FromRpcStatus(std::string_view call, const grpc::Status& status) {
  StatusCode code = StatusCode::kInternal;
  switch (status.error_code()) {
    case grpc::StatusCode::OK:
      return Status::Ok();
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
      code = StatusCode::kInvalidArgument;
      break;
    case grpc::StatusCode::NOT_FOUND:
      code = StatusCode::kNotFound;
      break;
    case grpc::StatusCode::ALREADY_EXISTS:
      code = StatusCode::kAlreadyExists;
      break;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      code = StatusCode::kResourceExhausted;
      break;
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED:
      code = StatusCode::kPermissionDenied;
      break;
    case grpc::StatusCode::FAILED_PRECONDITION:
      code = StatusCode::kFailedPrecondition;
      break;
    case grpc::StatusCode::DATA_LOSS:
      code = StatusCode::kCorruption;
      break;
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      code = StatusCode::kUnavailable;
      break;
    default:
      break;
  }
  return {code, std::string(call) + ": " + DescribeRpcError(status)};
}

std::string StoreCodeName(int32_t code) {
  if (code < static_cast<int32_t>(StatusCode::kOk) ||
      code > static_cast<int32_t>(StatusCode::kInternal)) {
    return "CODE_" + std::to_string(code);
  }
  return std::string(StatusCodeName(static_cast<StatusCode>(code)));
}

std::string_view TierName(v1::TierKind tier) {
  switch (tier) {
    case v1::TIER_KIND_DRAM:
      return "dram";
    case v1::TIER_KIND_CXL:
      return "cxl";
    case v1::TIER_KIND_NVME:
      return "nvme";
    default:
      return "unspecified";
  }
}

std::string_view EvictionName(v1::EvictionPolicy policy) {
  switch (policy) {
    case v1::EVICTION_POLICY_LRU:
      return "lru";
    case v1::EVICTION_POLICY_NONE:
      return "none";
    default:
      return "default";
  }
}

}  // namespace tokenmem::wire
