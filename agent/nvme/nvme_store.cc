#include "nvme/nvme_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>

#include "nvme/io_observer.h"
#include "tokenmem/common/crc32c.h"
#include "tokenmem/common/log.h"

namespace tokenmem::nvme {
namespace fs = std::filesystem;

namespace {

constexpr char kLog[] = "nvme";
constexpr uint64_t kMaxCapacitySlots = 0xFFFFFFFEull;  // slot numbers are uint32_t
constexpr uint32_t kMaxSegments = 1000000;             // six digits in the file name
constexpr uint64_t kMaxBlockSize = UringQueue::kMaxOpLength - kSlotHeaderSize;
constexpr std::string_view kSegmentPrefix = "seg-";
constexpr std::string_view kSegmentSuffix = ".tmd";
constexpr std::string_view kTempSuffix = ".tmp";

// Recovery scan. Slots up to kChunkScanMaxSlotSize are read whole, many per
// read, as the file lies (sequential reads of kScanChunkBytes); larger slots
// only have their 4096-byte header read, since reading their data areas
// would cost more than the extra I/O operations. kScanDepth reads are kept
// in flight on a ring of the scan's own.
constexpr uint64_t kChunkScanMaxSlotSize = 16 * 1024;
constexpr uint64_t kScanChunkBytes = 256 * 1024;
constexpr uint32_t kScanDepth = 128;
constexpr size_t kScanOpsPerRoundChunked = 128;   // 32 MiB of buffers
constexpr size_t kScanOpsPerRoundHeaders = 2048;  // 8 MiB of buffers

uint64_t NowUnixMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

uint64_t ElapsedNs(std::chrono::steady_clock::time_point since) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - since)
          .count());
}

std::string SegmentName(uint32_t index) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "seg-%06u.tmd", index);
  return buf;
}

// "seg-NNNNNN.tmd" -> NNNNNN; with *temp set for "seg-NNNNNN.tmd.tmp".
std::optional<uint32_t> ParseSegmentName(std::string_view name, bool* temp) {
  *temp = false;
  if (name.size() == kSegmentPrefix.size() + 6 + kSegmentSuffix.size() + kTempSuffix.size() &&
      name.substr(name.size() - kTempSuffix.size()) == kTempSuffix) {
    *temp = true;
    name.remove_suffix(kTempSuffix.size());
  }
  if (name.size() != kSegmentPrefix.size() + 6 + kSegmentSuffix.size()) return std::nullopt;
  if (name.substr(0, kSegmentPrefix.size()) != kSegmentPrefix) return std::nullopt;
  if (name.substr(name.size() - kSegmentSuffix.size()) != kSegmentSuffix) return std::nullopt;
  uint32_t value = 0;
  for (char c : name.substr(kSegmentPrefix.size(), 6)) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  return value;
}

Status ValidateOptions(const NvmeStoreOptions& o) {
  if (o.directory.empty()) return InvalidArgument("NVMe store: no directory given");
  if (o.block_size == 0 || !IsIoAligned(o.block_size) || o.block_size > kMaxBlockSize) {
    return InvalidArgument("NVMe store: block_size " + std::to_string(o.block_size) +
                           " must be a non-zero multiple of 4096 up to " +
                           std::to_string(kMaxBlockSize));
  }
  const uint64_t slots = o.capacity_bytes / o.block_size;
  if (slots == 0) {
    return InvalidArgument("NVMe store: capacity " + std::to_string(o.capacity_bytes) +
                           " bytes is less than one block of " + std::to_string(o.block_size));
  }
  if (slots > kMaxCapacitySlots) {
    return InvalidArgument("NVMe store: capacity of " + std::to_string(slots) +
                           " blocks exceeds the limit of " + std::to_string(kMaxCapacitySlots));
  }
  if (o.queue_depth == 0 || o.queue_depth > 4096) {
    return InvalidArgument("NVMe store: queue_depth must be 1..4096, got " +
                           std::to_string(o.queue_depth));
  }
  if (o.io_rings == 0 || o.io_rings > 64) {
    return InvalidArgument("NVMe store: io_rings must be 1..64, got " + std::to_string(o.io_rings));
  }
  return Status::Ok();
}

