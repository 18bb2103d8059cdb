// Test support: calls every method of the Control service (found in the
// service's descriptor, so a method added later is probed too) with an
// empty request, and reports each method's status code. An empty request
// parses as the default message of every request type.
//
// CallEveryMethod is synchronous and thread-compatible. The control_probe
// binary does the same from a separate process (tests start it under
// another uid): control_probe TARGET [--token T] prints "METHOD CODE" lines.
#pragma once

#include <grpcpp/channel.h>
#include <grpcpp/support/status.h>

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace tokenmem::control::testing {

struct MethodResult {
  std::string method;  // "GetStatus", ...
  grpc::StatusCode code = grpc::StatusCode::OK;
  std::string message;
};

// `token` non-empty: each call carries "authorization: Bearer <token>".
std::vector<MethodResult> CallEveryMethod(const std::shared_ptr<grpc::Channel>& channel,
                                          const std::string& token,
                                          std::chrono::milliseconds timeout);

// The number of methods the Control service has.
size_t ControlMethodCount();

}  // namespace tokenmem::control::testing
