#include "remote/remote_server.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>
#include <tuple>
#include <unordered_map>

#include "remote/executor.h"
#include "tokenmem/common/log.h"
#include "tokenmem/transport/address.h"
#include "tokenmem/transport/ucx_runtime.h"

namespace tokenmem::remote {

using transport::Op;
using transport::Reply;
using transport::Request;

namespace {

struct Connection {
  uint64_t number = 0;
  std::string peer;                                // the client's address, for logs
  std::string host;                                // ... without the port: the per-peer limit's key
  std::chrono::steady_clock::time_point accepted;  // for the HELLO deadline
  std::string lease_key;                           // the lease it presented; empty for peer agents
  std::atomic<uint64_t> buffered{0};               // payload bytes held for its requests
  ucp_ep_h ep = nullptr;                           // progress thread only
  bool closing = false;                            // progress thread only
  std::atomic<uint32_t> in_flight{0};
  Session session;
};

// One request on its way through an executor.
struct Work {
  void* server = nullptr;  // the RemoteServer::Impl, for UCX callbacks
  std::shared_ptr<Connection> conn;
  Request request;
  Payload data;                   // a PUT's payload, when buffered
  std::optional<SlotPut> slots;   // a PUT received into pool slots instead
  std::vector<ucp_dt_iov_t> iov;  // where UCX writes the slots' bytes
  std::chrono::steady_clock::time_point started;
  uint64_t charged = 0;  // bytes of `data` counted against the budgets

  Work() = default;
  Work(const Work&) = delete;
  Work& operator=(const Work&) = delete;
  // Slots not committed (the transfer failed, or the server stopped) go
  // back; buffered bytes leave the budgets.
  ~Work();
};

// The address without its port ("10.0.0.7:51234" -> "10.0.0.7").
std::string HostOf(const std::string& peer) {
  const size_t colon = peer.rfind(':');
  return colon == std::string::npos ? peer : peer.substr(0, colon);
}

// Pool reservations of remote connections; the local path's owners are
// small connection numbers, so the top bit keeps the two apart.
uint64_t SlotOwner(const Connection& conn) { return (uint64_t{1} << 63) | conn.number; }

// A reply being sent; freed when UCX is done with its buffers.
struct Outgoing {
  std::vector<std::byte> header;
  Payload payload;
  std::vector<ucp_dt_iov_t> iov;  // payload.pieces, as UCX takes them
  std::shared_ptr<Connection> conn;
  bool close_after = false;
};

void FreeRequest(void* request, ucs_status_t, void*) { ucp_request_free(request); }

}  // namespace

struct RemoteServer::Impl {
  RemoteServerOptions options;
  RequestHandler handler;
  std::unique_ptr<transport::UcxRuntime> runtime;
  ucp_listener_h listener = nullptr;
  std::string address;
  std::unique_ptr<Executor> executor;
  std::unordered_map<ucp_ep_h, std::shared_ptr<Connection>> connections;  // progress thread
  uint64_t next_number = 1;
  RemoteServerStats stats;
  Observer observer;
  std::atomic<int> executor_tasks{0};                  // submitted and not finished
  std::unordered_map<std::string, uint32_t> per_host;  // open connections; progress thread
  std::mutex lease_mu;
  std::unordered_map<std::string, uint64_t> lease_bytes;  // buffered per lease; lease_mu
  // Closes connections that sent no HELLO in time (posts to the progress thread).
  std::mutex sweep_mu;
  std::condition_variable sweep_cv;
  bool sweep_stop = false;  // sweep_mu
  std::thread sweeper;

  Impl(RemoteServerOptions o, HandlerOptions h) : options(std::move(o)), handler(std::move(h)) {}

  static void OnConnectionRequest(ucp_conn_request_h request, void* arg);
  static void OnEndpointError(void* arg, ucp_ep_h ep, ucs_status_t status);
  static ucs_status_t OnRequest(void* arg, const void* header, size_t header_length, void* data,
                                size_t length, const ucp_am_recv_param_t* param);
  static void OnPayloadReceived(void* request, ucs_status_t status, size_t length, void* user_data);
  static void OnReplySent(void* request, ucs_status_t status, void* user_data);

