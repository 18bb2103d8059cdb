#include "pool/lease_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <fstream>
#include <sstream>

namespace tokenmem::pool {
namespace {

std::string Hex(const std::string& text) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : text) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

bool Unhex(const std::string& hex, std::string* out) {
  if (hex.size() % 2) return false;
  out->clear();
  for (size_t i = 0; i < hex.size(); i += 2) {
    unsigned value = 0;
    auto [p, ec] = std::from_chars(hex.data() + i, hex.data() + i + 2, value, 16);
    if (ec != std::errc() || p != hex.data() + i + 2) return false;
    out->push_back(static_cast<char>(value));
  }
  return true;
}

std::vector<std::string> SplitOn(const std::string& text, char sep) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream in(text);
  while (std::getline(in, part, sep)) parts.push_back(part);
  if (!text.empty() && text.back() == sep) parts.emplace_back();
  return parts;
}

template <typename T>
bool Number(const std::string& text, T* out) {
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && p == text.data() + text.size();
}

}  // namespace

Result<std::vector<StoredLease>> ReadLeaseFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return NotFound(path.string() + " does not exist");
  std::vector<StoredLease> leases;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    auto bad = [&](const std::string& why) {
      return InvalidArgument(path.string() + ":" + std::to_string(line_no) + ": " + why);
    };
    auto f = SplitOn(line, '\t');
    const bool v1 = f.size() == 8 && f[0] == "v1";
    const bool v2 = f.size() == 10 && f[0] == "v2";
    if (!v1 && !v2) return bad("not a version 1 or 2 lease line");
    StoredLease l;
    l.id = f[1];
    l.secret = f[2];
    if (l.id.empty() || l.secret.empty()) return bad("empty id or secret");
    if (!Number(f[3], &l.options.quota_bytes) || l.options.quota_bytes == 0)
      return bad("bad quota");
    if (f[4] != "0" && f[4] != "1") return bad("bad read-only flag");
    l.options.read_only = f[4] == "1";
    if (!Number(f[5], &l.created_unix_s)) return bad("bad creation time");
    if (!f[6].empty()) l.options.pools = SplitOn(f[6], ',');
    if (!Unhex(f[7], &l.options.owner)) return bad("bad owner");
    if (v2) {
      if (!Unhex(f[8], &l.options.namespace_name)) return bad("bad namespace");
      if (f[9] != "0" && f[9] != "1") return bad("bad namespace-pending flag");
      l.options.namespace_pending = f[9] == "1";
    }
    leases.push_back(std::move(l));
  }
  return leases;
}

Status WriteLeaseFile(const std::filesystem::path& path, const std::vector<StoredLease>& leases) {
  std::string text;
  for (const auto& l : leases) {
    std::string pools;
    for (const auto& p : l.options.pools) pools += (pools.empty() ? "" : ",") + p;
    text += "v2\t" + l.id + "\t" + l.secret + "\t" + std::to_string(l.options.quota_bytes) + "\t" +
            (l.options.read_only ? "1" : "0") + "\t" + std::to_string(l.created_unix_s) + "\t" +
            pools + "\t" + Hex(l.options.owner) + "\t" + Hex(l.options.namespace_name) + "\t" +
            (l.options.namespace_pending ? "1" : "0") + "\n";
  }
  const auto tmp = path.string() + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoError("create " + tmp, errno);
  size_t done = 0;
  Status s;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      s = ErrnoError("write " + tmp, errno);
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (s.ok() && ::fsync(fd) != 0) s = ErrnoError("fsync " + tmp, errno);
  ::close(fd);
  if (s.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) s = ErrnoError("rename " + tmp, errno);
  if (!s.ok()) ::unlink(tmp.c_str());
  return s;
}

}  // namespace tokenmem::pool