Status SyncDirectoryFd(int fd, const fs::path& dir) {
  if (::fsync(fd) != 0) return ErrnoError("fsync directory " + dir.string(), errno);
  return Status::Ok();
}

Status SyncDirectory(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open directory " + dir.string(), errno);
  Status s = SyncDirectoryFd(fd, dir);
  ::close(fd);
  return s;
}

// Creates `dir` when missing; its parent must exist.
Status PrepareDirectory(const fs::path& dir) {
  std::error_code ec;
  const fs::file_status st = fs::status(dir, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return IoError("NVMe store: cannot stat " + dir.string() + ": " + ec.message());
  }
  if (fs::exists(st)) {
    if (!fs::is_directory(st)) {
      return InvalidArgument("NVMe store: " + dir.string() + " exists and is not a directory");
    }
    return Status::Ok();
  }
  fs::path parent = dir.parent_path();
  if (parent.empty()) parent = ".";
  if (!fs::is_directory(parent, ec)) {
    return NotFound("NVMe store: parent directory " + parent.string() + " of " + dir.string() +
                    " does not exist");
  }
  if (!fs::create_directory(dir, ec) && ec) {
    return IoError("NVMe store: cannot create " + dir.string() + ": " + ec.message());
  }
  return SyncDirectory(parent);
}

// Takes an exclusive flock on the directory so that two stores never share it.
Result<int> LockDirectory(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open directory " + dir.string(), errno);
  int rc;
  do {
    rc = ::flock(fd, LOCK_EX | LOCK_NB);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return FailedPrecondition("NVMe store: " + dir.string() +
                                " is in use by another open store (its lock is held)");
    }
    return ErrnoError("flock " + dir.string(), err);
  }
  return fd;
}

// Ordering among slots holding one key: the winner is the largest.
auto Rank(const RecoveredBlock& b) {
  return std::make_tuple(b.generation, b.stored_unix_ms, b.slot);
}

}  // namespace

// An I/O buffer of slot_size_ bytes borrowed from the store's pool.
class NvmeStore::ScopedBuffer {
 public:
  explicit ScopedBuffer(NvmeStore* store) : store_(store) {}
  ~ScopedBuffer() {
    if (buffer_.data() != nullptr) store_->ReturnBuffer(std::move(buffer_));
  }
  ScopedBuffer(const ScopedBuffer&) = delete;
  ScopedBuffer& operator=(const ScopedBuffer&) = delete;

  Status Take() {
    TM_ASSIGN_OR_RETURN(buffer_, store_->TakeBuffer());
    return Status::Ok();
  }
  std::byte* data() { return buffer_.data(); }

 private:
  NvmeStore* store_;
  AlignedBuffer buffer_;
};

NvmeStore::NvmeStore(const NvmeStoreOptions& options, uint32_t capacity_slots, int lock_fd)
    : directory_(options.directory),
      block_size_(options.block_size),
      slot_size_(kSlotHeaderSize + options.block_size),
      capacity_slots_(capacity_slots),
      requested_segment_bytes_(options.segment_bytes),
      queue_depth_(options.queue_depth),
      io_rings_(options.io_rings),
      lock_fd_(lock_fd),
      max_pooled_buffers_(std::clamp<size_t>((64ull << 20) / slot_size_, 2, 64)) {}

NvmeStore::~NvmeStore() {
  if (dirty_.load()) {
    Status s = Sync();
    if (!s.ok()) {
      TM_LOG(WARN, kLog) << "sync at close failed: " << s.ToString();
    }
  }
  segments_.clear();
  queue_.reset();
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the directory lock
}

Result<std::unique_ptr<NvmeStore>> NvmeStore::Open(const NvmeStoreOptions& options,
                                                   std::vector<RecoveredBlock>* recovered) {
  if (recovered != nullptr) recovered->clear();
  TM_RETURN_IF_ERROR(ValidateOptions(options));
  NvmeStoreOptions opts = options;
  if (!opts.directory.has_filename()) opts.directory = opts.directory.parent_path();
  TM_RETURN_IF_ERROR(PrepareDirectory(opts.directory));
  TM_ASSIGN_OR_RETURN(const int lock_fd, LockDirectory(opts.directory));
  const auto capacity = static_cast<uint32_t>(opts.capacity_bytes / opts.block_size);
  std::unique_ptr<NvmeStore> store(new NvmeStore(opts, capacity, lock_fd));

  TM_ASSIGN_OR_RETURN(std::unique_ptr<UringQueue> queue,
                      UringQueue::Create({.rings = opts.io_rings, .depth = opts.queue_depth}));
  store->queue_ = std::move(queue);
  TM_RETURN_IF_ERROR(store->OpenSegments());
  TM_RETURN_IF_ERROR(store->Recover(recovered));
  return store;
}

