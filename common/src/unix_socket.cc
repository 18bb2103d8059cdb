#include "tokenmem/common/unix_socket.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "tokenmem/common/log.h"

namespace tokenmem {
namespace {

// True when something accepts connections on the Unix socket at `path`.
bool SocketAnswers(const std::filesystem::path& path, int socket_type) {
  int fd = ::socket(AF_UNIX, socket_type | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  bool answers = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return answers;
}

}  // namespace

Status PrepareSocketPath(const std::filesystem::path& path, int socket_type) {
  if (path.native().size() >= sizeof(sockaddr_un::sun_path)) {
    return InvalidArgument("socket path " + path.string() + " is longer than " +
                           std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes");
  }
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  if (ec) return IoError("cannot create " + path.parent_path().string() + ": " + ec.message());
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return FailedPrecondition(path.string() +
                                " exists and is not a socket; refusing to replace it");
    }
    if (SocketAnswers(path, socket_type)) {
      return FailedPrecondition("another process is serving on " + path.string());
    }
    if (::unlink(path.c_str()) != 0) {
      return ErrnoError("remove stale socket " + path.string(), errno);
    }
    TM_LOG(INFO, "socket") << "removed stale socket " << path.string();
  }
  return Status::Ok();
}

Result<int> ListenUnixSocket(const std::filesystem::path& path, int socket_type, uint32_t mode,
                             int backlog) {
  TM_RETURN_IF_ERROR(PrepareSocketPath(path, socket_type));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.native().size() + 1);  // fits: prepared
  int fd = ::socket(AF_UNIX, socket_type | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoError("socket", errno);
  // The socket file is created with the process umask: narrow it for the
  // window before chmod so the socket is never wider than asked.
  const mode_t old_mask = ::umask(0177);
  const int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  const int bind_errno = errno;
  ::umask(old_mask);
  if (rc != 0) {
    ::close(fd);
    return ErrnoError("bind " + path.string(), bind_errno);
  }
  const char* step = nullptr;
  if (::chmod(path.c_str(), mode) != 0) {
    step = "chmod ";
  } else if (::listen(fd, backlog) != 0) {
    step = "listen on ";
  }
  if (step != nullptr) {
    Status s = ErrnoError(step + path.string(), errno);
    ::close(fd);
    ::unlink(path.c_str());
    return s;
  }
  return fd;
}

}  // namespace tokenmem
