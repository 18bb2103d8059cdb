#include "cli/file_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace tokenmem::cli {

namespace {

// Reads `fd` to its end into `out`; 0 on success, else errno.
int ReadAll(int fd, std::string* out) {
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) return 0;
    out->append(buf, static_cast<size_t>(n));
  }
}

}  // namespace

Result<std::string> ReadWholeFile(const std::string& path) {
  std::string data;
  if (path == "-") {
    if (int err = ReadAll(STDIN_FILENO, &data); err != 0) {
      return ErrnoError("cannot read standard input", err);
    }
    return data;
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("cannot open '" + path + "'", errno);
  int err = ReadAll(fd, &data);
  ::close(fd);
  if (err != 0) return ErrnoError("cannot read '" + path + "'", err);
  return data;
}

Status WriteWholeFile(const std::string& path, const std::string& data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("cannot create '" + path + "'", errno);
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return ErrnoError("cannot write '" + path + "'", err);
    }
    done += static_cast<size_t>(n);
  }
  if (::close(fd) != 0) return ErrnoError("cannot write '" + path + "'", errno);
  return Status::Ok();
}

}  // namespace tokenmem::cli
