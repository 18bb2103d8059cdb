// Membership: which agents of the cluster are live, and who owns a key.
//
// This agent (node name + own remote address) is always a live member. Every
// address Discovery knows is pinged once per heartbeat interval through the
// injected Pinger, which answers with the peer's node name; a peer is live
// while its last successful ping is younger than the heartbeat timeout. An
// address that answers with our own node name is this agent (a headless
// Service lists every pod, us included): it is remembered and no longer
// pinged. Two addresses answering with the same node name are one member
// (the one heard from last, then the smaller address).
//
// Liveness is evaluated once per round (Tick), so a peer that stops
// answering is dropped between heartbeat_timeout and heartbeat_timeout +
// heartbeat_interval after its last answer. Ownership (OwnerOf) is
// rendezvous hashing over the live members' node names: every agent that
// sees the same live set picks the same owner.
//
// Thread-safety: every method may be called from any thread. Tick runs one
// round synchronously (for tests, and for the background thread that
// Start launches); rounds never overlap. Callbacks run on the thread that
// ran the round, with no lock held.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "cluster/discovery.h"
#include "tokenmem/common/block_key.h"
#include "tokenmem/common/status.h"

namespace tokenmem::cluster {

struct Member {
  std::string node;     // node name, the id ownership is computed over
  std::string address;  // "host:port" of its remote listener
  bool self = false;    // this agent

  bool operator==(const Member&) const = default;
};

// Asks the agent at `address` for its node name (the lead's UCX heartbeat).
// Must return within a bounded time (well under the heartbeat interval) and
// be callable from several threads at once; an error, or an empty name,
// counts as a failed heartbeat.
using Pinger = std::function<Result<std::string>(const std::string& address)>;

using Clock = std::function<std::chrono::steady_clock::time_point()>;

// Called after a round that changed the live set, with the new set (sorted
// by node name, self included) and the new generation. It must not call
// Stop (it may run on the thread Stop joins).
using ChangeCallback = std::function<void(const std::vector<Member>& live, uint64_t generation)>;

struct MembershipOptions {
  std::string node_name;     // this agent's name (AgentConfig::node_name); must be non-empty
  std::string self_address;  // this agent's remote address as peers dial it; may be empty
  std::chrono::milliseconds heartbeat_interval{1000};
  std::chrono::milliseconds heartbeat_timeout{3000};
  std::chrono::milliseconds dns_refresh{10000};
  Clock clock;               // default: std::chrono::steady_clock::now
  ChangeCallback on_change;  // optional: logging, metrics
  // Pings of one round run on up to this many threads at once, so a peer
  // that is slow to fail does not delay the others' heartbeats.
  unsigned max_parallel_pings = 16;
};

// The options a config gives: intervals from cluster.*.
MembershipOptions MembershipOptionsFrom(const config::ClusterConfig& cluster, std::string node_name,
                                        std::string self_address);

struct MembershipCounters {
  uint64_t peers_known = 0;        // addresses to ping (this agent's own excluded), now
  uint64_t peers_live = 0;         // live members other than this agent, now
  uint64_t heartbeats_sent = 0;    // pings made, ever
  uint64_t heartbeats_failed = 0;  // pings that returned an error, ever
  uint64_t dns_failures = 0;       // Discovery::Refresh errors, ever
  uint64_t generation = 0;         // as generation()
};

class Membership {
 public:
  Membership(MembershipOptions options, std::unique_ptr<Discovery> discovery, Pinger pinger);
  ~Membership();  // Stop()s

  Membership(const Membership&) = delete;
  Membership& operator=(const Membership&) = delete;

  // Starts the background thread: a round at once, then one per heartbeat
  // interval. kFailedPrecondition when already started or when node_name is
  // empty.
  Status Start();
  // Wakes the thread and joins it; returns after the round in progress (at
  // most one Pinger call per thread) ends. Idempotent.
  void Stop();

  // One round now: refreshes DNS when dns_refresh has passed since the last
  // refresh (always on the first round), pings every known peer address,
  // then recomputes the live set (bumping the generation and calling
  // on_change when it changed).
  void Tick();

  // Live members sorted by node name; this agent is always among them.
  std::vector<Member> Live() const;
  // Starts at 1 (the live set holding only this agent) and grows by one
  // whenever the live set (nodes and their addresses) changes.
  uint64_t generation() const;
  // The owner of `key` among the live members (rendezvous over node names);
  // never empty, since this agent is always live.
  std::optional<Member> OwnerOf(const BlockKey& key) const;
  // Whether this agent owns `key` (no allocation).
  bool OwnsLocally(const BlockKey& key) const;

  MembershipCounters counters() const;

 private:
  struct PeerState {
    std::string node;  // last node name it answered with; empty: never answered
    std::chrono::steady_clock::time_point last_ok{};
  };

  void Run(std::stop_token stop);
  void RefreshDnsIfDue(std::chrono::steady_clock::time_point now);
  std::vector<Member> ComputeLive(std::chrono::steady_clock::time_point now) const;

  const MembershipOptions options_;
  const std::unique_ptr<Discovery> discovery_;
  const Pinger pinger_;

  std::mutex round_mu_;                     // one round at a time; guards the fields up to mu_
  std::map<std::string, PeerState> peers_;  // by address
  std::set<std::string> self_addresses_;    // addresses that answered with our name
  std::optional<std::chrono::steady_clock::time_point> last_dns_refresh_;

  mutable std::shared_mutex mu_;  // the published view below
  std::vector<Member> live_;
  std::vector<std::string> live_ids_;  // live_[i].node, for OwnerIndex
  uint64_t generation_ = 1;
  MembershipCounters counters_;

  std::mutex thread_mu_;
  std::condition_variable_any wake_;
  std::jthread thread_;
};

}  // namespace tokenmem::cluster
