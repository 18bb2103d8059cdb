// YAML -> AgentConfig. Every yaml-cpp call sits inside LoadConfigYaml's
// try block; the readers below only use calls that do not throw on the
// node types they check for first.
#include "config/config_loader.h"

#include <fcntl.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <functional>
#include <initializer_list>
#include <set>

#include "config/config_values.h"

namespace tokenmem::config {
namespace {

inline constexpr size_t kMaxConfigFileBytes = 16u << 20;

std::string_view TypeName(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
      return "nothing (null)";
    case YAML::NodeType::Scalar:
      return "a scalar";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Undefined:
      break;
  }
  return "an undefined node";
}

// Reads one document into an AgentConfig, remembering where it is for errors.
class Reader {
 public:
  explicit Reader(std::string_view source) : source_(source) {}

  Status Error(const YAML::Mark& mark, std::string_view path, std::string_view problem) const {
    std::string m(source_);
    if (!mark.is_null()) m += ":" + std::to_string(mark.line + 1);
    m += ": ";
    m += path;
    m += ": ";
    m += problem;
    return InvalidArgument(std::move(m));
  }

  // A node's own mark, or its key's when the node has none (a missing value).
  static YAML::Mark MarkOf(const YAML::Node& n, const YAML::Mark& fallback) {
    YAML::Mark m = n.Mark();
    return m.is_null() ? fallback : m;
  }

  using KeyFn = std::function<Status(const std::string& key, const YAML::Node& value,
                                     const std::string& path, const YAML::Mark& mark)>;

  // Calls fn for each key of the mapping `map` (null counts as empty). Unknown and repeated keys
  // are errors.
  Status ForEachKey(const YAML::Node& map, const std::string& path, const YAML::Mark& at,
                    std::initializer_list<std::string_view> known, const KeyFn& fn) const {
    if (map.IsNull()) return Status::Ok();
    if (!map.IsMap()) {
      return Error(MarkOf(map, at), path, "expected a mapping, got " + std::string(TypeName(map)));
    }
    std::set<std::string> seen;
    for (const auto& entry : map) {
      // Copies: yaml-cpp nodes are handles, and the iterator's pair is a temporary.
      const YAML::Node k = entry.first;
      const YAML::Node v = entry.second;
      const std::string prefix = path.empty() ? "" : path + ".";
      if (!k.IsScalar()) {
        return Error(k.Mark(), path.empty() ? "(top level)" : path, "keys must be plain names");
      }
      const std::string& key = k.Scalar();
      const std::string key_path = prefix + key;
      bool is_known = false;
      for (auto name : known) is_known = is_known || name == key;
      if (!is_known) {
        std::string list;
        for (auto name : known) {
          if (!list.empty()) list += ", ";
          list += name;
        }
        return Error(k.Mark(), key_path, "unknown key (known: " + list + ")");
      }
      if (!seen.insert(key).second) return Error(k.Mark(), key_path, "key given twice");
      TM_RETURN_IF_ERROR(fn(key, v, key_path, MarkOf(v, k.Mark())));
    }
    return Status::Ok();
  }

  // A scalar's text; null reads as "" when null_ok.
  Status Text(const YAML::Node& n, const std::string& path, const YAML::Mark& at,
              std::string_view expected, bool null_ok, std::string* out) const {
    if (n.IsNull() && null_ok) {
      out->clear();
      return Status::Ok();
    }
    if (!n.IsScalar()) {
      return Error(at, path,
                   "expected " + std::string(expected) + ", got " + std::string(TypeName(n)));
    }
    *out = n.Scalar();
    return Status::Ok();
  }

  Status String(const YAML::Node& n, const std::string& path, const YAML::Mark& at,
                std::string* out) const {
    return Text(n, path, at, "a string", true, out);
  }

  Status Path(const YAML::Node& n, const std::string& path, const YAML::Mark& at,
              std::filesystem::path* out) const {
    std::string s;
    TM_RETURN_IF_ERROR(Text(n, path, at, "a path", true, &s));
    *out = s;
    return Status::Ok();
  }

