// The C ABI (tokenmem/tokenmem.h) over tokenmem::Client and tokenmem::Pool.
// No exception and no C++ type crosses it: every entry point catches
// everything and answers with a code.
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "tokenmem/client.h"
#include "tokenmem/tokenmem.h"

struct tm_client {
  std::unique_ptr<tokenmem::Client> client;
};

struct tm_pool {
  std::shared_ptr<tokenmem::Pool> pool;
};

namespace {

using tokenmem::BlockIo;
using tokenmem::BlockKey;
using tokenmem::IoResult;
using tokenmem::IoVec;
using tokenmem::Status;
using tokenmem::StatusCode;

static_assert(TM_OK == static_cast<int>(StatusCode::kOk));
static_assert(TM_NOT_FOUND == static_cast<int>(StatusCode::kNotFound));
static_assert(TM_UNAVAILABLE == static_cast<int>(StatusCode::kUnavailable));
static_assert(TM_INTERNAL == static_cast<int>(StatusCode::kInternal));
static_assert(sizeof(tm_iovec) == sizeof(IoVec));

thread_local std::string last_error;

int Record(const Status& s) {
  last_error = s.ok() ? std::string() : s.message();
  return static_cast<int>(s.code());
}

int Fail(StatusCode code, std::string message) { return Record(Status(code, std::move(message))); }

int Invalid(const char* what) { return Fail(StatusCode::kInvalidArgument, what); }

// Runs `body` (returning an int code); turns any exception into TM_INTERNAL.
template <typename F>
int Guard(F&& body) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return Fail(StatusCode::kInternal, "out of memory");
  } catch (const std::exception& e) {
    return Fail(StatusCode::kInternal, e.what());
  } catch (...) {
    return Fail(StatusCode::kInternal, "unexpected failure");
  }
}

BlockKey ToKey(const tm_key& k) { return BlockKey{k.hi, k.lo}; }

// Per-thread scratch for batched calls, reused so steady-state batches do
// not allocate.
struct Scratch {
  std::vector<IoVec> pieces;
  std::vector<BlockIo> items;
  std::vector<IoResult> results;
  std::vector<BlockKey> keys;
  std::vector<StatusCode> codes;
};
thread_local Scratch scratch;

using PoolBatch = Status (tokenmem::Pool::*)(std::span<const BlockIo>, std::span<IoResult>);

int Many(tm_pool* pool, size_t n, const tm_key* keys, const size_t* iovcnt, const tm_iovec* iov,
         int* codes, size_t* lengths, PoolBatch call) {
  if (pool == nullptr) return Invalid("pool is NULL");
  if (n > 0 && (keys == nullptr || iovcnt == nullptr || codes == nullptr)) {
    return Invalid("keys, iovcnt and codes must not be NULL");
  }
  size_t total = 0;
  for (size_t i = 0; i < n; ++i) total += iovcnt[i];
  if (total > 0 && iov == nullptr) return Invalid("iov is NULL");
  Scratch& s = scratch;
  s.pieces.resize(total);
  for (size_t j = 0; j < total; ++j) s.pieces[j] = IoVec{iov[j].data, iov[j].len};
  s.items.resize(n);
  s.results.assign(n, IoResult{});
  size_t at = 0;
  for (size_t i = 0; i < n; ++i) {
    s.items[i] = BlockIo{ToKey(keys[i]), std::span<const IoVec>(s.pieces.data() + at, iovcnt[i])};
    at += iovcnt[i];
  }
  Status st = (pool->pool.get()->*call)(s.items, s.results);
  for (size_t i = 0; i < n; ++i) {
    codes[i] = static_cast<int>(s.results[i].code);
    if (lengths != nullptr) lengths[i] = s.results[i].length;
  }
  return Record(st);
}

using KeysBatch = Status (tokenmem::Pool::*)(std::span<const BlockKey>, std::span<StatusCode>);

int KeysMany(tm_pool* pool, const tm_key* keys, size_t n, int* codes, KeysBatch call) {
  if (pool == nullptr) return Invalid("pool is NULL");
  if (n > 0 && keys == nullptr) return Invalid("keys is NULL");
  Scratch& s = scratch;
  s.keys.resize(n);
  for (size_t i = 0; i < n; ++i) s.keys[i] = ToKey(keys[i]);
  s.codes.assign(n, StatusCode::kOk);
  Status st = (pool->pool.get()->*call)(s.keys, s.codes);
  if (codes != nullptr) {
    for (size_t i = 0; i < n; ++i) codes[i] = static_cast<int>(s.codes[i]);
  }
  return Record(st);
}

}  // namespace

