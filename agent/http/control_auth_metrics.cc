#include "http/control_auth_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/registry.h>

namespace tokenmem::http {

ControlAuthMetrics::ControlAuthMetrics(prometheus::Registry& registry,
                                       const std::vector<std::string>& transports,
                                       const std::vector<std::string>& reasons) {
  auto& family = prometheus::BuildCounter()
                     .Name("tokenmem_control_auth_failures_total")
                     .Help(
                         "Control API calls refused because the caller is not a node admin "
                         "(unix: peer uid/gids; tcp: admin token, client certificate), by "
                         "transport and reason.")
                     .Register(registry);
  std::vector<std::string> all_transports = transports;
  all_transports.push_back("other");
  for (const auto& transport : all_transports) {
    std::vector<std::string> all_reasons = reasons;
    all_reasons.push_back("other");
    for (const auto& reason : all_reasons) {
      series_[{transport, reason}] = &family.Add({{"transport", transport}, {"reason", reason}});
    }
  }
}

prometheus::Counter* ControlAuthMetrics::Find(std::string_view transport,
                                              std::string_view reason) const {
  auto it = series_.find(std::pair<std::string, std::string>(transport, reason));
  return it == series_.end() ? nullptr : it->second;
}

void ControlAuthMetrics::Observe(std::string_view transport, std::string_view reason) {
  prometheus::Counter* counter = Find(transport, reason);
  if (counter == nullptr) counter = Find(transport, "other");
  if (counter == nullptr) counter = Find("other", "other");
  counter->Increment();
}

}  // namespace tokenmem::http
