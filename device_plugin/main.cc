// tokenmem-device-plugin: flags and config in, a DevicePluginApp out; then
// waits for a signal. SIGTERM/SIGINT stop it (exit 0); SIGHUP serves and
// registers with the kubelet anew.
#include <signal.h>

#include <cstdio>
#include <iostream>

#include "config.h"
#include "plugin.h"
#include "tokenmem/common/log.h"

int main(int argc, char** argv) {
  using namespace tokenmem;
  using namespace tokenmem::device_plugin;

  Result<CommandLine> args = ParseCommandLine(argc, argv);
  if (!args.ok()) {
    std::cerr << "tokenmem-device-plugin: " << args.status().message() << "\n";
    return 2;
  }
  if (args->help) {
    std::cout << Usage();
    return 0;
  }
  LogLevel level = LogLevel::kInfo;
  ParseLogLevel(args->config.log_level, &level);
  SetLogLevel(level);

  // Signals are taken by sigwait below; every thread started later inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  if (pthread_sigmask(SIG_BLOCK, &signals, nullptr) != 0) {
    std::cerr << "tokenmem-device-plugin: cannot block signals\n";
    return 1;
  }
  // The kubelet may close a stream mid-write; that must not kill the process.
  signal(SIGPIPE, SIG_IGN);

  Result<std::unique_ptr<DevicePluginApp>> app = DevicePluginApp::Start(args->config);
  if (!app.ok()) {
    TM_LOG(Error, "device-plugin") << "cannot start: " << app.status().ToString();
    return 1;
  }
  for (;;) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGHUP) {
      TM_LOG(Info, "device-plugin") << "SIGHUP: registering anew";
      (*app)->RequestRestart();
      continue;
    }
    TM_LOG(Info, "device-plugin") << "signal " << sig << ": stopping";
    break;
  }
  (*app)->Stop();
  return 0;
}
