#include "agent.h"

#include <chrono>
#include <fstream>
#include <sstream>

#include "http/control_auth_metrics.h"
#include "nvme/io_observer.h"
#include "tokenmem/common/log.h"
#include "tokenmem/common/units.h"

namespace tokenmem {
namespace {

Result<std::string> ReadToken(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return NotFound("cannot read admin token file " + path.string());
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string token = buffer.str();
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) {
    token.pop_back();
  }
  if (token.empty()) return InvalidArgument("admin token file " + path.string() + " is empty");
  return token;
}

// A PEM file as it is (certificates and keys keep their line breaks).
Result<std::string> ReadPem(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("cannot read " + path.string());
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (!in.good() && !in.eof()) return IoError("cannot read " + path.string());
  std::string pem = buffer.str();
  if (pem.empty()) return InvalidArgument(path.string() + " is empty");
  return pem;
}

std::string JoinNodes(const std::vector<int>& nodes) {
  std::string out;
  for (int n : nodes) out += (out.empty() ? "" : ",") + std::to_string(n);
  return out.empty() ? "-" : out;
}

// The data socket's limits from the configuration; refusals go to `observer`.
local::LocalLimits LocalLimitsOf(const config::AgentConfig& config,
                                 limits::LimitObserver* observer) {
  return {.max_connections = config.limits.local_max_connections,
          .max_connections_per_client = config.limits.local_max_connections_per_client,
          .hello_timeout = std::chrono::milliseconds(config.limits.hello_timeout_ms),
          .observer = observer};
}

http::RemoteSnapshot RemoteSnapshotOf(const remote::RemoteServer& server,
                                      remote::ClusterRouter* cluster) {
  const auto& st = server.stats();
  http::RemoteSnapshot s{.connections = st.connections.load(),
                         .connections_accepted = st.connections_accepted.load(),
                         .connections_rejected = st.connections_rejected.load(),
                         .protocol_errors = st.protocol_errors.load(),
                         .requests = st.requests.load(),
                         .bytes_received = st.bytes_in.load(),
                         .bytes_sent = st.bytes_out.load(),
                         .put_blocks_in_place = st.put_blocks_in_place.load(),
                         .put_blocks_buffered = st.put_blocks_buffered.load()};
  if (cluster != nullptr) {
    auto members = cluster->membership().counters();
    auto forward = cluster->forward_counters();
    const auto& owner = cluster->counters();
    s.cluster = true;
    s.peers_known = members.peers_known;
    s.peers_live = members.peers_live;
    s.heartbeats_failed = members.heartbeats_failed;
    s.membership_generation = members.generation;
    s.forwarded_puts = forward.sent;
    s.forward_drops = forward.dropped;
    s.forward_failures = forward.failed;
    s.forward_queued = forward.queued;
    s.owner_gets = owner.owner_gets.load();
    s.owner_hits = owner.owner_hits.load();
    s.owner_failures = owner.owner_failures.load();
    s.handoff_blocks = owner.handoff_blocks.load();
  }
  return s;
}

}  // namespace

