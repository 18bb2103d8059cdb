#include "wire/table.h"

#include <algorithm>

namespace tokenmem::wire {

namespace {

size_t DisplayWidth(const std::string& s) {
  // UTF-8 continuation bytes do not start a character.
  return static_cast<size_t>(
      std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

}  // namespace

Table::Table(std::vector<Column> columns)
    : columns_(std::move(columns)), header_(!columns_.empty()) {}

void Table::AddRow(std::vector<std::string> cells) {
  if (columns_.empty()) columns_.resize(cells.size());
  cells.resize(columns_.size());
  rows_.push_back(std::move(cells));
}

std::string Table::Render() const {
  std::vector<size_t> width(columns_.size(), 0);
  for (size_t c = 0; c < columns_.size(); ++c) {
    if (header_) width[c] = DisplayWidth(columns_[c].title);
    for (const auto& row : rows_) width[c] = std::max(width[c], DisplayWidth(row[c]));
  }
  std::string out;
  auto emit = [&](auto cell_of) {
    std::string line;
    for (size_t c = 0; c < columns_.size(); ++c) {
      const std::string& cell = cell_of(c);
      size_t pad = width[c] - DisplayWidth(cell);
      if (c > 0) line += "  ";
      if (columns_[c].align == Align::kRight) {
        line.append(pad, ' ');
        line += cell;
      } else {
        line += cell;
        line.append(pad, ' ');
      }
    }
    line.erase(line.find_last_not_of(' ') + 1);
    out += line;
    out += '\n';
  };
  if (header_) emit([&](size_t c) -> const std::string& { return columns_[c].title; });
  for (const auto& row : rows_) emit([&](size_t c) -> const std::string& { return row[c]; });
  return out;
}

std::string KeyValueLines(const std::vector<std::pair<std::string, std::string>>& fields) {
  Table t({});
  for (const auto& [name, value] : fields) t.AddRow({name, value});
  return t.Render();
}

}  // namespace tokenmem::wire
