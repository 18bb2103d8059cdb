#include "fake_agent.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <span>

#include "tokenmem/common/crc32c.h"
#include "tokenmem/layout/local_protocol.h"

namespace tokenmem::testing {
namespace {

using layout::IndexEntry;

constexpr size_t kBufferBytes = sizeof(layout::MessageHeader) + layout::kMaxMessageBytes;

void CopyName(const std::string& name, char (&out)[64]) {
  std::memset(out, 0, sizeof(out));
  std::memcpy(out, name.data(), std::min(name.size(), sizeof(out) - 1));
}

std::string FromPadded(const char (&field)[64]) { return std::string(field, strnlen(field, 64)); }

// A read-only descriptor of the same file, as the agent gives read-only
// clients.
int ReopenReadOnly(int fd) {
  return ::open(("/proc/self/fd/" + std::to_string(fd)).c_str(), O_RDONLY | O_CLOEXEC);
}

struct MemFd {
  int fd = -1;
  std::byte* base = nullptr;
  size_t bytes = 0;
};

MemFd MakeMemFd(const char* name, size_t bytes) {
  MemFd m;
  m.fd = ::memfd_create(name, MFD_CLOEXEC);
  if (m.fd < 0 || ::ftruncate(m.fd, static_cast<off_t>(bytes)) != 0) return MemFd{};
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, m.fd, 0);
  if (p == MAP_FAILED) {
    ::close(m.fd);
    return MemFd{};
  }
  m.base = static_cast<std::byte*>(p);
  m.bytes = bytes;
  return m;
}

void FreeMemFd(MemFd& m) {
  if (m.base != nullptr) ::munmap(m.base, m.bytes);
  if (m.fd >= 0) ::close(m.fd);
  m = MemFd{};
}

class Payload {
 public:
  template <typename T>
  void Put(const T& v) {
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    bytes.insert(bytes.end(), p, p + sizeof(T));
  }
  std::vector<std::byte> bytes;
};

template <typename T>
bool Take(std::span<const std::byte>& in, T* out) {
  if (in.size() < sizeof(T)) return false;
  std::memcpy(out, in.data(), sizeof(T));
  in = in.subspan(sizeof(T));
  return true;
}

}  // namespace

struct FakeAgent::Pool {
  std::string name;
  uint32_t id = 0;
  uint64_t capacity = 0;
  uint64_t block_size = 0;
  uint32_t slots_per_segment = 0;
  MemFd index;
  MemFd area;
  std::vector<MemFd> segments;  // DRAM; fd -1 until created
  std::vector<bool> dram_used;
  std::vector<bool> nvme_used;
  std::map<uint32_t, std::string> nvme;
  std::set<std::pair<uint64_t, uint64_t>> pinned;
  std::map<std::pair<uint64_t, uint64_t>, std::string> elsewhere;  // other nodes' blocks
  uint64_t generation = 0;

  IndexEntry* entries() { return layout::Entries(index.base); }

  ~Pool() {
    FreeMemFd(index);
    FreeMemFd(area);
    for (MemFd& s : segments) FreeMemFd(s);
  }

  int64_t Probe(const BlockKey& key) {
    uint64_t pos = layout::Home(key.hi, key.lo, capacity);
    for (uint64_t i = 0; i < capacity; ++i, pos = (pos + 1) & (capacity - 1)) {
      IndexEntry& e = entries()[pos];
      const uint32_t state = e.state.load(std::memory_order_relaxed);
      if (state == layout::kEntryEmpty) return -1;
      if (state == layout::kEntryLive && e.key_hi.load() == key.hi && e.key_lo.load() == key.lo) {
        return static_cast<int64_t>(pos);
      }
    }
    return -1;
  }

  int64_t FreePosition(const BlockKey& key) {
    uint64_t pos = layout::Home(key.hi, key.lo, capacity);
    for (uint64_t i = 0; i < capacity; ++i, pos = (pos + 1) & (capacity - 1)) {
      if (entries()[pos].state.load(std::memory_order_relaxed) != layout::kEntryLive) {
        return static_cast<int64_t>(pos);
      }
    }
    return -1;
  }