Status Agent::ResolveTiers(const config::AgentConfig& config) {
  using topology::MemoryKind;
  auto discovered = topology::DiscoverTopology(config.sysfs_root);
  if (!discovered.ok()) {
    if (config.cxl.capacity_bytes != 0 || !config.dram.numa_nodes.empty()) {
      return discovered.status().WithContext("NUMA topology is needed for the configured tiers");
    }
    TM_LOG(WARN, "topology") << "no NUMA topology (" << discovered.status().ToString()
                             << "); DRAM is used without NUMA binding";
  } else {
    topology_ = std::move(discovered).value();
    for (const auto& warning : topology::LibnumaDisagreements(topology_)) {
      TM_LOG(WARN, "topology") << warning;
    }
    for (const auto& node : topology_.nodes) {
      TM_LOG(INFO, "topology") << "node " << node.id << " " << topology::MemoryKindName(node.kind)
                               << " " << HumanBytes(static_cast<double>(node.total_bytes))
                               << " cpus " << node.cpus.size();
    }
  }
  auto pick = [&](const config::MemoryTierConfig& tier, MemoryKind kind,
                  std::vector<int>* out) -> Status {
    if (tier.capacity_bytes == 0) return Status::Ok();
    const std::string name(topology::MemoryKindName(kind));
    if (topology_.nodes.empty()) return Status::Ok();  // no binding possible
    if (tier.numa_nodes.empty()) {
      *out = topology_.NodesOfKind(kind);
    } else {
      for (int id : tier.numa_nodes) {
        const auto* node = topology_.Find(id);
        if (!node)
          return InvalidArgument("tiers." + name + ".numa_nodes: node " + std::to_string(id) +
                                 " does not exist");
        if (node->kind != kind) {
          return InvalidArgument("tiers." + name + ".numa_nodes: node " + std::to_string(id) +
                                 " is " + std::string(topology::MemoryKindName(node->kind)) +
                                 " memory");
        }
      }
      *out = tier.numa_nodes;
    }
    if (out->empty()) {
      return InvalidArgument("tiers." + name + ".capacity is " +
                             FormatByteSize(tier.capacity_bytes) + " but " +
                             config.sysfs_root.string() + " shows no " + name + " NUMA node");
    }
    uint64_t total = 0;
    for (int id : *out) total += topology_.Find(id)->total_bytes;
    if (tier.capacity_bytes > total) {
      return InvalidArgument("tiers." + name + ".capacity " + FormatByteSize(tier.capacity_bytes) +
                             " exceeds the " + HumanBytes(static_cast<double>(total)) +
                             " of its NUMA nodes");
    }
    return Status::Ok();
  };
  TM_RETURN_IF_ERROR(pick(config.dram, MemoryKind::kDram, &dram_nodes_));
  TM_RETURN_IF_ERROR(pick(config.cxl, MemoryKind::kCxl, &cxl_nodes_));
  if (config.cxl.capacity_bytes != 0 && topology_.nodes.empty()) {
    return InvalidArgument("tiers.cxl.capacity is set but no NUMA topology was found");
  }
  return Status::Ok();
}

