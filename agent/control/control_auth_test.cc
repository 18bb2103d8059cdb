// The control API authenticates every caller on every transport
// (docs/security-admin-plane.md): Unix peers by their credentials, TCP
// callers by the admin token and, with mTLS, a client certificate. Each
// refusal is checked for every method of the service, and for leaving the
// agent's state as it was.
#include <fcntl.h>
#include <grp.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include "control/control_server.h"
#include "control/testing/control_probe.h"
#include "tokenmem/common/testing/temp_dir.h"

namespace tokenmem::control {
namespace {

using namespace std::chrono_literals;
using testing::CallEveryMethod;
using testing::ControlMethodCount;
using testing::MethodResult;

constexpr uint32_t kNobody = 65534;
constexpr uint32_t kOther = 65532;

// What a probe run printed: method -> status code.
struct ProbeRun {
  int exit_code = -1;
  std::map<std::string, int> codes;
  std::string output;
};

class ControlAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Other uids must reach the socket (and the probe binary) inside.
    ASSERT_EQ(::chmod(dir_.path().c_str(), 0755), 0);
    pool::PoolManagerOptions options;
    options.tier_capacity = {.dram = 1 << 20};
    auto pools = pool::PoolManager::Open(options);
    ASSERT_TRUE(pools.ok()) << pools.status().ToString();
    pools_ = std::move(pools).value();
    info_.version = "test";
  }

  void StartServer(ControlServerOptions options) {
    options.socket_path = socket_;
    options.on_auth_failure = [this](Transport t, AuthFailure f) {
      std::lock_guard lock(mu_);
      ++failures_[std::string(TransportName(t)) + "/" + std::string(AuthFailureName(f))];
    };
    auto started = ControlServer::Start(options, pools_.get(), &leases_, &info_);
    ASSERT_TRUE(started.ok()) << started.status().ToString();
    server_ = std::move(started).value();
    root_ = v1::Control::NewStub(
        grpc::CreateChannel("unix:" + socket_.string(), grpc::InsecureChannelCredentials()));
  }

  int Failures(const std::string& key) {
    std::lock_guard lock(mu_);
    return failures_[key];
  }

  // A pool and a lease made by root: what a hostile tenant would go after.
  void MakePoolAndLease() {
    grpc::ClientContext ctx;
    v1::CreatePoolRequest req;
    req.mutable_spec()->set_name("p");
    req.mutable_spec()->set_block_size(4096);
    auto* cap = req.mutable_spec()->add_capacity();
    cap->set_tier(v1::TIER_KIND_DRAM);
    cap->set_bytes(64 * 4096);
    v1::PoolInfo info;
    ASSERT_TRUE(root_->CreatePool(&ctx, req, &info).ok());
    grpc::ClientContext lctx;
    v1::CreateLeaseRequest lreq;
    lreq.set_quota_bytes(8 * 4096);
    lreq.add_pools("p");
    lreq.set_namespace_("tenant");
    ASSERT_TRUE(root_->CreateLease(&lctx, lreq, &lease_).ok());
  }

  std::vector<std::string> LeaseIds() {
    grpc::ClientContext ctx;
    v1::ListLeasesReply reply;
    EXPECT_TRUE(root_->ListLeases(&ctx, v1::ListLeasesRequest(), &reply).ok());
    std::vector<std::string> ids;
    for (const auto& l : reply.leases()) ids.push_back(l.id() + "@" + l.namespace_());
    return ids;
  }

  std::vector<std::string> PoolNames() {
    grpc::ClientContext ctx;
    v1::ListPoolsReply reply;
    EXPECT_TRUE(root_->ListPools(&ctx, v1::ListPoolsRequest(), &reply).ok());
    std::vector<std::string> names;
    for (const auto& p : reply.pools()) names.push_back(p.spec().name());
    return names;
  }