  // The agent's seqlock write of one entry.
  template <typename F>
  void WriteEntry(uint64_t pos, F&& change) {
    IndexEntry& e = entries()[pos];
    const uint32_t s = e.seq.load(std::memory_order_relaxed);
    e.seq.store(s + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    change(e);
    e.seq.store(s + 2, std::memory_order_release);
  }

  std::byte* SlotAddress(uint32_t slot) {
    const uint32_t seg = slot / slots_per_segment;
    if (segments[seg].fd < 0) {
      segments[seg] =
          MakeMemFd("fake-segment", static_cast<size_t>(slots_per_segment) * block_size);
    }
    return segments[seg].base + static_cast<size_t>(slot % slots_per_segment) * block_size;
  }

  int64_t AllocSlot(std::vector<bool>& used) {
    for (size_t i = 0; i < used.size(); ++i) {
      if (!used[i]) {
        used[i] = true;
        return static_cast<int64_t>(i);
      }
    }
    return -1;
  }

  void FreeSlot(uint32_t tier, uint32_t slot) {
    if (tier == 0) {
      dram_used[slot] = false;
    } else {
      nvme_used[slot] = false;
      nvme.erase(slot);
    }
  }

  // Publishes key -> (tier, slot); frees the slot the key held before,
  // after the entry stopped naming it.
  bool Publish(const BlockKey& key, uint32_t tier, uint32_t slot, uint32_t length, uint32_t crc) {
    int64_t pos = Probe(key);
    int old_tier = -1;
    uint32_t old_slot = 0;
    if (pos >= 0) {
      old_tier = static_cast<int>(entries()[pos].tier.load());
      old_slot = entries()[pos].slot.load();
    } else {
      pos = FreePosition(key);
      if (pos < 0) return false;
    }
    const uint64_t gen = ++generation;
    WriteEntry(static_cast<uint64_t>(pos), [&](IndexEntry& e) {
      e.state.store(layout::kEntryLive, std::memory_order_relaxed);
      e.key_hi.store(key.hi, std::memory_order_relaxed);
      e.key_lo.store(key.lo, std::memory_order_relaxed);
      e.tier.store(tier, std::memory_order_relaxed);
      e.length.store(length, std::memory_order_relaxed);
      e.slot.store(slot, std::memory_order_relaxed);
      e.checksum.store(crc, std::memory_order_relaxed);
      e.generation.store(gen, std::memory_order_relaxed);
    });
    if (old_tier >= 0) FreeSlot(static_cast<uint32_t>(old_tier), old_slot);
    return true;
  }

  bool Remove(const BlockKey& key) {
    const int64_t pos = Probe(key);
    if (pos < 0) return false;
    const uint32_t tier = entries()[pos].tier.load();
    const uint32_t slot = entries()[pos].slot.load();
    WriteEntry(static_cast<uint64_t>(pos), [](IndexEntry& e) {
      e.state.store(layout::kEntryTombstone, std::memory_order_relaxed);
    });
    FreeSlot(tier, slot);
    pinned.erase({key.hi, key.lo});
    return true;
  }

  // Brings an NVMe block into DRAM: OK, NOT_FOUND, RESOURCE_EXHAUSTED.
  StatusCode Promote(const BlockKey& key) {
    const int64_t pos = Probe(key);
    if (pos < 0) return StatusCode::kNotFound;
    IndexEntry& e = entries()[pos];
    if (e.tier.load() != 2) return StatusCode::kOk;
    const int64_t slot = AllocSlot(dram_used);
    if (slot < 0) return StatusCode::kResourceExhausted;
    const std::string bytes = nvme[e.slot.load()];
    std::memcpy(SlotAddress(static_cast<uint32_t>(slot)), bytes.data(), bytes.size());
    Publish(key, 0, static_cast<uint32_t>(slot), e.length.load(), e.checksum.load());
    return StatusCode::kOk;
  }

  // A cluster FETCH of a key missing here: the block from "its owner",
  // stored in DRAM. OK, NOT_FOUND or RESOURCE_EXHAUSTED.
  StatusCode FromElsewhere(const BlockKey& key) {
    auto it = elsewhere.find({key.hi, key.lo});
    if (it == elsewhere.end()) return StatusCode::kNotFound;
    const int64_t slot = AllocSlot(dram_used);
    if (slot < 0) return StatusCode::kResourceExhausted;
    const std::string& bytes = it->second;
    std::memcpy(SlotAddress(static_cast<uint32_t>(slot)), bytes.data(), bytes.size());
    const uint32_t crc = Crc32c(
        std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()));
    if (!Publish(key, 0, static_cast<uint32_t>(slot), static_cast<uint32_t>(bytes.size()), crc)) {
      FreeSlot(0, static_cast<uint32_t>(slot));
      return StatusCode::kResourceExhausted;
    }
    return StatusCode::kOk;
  }