  // Runs `parse` on the scalar's text and turns its error into one that names path and line.
  template <typename T, typename Parse>
  Status Value(const YAML::Node& n, const std::string& path, const YAML::Mark& at,
               std::string_view expected, Parse parse, T* out) const {
    std::string s;
    TM_RETURN_IF_ERROR(Text(n, path, at, expected, false, &s));
    Result<T> r = parse(s);
    if (!r.ok()) return Error(at, path, r.status().message());
    *out = *r;
    return Status::Ok();
  }

  Status Size(const YAML::Node& n, const std::string& path, const YAML::Mark& at,
              uint64_t* out) const {
    return Value(n, path, at, "a byte size", ParseSize, out);
  }
  Status U32(const YAML::Node& n, const std::string& path, const YAML::Mark& at,
             uint32_t* out) const {
    return Value(n, path, at, "a whole number", ParseUint32, out);
  }
  Status U64(const YAML::Node& n, const std::string& path, const YAML::Mark& at,
             uint64_t* out) const {
    return Value(n, path, at, "a whole number", ParseUint64, out);
  }
  Status Fraction(const YAML::Node& n, const std::string& path, const YAML::Mark& at,
                  double* out) const {
    return Value(n, path, at, "a number", ParseDouble, out);
  }
  Status Octal(const YAML::Node& n, const std::string& path, const YAML::Mark& at,
               uint32_t* out) const {
    return Value(n, path, at, "an octal mode such as \"0660\"", ParseOctalMode, out);
  }
  Status Bool(const YAML::Node& n, const std::string& path, const YAML::Mark& at, bool* out) const {
    return Value(n, path, at, "true or false", ParseBool, out);
  }

  Status IntList(const YAML::Node& n, const std::string& path, const YAML::Mark& at,
                 std::vector<int>* out) const {
    out->clear();
    if (n.IsNull()) return Status::Ok();
    if (!n.IsSequence()) {
      return Error(at, path,
                   "expected a list of NUMA node numbers, got " + std::string(TypeName(n)));
    }
    for (size_t i = 0; i < n.size(); ++i) {
      const YAML::Node item = n[i];
      const std::string item_path = path + "[" + std::to_string(i) + "]";
      int v = 0;
      TM_RETURN_IF_ERROR(
          Value(item, item_path, MarkOf(item, at), "a NUMA node number", ParseInt, &v));
      out->push_back(v);
    }
    return Status::Ok();
  }

  // A list of numeric user or group ids (names are not looked up: the
  // agent's container need not share the node's passwd and group files).
  Status IdList(const YAML::Node& n, const std::string& path, const YAML::Mark& at,
                std::string_view what, std::vector<uint32_t>* out) const {
    out->clear();
    if (n.IsNull()) return Status::Ok();
    if (!n.IsSequence()) {
      return Error(
          at, path,
          "expected a list of numeric " + std::string(what) + "s, got " + std::string(TypeName(n)));
    }
    for (size_t i = 0; i < n.size(); ++i) {
      const YAML::Node item = n[i];
      uint32_t v = 0;
      TM_RETURN_IF_ERROR(Value(item, path + "[" + std::to_string(i) + "]", MarkOf(item, at),
                               "a numeric " + std::string(what), ParseUint32, &v));
      out->push_back(v);
    }
    return Status::Ok();
  }

  Status StringList(const YAML::Node& n, const std::string& path, const YAML::Mark& at,
                    std::string_view expected, std::vector<std::string>* out) const {
    out->clear();
    if (n.IsNull()) return Status::Ok();
    if (!n.IsSequence()) {
      return Error(
          at, path,
          "expected a list of " + std::string(expected) + ", got " + std::string(TypeName(n)));
    }
    for (size_t i = 0; i < n.size(); ++i) {
      const YAML::Node item = n[i];
      std::string v;
      TM_RETURN_IF_ERROR(
          Text(item, path + "[" + std::to_string(i) + "]", MarkOf(item, at), expected, false, &v));
      out->push_back(std::move(v));
    }
    return Status::Ok();
  }

