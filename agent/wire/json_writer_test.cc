#include "wire/json_writer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace tokenmem::wire {
namespace {

TEST(JsonWriterTest, NestsWithCommas) {
  JsonWriter w;
  w.BeginObject()
      .StringField("name", "p1")
      .UintField("block_size", 65536)
      .Key("tiers")
      .BeginArray()
      .BeginObject()
      .StringField("tier", "dram")
      .IntField("delta", -3)
      .EndObject()
      .Uint(7)
      .Null()
      .EndArray()
      .BoolField("ok", true)
      .Key("empty")
      .BeginObject()
      .EndObject()
      .Key("none")
      .BeginArray()
      .EndArray()
      .EndObject();
  EXPECT_EQ(w.str(),
            R"({"name":"p1","block_size":65536,"tiers":[{"tier":"dram","delta":-3},7,null],)"
            R"("ok":true,"empty":{},"none":[]})");
}

TEST(JsonWriterTest, WritesDoubles) {
  JsonWriter w;
  w.BeginArray()
      .Double(0.5)
      .Double(75)
      .Double(std::nan(""))
      .Double(std::numeric_limits<double>::infinity())
      .EndArray();
  EXPECT_EQ(w.str(), "[0.5,75,null,null]");
}

TEST(JsonWriterTest, EscapesControlCharactersAndQuotes) {
  EXPECT_EQ(JsonQuote("a\"b\\c"), R"("a\"b\\c")");
  EXPECT_EQ(JsonQuote("\n\t\r\b\f"), R"("\n\t\r\b\f")");
  EXPECT_EQ(JsonQuote(std::string("\x01\x1f\x7f", 3)), R"("\u0001\u001f\u007f")");
  EXPECT_EQ(JsonQuote(std::string("a\0b", 3)), R"("a\u0000b")");
}

TEST(JsonWriterTest, KeepsValidUtf8AndReplacesInvalidBytes) {
  EXPECT_EQ(JsonQuote("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
            "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
  EXPECT_EQ(JsonQuote("\xff"), R"("\ufffd")");
  EXPECT_EQ(JsonQuote("\xc3"), R"("\ufffd")");                      // truncated sequence
  EXPECT_EQ(JsonQuote("\xc0\xaf"), R"("\ufffd\ufffd")");            // overlong '/'
  EXPECT_EQ(JsonQuote("\xed\xa0\x80"), R"("\ufffd\ufffd\ufffd")");  // surrogate
  EXPECT_EQ(JsonQuote("\xe2\x82"), R"("\ufffd\ufffd")");
}

TEST(JsonWriterTest, EscapesKeys) {
  JsonWriter w;
  w.BeginObject().UintField("a\"b", 1).EndObject();
  EXPECT_EQ(w.str(), R"({"a\"b":1})");
}

}  // namespace
}  // namespace tokenmem::wire
