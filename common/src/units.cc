#include "tokenmem/common/units.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <limits>

namespace tokenmem {

Result<uint64_t> ParseByteSize(std::string_view text) {
  std::string_view s = text;
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
  std::string number(s.substr(0, i));
  std::string_view unit = s.substr(i);
  while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
  auto bad = [&] {
    return InvalidArgument("'" + std::string(text) +
                           "' is not a byte size (examples: 4096, 64KiB, 1.5GiB, 10GB)");
  };
  if (number.empty() || number.find('.') != number.rfind('.')) return bad();

  struct Unit {
    std::string_view name;
    double factor;
  };
  static constexpr Unit kUnits[] = {
      {"", 1},
      {"B", 1},
      {"K", 1024.0},
      {"KiB", 1024.0},
      {"KB", 1e3},
      {"M", 1048576.0},
      {"MiB", 1048576.0},
      {"MB", 1e6},
      {"G", 1073741824.0},
      {"GiB", 1073741824.0},
      {"GB", 1e9},
      {"T", 1099511627776.0},
      {"TiB", 1099511627776.0},
      {"TB", 1e12},
  };
  double factor = -1;
  for (const auto& u : kUnits) {
    if (unit == u.name) factor = u.factor;
  }
  if (factor < 0) return bad();
  double value = std::strtod(number.c_str(), nullptr) * factor;
  if (!std::isfinite(value) || value >= 1.8e19) return bad();
  if (value != std::floor(value)) {
    return InvalidArgument("'" + std::string(text) + "' is not a whole number of bytes");
  }
  return static_cast<uint64_t>(value);
}

std::string FormatByteSize(uint64_t bytes) {
  static constexpr const char* kNames[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (u < 4 && bytes != 0 && bytes % 1024 == 0) {
    bytes /= 1024;
    ++u;
  }
  return std::to_string(bytes) + kNames[u];
}

std::string HumanBytes(double bytes) {
  static constexpr const char* kNames[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (u < 4 && std::fabs(bytes) >= 1024) {
    bytes /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.1f %s", bytes, kNames[u]);
  return buf;
}

}  // namespace tokenmem