  Status Document(const YAML::Node& root, AgentConfig* c) const {
    YAML::Mark top;  // line 1
    if (!root.IsNull() && !root.IsMap()) {
      return Error(MarkOf(root, top), "(top level)",
                   "expected a mapping, got " + std::string(TypeName(root)));
    }
    return ForEachKey(root, "", top,
                      {"node_name", "log_level", "sysfs_root", "control", "http", "tiers",
                       "movement", "pools", "kubernetes", "remote", "cluster", "limits"},
                      [&](const std::string& key, const YAML::Node& v, const std::string& path,
                          const YAML::Mark& at) -> Status {
                        if (key == "node_name") return String(v, path, at, &c->node_name);
                        if (key == "log_level") return String(v, path, at, &c->log_level);
                        if (key == "sysfs_root") return Path(v, path, at, &c->sysfs_root);
                        if (key == "control") return Control(v, path, at, &c->control);
                        if (key == "http") return Http(v, path, at, &c->http);
                        if (key == "tiers") return Tiers(v, path, at, c);
                        if (key == "movement") return Movement(v, path, at, &c->movement);
                        if (key == "kubernetes") return Kubernetes(v, path, at, &c->kubernetes);
                        if (key == "remote") return Remote(v, path, at, &c->remote);
                        if (key == "cluster") return Cluster(v, path, at, &c->cluster);
                        if (key == "limits") return Limits(v, path, at, &c->limits);
                        return Pools(v, path, at, &c->pools);
                      });
  }

  Status Control(const YAML::Node& n, const std::string& path, const YAML::Mark& at,
                 ControlConfig* c) const {
    return ForEachKey(n, path, at,
                      {"socket", "socket_mode", "data_socket", "data_socket_mode", "admin_uids",
                       "admin_gids", "tcp_listen", "admin_token_file", "tls_cert_file",
                       "tls_key_file", "tls_client_ca_file", "max_message_size"},
                      [&](const std::string& key, const YAML::Node& v, const std::string& p,
                          const YAML::Mark& m) -> Status {
                        if (key == "socket") return Path(v, p, m, &c->socket_path);
                        if (key == "socket_mode") return Octal(v, p, m, &c->socket_mode);
                        if (key == "data_socket") return Path(v, p, m, &c->data_socket);
                        if (key == "data_socket_mode") return Octal(v, p, m, &c->data_socket_mode);
                        if (key == "admin_uids") return IdList(v, p, m, "uid", &c->admin_uids);
                        if (key == "admin_gids") return IdList(v, p, m, "gid", &c->admin_gids);
                        if (key == "tcp_listen") return String(v, p, m, &c->tcp_listen);
                        if (key == "admin_token_file") return Path(v, p, m, &c->admin_token_file);
                        if (key == "tls_cert_file") return Path(v, p, m, &c->tls_cert_file);
                        if (key == "tls_key_file") return Path(v, p, m, &c->tls_key_file);
                        if (key == "tls_client_ca_file")
                          return Path(v, p, m, &c->tls_client_ca_file);
                        return Size(v, p, m, &c->max_message_bytes);
                      });
  }

  Status Http(const YAML::Node& n, const std::string& path, const YAML::Mark& at,
              HttpConfig* h) const {
    return ForEachKey(n, path, at, {"listen", "probe_listen"},
                      [&](const std::string& key, const YAML::Node& v, const std::string& p,
                          const YAML::Mark& m) -> Status {
                        if (key == "probe_listen") return String(v, p, m, &h->probe_listen);
                        return String(v, p, m, &h->listen);
                      });
  }

  Status Tiers(const YAML::Node& n, const std::string& path, const YAML::Mark& at,
               AgentConfig* c) const {
    return ForEachKey(n, path, at, {"dram", "cxl", "nvme"},
                      [&](const std::string& key, const YAML::Node& v, const std::string& p,
                          const YAML::Mark& m) -> Status {
                        if (key == "dram") return MemoryTier(v, p, m, &c->dram);
                        if (key == "cxl") return MemoryTier(v, p, m, &c->cxl);
                        return Nvme(v, p, m, &c->nvme);
                      });
  }