Result<std::unique_ptr<Agent>> Agent::Start(const config::AgentConfig& config) {
  LogLevel level = LogLevel::kInfo;
  ParseLogLevel(config.log_level, &level);
  SetLogLevel(level);

  const auto started = std::chrono::system_clock::now();
  std::unique_ptr<Agent> agent(new Agent());
  TM_RETURN_IF_ERROR(agent->ResolveTiers(config));
  agent->metrics_ = std::make_unique<http::AgentMetrics>();
  nvme::SetIoObserver(agent->metrics_.get());
  agent->info_.observe_operation = agent->metrics_->OperationRecorder(http::DataPath::kControl);
  agent->info_.max_reply_bytes = config.control.max_message_bytes;
  agent->info_.limits = agent->metrics_.get();

  std::filesystem::path nvme_root;
  if (config.nvme.capacity_bytes != 0) {
    nvme_root = config.nvme.directory;
    std::error_code ec;
    if (config.nvme.create_directory) std::filesystem::create_directories(nvme_root, ec);
    if (!std::filesystem::is_directory(nvme_root, ec)) {
      return NotFound("tiers.nvme.directory " + nvme_root.string() + " does not exist");
    }
  }

  pool::PoolManagerOptions options;
  options.tier_capacity = {.dram = config.dram.capacity_bytes,
                           .cxl = config.cxl.capacity_bytes,
                           .nvme = config.nvme.capacity_bytes};
  options.dram_nodes = agent->dram_nodes_;
  options.cxl_nodes = agent->cxl_nodes_;
  options.nvme_root = nvme_root;
  options.nvme_segment_bytes = config.nvme.segment_bytes;
  options.nvme_queue_depth = config.nvme.queue_depth;
  options.low_watermark = config.movement.low_watermark;
  options.high_watermark = config.movement.high_watermark;
  options.ttl_sweep_ms = config.movement.ttl_sweep_ms;
  options.max_pinned_blocks_per_lease = config.limits.max_pinned_blocks_per_lease;
  options.limits = agent->metrics_.get();
  TM_ASSIGN_OR_RETURN(agent->pools_, pool::PoolManager::Open(options));
  // A released lease's pins go with it, in every pool.
  agent->leases_.OnRelease(
      [pools = agent->pools_.get()](pool::LeaseAccount& lease) { pools->ReleasePinsOf(lease); });
  if (!nvme_root.empty()) {
    // Leases outlive the process, as the pods holding them do.
    TM_RETURN_IF_ERROR(agent->leases_.PersistTo(nvme_root / "leases"));
  } else {
    TM_LOG(WARN, "agent") << "no NVMe directory: leases are kept in memory only and are lost "
                             "when the agent restarts";
  }
  for (const auto& spec : config.pools) {
    TM_RETURN_IF_ERROR(agent->pools_->Ensure(spec).WithContext("pools." + spec.name));
  }

  agent->info_.version = kVersion;
  agent->info_.node_name = config.node_name;
  if (config.dram.capacity_bytes) {
    agent->info_.tiers.push_back(
        {pool::TierKind::kDram, agent->dram_nodes_, config.dram.capacity_bytes, ""});
  }
  if (config.cxl.capacity_bytes) {
    agent->info_.tiers.push_back(
        {pool::TierKind::kCxl, agent->cxl_nodes_, config.cxl.capacity_bytes, ""});
  }
  if (config.nvme.capacity_bytes) {
    agent->info_.tiers.push_back(
        {pool::TierKind::kNvme, {}, config.nvme.capacity_bytes, nvme_root.string()});
  }

  agent->mover_ = std::make_unique<pool::Mover>(
      agent->pools_.get(), std::chrono::milliseconds(config.movement.interval_ms));

  control::ControlServerOptions server;
  server.socket_path = config.control.socket_path;
  server.socket_mode = config.control.socket_mode;
  server.admin_uids = config.control.admin_uids;
  server.admin_gids = config.control.admin_gids;
  server.tcp_listen = config.control.tcp_listen;
  server.max_message_bytes = config.control.max_message_bytes;
  {
    std::vector<std::string> transports, reasons;
    for (int t = 0; t < control::kTransportCount; ++t) {
      transports.emplace_back(control::TransportName(static_cast<control::Transport>(t)));
    }
    for (int r = 0; r < control::kAuthFailureCount; ++r) {
      reasons.emplace_back(control::AuthFailureName(static_cast<control::AuthFailure>(r)));
    }
    // Owned by the callback, which the control server keeps as long as it runs.
    auto auth_metrics = std::make_shared<http::ControlAuthMetrics>(agent->metrics_->registry(),
                                                                   transports, reasons);
    server.on_auth_failure = [auth_metrics](control::Transport t, control::AuthFailure f) {
      auth_metrics->Observe(control::TransportName(t), control::AuthFailureName(f));
    };
  }
  if (!server.tcp_listen.empty()) {
    TM_ASSIGN_OR_RETURN(server.admin_token, ReadToken(config.control.admin_token_file));
  }
  if (!config.control.tls_cert_file.empty()) {
    TM_ASSIGN_OR_RETURN(server.tls_cert_pem, ReadPem(config.control.tls_cert_file));
    TM_ASSIGN_OR_RETURN(server.tls_key_pem, ReadPem(config.control.tls_key_file));
  }
  if (!config.control.tls_client_ca_file.empty()) {
    TM_ASSIGN_OR_RETURN(server.tls_client_ca_pem, ReadPem(config.control.tls_client_ca_file));
  }
  TM_ASSIGN_OR_RETURN(
      agent->control_,
      control::ControlServer::Start(server, agent->pools_.get(), &agent->leases_, &agent->info_));
  const std::filesystem::path data_socket = config::EffectiveDataSocket(config.control);
  if (data_socket.lexically_normal().parent_path() ==
      config.control.socket_path.lexically_normal().parent_path()) {
    TM_LOG(WARN, "agent") << "the data socket " << data_socket.string()
                          << " shares its directory with the control socket: never mount that "
                             "directory into pods (set control.data_socket to a directory of "
                             "its own)";
  }
  TM_ASSIGN_OR_RETURN(agent->local_, local::LocalServer::Start(
                                         data_socket, config.control.data_socket_mode,
                                         agent->pools_.get(), &agent->leases_,
                                         agent->metrics_->OperationRecorder(http::DataPath::kLocal),
                                         LocalLimitsOf(config, agent->metrics_.get())));
  if (!config.remote.listen.empty()) TM_RETURN_IF_ERROR(agent->StartRemote(config));
  if (!config.http.listen.empty()) {
    http::AgentHttpOptions web{
        .listen = config.http.listen,
        .probe_listen = config.http.probe_listen,
        .facts = {.version = kVersion,
                  .node_name = config.node_name,
                  .started = started,
                  .control_socket = config.control.socket_path},
        .pools = agent->pools_.get(),
        .leases = &agent->leases_,
        .metrics = agent->metrics_.get(),
        .local_clients = [local = agent->local_.get()] { return local->connections(); }};
    if (agent->remote_) {
      web.remote = [remote = agent->remote_.get(), cluster = agent->cluster_.get()] {
        return RemoteSnapshotOf(*remote, cluster);
      };
    }
    if (agent->cluster_) {
      web.facts.peers = [cluster = agent->cluster_.get()] {
        std::vector<http::AgentFacts::Peer> peers;
        for (const auto& m : cluster->membership().Live()) {
          if (!m.self) peers.push_back({m.node, m.address});
        }
        return peers;
      };
    }
    for (const auto& t : agent->info_.tiers) {
      web.facts.tiers.push_back({t.kind, t.numa_nodes, t.capacity_bytes, t.path});
    }
    TM_ASSIGN_OR_RETURN(agent->http_, http::AgentHttp::Start(std::move(web)));
  }
  if (config.kubernetes.enabled) TM_RETURN_IF_ERROR(agent->StartKubernetes(config, nvme_root));
  TM_LOG(INFO, "agent") << "tokenmem-agent " << kVersion << " ready on node " << config.node_name
                        << ": dram " << FormatByteSize(config.dram.capacity_bytes) << " (nodes "
                        << JoinNodes(agent->dram_nodes_) << "), cxl "
                        << FormatByteSize(config.cxl.capacity_bytes) << " (nodes "
                        << JoinNodes(agent->cxl_nodes_) << "), nvme "
                        << FormatByteSize(config.nvme.capacity_bytes)
                        << (nvme_root.empty() ? "" : " at " + nvme_root.string()) << ", "
                        << agent->pools_->List().size() << " pools, "
                        << agent->pools_->recovered_blocks() << " blocks recovered";
  return agent;
}

