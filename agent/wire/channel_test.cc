#include "wire/channel.h"

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "tokenmem/v1/control.grpc.pb.h"

namespace tokenmem::wire {
namespace {

// Answers GetStatus with the caller's authorization header as node_name.
class EchoAuthService final : public v1::Control::Service {
  grpc::Status GetStatus(grpc::ServerContext* context, const v1::StatusRequest*,
                         v1::StatusReply* reply) override {
    auto it = context->client_metadata().find("authorization");
    if (it != context->client_metadata().end()) {
      reply->set_node_name(std::string(it->second.data(), it->second.size()));
    }
    reply->set_version("test");
    return grpc::Status::OK;
  }
};

class ChannelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "tm-wire-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    socket_ = dir_ + "/s.sock";
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + socket_, grpc::InsecureServerCredentials());
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &tcp_port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
    std::filesystem::remove_all(dir_);
  }

  std::string Call(const Endpoint& endpoint) {
    auto channel = CreateChannel(endpoint);
    EXPECT_TRUE(channel.ok()) << channel.status().ToString();
    if (!channel.ok()) return "<no channel>";
    auto stub = v1::Control::NewStub(*channel);
    grpc::ClientContext ctx;
    SetTimeout(&ctx, std::chrono::seconds(5));
    v1::StatusReply reply;
    grpc::Status s = stub->GetStatus(&ctx, v1::StatusRequest(), &reply);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return reply.node_name();
  }

  std::string dir_;
  std::string socket_;
  int tcp_port_ = 0;
  EchoAuthService service_;
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(ChannelTest, ReachesAUnixSocketWithoutToken) {
  EXPECT_EQ(TargetOf({.socket_path = socket_}), "unix:" + socket_);
  EXPECT_EQ(Call({.socket_path = socket_}), "");
}

TEST_F(ChannelTest, SendsTheAdminTokenAsBearerMetadata) {
  EXPECT_EQ(Call({.socket_path = socket_, .admin_token = "t0k"}), "Bearer t0k");
  ASSERT_GT(tcp_port_, 0);
  Endpoint tcp{.address = "127.0.0.1:" + std::to_string(tcp_port_), .admin_token = "abc"};
  EXPECT_EQ(TargetOf(tcp), tcp.address);
  EXPECT_EQ(Call(tcp), "Bearer abc");
}

TEST_F(ChannelTest, RejectsMissingOrOverlongSocket) {
  EXPECT_EQ(CreateChannel({}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateChannel({.socket_path = "/" + std::string(200, 'x')}).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(ChannelTest, RejectsHalfTls) {
  std::ofstream(dir_ + "/ca.crt") << "-----BEGIN CERTIFICATE-----\n";
  const std::string ca = dir_ + "/ca.crt";
  // TLS is for TCP only.
  EXPECT_EQ(CreateChannel({.socket_path = socket_, .tls_ca_file = ca}).status().code(),
            StatusCode::kInvalidArgument);
  // A certificate needs its key, and the agent's CA.
  EXPECT_EQ(CreateChannel({.address = "127.0.0.1:1", .tls_ca_file = ca, .tls_cert_file = ca})
                .status()
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateChannel({.address = "127.0.0.1:1", .tls_cert_file = ca, .tls_key_file = ca})
                .status()
                .code(),
            StatusCode::kInvalidArgument);
  // Unreadable files are I/O errors naming the file.
  Status missing =
      CreateChannel({.address = "127.0.0.1:1", .tls_ca_file = dir_ + "/absent.crt"}).status();
  EXPECT_EQ(missing.code(), StatusCode::kIoError);
  EXPECT_NE(missing.message().find("absent.crt"), std::string::npos) << missing.ToString();
  EXPECT_TRUE(CreateChannel({.address = "127.0.0.1:1", .tls_ca_file = ca}).ok());
}

TEST_F(ChannelTest, ReadsAndTrimsTheTokenFile) {
  std::string path = dir_ + "/token";
  std::ofstream(path) << "  secret-token\n";
  auto token = ReadAdminTokenFile(path);
  ASSERT_TRUE(token.ok()) << token.status().ToString();
  EXPECT_EQ(*token, "secret-token");

  std::ofstream(dir_ + "/empty") << " \n";
  EXPECT_EQ(ReadAdminTokenFile(dir_ + "/empty").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadAdminTokenFile(dir_ + "/missing").status().code(), StatusCode::kIoError);
}

TEST(DefaultSocketPathTest, PrefersTheEnvironment) {
  const char* old = getenv(kSocketEnvVar);
  std::string saved = old ? old : "";
  setenv(kSocketEnvVar, "/tmp/x.sock", 1);
  EXPECT_EQ(DefaultSocketPath(), "/tmp/x.sock");
  setenv(kSocketEnvVar, "", 1);
  EXPECT_EQ(DefaultSocketPath(), kDefaultSocketPath);
  unsetenv(kSocketEnvVar);
  EXPECT_EQ(DefaultSocketPath(), kDefaultSocketPath);
  if (old) setenv(kSocketEnvVar, saved.c_str(), 1);
}

}  // namespace
}  // namespace tokenmem::wire