Status NvmeStore::OpenSegments() {
  // 1. Find this store's files; finish off interrupted creations.
  std::map<uint32_t, fs::path> existing;
  std::error_code ec;
  for (fs::directory_iterator it(directory_, ec), end; !ec && it != end; it.increment(ec)) {
    bool temp = false;
    const std::string name = it->path().filename().string();
    const std::optional<uint32_t> index = ParseSegmentName(name, &temp);
    if (!index) continue;
    if (temp) {
      // Written by a creation that never reached its rename: holds no block.
      std::error_code rm_ec;
      fs::remove(it->path(), rm_ec);
      TM_LOG(INFO, kLog) << "removed unfinished segment file " << it->path().string();
      continue;
    }
    existing[*index] = it->path();
  }
  if (ec) return IoError("NVMe store: cannot list " + directory_.string() + ": " + ec.message());

  // 2. Check every existing file before changing anything.
  struct Found {
    uint32_t index;
    std::unique_ptr<UringFile> file;
    uint64_t size;
  };
  std::vector<Found> found;
  TM_ASSIGN_OR_RETURN(AlignedBuffer header, AlignedBuffer::Allocate(kSegmentHeaderSize));
  uint32_t disk_stride = 0;
  for (const auto& [index, path] : existing) {
    TM_ASSIGN_OR_RETURN(std::unique_ptr<UringFile> file,
                        UringFile::Open(path, OpenMode::kOpenExisting, queue_));
    TM_ASSIGN_OR_RETURN(const uint64_t size, file->Size());
    if (size < kSegmentHeaderSize) {
      return Corruption(path.string() + ": " + std::to_string(size) +
                        " bytes is too short for a segment file; remove it to start afresh");
    }
    TM_RETURN_IF_ERROR(file->ReadAt(0, header.span()));
    Result<SegmentHeader> h = DecodeSegmentHeader(header.span());
    if (!h.ok()) {
      return h.status().WithContext(path.string() + " (remove the file to start afresh)");
    }
    if (h->segment_index != index) {
      return Corruption(path.string() + ": its header says it is segment " +
                        std::to_string(h->segment_index));
    }
    if (h->block_size != block_size_) {
      return FailedPrecondition("NVMe store: " + directory_.string() + " holds blocks of " +
                                std::to_string(h->block_size) + " bytes (" + path.string() +
                                ") but the store was opened with block_size " +
                                std::to_string(block_size_) +
                                "; use the old block size or remove the seg-*.tmd files");
    }
    if (disk_stride == 0) {
      disk_stride = h->slots_per_segment;
    } else if (h->slots_per_segment != disk_stride) {
      return Corruption("NVMe store: segment files in " + directory_.string() +
                        " disagree on slots per segment (" + std::to_string(disk_stride) + " and " +
                        std::to_string(h->slots_per_segment) + " in " + path.string() + ")");
    }
    found.push_back({index, std::move(file), size});
  }

  uint64_t requested_stride = 1;
  if (requested_segment_bytes_ >= kSegmentHeaderSize + slot_size_) {
    requested_stride = (requested_segment_bytes_ - kSegmentHeaderSize) / slot_size_;
  }
  requested_stride = std::min<uint64_t>(requested_stride, kMaxCapacitySlots);
  if (disk_stride != 0) {
    slots_per_segment_ = disk_stride;
    if (disk_stride != requested_stride) {
      TM_LOG(INFO, kLog) << directory_.string() << " keeps its segment size of " << disk_stride
                         << " slots (segment_bytes now asks for " << requested_stride << ")";
    }
  } else {
    slots_per_segment_ = static_cast<uint32_t>(requested_stride);
  }

  // 3. Shape the files to the capacity.
  const uint64_t needed = (uint64_t{capacity_slots_} + slots_per_segment_ - 1) / slots_per_segment_;
  if (needed > kMaxSegments) {
    return InvalidArgument("NVMe store: " + std::to_string(needed) +
                           " segment files would be needed (limit " + std::to_string(kMaxSegments) +
                           "); raise segment_bytes");
  }
  auto slots_in = [&](uint64_t index) -> uint32_t {
    return static_cast<uint32_t>(std::min<uint64_t>(
        slots_per_segment_, uint64_t{capacity_slots_} - index * slots_per_segment_));
  };
  segments_.resize(needed);
  bool directory_changed = false;
  uint64_t dropped_slots = 0;
  for (Found& f : found) {
    const uint64_t file_slots = (f.size - kSegmentHeaderSize) / slot_size_;
    if (f.index >= needed) {
      dropped_slots += file_slots;
      const fs::path path = f.file->path();
      f.file.reset();
      if (::unlink(path.c_str()) != 0) return ErrnoError("unlink " + path.string(), errno);
      directory_changed = true;
      continue;
    }
    const uint32_t want = slots_in(f.index);
    const uint64_t want_size = kSegmentHeaderSize + uint64_t{want} * slot_size_;
    if (f.size != want_size) {
      if (f.size > want_size) {
        dropped_slots += file_slots > want ? file_slots - want : 0;
        TM_RETURN_IF_ERROR(f.file->Truncate(want_size));
      } else {
        TM_RETURN_IF_ERROR(f.file->Preallocate(want_size));
      }
      TM_RETURN_IF_ERROR(f.file->Sync());
    }
    segments_[f.index] = {std::move(f.file), want};
  }
  if (dropped_slots > 0) {
    TM_LOG(WARN, kLog) << directory_.string() << ": capacity shrank to " << capacity_slots_
                       << " slots; " << dropped_slots
                       << " slots beyond it were removed and their blocks are not recovered";
  }

  for (uint32_t i = 0; i < needed; ++i) {
    if (segments_[i].file) continue;
    // Built under a temporary name and renamed once preallocated, headed
    // and synced, so a seg-NNNNNN.tmd file always has a valid header.
    const fs::path final_path = directory_ / SegmentName(i);
    const fs::path temp_path = directory_ / (SegmentName(i) + std::string(kTempSuffix));
    const uint32_t slots = slots_in(i);
    TM_ASSIGN_OR_RETURN(std::unique_ptr<UringFile> file,
                        UringFile::Open(temp_path, OpenMode::kCreateExclusive, queue_));
    auto create = [&]() -> Status {
      TM_RETURN_IF_ERROR(file->Preallocate(kSegmentHeaderSize + uint64_t{slots} * slot_size_));
      SegmentHeader h;
      h.segment_index = i;
      h.block_size = block_size_;
      h.slots_per_segment = slots_per_segment_;
      h.created_unix_ms = NowUnixMs();
      TM_RETURN_IF_ERROR(EncodeSegmentHeader(h, header.span()));
      TM_RETURN_IF_ERROR(file->WriteAt(0, header.span()));
      TM_RETURN_IF_ERROR(file->Sync());
      return file->RenameTo(final_path);
    };
    Status s = create();
    if (!s.ok()) {
      file.reset();
      ::unlink(temp_path.c_str());
      return s;
    }
    segments_[i] = {std::move(file), slots};
    directory_changed = true;
  }
  if (directory_changed) TM_RETURN_IF_ERROR(SyncDirectoryFd(lock_fd_, directory_));
  return Status::Ok();
}

