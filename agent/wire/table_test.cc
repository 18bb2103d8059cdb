#include "wire/table.h"

#include <gtest/gtest.h>

namespace tokenmem::wire {
namespace {

TEST(TableTest, AlignsColumns) {
  Table t({{"NAME"}, {"SIZE", Table::Align::kRight}, {"NOTE"}});
  t.AddRow({"a", "1.0 KiB", "x"});
  t.AddRow({"longer", "12 B", ""});
  EXPECT_EQ(t.Render(),
            "NAME       SIZE  NOTE\n"
            "a       1.0 KiB  x\n"
            "longer     12 B\n");
}

TEST(TableTest, PadsMissingCellsAndCountsUtf8Characters) {
  Table t({{"A"}, {"B"}});
  t.AddRow({"caf\xc3\xa9"});
  t.AddRow({"x", "y"});
  EXPECT_EQ(t.Render(),
            "A     B\n"
            "caf\xc3\xa9\n"
            "x     y\n");
}

TEST(TableTest, KeyValueLinesAlignValues) {
  EXPECT_EQ(KeyValueLines({{"name", "p1"}, {"block size", "64.0 KiB"}}),
            "name        p1\n"
            "block size  64.0 KiB\n");
}

}  // namespace
}  // namespace tokenmem::wire
