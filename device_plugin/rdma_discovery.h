// RDMA device nodes for containers: the uverbs character devices of the
// node's RDMA NICs (/dev/infiniband/uverbsN) and the connection manager
// (/dev/infiniband/rdma_cm), as DeviceSpecs a container can use with
// libibverbs and librdmacm.
//
// Which uverbs devices exist comes from libibverbs (rdma-core's
// ibv_get_device_list, RdmaMode::kVerbs) or from a sysfs tree
// (<sysfs_root>/class/infiniband_verbs/uverbsN, RdmaMode::kSysfs, which
// tests feed with a fixture). Each is then looked up as
// <dev_root>/infiniband/<name>; one missing there is skipped (logged).
// rdma_cm is added when it exists and at least one uverbs device was found.
// In the container the nodes keep their usual paths (/dev/infiniband/...).
//
// Thread-safe: reads the system on every call, holds no state.
#pragma once

#include <string>
#include <vector>

#include "config.h"
#include "tokenmem/common/status.h"

namespace tokenmem::device_plugin {

struct DeviceNode {
  std::string container_path;
  std::string host_path;
  std::string permissions;  // "rw"

  bool operator==(const DeviceNode&) const = default;
};

struct RdmaOptions {
  RdmaMode mode = RdmaMode::kVerbs;
  std::string dev_root = "/dev";
  std::string sysfs_root = "/sys";
};

// The device nodes to hand a container, in name order (uverbs devices by
// number, rdma_cm last); empty with RdmaMode::kOff or without RDMA NICs.
// kIoError when the sysfs directory exists but cannot be read.
Result<std::vector<DeviceNode>> DiscoverRdmaDevices(const RdmaOptions& options);

// The uverbs device names ("uverbs0", ...) the chosen source reports,
// sorted by number.
Result<std::vector<std::string>> ListUverbsNames(const RdmaOptions& options);

}  // namespace tokenmem::device_plugin
