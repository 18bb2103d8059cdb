// The answer to GetPreferredAllocation: which of the free devices a
// container should get, so that its lease's memory sits on one NUMA node
// when it can.
//
// Rule, in order:
//   1. every device of `must_include` is taken;
//   2. if one NUMA node can supply the rest (the node of the must-include
//      devices when they all share one), the node with the fewest free
//      devices that still suffices gives them (best fit: large free nodes
//      stay whole for large requests; ties go to the lower node);
//   3. otherwise the request spans nodes, taking the must-include devices'
//      nodes first, then nodes with the most free devices first, so that
//      as few nodes as possible are touched.
// Within a node the lowest indices go first. Devices whose IDs this plugin
// did not make are used only when nothing else is left.
//
// Pure function; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "tokenmem/common/status.h"

namespace tokenmem::device_plugin {

// `size` device IDs from `available` plus `must_include` (which the kubelet
// may or may not also list in `available`). kInvalidArgument when size < 0
// or there are fewer than `size` devices to choose from; when `size` is
// smaller than must_include, must_include is returned as it is.
Result<std::vector<std::string>> PreferredAllocation(const std::vector<std::string>& available,
                                                     const std::vector<std::string>& must_include,
                                                     int size);

}  // namespace tokenmem::device_plugin
