#include "nvme/uring_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>
#include <vector>

#include "nvme/aligned_buffer.h"

namespace tokenmem::nvme {
namespace {

Status WithPath(const Status& s, const std::filesystem::path& path) {
  return s.WithContext(path.string());
}

}  // namespace

Result<std::unique_ptr<UringFile>> UringFile::Open(const std::filesystem::path& path, OpenMode mode,
                                                   std::shared_ptr<UringQueue> queue) {
  if (!queue) return InvalidArgument("UringFile::Open needs a queue");
  int flags = O_RDWR | O_DIRECT | O_CLOEXEC;
  if (mode == OpenMode::kCreateExclusive) flags |= O_CREAT | O_EXCL;
  int fd;
  do {
    fd = ::open(path.c_str(), flags, 0644);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT && mode == OpenMode::kOpenExisting) {
      return NotFound(path.string() + ": no such file");
    }
    if (err == EEXIST) return AlreadyExists(path.string() + ": file exists");
    if (err == EINVAL) {
      return IoError(path.string() +
                     ": open with O_DIRECT failed: the file system does not support direct I/O "
                     "(use a directory on a local disk file system such as ext4 or xfs)");
    }
    return WithPath(ErrnoError("open", err), path);
  }
  return std::unique_ptr<UringFile>(new UringFile(path, fd, std::move(queue)));
}

UringFile::~UringFile() {
  if (fd_ >= 0) ::close(fd_);  // close errors carry no data loss for O_DIRECT files
}

Result<uint64_t> UringFile::Size() const {
  struct stat st;
  if (::fstat(fd_, &st) != 0) return WithPath(ErrnoError("fstat", errno), path_);
  return static_cast<uint64_t>(st.st_size);
}

Status UringFile::Preallocate(uint64_t size) {
  if (size == 0) return Status::Ok();
  int rc;
  do {
    rc = ::fallocate(fd_, 0, 0, static_cast<off_t>(size));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    const int err = errno;
    if (err == ENOSPC) {
      return ResourceExhausted(path_.string() + ": no space left on the device to preallocate " +
                               std::to_string(size) + " bytes");
    }
    if (err == EOPNOTSUPP) {
      return IoError(path_.string() +
                     ": the file system does not support fallocate (use a local disk file "
                     "system such as ext4 or xfs)");
    }
    return WithPath(ErrnoError("fallocate " + std::to_string(size) + " bytes", err), path_);
  }
  return Status::Ok();
}

Status UringFile::Truncate(uint64_t size) {
  int rc;
  do {
    rc = ::ftruncate(fd_, static_cast<off_t>(size));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return WithPath(ErrnoError("ftruncate", errno), path_);
  return Status::Ok();
}

Status UringFile::Sync() {
  int rc;
  do {
    rc = ::fdatasync(fd_);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return WithPath(ErrnoError("fdatasync", errno), path_);
  return Status::Ok();
}

Status UringFile::RenameTo(const std::filesystem::path& new_path) {
  if (::rename(path_.c_str(), new_path.c_str()) != 0) {
    return WithPath(ErrnoError("rename to " + new_path.string(), errno), path_);
  }
  path_ = new_path;
  return Status::Ok();
}

Status UringFile::CheckAligned(uint64_t offset, const void* data, size_t size) const {
  if (!IsIoAligned(offset) || !IsIoAligned(data) || !IsIoAligned(size) || size == 0 ||
      size > UringQueue::kMaxOpLength) {
    return InvalidArgument(path_.string() + ": direct I/O of " + std::to_string(size) +
                           " bytes at offset " + std::to_string(offset) +
                           " needs a non-empty 4096-aligned buffer, length and offset");
  }
  return Status::Ok();
}

Status UringFile::ReadAt(uint64_t offset, std::span<std::byte> buffer) {
  TM_RETURN_IF_ERROR(CheckAligned(offset, buffer.data(), buffer.size()));
  UringQueue::Op op{UringQueue::OpKind::kRead,
                    fd_,
                    buffer.data(),
                    static_cast<uint32_t>(buffer.size()),
                    offset,
                    {}};
  Status s = queue_->Run({&op, 1});
  return s.ok() ? s : WithPath(s, path_);
}

Status UringFile::WriteAt(uint64_t offset, std::span<const std::byte> buffer) {
  TM_RETURN_IF_ERROR(CheckAligned(offset, buffer.data(), buffer.size()));
  // The kernel only reads from a write's buffer; io_uring's API takes a
  // non-const pointer for both directions.
  UringQueue::Op op{
      UringQueue::OpKind::kWrite,           fd_,    const_cast<std::byte*>(buffer.data()),
      static_cast<uint32_t>(buffer.size()), offset, {}};
  Status s = queue_->Run({&op, 1});
  return s.ok() ? s : WithPath(s, path_);
}

Status UringFile::ReadBatch(std::span<ReadRequest> reads) {
  std::vector<UringQueue::Op> ops;
  ops.reserve(reads.size());
  for (ReadRequest& r : reads) {
    r.status = CheckAligned(r.offset, r.buffer.data(), r.buffer.size());
    if (!r.status.ok()) return r.status;
    ops.push_back({UringQueue::OpKind::kRead,
                   fd_,
                   r.buffer.data(),
                   static_cast<uint32_t>(r.buffer.size()),
                   r.offset,
                   {}});
  }
  Status s = queue_->Run(ops);
  for (size_t i = 0; i < reads.size(); ++i) {
    reads[i].status = ops[i].status.ok() ? Status::Ok() : WithPath(ops[i].status, path_);
  }
  return s.ok() ? s : WithPath(s, path_);
}

Status UringFile::WriteBatch(std::span<const WriteRequest> writes) {
  std::vector<UringQueue::Op> ops;
  ops.reserve(writes.size());
  for (const WriteRequest& w : writes) {
    TM_RETURN_IF_ERROR(CheckAligned(w.offset, w.buffer.data(), w.buffer.size()));
    ops.push_back({UringQueue::OpKind::kWrite,
                   fd_,
                   const_cast<std::byte*>(w.buffer.data()),
                   static_cast<uint32_t>(w.buffer.size()),
                   w.offset,
                   {}});
  }
  Status s = queue_->Run(ops);
  return s.ok() ? s : WithPath(s, path_);
}

}  // namespace tokenmem::nvme