  // Runs the probe binary against the Unix socket as uid/gid with the given
  // supplementary groups (root when uid is 0 and nothing else is asked).
  ProbeRun ProbeAs(uint32_t uid, uint32_t gid, std::vector<gid_t> groups,
                   std::vector<std::string> extra = {}) {
    ProbeRun run;
    // A copy the other uid can execute whatever the build tree's modes.
    const auto probe = dir_ / "control_probe";
    if (!std::filesystem::exists(probe)) {
      std::filesystem::copy_file(CONTROL_PROBE_BINARY, probe);
      ::chmod(probe.c_str(), 0755);
    }
    std::vector<std::string> args = {probe.string(), "unix:" + socket_.string()};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) {
      ADD_FAILURE() << "pipe2: " << std::strerror(errno);
      return run;
    }
    pid_t pid = ::fork();
    if (pid < 0) {
      ADD_FAILURE() << "fork: " << std::strerror(errno);
      return run;
    }
    if (pid == 0) {
      // Only async-signal-safe calls between fork and exec: gRPC's threads
      // live on in the parent only.
      ::dup2(out[1], STDOUT_FILENO);
      ::dup2(out[1], STDERR_FILENO);
      if (::setgroups(groups.size(), groups.data()) != 0) ::_exit(120);
      if (::setresgid(gid, gid, gid) != 0) ::_exit(121);
      if (::setresuid(uid, uid, uid) != 0) ::_exit(122);
      ::execv(argv[0], argv.data());
      ::_exit(123);
    }
    ::close(out[1]);
    char buf[4096];
    for (;;) {
      ssize_t n = ::read(out[0], buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      run.output.append(buf, static_cast<size_t>(n));
    }
    ::close(out[0]);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::istringstream lines(run.output);
    std::string line;
    while (std::getline(lines, line)) {
      std::istringstream words(line);
      std::string method;
      int code = -1;
      if (words >> method >> code) run.codes[method] = code;
    }
    return run;
  }

  void SkipUnlessRoot() {
    if (::geteuid() != 0) GTEST_SKIP() << "switching to another uid needs root";
  }

  tokenmem::testing::TempDir dir_;
  std::filesystem::path socket_ = dir_ / "agent.sock";
  std::unique_ptr<pool::PoolManager> pools_;
  pool::LeaseTable leases_;
  AgentInfo info_;
  std::unique_ptr<ControlServer> server_;
  std::unique_ptr<v1::Control::Stub> root_;
  v1::LeaseInfo lease_;
  std::mutex mu_;
  std::map<std::string, int> failures_;
};

constexpr int kPermissionDenied = static_cast<int>(grpc::StatusCode::PERMISSION_DENIED);
constexpr int kUnauthenticated = static_cast<int>(grpc::StatusCode::UNAUTHENTICATED);
constexpr int kUnavailable = static_cast<int>(grpc::StatusCode::UNAVAILABLE);

TEST_F(ControlAuthTest, UnixPeerThatIsNotAdminIsRefusedEveryMethodAndNothingChanges) {
  SkipUnlessRoot();
  // A wide mode, so that connect() succeeds and the credential check is
  // what refuses (the default 0600 refuses earlier: see below).
  ASSERT_NO_FATAL_FAILURE(StartServer({.socket_mode = 0666}));
  ASSERT_NO_FATAL_FAILURE(MakePoolAndLease());
  const auto leases_before = LeaseIds();
  const auto pools_before = PoolNames();

  ProbeRun run = ProbeAs(kNobody, kNobody, {}, {"--lease", lease_.id(), "--pool", "p"});
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_EQ(run.codes.size(), ControlMethodCount() + 4) << run.output;
  for (const auto& [method, code] : run.codes) {
    EXPECT_EQ(code, kPermissionDenied) << method << "\n" << run.output;
  }
  EXPECT_NE(run.output.find("node admins only"), std::string::npos) << run.output;

  EXPECT_EQ(LeaseIds(), leases_before);
  EXPECT_EQ(PoolNames(), pools_before);
  EXPECT_EQ(leases_.size(), 1u);
  EXPECT_EQ(Failures("unix/not_admin"), static_cast<int>(ControlMethodCount() + 4));
}

TEST_F(ControlAuthTest, UnixRootIsAdmitted) {
  SkipUnlessRoot();
  ASSERT_NO_FATAL_FAILURE(StartServer({}));
  ProbeRun run = ProbeAs(0, 0, {});
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_EQ(run.codes.size(), ControlMethodCount());
  for (const auto& [method, code] : run.codes) {
    EXPECT_NE(code, kPermissionDenied) << method;
    EXPECT_NE(code, kUnauthenticated) << method;
  }
  EXPECT_EQ(run.codes["GetStatus"], 0);
  EXPECT_EQ(run.codes["ListLeases"], 0);
  EXPECT_EQ(Failures("unix/not_admin"), 0);
}

