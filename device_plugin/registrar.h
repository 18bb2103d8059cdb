// Registrar: tells the kubelet that the plugin serves, with a Register call
// on the kubelet's Registration socket (device-plugin API v1beta1).
//
// The interface exists so that the supervisor can be tested without a
// kubelet; GrpcRegistrar is the real one.
//
// Thread-safety: Register may be called from any thread.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "tokenmem/common/status.h"

namespace tokenmem::device_plugin {

struct Registration {
  std::string kubelet_socket;  // full path of kubelet.sock
  std::string endpoint;        // the plugin's socket, a file name in the same directory
  std::string resource_name;
};

class Registrar {
 public:
  virtual ~Registrar() = default;
  // OK once the kubelet accepted the registration; kUnavailable when it
  // cannot be reached in time; the kubelet's refusal otherwise (as
  // "Register: CODE: message").
  virtual Status Register(const Registration& registration) = 0;
};

// Dials the kubelet afresh for every call (the kubelet's socket is a new
// one after each kubelet restart) with a deadline of `timeout`. Registers
// with GetPreferredAllocation available and PreStartContainer not required.
std::unique_ptr<Registrar> MakeGrpcRegistrar(std::chrono::milliseconds timeout);

}  // namespace tokenmem::device_plugin
