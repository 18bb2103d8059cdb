#include "control/testing/control_probe.h"

#include <google/protobuf/descriptor.h>
#include <grpcpp/completion_queue.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/support/byte_buffer.h>

#include "tokenmem/v1/control.grpc.pb.h"

namespace tokenmem::control::testing {
namespace {

const google::protobuf::ServiceDescriptor* Service() {
  return google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
      tokenmem::v1::Control::service_full_name());
}

}  // namespace

size_t ControlMethodCount() { return static_cast<size_t>(Service()->method_count()); }

std::vector<MethodResult> CallEveryMethod(const std::shared_ptr<grpc::Channel>& channel,
                                          const std::string& token,
                                          std::chrono::milliseconds timeout) {
  const auto* service = Service();
  grpc::GenericStub stub(channel);
  std::vector<MethodResult> results;
  for (int i = 0; i < service->method_count(); ++i) {
    const auto* method = service->method(i);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + timeout);
    if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
    grpc::Slice empty("");
    grpc::ByteBuffer request(&empty, 1);
    grpc::ByteBuffer response;
    grpc::CompletionQueue cq;
    grpc::Status status;
    auto call = stub.PrepareUnaryCall(&ctx, "/" + service->full_name() + "/" + method->name(),
                                      request, &cq);
    call->StartCall();
    call->Finish(&response, &status, reinterpret_cast<void*>(1));
    void* tag = nullptr;
    bool ok = false;
    cq.Next(&tag, &ok);
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
    results.push_back({method->name(), status.error_code(), status.error_message()});
  }
  return results;
}

}  // namespace tokenmem::control::testing
