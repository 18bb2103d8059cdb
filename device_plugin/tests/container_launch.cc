#include "container_launch.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tokenmem::device_plugin::testing {
namespace {

void WriteAll(int fd, const char* text) {
  size_t len = std::strlen(text);
  while (len > 0) {
    ssize_t n = ::write(fd, text, len);
    if (n <= 0) return;
    text += n;
    len -= static_cast<size_t>(n);
  }
}

// In the child, between fork and exec: only async-signal-safe calls.
bool PrivateMounts(const std::vector<MountSpec>& mounts) {
  if (::unshare(CLONE_NEWNS) != 0) return false;
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return false;
  for (const auto& m : mounts) {
    ::mkdir(m.container_path.c_str(), 0755);
    if (::mount(m.host_path.c_str(), m.container_path.c_str(), nullptr, MS_BIND | MS_REC,
                nullptr) != 0) {
      return false;
    }
    if (m.read_only && ::mount(nullptr, m.container_path.c_str(), nullptr,
                               MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr) != 0) {
      return false;
    }
  }
  return true;
}

}  // namespace

Result<ContainerRun> RunContainer(const std::string& binary, const std::vector<std::string>& args,
                                  const std::map<std::string, std::string>& env,
                                  const std::vector<MountSpec>& mounts,
                                  std::chrono::milliseconds timeout) {
  // Everything the child needs is built before fork.
  std::vector<std::string> argv_store = {binary};
  argv_store.insert(argv_store.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_store) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_store;
  for (const auto& [k, v] : env) env_store.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);

  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return ErrnoError("pipe2", errno);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(out[0]);
    ::close(out[1]);
    return ErrnoError("fork", err);
  }
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::dup2(out[1], 1);
    ::dup2(out[1], 2);
    if (PrivateMounts(mounts)) {
      WriteAll(1, "mounts: private namespace\n");
    } else {
      // Whatever a half-made namespace did stays in it; the links are made
      // on the host paths the test owns.
      for (const auto& m : mounts) {
        ::rmdir(m.container_path.c_str());
        ::symlink(m.host_path.c_str(), m.container_path.c_str());
      }
      WriteAll(1, "mounts: host paths\n");
    }
    ::execve(binary.c_str(), argv.data(), envp.data());
    WriteAll(2, "execve failed\n");
    ::_exit(127);
  }
  ::close(out[1]);

  ContainerRun run;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool timed_out = false;
  char buf[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd pfd{out[0], POLLIN, 0};
    const int n = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    const ssize_t got = ::read(out[0], buf, sizeof(buf));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    run.output.append(buf, static_cast<size_t>(got));
  }
  ::close(out[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) return Unavailable("container ran past its timeout; output:\n" + run.output);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  run.private_mounts = run.output.rfind("mounts: private namespace", 0) == 0;
  return run;
}

}  // namespace tokenmem::device_plugin::testing
