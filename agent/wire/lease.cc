#include "wire/lease.h"

namespace tokenmem::wire {

Result<LeaseString> ParseLease(std::string_view text) {
  size_t colon = text.find(':');
  if (colon == std::string_view::npos) {
    return InvalidArgument("a lease is written ID:SECRET (no ':' found)");
  }
  LeaseString lease{std::string(text.substr(0, colon)), std::string(text.substr(colon + 1))};
  if (lease.id.empty()) return InvalidArgument("a lease is written ID:SECRET (the ID is empty)");
  if (lease.secret.empty()) {
    return InvalidArgument("a lease is written ID:SECRET (the secret is empty)");
  }
  return lease;
}

std::string FormatLease(std::string_view id, std::string_view secret) {
  std::string out(id);
  out += ':';
  out += secret;
  return out;
}

v1::LeaseCredentials ToCredentials(const LeaseString& lease) {
  v1::LeaseCredentials c;
  c.set_id(lease.id);
  c.set_secret(lease.secret);
  return c;
}

}  // namespace tokenmem::wire
