#include "cluster/membership.h"

#include <algorithm>
#include <atomic>

#include "cluster/rendezvous.h"
#include "tokenmem/common/log.h"

namespace tokenmem::cluster {
namespace {

constexpr const char* kLog = "cluster";

using TimePoint = std::chrono::steady_clock::time_point;

struct PingResult {
  bool ok = false;
  std::string node;   // when ok
  std::string error;  // when not
  TimePoint at{};     // when the answer came
};

}  // namespace

MembershipOptions MembershipOptionsFrom(const config::ClusterConfig& cluster, std::string node_name,
                                        std::string self_address) {
  MembershipOptions o;
  o.node_name = std::move(node_name);
  o.self_address = std::move(self_address);
  o.heartbeat_interval = std::chrono::milliseconds(cluster.heartbeat_interval_ms);
  o.heartbeat_timeout = std::chrono::milliseconds(cluster.heartbeat_timeout_ms);
  o.dns_refresh = std::chrono::milliseconds(cluster.dns_refresh_ms);
  return o;
}

Membership::Membership(MembershipOptions options, std::unique_ptr<Discovery> discovery,
                       Pinger pinger)
    : options_(std::move(options)), discovery_(std::move(discovery)), pinger_(std::move(pinger)) {
  live_.push_back(Member{options_.node_name, options_.self_address, true});
  live_ids_.push_back(options_.node_name);
  counters_.generation = generation_;
}

Membership::~Membership() { Stop(); }

Status Membership::Start() {
  if (options_.node_name.empty()) {
    return FailedPrecondition("cluster membership needs this agent's node name");
  }
  std::lock_guard lock(thread_mu_);
  if (thread_.joinable()) return FailedPrecondition("cluster membership is already running");
  thread_ = std::jthread([this](std::stop_token stop) { Run(stop); });
  return Status::Ok();
}

void Membership::Stop() {
  std::lock_guard lock(thread_mu_);
  if (!thread_.joinable()) return;
  thread_.request_stop();  // wakes the wait through the stop token
  thread_.join();
}

void Membership::Run(std::stop_token stop) {
  std::mutex wait_mu;
  while (!stop.stop_requested()) {
    Tick();
    std::unique_lock lock(wait_mu);
    wake_.wait_for(lock, stop, options_.heartbeat_interval, [] { return false; });
  }
}

void Membership::RefreshDnsIfDue(TimePoint now) {
  if (last_dns_refresh_ && now - *last_dns_refresh_ < options_.dns_refresh) return;
  last_dns_refresh_ = now;
  Status s = discovery_->Refresh();
  if (s.ok()) return;
  TM_LOG(WARN, kLog) << s.message();
  std::unique_lock lock(mu_);
  ++counters_.dns_failures;
}

void Membership::Tick() {
  std::lock_guard round(round_mu_);
  const Clock clock =
      options_.clock ? options_.clock : [] { return std::chrono::steady_clock::now(); };
  RefreshDnsIfDue(clock());

  const std::vector<std::string> addresses = discovery_->Addresses();
  // Forget addresses discovery no longer lists.
  for (auto it = peers_.begin(); it != peers_.end();) {
    if (std::find(addresses.begin(), addresses.end(), it->first) == addresses.end()) {
      it = peers_.erase(it);
    } else {
      ++it;
    }
  }
  std::vector<std::string> targets;
  for (const std::string& a : addresses) {
    if (a == options_.self_address || self_addresses_.count(a)) continue;
    targets.push_back(a);
  }

  std::vector<PingResult> results(targets.size());
  auto ping = [&](size_t i) {
    Result<std::string> r = pinger_(targets[i]);
    results[i].at = clock();
    if (r.ok()) {
      results[i].ok = true;
      results[i].node = std::move(r).value();
    } else {
      results[i].error = r.status().ToString();
    }
  };
  const size_t threads =
      std::min<size_t>(targets.size(), std::max(1u, options_.max_parallel_pings));
  if (threads <= 1) {
    for (size_t i = 0; i < targets.size(); ++i) ping(i);
  } else {
    std::atomic<size_t> next{0};
    std::vector<std::jthread> pool;
    pool.reserve(threads);
    for (size_t t = 0; t < threads; ++t) {
      pool.emplace_back([&] {
        for (size_t i; (i = next.fetch_add(1)) < targets.size();) ping(i);
      });
    }
  }  // the jthreads join here

  uint64_t failed = 0;
  for (size_t i = 0; i < targets.size(); ++i) {
    PingResult& r = results[i];
    if (r.ok && r.node == options_.node_name) {
      TM_LOG(INFO, kLog) << targets[i] << " is this agent; not pinging it again";
      self_addresses_.insert(targets[i]);
      peers_.erase(targets[i]);
      continue;
    }
    PeerState& peer = peers_[targets[i]];
    if (r.ok && !r.node.empty()) {
      peer.node = std::move(r.node);
      peer.last_ok = r.at;
    } else {
      ++failed;
      TM_LOG(DEBUG, kLog) << "heartbeat to " << targets[i] << " failed: "
                          << (r.ok ? "it answered with an empty node name" : r.error);
    }
  }

  std::vector<Member> live = ComputeLive(clock());
  bool changed = false;
  uint64_t generation = 0;
  {
    std::unique_lock lock(mu_);
    counters_.heartbeats_sent += targets.size();
    counters_.heartbeats_failed += failed;
    counters_.peers_known = peers_.size();
    counters_.peers_live = live.size() - 1;
    if (live != live_) {
      changed = true;
      live_ = live;
      live_ids_.clear();
      for (const Member& m : live_) live_ids_.push_back(m.node);
      counters_.generation = ++generation_;
    }
    generation = generation_;
  }
  if (changed) {
    std::string names;
    for (const Member& m : live) names += (names.empty() ? "" : ", ") + m.node;
    TM_LOG(INFO, kLog) << "live members (generation " << generation << "): " << names;
    if (options_.on_change) options_.on_change(live, generation);
  }
}

std::vector<Member> Membership::ComputeLive(TimePoint now) const {
  // By node name: the address heard from last (then the smaller address).
  std::map<std::string, std::pair<std::string, TimePoint>> by_node;
  for (const auto& [address, peer] : peers_) {
    if (peer.node.empty() || now - peer.last_ok >= options_.heartbeat_timeout) continue;
    auto [it, inserted] = by_node.try_emplace(peer.node, address, peer.last_ok);
    if (!inserted && peer.last_ok > it->second.second) it->second = {address, peer.last_ok};
  }
  std::vector<Member> live;
  live.push_back(Member{options_.node_name, options_.self_address, true});
  for (auto& [node, where] : by_node) live.push_back(Member{node, where.first, false});
  std::sort(live.begin(), live.end(),
            [](const Member& a, const Member& b) { return a.node < b.node; });
  return live;
}

std::vector<Member> Membership::Live() const {
  std::shared_lock lock(mu_);
  return live_;
}

uint64_t Membership::generation() const {
  std::shared_lock lock(mu_);
  return generation_;
}

std::optional<Member> Membership::OwnerOf(const BlockKey& key) const {
  std::shared_lock lock(mu_);
  int i = OwnerIndex(live_ids_, key);
  if (i < 0) return std::nullopt;
  return live_[static_cast<size_t>(i)];
}

bool Membership::OwnsLocally(const BlockKey& key) const {
  std::shared_lock lock(mu_);
  int i = OwnerIndex(live_ids_, key);
  return i >= 0 && live_[static_cast<size_t>(i)].self;
}

MembershipCounters Membership::counters() const {
  std::shared_lock lock(mu_);
  return counters_;
}

}  // namespace tokenmem::cluster