Status NvmeStore::Recover(std::vector<RecoveredBlock>* recovered) {
  const auto started = std::chrono::steady_clock::now();
  const bool whole_slots = slot_size_ <= kChunkScanMaxSlotSize;
  const uint32_t chunk_slots =
      whole_slots ? static_cast<uint32_t>(std::max<uint64_t>(1, kScanChunkBytes / slot_size_)) : 1;
  const uint64_t read_stride = whole_slots ? uint64_t{chunk_slots} * slot_size_ : kSlotHeaderSize;
  const size_t ops_per_round = whole_slots ? kScanOpsPerRoundChunked : kScanOpsPerRoundHeaders;

  TM_ASSIGN_OR_RETURN(std::unique_ptr<UringQueue> scan_queue,
                      UringQueue::Create({.rings = 1, .depth = kScanDepth}));
  TM_ASSIGN_OR_RETURN(AlignedBuffer buffer, AlignedBuffer::Allocate(ops_per_round * read_stride));

  std::vector<RecoveredBlock> blocks;
  std::unordered_map<BlockKey, size_t, BlockKeyHash> where;  // key -> index in blocks
  std::vector<uint32_t> losers;                              // duplicate slots to tombstone
  uint64_t bad_headers = 0;
  uint64_t unreadable_slots = 0;

  struct Chunk {
    uint32_t first_slot;  // store slot number
    uint32_t count;
  };
  std::vector<Chunk> chunks;
  std::vector<UringQueue::Op> ops;
  chunks.reserve(ops_per_round);
  ops.reserve(ops_per_round);

  auto inspect = [&](uint32_t slot, std::span<const std::byte> bytes) {
    if (IsBlankSlotHeader(bytes)) return;
    Result<SlotHeader> h = DecodeSlotHeader(bytes, block_size_);
    if (!h.ok()) {
      ++bad_headers;
      return;
    }
    if (h->flags != SlotFlags::kLive) return;
    const RecoveredBlock b{h->key,         slot,          h->data_length,
                           h->data_crc32c, h->generation, h->stored_unix_ms};
    auto [it, inserted] = where.try_emplace(b.key, blocks.size());
    if (inserted) {
      blocks.push_back(b);
      return;
    }
    RecoveredBlock& current = blocks[it->second];
    if (Rank(b) > Rank(current)) {
      losers.push_back(current.slot);
      current = b;
    } else {
      losers.push_back(b.slot);
    }
  };

  auto run_round = [&]() -> Status {
    if (ops.empty()) return Status::Ok();
    (void)scan_queue->Run(ops);  // each op's own status is checked below
    for (size_t k = 0; k < ops.size(); ++k) {
      if (!ops[k].status.ok()) {
        // A bad region loses its blocks, not the whole store: its slots
        // are left free and get rewritten (and remapped by the device).
        if (ops[k].status.code() != StatusCode::kIoError) return ops[k].status;
        counters_.io_errors.fetch_add(1, std::memory_order_relaxed);
        unreadable_slots += chunks[k].count;
        TM_LOG(WARN, kLog) << "cannot read slots " << chunks[k].first_slot << ".."
                           << chunks[k].first_slot + chunks[k].count - 1 << ": "
                           << ops[k].status.ToString();
        continue;
      }
      const std::byte* base = buffer.data() + k * read_stride;
      for (uint32_t j = 0; j < chunks[k].count; ++j) {
        inspect(chunks[k].first_slot + j, {base + uint64_t{j} * slot_size_, kSlotHeaderSize});
      }
    }
    ops.clear();
    chunks.clear();
    return Status::Ok();
  };

  for (uint32_t seg = 0; seg < segments_.size(); ++seg) {
    const Segment& segment = segments_[seg];
    for (uint32_t local = 0; local < segment.slots; local += chunk_slots) {
      const uint32_t count = std::min(chunk_slots, segment.slots - local);
      const uint32_t slot = seg * slots_per_segment_ + local;
      const uint64_t length = whole_slots ? uint64_t{count} * slot_size_ : kSlotHeaderSize;
      ops.push_back({UringQueue::OpKind::kRead,
                     segment.file->fd(),
                     buffer.data() + ops.size() * read_stride,
                     static_cast<uint32_t>(length),
                     OffsetOf(slot),
                     {}});
      chunks.push_back({slot, count});
      if (ops.size() == ops_per_round) TM_RETURN_IF_ERROR(run_round());
    }
  }
  TM_RETURN_IF_ERROR(run_round());

  // Keep the winners only: tombstone the losing copies so a later delete of
  // the winner cannot bring one of them back.
  for (uint32_t slot : losers) {
    Status s = Invalidate(slot);
    if (!s.ok()) {
      TM_LOG(WARN, kLog) << "cannot tombstone duplicate slot " << slot << ": " << s.ToString();
    }
  }

  allocated_.assign(capacity_slots_, 0);
  for (const RecoveredBlock& b : blocks) allocated_[b.slot] = 1;
  free_list_.clear();
  free_list_.reserve(capacity_slots_ - blocks.size());
  for (uint32_t slot = capacity_slots_; slot-- > 0;) {
    if (!allocated_[slot]) free_list_.push_back(slot);  // low slots are taken first
  }
  used_.store(static_cast<uint32_t>(blocks.size()));

  const uint64_t ms = ElapsedNs(started) / 1000000;
  TM_LOG(INFO, kLog) << "opened " << directory_.string() << ": " << blocks.size()
                     << " blocks recovered from " << capacity_slots_ << " slots in "
                     << segments_.size() << " segment files in " << ms << " ms";
  if (bad_headers > 0) {
    TM_LOG(WARN, kLog) << directory_.string() << ": " << bad_headers
                       << " slot headers failed their checks (torn or damaged writes); "
                          "those slots are treated as free";
  }
  if (!losers.empty()) {
    TM_LOG(INFO, kLog) << directory_.string() << ": " << losers.size()
                       << " older copies of blocks stored twice were dropped";
  }
  if (unreadable_slots > 0) {
    TM_LOG(WARN, kLog) << directory_.string() << ": " << unreadable_slots
                       << " slots could not be read and are treated as free";
  }
  if (recovered != nullptr) *recovered = std::move(blocks);
  return Status::Ok();
}