TEST_F(ControlAuthTest, UnixAdminUidsAndGroupsAreAdmitted) {
  SkipUnlessRoot();
  ASSERT_NO_FATAL_FAILURE(
      StartServer({.socket_mode = 0666, .admin_uids = {kNobody}, .admin_gids = {kOther + 1}}));
  // By uid.
  ProbeRun by_uid = ProbeAs(kNobody, kNobody, {});
  EXPECT_EQ(by_uid.codes["ListLeases"], 0) << by_uid.output;
  // By primary group.
  ProbeRun by_gid = ProbeAs(kOther, kOther + 1, {});
  EXPECT_EQ(by_gid.codes["ListLeases"], 0) << by_gid.output;
  // By supplementary group (SO_PEERGROUPS).
  ProbeRun by_group = ProbeAs(kOther, kOther, {kOther + 1});
  EXPECT_EQ(by_group.codes["ListLeases"], 0) << by_group.output;
  // Neither.
  ProbeRun neither = ProbeAs(kOther, kOther, {});
  EXPECT_EQ(neither.codes["ListLeases"], kPermissionDenied) << neither.output;
}

TEST_F(ControlAuthTest, UnixDefaultModeKeepsOtherUidsFromConnecting) {
  SkipUnlessRoot();
  ASSERT_NO_FATAL_FAILURE(StartServer({}));
  struct stat st {};
  ASSERT_EQ(::stat(socket_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ProbeRun run = ProbeAs(kNobody, kNobody, {});
  ASSERT_EQ(run.exit_code, 0) << run.output;
  for (const auto& [method, code] : run.codes) EXPECT_EQ(code, kUnavailable) << method;
}

// ---- TCP ----

std::shared_ptr<grpc::Channel> PlainChannel(int port) {
  return grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                             grpc::InsecureChannelCredentials());
}

TEST_F(ControlAuthTest, TcpWithoutOrWithWrongTokenIsRefusedEveryMethod) {
  ASSERT_NO_FATAL_FAILURE(StartServer({.tcp_listen = "127.0.0.1:0", .admin_token = "sesame"}));
  ASSERT_NO_FATAL_FAILURE(MakePoolAndLease());
  const auto leases_before = LeaseIds();
  auto channel = PlainChannel(server_->tcp_port());
  const size_t n = ControlMethodCount();

  for (const MethodResult& r : CallEveryMethod(channel, "", 5s)) {
    EXPECT_EQ(r.code, grpc::StatusCode::UNAUTHENTICATED) << r.method << ": " << r.message;
  }
  for (const MethodResult& r : CallEveryMethod(channel, "open-sesame", 5s)) {
    EXPECT_EQ(r.code, grpc::StatusCode::UNAUTHENTICATED) << r.method << ": " << r.message;
    EXPECT_EQ(r.message, "wrong admin token");
  }
  EXPECT_EQ(Failures("tcp/no_token"), static_cast<int>(n));
  EXPECT_EQ(Failures("tcp/wrong_token"), static_cast<int>(n));
  EXPECT_EQ(LeaseIds(), leases_before);
  EXPECT_EQ(PoolNames(), std::vector<std::string>{"p"});

  for (const MethodResult& r : CallEveryMethod(channel, "sesame", 5s)) {
    EXPECT_NE(r.code, grpc::StatusCode::UNAUTHENTICATED) << r.method << ": " << r.message;
    EXPECT_NE(r.code, grpc::StatusCode::PERMISSION_DENIED) << r.method << ": " << r.message;
  }
}

// A throwaway CA, a server certificate for 127.0.0.1 / localhost, a client
// certificate from that CA and one from another CA, made with the openssl
// command-line tool.
class ControlMtlsTest : public ControlAuthTest {
 protected:
  void SetUp() override {
    ControlAuthTest::SetUp();
    const std::string d = dir_.path().string();
    const std::string script =
        "set -e; cd '" + d +
        "'\n"
        "key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $1 "
        "2>/dev/null; }\n"
        "ca() { key $1.key; openssl req -x509 -new -key $1.key -out $1.crt -days 2 -subj "
        "/CN=$1 2>/dev/null; }\n"
        "leaf() { key $1.key; openssl req -new -key $1.key -out $1.csr -subj /CN=$3 2>/dev/null;\n"
        "  printf 'subjectAltName=%s\\nextendedKeyUsage=%s\\n' \"$4\" \"$5\" > $1.ext;\n"
        "  openssl x509 -req -in $1.csr -CA $2.crt -CAkey $2.key -CAcreateserial -out $1.crt "
        "-days 2 -extfile $1.ext 2>/dev/null; }\n"
        "ca ca; ca other-ca\n"
        "leaf server ca localhost DNS:localhost,IP:127.0.0.1 serverAuth\n"
        "leaf client ca admin DNS:admin clientAuth\n"
        "leaf stranger other-ca admin DNS:admin clientAuth\n";
    const std::string script_path = d + "/make-certs.sh";
    std::ofstream(script_path) << script;
    if (std::system(("bash '" + script_path + "'").c_str()) != 0) {
      GTEST_SKIP() << "the openssl command-line tool could not make test certificates";
    }
  }

  std::string Read(const std::string& name) {
    std::ifstream in(dir_ / name);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  std::shared_ptr<grpc::Channel> TlsChannel(const std::string& client) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = Read("ca.crt");
    if (!client.empty()) {
      ssl.pem_private_key = Read(client + ".key");
      ssl.pem_cert_chain = Read(client + ".crt");
    }
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("localhost");
    return grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(server_->tcp_port()),
                                     grpc::SslCredentials(ssl), args);
  }

  void StartMtls() {
    StartServer({.tcp_listen = "127.0.0.1:0",
                 .admin_token = "sesame",
                 .tls_cert_pem = Read("server.crt"),
                 .tls_key_pem = Read("server.key"),
                 .tls_client_ca_pem = Read("ca.crt")});
  }
};

