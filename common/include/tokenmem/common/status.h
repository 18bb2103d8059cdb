// Status and Result<T>: how every tokenmem module reports errors.
//
// Errors are values. A Status is either OK or a code with a message meant
// for a human; a miss is StatusCode::kNotFound, an answer rather than a
// failure. Result<T> holds a T or a non-OK Status. Both are cheap to move
// and safe to use from any thread (they share nothing).
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace tokenmem {

// Values are stable: they travel in the control protocol.
enum class StatusCode : int {
  kOk = 0,
  kNotFound = 1,         // a miss: the key, pool or lease does not exist
  kInvalidArgument = 2,  // bad input; nothing was changed
  kAlreadyExists = 3,
  kResourceExhausted = 4,   // quota or capacity exceeded; nothing was evicted
  kPermissionDenied = 5,    // wrong secret, read-only lease, foreign pool
  kFailedPrecondition = 6,  // the request is valid but the state forbids it
  kCorruption = 7,          // stored bytes failed their checksum
  kIoError = 8,             // a syscall or device failed
  kUnavailable = 9,         // try again later (shutting down, peer down)
  kInternal = 10,
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  bool IsNotFound() const { return code_ == StatusCode::kNotFound; }

  // "CODE: message", for logs and command-line tools.
  std::string ToString() const;

  // Returns a copy whose message is prefixed with `context` (e.g. a path).
  Status WithContext(std::string_view context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status InvalidArgument(std::string m) {
  return {StatusCode::kInvalidArgument, std::move(m)};
}
inline Status AlreadyExists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
inline Status ResourceExhausted(std::string m) {
  return {StatusCode::kResourceExhausted, std::move(m)};
}
inline Status PermissionDenied(std::string m) {
  return {StatusCode::kPermissionDenied, std::move(m)};
}
inline Status FailedPrecondition(std::string m) {
  return {StatusCode::kFailedPrecondition, std::move(m)};
}
inline Status Corruption(std::string m) { return {StatusCode::kCorruption, std::move(m)}; }
inline Status IoError(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
inline Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

// IoError carrying strerror(errno_value) and what was being done.
Status ErrnoError(std::string_view what, int errno_value);

// A T or an error. Construct from a T (success) or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    assert(!std::get<Status>(v_).ok() && "Result built from an OK status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }

  // The error; OK when the result holds a value.
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(v_); }

  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace tokenmem

// Returns from the enclosing function when `expr` (a Status) is not OK.
#define TM_RETURN_IF_ERROR(expr)             \
  do {                                       \
    ::tokenmem::Status tm_status_ = (expr);  \
    if (!tm_status_.ok()) return tm_status_; \
  } while (0)

#define TM_CONCAT_INNER(a, b) a##b
#define TM_CONCAT(a, b) TM_CONCAT_INNER(a, b)
// Declares `lhs` from a Result's value, or returns its error.
#define TM_ASSIGN_OR_RETURN(lhs, expr) \
  TM_ASSIGN_OR_RETURN_IMPL(TM_CONCAT(tm_result_, __LINE__), lhs, expr)
#define TM_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.status();            \
  lhs = std::move(tmp).value()