Result<uint32_t> NvmeStore::Allocate() {
  if (free_list_.empty()) {
    return ResourceExhausted("NVMe store " + directory_.string() + " is full: all " +
                             std::to_string(capacity_slots_) + " slots are in use");
  }
  const uint32_t slot = free_list_.back();
  free_list_.pop_back();
  allocated_[slot] = 1;
  used_.fetch_add(1, std::memory_order_relaxed);
  return slot;
}

void NvmeStore::Release(uint32_t slot) {
  if (slot >= capacity_slots_ || !allocated_[slot]) {
    TM_LOG(ERROR, kLog) << "release of slot " << slot << " that is not allocated; ignored";
    return;
  }
  allocated_[slot] = 0;
  free_list_.push_back(slot);
  used_.fetch_sub(1, std::memory_order_relaxed);
}

Result<AlignedBuffer> NvmeStore::TakeBuffer() {
  {
    std::lock_guard<std::mutex> lock(buffers_mu_);
    if (!buffers_.empty()) {
      AlignedBuffer b = std::move(buffers_.back());
      buffers_.pop_back();
      return b;
    }
  }
  return AlignedBuffer::Allocate(slot_size_);
}

void NvmeStore::ReturnBuffer(AlignedBuffer buffer) {
  std::lock_guard<std::mutex> lock(buffers_mu_);
  if (buffers_.size() < max_pooled_buffers_) buffers_.push_back(std::move(buffer));
}

