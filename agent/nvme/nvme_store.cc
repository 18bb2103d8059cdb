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
#include "tokenmem/common/units.h"

namespace tokenmem::nvme {
namespace fs = std::filesystem;

namespace {

constexpr char kLog[] = "nvme";
constexpr uint64_t kMaxCapacitySlots = 0xFFFFFFFEull;  // slot numbers are uint32_t
constexpr uint32_t kMaxSegments = 1000000;             // six digits in the file name
constexpr uint64_t kMaxBlockSize = UringQueue::kMaxOpLength;
constexpr std::string_view kSegmentPrefix = "seg-";
constexpr std::string_view kSegmentSuffix = ".tmd";
constexpr std::string_view kTempSuffix = ".tmp";

// Data moves in pieces of at most kIoChunkBytes, all in flight together:
// the device works on several at once, and the CRC32C of the pieces that
// have arrived is computed while the rest are still in flight.
constexpr uint64_t kIoChunkBytes = 256 * 1024;
// Recovery reads the slot tables in pieces of kScanReadBytes, kScanDepth in
// flight on a ring of the scan's own.
constexpr uint64_t kScanReadBytes = 1024 * 1024;
constexpr uint32_t kScanDepth = 32;

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

// A bounce buffer of block_size_ bytes borrowed from the store's pool.
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
      capacity_slots_(capacity_slots),
      requested_segment_bytes_(options.segment_bytes),
      queue_depth_(options.queue_depth),
      io_rings_(options.io_rings),
      lock_fd_(lock_fd),
      max_pooled_buffers_(std::clamp<size_t>((64ull << 20) / options.block_size, 2, 64)) {}

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

Status NvmeStore::MoveAsideOlderFormat(std::map<uint32_t, fs::path>* existing) {
  if (existing->empty()) return Status::Ok();
  TM_ASSIGN_OR_RETURN(AlignedBuffer header, AlignedBuffer::Allocate(kSegmentHeaderSize));
  std::optional<uint32_t> older;
  size_t older_files = 0;
  uint64_t older_bytes = 0;
  for (const auto& [index, path] : *existing) {
    TM_ASSIGN_OR_RETURN(std::unique_ptr<UringFile> file,
                        UringFile::Open(path, OpenMode::kOpenExisting, queue_));
    TM_ASSIGN_OR_RETURN(const uint64_t size, file->Size());
    if (size < kSegmentHeaderSize) continue;  // judged (and refused) by the full check
    TM_RETURN_IF_ERROR(file->ReadAt(0, header.span()));
    const std::optional<uint32_t> version = SegmentFormatVersion(header.span());
    if (!version || *version >= kFormatVersion) continue;
    if (older && *older != *version) {
      return Corruption("NVMe store: " + directory_.string() +
                        " holds segment files of format versions " + std::to_string(*older) +
                        " and " + std::to_string(*version));
    }
    older = *version;
    ++older_files;
    older_bytes += size;
  }
  if (!older) return Status::Ok();
  if (older_files != existing->size()) {
    return Corruption("NVMe store: " + directory_.string() + " mixes segment files of format " +
                      std::to_string(*older) + " with others; remove the seg-*.tmd files");
  }
  // No in-place migration: the tier is a cache. The old files are kept,
  // out of the store's way, so that nothing goes silently: the agent that
  // wrote them can still read them, and deleting them frees the space.
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  const fs::path aside =
      directory_ / ("format-" + std::to_string(*older) + "-moved-" + std::to_string(now_ms));
  std::error_code ec;
  if (!fs::create_directory(aside, ec)) {
    return IoError("NVMe store: cannot create " + aside.string() + ": " +
                   (ec ? ec.message() : std::string("it exists")));
  }
  for (const auto& [index, path] : *existing) {
    fs::rename(path, aside / path.filename(), ec);
    if (ec) {
      return IoError("NVMe store: cannot move " + path.string() + " to " + aside.string() + ": " +
                     ec.message());
    }
  }
  TM_RETURN_IF_ERROR(SyncDirectory(aside));
  TM_RETURN_IF_ERROR(SyncDirectoryFd(lock_fd_, directory_));
  TM_LOG(WARN, kLog) << "moved " << older_files << " segment files (" << FormatByteSize(older_bytes)
                     << ") of on-disk format version " << *older << " to " << aside.string()
                     << ": this agent writes version " << kFormatVersion
                     << " and starts the tier empty (it is a cache; there is no migration). "
                        "Delete that directory to free the space, or read it with the agent "
                        "version that wrote it";
  existing->clear();
  return Status::Ok();
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
  TM_RETURN_IF_ERROR(MoveAsideOlderFormat(&existing));

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
    if (size < DataOffset(h->slots_per_segment)) {
      return Corruption(path.string() + ": " + std::to_string(size) +
                        " bytes is too short for its slot table; remove it to start afresh");
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

  // The most slots whose header, table and data areas fit in segment_bytes.
  uint64_t requested_stride = 1;
  if (requested_segment_bytes_ > kSegmentHeaderSize) {
    requested_stride = std::max<uint64_t>(
        1, (requested_segment_bytes_ - kSegmentHeaderSize) / (block_size_ + kTableEntrySize));
    requested_stride = std::min<uint64_t>(requested_stride, kMaxCapacitySlots);
    while (requested_stride > 1 && DataOffset(requested_stride) + requested_stride * block_size_ >
                                       requested_segment_bytes_) {
      --requested_stride;  // the table's padding to whole pages did not fit
    }
  }
  if (disk_stride != 0) {
    slots_per_segment_ = disk_stride;
    if (disk_stride != requested_stride) {
      TM_LOG(INFO, kLog) << directory_.string() << " keeps its segment size of " << disk_stride
                         << " slots (segment_bytes now asks for " << requested_stride << ")";
    }
  } else {
    slots_per_segment_ = static_cast<uint32_t>(requested_stride);
  }
  data_offset_ = DataOffset(slots_per_segment_);
  pages_per_segment_ = static_cast<uint32_t>(TableBytes(slots_per_segment_) / kTablePageSize);

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
    const uint64_t file_slots = (f.size - data_offset_) / block_size_;
    if (f.index >= needed) {
      dropped_slots += file_slots;
      const fs::path path = f.file->path();
      f.file.reset();
      if (::unlink(path.c_str()) != 0) return ErrnoError("unlink " + path.string(), errno);
      directory_changed = true;
      continue;
    }
    const uint32_t want = slots_in(f.index);
    const uint64_t want_size = data_offset_ + uint64_t{want} * block_size_;
    if (f.size != want_size) {
      if (f.size > want_size) {
        dropped_slots += file_slots > want ? file_slots - want : 0;
        TM_RETURN_IF_ERROR(f.file->Truncate(want_size));
      } else {
        TM_RETURN_IF_ERROR(f.file->Preallocate(want_size));
      }
      TM_RETURN_IF_ERROR(f.file->Sync());
    }
    segments_[f.index].file = std::move(f.file);
    segments_[f.index].slots = want;
    segments_[f.index].valid_entries = static_cast<uint32_t>(std::min<uint64_t>(file_slots, want));
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
      TM_RETURN_IF_ERROR(file->Preallocate(data_offset_ + uint64_t{slots} * block_size_));
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
    segments_[i].file = std::move(file);
    segments_[i].slots = slots;
    segments_[i].valid_entries = 0;
    segments_[i].created = true;
    directory_changed = true;
  }
  if (directory_changed) TM_RETURN_IF_ERROR(SyncDirectoryFd(lock_fd_, directory_));
  return Status::Ok();
}

Status NvmeStore::Recover(std::vector<RecoveredBlock>* recovered) {
  const auto started = std::chrono::steady_clock::now();
  const uint64_t table_bytes = TableBytes(slots_per_segment_);
  pages_.assign(segments_.size() * uint64_t{pages_per_segment_}, PageState{});

  // 1. Read every slot table into memory, where it stays: that copy is what
  // Read checks and what later table writes are made from.
  TM_ASSIGN_OR_RETURN(std::unique_ptr<UringQueue> scan_queue,
                      UringQueue::Create({.rings = 1, .depth = kScanDepth}));
  std::vector<UringQueue::Op> ops;
  std::vector<uint32_t> op_segment;
  for (uint32_t seg = 0; seg < segments_.size(); ++seg) {
    Segment& segment = segments_[seg];
    TM_ASSIGN_OR_RETURN(segment.table, AlignedBuffer::Allocate(table_bytes));
    if (segment.created) continue;  // a new file's table reads as zeros
    // The whole table, not just the entries in use: entries past the file's
    // old slot count may be left from a larger capacity and must be cleared.
    const uint64_t bytes = table_bytes;
    for (uint64_t at = 0; at < bytes; at += kScanReadBytes) {
      ops.push_back({UringQueue::OpKind::kRead,
                     segment.file->fd(),
                     segment.table.data() + at,
                     static_cast<uint32_t>(std::min(kScanReadBytes, bytes - at)),
                     kSegmentHeaderSize + at,
                     {}});
      op_segment.push_back(seg);
    }
  }
  (void)scan_queue->Run(ops);  // each op's own status is checked below
  uint64_t unreadable_slots = 0;
  std::vector<uint8_t> unreadable(segments_.size(), 0);
  for (size_t k = 0; k < ops.size(); ++k) {
    if (ops[k].status.ok()) continue;
    // A bad region loses its blocks, not the whole store: the segment's
    // slots are left free and get rewritten (and remapped by the device).
    if (ops[k].status.code() != StatusCode::kIoError) return ops[k].status;
    counters_.io_errors.fetch_add(1, std::memory_order_relaxed);
    TM_LOG(WARN, kLog) << "cannot read the slot table of " << segments_[op_segment[k]].file->path()
                       << ": " << ops[k].status.ToString();
    unreadable[op_segment[k]] = 1;
  }

  // 2. Decode the entries. Entries that cannot describe a block (damaged,
  // beyond the file's old slot count, in an unreadable table) are cleared
  // in memory, and their pages rewritten below.
  std::vector<RecoveredBlock> blocks;
  std::unordered_map<BlockKey, size_t, BlockKeyHash> where;  // key -> index in blocks
  std::vector<uint32_t> losers;                              // duplicate slots to tombstone
  std::vector<uint8_t> dirty_pages(pages_.size(), 0);
  uint64_t bad_entries = 0;
  for (uint32_t seg = 0; seg < segments_.size(); ++seg) {
    Segment& segment = segments_[seg];
    if (unreadable[seg]) {
      std::memset(segment.table.data(), 0, table_bytes);
      unreadable_slots += segment.slots;
      for (uint32_t p = 0; p < pages_per_segment_; ++p) {
        dirty_pages[uint64_t{seg} * pages_per_segment_ + p] = 1;
      }
      continue;
    }
    const uint32_t last = std::min(segment.valid_entries, segment.slots);
    for (uint32_t local = 0; local < slots_per_segment_; ++local) {
      std::byte* raw = segment.table.data() + uint64_t{local} * kTableEntrySize;
      const std::span<std::byte> bytes{raw, kTableEntrySize};
      if (IsBlankSlotEntry(bytes)) continue;
      const uint32_t slot = seg * slots_per_segment_ + local;
      auto clear = [&] {
        std::memset(raw, 0, kTableEntrySize);
        dirty_pages[uint64_t{seg} * pages_per_segment_ + local / kEntriesPerTablePage] = 1;
      };
      if (local >= last) {
        clear();
        continue;
      }
      Result<SlotEntry> e = DecodeSlotEntry(bytes, block_size_, slot);
      if (!e.ok()) {
        ++bad_entries;
        clear();
        continue;
      }
      if (e->flags != SlotFlags::kLive) continue;
      const RecoveredBlock b{e->key,         slot,          e->data_length,
                             e->data_crc32c, e->generation, e->stored_unix_ms};
      auto [it, inserted] = where.try_emplace(b.key, blocks.size());
      if (inserted) {
        blocks.push_back(b);
        continue;
      }
      RecoveredBlock& current = blocks[it->second];
      if (Rank(b) > Rank(current)) {
        losers.push_back(current.slot);
        current = b;
      } else {
        losers.push_back(b.slot);
      }
    }
  }
  // Keep the winners only: tombstone the losing copies so a later delete of
  // the winner cannot bring one of them back.
  for (uint32_t slot : losers) {
    SlotEntry tomb;
    tomb.flags = SlotFlags::kTombstone;
    tomb.slot = slot;
    TM_RETURN_IF_ERROR(EncodeSlotEntry(tomb, {EntryOf(slot), kTableEntrySize}));
    dirty_pages[uint64_t{slot / slots_per_segment_} * pages_per_segment_ +
                slot % slots_per_segment_ / kEntriesPerTablePage] = 1;
  }
  // No other thread can use the store yet: the pages go straight from the
  // in-memory tables.
  uint64_t rewritten = 0;
  for (size_t page_id = 0; page_id < dirty_pages.size(); ++page_id) {
    if (!dirty_pages[page_id]) continue;
    const auto seg = static_cast<uint32_t>(page_id / pages_per_segment_);
    const auto page = static_cast<uint32_t>(page_id % pages_per_segment_);
    Status s =
        WriteTablePage(seg, page, segments_[seg].table.data() + uint64_t{page} * kTablePageSize);
    if (!s.ok()) {
      TM_LOG(WARN, kLog) << "cannot rewrite a slot table page: " << s.ToString();
      continue;
    }
    ++rewritten;
  }
  if (rewritten > 0) dirty_.store(true);

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
  if (bad_entries > 0) {
    TM_LOG(WARN, kLog) << directory_.string() << ": " << bad_entries
                       << " slot table entries failed their checks (torn or damaged writes); "
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
  return AlignedBuffer::Allocate(block_size_);
}

void NvmeStore::ReturnBuffer(AlignedBuffer buffer) {
  std::lock_guard<std::mutex> lock(buffers_mu_);
  if (buffers_.size() < max_pooled_buffers_) buffers_.push_back(std::move(buffer));
}

Status NvmeStore::WriteTablePage(uint32_t segment, uint32_t page, const std::byte* bytes) {
  const UringFile& file = *segments_[segment].file;
  const uint64_t offset = kSegmentHeaderSize + uint64_t{page} * kTablePageSize;
  size_t done = 0;
  int retries = 0;
  while (done < kTablePageSize) {
    const ssize_t n =
        ::pwrite(file.fd(), bytes + done, kTablePageSize - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if ((errno == EINTR || errno == EAGAIN) && ++retries < 100) continue;
      return ErrnoError("write of slot table page " + std::to_string(page), errno)
          .WithContext(file.path().string());
    }
    if (n == 0 && ++retries >= 100) {
      return IoError(file.path().string() + ": write of slot table page " + std::to_string(page) +
                     " makes no progress");
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status NvmeStore::CommitEntry(const SlotEntry& entry, uint64_t* bytes_written) {
  const uint32_t seg = entry.slot / slots_per_segment_;
  const uint32_t local = entry.slot % slots_per_segment_;
  const uint32_t page = local / kEntriesPerTablePage;
  const uint64_t page_id = uint64_t{seg} * pages_per_segment_ + page;
  std::byte* page_bytes = segments_[seg].table.data() + uint64_t{page} * kTablePageSize;
  Stripe& stripe = stripes_[page_id % kStripes];
  PageState& state = pages_[page_id];
  alignas(kIoAlignment) std::byte snapshot[kTablePageSize];

  std::unique_lock<std::mutex> lock(stripe.mu);
  TM_RETURN_IF_ERROR(EncodeSlotEntry(
      entry,
      {page_bytes + uint64_t{local % kEntriesPerTablePage} * kTableEntrySize, kTableEntrySize}));
  const uint64_t mine = ++state.changed;
  while (state.durable < mine) {
    if (state.writing) {
      // That write may have copied the page before this entry changed; its
      // writer wakes us when it lands, and then one of us writes again.
      stripe.cv.wait(lock);
      continue;
    }
    state.writing = true;
    const uint64_t target = state.changed;
    std::memcpy(snapshot, page_bytes, kTablePageSize);
    lock.unlock();
    Status s = WriteTablePage(seg, page, snapshot);
    lock.lock();
    state.writing = false;
    if (s.ok()) {
      state.durable = std::max(state.durable, target);
      *bytes_written += kTablePageSize;
    }
    stripe.cv.notify_all();
    // On failure the waiters try the write themselves.
    if (!s.ok()) return s;
  }
  return Status::Ok();
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
  SlotEntry entry;
  entry.flags = SlotFlags::kLive;
  entry.slot = slot;
  entry.key = key;
  entry.generation = generation;
  entry.stored_unix_ms = stored_unix_ms;
  entry.data_length = static_cast<uint32_t>(data.size());

  // Whole aligned pages go to the device from where they are; anything
  // else through a bounce buffer, padded with zeros to whole pages.
  const uint64_t data_bytes = AlignUp(data.size());
  ScopedBuffer bounce(this);
  const std::byte* source = data.data();
  if (!data.empty() && (!IsIoAligned(data.data()) || data.size() != data_bytes)) {
    TM_RETURN_IF_ERROR(bounce.Take());
    std::memcpy(bounce.data(), data.data(), data.size());
    std::memset(bounce.data() + data.size(), 0, data_bytes - data.size());
    source = bounce.data();
  }

  const auto started = std::chrono::steady_clock::now();
  std::vector<UringQueue::Op> ops;
  ops.reserve((data_bytes + kIoChunkBytes - 1) / kIoChunkBytes);
  for (uint64_t at = 0; at < data_bytes; at += kIoChunkBytes) {
    ops.push_back({UringQueue::OpKind::kWrite,
                   FileOf(slot).fd(),
                   const_cast<std::byte*>(source) + at,  // only read by the kernel
                   static_cast<uint32_t>(std::min(kIoChunkBytes, data_bytes - at)),
                   OffsetOf(slot) + at,
                   {}});
  }
  // While the data is in flight: its checksum, then the table entry. The
  // two writes may land in either order; see the durability notes in the
  // header for why neither order can serve wrong bytes.
  uint64_t table_bytes_written = 0;
  Status committed = IoError("table entry not written");
  UringQueue::Hooks hooks;
  hooks.in_flight = [&] {
    entry.data_crc32c = Crc32c(data);
    committed = CommitEntry(entry, &table_bytes_written);
  };
  Status s = queue_->Run(ops, hooks);
  s = s.ok() ? committed : s.WithContext(FileOf(slot).path().string());
  if (!s.ok() && committed.ok()) {
    // The entry describes data that did not arrive: take it back so the
    // slot reads as empty rather than as a checksum failure.
    SlotEntry tomb;
    tomb.flags = SlotFlags::kTombstone;
    tomb.slot = slot;
    (void)CommitEntry(tomb, &table_bytes_written);
  }
  return CountWrite(slot, started, data_bytes + table_bytes_written, s);
}

Status NvmeStore::Invalidate(uint32_t slot) {
  if (slot >= capacity_slots_) {
    return InvalidArgument("slot " + std::to_string(slot) + " is beyond the capacity of " +
                           std::to_string(capacity_slots_) + " slots");
  }
  const auto started = std::chrono::steady_clock::now();
  SlotEntry tomb;
  tomb.flags = SlotFlags::kTombstone;
  tomb.slot = slot;
  uint64_t bytes = 0;
  Status s = CommitEntry(tomb, &bytes);
  return CountWrite(slot, started, bytes, s);
}

Result<uint32_t> NvmeStore::Read(uint32_t slot, const BlockKey& expected,
                                 std::span<std::byte> out) {
  if (slot >= capacity_slots_) {
    return InvalidArgument("slot " + std::to_string(slot) + " is beyond the capacity of " +
                           std::to_string(capacity_slots_) + " slots");
  }
  // The caller never writes this slot during the read, so its entry is
  // stable; other entries of the page may change beside it.
  const std::span<const std::byte> raw{EntryOf(slot), kTableEntrySize};
  if (IsBlankSlotEntry(raw)) {
    return NotFound("slot " + std::to_string(slot) + " holds no block");
  }
  Result<SlotEntry> e = DecodeSlotEntry(raw, block_size_, slot);
  if (!e.ok()) {  // the in-memory table is only ever written whole entries
    counters_.checksum_failures.fetch_add(1, std::memory_order_relaxed);
    return e.status().WithContext(directory_.string());
  }
  if (e->flags == SlotFlags::kTombstone) {
    return NotFound("slot " + std::to_string(slot) + " holds a deleted block");
  }
  if (e->key != expected) {
    return NotFound("slot " + std::to_string(slot) + " holds block " + e->key.ToHex() + ", not " +
                    expected.ToHex());
  }
  const uint32_t length = e->data_length;
  if (length > out.size()) {
    return InvalidArgument("block " + expected.ToHex() + " is " + std::to_string(length) +
                           " bytes; the buffer holds only " + std::to_string(out.size()));
  }
  const uint64_t data_bytes = AlignUp(length);
  const bool direct = IsIoAligned(out.data()) && out.size() >= data_bytes;
  ScopedBuffer bounce(this);
  if (!direct && length > 0) TM_RETURN_IF_ERROR(bounce.Take());
  std::byte* dest = direct ? out.data() : bounce.data();

  std::vector<UringQueue::Op> ops;
  ops.reserve((data_bytes + kIoChunkBytes - 1) / kIoChunkBytes);
  for (uint64_t at = 0; at < data_bytes; at += kIoChunkBytes) {
    ops.push_back({UringQueue::OpKind::kRead,
                   FileOf(slot).fd(),
                   dest + at,
                   static_cast<uint32_t>(std::min(kIoChunkBytes, data_bytes - at)),
                   OffsetOf(slot) + at,
                   {}});
  }
  // The checksum runs over the pieces in order, each as soon as it and all
  // before it have arrived, while the later ones are still in flight.
  uint32_t crc = 0;
  size_t summed = 0;  // pieces already in `crc`
  std::vector<uint8_t> arrived(ops.size(), 0);
  auto sum_ready = [&] {
    while (summed < ops.size() && arrived[summed]) {
      const uint64_t from = summed * kIoChunkBytes;
      const uint64_t to = std::min<uint64_t>(from + kIoChunkBytes, length);
      crc = Crc32c({dest + from, to - from}, crc);
      ++summed;
    }
  };
  UringQueue::Hooks hooks;
  hooks.done = [&](size_t idx) {
    arrived[idx] = 1;
    sum_ready();
  };

  const auto started = std::chrono::steady_clock::now();
  Status s = ops.empty() ? Status::Ok() : queue_->Run(ops, hooks);
  const uint64_t elapsed_ns = ElapsedNs(started);
  if (!ops.empty()) {
    counters_.read_ns_total.fetch_add(elapsed_ns, std::memory_order_relaxed);
    if (IoObserver* observer = CurrentIoObserver()) {
      observer->ObserveIo(IoOp::kRead, std::chrono::nanoseconds(elapsed_ns), data_bytes, s.ok());
    }
    counters_.reads.fetch_add(1, std::memory_order_relaxed);
  }
  if (!s.ok()) {
    counters_.io_errors.fetch_add(1, std::memory_order_relaxed);
    return s.WithContext(FileOf(slot).path().string() + " slot " + std::to_string(slot));
  }
  counters_.bytes_read.fetch_add(data_bytes, std::memory_order_relaxed);
  std::fill(arrived.begin(), arrived.end(), 1);
  sum_ready();
  if (crc != e->data_crc32c) {
    counters_.checksum_failures.fetch_add(1, std::memory_order_relaxed);
    return Corruption(directory_.string() + " slot " + std::to_string(slot) + ": block " +
                      expected.ToHex() + " fails its data checksum (stored " +
                      std::to_string(e->data_crc32c) + ", computed " + std::to_string(crc) + ")");
  }
  if (!direct && length > 0) std::memcpy(out.data(), dest, length);
  return length;
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

std::pair<fs::path, uint64_t> NvmeStore::SlotEntryLocation(uint32_t slot) const {
  return {FileOf(slot).path(),
          kSegmentHeaderSize + uint64_t{slot % slots_per_segment_} * kTableEntrySize};
}

}  // namespace tokenmem::nvme