  void Close(const std::shared_ptr<Connection>& conn, bool force);
  void Send(const std::shared_ptr<Connection>& conn, const Reply& reply, Payload payload,
            bool close_after);
  void Refuse(const std::shared_ptr<Connection>& conn, const Request* request, const Status& why,
              bool close);
  void Dispatch(std::unique_ptr<Work> work);
  // Counts `bytes` against the connection's and its lease's budgets; a
  // status naming the limit when either would pass it.
  Status ChargeBytes(Connection& conn, uint64_t bytes);
  void ReleaseBytes(Connection& conn, uint64_t bytes);
  void SweepSilent();  // progress thread
  void SweepLoop();
  // Runs one request and observes it (metrics); the caller sends the reply.
  Reply Answer(Work& work, Payload* payload);
};

void RemoteServer::Impl::OnConnectionRequest(ucp_conn_request_h request, void* arg) {
  auto* self = static_cast<Impl*>(arg);
  std::string peer = "?";
  ucp_conn_request_attr_t attr{};
  attr.field_mask = UCP_CONN_REQUEST_ATTR_FIELD_CLIENT_ADDR;
  if (ucp_conn_request_query(request, &attr) == UCS_OK) {
    peer = transport::FormatAddress(reinterpret_cast<const sockaddr*>(&attr.client_address));
  }
  const std::string host = HostOf(peer);
  if (self->per_host[host] >= self->options.max_connections_per_peer) {
    self->stats.connections_rejected++;
    limits::Note(self->options.limits, limits::Limit::kRemotePeerConnections);
    TM_LOG(WARN, "remote") << "refused a connection from " << peer << ": " << self->per_host[host]
                           << " connections from " << host
                           << " are open (limits.remote_max_connections_per_peer)";
    ucp_listener_reject(self->listener, request);
    return;
  }
  if (self->connections.size() >= self->options.max_connections) {
    self->stats.connections_rejected++;
    limits::Note(self->options.limits, limits::Limit::kRemoteConnections);
    TM_LOG(WARN, "remote") << "refused a connection from " << peer << ": "
                           << self->options.max_connections << " connections are open";
    ucp_listener_reject(self->listener, request);
    return;
  }
  ucp_ep_params_t params{};
  params.field_mask = UCP_EP_PARAM_FIELD_CONN_REQUEST | UCP_EP_PARAM_FIELD_ERR_HANDLER |
                      UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
  params.conn_request = request;
  params.err_mode = UCP_ERR_HANDLING_MODE_PEER;
  params.err_handler.cb = &Impl::OnEndpointError;
  params.err_handler.arg = self;
  ucp_ep_h ep = nullptr;
  ucs_status_t st = ucp_ep_create(self->runtime->worker(), &params, &ep);
  if (st != UCS_OK) {
    TM_LOG(WARN, "remote") << "cannot accept " << peer << ": " << ucs_status_string(st);
    return;
  }
  auto conn = std::make_shared<Connection>();
  conn->number = self->next_number++;
  conn->peer = peer;
  conn->host = host;
  conn->accepted = std::chrono::steady_clock::now();
  conn->ep = ep;
  self->per_host[host]++;
  self->connections.emplace(ep, conn);
  self->stats.connections = self->connections.size();
  self->stats.connections_accepted++;
  TM_LOG(DEBUG, "remote") << "connection " << conn->number << " from " << peer;
}

void RemoteServer::Impl::OnEndpointError(void* arg, ucp_ep_h ep, ucs_status_t status) {
  auto* self = static_cast<Impl*>(arg);
  auto it = self->connections.find(ep);
  if (it == self->connections.end()) return;
  auto conn = it->second;
  TM_LOG(DEBUG, "remote") << "connection " << conn->number << " from " << conn->peer
                          << " ended: " << ucs_status_string(status);
  self->Close(conn, /*force=*/true);
}

void RemoteServer::Impl::Close(const std::shared_ptr<Connection>& conn, bool force) {
  if (conn->closing) return;
  conn->closing = true;
  connections.erase(conn->ep);
  if (auto it = per_host.find(conn->host); it != per_host.end() && --it->second == 0) {
    per_host.erase(it);
  }
  stats.connections = connections.size();
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS | UCP_OP_ATTR_FIELD_CALLBACK;
  param.flags = force ? UCP_EP_CLOSE_FLAG_FORCE : 0;
  param.cb.send = &FreeRequest;
  void* req = ucp_ep_close_nbx(conn->ep, &param);
  if (UCS_PTR_IS_ERR(req)) {
    TM_LOG(DEBUG, "remote") << "closing connection " << conn->number << ": "
                            << ucs_status_string(UCS_PTR_STATUS(req));
  }
  conn->ep = nullptr;
}

void RemoteServer::Impl::OnReplySent(void* request, ucs_status_t, void* user_data) {
  ucp_request_free(request);
  delete static_cast<Outgoing*>(user_data);
}

void RemoteServer::Impl::Send(const std::shared_ptr<Connection>& conn, const Reply& reply,
                              Payload payload, bool close_after) {
  if (conn->closing || conn->ep == nullptr) return;
  auto header = transport::EncodeReply(reply);
  if (!header.ok()) {
    TM_LOG(ERROR, "remote") << "cannot encode a reply: " << header.status().message();
    Close(conn, true);
    return;
  }
  auto out = std::make_unique<Outgoing>();
  out->header = std::move(*header);
  out->payload = std::move(payload);
  out->conn = conn;
  stats.bytes_out += out->payload.size;
  ucp_request_param_t param{};
  param.op_attr_mask =
      UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS;
  param.flags = runtime->AmSendFlags(out->payload.size);
  param.cb.send = &Impl::OnReplySent;
  param.user_data = out.get();
  const void* buffer = out->payload.size > 0 ? out->payload.data.get() : nullptr;
  size_t count = out->payload.size;
  if (!out->payload.pieces.empty()) {
    for (const auto& piece : out->payload.pieces) {
      if (piece.len > 0) out->iov.push_back({piece.data, piece.len});
    }
    buffer = nullptr;
    count = 0;
    if (!out->iov.empty()) std::tie(buffer, count) = transport::IovArgument(out->iov, param);
  }
  void* req = ucp_am_send_nbx(conn->ep, transport::kReplyAm, out->header.data(), out->header.size(),
                              buffer, count, &param);
  if (UCS_PTR_IS_ERR(req)) {
    TM_LOG(DEBUG, "remote") << "reply to connection " << conn->number
                            << " failed: " << ucs_status_string(UCS_PTR_STATUS(req));
    Close(conn, true);
    return;
  }
  if (req != nullptr) (void)out.release();  // OnReplySent frees it
  if (close_after) {
    // A flush close lets the error reply go out first.
    Close(conn, /*force=*/false);
  }
}

void RemoteServer::Impl::Refuse(const std::shared_ptr<Connection>& conn, const Request* request,
                                const Status& why, bool close) {
  Reply reply;
  reply.op = request != nullptr ? request->op : Op::kPing;
  reply.id = request != nullptr ? request->id : 0;
  reply.status = why.code();
  reply.message = why.message();
  if (close) {
    stats.protocol_errors++;
    TM_LOG(WARN, "remote") << "closing connection " << conn->number << " from " << conn->peer
                           << ": " << why.message();
  }
  Send(conn, reply, Payload{}, close);
}

ucs_status_t RemoteServer::Impl::OnRequest(void* arg, const void* header, size_t header_length,
                                           void* data, size_t length,
                                           const ucp_am_recv_param_t* param) {
  auto* self = static_cast<Impl*>(arg);
  if ((param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP) == 0) return UCS_OK;
  auto it = self->connections.find(param->reply_ep);
  if (it == self->connections.end()) return UCS_OK;
  auto conn = it->second;
  if (conn->closing) return UCS_OK;
  self->stats.requests++;

  auto decoded = transport::DecodeRequest({static_cast<const std::byte*>(header), header_length});
  if (!decoded.ok()) {
    self->Refuse(conn, nullptr, decoded.status(), true);
    return UCS_OK;
  }
  Request& request = *decoded;
  if (length > self->options.max_batch_bytes) {
    limits::Note(self->options.limits, limits::Limit::kRequestSize);
    self->Refuse(conn, &request,
                 Status(StatusCode::kInvalidArgument,
                        "payload of " + std::to_string(length) + " bytes is over the limit of " +
                            std::to_string(self->options.max_batch_bytes)),
                 true);
    return UCS_OK;
  }
  if (length != request.PayloadBytes()) {
    self->Refuse(conn, &request,
                 Status(StatusCode::kInvalidArgument, "payload of " + std::to_string(length) +
                                                          " bytes, items say " +
                                                          std::to_string(request.PayloadBytes())),
                 true);
    return UCS_OK;
  }
  if (request.op == Op::kHello || request.op == Op::kPing) {
    Payload none;
    Reply reply = self->handler.Handle(conn->session, request, {}, &none);
    bool refused = request.op == Op::kHello && reply.status != StatusCode::kOk;
    if (refused) {
      TM_LOG(INFO, "remote") << "connection " << conn->number << " from " << conn->peer
                             << " refused: " << reply.message;
    }
    if (request.op == Op::kHello && !refused && !conn->session.is_peer()) {
      conn->lease_key = request.lease_id;
    }
    self->Send(conn, reply, Payload{}, refused);
    return UCS_OK;
  }
  if (!conn->session.authenticated()) {
    self->Refuse(conn, &request,
                 Status(StatusCode::kPermissionDenied, "HELLO with a lease must come first"), true);
    return UCS_OK;
  }
  if (conn->in_flight.load() >= self->options.max_in_flight) {
    limits::Note(self->options.limits, limits::Limit::kRemoteRequestsInFlight);
    self->Refuse(
        conn, &request,
        Status(StatusCode::kResourceExhausted, std::to_string(self->options.max_in_flight) +
                                                   " requests are in flight on this connection"),
        false);
    return UCS_OK;
  }
  conn->in_flight++;
  self->stats.bytes_in += length;
  auto work = std::make_unique<Work>();
  work->server = self;
  work->conn = conn;
  work->request = std::move(request);
  work->started = std::chrono::steady_clock::now();
  if (length == 0) {
    self->Dispatch(std::move(work));
    return UCS_OK;
  }
  const bool rndv = (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0;
  // Permission and quota before a byte of the payload is taken in: a
  // lease that may not write, or has no room left, costs no buffer.
  if (Status admitted = self->handler.AdmitPut(conn->session, work->request); !admitted.ok()) {
    if (admitted.code() == StatusCode::kResourceExhausted) {
      limits::Note(self->options.limits, limits::Limit::kRemoteQuota);
    }
    conn->in_flight--;
    self->Refuse(conn, &work->request, admitted, false);
    return UCS_OK;
  }
  // A PUT goes straight into reserved pool slots when it can; otherwise
  // into a buffer that the pool copies from.
  work->slots = self->handler.ReserveSlots(conn->session, work->request, SlotOwner(*conn));
  if (work->slots) {
    self->stats.put_blocks_in_place += work->request.puts.size();
    for (size_t i = 0; i < work->request.puts.size(); ++i) {
      const uint32_t n = work->request.puts[i].length;
      if (n > 0) work->iov.push_back({work->slots->grants[i].bytes.data(), n});
    }
  } else {
    if (Status charged = self->ChargeBytes(*conn, length); !charged.ok()) {
      conn->in_flight--;
      self->Refuse(conn, &work->request, charged, false);
      return UCS_OK;
    }
    work->charged = length;
    if (work->request.op == Op::kPut) self->stats.put_blocks_buffered += work->request.puts.size();
    work->data.data.reset(new std::byte[length]);
    work->data.size = length;
    work->iov.push_back({work->data.data.get(), length});
  }
  if (!rndv) {
    const auto* from = static_cast<const std::byte*>(data);
    for (const ucp_dt_iov_t& v : work->iov) {
      std::memcpy(v.buffer, from, v.length);
      from += v.length;
    }
    self->Dispatch(std::move(work));
    return UCS_OK;
  }
  ucp_request_param_t rp{};
  rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  rp.cb.recv_am = &Impl::OnPayloadReceived;
  auto [into, count] = transport::IovArgument(work->iov, rp);
  Work* raw = work.release();
  rp.user_data = raw;
  void* req = ucp_am_recv_data_nbx(self->runtime->worker(), data, into, count, &rp);
  if (req == nullptr) {
    self->Dispatch(std::unique_ptr<Work>(raw));
  } else if (UCS_PTR_IS_ERR(req)) {
    std::unique_ptr<Work> failed(raw);
    failed->conn->in_flight--;
    self->Close(failed->conn, true);
  }
  return UCS_OK;
}

void RemoteServer::Impl::OnPayloadReceived(void* request, ucs_status_t status, size_t,
                                           void* user_data) {
  ucp_request_free(request);
  std::unique_ptr<Work> work(static_cast<Work*>(user_data));
  auto* self = static_cast<Impl*>(work->server);
  if (status != UCS_OK) {
    // The client vanished mid-transfer: only its connection ends.
    work->conn->in_flight--;
    self->Close(work->conn, true);
    return;
  }
  self->Dispatch(std::move(work));
}

Reply RemoteServer::Impl::Answer(Work& work, Payload* payload) {
  Reply reply = work.slots ? handler.CommitSlots(work.request, *work.slots)
                           : handler.Handle(work.conn->session, work.request,
                                            {work.data.data.get(), work.data.size}, payload);
  if (observer) {
    std::chrono::duration<double> took = std::chrono::steady_clock::now() - work.started;
    observer(work.request.op, took.count(), reply.status == StatusCode::kOk);
  }
  return reply;
}

void RemoteServer::Impl::Dispatch(std::unique_ptr<Work> work) {
  // Gets of blocks in memory copy nothing (the reply is sent from the
  // pool), so they are always answered here. Puts copy or checksum their
  // blocks, so only when the executors are idle: under load that runs in
  // parallel with the network thread, which must keep receiving.
  const bool copies = work->request.op == Op::kPut;
  if ((!copies || (executor_tasks.load() == 0 && work->conn->in_flight.load() <= 1)) &&
      (work->slots || handler.IsQuick(work->conn->session, work->request))) {
    // Memory only: answered here, without two thread hand-offs.
    Payload payload;
    Reply reply = Answer(*work, &payload);
    work->conn->in_flight--;
    Send(work->conn, reply, std::move(payload), false);
    return;
  }
  std::shared_ptr<Work> shared(std::move(work));
  executor_tasks++;
  Executor::Submitted queued = executor->Submit([this, shared] {
    Payload payload;
    Reply reply = Answer(*shared, &payload);
    auto boxed = std::make_shared<std::pair<Reply, Payload>>(std::move(reply), std::move(payload));
    executor_tasks--;
    runtime->Post([this, shared, boxed] {
      shared->conn->in_flight--;
      Send(shared->conn, boxed->first, std::move(boxed->second), false);
    });
  });
  if (queued != Executor::Submitted::kQueued) {
    executor_tasks--;
    shared->conn->in_flight--;
    if (queued == Executor::Submitted::kFull) {
      limits::Note(options.limits, limits::Limit::kRemoteQueue);
      Refuse(shared->conn, &shared->request,
             Status(StatusCode::kResourceExhausted,
                    std::to_string(options.max_queued) +
                        " requests are waiting for the agent's executors "
                        "(limits.remote_max_queued_requests): retry later"),
             false);
    }
  }
}

Work::~Work() {
  if (slots) RequestHandler::AbortSlots(*slots);
  if (charged != 0) static_cast<RemoteServer::Impl*>(server)->ReleaseBytes(*conn, charged);
}

Status RemoteServer::Impl::ChargeBytes(Connection& conn, uint64_t bytes) {
  if (conn.buffered.load() + bytes > options.max_bytes_per_connection) {
    limits::Note(options.limits, limits::Limit::kRemoteBytesInFlight);
    return Status(StatusCode::kResourceExhausted,
                  std::to_string(conn.buffered.load()) +
                      " payload bytes are in flight on this connection; " + std::to_string(bytes) +
                      " more would pass " + std::to_string(options.max_bytes_per_connection) +
                      " (limits.remote_max_bytes_per_connection): wait for replies");
  }
  if (!conn.lease_key.empty()) {
    std::lock_guard lock(lease_mu);
    uint64_t& used = lease_bytes[conn.lease_key];
    if (used + bytes > options.max_bytes_per_lease) {
      if (used == 0) lease_bytes.erase(conn.lease_key);
      limits::Note(options.limits, limits::Limit::kRemoteLeaseBytesInFlight);
      return Status(StatusCode::kResourceExhausted,
                    "lease '" + conn.lease_key + "' has " + std::to_string(used) +
                        " payload bytes in flight; " + std::to_string(bytes) + " more would pass " +
                        std::to_string(options.max_bytes_per_lease) +
                        " (limits.remote_max_bytes_per_lease): wait for replies");
    }
    used += bytes;
  }
  conn.buffered += bytes;
  return Status::Ok();
}

void RemoteServer::Impl::ReleaseBytes(Connection& conn, uint64_t bytes) {
  conn.buffered -= bytes;
  if (conn.lease_key.empty()) return;
  std::lock_guard lock(lease_mu);
  auto it = lease_bytes.find(conn.lease_key);
  if (it == lease_bytes.end()) return;
  it->second -= std::min(it->second, bytes);
  if (it->second == 0) lease_bytes.erase(it);
}

void RemoteServer::Impl::SweepSilent() {
  const auto now = std::chrono::steady_clock::now();
  std::vector<std::shared_ptr<Connection>> silent;
  for (const auto& [ep, conn] : connections) {
    if (!conn->closing && now - conn->accepted >= options.hello_timeout &&
        !conn->session.authenticated()) {
      silent.push_back(conn);
    }
  }
  for (const auto& conn : silent) {
    limits::Note(options.limits, limits::Limit::kRemoteHelloTimeout);
    Refuse(conn, nullptr,
           Status(StatusCode::kFailedPrecondition,
                  "no HELLO within " + std::to_string(options.hello_timeout.count()) +
                      " ms (limits.hello_timeout_ms)"),
           true);
  }
}

void RemoteServer::Impl::SweepLoop() {
  // A quarter of the deadline between sweeps: a silent connection lives at
  // most 1.25 deadlines.
  const auto period = std::clamp<std::chrono::milliseconds>(
      options.hello_timeout / 4, std::chrono::milliseconds(20), std::chrono::milliseconds(1000));
  std::unique_lock lock(sweep_mu);
  while (!sweep_cv.wait_for(lock, period, [&] { return sweep_stop; })) {
    runtime->Post([this] { SweepSilent(); });
  }
}

RemoteServer::RemoteServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

RemoteServer::~RemoteServer() {
  Impl* impl = impl_.get();
  {
    std::lock_guard lock(impl->sweep_mu);
    impl->sweep_stop = true;
  }
  impl->sweep_cv.notify_all();
  if (impl->sweeper.joinable()) impl->sweeper.join();
  impl->runtime->Stop([impl] {
    if (impl->listener != nullptr) ucp_listener_destroy(impl->listener);
    impl->listener = nullptr;
    auto all = impl->connections;
    for (auto& [ep, conn] : all) impl->Close(conn, true);
  });
  impl->executor->Stop();
}

const std::string& RemoteServer::address() const { return impl_->address; }
const RemoteServerStats& RemoteServer::stats() const { return impl_->stats; }
void RemoteServer::SetObserver(Observer observer) { impl_->observer = std::move(observer); }
void RemoteServer::SetCluster(ClusterHooks* cluster) { impl_->handler.SetCluster(cluster); }

Result<std::unique_ptr<RemoteServer>> RemoteServer::Start(RemoteServerOptions options,
                                                          HandlerOptions handler) {
  if (handler.pools == nullptr || handler.leases == nullptr) {
    return Status(StatusCode::kInvalidArgument, "remote server needs the pools and the leases");
  }
  TM_ASSIGN_OR_RETURN(transport::SocketAddress address, transport::ResolveAddress(options.listen));
  handler.max_batch_bytes = options.max_batch_bytes;
  auto impl = std::make_unique<Impl>(options, std::move(handler));
  TM_ASSIGN_OR_RETURN(impl->runtime, transport::UcxRuntime::Create(transport::RuntimeOptions{
                                         .name = "tm-remote", .reuse_address = true}));
  impl->executor =
      std::make_unique<Executor>(options.workers, "tm-remote-exec", options.max_queued);

  ucp_am_handler_param_t hp{};
  hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                  UCP_AM_HANDLER_PARAM_FIELD_ARG | UCP_AM_HANDLER_PARAM_FIELD_FLAGS;
  hp.id = transport::kRequestAm;
  hp.flags = UCP_AM_FLAG_WHOLE_MSG;
  hp.cb = &Impl::OnRequest;
  hp.arg = impl.get();
  ucs_status_t st = ucp_worker_set_am_recv_handler(impl->runtime->worker(), &hp);
  if (st != UCS_OK) return transport::UcsError("registering the request handler", st);

  ucp_listener_params_t lp{};
  lp.field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR | UCP_LISTENER_PARAM_FIELD_CONN_HANDLER;
  lp.sockaddr.addr = address.get();
  lp.sockaddr.addrlen = address.length;
  lp.conn_handler.cb = &Impl::OnConnectionRequest;
  lp.conn_handler.arg = impl.get();
  st = ucp_listener_create(impl->runtime->worker(), &lp, &impl->listener);
  if (st != UCS_OK) return transport::UcsError("listening on " + options.listen, st);
  ucp_listener_attr_t la{};
  la.field_mask = UCP_LISTENER_ATTR_FIELD_SOCKADDR;
  st = ucp_listener_query(impl->listener, &la);
  if (st != UCS_OK) return transport::UcsError("querying the listener", st);
  impl->address = transport::FormatAddress(reinterpret_cast<const sockaddr*>(&la.sockaddr));
  TM_RETURN_IF_ERROR(impl->runtime->Start());
  impl->sweeper = std::thread([raw = impl.get()] { raw->SweepLoop(); });
  TM_LOG(INFO, "remote") << "remote data path listening on " << impl->address;
  return std::unique_ptr<RemoteServer>(new RemoteServer(std::move(impl)));
}

}  // namespace tokenmem::remote
