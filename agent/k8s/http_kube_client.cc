#include "k8s/http_kube_client.h"

#include <httplib.h>
#include <yaml-cpp/yaml.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace tokenmem::k8s {
namespace {

// Percent-encodes everything outside RFC 3986's unreserved set.
std::string Escape(const std::string& text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string CollectionPath(const std::string& plural) {
  return std::string("/apis/") + kGroupVersion + "/" + plural;
}

std::string ObjectPath(const std::string& plural, const std::string& name) {
  return CollectionPath(plural) + "/" + Escape(name);
}

// The API server's own words when it sent a Status object.
std::string ServerMessage(const std::string& body) {
  auto parsed = nlohmann::json::parse(body, nullptr, false);
  if (parsed.is_object() && parsed.contains("message") && parsed["message"].is_string()) {
    return parsed["message"].get<std::string>();
  }
  return body.substr(0, 200);
}

Status HttpError(const std::string& what, int code, const std::string& body) {
  std::string message = what + ": HTTP " + std::to_string(code) + ": " + ServerMessage(body);
  switch (code) {
    case 404:
      return NotFound(message);
    case 409:  // a create finds the object; an update lost a race
      return what.rfind("create", 0) == 0 ? AlreadyExists(message) : FailedPrecondition(message);
    case 410:
      return GoneError(message);
    case 400:
    case 422:
      return InvalidArgument(message);
    case 401:
    case 403:
      return PermissionDenied(message);
    default:
      return code >= 500 ? Unavailable(message) : Internal(message);
  }
}

Result<nlohmann::json> ParseObject(const std::string& what, const std::string& body) {
  auto parsed = nlohmann::json::parse(body, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return Internal(what + ": the API server sent a body that is not a JSON object");
  }
  return parsed;
}

}  // namespace

bool IsGone(const Status& status) {
  return status.code() == StatusCode::kFailedPrecondition &&
         status.message().rfind(kGoneMessage, 0) == 0;
}

Status GoneError(std::string detail) {
  return FailedPrecondition(std::string(kGoneMessage) + ": " + detail);
}

Result<KubeClientOptions> LoadKubeconfig(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    return InvalidArgument("kubeconfig " + path + ": " + e.what());
  }
  try {
    std::string context_name =
        root["current-context"] ? root["current-context"].as<std::string>() : "";
    if (context_name.empty()) return InvalidArgument("kubeconfig " + path + ": no current-context");
    YAML::Node context;
    bool found = false;
    for (const auto& c : root["contexts"]) {
      if (c["name"] && c["name"].as<std::string>() == context_name && c["context"]) {
        context = c["context"];
        found = true;
      }
    }
    if (!found)
      return InvalidArgument("kubeconfig " + path + ": context " + context_name + " not found");
    std::string cluster_name = context["cluster"] ? context["cluster"].as<std::string>() : "";
    std::string user_name = context["user"] ? context["user"].as<std::string>() : "";
    KubeClientOptions options;
    for (const auto& c : root["clusters"]) {
      if (c["name"] && c["name"].as<std::string>() == cluster_name && c["cluster"]) {
        if (c["cluster"]["server"]) options.server = c["cluster"]["server"].as<std::string>();
        if (c["cluster"]["certificate-authority"]) {
          options.ca_file = c["cluster"]["certificate-authority"].as<std::string>();
        }
      }
    }
    if (options.server.empty()) {
      return InvalidArgument("kubeconfig " + path + ": cluster " + cluster_name + " has no server");
    }
    for (const auto& u : root["users"]) {
      if (u["name"] && u["name"].as<std::string>() == user_name && u["user"]) {
        if (u["user"]["tokenFile"]) options.token_file = u["user"]["tokenFile"].as<std::string>();
        if (u["user"]["token"]) {
          return InvalidArgument("kubeconfig " + path +
                                 ": inline user tokens are not read; use tokenFile");
        }
      }
    }
    return options;
  } catch (const YAML::Exception& e) {
    return InvalidArgument("kubeconfig " + path + ": " + e.what());
  }
}

