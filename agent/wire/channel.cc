#include "wire/channel.h"

#include <fcntl.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/client_interceptor.h>
#include <grpcpp/support/interceptor.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <vector>

namespace tokenmem::wire {

namespace {

// Adds the admin token to every call's initial metadata. Call credentials
// would do the same but gRPC sends them only over TLS; the agent's TCP
// listener checks the header whatever the transport.
class BearerInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit BearerInterceptor(const std::string* header) : header_(header) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->emplace("authorization", *header_);
    }
    methods->Proceed();
  }

 private:
  const std::string* header_;
};

class BearerInterceptorFactory : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerInterceptorFactory(const std::string& token) : header_("Bearer " + token) {}

  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* /*info*/) override {
    return new BearerInterceptor(&header_);
  }

 private:
  const std::string header_;  // lives as long as the channel that owns the factory
};

std::string Trim(std::string s) {
  const char* kSpace = " \t\r\n";
  size_t begin = s.find_first_not_of(kSpace);
  if (begin == std::string::npos) return "";
  size_t end = s.find_last_not_of(kSpace);
  return s.substr(begin, end - begin + 1);
}

Result<std::string> ReadWholeFile(const std::string& path, const std::string& what) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("cannot open " + what + " file '" + path + "'", errno);
  std::string content;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return ErrnoError("cannot read " + what + " file '" + path + "'", err);
    }
    if (n == 0) break;
    content.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  if (content.empty()) return InvalidArgument(what + " file '" + path + "' is empty");
  return content;
}

}  // namespace

std::string DefaultSocketPath() {
  const char* env = std::getenv(kSocketEnvVar);
  if (env != nullptr && env[0] != '\0') return env;
  return kDefaultSocketPath;
}

std::string TargetOf(const Endpoint& endpoint) {
  if (!endpoint.address.empty()) return endpoint.address;
  return "unix:" + endpoint.socket_path;
}

Result<std::shared_ptr<grpc::Channel>> CreateChannel(const Endpoint& endpoint) {
  if (endpoint.address.empty()) {
    if (endpoint.socket_path.empty()) {
      return InvalidArgument("no agent socket or address given");
    }
    if (endpoint.socket_path.size() >= sizeof(sockaddr_un{}.sun_path)) {
      return InvalidArgument("socket path '" + endpoint.socket_path + "' is longer than " +
                             std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) +
                             " bytes, the limit of a Unix socket address");
    }
  }
  const bool tls = !endpoint.tls_ca_file.empty() || !endpoint.tls_cert_file.empty() ||
                   !endpoint.tls_key_file.empty() || !endpoint.tls_server_name.empty();
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  auto credentials = grpc::InsecureChannelCredentials();
  if (tls) {
    if (endpoint.address.empty()) return InvalidArgument("TLS applies to TCP addresses only");
    if (endpoint.tls_cert_file.empty() != endpoint.tls_key_file.empty()) {
      return InvalidArgument("a TLS client certificate needs its key, and a key its certificate");
    }
    if (endpoint.tls_ca_file.empty()) {
      return InvalidArgument("TLS needs the CA that signed the agent's certificate");
    }
    grpc::SslCredentialsOptions ssl;
    TM_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadWholeFile(endpoint.tls_ca_file, "TLS CA"));
    if (!endpoint.tls_cert_file.empty()) {
      TM_ASSIGN_OR_RETURN(ssl.pem_cert_chain,
                          ReadWholeFile(endpoint.tls_cert_file, "TLS certificate"));
      TM_ASSIGN_OR_RETURN(ssl.pem_private_key, ReadWholeFile(endpoint.tls_key_file, "TLS key"));
    }
    credentials = grpc::SslCredentials(ssl);
    if (!endpoint.tls_server_name.empty()) args.SetSslTargetNameOverride(endpoint.tls_server_name);
  }
  if (endpoint.admin_token.empty()) {
    return grpc::CreateCustomChannel(TargetOf(endpoint), credentials, args);
  }
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> factories;
  factories.push_back(std::make_unique<BearerInterceptorFactory>(endpoint.admin_token));
  return grpc::experimental::CreateCustomChannelWithInterceptors(TargetOf(endpoint), credentials,
                                                                 args, std::move(factories));
}

Result<std::string> ReadAdminTokenFile(const std::string& path) {
  auto content = ReadWholeFile(path, "admin token");
  if (!content.ok()) return content.status();
  std::string token = Trim(std::move(content).value());
  if (token.empty()) return InvalidArgument("admin token file '" + path + "' is empty");
  return token;
}

void SetTimeout(grpc::ClientContext* context, std::chrono::milliseconds timeout) {
  context->set_deadline(std::chrono::system_clock::now() + timeout);
}

}  // namespace tokenmem::wire
