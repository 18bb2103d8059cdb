#include "tokenmem/transport/remote_connection.h"

#include <atomic>
#include <cstring>
#include <future>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "tokenmem/transport/address.h"
#include "tokenmem/transport/ucx_runtime.h"

namespace tokenmem::transport {
namespace {

// One request waiting for its reply. Touched by the caller before it is
// posted and after `done` fires; in between only by the progress thread.
struct Pending {
  std::vector<std::byte> header;
  std::vector<ucp_dt_iov_t> send_iov;
  std::span<const std::span<const Piece>> destinations;
  std::vector<ucp_dt_iov_t> recv_iov;
  void* send_request = nullptr;
  void* recv_request = nullptr;
  Result<Reply> result = Status(StatusCode::kInternal, "no reply");
  bool reply_ready = false;  // `result` holds the outcome
  bool finished = false;
  std::promise<void> done;
};

// Destination pieces for the found blocks of a GET reply, in payload order.
Status BuildReceiveList(const Reply& reply, std::span<const std::span<const Piece>> destinations,
                        std::vector<ucp_dt_iov_t>* out) {
  if (reply.items.size() != destinations.size()) {
    return Status(StatusCode::kInternal, "reply item count differs from the request's");
  }
  for (size_t i = 0; i < reply.items.size(); ++i) {
    if (reply.items[i].code != StatusCode::kOk) continue;
    size_t left = reply.items[i].length;
    for (const Piece& p : destinations[i]) {
      if (left == 0) break;
      size_t n = std::min(left, p.len);
      out->push_back(ucp_dt_iov_t{p.data, n});
      left -= n;
    }
    if (left != 0) return Status(StatusCode::kInternal, "agent sent a block larger than asked");
  }
  return Status();
}

}  // namespace

struct RemoteConnection::Impl {
  ConnectOptions options;
  std::unique_ptr<UcxRuntime> runtime;
  ucp_ep_h ep = nullptr;  // progress thread only
  std::atomic<bool> alive{false};
  std::string peer_node;
  std::atomic<uint64_t> next_id{1};
  std::unordered_map<uint64_t, std::shared_ptr<Pending>> pending;  // progress thread only

  void Finish(const std::shared_ptr<Pending>& p, Result<Reply> result) {
    if (p->finished) return;
    p->finished = true;
    p->result = std::move(result);
    p->done.set_value();
  }

  // Records the outcome; the caller is released once no UCX request of
  // this call is in flight (its buffers must not be touched after).
  void Complete(uint64_t id, const std::shared_ptr<Pending>& p, Result<Reply> result) {
    if (!p->reply_ready || result.ok() == false) {
      p->result = std::move(result);
      p->reply_ready = true;
    }
    TryRelease(id, p);
  }
  void TryRelease(uint64_t id, const std::shared_ptr<Pending>& p) {
    if (!p->reply_ready || p->send_request != nullptr || p->recv_request != nullptr) return;
    pending.erase(id);
    Finish(p, std::move(p->result));
  }

  // Ends the connection: closes the endpoint (which completes every UCX
  // request on it) and then fails every pending call, so no caller is
  // released while UCX may still touch its buffers. Not from inside a UCX
  // callback (it drives the worker): callbacks use FailLater().
  void Fail(const Status& why) {
    alive.store(false);
    auto all = std::move(pending);
    pending.clear();
    if (ep != nullptr) {
      ucp_request_param_t param{};
      param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
      param.flags = UCP_EP_CLOSE_FLAG_FORCE;
      void* req = ucp_ep_close_nbx(ep, &param);
      ep = nullptr;
      if (req != nullptr && !UCS_PTR_IS_ERR(req)) {
        runtime->ProgressUntil([&] { return ucp_request_check_status(req) != UCS_INPROGRESS; },
                               std::chrono::milliseconds(2000));
        ucp_request_free(req);
      }
    }
    for (auto& [id, p] : all) Finish(p, why);
  }
  void FailLater(Status why) {
    alive.store(false);
    runtime->Post([this, why = std::move(why)] { Fail(why); });
  }

  static std::pair<Impl*, std::shared_ptr<Pending>> Completed(void* request, void* user_data,
                                                              uint64_t* id);
  static void OnSent(void* request, ucs_status_t status, void* user_data);
  static void OnReceived(void* request, ucs_status_t status, size_t length, void* user_data);
  static ucs_status_t OnReply(void* arg, const void* header, size_t header_length, void* data,
                              size_t length, const ucp_am_recv_param_t* param);
  static void OnEndpointError(void* arg, ucp_ep_h ep, ucs_status_t status);