Result<std::unique_ptr<HttpKubeClient>> HttpKubeClient::Create(KubeClientOptions options) {
  const bool https = options.server.rfind("https://", 0) == 0;
  if (!https && options.server.rfind("http://", 0) != 0) {
    return InvalidArgument("kubernetes: api server '" + options.server +
                           "' must start with https:// or http://");
  }
  if (https && !options.ca_file.empty() && !std::filesystem::exists(options.ca_file)) {
    return NotFound("kubernetes: CA file " + options.ca_file + " does not exist");
  }
  while (!options.server.empty() && options.server.back() == '/') options.server.pop_back();
  return std::unique_ptr<HttpKubeClient>(new HttpKubeClient(std::move(options)));
}

Result<std::string> HttpKubeClient::Token() const {
  if (options_.token_file.empty()) return std::string();
  std::ifstream in(options_.token_file);
  if (!in) return ErrnoError("reading token file " + options_.token_file, errno);
  std::stringstream text;
  text << in.rdbuf();
  std::string token = text.str();
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) {
    token.pop_back();
  }
  return token;
}

namespace {

struct Connection {
  httplib::Client client;
  httplib::Headers headers;
  explicit Connection(const std::string& server) : client(server) {}
};

Result<std::unique_ptr<Connection>> Connect(const KubeClientOptions& options,
                                            const std::string& token,
                                            std::chrono::milliseconds read_timeout) {
  auto connection = std::make_unique<Connection>(options.server);
  if (!connection->client.is_valid())
    return InvalidArgument("kubernetes: bad server " + options.server);
  if (options.server.rfind("https://", 0) == 0) {
    // The API server's certificate must chain to the cluster's CA (or the
    // system's when none is given); it is never skipped.
    if (!options.ca_file.empty()) connection->client.set_ca_cert_path(options.ca_file);
    connection->client.enable_server_certificate_verification(true);
  }
  connection->client.set_connection_timeout(options.connect_timeout);
  connection->client.set_read_timeout(read_timeout);
  connection->client.set_write_timeout(options.request_timeout);
  connection->headers.emplace("Accept", "application/json");
  if (!token.empty()) connection->headers.emplace("Authorization", "Bearer " + token);
  return connection;
}

Status TransportError(const std::string& what, httplib::Error error) {
  return Unavailable(what + ": " + httplib::to_string(error));
}

}  // namespace

Result<ListResult> HttpKubeClient::List(const std::string& plural) {
  TM_ASSIGN_OR_RETURN(std::string token, Token());
  TM_ASSIGN_OR_RETURN(auto connection, Connect(options_, token, options_.request_timeout));
  const std::string what = "list " + plural;
  auto response = connection->client.Get(CollectionPath(plural), connection->headers);
  if (!response) return TransportError(what, response.error());
  if (response->status != 200) return HttpError(what, response->status, response->body);
  TM_ASSIGN_OR_RETURN(nlohmann::json body, ParseObject(what, response->body));
  ListResult result;
  if (body.contains("metadata") && body["metadata"].contains("resourceVersion") &&
      body["metadata"]["resourceVersion"].is_string()) {
    result.resource_version = body["metadata"]["resourceVersion"].get<std::string>();
  }
  if (body.contains("items") && body["items"].is_array()) {
    for (auto& item : body["items"]) {
      if (item.is_object()) result.items.push_back(std::move(item));
    }
  }
  return result;
}

