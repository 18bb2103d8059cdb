#include "http/agent_http.h"

#include "tokenmem/common/log.h"

namespace tokenmem::http {
namespace {

constexpr char kLog[] = "http";

std::string JoinLines(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

std::string JoinSemicolons(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += (out.empty() ? "" : "; ") + l;
  return out;
}

}  // namespace

AgentHttp::AgentHttp(AgentHttpOptions options)
    : options_(std::move(options)),
      collector_(options_.pools, options_.leases,
                 CollectorOptions{options_.facts.version, options_.facts.node_name,
                                  options_.facts.started, options_.local_clients}) {
  if (options_.remote) remote_collector_ = std::make_unique<RemoteCollector>(options_.remote);
}

Result<std::unique_ptr<AgentHttp>> AgentHttp::Start(AgentHttpOptions options) {
  if (!options.pools || !options.leases || !options.metrics) {
    return InvalidArgument("AgentHttp needs pools, leases and metrics");
  }
  std::unique_ptr<AgentHttp> self(new AgentHttp(std::move(options)));
  AgentHttp* raw = self.get();
  HttpServerOptions server;
  server.listen = raw->options_.listen;
  server.routes["/metrics"] = [raw] { return raw->Metrics(); };
  server.routes["/healthz"] = [] { return HttpResponse{.body = "ok\n"}; };
  server.routes["/readyz"] = [raw] { return raw->Ready(); };
  server.routes["/v1/status"] = [raw] { return raw->Status(); };
  TM_ASSIGN_OR_RETURN(self->server_, HttpServer::Start(std::move(server)));
  if (!raw->options_.probe_listen.empty()) {
    ProbeServerOptions probes;
    probes.listen = raw->options_.probe_listen;
    probes.routes["/healthz"] = [] { return HttpResponse{.body = "ok\n"}; };
    probes.routes["/readyz"] = [raw] { return raw->Ready(); };
    TM_ASSIGN_OR_RETURN(self->probes_, ProbeServer::Start(std::move(probes)));
  }
  return self;
}

AgentHttp::~AgentHttp() { Stop(); }

void AgentHttp::Stop() {
  stopping_.store(true);
  if (probes_) probes_->Stop();
  if (server_) server_->Stop();
}

HttpResponse AgentHttp::Metrics() const {
  return {.content_type = "text/plain; version=0.0.4; charset=utf-8",
          .body = remote_collector_
                      ? options_.metrics->Serialize({&collector_, remote_collector_.get()})
                      : options_.metrics->Serialize({&collector_})};
}

std::vector<std::string> AgentHttp::CheckReadiness() {
  std::vector<std::string> problems = ReadinessProblems(options_.facts, stopping_.load());
  std::lock_guard lock(ready_mu_);
  const bool ready = problems.empty();
  if (!checked_ || ready != was_ready_) {
    if (ready) {
      TM_LOG(INFO, kLog) << "ready";
    } else {
      TM_LOG(WARN, kLog) << "not ready: " << JoinSemicolons(problems);
    }
  }
  checked_ = true;
  was_ready_ = ready;
  return problems;
}

HttpResponse AgentHttp::Ready() {
  auto problems = CheckReadiness();
  if (problems.empty()) return {.body = "ready\n"};
  return {.status = 503, .body = JoinLines(problems)};
}

HttpResponse AgentHttp::Status() {
  return {
      .content_type = "application/json",
      .body = StatusJson(options_.facts, *options_.pools, *options_.leases,
                         options_.local_clients ? options_.local_clients() : 0, CheckReadiness())};
}

}  // namespace tokenmem::http
