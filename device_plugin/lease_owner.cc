#include "lease_owner.h"

#include <algorithm>

namespace tokenmem::device_plugin {
namespace {

constexpr std::string_view kPrefix = "k8s-device-plugin:";

}  // namespace

std::string FormatLeaseOwner(std::string_view resource, std::vector<std::string> devices) {
  std::sort(devices.begin(), devices.end());
  std::string out(kPrefix);
  out += resource;
  out += ':';
  for (size_t i = 0; i < devices.size(); ++i) {
    if (i > 0) out += ',';
    out += devices[i];
  }
  return out;
}

std::optional<LeaseOwner> ParseLeaseOwner(std::string_view owner) {
  if (owner.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  owner.remove_prefix(kPrefix.size());
  // The resource name holds no ':'; device IDs hold neither ':' nor ','.
  const size_t colon = owner.find(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  LeaseOwner out;
  out.resource = std::string(owner.substr(0, colon));
  std::string_view list = owner.substr(colon + 1);
  if (list.find(':') != std::string_view::npos) return std::nullopt;
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string_view::npos) comma = list.size();
    std::string_view id = list.substr(start, comma - start);
    if (id.empty()) return std::nullopt;
    out.devices.emplace_back(id);
    start = comma + 1;
  }
  std::sort(out.devices.begin(), out.devices.end());
  return out;
}

}  // namespace tokenmem::device_plugin
