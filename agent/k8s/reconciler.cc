#include "k8s/reconciler.h"

#include <ctime>
#include <fstream>

#include "k8s/pool_translator.h"
#include "tokenmem/common/log.h"

namespace tokenmem::k8s {
namespace {

constexpr const char* kLog = "k8s";

std::string NowRfc3339() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string NameOf(const nlohmann::json& object) {
  if (!object.is_object() || !object.contains("metadata") || !object["metadata"].is_object())
    return "";
  const auto& name = object["metadata"].value("name", nlohmann::json());
  return name.is_string() ? name.get<std::string>() : "";
}

}  // namespace

Reconciler::Reconciler(KubeClient* client, pool::PoolManager* pools, ReconcilerOptions options)
    : client_(client), pools_(pools), options_(std::move(options)) {}

Reconciler::~Reconciler() { Stop(); }

Status Reconciler::Start() {
  TM_RETURN_IF_ERROR(LoadManaged());
  {
    std::lock_guard lock(stop_mu_);
    stopping_ = false;
  }
  loop_ = std::thread([this] { Loop(); });
  node_loop_ = std::thread([this] { NodeLoop(); });
  return Status::Ok();
}

void Reconciler::Stop() {
  {
    std::lock_guard lock(stop_mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (loop_.joinable()) loop_.join();
  if (node_loop_.joinable()) node_loop_.join();
}

bool Reconciler::WaitFor(std::chrono::milliseconds delay) {
  std::unique_lock lock(stop_mu_);
  return !stop_cv_.wait_for(lock, delay, [this] { return stopping_; });
}

std::set<std::string> Reconciler::ManagedPools() const {
  std::lock_guard lock(mu_);
  return managed_;
}

Status Reconciler::LoadManaged() {
  std::lock_guard lock(mu_);
  if (options_.managed_state_file.empty() ||
      !std::filesystem::exists(options_.managed_state_file)) {
    return Status::Ok();
  }
  std::ifstream in(options_.managed_state_file);
  if (!in) return ErrnoError("reading " + options_.managed_state_file.string(), errno);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) managed_.insert(line);
  }
  return Status::Ok();
}

void Reconciler::SaveManaged() {
  if (options_.managed_state_file.empty()) return;
  auto tmp = options_.managed_state_file;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    for (const auto& name : managed_) out << name << '\n';
    if (!out) {
      TM_LOG(ERROR, kLog) << "cannot write " << tmp.string() << "; managed pools are not saved";
      return;
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, options_.managed_state_file, ec);
  if (ec) {
    TM_LOG(ERROR, kLog) << "cannot replace " << options_.managed_state_file.string() << ": "
                        << ec.message();
  }
}

Reconciler::Verdict Reconciler::ReconcileOne(const nlohmann::json& object) {
  auto spec = TranslatePool(object);
  const std::string name = NameOf(object);
  if (!spec.ok()) {
    std::string message = spec.status().message();
    if (managed_.count(name)) message += "; the pool keeps its previous definition";
    return {false, "InvalidSpec", message};
  }
  auto existing = pools_->Find(spec->name);
  if (existing.ok()) {
    if (!managed_.count(spec->name)) {
      if (existing.value()->spec() == spec.value()) {
        return {true, "DefinedLocally", "the pool exists from the agent's configuration"};
      }
      return {false, "ConflictsWithLocalPool",
              "a pool of this name with another definition comes from the agent's configuration; "
              "it is left alone"};
    }
    if (existing.value()->spec() == spec.value()) return {true, "Created", "pool is ready", true};
    Status deleted = pools_->Delete(spec->name);
    if (!deleted.ok() && !deleted.IsNotFound()) {
      return {false, "ReplaceFailed", "could not delete the old pool: " + deleted.message()};
    }
    TM_LOG(WARN, kLog) << "pool " << spec->name
                       << ": spec changed; recreating it (cached blocks dropped)";
    auto created = pools_->Create(spec.value());
    if (!created.ok()) {
      managed_.erase(spec->name);
      SaveManaged();
      return {false, "CreateFailed",
              "spec changed and the old pool was deleted, but the new one failed: " +
                  created.status().message()};
    }
    return {true, "Replaced",
            "spec changed: the pool was recreated and its cached blocks were dropped"};
  }
  auto created = pools_->Create(spec.value());
  if (!created.ok()) {
    const char* reason = created.status().code() == StatusCode::kResourceExhausted
                             ? "InsufficientCapacity"
                             : "CreateFailed";
    return {false, reason, created.status().message()};
  }
  TM_LOG(INFO, kLog) << "pool " << spec->name << " created from TokenMemoryPool";
  managed_.insert(spec->name);
  SaveManaged();
  return {true, "Created", "pool is ready"};
}

void Reconciler::WriteCondition(const nlohmann::json& object, const Verdict& verdict) {
  const std::string status = verdict.ready ? "True" : "False";
  const std::string message =
      options_.node_name.empty() ? verdict.message : options_.node_name + ": " + verdict.message;
  nlohmann::json updated = object;
  auto& conditions = updated["status"]["conditions"];
  if (!conditions.is_array()) conditions = nlohmann::json::array();
  nlohmann::json* ready = nullptr;
  for (auto& c : conditions) {
    if (c.is_object() && c.value("type", "") == "Ready") ready = &c;
  }
  int64_t generation = 0;
  if (object.contains("metadata") && object["metadata"].contains("generation") &&
      object["metadata"]["generation"].is_number_integer()) {
    generation = object["metadata"]["generation"].get<int64_t>();
  }
  if (verdict.steady && ready && ready->value("status", "") == status &&
      ready->value("observedGeneration", int64_t{0}) == generation) {
    return;
  }
  if (ready && ready->value("status", "") == status &&
      ready->value("reason", "") == verdict.reason && ready->value("message", "") == message &&
      ready->value("observedGeneration", int64_t{0}) == generation) {
    return;  // already says so
  }
  nlohmann::json condition = {{"type", "Ready"},
                              {"status", status},
                              {"reason", verdict.reason},
                              {"message", message},
                              {"observedGeneration", generation},
                              {"lastTransitionTime", NowRfc3339()}};
  if (ready && ready->value("status", "") == status && ready->contains("lastTransitionTime")) {
    condition["lastTransitionTime"] = (*ready)["lastTransitionTime"];
  }
  if (ready) {
    *ready = condition;
  } else {
    conditions.push_back(condition);
  }
  updated["status"]["observedGeneration"] = generation;
  if (!verdict.ready) {
    TM_LOG(WARN, kLog) << "TokenMemoryPool " << NameOf(object) << ": " << verdict.reason << ": "
                       << verdict.message;
  }
  auto written = client_->UpdateStatus(kPoolPlural, updated);
  if (!written.ok()) {
    TM_LOG(WARN, kLog) << "status of TokenMemoryPool " << NameOf(object) << ": "
                       << written.status().ToString();
  }
}

void Reconciler::ReconcileAll() {
  for (const auto& [name, object] : desired_) {
    Verdict verdict = ReconcileOne(object);
    WriteCondition(object, verdict);
  }
  for (auto it = managed_.begin(); it != managed_.end();) {
    if (desired_.count(*it)) {
      ++it;
      continue;
    }
    Status deleted = pools_->Delete(*it);
    if (!deleted.ok() && !deleted.IsNotFound()) {
      TM_LOG(ERROR, kLog) << "pool " << *it << ": its TokenMemoryPool is gone but delete failed: "
                          << deleted.ToString();
      ++it;
      continue;
    }
    TM_LOG(INFO, kLog) << "pool " << *it << " deleted: its TokenMemoryPool is gone";
    it = managed_.erase(it);
    SaveManaged();
  }
}

Status Reconciler::SyncOnce() {
  TM_ASSIGN_OR_RETURN(ListResult list, client_->List(kPoolPlural));
  lists_++;
  std::lock_guard lock(mu_);
  desired_.clear();
  for (auto& item : list.items) {
    std::string name = NameOf(item);
    if (!name.empty()) desired_[name] = std::move(item);
  }
  resource_version_ = list.resource_version;
  ReconcileAll();
  return Status::Ok();
}

Status Reconciler::ListAndWatch() {
  TM_RETURN_IF_ERROR(SyncOnce());
  auto stop = [this] {
    std::lock_guard lock(stop_mu_);
    return stopping_;
  };
  while (!stop()) {
    std::string rv;
    {
      std::lock_guard lock(mu_);
      rv = resource_version_;
    }
    auto on_event = [this](const WatchEvent& event) {
      std::lock_guard lock(mu_);
      if (event.object.contains("metadata") &&
          event.object["metadata"].contains("resourceVersion") &&
          event.object["metadata"]["resourceVersion"].is_string()) {
        resource_version_ = event.object["metadata"]["resourceVersion"].get<std::string>();
      }
      const std::string name = NameOf(event.object);
      if (event.type == "BOOKMARK" || name.empty()) return;
      if (event.type == "DELETED") {
        desired_.erase(name);
      } else {
        desired_[name] = event.object;
      }
      ReconcileAll();
    };
    TM_RETURN_IF_ERROR(client_->Watch(kPoolPlural, rv, on_event, stop));
  }
  return Status::Ok();
}

void Reconciler::Loop() {
  auto backoff = options_.backoff_initial;
  while (true) {
    {
      std::lock_guard lock(stop_mu_);
      if (stopping_) return;
    }
    const uint64_t lists_before = lists_.load();
    Status status = ListAndWatch();
    if (status.ok()) continue;  // stopping
    if (IsGone(status)) {
      gone_relists_++;
      TM_LOG(INFO, kLog) << "watch: " << status.message() << "; listing again";
      continue;
    }
    failures_++;
    if (lists_.load() != lists_before) backoff = options_.backoff_initial;
    TM_LOG(WARN, kLog) << "api server: " << status.ToString() << "; retrying in " << backoff.count()
                       << " ms";
    if (!WaitFor(backoff)) return;
    backoff = std::min(backoff * 2, options_.backoff_max);
  }
}

Status Reconciler::ReportNode() {
  if (options_.node_name.empty()) return InvalidArgument("kubernetes: no node name");
  auto node = client_->Get(kNodePlural, options_.node_name);
  if (node.status().IsNotFound()) {
    nlohmann::json fresh = {{"apiVersion", kGroupVersion},
                            {"kind", "TokenMemoryNode"},
                            {"metadata", {{"name", options_.node_name}}},
                            {"spec", {{"nodeName", options_.node_name}}}};
    node = client_->Create(kNodePlural, fresh);
  }
  if (!node.ok()) return node.status();

  nlohmann::json status;
  const auto capacity = pools_->Capacity();
  const auto reserved = pools_->Reserved();
  std::array<pool::TierUsage, pool::kTierCount> used{};
  nlohmann::json pools = nlohmann::json::array();
  for (const auto& p : pools_->List()) {
    pool::PoolSnapshot snap = p->Snapshot();
    uint64_t p_used = 0, p_blocks = 0;
    for (int t = 0; t < pool::kTierCount; ++t) {
      used[t].used_bytes += snap.usage[t].used_bytes;
      used[t].blocks += snap.usage[t].blocks;
      p_used += snap.usage[t].used_bytes;
      p_blocks += snap.usage[t].blocks;
    }
    uint64_t lookups = snap.counters.gets;
    double hit_ratio =
        lookups == 0 ? 0.0
                     : double(lookups - std::min(lookups, snap.counters.misses)) / double(lookups);
    pools.push_back({{"name", snap.spec.name},
                     {"ready", true},
                     {"capacityBytes", snap.spec.capacity.total()},
                     {"usedBytes", p_used},
                     {"blocks", p_blocks},
                     {"hitRatio", hit_ratio}});
  }
  nlohmann::json tiers = nlohmann::json::array();
  uint64_t total_used = 0;
  for (int t = 0; t < pool::kTierCount; ++t) {
    auto kind = static_cast<pool::TierKind>(t);
    if (capacity.of(kind) == 0) continue;
    total_used += used[t].used_bytes;
    tiers.push_back({{"tier", std::string(pool::TierName(kind))},
                     {"capacityBytes", capacity.of(kind)},
                     {"reservedBytes", reserved.of(kind)},
                     {"usedBytes", used[t].used_bytes},
                     {"blocks", used[t].blocks}});
  }
  std::vector<std::string> problems =
      options_.problems ? options_.problems() : std::vector<std::string>{};
  status["health"] = problems.empty() ? "Ready" : "Degraded";
  status["problems"] = problems;
  status["agentVersion"] = options_.agent_version;
  status["capacityBytes"] = capacity.total();
  status["usedBytes"] = total_used;
  status["poolCount"] = pools.size();
  status["lastHeartbeatTime"] = NowRfc3339();
  status["tiers"] = tiers;
  status["pools"] = pools;
  nlohmann::json updated = node.value();
  updated["status"] = status;
  auto written = client_->UpdateStatus(kNodePlural, updated);
  return written.ok() ? Status::Ok() : written.status();
}

void Reconciler::NodeLoop() {
  if (options_.node_name.empty()) return;
  do {
    Status status = ReportNode();
    if (!status.ok()) {
      TM_LOG(WARN, kLog) << "TokenMemoryNode " << options_.node_name << ": " << status.ToString();
    }
  } while (WaitFor(options_.node_status_interval));
}

}  // namespace tokenmem::k8s