extern "C" {

int tm_client_connect(const char* socket_path, const char* lease_id, const char* lease_secret,
                      uint32_t timeout_ms, tm_client** out) {
  return Guard([&] {
    if (socket_path == nullptr || lease_id == nullptr || lease_secret == nullptr ||
        out == nullptr) {
      return Invalid("socket_path, lease_id, lease_secret and out must not be NULL");
    }
    tokenmem::ClientOptions options;
    options.socket_path = socket_path;
    options.lease_id = lease_id;
    options.lease_secret = lease_secret;
    options.timeout =
        std::chrono::milliseconds(timeout_ms == 0 ? TM_DEFAULT_TIMEOUT_MS : timeout_ms);
    auto client = tokenmem::Client::Connect(options);
    if (!client.ok()) return Record(client.status());
    *out = new tm_client{std::move(client).value()};
    return Record(Status::Ok());
  });
}

int tm_client_connect_remote(const char* address, const char* lease_id, const char* lease_secret,
                             uint32_t timeout_ms, tm_client** out) {
  return Guard([&] {
    if (address == nullptr || lease_id == nullptr || lease_secret == nullptr || out == nullptr) {
      return Invalid("address, lease_id, lease_secret and out must not be NULL");
    }
    if (*address == '\0') return Invalid("address is empty: expected host:port");
    tokenmem::ClientOptions options;
    options.agent_address = address;
    options.lease_id = lease_id;
    options.lease_secret = lease_secret;
    options.timeout =
        std::chrono::milliseconds(timeout_ms == 0 ? TM_DEFAULT_TIMEOUT_MS : timeout_ms);
    auto client = tokenmem::Client::Connect(options);
    if (!client.ok()) return Record(client.status());
    *out = new tm_client{std::move(client).value()};
    return Record(Status::Ok());
  });
}

int tm_client_from_env(tm_client** out) {
  return Guard([&] {
    if (out == nullptr) return Invalid("out is NULL");
    auto client = tokenmem::Client::FromEnv();
    if (!client.ok()) return Record(client.status());
    *out = new tm_client{std::move(client).value()};
    return Record(Status::Ok());
  });
}

void tm_client_close(tm_client* client) { delete client; }

int tm_client_connected(const tm_client* client) {
  return client != nullptr && client->client->connected() ? 1 : 0;
}

int tm_client_is_remote(const tm_client* client) {
  return client != nullptr && client->client->remote() ? 1 : 0;
}

int tm_pool_attach(tm_client* client, const char* name, tm_pool** out) {
  return Guard([&] {
    if (client == nullptr || out == nullptr) return Invalid("client and out must not be NULL");
    auto pool = name == nullptr ? client->client->AttachDefault() : client->client->Attach(name);
    if (!pool.ok()) return Record(pool.status());
    *out = new tm_pool{std::move(pool).value()};
    return Record(Status::Ok());
  });
}

void tm_pool_close(tm_pool* pool) { delete pool; }

uint64_t tm_pool_block_size(const tm_pool* pool) {
  return pool == nullptr ? 0 : pool->pool->block_size();
}

int tm_pool_read_only(const tm_pool* pool) {
  return pool != nullptr && pool->pool->read_only() ? 1 : 0;
}

int tm_put(tm_pool* pool, const tm_key* key, const void* data, size_t len) {
  return Guard([&] {
    if (pool == nullptr || key == nullptr) return Invalid("pool and key must not be NULL");
    if (data == nullptr && len > 0) return Invalid("data is NULL");
    return Record(pool->pool->Put(
        ToKey(*key), std::span<const std::byte>(static_cast<const std::byte*>(data), len)));
  });
}

int tm_get(tm_pool* pool, const tm_key* key, void* buf, size_t cap, size_t* len) {
  return Guard([&] {
    if (len != nullptr) *len = 0;
    if (pool == nullptr || key == nullptr) return Invalid("pool and key must not be NULL");
    if (buf == nullptr && cap > 0) return Invalid("buf is NULL");
    const IoVec piece{buf, cap};
    const BlockIo item{ToKey(*key), std::span<const IoVec>(&piece, 1)};
    IoResult result;
    Status s =
        pool->pool->GetMany(std::span<const BlockIo>(&item, 1), std::span<IoResult>(&result, 1));
    if (len != nullptr) *len = result.length;
    if (s.ok() && result.code == StatusCode::kNotFound) {
      return Fail(StatusCode::kNotFound, "block " + item.key.ToHex() + " not found");
    }
    return Record(s);
  });
}

int tm_put_many(tm_pool* pool, size_t n, const tm_key* keys, const size_t* iovcnt,
                const tm_iovec* iov, int* codes, size_t* lengths) {
  return Guard(
      [&] { return Many(pool, n, keys, iovcnt, iov, codes, lengths, &tokenmem::Pool::PutMany); });
}

int tm_get_many(tm_pool* pool, size_t n, const tm_key* keys, const size_t* iovcnt,
                const tm_iovec* iov, int* codes, size_t* lengths) {
  return Guard(
      [&] { return Many(pool, n, keys, iovcnt, iov, codes, lengths, &tokenmem::Pool::GetMany); });
}

int tm_pool_mapped_regions(tm_pool* pool, tm_iovec* out, size_t cap, size_t* count) {
  return Guard([&] {
    if (pool == nullptr || count == nullptr) return Invalid("pool and count must not be NULL");
    if (out == nullptr && cap > 0) return Invalid("out is NULL");
    *count = 0;
    if (pool->pool->remote()) {
      return Fail(StatusCode::kFailedPrecondition, "a remote pool maps no memory here");
    }
    const std::vector<IoVec> regions = pool->pool->MappedRegions();
    *count = regions.size();
    for (size_t i = 0; i < regions.size() && i < cap; ++i) {
      out[i] = tm_iovec{regions[i].data, regions[i].len};
    }
    return Record(Status::Ok());
  });
}

int tm_read_in_place(tm_pool* pool, const tm_key* key, tm_copy_fn copy, void* ctx, size_t* length) {
  return Guard([&] {
    if (length != nullptr) *length = 0;
    if (pool == nullptr || key == nullptr || copy == nullptr) {
      return Invalid("pool, key and copy must not be NULL");
    }
    auto read = pool->pool->ReadInPlace(ToKey(*key), [&](std::span<const std::byte> bytes) {
      if (copy(ctx, bytes.data(), bytes.size()) != 0) {
        return Status(StatusCode::kInternal, "the copy function failed");
      }
      return Status::Ok();
    });
    if (!read.ok()) return Record(read.status());
    if (length != nullptr) *length = *read;
    return Record(Status::Ok());
  });
}

int tm_contains(tm_pool* pool, const tm_key* key) {
  return Guard([&] {
    if (pool == nullptr || key == nullptr) return Invalid("pool and key must not be NULL");
    if (pool->pool->Contains(ToKey(*key))) return Record(Status::Ok());
    return Fail(StatusCode::kNotFound, "block " + ToKey(*key).ToHex() + " not found");
  });
}

size_t tm_lookup_prefix(tm_pool* pool, const tm_key* keys, size_t n) {
  if (pool == nullptr || keys == nullptr || n == 0) return 0;
  try {
    Scratch& s = scratch;
    s.keys.resize(n);
    for (size_t i = 0; i < n; ++i) s.keys[i] = ToKey(keys[i]);
    return pool->pool->LookupPrefix(s.keys);
  } catch (...) {
    return 0;
  }
}

int tm_remove(tm_pool* pool, const tm_key* keys, size_t n, int* codes) {
  return Guard([&] { return KeysMany(pool, keys, n, codes, &tokenmem::Pool::RemoveMany); });
}

int tm_pin(tm_pool* pool, const tm_key* keys, size_t n, int* codes) {
  return Guard([&] { return KeysMany(pool, keys, n, codes, &tokenmem::Pool::PinMany); });
}

int tm_unpin(tm_pool* pool, const tm_key* keys, size_t n, int* codes) {
  return Guard([&] { return KeysMany(pool, keys, n, codes, &tokenmem::Pool::UnpinMany); });
}

const char* tm_last_error(void) { return last_error.c_str(); }

const char* tm_status_name(int code) {
  if (code < 0 || code > static_cast<int>(StatusCode::kInternal)) return "UNKNOWN";
  // StatusCodeName's views are of string literals, so NUL-terminated.
  return tokenmem::StatusCodeName(static_cast<StatusCode>(code)).data();
}

}  // extern "C"