grpc::Status CallStatus(const std::shared_ptr<grpc::Channel>& channel, const std::string& token) {
  auto stub = v1::Control::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 5s);
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  v1::StatusReply reply;
  return stub->GetStatus(&ctx, v1::StatusRequest(), &reply);
}

TEST_F(ControlMtlsTest, CertificateAndTokenAreBothRequired) {
  ASSERT_NO_FATAL_FAILURE(StartMtls());
  // Certificate and token: admitted.
  auto admin = TlsChannel("client");
  grpc::Status ok = CallStatus(admin, "sesame");
  EXPECT_TRUE(ok.ok()) << ok.error_message();
  for (const MethodResult& r : CallEveryMethod(admin, "sesame", 5s)) {
    EXPECT_NE(r.code, grpc::StatusCode::UNAUTHENTICATED) << r.method << ": " << r.message;
  }
  // Certificate, no token.
  EXPECT_EQ(CallStatus(admin, "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // Token, no certificate: every method refused, saying why.
  auto anonymous = TlsChannel("");
  for (const MethodResult& r : CallEveryMethod(anonymous, "sesame", 5s)) {
    EXPECT_EQ(r.code, grpc::StatusCode::UNAUTHENTICATED) << r.method << ": " << r.message;
    EXPECT_NE(r.message.find("client certificate"), std::string::npos) << r.message;
  }
  EXPECT_EQ(Failures("tcp/no_client_cert"), static_cast<int>(ControlMethodCount()));
  // A certificate from another CA fails the handshake.
  grpc::Status stranger = CallStatus(TlsChannel("stranger"), "sesame");
  EXPECT_FALSE(stranger.ok());
  EXPECT_EQ(stranger.error_code(), grpc::StatusCode::UNAVAILABLE) << stranger.error_message();
  // Plain TCP to the TLS port gets nowhere.
  EXPECT_FALSE(CallStatus(PlainChannel(server_->tcp_port()), "sesame").ok());
}

TEST_F(ControlMtlsTest, ServerTlsWithoutClientCaNeedsOnlyTheToken) {
  ASSERT_NO_FATAL_FAILURE(StartServer({.tcp_listen = "127.0.0.1:0",
                                       .admin_token = "sesame",
                                       .tls_cert_pem = Read("server.crt"),
                                       .tls_key_pem = Read("server.key")}));
  EXPECT_TRUE(CallStatus(TlsChannel(""), "sesame").ok());
  EXPECT_EQ(CallStatus(TlsChannel(""), "nope").error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST(ControlServerOptionsTest, RefusesHalfConfiguredSecurity) {
  tokenmem::testing::TempDir dir;
  pool::LeaseTable leases;
  AgentInfo info;
  auto pools = pool::PoolManager::Open({.tier_capacity = {.dram = 1 << 20}});
  ASSERT_TRUE(pools.ok());
  auto start = [&](ControlServerOptions o) {
    o.socket_path = dir / "agent.sock";
    return ControlServer::Start(o, pools->get(), &leases, &info).status();
  };
  EXPECT_EQ(start({.tcp_listen = "127.0.0.1:0"}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(start({.tcp_listen = "127.0.0.1:0", .admin_token = "t", .tls_cert_pem = "x"}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(
      start({.tcp_listen = "127.0.0.1:0", .admin_token = "t", .tls_client_ca_pem = "x"}).code(),
      StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tokenmem::control
