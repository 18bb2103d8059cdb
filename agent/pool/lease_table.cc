#include "pool/lease_table.h"

#include <algorithm>
#include <chrono>

#include <new>

#include "pool/lease_file.h"
#include "pool/pool_spec.h"
#include "tokenmem/common/log.h"
#include "tokenmem/common/random.h"
#include "tokenmem/common/units.h"
#include "tokenmem/layout/local_protocol.h"

namespace tokenmem::pool {

LeaseAccount::LeaseAccount(std::string id, std::string secret, LeaseOptions options,
                           int64_t created_unix_s)
    : id_(std::move(id)),
      secret_(std::move(secret)),
      options_(std::move(options)),
      created_unix_s_(created_unix_s),
      namespace_(options_.namespace_name),
      namespace_pending_(options_.namespace_pending && options_.namespace_name.empty()) {}

std::string LeaseAccount::namespace_name() const {
  std::lock_guard lock(namespace_mu_);
  return namespace_;
}

bool LeaseAccount::namespace_pending() const {
  std::lock_guard lock(namespace_mu_);
  return namespace_pending_;
}

Status LeaseAccount::AdmittedTo(const std::string& pool,
                                const std::vector<std::string>& allowed) const {
  if (allowed.empty()) return Status::Ok();
  std::string ns;
  bool pending;
  {
    std::lock_guard lock(namespace_mu_);
    ns = namespace_;
    pending = namespace_pending_;
  }
  if (!ns.empty() && std::binary_search(allowed.begin(), allowed.end(), ns)) return Status::Ok();
  std::string names;
  for (const auto& a : allowed) names += (names.empty() ? "" : ", ") + a;
  const std::string admits = "pool '" + pool + "' admits leases of namespaces " + names;
  if (pending) {
    return Unavailable(admits + "; lease '" + id_ +
                       "' does not know its pod's namespace yet (the device plugin binds it "
                       "shortly after the pod starts): retry");
  }
  return PermissionDenied(admits + "; lease '" + id_ + "' is " +
                          (ns.empty() ? std::string("in no namespace") : "in '" + ns + "'"));
}

bool LeaseAccount::SecretMatches(const std::string& secret) const {
  // Constant time over the stored secret's length, so the comparison does
  // not tell how many leading characters were right.
  unsigned char diff = secret.size() == secret_.size() ? 0 : 1;
  for (size_t i = 0; i < secret_.size(); ++i) {
    unsigned char c = i < secret.size() ? static_cast<unsigned char>(secret[i]) : 0;
    diff |= static_cast<unsigned char>(c ^ static_cast<unsigned char>(secret_[i]));
  }
  return diff == 0;
}

bool LeaseAccount::MayUsePool(const std::string& pool) const {
  return options_.pools.empty() ||
         std::find(options_.pools.begin(), options_.pools.end(), pool) != options_.pools.end();
}

bool LeaseAccount::TryCharge(uint64_t bytes) {
  uint64_t used = used_.load(std::memory_order_relaxed);
  do {
    if (used + bytes > options_.quota_bytes || used + bytes < used) return false;
  } while (!used_.compare_exchange_weak(used, used + bytes, std::memory_order_relaxed));
  return true;
}

void LeaseAccount::Refund(uint64_t bytes) {
  uint64_t used = used_.load(std::memory_order_relaxed);
  uint64_t next;
  do {
    next = used >= bytes ? used - bytes : 0;
  } while (!used_.compare_exchange_weak(used, next, std::memory_order_relaxed));
}

bool LeaseAccount::TryPin(uint64_t max) {
  uint64_t pinned = pinned_.load(std::memory_order_relaxed);
  do {
    if (max != 0 && pinned >= max) return false;
  } while (!pinned_.compare_exchange_weak(pinned, pinned + 1, std::memory_order_relaxed));
  return true;
}

void LeaseAccount::Unpinned() {
  uint64_t pinned = pinned_.load(std::memory_order_relaxed);
  while (pinned != 0 &&
         !pinned_.compare_exchange_weak(pinned, pinned - 1, std::memory_order_relaxed)) {
  }
}

Status LeaseTable::PersistTo(const std::filesystem::path& file, LeaseFileWriter writer) {
  {
    std::lock_guard lock(write_mu_);
    writer_ = writer ? std::move(writer) : LeaseFileWriter(WriteLeaseFile);
  }
  Snapshot snapshot;
  {
    std::lock_guard lock(mu_);
    auto stored = ReadLeaseFile(file);
    if (!stored.ok() && !stored.status().IsNotFound()) return stored.status();
    if (stored.ok()) {
      for (auto& l : *stored) {
        auto account =
            std::make_shared<LeaseAccount>(l.id, l.secret, std::move(l.options), l.created_unix_s);
        leases_.emplace(l.id, std::move(account));
      }
      TM_LOG(INFO, "lease") << "loaded " << stored->size() << " leases from " << file.string();
    }
    file_ = file;
    snapshot = TakeSnapshot();
  }
  return Write(std::move(snapshot));
}

LeaseTable::Snapshot LeaseTable::TakeSnapshot() const {
  if (file_.empty()) return {};
  Snapshot snapshot{.sequence = ++snapshots_, .file = file_, .leases = {}};
  snapshot.leases.reserve(leases_.size());
  for (const auto& [id, account] : leases_) {
    StoredLease l{account->id_, account->secret_, account->options_, account->created_unix_s_};
    l.options.namespace_name = account->namespace_name();
    l.options.namespace_pending = account->namespace_pending();
    snapshot.leases.push_back(std::move(l));
  }
  std::sort(snapshot.leases.begin(), snapshot.leases.end(),
            [](const auto& a, const auto& b) { return a.id < b.id; });
  return snapshot;
}

Status LeaseTable::Write(Snapshot snapshot) const {
  if (snapshot.sequence == 0) return Status::Ok();
  std::lock_guard lock(write_mu_);
  // A later snapshot was taken after this one's change, so it holds it:
  // the file is at least as new as this caller needs.
  if (snapshot.sequence <= written_) return Status::Ok();
  TM_RETURN_IF_ERROR(writer_(snapshot.file, snapshot.leases).WithContext("cannot save leases"));
  written_ = snapshot.sequence;
  return Status::Ok();
}

Result<CreatedLease> LeaseTable::Create(LeaseOptions options) {
  if (options.quota_bytes == 0) return InvalidArgument("lease quota must be greater than 0");
  if (!options.namespace_name.empty()) {
    TM_RETURN_IF_ERROR(
        ValidateNamespaceName(options.namespace_name).WithContext("lease namespace"));
  }
  if (options.owner.size() > 253)
    return InvalidArgument("lease owner is longer than 253 characters");
  TM_ASSIGN_OR_RETURN(std::string id_suffix, RandomHex(8));
  TM_ASSIGN_OR_RETURN(std::string secret, RandomHex(16));
  std::string id = "lease-" + id_suffix;
  int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  auto account = std::make_shared<LeaseAccount>(id, secret, std::move(options), now);
  Snapshot snapshot;
  {
    std::lock_guard lock(mu_);
    if (!leases_.emplace(id, account).second) return Internal("lease id collision, try again");
    snapshot = TakeSnapshot();
  }
  if (Status saved = Write(std::move(snapshot)); !saved.ok()) {
    // A lease that would vanish at restart is not handed out. A newer
    // snapshot may have written it meanwhile; the next save drops it.
    std::lock_guard lock(mu_);
    leases_.erase(id);
    return saved;
  }
  TM_LOG(INFO, "lease") << "created " << id << " quota "
                        << FormatByteSize(account->options().quota_bytes)
                        << (account->options().read_only ? " read-only" : "")
                        << (account->options().owner.empty()
                                ? ""
                                : " owner " + account->options().owner);
  return CreatedLease{account, secret};
}

Result<std::shared_ptr<LeaseAccount>> LeaseTable::Bind(const std::string& id,
                                                       const std::string& ns) {
  TM_RETURN_IF_ERROR(ValidateNamespaceName(ns).WithContext("lease namespace"));
  std::shared_ptr<LeaseAccount> bound;
  Snapshot snapshot;
  {
    std::lock_guard lock(mu_);
    auto it = leases_.find(id);
    if (it == leases_.end()) return NotFound("lease '" + id + "' does not exist");
    bound = it->second;
    LeaseAccount& account = *bound;
    {
      std::lock_guard ns_lock(account.namespace_mu_);
      if (account.namespace_ == ns) return bound;
      if (!account.namespace_.empty()) {
        return FailedPrecondition("lease '" + id + "' is in namespace '" + account.namespace_ +
                                  "' already");
      }
      account.namespace_ = ns;
      account.namespace_pending_ = false;
    }
    snapshot = TakeSnapshot();
  }
  if (Status saved = Write(std::move(snapshot)); !saved.ok()) {
    // Bound in memory; a restart before the next good save forgets it, and
    // the device plugin binds it again.
    TM_LOG(ERROR, "lease") << saved.ToString();
  }
  TM_LOG(INFO, "lease") << "bound " << id << " to namespace " << ns;
  return bound;
}

Result<int> LeaseAccount::StateFd() {
  std::lock_guard lock(state_mu_);
  if (!state_page_) {
    TM_ASSIGN_OR_RETURN(tier::MemorySegment page,
                        tier::MemorySegment::Create("tokenmem:lease:" + id_.substr(0, 64),
                                                    layout::kLeaseStatePageBytes, {}));
    // A lease released before its first connection: the page says so too.
    auto* state = new (page.data()) layout::LeaseStatePage{};
    state->state.store(released() ? layout::kLeaseReleased : layout::kLeaseActive,
                       std::memory_order_release);
    state_page_ = std::move(page);
  }
  return state_page_->fd();
}

void LeaseAccount::MarkReleased() {
  released_.store(true, std::memory_order_release);
  std::lock_guard lock(state_mu_);
  if (state_page_) {
    reinterpret_cast<layout::LeaseStatePage*>(state_page_->data())
        ->state.store(layout::kLeaseReleased, std::memory_order_release);
  }
}

void LeaseTable::OnRelease(std::function<void(LeaseAccount&)> hook) {
  std::lock_guard lock(mu_);
  on_release_ = std::move(hook);
}

Status LeaseTable::Release(const std::string& id) {
  std::shared_ptr<LeaseAccount> account;
  std::function<void(LeaseAccount&)> hook;
  Snapshot snapshot;
  {
    std::lock_guard lock(mu_);
    auto it = leases_.find(id);
    if (it == leases_.end()) return NotFound("lease '" + id + "' does not exist");
    account = it->second;
    hook = on_release_;
    leases_.erase(it);
    snapshot = TakeSnapshot();
  }
  if (Status saved = Write(std::move(snapshot)); !saved.ok()) {
    // Released in memory; the file still names the lease until the next
    // successful save, so it could come back after a restart.
    TM_LOG(ERROR, "lease") << saved.ToString();
  }
  account->MarkReleased();
  // After MarkReleased: a pool that records a pin checks released() under
  // its own lock, so a pin racing with this release is either refused or
  // seen (and dropped) by the hook.
  if (hook) hook(*account);
  TM_LOG(INFO, "lease") << "released " << id << " (" << FormatByteSize(account->used_bytes())
                        << " charged)";
  return Status::Ok();
}

Result<std::shared_ptr<LeaseAccount>> LeaseTable::Login(const std::string& id,
                                                        const std::string& secret) const {
  std::shared_ptr<LeaseAccount> account;
  {
    std::lock_guard lock(mu_);
    auto it = leases_.find(id);
    if (it == leases_.end()) return NotFound("lease '" + id + "' does not exist");
    account = it->second;
  }
  if (!account->SecretMatches(secret))
    return PermissionDenied("wrong secret for lease '" + id + "'");
  return account;
}

Result<std::shared_ptr<LeaseAccount>> LeaseTable::Authenticate(const std::string& id,
                                                               const std::string& secret,
                                                               const std::string& pool,
                                                               bool write) const {
  TM_ASSIGN_OR_RETURN(std::shared_ptr<LeaseAccount> account, Login(id, secret));
  if (!account->MayUsePool(pool)) {
    return PermissionDenied("lease '" + id + "' may not use pool '" + pool + "'");
  }
  if (write && account->options().read_only) {
    return PermissionDenied("lease '" + id + "' is read-only");
  }
  return account;
}

std::vector<std::shared_ptr<LeaseAccount>> LeaseTable::List() const {
  std::lock_guard lock(mu_);
  std::vector<std::shared_ptr<LeaseAccount>> out;
  out.reserve(leases_.size());
  for (const auto& [id, account] : leases_) out.push_back(account);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a->id() < b->id(); });
  return out;
}

size_t LeaseTable::size() const {
  std::lock_guard lock(mu_);
  return leases_.size();
}

}  // namespace tokenmem::pool
