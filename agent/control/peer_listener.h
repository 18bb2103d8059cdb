// PeerListener: a listening Unix stream socket whose every connection is
// handed on together with the credentials of the process that connected
// (SO_PEERCRED, and its supplementary groups with SO_PEERGROUPS).
//
// The control server uses it to tell node admins from everyone else before
// gRPC sees a byte: gRPC's own Unix listener does not expose the peer's
// credentials. The kernel records them at connect() time, so a caller cannot
// change what is seen by passing the connection on or by changing uid later.
//
// Thread rules: the handler runs on the listener's own thread, one
// connection at a time; Shutdown (or the destructor) stops it and waits.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "tokenmem/common/status.h"

namespace tokenmem::control {

struct PeerCredentials {
  pid_t pid = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<uint32_t> groups;  // supplementary groups; empty where the kernel cannot tell
};

// Who may use the control API over the Unix socket: uid 0, any uid in
// `uids`, and any process whose primary or supplementary group is in `gids`.
bool IsNodeAdmin(const PeerCredentials& peer, const std::vector<uint32_t>& uids,
                 const std::vector<uint32_t>& gids);

// The credentials of the process at the other end of the Unix socket `fd`.
Result<PeerCredentials> ReadPeerCredentials(int fd);

class PeerListener {
 public:
  // Takes ownership of `fd`, a connected, non-blocking, close-on-exec
  // socket: it must close it or give it to someone who will.
  using Handler = std::function<void(int fd, const PeerCredentials& peer)>;

  // Binds `path` (a stale socket is replaced; one that answers is an error)
  // with `mode`, listens, and starts accepting.
  static Result<std::unique_ptr<PeerListener>> Start(const std::filesystem::path& path,
                                                     uint32_t mode, Handler handler);
  ~PeerListener();  // Shutdown()
  PeerListener(const PeerListener&) = delete;
  PeerListener& operator=(const PeerListener&) = delete;

  // Stops accepting, waits for the accept thread and removes the socket
  // file. Connections already handed on are not touched.
  void Shutdown();

 private:
  PeerListener(std::filesystem::path path, int fd, Handler handler);
  void AcceptLoop();

  std::filesystem::path path_;
  int listen_fd_;
  Handler handler_;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
};

}  // namespace tokenmem::control
