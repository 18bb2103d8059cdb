#include "config/config_values.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <system_error>

#include "tokenmem/common/units.h"

namespace tokenmem::config {
namespace {

template <typename T>
Result<T> ParseDecimal(std::string_view text, std::string_view what) {
  T value{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
    std::string why = ec == std::errc::result_out_of_range ? " (out of range)" : "";
    return InvalidArgument("'" + std::string(text) + "' is not " + std::string(what) + why);
  }
  return value;
}

}  // namespace

Result<uint64_t> ParseSize(std::string_view text) {
  struct Unit {
    std::string_view name;
    uint64_t factor;
  };
  static constexpr Unit kUnits[] = {
      {"", 1},
      {"B", 1},
      {"K", 1ull << 10},
      {"KiB", 1ull << 10},
      {"KB", 1000},
      {"M", 1ull << 20},
      {"MiB", 1ull << 20},
      {"MB", 1000000},
      {"G", 1ull << 30},
      {"GiB", 1ull << 30},
      {"GB", 1000000000},
      {"T", 1ull << 40},
      {"TiB", 1ull << 40},
      {"TB", 1000000000000},
  };
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  std::string_view unit = text.substr(digits);
  uint64_t number = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + digits, number);
  if (digits == 0 || ec != std::errc() || end != text.data() + digits) {
    return ParseByteSize(text);  // fractions, spaces, errors: the shared parser decides
  }
  for (const Unit& u : kUnits) {
    if (unit != u.name) continue;
    if (number > UINT64_MAX / u.factor) {
      return InvalidArgument("'" + std::string(text) + "' is larger than 16EiB");
    }
    return number * u.factor;
  }
  return ParseByteSize(text);
}

Result<uint32_t> ParseUint32(std::string_view text) {
  return ParseDecimal<uint32_t>(text, "a whole number in 0..4294967295");
}

Result<uint64_t> ParseUint64(std::string_view text) {
  return ParseDecimal<uint64_t>(text, "a whole number");
}

Result<int> ParseInt(std::string_view text) { return ParseDecimal<int>(text, "a whole number"); }

Result<double> ParseDouble(std::string_view text) {
  double value = 0;
  auto [end, ec] =
      std::from_chars(text.data(), text.data() + text.size(), value, std::chars_format::general);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() ||
      !std::isfinite(value)) {
    return InvalidArgument("'" + std::string(text) + "' is not a number");
  }
  return value;
}

Result<uint32_t> ParseOctalMode(std::string_view text) {
  std::string_view digits = text;
  if (digits.starts_with("0o") || digits.starts_with("0O")) digits.remove_prefix(2);
  uint32_t value = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value, 8);
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() ||
      value > 07777) {
    return InvalidArgument("'" + std::string(text) +
                           "' is not an octal file mode (examples: \"0660\", \"0600\")");
  }
  return value;
}

Result<bool> ParseBool(std::string_view text) {
  for (std::string_view t : {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"}) {
    if (text == t) return true;
  }
  for (std::string_view f : {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"}) {
    if (text == f) return false;
  }
  return InvalidArgument("'" + std::string(text) + "' is not true or false");
}

std::string FormatOctalMode(uint32_t mode) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%04o", mode);
  return buf;
}

std::string FormatDouble(double value) {
  char buf[32];
  auto end = std::to_chars(buf, buf + sizeof(buf), value).ptr;
  return std::string(buf, end);
}

}  // namespace tokenmem::config