  std::string Bytes(const BlockKey& key) {
    const int64_t pos = Probe(key);
    IndexEntry& e = entries()[pos];
    if (e.tier.load() == 2) return nvme[e.slot.load()];
    return std::string(reinterpret_cast<const char*>(SlotAddress(e.slot.load())), e.length.load());
  }
};

struct FakeAgent::Connection {
  int fd = -1;
  bool hello = false;
  struct Reservation {
    uint32_t pool_id;
    uint32_t tier;
    uint32_t slot;
  };
  std::map<uint64_t, Reservation> reservations;
};

FakeAgent::FakeAgent(FakeAgentOptions options) : options_(std::move(options)) {}

FakeAgent::~FakeAgent() { Stop(); }

Status FakeAgent::Start() {
  uint32_t id = 1;
  for (const std::string& name : options_.pools) {
    auto p = std::make_unique<Pool>();
    p->name = name;
    p->id = id++;
    p->capacity = options_.index_capacity;
    p->block_size = options_.block_size;
    p->slots_per_segment = options_.slots_per_segment;
    p->index = MakeMemFd("fake-index", layout::IndexBytes(p->capacity));
    p->area = MakeMemFd("fake-area", layout::ClientAreaBytes(p->capacity));
    if (p->index.base == nullptr || p->area.base == nullptr) return ErrnoError("memfd", errno);
    auto* h = reinterpret_cast<layout::IndexHeader*>(p->index.base);
    h->magic = layout::kIndexMagic;
    h->version = layout::kIndexVersion;
    h->entry_bytes = sizeof(IndexEntry);
    h->capacity = p->capacity;
    h->block_size = p->block_size;
    h->tiers[0] = {1, options_.slots_per_segment, options_.block_size, options_.dram_slots};
    h->tiers[2] = {1, options_.nvme_slots, options_.block_size, options_.nvme_slots};
    CopyName(name, h->pool_name);
    p->segments.resize((options_.dram_slots + options_.slots_per_segment - 1) /
                       options_.slots_per_segment);
    p->SlotAddress(0);  // segment 0 exists from the start
    p->dram_used.assign(options_.dram_slots, false);
    p->nvme_used.assign(options_.nvme_slots, false);
    pools_.push_back(std::move(p));
  }
  listen_fd_ = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return ErrnoError("socket", errno);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (options_.socket_path.size() >= sizeof(addr.sun_path)) return InvalidArgument("path too long");
  std::memcpy(addr.sun_path, options_.socket_path.data(), options_.socket_path.size());
  ::unlink(options_.socket_path.c_str());
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return ErrnoError("bind " + options_.socket_path, errno);
  }
  if (::listen(listen_fd_, 64) != 0) return ErrnoError("listen", errno);
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) return ErrnoError("eventfd", errno);
  thread_ = std::thread([this] { Serve(); });
  return Status::Ok();
}

void FakeAgent::Stop() {
  if (thread_.joinable()) {
    stop_.store(true);
    const uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof(one));
    thread_.join();
  }
  for (size_t i = connections_.size(); i > 0; --i) CloseConnection(i - 1);
  if (listen_fd_ >= 0) {
    ::close(listen_fd_);
    ::unlink(options_.socket_path.c_str());
    listen_fd_ = -1;
  }
  if (wake_fd_ >= 0) ::close(wake_fd_);
  wake_fd_ = -1;
}

void FakeAgent::DropConnections() {
  drop_.store(true);
  const uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
  // Wait until the server thread has closed them.
  while (drop_.load()) std::this_thread::yield();
}

void FakeAgent::CloseConnection(size_t i) {
  std::lock_guard lock(mu_);
  Connection& c = *connections_[i];
  for (auto& [id, r] : c.reservations) {
    if (Pool* p = PoolById(r.pool_id)) p->FreeSlot(r.tier, r.slot);
  }
  ::close(c.fd);
  connections_.erase(connections_.begin() + static_cast<ptrdiff_t>(i));
}