Status Agent::StartRemote(const config::AgentConfig& config) {
  std::string secret;
  const bool clustered = config::ClusterEnabled(config);
  if (clustered) {
    TM_ASSIGN_OR_RETURN(secret, ReadToken(config.cluster.secret_file));
  }
  const config::LimitsConfig l = config::EffectiveLimits(config);
  remote::RemoteServerOptions options{
      .listen = config.remote.listen,
      .max_connections = config.remote.max_connections,
      .workers = config.remote.workers,
      .max_batch_bytes = config.remote.max_batch_bytes,
      .max_in_flight = l.remote_max_requests_per_connection,
      .max_connections_per_peer = l.remote_max_connections_per_peer,
      .hello_timeout = std::chrono::milliseconds(l.hello_timeout_ms),
      .max_bytes_per_connection = l.remote_max_bytes_per_connection,
      .max_bytes_per_lease = l.remote_max_bytes_per_lease,
      .max_queued = l.remote_max_queued_requests,
      .limits = metrics_.get()};
  remote::HandlerOptions handler{.pools = pools_.get(),
                                 .leases = &leases_,
                                 .node_name = config.node_name,
                                 .cluster_secret = secret};
  TM_ASSIGN_OR_RETURN(remote_, remote::RemoteServer::Start(options, handler));
  auto record = metrics_->OperationRecorder(http::DataPath::kRemote);
  remote_->SetObserver([record](transport::Op op, double seconds, bool ok) {
    std::string_view name = "other";
    switch (op) {
      case transport::Op::kGet:
        name = "get";
        break;
      case transport::Op::kPut:
        name = "put";
        break;
      case transport::Op::kExists:
        name = "exists";
        break;
      case transport::Op::kLookupPrefix:
        name = "lookup_prefix";
        break;
      case transport::Op::kDelete:
        name = "delete";
        break;
      default:
        break;
    }
    record(name, std::chrono::nanoseconds(static_cast<int64_t>(seconds * 1e9)), ok);
  });
  if (!clustered) return Status::Ok();
  TM_ASSIGN_OR_RETURN(
      cluster_, remote::ClusterRouter::Start({.cluster = config.cluster,
                                              .node_name = config.node_name,
                                              .self_address = remote_->address(),
                                              .secret = secret,
                                              .pools = pools_.get(),
                                              .max_batch_bytes = config.remote.max_batch_bytes}));
  remote_->SetCluster(cluster_.get());
  if (local_) local_->SetCluster(cluster_.get());  // the local path shares cluster pools too
  TM_LOG(INFO, "agent") << "cluster: " << config.cluster.peers.size() << " static peers"
                        << (config.cluster.dns_name.empty() ? ""
                                                            : ", DNS " + config.cluster.dns_name);
  return Status::Ok();
}

