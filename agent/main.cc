// tokenmem-agent: flags and configuration in, a running Agent out; exits on
// SIGINT or SIGTERM after an orderly shutdown.
#include <csignal>
#include <cstdio>
#include <iostream>

#include "agent.h"
#include "config/config_loader.h"
#include "tokenmem/common/log.h"

int main(int argc, char** argv) {
  using namespace tokenmem;
  auto command_line = config::ParseCommandLine(argc, argv);
  if (!command_line.ok()) {
    std::cerr << "tokenmem-agent: " << command_line.status().message() << "\n"
              << "Try 'tokenmem-agent --help'.\n";
    return 2;
  }
  if (command_line->show_help) {
    std::cout << config::UsageText();
    return 0;
  }
  if (command_line->show_version) {
    std::cout << "tokenmem-agent " << kVersion << "\n";
    return 0;
  }
  config::AgentConfig cfg = command_line->config;
  config::ApplyEnvironmentDefaults(&cfg);
  if (Status valid = config::Validate(cfg); !valid.ok()) {
    std::cerr << "tokenmem-agent: invalid configuration: " << valid.message() << "\n";
    return 2;
  }
  if (command_line->check_only) {
    std::cout << config::ToYaml(cfg);
    return 0;
  }

  // Block the stop signals in every thread; the main thread waits for them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  auto agent = Agent::Start(cfg);
  if (!agent.ok()) {
    TM_LOG(ERROR, "agent") << "cannot start: " << agent.status().ToString();
    return 1;
  }
  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  TM_LOG(INFO, "agent") << "received " << (signal_number == SIGTERM ? "SIGTERM" : "SIGINT")
                        << ", shutting down";
  (*agent)->Stop();
  agent->reset();
  TM_LOG(INFO, "agent") << "stopped";
  return 0;
}
