// The API client over HTTPS: the server's certificate must chain to the
// configured CA, as in a cluster (service-account CA). Certificates are made
// for the test with the openssl command.
#include <gtest/gtest.h>
#include <httplib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "k8s/http_kube_client.h"
#include "tokenmem/common/testing/temp_dir.h"

namespace tokenmem::k8s {
namespace {

bool MakeSelfSigned(const std::filesystem::path& dir, const std::string& name) {
  const std::string cmd =
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1"
      " -addext subjectAltName=IP:127.0.0.1 -keyout " +
      (dir / (name + ".key")).string() + " -out " + (dir / (name + ".crt")).string() +
      " >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

class HttpsKubeClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::system("command -v openssl >/dev/null 2>&1") != 0) GTEST_SKIP() << "no openssl";
    ASSERT_TRUE(MakeSelfSigned(dir_.path(), "server"));
    ASSERT_TRUE(MakeSelfSigned(dir_.path(), "other"));
    std::ofstream(dir_ / "token") << "sekret\n";
    server_ = std::make_unique<httplib::SSLServer>((dir_ / "server.crt").c_str(),
                                                   (dir_ / "server.key").c_str());
    ASSERT_TRUE(server_->is_valid());
    server_->Get(".*", [this](const httplib::Request& req, httplib::Response& res) {
      authorization_ = req.get_header_value("Authorization");
      res.set_content(
          R"({"kind":"TokenMemoryPoolList","metadata":{"resourceVersion":"42"},"items":[]})",
          "application/json");
    });
    port_ = server_->bind_to_any_port("127.0.0.1");
    ASSERT_GT(port_, 0);
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    for (int i = 0; i < 500 && !server_->is_running(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  void TearDown() override {
    if (server_) server_->stop();
    if (thread_.joinable()) thread_.join();
  }

  KubeClientOptions Options(const std::string& ca) {
    return {.server = "https://127.0.0.1:" + std::to_string(port_),
            .token_file = (dir_ / "token").string(),
            .ca_file = (dir_ / ca).string()};
  }

  testing::TempDir dir_;
  std::unique_ptr<httplib::SSLServer> server_;
  std::thread thread_;
  int port_ = 0;
  std::string authorization_;
};

TEST_F(HttpsKubeClientTest, ListsOverHttpsWithTheClusterCa) {
  auto client = HttpKubeClient::Create(Options("server.crt"));
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto list = (*client)->List("tokenmemorypools");
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  EXPECT_EQ(list->resource_version, "42");
  EXPECT_EQ(authorization_, "Bearer sekret");
}

TEST_F(HttpsKubeClientTest, RefusesAServerItsCaDidNotSign) {
  auto client = HttpKubeClient::Create(Options("other.crt"));
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto list = (*client)->List("tokenmemorypools");
  EXPECT_EQ(list.status().code(), StatusCode::kUnavailable) << list.status().ToString();
  EXPECT_TRUE(authorization_.empty()) << "the token went to an unverified server";
}

}  // namespace
}  // namespace tokenmem::k8s
