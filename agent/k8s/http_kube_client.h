// HttpKubeClient: KubeClient over the API server's REST interface.
//
// Plain HTTP with an optional bearer token is what is built and tested.
// HTTPS (in-cluster: https://kubernetes.default.svc with the service-account
// CA) needs cpp-httplib's OpenSSL support, which this build does not enable:
// Create() refuses an https:// server with kFailedPrecondition. Reach the
// API server through `kubectl proxy` (http://127.0.0.1:8001) meanwhile.
//
// Thread-safe: every call opens its own connection.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "k8s/kube_client.h"

namespace tokenmem::k8s {

struct KubeClientOptions {
  std::string server;      // "https://host:port" or "http://host:port"
  std::string token_file;  // bearer token, read again on every call; empty: none
  std::string ca_file;     // HTTPS: the CA the server's certificate must chain to;
                           // empty: the system's CAs
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds request_timeout{10000};
  // A watch with no byte for this long ends (OK) so `stop` gets checked.
  std::chrono::milliseconds watch_idle_timeout{2000};
  int watch_timeout_seconds = 300;  // asked of the server
};

// The API server and credentials of a kubeconfig file's current context
// (server, and a token or tokenFile of its user). kInvalidArgument names
// what is missing.
Result<KubeClientOptions> LoadKubeconfig(const std::string& path);

class HttpKubeClient final : public KubeClient {
 public:
  static Result<std::unique_ptr<HttpKubeClient>> Create(KubeClientOptions options);

  Result<ListResult> List(const std::string& plural) override;
  Status Watch(const std::string& plural, const std::string& resource_version,
               const std::function<void(const WatchEvent&)>& on_event,
               const std::function<bool()>& stop) override;
  Result<nlohmann::json> UpdateStatus(const std::string& plural,
                                      const nlohmann::json& object) override;
  Result<nlohmann::json> Get(const std::string& plural, const std::string& name) override;
  Result<nlohmann::json> Create(const std::string& plural, const nlohmann::json& object) override;

 private:
  explicit HttpKubeClient(KubeClientOptions options) : options_(std::move(options)) {}
  Result<std::string> Token() const;

  KubeClientOptions options_;
};

}  // namespace tokenmem::k8s
