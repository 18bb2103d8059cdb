// tokenmem-demo: a chat workload that shows what tokenmem does (see runner.h).
#include <iostream>
#include <string>
#include <vector>

#include "demo/control_block_store.h"
#include "demo/local_block_store.h"
#include "demo/options.h"
#include "demo/report.h"
#include "demo/runner.h"
#include "tokenmem/v1/control.grpc.pb.h"
#include "wire/channel.h"

int main(int argc, char** argv) {
  using namespace tokenmem;
  auto options = demo::ParseDemoOptions(std::vector<std::string>(argv + 1, argv + argc));
  if (!options.ok()) {
    std::cerr << "tokenmem-demo: " << options.status().message() << "\n"
              << "Run 'tokenmem-demo --help' for the options.\n";
    return 2;
  }
  if (options->help) {
    std::cout << demo::DemoUsageText();
    return 0;
  }

  wire::Endpoint endpoint;
  endpoint.address = options->address;
  endpoint.socket_path = options->socket.empty() ? wire::DefaultSocketPath() : options->socket;
  if (!options->admin_token_file.empty()) {
    auto token = wire::ReadAdminTokenFile(options->admin_token_file);
    if (!token.ok()) {
      std::cerr << "tokenmem-demo: " << token.status().ToString() << "\n";
      return 1;
    }
    endpoint.admin_token = *token;
  }
  auto channel = wire::CreateChannel(endpoint);
  if (!channel.ok()) {
    std::cerr << "tokenmem-demo: " << channel.status().message() << "\n";
    return 2;
  }
  std::string ctl_flags =
      endpoint.address.empty()
          ? "--socket " + endpoint.socket_path
          : "--address " + endpoint.address + " --admin-token-file " + options->admin_token_file;

  auto stub = v1::Control::NewStub(*channel);
  demo::BlockStoreOpener open_store;
  if (options->path == demo::DataPath::kLocal) {
    // The agent's default data socket (control.data_socket) unless told
    // otherwise; with --socket, the one beside it (the layout test agents use).
    std::string data_socket = options->data_socket;
    if (data_socket.empty()) {
      data_socket = options->socket.empty() ? std::string(demo::kDefaultDataSocket)
                                            : demo::DataSocketBeside(options->socket);
    }
    open_store = demo::LocalStoreOpener(data_socket, options->timeout);
  } else {
    open_store = demo::ControlStoreOpener(*stub, options->timeout);
  }
  // With --json, stdout carries only the JSON object.
  std::ostream& progress = options->json ? std::cerr : std::cout;
  demo::DemoRunner runner(*stub, std::move(open_store), *options, progress);
  auto report = runner.Run();
  if (!report.ok()) {
    std::cerr << "tokenmem-demo: " << report.status().message() << "\n";
    return 1;
  }
  if (options->json) {
    std::cout << demo::ReportJson(*report) << "\n";
  } else {
    std::cout << "\n" << demo::ReportText(*report, ctl_flags);
  }
  if (!report->ok()) {
    std::cerr << "tokenmem-demo: "
              << (report->verification_failures > 0
                      ? std::to_string(report->verification_failures) +
                            " blocks failed verification"
                      : std::to_string(report->put_failures) +
                            " puts were refused: " + report->first_put_failure)
              << "\n";
    return 1;
  }
  return 0;
}
