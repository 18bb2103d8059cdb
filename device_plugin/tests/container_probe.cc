// The "container" of the device plugin's integration test, hostile
// flavour: started with exactly the environment Allocate returned, it looks
// for the agent's admin plane and must not find it
// (docs/security-admin-plane.md):
//   - no TOKENMEM_CONTROL_SOCKET in its environment;
//   - the mounted directory (the one holding TOKENMEM_AGENT_SOCKET) holds
//     the data socket and nothing else;
//   - the control API answers on nothing it can reach there: a gRPC
//     ListLeases / DeletePool on every socket in the directory fails.
// Prints "admin plane: unreachable" and exits 0 when all holds; otherwise
// says what it found on stderr and exits non-zero.
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>

#include "tokenmem/v1/control.grpc.pb.h"

namespace {

int Fail(int code, const std::string& what) {
  std::cerr << "container: " << what << "\n";
  return code;
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

// A control call the way a tenant gone rogue would try it.
grpc::Status TryAdminCall(const std::string& socket) {
  auto stub = tokenmem::v1::Control::NewStub(
      grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  tokenmem::v1::ListLeasesReply reply;
  grpc::Status s = stub->ListLeases(&ctx, tokenmem::v1::ListLeasesRequest(), &reply);
  if (!s.ok()) return s;
  grpc::ClientContext del;
  del.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  tokenmem::v1::DeletePoolRequest req;
  req.set_name(Env("TOKENMEM_DEFAULT_POOL"));
  tokenmem::v1::DeletePoolReply deleted;
  return stub->DeletePool(&del, req, &deleted);
}

}  // namespace

int main() {
  namespace fs = std::filesystem;
  const std::string data_socket = Env("TOKENMEM_AGENT_SOCKET");
  if (data_socket.empty() || Env("TOKENMEM_LEASE").empty()) {
    return Fail(2, "missing TOKENMEM_AGENT_SOCKET or TOKENMEM_LEASE");
  }
  if (std::getenv("TOKENMEM_CONTROL_SOCKET") != nullptr) {
    return Fail(3, "TOKENMEM_CONTROL_SOCKET is set: " + Env("TOKENMEM_CONTROL_SOCKET"));
  }
  const fs::path dir = fs::path(data_socket).parent_path();
  std::error_code ec;
  int entries = 0;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    ++entries;
    if (entry.path() != fs::path(data_socket)) {
      return Fail(
          3, "the mounted directory holds " + entry.path().string() + " besides the data socket");
    }
  }
  if (ec) return Fail(2, "cannot list " + dir.string() + ": " + ec.message());
  if (entries != 1) return Fail(2, "the data socket is not in the mounted directory");
  grpc::Status s = TryAdminCall(data_socket);
  if (s.ok()) return Fail(4, "the control API answered on " + data_socket);
  std::cout << "data socket refuses control calls: " << static_cast<int>(s.error_code()) << "\n";
  std::cout << "admin plane: unreachable\n";
  return 0;
}