  Status MemoryTier(const YAML::Node& n, const std::string& path, const YAML::Mark& at,
                    MemoryTierConfig* t) const {
    return ForEachKey(n, path, at, {"capacity", "numa_nodes"},
                      [&](const std::string& key, const YAML::Node& v, const std::string& p,
                          const YAML::Mark& m) -> Status {
                        if (key == "capacity") return Size(v, p, m, &t->capacity_bytes);
                        return IntList(v, p, m, &t->numa_nodes);
                      });
  }

  Status Nvme(const YAML::Node& n, const std::string& path, const YAML::Mark& at,
              NvmeTierConfig* t) const {
    return ForEachKey(n, path, at,
                      {"directory", "capacity", "segment_size", "queue_depth", "create_directory"},
                      [&](const std::string& key, const YAML::Node& v, const std::string& p,
                          const YAML::Mark& m) -> Status {
                        if (key == "directory") return Path(v, p, m, &t->directory);
                        if (key == "capacity") return Size(v, p, m, &t->capacity_bytes);
                        if (key == "segment_size") return Size(v, p, m, &t->segment_bytes);
                        if (key == "queue_depth") return U32(v, p, m, &t->queue_depth);
                        return Bool(v, p, m, &t->create_directory);
                      });
  }

  Status Kubernetes(const YAML::Node& n, const std::string& path, const YAML::Mark& at,
                    KubernetesConfig* k) const {
    return ForEachKey(n, path, at,
                      {"enabled", "api_server", "token_file", "ca_file", "kubeconfig",
                       "node_status_interval_s", "backoff_initial_ms", "backoff_max_ms"},
                      [&](const std::string& key, const YAML::Node& v, const std::string& p,
                          const YAML::Mark& m) -> Status {
                        if (key == "enabled") return Bool(v, p, m, &k->enabled);
                        if (key == "api_server") return String(v, p, m, &k->api_server);
                        if (key == "token_file") return Path(v, p, m, &k->token_file);
                        if (key == "ca_file") return Path(v, p, m, &k->ca_file);
                        if (key == "kubeconfig") return Path(v, p, m, &k->kubeconfig);
                        if (key == "node_status_interval_s") {
                          return U32(v, p, m, &k->node_status_interval_s);
                        }
                        if (key == "backoff_initial_ms") {
                          return U32(v, p, m, &k->backoff_initial_ms);
                        }
                        return U32(v, p, m, &k->backoff_max_ms);
                      });
  }

  Status Remote(const YAML::Node& n, const std::string& path, const YAML::Mark& at,
                RemoteConfig* r) const {
    return ForEachKey(n, path, at, {"listen", "max_connections", "workers", "max_batch_size"},
                      [&](const std::string& key, const YAML::Node& v, const std::string& p,
                          const YAML::Mark& m) -> Status {
                        if (key == "listen") return String(v, p, m, &r->listen);
                        if (key == "max_connections") return U32(v, p, m, &r->max_connections);
                        if (key == "workers") return U32(v, p, m, &r->workers);
                        return Size(v, p, m, &r->max_batch_bytes);
                      });
  }