Status Agent::StartKubernetes(const config::AgentConfig& config,
                              const std::filesystem::path& nvme_root) {
  const auto& kc = config.kubernetes;
  k8s::KubeClientOptions client;
  if (!kc.api_server.empty()) {
    client.server = kc.api_server;
    std::error_code ec;
    if (std::filesystem::exists(kc.token_file, ec)) client.token_file = kc.token_file;
    client.ca_file = kc.ca_file;
  } else {
    TM_ASSIGN_OR_RETURN(client, k8s::LoadKubeconfig(kc.kubeconfig));
  }
  TM_ASSIGN_OR_RETURN(kube_, k8s::HttpKubeClient::Create(client));
  k8s::ReconcilerOptions options;
  options.node_name = config.node_name;
  options.agent_version = kVersion;
  // Beside the pools it names, so the set and the pools survive together.
  if (!nvme_root.empty()) options.managed_state_file = nvme_root / "k8s-managed-pools";
  options.backoff_initial = std::chrono::milliseconds(kc.backoff_initial_ms);
  options.backoff_max = std::chrono::milliseconds(kc.backoff_max_ms);
  options.node_status_interval = std::chrono::seconds(kc.node_status_interval_s);
  // TokenMemoryNode.status.health follows /readyz (the reconciler stops
  // before the HTTP server goes).
  options.problems = [this] { return http_ ? http_->Problems() : std::vector<std::string>{}; };
  reconciler_ = std::make_unique<k8s::Reconciler>(kube_.get(), pools_.get(), std::move(options));
  TM_RETURN_IF_ERROR(reconciler_->Start());
  TM_LOG(INFO, "agent") << "kubernetes: watching TokenMemoryPools at " << client.server;
  return Status::Ok();
}

void Agent::Stop() {
  if (reconciler_) reconciler_->Stop();  // before the pools it changes go away
  if (http_) http_->SetStopping();       // /readyz says so while the rest stops
  if (local_) local_->Shutdown();        // its sessions use the cluster hooks: before cluster_ goes
  if (control_) control_->Shutdown();
  mover_.reset();
  http_.reset();    // its /metrics reads remote_ and cluster_: before they go
  remote_.reset();  // no request reaches the cluster hooks after this
  cluster_.reset();
  if (metrics_) nvme::ClearIoObserver(metrics_.get());
}

Agent::~Agent() { Stop(); }

}  // namespace tokenmem
