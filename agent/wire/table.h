// Table: aligned text columns for the tools' human output.
// Not thread-safe.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace tokenmem::wire {

class Table {
 public:
  enum class Align { kLeft, kRight };
  struct Column {
    std::string title;
    Align align = Align::kLeft;
  };

  // A table with a header row of column titles. With no titles the table has
  // no header and takes its width from the first row added.
  explicit Table(std::vector<Column> columns);

  // Missing cells print empty; extra cells are a bug (dropped).
  void AddRow(std::vector<std::string> cells);

  size_t rows() const { return rows_.size(); }

  // Columns two spaces apart, each as wide as its widest cell (counted in
  // UTF-8 characters); no trailing spaces. Every line ends with '\n'.
  std::string Render() const;

 private:
  std::vector<Column> columns_;
  bool header_;
  std::vector<std::vector<std::string>> rows_;
};

// "name  value" lines with the values aligned, for one object's fields.
std::string KeyValueLines(const std::vector<std::pair<std::string, std::string>>& fields);

}  // namespace tokenmem::wire