FakeAgent::Pool* FakeAgent::FindPool(const std::string& name) {
  for (auto& p : pools_) {
    if (p->name == name) return p.get();
  }
  return nullptr;
}

FakeAgent::Pool* FakeAgent::PoolById(uint32_t id) {
  for (auto& p : pools_) {
    if (p->id == id) return p.get();
  }
  return nullptr;
}

void FakeAgent::Serve() {
  std::vector<std::byte> buffer(kBufferBytes);
  while (!stop_.load()) {
    std::vector<pollfd> fds;
    fds.push_back({wake_fd_, POLLIN, 0});
    fds.push_back({listen_fd_, POLLIN, 0});
    for (auto& c : connections_) fds.push_back({c->fd, POLLIN, 0});
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[0].revents & POLLIN) {
      uint64_t v;
      (void)!::read(wake_fd_, &v, sizeof(v));
      if (drop_.load()) {
        for (size_t i = connections_.size(); i > 0; --i) CloseConnection(i - 1);
        drop_.store(false);
        continue;
      }
    }
    if (stop_.load()) return;
    if (fds[1].revents & POLLIN) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd >= 0) {
        auto c = std::make_unique<Connection>();
        c->fd = fd;
        std::lock_guard lock(mu_);
        connections_.push_back(std::move(c));
      }
    }
    // Connections in the poll set are the first fds.size() - 2 of the list.
    for (size_t k = fds.size(); k > 2; --k) {
      const size_t i = k - 3;
      if (!(fds[k - 1].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const ssize_t n = ::recv(connections_[i]->fd, buffer.data(), buffer.size(), 0);
      if (n <= 0) {
        CloseConnection(i);
        continue;
      }
      if (silent_.load()) continue;
      Handle(*connections_[i], buffer.data(), static_cast<size_t>(n));
    }
  }
}

