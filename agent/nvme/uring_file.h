// UringFile: one file opened with O_DIRECT whose reads and writes go
// through a shared UringQueue (see uring_queue.h for how I/O from many
// threads is spread over a few io_uring instances).
//
// Every ReadAt/WriteAt/ReadBatch buffer must start at a 4096-aligned
// address, and its offset and length must be multiples of 4096
// (AlignedBuffer gives such buffers); otherwise kInvalidArgument and no I/O.
// The call returns when the I/O is complete: a read's bytes are in the
// buffer, a write's bytes have been handed to the device (O_DIRECT bypasses
// the page cache; only Sync() flushes a volatile device cache).
//
// Thread safety: ReadAt, WriteAt, ReadBatch, Size and Sync may run from
// many threads at once. Preallocate, Truncate and RenameTo must not run
// concurrently with any other call on the same file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>

#include "nvme/uring_queue.h"
#include "tokenmem/common/status.h"

namespace tokenmem::nvme {

enum class OpenMode {
  kOpenExisting,     // kNotFound when the file does not exist
  kCreateExclusive,  // kAlreadyExists when it does
};

class UringFile {
 public:
  // Opens `path` for reading and writing with O_DIRECT. Errors name the
  // path; when the file system refuses O_DIRECT the message says so.
  static Result<std::unique_ptr<UringFile>> Open(const std::filesystem::path& path, OpenMode mode,
                                                 std::shared_ptr<UringQueue> queue);
  ~UringFile();  // closes the file; no call may be running
  UringFile(const UringFile&) = delete;
  UringFile& operator=(const UringFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  int fd() const { return fd_; }

  Result<uint64_t> Size() const;

  // Reserves disk blocks for [0, size) with fallocate and grows the file to
  // `size` if smaller (never shrinks). kResourceExhausted when the disk is
  // full; kIoError with a clear message when the file system has no fallocate.
  // The new size is not durable until Sync().
  Status Preallocate(uint64_t size);

  // Cuts the file to `size` bytes (not durable until Sync()).
  Status Truncate(uint64_t size);

  // fdatasync: makes completed writes and size changes durable, flushing
  // the device's volatile write cache.
  Status Sync();

  // Renames the file (same file system); path() follows. Not durable until
  // the directory is synced.
  Status RenameTo(const std::filesystem::path& new_path);

  // Reads buffer.size() bytes at `offset`. kIoError past the end of file.
  Status ReadAt(uint64_t offset, std::span<std::byte> buffer);
  // Writes all of `buffer` at `offset`, growing the file if needed.
  Status WriteAt(uint64_t offset, std::span<const std::byte> buffer);

  struct ReadRequest {
    uint64_t offset = 0;
    std::span<std::byte> buffer;
    Status status;  // set by ReadBatch
  };
  // Runs all reads with up to the queue's depth in flight at once. OK when
  // all succeeded; else the first failure (each request has its own status).
  Status ReadBatch(std::span<ReadRequest> reads);

  struct WriteRequest {
    uint64_t offset = 0;
    std::span<const std::byte> buffer;
  };
  // Runs all writes with up to the queue's depth in flight at once (no
  // order among them). OK when all succeeded; else the first failure.
  Status WriteBatch(std::span<const WriteRequest> writes);

 private:
  UringFile(std::filesystem::path path, int fd, std::shared_ptr<UringQueue> queue)
      : path_(std::move(path)), fd_(fd), queue_(std::move(queue)) {}
  Status CheckAligned(uint64_t offset, const void* data, size_t size) const;

  std::filesystem::path path_;
  int fd_;
  std::shared_ptr<UringQueue> queue_;
};

}  // namespace tokenmem::nvme
