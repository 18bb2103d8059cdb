// control_probe TARGET [--token TOKEN] [--lease ID] [--pool NAME]: calls
// every Control method on TARGET ("unix:/path" or "host:port", plain) with
// an empty request and prints one line per method, "METHOD CODE MESSAGE"
// (CODE a number). With --lease and --pool it then tries what a hostile
// tenant would (release that lease, rebind it, delete that pool, mint a
// large lease for another namespace) and prints those as "METHOD* CODE
// MESSAGE". Exits 0 once all are printed; 2 on bad usage.
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <chrono>
#include <iostream>
#include <string>

#include "control/testing/control_probe.h"
#include "tokenmem/v1/control.grpc.pb.h"

namespace {

void Print(const std::string& method, const grpc::Status& s) {
  std::cout << method << "* " << static_cast<int>(s.error_code()) << " " << s.error_message()
            << "\n";
}

template <typename Call>
grpc::Status Timed(Call call) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  return call(&ctx);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc % 2 != 0) {
    std::cerr << "usage: control_probe TARGET [--token TOKEN] [--lease ID] [--pool NAME]\n";
    return 2;
  }
  std::string token, lease, pool;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--token") {
      token = argv[i + 1];
    } else if (flag == "--lease") {
      lease = argv[i + 1];
    } else if (flag == "--pool") {
      pool = argv[i + 1];
    } else {
      std::cerr << "control_probe: unknown flag " << flag << "\n";
      return 2;
    }
  }
  auto channel = grpc::CreateChannel(argv[1], grpc::InsecureChannelCredentials());
  for (const auto& r : tokenmem::control::testing::CallEveryMethod(
           channel, token, std::chrono::milliseconds(5000))) {
    std::cout << r.method << " " << static_cast<int>(r.code) << " " << r.message << "\n";
  }
  if (lease.empty() || pool.empty()) return 0;
  auto stub = tokenmem::v1::Control::NewStub(channel);
  Print("ReleaseLease", Timed([&](grpc::ClientContext* ctx) {
          tokenmem::v1::ReleaseLeaseRequest req;
          req.set_id(lease);
          tokenmem::v1::ReleaseLeaseReply reply;
          return stub->ReleaseLease(ctx, req, &reply);
        }));
  Print("BindLease", Timed([&](grpc::ClientContext* ctx) {
          tokenmem::v1::BindLeaseRequest req;
          req.set_id(lease);
          req.set_namespace_("kube-system");
          tokenmem::v1::LeaseInfo reply;
          return stub->BindLease(ctx, req, &reply);
        }));
  Print("DeletePool", Timed([&](grpc::ClientContext* ctx) {
          tokenmem::v1::DeletePoolRequest req;
          req.set_name(pool);
          tokenmem::v1::DeletePoolReply reply;
          return stub->DeletePool(ctx, req, &reply);
        }));
  Print("CreateLease", Timed([&](grpc::ClientContext* ctx) {
          tokenmem::v1::CreateLeaseRequest req;
          req.set_quota_bytes(uint64_t{1} << 40);
          req.set_namespace_("kube-system");
          tokenmem::v1::LeaseInfo reply;
          return stub->CreateLease(ctx, req, &reply);
        }));
  return 0;
}