void FakeAgent::Handle(Connection& c, const std::byte* msg, size_t n) {
  std::lock_guard lock(mu_);
  layout::MessageHeader h{};
  std::span<const std::byte> in(msg, n);
  if (!Take(in, &h) || h.magic != layout::kProtocolMagic || h.length != in.size()) {
    ::shutdown(c.fd, SHUT_RDWR);
    return;
  }
  if (h.type < 16) requests_[h.type].fetch_add(1);

  Payload out;
  std::vector<int> fds_to_send;
  std::vector<int> fds_to_close;  // reopened read-only descriptors
  bool close_after = false;
  auto error = [&](StatusCode code, const std::string& message) {
    out.bytes.clear();
    out.Put(layout::StatusReply{static_cast<int32_t>(code), static_cast<uint32_t>(message.size())});
    const auto* p = reinterpret_cast<const std::byte*>(message.data());
    out.bytes.insert(out.bytes.end(), p, p + message.size());
  };
  auto segment_fd = [&](int fd) {
    if (!options_.read_only) return fd;
    const int ro = ReopenReadOnly(fd);
    fds_to_close.push_back(ro);
    return ro;
  };

  if (!c.hello && h.type != layout::kHello) {
    error(StatusCode::kFailedPrecondition, "HELLO must come first");
    close_after = true;
  } else if (h.type == layout::kHello) {
    layout::HelloRequest req{};
    if (!Take(in, &req)) {
      error(StatusCode::kInvalidArgument, "short HELLO");
      close_after = true;
    } else if (FromPadded(req.lease_id) != options_.lease_id) {
      error(StatusCode::kNotFound, "no such lease");
      close_after = true;
    } else if (FromPadded(req.secret) != options_.lease_secret) {
      error(StatusCode::kPermissionDenied, "wrong lease secret");
      close_after = true;
    } else {
      c.hello = true;
      out.Put(layout::StatusReply{0, 0});
    }
  } else if (h.type == layout::kAttach) {
    layout::AttachRequest req{};
    Pool* p = Take(in, &req) ? FindPool(FromPadded(req.pool)) : nullptr;
    if (p == nullptr) {
      error(StatusCode::kNotFound, "no such pool");
    } else {
      std::vector<layout::SegmentInfo> infos;
      for (uint32_t s = 0; s < p->segments.size(); ++s) {
        if (p->segments[s].fd >= 0) infos.push_back({0, s, p->segments[s].bytes});
      }
      const uint32_t flags = (options_.read_only ? layout::kAttachReadOnly : 0u) |
                             (options_.cluster ? layout::kAttachClusterScope : 0u);
      out.Put(layout::AttachReply{0, p->id, p->index.bytes, p->area.bytes, flags,
                                  static_cast<uint32_t>(infos.size())});
      for (const auto& i : infos) out.Put(i);
      const int index_ro = ReopenReadOnly(p->index.fd);
      fds_to_close.push_back(index_ro);
      fds_to_send.push_back(index_ro);
      fds_to_send.push_back(p->area.fd);
      for (const auto& i : infos) fds_to_send.push_back(segment_fd(p->segments[i.segment].fd));
    }
  } else if (h.type == layout::kSegments) {
    layout::SegmentsRequest req{};
    Pool* p = Take(in, &req) ? PoolById(req.pool_id) : nullptr;
    if (p == nullptr || req.tier != 0) {
      error(StatusCode::kInvalidArgument, "bad SEGMENTS request");
    } else {
      std::vector<layout::SegmentInfo> infos;
      for (uint32_t s = req.first_segment; s < p->segments.size(); ++s) {
        if (p->segments[s].fd >= 0) infos.push_back({0, s, p->segments[s].bytes});
      }
      out.Put(layout::SegmentsReply{0, static_cast<uint32_t>(infos.size())});
      for (const auto& i : infos) {
        out.Put(i);
        fds_to_send.push_back(segment_fd(p->segments[i.segment].fd));
      }
    }
  } else if (h.type == layout::kReserve) {
    layout::ReserveRequest req{};
    Pool* p = Take(in, &req) ? PoolById(req.pool_id) : nullptr;
    if (p == nullptr || req.count > layout::kMaxBatch) {
      error(StatusCode::kInvalidArgument, "bad RESERVE request");
    } else if (options_.read_only) {
      error(StatusCode::kPermissionDenied, "read-only lease");
    } else {
      uint32_t want = req.count;
      if (options_.max_grant != 0) want = std::min(want, options_.max_grant);
      std::vector<layout::SlotGrant> grants;
      for (uint32_t i = 0; i < want; ++i) {
        const int64_t slot = p->AllocSlot(p->dram_used);
        if (slot < 0) break;
        p->SlotAddress(static_cast<uint32_t>(slot));  // creates its segment
        const uint64_t r = next_reservation_++;
        c.reservations[r] = {p->id, 0, static_cast<uint32_t>(slot)};
        grants.push_back({0, static_cast<uint32_t>(slot), r});
      }
      if (grants.empty() && req.count > 0) {
        error(StatusCode::kResourceExhausted, "pool is full");
      } else {
        out.Put(layout::ReserveReply{0, static_cast<uint32_t>(grants.size())});
        for (const auto& g : grants) out.Put(g);
      }
    }
  } else if (h.type == layout::kCommit) {
    layout::CommitRequest req{};
    Pool* p = Take(in, &req) ? PoolById(req.pool_id) : nullptr;
    if (p == nullptr || in.size() != req.count * sizeof(layout::CommitItem)) {
      error(StatusCode::kInvalidArgument, "bad COMMIT request");
    } else {
      std::vector<int32_t> codes;
      for (uint32_t i = 0; i < req.count; ++i) {
        layout::CommitItem item{};
        Take(in, &item);
        auto it = c.reservations.find(item.reservation);
        StatusCode code = StatusCode::kOk;
        if (it == c.reservations.end() || it->second.pool_id != p->id) {
          code = StatusCode::kInvalidArgument;
        } else {
          const auto r = it->second;
          c.reservations.erase(it);
          const std::byte* data = p->SlotAddress(r.slot);
          if (item.length > p->block_size) {
            code = StatusCode::kInvalidArgument;
          } else if (Crc32c(std::span<const std::byte>(data, item.length)) != item.checksum) {
            code = StatusCode::kCorruption;
          } else if (!p->Publish({item.key_hi, item.key_lo}, r.tier, r.slot, item.length,
                                 item.checksum)) {
            code = StatusCode::kResourceExhausted;
          }
          if (code != StatusCode::kOk) p->FreeSlot(r.tier, r.slot);
        }
        codes.push_back(static_cast<int32_t>(code));
      }
      out.Put(layout::BatchReply{0, req.count, 0});
      for (int32_t code : codes) out.Put(code);
    }
  } else if (h.type == layout::kAbort) {
    layout::AbortRequest req{};
    Pool* p = Take(in, &req) ? PoolById(req.pool_id) : nullptr;
    if (p == nullptr) {
      error(StatusCode::kInvalidArgument, "bad ABORT request");
    } else {
      for (uint32_t i = 0; i < req.count; ++i) {
        uint64_t r = 0;
        if (!Take(in, &r)) break;
        auto it = c.reservations.find(r);
        if (it == c.reservations.end()) continue;
        p->FreeSlot(it->second.tier, it->second.slot);
        c.reservations.erase(it);
      }
      out.Put(layout::BatchReply{0, 0, 0});
    }
  } else if (h.type >= layout::kFetch && h.type <= layout::kLookup) {
    layout::KeysRequest req{};
    Pool* p = Take(in, &req) ? PoolById(req.pool_id) : nullptr;
    if (p == nullptr || in.size() != req.count * sizeof(layout::Key)) {
      error(StatusCode::kInvalidArgument, "bad keys request");
    } else if (options_.read_only && h.type == layout::kRemove) {
      error(StatusCode::kPermissionDenied, "read-only lease");
    } else {
      std::vector<int32_t> codes;
      uint64_t matched = 0;
      bool prefix = true;
      for (uint32_t i = 0; i < req.count; ++i) {
        layout::Key k{};
        Take(in, &k);
        const BlockKey key{k.hi, k.lo};
        StatusCode code = StatusCode::kOk;
        switch (h.type) {
          case layout::kFetch:
            code = p->Promote(key);
            if (code == StatusCode::kNotFound && options_.cluster) {
              elsewhere_asks_.fetch_add(1);
              code = p->FromElsewhere(key);
            }
            break;
          case layout::kRemove:
            code = p->Remove(key) ? StatusCode::kOk : StatusCode::kNotFound;
            break;
          case layout::kPin:
            if (p->Probe(key) < 0) {
              code = StatusCode::kNotFound;
            } else {
              p->pinned.insert({key.hi, key.lo});
            }
            break;
          case layout::kUnpin:
            code = p->pinned.erase({key.hi, key.lo}) ? StatusCode::kOk : StatusCode::kNotFound;
            break;
          case layout::kLookup:
            if (prefix && p->Probe(key) >= 0) {
              ++matched;
              p->Promote(key);
            } else {
              prefix = false;
            }
            break;
        }
        codes.push_back(static_cast<int32_t>(code));
      }
      if (h.type == layout::kLookup) {
        out.Put(layout::BatchReply{0, 0, matched});
      } else {
        out.Put(layout::BatchReply{0, req.count, 0});
        for (int32_t code : codes) out.Put(code);
      }
    }
  } else {
    error(StatusCode::kInvalidArgument, "unknown message type");
    close_after = true;
  }

  layout::MessageHeader rh{layout::kProtocolMagic, layout::kProtocolVersion,
                           static_cast<uint16_t>(h.type | layout::kReply), h.request_id,
                           static_cast<uint32_t>(out.bytes.size())};
  iovec iov[2] = {{&rh, sizeof(rh)}, {out.bytes.data(), out.bytes.size()}};
  msghdr m{};
  m.msg_iov = iov;
  m.msg_iovlen = 2;
  std::vector<char> control;
  if (!fds_to_send.empty()) {
    control.resize(CMSG_SPACE(sizeof(int) * fds_to_send.size()));
    m.msg_control = control.data();
    m.msg_controllen = control.size();
    cmsghdr* cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * fds_to_send.size());
    std::memcpy(CMSG_DATA(cm), fds_to_send.data(), sizeof(int) * fds_to_send.size());
  }
  (void)::sendmsg(c.fd, &m, MSG_NOSIGNAL);
  for (int fd : fds_to_close) ::close(fd);
  if (close_after) ::shutdown(c.fd, SHUT_RDWR);
}

