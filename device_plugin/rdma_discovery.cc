#include "rdma_discovery.h"

#include <infiniband/verbs.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "tokenmem/common/log.h"

namespace tokenmem::device_plugin {
namespace {

namespace fs = std::filesystem;
constexpr char kLog[] = "rdma";
constexpr std::string_view kUverbs = "uverbs";

// "uverbs12" -> 12; -1 for anything else.
int UverbsNumber(std::string_view name) {
  if (name.substr(0, kUverbs.size()) != kUverbs || name.size() == kUverbs.size()) return -1;
  int n = -1;
  const char* begin = name.data() + kUverbs.size();
  auto [end, ec] = std::from_chars(begin, name.data() + name.size(), n);
  if (ec != std::errc() || end != name.data() + name.size()) return -1;
  return n;
}

std::vector<std::string> FromVerbs() {
  std::vector<std::string> names;
  int count = 0;
  ibv_device** list = ibv_get_device_list(&count);
  if (list == nullptr) {
    // ENOSYS: no kernel support; nothing to hand out either way.
    TM_LOG(Debug, kLog) << "ibv_get_device_list: " << std::strerror(errno);
    return names;
  }
  for (int i = 0; i < count; ++i) {
    if (list[i] != nullptr) names.emplace_back(list[i]->dev_name);
  }
  ibv_free_device_list(list);
  return names;
}

Result<std::vector<std::string>> FromSysfs(const std::string& sysfs_root) {
  std::vector<std::string> names;
  const fs::path dir = fs::path(sysfs_root) / "class" / "infiniband_verbs";
  std::error_code ec;
  if (!fs::exists(dir, ec)) return names;
  fs::directory_iterator it(dir, ec);
  if (ec) return IoError("cannot read " + dir.string() + ": " + ec.message());
  for (const auto& entry : it) {
    const std::string name = entry.path().filename().string();
    if (UverbsNumber(name) >= 0) names.push_back(name);
  }
  return names;
}

bool IsDeviceNode(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return false;
  // Fixtures use regular files; a directory is never a device.
  return !S_ISDIR(st.st_mode);
}

}  // namespace

Result<std::vector<std::string>> ListUverbsNames(const RdmaOptions& options) {
  std::vector<std::string> names;
  switch (options.mode) {
    case RdmaMode::kOff:
      return names;
    case RdmaMode::kVerbs:
      names = FromVerbs();
      break;
    case RdmaMode::kSysfs: {
      TM_ASSIGN_OR_RETURN(names, FromSysfs(options.sysfs_root));
      break;
    }
  }
  names.erase(std::remove_if(names.begin(), names.end(),
                             [](const std::string& n) { return UverbsNumber(n) < 0; }),
              names.end());
  std::sort(names.begin(), names.end(), [](const std::string& a, const std::string& b) {
    return UverbsNumber(a) < UverbsNumber(b);
  });
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

Result<std::vector<DeviceNode>> DiscoverRdmaDevices(const RdmaOptions& options) {
  std::vector<DeviceNode> out;
  TM_ASSIGN_OR_RETURN(std::vector<std::string> names, ListUverbsNames(options));
  const fs::path host_dir = fs::path(options.dev_root) / "infiniband";
  for (const auto& name : names) {
    const fs::path host = host_dir / name;
    if (!IsDeviceNode(host)) {
      TM_LOG(Warn, kLog) << name << " is reported but " << host.string()
                         << " does not exist; not handed to containers";
      continue;
    }
    out.push_back({"/dev/infiniband/" + name, host.string(), "rw"});
  }
  if (!out.empty()) {
    const fs::path cm = host_dir / "rdma_cm";
    if (IsDeviceNode(cm)) out.push_back({"/dev/infiniband/rdma_cm", cm.string(), "rw"});
  }
  return out;
}

}  // namespace tokenmem::device_plugin