  Status Limits(const YAML::Node& n, const std::string& path, const YAML::Mark& at,
                LimitsConfig* l) const {
    return ForEachKey(
        n, path, at,
        {"local_max_connections", "local_max_connections_per_client", "hello_timeout_ms",
         "remote_max_connections_per_peer", "remote_max_requests_per_connection",
         "remote_max_bytes_per_connection", "remote_max_bytes_per_lease",
         "remote_max_queued_requests", "max_pinned_blocks_per_lease", "http_max_connections",
         "http_max_connections_per_peer", "http_connection_timeout_ms"},
        [&](const std::string& key, const YAML::Node& v, const std::string& p,
            const YAML::Mark& m) -> Status {
          if (key == "local_max_connections") return U32(v, p, m, &l->local_max_connections);
          if (key == "local_max_connections_per_client") {
            return U32(v, p, m, &l->local_max_connections_per_client);
          }
          if (key == "hello_timeout_ms") return U32(v, p, m, &l->hello_timeout_ms);
          if (key == "remote_max_connections_per_peer") {
            return U32(v, p, m, &l->remote_max_connections_per_peer);
          }
          if (key == "remote_max_requests_per_connection") {
            return U32(v, p, m, &l->remote_max_requests_per_connection);
          }
          if (key == "remote_max_bytes_per_connection") {
            return Size(v, p, m, &l->remote_max_bytes_per_connection);
          }
          if (key == "remote_max_bytes_per_lease") {
            return Size(v, p, m, &l->remote_max_bytes_per_lease);
          }
          if (key == "remote_max_queued_requests") {
            return U32(v, p, m, &l->remote_max_queued_requests);
          }
          if (key == "max_pinned_blocks_per_lease") {
            return U32(v, p, m, &l->max_pinned_blocks_per_lease);
          }
          if (key == "http_max_connections") return U32(v, p, m, &l->http_max_connections);
          if (key == "http_max_connections_per_peer") {
            return U32(v, p, m, &l->http_max_connections_per_peer);
          }
          return U32(v, p, m, &l->http_connection_timeout_ms);
        });
  }

  Status Cluster(const YAML::Node& n, const std::string& path, const YAML::Mark& at,
                 ClusterConfig* c) const {
    return ForEachKey(n, path, at,
                      {"peers", "dns_name", "heartbeat_interval_ms", "heartbeat_timeout_ms",
                       "dns_refresh_ms", "secret_file", "forward_queue_blocks"},
                      [&](const std::string& key, const YAML::Node& v, const std::string& p,
                          const YAML::Mark& m) -> Status {
                        if (key == "peers") return StringList(v, p, m, "host:port", &c->peers);
                        if (key == "dns_name") return String(v, p, m, &c->dns_name);
                        if (key == "heartbeat_interval_ms") {
                          return U32(v, p, m, &c->heartbeat_interval_ms);
                        }
                        if (key == "heartbeat_timeout_ms") {
                          return U32(v, p, m, &c->heartbeat_timeout_ms);
                        }
                        if (key == "dns_refresh_ms") return U32(v, p, m, &c->dns_refresh_ms);
                        if (key == "secret_file") return Path(v, p, m, &c->secret_file);
                        return U32(v, p, m, &c->forward_queue_blocks);
                      });
  }

  Status Movement(const YAML::Node& n, const std::string& path, const YAML::Mark& at,
                  MovementConfig* mv) const {
    return ForEachKey(n, path, at,
                      {"low_watermark", "high_watermark", "interval_ms", "ttl_sweep_ms"},
                      [&](const std::string& key, const YAML::Node& v, const std::string& p,
                          const YAML::Mark& m) -> Status {
                        if (key == "low_watermark") return Fraction(v, p, m, &mv->low_watermark);
                        if (key == "high_watermark") return Fraction(v, p, m, &mv->high_watermark);
                        if (key == "interval_ms") return U32(v, p, m, &mv->interval_ms);
                        return U32(v, p, m, &mv->ttl_sweep_ms);
                      });
  }