Status NvmeStore::WriteSlot(uint32_t slot, std::span<const std::byte> bytes) {
  const auto started = std::chrono::steady_clock::now();
  return CountWrite(slot, started, bytes.size(), FileOf(slot).WriteAt(OffsetOf(slot), bytes));
}

Status NvmeStore::CountWrite(uint32_t slot, std::chrono::steady_clock::time_point started,
                             uint64_t bytes, const Status& s) {
  const uint64_t elapsed_ns = ElapsedNs(started);
  counters_.write_ns_total.fetch_add(elapsed_ns, std::memory_order_relaxed);
  if (IoObserver* observer = CurrentIoObserver()) {
    observer->ObserveIo(IoOp::kWrite, std::chrono::nanoseconds(elapsed_ns), bytes, s.ok());
  }
  counters_.writes.fetch_add(1, std::memory_order_relaxed);
  dirty_.store(true, std::memory_order_relaxed);
  if (!s.ok()) {
    counters_.io_errors.fetch_add(1, std::memory_order_relaxed);
    return s.WithContext("slot " + std::to_string(slot));
  }
  counters_.bytes_written.fetch_add(bytes, std::memory_order_relaxed);
  return Status::Ok();
}

Status NvmeStore::WriteSlotPieces(uint32_t slot, std::span<const std::byte> header,
                                  std::span<const std::byte> data) {
  const auto started = std::chrono::steady_clock::now();
  const UringFile::WriteRequest writes[2] = {{OffsetOf(slot), header},
                                             {OffsetOf(slot) + kSlotHeaderSize, data}};
  return CountWrite(slot, started, header.size() + data.size(), FileOf(slot).WriteBatch(writes));
}

