// KubeClient: the few Kubernetes API calls the reconciler needs, for
// cluster-scoped custom resources of group tokenmem.io/v1alpha1.
//
// Objects travel as JSON (nlohmann::json), exactly as the API server sends
// them. `plural` is the resource's plural name ("tokenmemorypools").
// Implementations must be safe to call from several threads at once.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tokenmem/common/status.h"

namespace tokenmem::k8s {

inline constexpr const char* kGroupVersion = "tokenmem.io/v1alpha1";
inline constexpr const char* kPoolPlural = "tokenmemorypools";
inline constexpr const char* kNodePlural = "tokenmemorynodes";

struct ListResult {
  std::vector<nlohmann::json> items;
  std::string resource_version;  // the list's; watch from here
};

struct WatchEvent {
  std::string type;  // ADDED, MODIFIED, DELETED, BOOKMARK
  nlohmann::json object;
};

// Watch answers this (kFailedPrecondition with this message prefix) when the
// resourceVersion is too old (HTTP 410 or an ERROR event with code 410):
// the caller must list again.
inline constexpr const char* kGoneMessage = "resource version gone";
bool IsGone(const Status& status);
Status GoneError(std::string detail);

class KubeClient {
 public:
  virtual ~KubeClient() = default;

  // Every object and the list's resourceVersion. kUnavailable when the API
  // server cannot be reached; other codes for HTTP errors.
  virtual Result<ListResult> List(const std::string& plural) = 0;

  // Streams the changes after `resource_version`, one call of `on_event` per
  // event, in order, from the calling thread. Returns OK when the server
  // ends the stream, the connection goes idle past the client's idle
  // timeout, or `stop` returns true (checked after each event and on idle);
  // IsGone() when the version is too old; kUnavailable when unreachable.
  virtual Status Watch(const std::string& plural, const std::string& resource_version,
                       const std::function<void(const WatchEvent&)>& on_event,
                       const std::function<bool()>& stop) = 0;

  // Writes object["status"] through the status subresource (PUT
  // .../<name>/status with the whole object; its metadata.resourceVersion,
  // when present, makes the write conditional: kFailedPrecondition on a
  // conflict). Returns the object the server stored.
  virtual Result<nlohmann::json> UpdateStatus(const std::string& plural,
                                              const nlohmann::json& object) = 0;

  // kNotFound when absent.
  virtual Result<nlohmann::json> Get(const std::string& plural, const std::string& name) = 0;
  // kAlreadyExists when present.
  virtual Result<nlohmann::json> Create(const std::string& plural,
                                        const nlohmann::json& object) = 0;
};

}  // namespace tokenmem::k8s
