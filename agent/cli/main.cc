// tokenmemctl: operate a tokenmem agent over its control API.
#include <iostream>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/commands.h"
#include "tokenmem/v1/control.grpc.pb.h"
#include "wire/channel.h"

int main(int argc, char** argv) {
  using namespace tokenmem;
  std::vector<std::string> args(argv + 1, argv + argc);
  auto inv = cli::ParseArgs(args);
  if (!inv.ok()) return cli::ReportUsageError(std::cerr, inv.status().message());
  if (inv->command->name == "help") {
    std::cout << cli::UsageText();
    return cli::kExitOk;
  }

  wire::Endpoint endpoint;
  endpoint.address = inv->global.address;
  endpoint.tls_ca_file = inv->global.tls_ca;
  endpoint.tls_cert_file = inv->global.tls_cert;
  endpoint.tls_key_file = inv->global.tls_key;
  endpoint.tls_server_name = inv->global.tls_server_name;
  endpoint.socket_path =
      inv->global.socket.empty() ? wire::DefaultSocketPath() : inv->global.socket;
  if (!inv->global.admin_token_file.empty()) {
    auto token = wire::ReadAdminTokenFile(inv->global.admin_token_file);
    if (!token.ok()) {
      std::cerr << "tokenmemctl: " << token.status().ToString() << "\n";
      return cli::kExitError;
    }
    endpoint.admin_token = *token;
  }
  auto channel = wire::CreateChannel(endpoint);
  if (!channel.ok()) return cli::ReportUsageError(std::cerr, channel.status().message());
  auto stub = v1::Control::NewStub(*channel);
  return cli::RunCommand(*inv, *stub, std::cout, std::cerr);
}
