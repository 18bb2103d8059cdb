#include "k8s/api_server_stub.h"

namespace tokenmem::k8s::testing {
namespace {

constexpr const char* kBase = "/apis/tokenmem.io/v1alpha1/";

void Reply(httplib::Response& res, int code, const nlohmann::json& body) {
  res.status = code;
  res.set_content(body.dump(), "application/json");
}

nlohmann::json StatusBody(int code, const std::string& message) {
  return {{"kind", "Status"}, {"code", code}, {"message", message}};
}

}  // namespace

ApiServerStub::ApiServerStub() = default;
ApiServerStub::~ApiServerStub() { Down(); }

void ApiServerStub::Record(const std::string& type, nlohmann::json& object) {
  ++rv_;
  object["metadata"]["resourceVersion"] = std::to_string(rv_);
  events_.push_back({rv_, type, object});
  changed_.notify_all();
}

void ApiServerStub::ApplyPool(const std::string& name, const nlohmann::json& spec) {
  std::lock_guard lock(mu_);
  auto it = pools_.find(name);
  if (it == pools_.end()) {
    nlohmann::json object = {{"apiVersion", "tokenmem.io/v1alpha1"},
                             {"kind", "TokenMemoryPool"},
                             {"metadata", {{"name", name}, {"generation", 1}}},
                             {"spec", spec}};
    Record("ADDED", object);
    pools_[name] = object;
  } else {
    it->second["spec"] = spec;
    it->second["metadata"]["generation"] = it->second["metadata"]["generation"].get<int>() + 1;
    Record("MODIFIED", it->second);
  }
}

void ApiServerStub::DeletePool(const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = pools_.find(name);
  if (it == pools_.end()) return;
  nlohmann::json object = it->second;
  pools_.erase(it);
  Record("DELETED", object);
}

void ApiServerStub::Compact() {
  std::lock_guard lock(mu_);
  compacted_ = rv_ + 1;
  events_.clear();
  ++epoch_;
  changed_.notify_all();
}

nlohmann::json ApiServerStub::Pool(const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = pools_.find(name);
  return it == pools_.end() ? nlohmann::json() : it->second;
}

std::string ApiServerStub::last_authorization() const {
  std::lock_guard lock(mu_);
  return last_authorization_;
}

nlohmann::json ApiServerStub::Node(const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = nodes_.find(name);
  return it == nodes_.end() ? nlohmann::json() : it->second;
}

void ApiServerStub::HandleWatch(const httplib::Request& req, httplib::Response& res) {
  watches_++;
  uint64_t from = 0;
  if (req.has_param("resourceVersion")) from = std::stoull(req.get_param_value("resourceVersion"));
  uint64_t epoch;
  {
    std::lock_guard lock(mu_);
    epoch = epoch_;
    if (from < compacted_) {
      res.status = 200;
      nlohmann::json error = {{"type", "ERROR"},
                              {"object", StatusBody(410, "too old resource version")}};
      res.set_content(error.dump() + "\n", "application/json");
      return;
    }
  }
  auto deadline = std::chrono::steady_clock::now() + watch_window;
  auto sent = std::make_shared<uint64_t>(from);
  res.set_chunked_content_provider(
      "application/json", [this, sent, epoch, deadline](size_t, httplib::DataSink& sink) {
        std::unique_lock lock(mu_);
        changed_.wait_for(lock, std::chrono::milliseconds(20));
        if (epoch_ != epoch || std::chrono::steady_clock::now() > deadline) {
          lock.unlock();
          sink.done();
          return true;
        }
        std::string out;
        for (const auto& e : events_) {
          if (e.rv <= *sent) continue;
          out += nlohmann::json{{"type", e.type}, {"object", e.object}}.dump() + "\n";
          *sent = e.rv;
        }
        lock.unlock();
        if (!out.empty() && !sink.write(out.data(), out.size())) return false;
        return true;
      });
}

void ApiServerStub::Routes() {
  server_->Get(R"(/apis/tokenmem.io/v1alpha1/(\w+))",
               [this](const httplib::Request& req, httplib::Response& res) {
                 if (req.matches[1] != "tokenmemorypools")
                   return Reply(res, 404, StatusBody(404, "no such resource"));
                 if (req.has_param("watch")) return HandleWatch(req, res);
                 std::lock_guard lock(mu_);
                 last_authorization_ = req.get_header_value("Authorization");
                 nlohmann::json items = nlohmann::json::array();
                 for (const auto& [name, object] : pools_) items.push_back(object);
                 Reply(res, 200,
                       {{"kind", "TokenMemoryPoolList"},
                        {"metadata", {{"resourceVersion", std::to_string(rv_)}}},
                        {"items", items}});
               });
  server_->Get(R"(/apis/tokenmem.io/v1alpha1/tokenmemorynodes/([^/]+))",
               [this](const httplib::Request& req, httplib::Response& res) {
                 std::lock_guard lock(mu_);
                 auto it = nodes_.find(req.matches[1]);
                 if (it == nodes_.end()) return Reply(res, 404, StatusBody(404, "not found"));
                 Reply(res, 200, it->second);
               });
  server_->Post(R"(/apis/tokenmem.io/v1alpha1/tokenmemorynodes)",
                [this](const httplib::Request& req, httplib::Response& res) {
                  auto object = nlohmann::json::parse(req.body, nullptr, false);
                  std::lock_guard lock(mu_);
                  std::string name = object["metadata"].value("name", "");
                  if (nodes_.count(name)) return Reply(res, 409, StatusBody(409, "already exists"));
                  object["metadata"]["resourceVersion"] = std::to_string(++rv_);
                  nodes_[name] = object;
                  Reply(res, 201, object);
                });
  server_->Put(R"(/apis/tokenmem.io/v1alpha1/(\w+)/([^/]+)/status)",
               [this](const httplib::Request& req, httplib::Response& res) {
                 auto object = nlohmann::json::parse(req.body, nullptr, false);
                 std::lock_guard lock(mu_);
                 auto& store = req.matches[1] == "tokenmemorynodes" ? nodes_ : pools_;
                 auto it = store.find(req.matches[2]);
                 if (it == store.end()) return Reply(res, 404, StatusBody(404, "not found"));
                 if (object["metadata"].value("resourceVersion", "") !=
                     it->second["metadata"].value("resourceVersion", "")) {
                   return Reply(res, 409, StatusBody(409, "the object has been modified"));
                 }
                 it->second["status"] = object["status"];
                 if (&store == &pools_) {
                   status_writes_++;
                   Record("MODIFIED", it->second);
                 } else {
                   it->second["metadata"]["resourceVersion"] = std::to_string(++rv_);
                 }
                 Reply(res, 200, it->second);
               });
}

bool ApiServerStub::Up() {
  Down();
  server_ = std::make_unique<httplib::Server>();
  Routes();
  if (port_ == 0) {
    port_ = server_->bind_to_any_port("127.0.0.1");
    if (port_ <= 0) return false;
  } else if (!server_->bind_to_port("127.0.0.1", port_)) {
    return false;
  }
  {
    std::lock_guard lock(mu_);
    down_ = false;
  }
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  while (!server_->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return true;
}

void ApiServerStub::Down() {
  {
    std::lock_guard lock(mu_);
    down_ = true;
    ++epoch_;
    changed_.notify_all();
  }
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
  server_.reset();
}

}  // namespace tokenmem::k8s::testing