Status HttpKubeClient::Watch(const std::string& plural, const std::string& resource_version,
                             const std::function<void(const WatchEvent&)>& on_event,
                             const std::function<bool()>& stop) {
  TM_ASSIGN_OR_RETURN(std::string token, Token());
  TM_ASSIGN_OR_RETURN(auto connection, Connect(options_, token, options_.watch_idle_timeout));
  const std::string what = "watch " + plural;
  std::string path = CollectionPath(plural) + "?watch=1&allowWatchBookmarks=true&timeoutSeconds=" +
                     std::to_string(options_.watch_timeout_seconds);
  if (!resource_version.empty()) {
    path += "&resourceVersion=" + Escape(resource_version);
  }

  int http_status = 0;
  std::string error_body;  // the body of a non-200 answer
  std::string pending;     // bytes after the last newline
  Status outcome;
  bool stopped = false;
  auto handle_line = [&](const std::string& line) -> bool {
    if (line.find_first_not_of(" \r\t") == std::string::npos) return true;
    auto parsed = nlohmann::json::parse(line, nullptr, false);
    if (parsed.is_discarded() || !parsed.is_object() || !parsed.contains("type") ||
        !parsed["type"].is_string()) {
      outcome = Internal(what + ": a watch event that is not a JSON object with a type");
      return false;
    }
    WatchEvent event{parsed["type"].get<std::string>(),
                     parsed.contains("object") ? parsed["object"] : nlohmann::json::object()};
    if (event.type == "ERROR") {
      int code = event.object.value("code", 0);
      std::string message = event.object.value("message", std::string("watch error"));
      outcome = code == 410 ? GoneError(message) : HttpError(what, code, message);
      return false;
    }
    on_event(event);
    if (stop()) {
      stopped = true;
      return false;
    }
    return true;
  };
  auto response = connection->client.Get(
      path, connection->headers,
      [&](const httplib::Response& r) {
        http_status = r.status;
        return true;
      },
      [&](const char* data, size_t size) {
        if (http_status != 200) {
          error_body.append(data, size);
          return true;
        }
        pending.append(data, size);
        size_t start = 0;
        for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
          if (!handle_line(pending.substr(start, nl - start))) return false;
        }
        pending.erase(0, start);
        return true;
      });
  if (!outcome.ok()) return outcome;
  if (stopped) return Status::Ok();
  if (!response) {
    // An idle stream times out on read: the normal way out so `stop` is seen.
    if (response.error() == httplib::Error::Read && http_status == 200) return Status::Ok();
    if (response.error() == httplib::Error::Canceled) return Status::Ok();
    return TransportError(what, response.error());
  }
  if (http_status != 200) return HttpError(what, http_status, error_body);
  if (!pending.empty() && !handle_line(pending) && !outcome.ok()) return outcome;
  return Status::Ok();
}

Result<nlohmann::json> HttpKubeClient::UpdateStatus(const std::string& plural,
                                                    const nlohmann::json& object) {
  std::string name = object.contains("metadata") ? object["metadata"].value("name", "") : "";
  if (name.empty()) return InvalidArgument("update status: the object has no metadata.name");
  TM_ASSIGN_OR_RETURN(std::string token, Token());
  TM_ASSIGN_OR_RETURN(auto connection, Connect(options_, token, options_.request_timeout));
  const std::string what = "update status of " + plural + "/" + name;
  auto response = connection->client.Put(ObjectPath(plural, name) + "/status", connection->headers,
                                         object.dump(), "application/json");
  if (!response) return TransportError(what, response.error());
  if (response->status != 200 && response->status != 201) {
    return HttpError(what, response->status, response->body);
  }
  return ParseObject(what, response->body);
}

Result<nlohmann::json> HttpKubeClient::Get(const std::string& plural, const std::string& name) {
  TM_ASSIGN_OR_RETURN(std::string token, Token());
  TM_ASSIGN_OR_RETURN(auto connection, Connect(options_, token, options_.request_timeout));
  const std::string what = "get " + plural + "/" + name;
  auto response = connection->client.Get(ObjectPath(plural, name), connection->headers);
  if (!response) return TransportError(what, response.error());
  if (response->status != 200) return HttpError(what, response->status, response->body);
  return ParseObject(what, response->body);
}

Result<nlohmann::json> HttpKubeClient::Create(const std::string& plural,
                                              const nlohmann::json& object) {
  TM_ASSIGN_OR_RETURN(std::string token, Token());
  TM_ASSIGN_OR_RETURN(auto connection, Connect(options_, token, options_.request_timeout));
  const std::string what = "create " + plural;
  auto response = connection->client.Post(CollectionPath(plural), connection->headers,
                                          object.dump(), "application/json");
  if (!response) return TransportError(what, response.error());
  if (response->status != 200 && response->status != 201) {
    return HttpError(what, response->status, response->body);
  }
  return ParseObject(what, response->body);
}

}  // namespace tokenmem::k8s
