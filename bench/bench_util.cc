#include "bench_util.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace tokenmem::bench {

double Percentile(std::vector<double>& samples, double q) {
  if (samples.empty()) return 0;
  std::sort(samples.begin(), samples.end());
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(samples.size())));
  return samples[std::min(samples.size() - 1, rank == 0 ? 0 : rank - 1)];
}

Result<std::string> RunTool(const std::vector<std::string>& argv) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return ErrnoError("pipe", errno);
  pid_t pid = ::fork();
  if (pid < 0) return ErrnoError("fork", errno);
  if (pid == 0) {
    ::dup2(pipe_fds[1], STDOUT_FILENO);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    std::fprintf(stderr, "cannot run %s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  ::close(pipe_fds[1]);
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(pipe_fds[0], buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) out.append(buf, static_cast<size_t>(n));
  }
  ::close(pipe_fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return IoError(argv[0] + " failed (exit status " + std::to_string(WEXITSTATUS(status)) + ")");
  }
  return out;
}

Result<double> JsonNumberAfter(const std::string& json, const std::string& anchor,
                               const std::string& key) {
  size_t at = json.find(anchor);
  if (at == std::string::npos) return NotFound("'" + anchor + "' not in the output");
  at = json.find("\"" + key + "\"", at);
  if (at == std::string::npos) return NotFound("'" + key + "' not in the output");
  at = json.find(':', at);
  if (at == std::string::npos) return NotFound("malformed output near '" + key + "'");
  return std::strtod(json.c_str() + at + 1, nullptr);
}

void Progress(const std::string& line) { std::fprintf(stderr, "[bench] %s\n", line.c_str()); }

}  // namespace tokenmem::bench