void FakeAgent::StoreElsewhere(const std::string& pool, const BlockKey& key,
                               const std::string& bytes) {
  std::lock_guard lock(mu_);
  Pool* p = FindPool(pool);
  if (p != nullptr) p->elsewhere[{key.hi, key.lo}] = bytes;
}

Status FakeAgent::Store(const std::string& pool, const BlockKey& key, const std::string& bytes,
                        uint32_t tier) {
  std::lock_guard lock(mu_);
  Pool* p = FindPool(pool);
  if (p == nullptr) return NotFound("pool");
  const uint32_t crc = Crc32c(
      std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()));
  const int64_t slot = p->AllocSlot(tier == 0 ? p->dram_used : p->nvme_used);
  if (slot < 0) return ResourceExhausted("full");
  if (tier == 0) {
    std::memcpy(p->SlotAddress(static_cast<uint32_t>(slot)), bytes.data(), bytes.size());
  } else {
    p->nvme[static_cast<uint32_t>(slot)] = bytes;
  }
  if (!p->Publish(key, tier, static_cast<uint32_t>(slot), static_cast<uint32_t>(bytes.size()),
                  crc)) {
    return ResourceExhausted("index full");
  }
  return Status::Ok();
}

bool FakeAgent::Evict(const std::string& pool, const BlockKey& key) {
  std::lock_guard lock(mu_);
  Pool* p = FindPool(pool);
  return p != nullptr && p->Remove(key);
}

