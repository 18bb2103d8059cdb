// JsonWriter: builds one JSON document, for the tools' --json output.
//
// Commas and nesting are tracked for the caller; strings are escaped per
// RFC 8259 and bytes that are not valid UTF-8 become U+FFFD, so the output
// always parses. The document is compact (no whitespace). Calls must nest
// properly (a value after every Key, End* matching Begin*); misuse trips an
// assert. Not thread-safe: one writer per document.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tokenmem::wire {

class JsonWriter {
 public:
  JsonWriter& BeginObject();
  JsonWriter& EndObject();
  JsonWriter& BeginArray();
  JsonWriter& EndArray();

  // The next member's name; inside an object only.
  JsonWriter& Key(std::string_view key);

  JsonWriter& String(std::string_view value);
  JsonWriter& Uint(uint64_t value);
  JsonWriter& Int(int64_t value);
  // Shortest form that reads back to the same double; NaN and infinities
  // (which JSON lacks) are written as null.
  JsonWriter& Double(double value);
  JsonWriter& Bool(bool value);
  JsonWriter& Null();

  // Key(key) followed by the value.
  JsonWriter& StringField(std::string_view key, std::string_view value);
  JsonWriter& UintField(std::string_view key, uint64_t value);
  JsonWriter& IntField(std::string_view key, int64_t value);
  JsonWriter& DoubleField(std::string_view key, double value);
  JsonWriter& BoolField(std::string_view key, bool value);

  // The document so far; complete once every Begin* has its End*.
  const std::string& str() const { return out_; }

 private:
  struct Level {
    bool object;
    bool empty = true;
    bool key_pending = false;
  };
  void BeforeValue();

  std::string out_;
  std::vector<Level> stack_;
};

// `text` as a JSON string literal, quotes included.
std::string JsonQuote(std::string_view text);

}  // namespace tokenmem::wire