  void Send(uint64_t id, const std::shared_ptr<Pending>& p);
};

namespace {
// user_data of UCX callbacks: the connection and the request id, so a
// completion for a request that was already failed finds nothing.
struct CallbackTag {
  RemoteConnection::Impl* impl;
  uint64_t id;
};
}  // namespace

// Frees a completed UCX request and its tag; the call it belongs to, or
// nothing when that call was failed meanwhile.
std::pair<RemoteConnection::Impl*, std::shared_ptr<Pending>> RemoteConnection::Impl::Completed(
    void* request, void* user_data, uint64_t* id) {
  auto* tag = static_cast<CallbackTag*>(user_data);
  Impl* self = tag->impl;
  *id = tag->id;
  delete tag;
  ucp_request_free(request);
  auto it = self->pending.find(*id);
  return {self, it == self->pending.end() ? nullptr : it->second};
}

void RemoteConnection::Impl::OnSent(void* request, ucs_status_t status, void* user_data) {
  uint64_t id = 0;
  auto [self, p] = Completed(request, user_data, &id);
  if (p == nullptr) return;
  p->send_request = nullptr;
  if (status != UCS_OK) {
    self->Complete(id, p, UcsError("sending a request", status));
    return;
  }
  self->TryRelease(id, p);
}

void RemoteConnection::Impl::OnReceived(void* request, ucs_status_t status, size_t,
                                        void* user_data) {
  uint64_t id = 0;
  auto [self, p] = Completed(request, user_data, &id);
  if (p == nullptr) return;
  p->recv_request = nullptr;
  if (status != UCS_OK) {
    self->Complete(id, p, UcsError("receiving blocks", status));
  } else {
    p->reply_ready = true;  // the reply was stored when the receive started
    self->TryRelease(id, p);
  }
}

ucs_status_t RemoteConnection::Impl::OnReply(void* arg, const void* header, size_t header_length,
                                             void* data, size_t length,
                                             const ucp_am_recv_param_t* param) {
  auto* self = static_cast<Impl*>(arg);
  auto reply = DecodeReply({static_cast<const std::byte*>(header), header_length});
  if (!reply.ok()) {
    self->FailLater(
        Status(StatusCode::kUnavailable, "agent sent a bad reply: " + reply.status().message()));
    return UCS_OK;
  }
  auto it = self->pending.find(reply->id);
  if (it == self->pending.end()) return UCS_OK;  // its caller gave up already
  auto p = it->second;
  uint64_t id = reply->id;
  if (reply->PayloadBytes() != length) {
    self->FailLater(
        Status(StatusCode::kUnavailable, "agent sent a reply whose payload size is wrong"));
    return UCS_OK;
  }
  if (length == 0) {
    self->Complete(id, p, std::move(*reply));
    return UCS_OK;
  }
  p->recv_iov.clear();
  Status built = BuildReceiveList(*reply, p->destinations, &p->recv_iov);
  if (!built.ok()) {
    self->FailLater(Status(StatusCode::kUnavailable, built.message()));
    return UCS_OK;
  }
  if ((param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) == 0) {
    const auto* src = static_cast<const std::byte*>(data);
    for (const ucp_dt_iov_t& v : p->recv_iov) {
      std::memcpy(v.buffer, src, v.length);
      src += v.length;
    }
    self->Complete(id, p, std::move(*reply));
    return UCS_OK;
  }
  p->result = std::move(*reply);
  ucp_request_param_t rp{};
  rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  rp.cb.recv_am = &Impl::OnReceived;
  auto [buffer, count] = IovArgument(p->recv_iov, rp);
  auto* tag = new CallbackTag{self, id};
  rp.user_data = tag;
  void* req = ucp_am_recv_data_nbx(self->runtime->worker(), data, buffer, count, &rp);
  if (req == nullptr) {
    delete tag;
    p->reply_ready = true;
    self->TryRelease(id, p);
  } else if (UCS_PTR_IS_ERR(req)) {
    delete tag;
    self->Complete(id, p, UcsError("receiving blocks", UCS_PTR_STATUS(req)));
  } else {
    p->recv_request = req;
  }
  return UCS_OK;
}

void RemoteConnection::Impl::OnEndpointError(void* arg, ucp_ep_h, ucs_status_t status) {
  auto* self = static_cast<Impl*>(arg);
  self->FailLater(UcsError("connection to the agent", status));
}

void RemoteConnection::Impl::Send(uint64_t id, const std::shared_ptr<Pending>& p) {
  if (ep == nullptr || !alive.load()) {
    Finish(p, Status(StatusCode::kUnavailable, "the connection to the agent is closed"));
    return;
  }
  pending.emplace(id, p);
  ucp_request_param_t sp{};
  sp.op_attr_mask =
      UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS;
  size_t payload_bytes = 0;
  for (const ucp_dt_iov_t& v : p->send_iov) payload_bytes += v.length;
  sp.flags = UCP_AM_SEND_FLAG_REPLY | runtime->AmSendFlags(payload_bytes);
  sp.cb.send = &Impl::OnSent;
  if (!p->send_iov.empty()) {
    // UCX takes an IOV list only when it has entries.
    sp.op_attr_mask |= UCP_OP_ATTR_FIELD_DATATYPE;
    sp.datatype = ucp_dt_make_iov();
  }
  auto* tag = new CallbackTag{this, id};
  sp.user_data = tag;
  void* req =
      ucp_am_send_nbx(ep, kRequestAm, p->header.data(), p->header.size(),
                      p->send_iov.empty() ? nullptr : p->send_iov.data(), p->send_iov.size(), &sp);
  if (req == nullptr) {
    delete tag;
  } else if (UCS_PTR_IS_ERR(req)) {
    delete tag;
    Complete(id, p, UcsError("sending a request", UCS_PTR_STATUS(req)));
  } else {
    p->send_request = req;
  }
}

RemoteConnection::RemoteConnection(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

RemoteConnection::~RemoteConnection() {
  Impl* impl = impl_.get();
  impl->runtime->Stop(
      [impl] { impl->Fail(Status(StatusCode::kUnavailable, "the connection was closed")); });
}

const std::string& RemoteConnection::peer_node() const { return impl_->peer_node; }
bool RemoteConnection::connected() const { return impl_->alive.load(); }

Result<std::shared_ptr<RemoteConnection>> RemoteConnection::Connect(const ConnectOptions& options) {
  if (options.lease_id.empty() || options.lease_id.size() > kMaxCredentialBytes ||
      options.lease_secret.size() > kMaxCredentialBytes) {
    return Status(StatusCode::kInvalidArgument,
                  "lease id (1-63 bytes) and secret (<=63 bytes) required");
  }
  TM_ASSIGN_OR_RETURN(SocketAddress address, ResolveAddress(options.address));
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  TM_ASSIGN_OR_RETURN(impl->runtime, UcxRuntime::Create(RuntimeOptions{.name = options.name}));

  ucp_am_handler_param_t hp{};
  hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                  UCP_AM_HANDLER_PARAM_FIELD_ARG | UCP_AM_HANDLER_PARAM_FIELD_FLAGS;
  hp.id = kReplyAm;
  hp.flags = UCP_AM_FLAG_WHOLE_MSG;
  hp.cb = &Impl::OnReply;
  hp.arg = impl.get();
  ucs_status_t st = ucp_worker_set_am_recv_handler(impl->runtime->worker(), &hp);
  if (st != UCS_OK) return UcsError("registering the reply handler", st);

  ucp_ep_params_t ep_params{};
  ep_params.field_mask = UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_SOCK_ADDR |
                         UCP_EP_PARAM_FIELD_ERR_HANDLER | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
  ep_params.flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER;
  ep_params.sockaddr.addr = address.get();
  ep_params.sockaddr.addrlen = address.length;
  ep_params.err_mode = UCP_ERR_HANDLING_MODE_PEER;
  ep_params.err_handler.cb = &Impl::OnEndpointError;
  ep_params.err_handler.arg = impl.get();
  st = ucp_ep_create(impl->runtime->worker(), &ep_params, &impl->ep);
  if (st != UCS_OK) return UcsError("connecting to " + options.address, st);
  impl->alive.store(true);
  TM_RETURN_IF_ERROR(impl->runtime->Start());

  std::shared_ptr<RemoteConnection> conn(new RemoteConnection(std::move(impl)));
  Request hello;
  hello.op = Op::kHello;
  hello.lease_id = options.lease_id;
  hello.lease_secret = options.lease_secret;
  auto reply = conn->Call(std::move(hello));
  if (!reply.ok()) {
    Status s = reply.status();
    if (s.code() == StatusCode::kUnavailable) {
      return Status(s.code(), "no agent answered at " + options.address + " (" + s.message() + ")");
    }
    return s;
  }
  conn->impl_->peer_node = reply->node;
  return conn;
}

Result<Reply> RemoteConnection::Call(Request request, std::span<const Piece> payload,
                                     std::span<const std::span<const Piece>> destinations) {
  Impl* impl = impl_.get();
  if (!impl->alive.load()) {
    return Status(StatusCode::kUnavailable, "the connection to the agent is closed");
  }
  if (request.op == Op::kGet && destinations.size() != request.gets.size()) {
    return Status(StatusCode::kInvalidArgument, "one destination list per GET item is required");
  }
  uint64_t total = 0;
  for (const Piece& piece : payload) total += piece.len;
  if (total != request.PayloadBytes()) {
    return Status(StatusCode::kInvalidArgument, "payload size differs from the PUT items' lengths");
  }
  request.id = impl->next_id.fetch_add(1);
  auto p = std::make_shared<Pending>();
  TM_ASSIGN_OR_RETURN(p->header, EncodeRequest(request));
  for (const Piece& piece : payload) {
    if (piece.len > 0) p->send_iov.push_back(ucp_dt_iov_t{piece.data, piece.len});
  }
  p->destinations = destinations;
  std::future<void> done = p->done.get_future();
  uint64_t id = request.id;
  impl->runtime->Post([impl, id, p] { impl->Send(id, p); });
  if (done.wait_for(impl->options.timeout) != std::future_status::ready) {
    // Give up on the whole connection: closing the endpoint completes every
    // UCX request on it, so nothing writes into the caller's buffers later.
    impl->runtime->Post([impl] {
      impl->Fail(Status(StatusCode::kUnavailable, "the agent did not answer in time"));
    });
    if (done.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
      return Status(StatusCode::kInternal, "the UCX progress thread is stuck");
    }
  }
  Result<Reply> result = std::move(p->result);
  if (!result.ok()) return result.status();
  if (result->status != StatusCode::kOk) return Status(result->status, result->message);
  return result;
}

}  // namespace tokenmem::transport