Status NvmeStore::Write(uint32_t slot, const BlockKey& key, uint64_t generation,
                        uint64_t stored_unix_ms, std::span<const std::byte> data) {
  if (slot >= capacity_slots_) {
    return InvalidArgument("slot " + std::to_string(slot) + " is beyond the capacity of " +
                           std::to_string(capacity_slots_) + " slots");
  }
  if (data.size() > block_size_) {
    return InvalidArgument("block of " + std::to_string(data.size()) +
                           " bytes exceeds the block size " + std::to_string(block_size_));
  }
  ScopedBuffer buffer(this);
  TM_RETURN_IF_ERROR(buffer.Take());
  SlotHeader h;
  h.flags = SlotFlags::kLive;
  h.key = key;
  h.generation = generation;
  h.stored_unix_ms = stored_unix_ms;
  h.data_length = static_cast<uint32_t>(data.size());
  h.data_crc32c = Crc32c(data);
  TM_RETURN_IF_ERROR(EncodeSlotHeader(h, {buffer.data(), kSlotHeaderSize}));
  if (!data.empty() && reinterpret_cast<uintptr_t>(data.data()) % kSlotHeaderSize == 0 &&
      data.size() % kSlotHeaderSize == 0) {
    // Whole aligned pages go to the device from where they are, beside the
    // header, in one batch: no bounce copy. A crash between the two leaves
    // a header whose data CRC fails, which is never served.
    return WriteSlotPieces(slot, {buffer.data(), kSlotHeaderSize}, data);
  }
  const uint64_t data_bytes = AlignUp(data.size());
  std::byte* payload = buffer.data() + kSlotHeaderSize;
  if (!data.empty()) std::memcpy(payload, data.data(), data.size());
  std::memset(payload + data.size(), 0, data_bytes - data.size());
  return WriteSlot(slot, {buffer.data(), kSlotHeaderSize + data_bytes});
}

Status NvmeStore::Invalidate(uint32_t slot) {
  if (slot >= capacity_slots_) {
    return InvalidArgument("slot " + std::to_string(slot) + " is beyond the capacity of " +
                           std::to_string(capacity_slots_) + " slots");
  }
  ScopedBuffer buffer(this);
  TM_RETURN_IF_ERROR(buffer.Take());
  SlotHeader h;
  h.flags = SlotFlags::kTombstone;
  TM_RETURN_IF_ERROR(EncodeSlotHeader(h, {buffer.data(), kSlotHeaderSize}));
  return WriteSlot(slot, {buffer.data(), kSlotHeaderSize});
}

Result<uint32_t> NvmeStore::Read(uint32_t slot, const BlockKey& expected,
                                 std::span<std::byte> out) {
  return ReadSlot(slot, expected, out, /*allow_direct=*/true);
}