  Status Pools(const YAML::Node& n, const std::string& path, const YAML::Mark& at,
               std::vector<pool::PoolSpec>* pools) const {
    pools->clear();
    if (n.IsNull()) return Status::Ok();
    if (!n.IsSequence()) {
      return Error(at, path, "expected a list of pools, got " + std::string(TypeName(n)));
    }
    for (size_t i = 0; i < n.size(); ++i) {
      const YAML::Node item = n[i];
      const std::string item_path = path + "[" + std::to_string(i) + "]";
      const YAML::Mark item_mark = MarkOf(item, at);
      if (!item.IsMap()) {
        return Error(item_mark, item_path,
                     "expected a mapping (name, block_size, capacity, eviction, ttl_seconds, "
                     "scope, allowed_namespaces), got " +
                         std::string(TypeName(item)));
      }
      pool::PoolSpec spec;
      bool named = false;
      TM_RETURN_IF_ERROR(ForEachKey(
          item, item_path, item_mark,
          {"name", "block_size", "capacity", "eviction", "ttl_seconds", "scope",
           "allowed_namespaces"},
          [&](const std::string& key, const YAML::Node& v, const std::string& p,
              const YAML::Mark& m) -> Status {
            if (key == "name") {
              named = true;
              return Text(v, p, m, "a pool name", false, &spec.name);
            }
            if (key == "block_size") return Size(v, p, m, &spec.block_size);
            if (key == "capacity") return PoolCapacity(v, p, m, &spec.capacity);
            if (key == "eviction") {
              return Value(v, p, m, "lru or none", pool::ParseEvictionPolicy, &spec.eviction);
            }
            if (key == "scope") {
              return Value(v, p, m, "local or cluster", pool::ParsePoolScope, &spec.scope);
            }
            if (key == "allowed_namespaces") {
              TM_RETURN_IF_ERROR(StringList(v, p, m, "namespace names", &spec.allowed_namespaces));
              for (const auto& ns : spec.allowed_namespaces) {
                if (Status s = pool::ValidateNamespaceName(ns); !s.ok()) {
                  return Error(m, p, s.message());
                }
              }
              pool::NormalizeNamespaces(&spec.allowed_namespaces);
              return Status::Ok();
            }
            return U64(v, p, m, &spec.ttl_seconds);
          }));
      if (!named) return Error(item_mark, item_path, "missing key 'name'");
      pools->push_back(std::move(spec));
    }
    return Status::Ok();
  }

  Status PoolCapacity(const YAML::Node& n, const std::string& path, const YAML::Mark& at,
                      pool::TierCapacities* cap) const {
    if (n.IsNull()) return Error(at, path, "expected a mapping of tier sizes, got nothing (null)");
    return ForEachKey(n, path, at, {"dram", "cxl", "nvme"},
                      [&](const std::string& key, const YAML::Node& v, const std::string& p,
                          const YAML::Mark& m) -> Status {
                        if (key == "dram") return Size(v, p, m, &cap->dram);
                        if (key == "cxl") return Size(v, p, m, &cap->cxl);
                        return Size(v, p, m, &cap->nvme);
                      });
  }

 private:
  std::string source_;
};

}  // namespace

Result<AgentConfig> LoadConfigYaml(std::string_view yaml_text, AgentConfig base,
                                   std::string_view source_name) {
  Reader reader(source_name);
  try {
    std::vector<YAML::Node> docs = YAML::LoadAll(std::string(yaml_text));
    if (docs.size() > 1) {
      return InvalidArgument(std::string(source_name) + ": holds " + std::to_string(docs.size()) +
                             " YAML documents; one is expected");
    }
    if (docs.empty()) return base;
    TM_RETURN_IF_ERROR(reader.Document(docs[0], &base));
    return base;
  } catch (const YAML::Exception& e) {
    // e.what() repeats the position; e.msg is the bare problem.
    std::string m(source_name);
    if (!e.mark.is_null()) {
      m += ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1);
    }
    return InvalidArgument(m + ": YAML syntax error: " + e.msg);
  } catch (const std::exception& e) {
    return InvalidArgument(std::string(source_name) + ": cannot read YAML: " + e.what());
  }
}

Result<AgentConfig> LoadConfigFile(const std::filesystem::path& path, AgentConfig base) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open config file " + path.string(), errno);
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return ErrnoError("read config file " + path.string(), err);
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxConfigFileBytes) {
      ::close(fd);
      return InvalidArgument("config file " + path.string() + " is larger than 16MiB");
    }
  }
  ::close(fd);
  return LoadConfigYaml(text, std::move(base), path.string());
}

}  // namespace tokenmem::config
