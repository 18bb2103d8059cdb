// How tokenmem-demo shows its DemoReport: a human summary or one JSON
// object. Pure functions; thread-safe.
#pragma once

#include <string>

#include "demo/runner.h"

namespace tokenmem::demo {

// `ctl_flags` are the tokenmemctl flags that reach the same agent (e.g.
// "--socket /run/tokenmem/agent.sock"), for the closing hints.
std::string ReportText(const DemoReport& report, const std::string& ctl_flags);

// Sizes in bytes, ratios in [0, 1] (null when there was nothing to divide).
std::string ReportJson(const DemoReport& report);

}  // namespace tokenmem::demo