Result<uint32_t> NvmeStore::ReadSlot(uint32_t slot, const BlockKey& expected,
                                     std::span<std::byte> out, bool allow_direct) {
  if (slot >= capacity_slots_) {
    return InvalidArgument("slot " + std::to_string(slot) + " is beyond the capacity of " +
                           std::to_string(capacity_slots_) + " slots");
  }
  // A block fits in `out` or is refused, so reading more than `out` holds
  // (rounded to 4096) would be wasted.
  // An aligned destination takes the data straight from the device, read
  // beside the header in one batch: no bounce copy. Otherwise header and
  // data come into the bounce buffer together.
  const uint64_t direct_bytes =
      allow_direct && reinterpret_cast<uintptr_t>(out.data()) % kSlotHeaderSize == 0
          ? std::min<uint64_t>(block_size_, out.size() / kSlotHeaderSize * kSlotHeaderSize)
          : 0;
  const bool direct = direct_bytes > 0;
  const uint64_t data_bytes =
      direct ? direct_bytes : std::min<uint64_t>(block_size_, AlignUp(out.size()));
  const uint64_t io_bytes = kSlotHeaderSize + data_bytes;
  ScopedBuffer buffer(this);
  TM_RETURN_IF_ERROR(buffer.Take());

  const auto started = std::chrono::steady_clock::now();
  Status s;
  if (direct) {
    UringFile::ReadRequest reads[2] = {
        {OffsetOf(slot), {buffer.data(), kSlotHeaderSize}, {}},
        {OffsetOf(slot) + kSlotHeaderSize, {out.data(), data_bytes}, {}}};
    s = FileOf(slot).ReadBatch(reads);
  } else {
    s = FileOf(slot).ReadAt(OffsetOf(slot), {buffer.data(), io_bytes});
  }
  const uint64_t elapsed_ns = ElapsedNs(started);
  counters_.read_ns_total.fetch_add(elapsed_ns, std::memory_order_relaxed);
  if (IoObserver* observer = CurrentIoObserver()) {
    observer->ObserveIo(IoOp::kRead, std::chrono::nanoseconds(elapsed_ns), io_bytes, s.ok());
  }
  counters_.reads.fetch_add(1, std::memory_order_relaxed);
  if (!s.ok()) {
    counters_.io_errors.fetch_add(1, std::memory_order_relaxed);
    return s.WithContext("slot " + std::to_string(slot));
  }
  counters_.bytes_read.fetch_add(io_bytes, std::memory_order_relaxed);

  const std::span<const std::byte> header{buffer.data(), kSlotHeaderSize};
  if (IsBlankSlotHeader(header)) {
    return NotFound("slot " + std::to_string(slot) + " holds no block");
  }
  Result<SlotHeader> h = DecodeSlotHeader(header, block_size_);
  if (!h.ok()) {
    counters_.checksum_failures.fetch_add(1, std::memory_order_relaxed);
    return h.status().WithContext(directory_.string() + " slot " + std::to_string(slot));
  }
  if (h->flags == SlotFlags::kTombstone) {
    return NotFound("slot " + std::to_string(slot) + " holds a deleted block");
  }
  if (h->key != expected) {
    return NotFound("slot " + std::to_string(slot) + " holds block " + h->key.ToHex() + ", not " +
                    expected.ToHex());
  }
  if (h->data_length > out.size()) {
    return InvalidArgument("block " + expected.ToHex() + " is " + std::to_string(h->data_length) +
                           " bytes; the buffer holds only " + std::to_string(out.size()));
  }
  if (direct && h->data_length > data_bytes) {
    // The block runs past the aligned part of `out`: read it the other way.
    return ReadSlot(slot, expected, out, /*allow_direct=*/false);
  }
  const std::span<const std::byte> data{direct ? out.data() : buffer.data() + kSlotHeaderSize,
                                        h->data_length};
  const uint32_t crc = Crc32c(data);
  if (crc != h->data_crc32c) {
    counters_.checksum_failures.fetch_add(1, std::memory_order_relaxed);
    return Corruption(directory_.string() + " slot " + std::to_string(slot) + ": block " +
                      expected.ToHex() + " fails its data checksum (stored " +
                      std::to_string(h->data_crc32c) + ", computed " + std::to_string(crc) + ")");
  }
  if (!direct && !data.empty()) std::memcpy(out.data(), data.data(), data.size());
  return h->data_length;
}

Status NvmeStore::Sync() {
  dirty_.store(false);
  Status first;
  for (Segment& segment : segments_) {
    Status s = segment.file->Sync();
    if (!s.ok() && first.ok()) first = s;
  }
  if (!first.ok()) dirty_.store(true);
  return first;
}

NvmeIoStats NvmeStore::stats() const {
  NvmeIoStats s;
  s.reads = counters_.reads.load(std::memory_order_relaxed);
  s.writes = counters_.writes.load(std::memory_order_relaxed);
  s.bytes_read = counters_.bytes_read.load(std::memory_order_relaxed);
  s.bytes_written = counters_.bytes_written.load(std::memory_order_relaxed);
  s.checksum_failures = counters_.checksum_failures.load(std::memory_order_relaxed);
  s.io_errors = counters_.io_errors.load(std::memory_order_relaxed);
  s.read_ns_total = counters_.read_ns_total.load(std::memory_order_relaxed);
  s.write_ns_total = counters_.write_ns_total.load(std::memory_order_relaxed);
  return s;
}

std::pair<fs::path, uint64_t> NvmeStore::SlotLocation(uint32_t slot) const {
  return {FileOf(slot).path(), OffsetOf(slot)};
}

}  // namespace tokenmem::nvme
