// Logging: one line per event that matters, to stderr.
// Format: "2026-11-25T14:00:00.123Z INFO  component: message". Thread-safe.
// Never log secrets (lease secrets, admin tokens).
#pragma once

#include <sstream>
#include <string_view>

namespace tokenmem {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// Accepts debug, info, warn, error.
bool ParseLogLevel(std::string_view text, LogLevel* out);

void LogLine(LogLevel level, std::string_view component, std::string_view message);

namespace log_internal {
// Spellings for TM_LOG(LEVEL, ...): INFO or Info.
inline constexpr LogLevel kDEBUG = LogLevel::kDebug;
inline constexpr LogLevel kINFO = LogLevel::kInfo;
inline constexpr LogLevel kWARN = LogLevel::kWarn;
inline constexpr LogLevel kERROR = LogLevel::kError;
inline constexpr LogLevel kDebug = LogLevel::kDebug;
inline constexpr LogLevel kInfo = LogLevel::kInfo;
inline constexpr LogLevel kWarn = LogLevel::kWarn;
inline constexpr LogLevel kError = LogLevel::kError;

class LineBuilder {
 public:
  LineBuilder(LogLevel level, std::string_view component) : level_(level), component_(component) {}
  ~LineBuilder() { LogLine(level_, component_, out_.str()); }
  LineBuilder(const LineBuilder&) = delete;
  LineBuilder& operator=(const LineBuilder&) = delete;
  template <typename T>
  LineBuilder& operator<<(const T& v) {
    out_ << v;
    return *this;
  }

 private:
  LogLevel level_;
  std::string_view component_;
  std::ostringstream out_;
};
}  // namespace log_internal

}  // namespace tokenmem

// TM_LOG(INFO, "pool") << "created " << name;
#define TM_LOG(level, component)                                        \
  if (::tokenmem::log_internal::k##level < ::tokenmem::GetLogLevel()) { \
  } else                                                                \
    ::tokenmem::log_internal::LineBuilder(::tokenmem::log_internal::k##level, component)
