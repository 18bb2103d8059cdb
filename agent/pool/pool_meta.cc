#include "pool/pool_meta.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <fstream>
#include <sstream>

namespace tokenmem::pool {
namespace {

Status WriteAll(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("write", errno);
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status SyncDirectory(const std::filesystem::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open " + dir.string(), errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoError("fsync " + dir.string(), err);
  return Status::Ok();
}

}  // namespace

Status WritePoolMeta(const std::filesystem::path& pool_dir, const PoolSpec& spec) {
  std::ostringstream out;
  out << "# tokenmem pool definition; written by the agent, do not edit\n"
      << "format 1\n"
      << "name " << spec.name << "\n"
      << "block_size " << spec.block_size << "\n"
      << "dram " << spec.capacity.dram << "\n"
      << "cxl " << spec.capacity.cxl << "\n"
      << "nvme " << spec.capacity.nvme << "\n"
      << "eviction " << EvictionPolicyName(spec.eviction) << "\n"
      << "ttl_seconds " << spec.ttl_seconds << "\n"
      << "scope " << PoolScopeName(spec.scope) << "\n";
  if (!spec.allowed_namespaces.empty()) {
    out << "allowed_namespaces";
    for (const auto& ns : spec.allowed_namespaces) out << " " << ns;
    out << "\n";
  }
  const auto tmp = pool_dir / (std::string(kPoolMetaFile) + ".tmp");
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) return ErrnoError("create " + tmp.string(), errno);
  Status s = WriteAll(fd, out.str());
  if (s.ok() && ::fsync(fd) != 0) s = ErrnoError("fsync " + tmp.string(), errno);
  ::close(fd);
  TM_RETURN_IF_ERROR(s);
  if (::rename(tmp.c_str(), (pool_dir / kPoolMetaFile).c_str()) != 0) {
    return ErrnoError("rename " + tmp.string(), errno);
  }
  return SyncDirectory(pool_dir);
}

Result<PoolSpec> ReadPoolMeta(const std::filesystem::path& pool_dir) {
  const auto path = pool_dir / kPoolMetaFile;
  std::ifstream in(path);
  if (!in) return NotFound(path.string() + " does not exist");
  PoolSpec spec;
  bool format_seen = false;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty() || line[0] == '#') continue;
    auto space = line.find(' ');
    std::string key = line.substr(0, space);
    std::string value = space == std::string::npos ? "" : line.substr(space + 1);
    auto bad = [&](const std::string& why) {
      return InvalidArgument(path.string() + ":" + std::to_string(line_no) + ": " + why);
    };
    auto number = [&](uint64_t* out) -> Status {
      auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), *out);
      if (ec != std::errc() || p != value.data() + value.size())
        return bad("'" + value + "' is not a number");
      return Status::Ok();
    };
    if (key == "format") {
      if (value != "1") return bad("unknown format " + value);
      format_seen = true;
    } else if (key == "name") {
      spec.name = value;
    } else if (key == "block_size") {
      TM_RETURN_IF_ERROR(number(&spec.block_size));
    } else if (key == "dram") {
      TM_RETURN_IF_ERROR(number(&spec.capacity.dram));
    } else if (key == "cxl") {
      TM_RETURN_IF_ERROR(number(&spec.capacity.cxl));
    } else if (key == "nvme") {
      TM_RETURN_IF_ERROR(number(&spec.capacity.nvme));
    } else if (key == "eviction") {
      auto policy = ParseEvictionPolicy(value);
      if (!policy.ok()) return bad(policy.status().message());
      spec.eviction = *policy;
    } else if (key == "scope") {
      auto scope = ParsePoolScope(value);
      if (!scope.ok()) return bad(scope.status().message());
      spec.scope = *scope;
    } else if (key == "ttl_seconds") {
      TM_RETURN_IF_ERROR(number(&spec.ttl_seconds));
    } else if (key == "allowed_namespaces") {
      std::istringstream names(value);
      for (std::string ns; names >> ns;) spec.allowed_namespaces.push_back(ns);
    } else {
      return bad("unknown key '" + key + "'");
    }
  }
  if (!format_seen) return InvalidArgument(path.string() + ": no 'format' line");
  TM_RETURN_IF_ERROR(ValidatePoolSpec(spec).WithContext(path.string()));
  return spec;
}

}  // namespace tokenmem::pool
