// ControlAuthMetrics: tokenmem_control_auth_failures_total{transport, reason},
// the control API's refused calls (docs/security-admin-plane.md), registered
// on the agent's registry (AgentMetrics::registry()).
//
// Every (transport, reason) pair given at construction exists from the start
// at zero, so an alert can tell "never refused" from "not scraped"; a pair
// outside those sets is counted under the reason "other" of its transport
// (or transport "other"), which keeps the label cardinality fixed.
//
// Thread-safe: Observe is one atomic add, from any thread.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace prometheus {
class Counter;
class Registry;
}  // namespace prometheus

namespace tokenmem::http {

class ControlAuthMetrics {
 public:
  ControlAuthMetrics(prometheus::Registry& registry, const std::vector<std::string>& transports,
                     const std::vector<std::string>& reasons);

  void Observe(std::string_view transport, std::string_view reason);

 private:
  prometheus::Counter* Find(std::string_view transport, std::string_view reason) const;

  // Built once in the constructor, read-only afterwards.
  std::map<std::pair<std::string, std::string>, prometheus::Counter*, std::less<>> series_;
};

}  // namespace tokenmem::http
