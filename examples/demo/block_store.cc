#include "demo/block_store.h"

namespace tokenmem::demo {

Status CallError(std::string_view call, const Status& status) {
  if (status.ok()) return status;
  return Status(status.code(), std::string(call) + ": " +
                                   std::string(StatusCodeName(status.code())) + ": " +
                                   status.message());
}

}  // namespace tokenmem::demo
