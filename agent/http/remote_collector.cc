#include "http/remote_collector.h"

#include <prometheus/client_metric.h>
#include <prometheus/metric_family.h>
#include <prometheus/metric_type.h>

#include <string>

namespace tokenmem::http {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

namespace {

MetricFamily One(std::string name, std::string help, MetricType type, uint64_t value) {
  MetricFamily family{std::move(name), std::move(help), type, {}};
  ClientMetric m;
  if (type == MetricType::Counter) {
    m.counter.value = static_cast<double>(value);
  } else {
    m.gauge.value = static_cast<double>(value);
  }
  family.metric.push_back(std::move(m));
  return family;
}

}  // namespace

std::vector<MetricFamily> RemoteCollector::Collect() const {
  const RemoteSnapshot s = snapshot_();
  constexpr auto G = MetricType::Gauge;
  constexpr auto C = MetricType::Counter;
  std::vector<MetricFamily> out = {
      One("tokenmem_remote_connections", "Open connections on the remote data path.", G,
          s.connections),
      One("tokenmem_remote_connections_accepted_total", "Remote connections accepted.", C,
          s.connections_accepted),
      One("tokenmem_remote_connections_rejected_total",
          "Remote connections refused because remote.max_connections were open.", C,
          s.connections_rejected),
      One("tokenmem_remote_protocol_errors_total",
          "Remote connections closed for a malformed or refused request.", C, s.protocol_errors),
      One("tokenmem_remote_requests_total", "Requests received on the remote data path.", C,
          s.requests),
      One("tokenmem_remote_received_bytes_total", "Payload bytes received (puts).", C,
          s.bytes_received),
      One("tokenmem_remote_sent_bytes_total", "Payload bytes sent (gets).", C, s.bytes_sent),
  };
  MetricFamily put_blocks{"tokenmem_remote_put_blocks_total",
                          "Blocks of remote puts by how they reached the pool: in_place (received "
                          "straight into a pool slot) or buffered (received, then copied).",
                          C,
                          {}};
  for (auto [path, value] : {std::pair{"in_place", s.put_blocks_in_place},
                             std::pair{"buffered", s.put_blocks_buffered}}) {
    ClientMetric m;
    m.label.push_back({"path", path});
    m.counter.value = static_cast<double>(value);
    put_blocks.metric.push_back(std::move(m));
  }
  out.push_back(std::move(put_blocks));
  if (!s.cluster) return out;
  std::vector<MetricFamily> cluster = {
      One("tokenmem_cluster_peers", "Peer agents known from the static list and DNS.", G,
          s.peers_known),
      One("tokenmem_cluster_peers_up", "Peer agents answering heartbeats.", G, s.peers_live),
      One("tokenmem_cluster_heartbeat_failures_total", "Heartbeats that got no answer.", C,
          s.heartbeats_failed),
      One("tokenmem_cluster_membership_generation",
          "Grows by one whenever the set of live members changes.", G, s.membership_generation),
      One("tokenmem_cluster_forwarded_puts_total", "Blocks delivered to their owner agent.", C,
          s.forwarded_puts),
      One("tokenmem_cluster_forward_dropped_total",
          "Blocks not forwarded because the forward queue was full.", C, s.forward_drops),
      One("tokenmem_cluster_forward_failed_total", "Blocks whose forwarding to the owner failed.",
          C, s.forward_failures),
      One("tokenmem_cluster_forward_queue_blocks", "Blocks waiting to be forwarded.", G,
          s.forward_queued),
      One("tokenmem_cluster_owner_gets_total", "Local misses asked of the key's owner.", C,
          s.owner_gets),
      One("tokenmem_cluster_owner_hits_total", "Local misses the key's owner served.", C,
          s.owner_hits),
      One("tokenmem_cluster_owner_failures_total",
          "Owner requests that failed (owner unreachable).", C, s.owner_failures),
      One("tokenmem_cluster_handoff_blocks_total",
          "Blocks queued for their new owner after the live members changed.", C,
          s.handoff_blocks),
  };
  for (auto& f : cluster) out.push_back(std::move(f));
  return out;
}

}  // namespace tokenmem::http