void FakeAgent::BumpSeq(const std::string& pool, const BlockKey& key) {
  std::lock_guard lock(mu_);
  Pool* p = FindPool(pool);
  const int64_t pos = p->Probe(key);
  if (pos >= 0) p->WriteEntry(static_cast<uint64_t>(pos), [](IndexEntry&) {});
}

void FakeAgent::Rewrite(const std::string& pool, const BlockKey& key, const std::string& bytes) {
  std::lock_guard lock(mu_);
  Pool* p = FindPool(pool);
  const int64_t pos = p->Probe(key);
  if (pos < 0) return;
  const uint32_t slot = p->entries()[pos].slot.load();
  const uint32_t crc = Crc32c(
      std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()));
  p->WriteEntry(static_cast<uint64_t>(pos), [&](IndexEntry& e) {
    // The slot changes while the entry is odd: readers must discard what
    // they copied meanwhile.
    layout::CopyToSlot(p->SlotAddress(slot), bytes.data(), bytes.size());
    e.length.store(static_cast<uint32_t>(bytes.size()), std::memory_order_relaxed);
    e.checksum.store(crc, std::memory_order_relaxed);
  });
}

Result<std::string> FakeAgent::Read(const std::string& pool, const BlockKey& key) {
  std::lock_guard lock(mu_);
  Pool* p = FindPool(pool);
  if (p == nullptr || p->Probe(key) < 0) return NotFound("absent");
  return p->Bytes(key);
}

int FakeAgent::TierOf(const std::string& pool, const BlockKey& key) {
  std::lock_guard lock(mu_);
  Pool* p = FindPool(pool);
  const int64_t pos = p == nullptr ? -1 : p->Probe(key);
  return pos < 0 ? -1 : static_cast<int>(p->entries()[pos].tier.load());
}

bool FakeAgent::Pinned(const std::string& pool, const BlockKey& key) {
  std::lock_guard lock(mu_);
  Pool* p = FindPool(pool);
  return p != nullptr && p->pinned.count({key.hi, key.lo}) > 0;
}

uint8_t FakeAgent::Accessed(const std::string& pool, const BlockKey& key) {
  std::lock_guard lock(mu_);
  Pool* p = FindPool(pool);
  const int64_t pos = p == nullptr ? -1 : p->Probe(key);
  if (pos < 0) return 0;
  const auto* accessed =
      reinterpret_cast<const uint8_t*>(p->area.base) + sizeof(layout::ClientArea);
  return __atomic_load_n(accessed + pos, __ATOMIC_RELAXED);
}

layout::ClientArea* FakeAgent::client_area(const std::string& pool) {
  std::lock_guard lock(mu_);
  Pool* p = FindPool(pool);
  return p == nullptr ? nullptr : reinterpret_cast<layout::ClientArea*>(p->area.base);
}

uint64_t FakeAgent::Requests(uint16_t type) const { return type < 16 ? requests_[type].load() : 0; }

size_t FakeAgent::OpenReservations() {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (auto& c : connections_) n += c->reservations.size();
  return n;
}

uint32_t FakeAgent::Segments(const std::string& pool) {
  std::lock_guard lock(mu_);
  Pool* p = FindPool(pool);
  uint32_t n = 0;
  if (p != nullptr) {
    for (auto& s : p->segments) n += s.fd >= 0 ? 1 : 0;
  }
  return n;
}

}  // namespace tokenmem::testing
