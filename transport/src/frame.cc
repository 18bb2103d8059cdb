#include "tokenmem/transport/frame.h"

#include <bit>
#include <cstring>

namespace tokenmem::transport {
namespace {

// Appends little-endian fields; the host is little-endian (x86-64, arm64),
// which the static_assert below pins down.
static_assert(std::endian::native == std::endian::little, "frames assume a little-endian host");

class Writer {
 public:
  template <typename T>
  void Put(T value) {
    const auto* p = reinterpret_cast<const std::byte*>(&value);
    out_.insert(out_.end(), p, p + sizeof(T));
  }
  void PutKey(const BlockKey& key) {
    Put(key.hi);
    Put(key.lo);
  }
  void PutText(std::string_view text) {
    Put(static_cast<uint16_t>(text.size()));
    const auto* p = reinterpret_cast<const std::byte*>(text.data());
    out_.insert(out_.end(), p, p + text.size());
  }
  std::vector<std::byte> Take() { return std::move(out_); }

 private:
  std::vector<std::byte> out_;
};

class Reader {
 public:
  explicit Reader(std::span<const std::byte> in) : in_(in) {}

  template <typename T>
  bool Get(T* value) {
    if (in_.size() - pos_ < sizeof(T)) return false;
    std::memcpy(value, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool GetKey(BlockKey* key) { return Get(&key->hi) && Get(&key->lo); }
  bool GetText(std::string* text, size_t max) {
    uint16_t n = 0;
    if (!Get(&n) || n > max || in_.size() - pos_ < n) return false;
    text->assign(reinterpret_cast<const char*>(in_.data() + pos_), n);
    pos_ += n;
    return true;
  }
  size_t left() const { return in_.size() - pos_; }

 private:
  std::span<const std::byte> in_;
  size_t pos_ = 0;
};

// The 24-byte prefix of every frame; `word` is a request's pool handle or
// a reply's status.
void PutPrefix(Writer& w, Op op, uint64_t id, uint32_t word, uint32_t count) {
  w.Put(kFrameMagic);
  w.Put(kFrameVersion);
  w.Put(static_cast<uint16_t>(op));
  w.Put(id);
  w.Put(word);
  w.Put(count);
}

Status Malformed(std::string_view what) {
  return Status(StatusCode::kInvalidArgument, "malformed frame: " + std::string(what));
}

bool KnownOp(uint16_t op) { return op >= 1 && op <= 8; }

bool KnownCode(uint32_t code) { return code <= static_cast<uint32_t>(StatusCode::kInternal); }

struct Prefix {
  Op op;
  uint64_t id;
  uint32_t word;  // a request's pool handle, a reply's status
  uint32_t count;
};

// Reads and checks the prefix every frame starts with: size, magic,
// version, op and item count.
Result<Prefix> ReadPrefix(Reader& in, size_t size, std::string_view kind) {
  if (size > kMaxHeaderBytes) {
    return Malformed("header larger than " + std::to_string(kMaxHeaderBytes) + " bytes");
  }
  uint32_t magic = 0;
  uint16_t version = 0;
  uint16_t op = 0;
  Prefix p{};
  if (!in.Get(&magic) || !in.Get(&version) || !in.Get(&op) || !in.Get(&p.id) || !in.Get(&p.word) ||
      !in.Get(&p.count)) {
    return Malformed("shorter than the 24-byte " + std::string(kind) + " prefix");
  }
  if (magic != kFrameMagic) return Malformed("bad magic");
  if (version != kFrameVersion) {
    return Malformed("protocol version " + std::to_string(version) + " (this side speaks " +
                     std::to_string(kFrameVersion) + ")");
  }
  if (!KnownOp(op)) return Malformed("unknown op " + std::to_string(op));
  if (p.count > kMaxItems) return Malformed("more than " + std::to_string(kMaxItems) + " items");
  p.op = static_cast<Op>(op);
  return p;
}

uint32_t ItemCount(const Request& r) {
  switch (r.op) {
    case Op::kGet:
      return static_cast<uint32_t>(r.gets.size());
    case Op::kPut:
      return static_cast<uint32_t>(r.puts.size());
    case Op::kExists:
    case Op::kLookupPrefix:
    case Op::kDelete:
      return static_cast<uint32_t>(r.keys.size());
    default:
      return 0;
  }
}

bool HasItemResults(Op op) {
  return op == Op::kGet || op == Op::kPut || op == Op::kExists || op == Op::kDelete;
}

}  // namespace

std::string_view OpName(Op op) {
  switch (op) {
    case Op::kHello:
      return "HELLO";
    case Op::kAttach:
      return "ATTACH";
    case Op::kPing:
      return "PING";
    case Op::kGet:
      return "GET";
    case Op::kPut:
      return "PUT";
    case Op::kExists:
      return "EXISTS";
    case Op::kLookupPrefix:
      return "LOOKUP_PREFIX";
    case Op::kDelete:
      return "DELETE";
  }
  return "UNKNOWN";
}

uint64_t Request::PayloadBytes() const {
  uint64_t total = 0;
  for (const PutItem& p : puts) total += p.length;
  return total;
}

uint64_t Reply::PayloadBytes() const {
  if (op != Op::kGet || status != StatusCode::kOk) return 0;
  uint64_t total = 0;
  for (const ItemResult& r : items) {
    if (r.code == StatusCode::kOk) total += r.length;
  }
  return total;
}

Result<std::vector<std::byte>> EncodeRequest(const Request& r) {
  if (!KnownOp(static_cast<uint16_t>(r.op))) return Malformed("unknown op");
  const uint32_t count = ItemCount(r);
  if (count > kMaxItems) {
    return Status(StatusCode::kInvalidArgument,
                  "a request holds at most " + std::to_string(kMaxItems) + " items");
  }
  if (r.lease_id.size() > kMaxCredentialBytes || r.lease_secret.size() > kMaxCredentialBytes) {
    return Status(StatusCode::kInvalidArgument, "lease id and secret are at most 63 bytes");
  }
  if (r.pool_name.size() > kMaxNameBytes) {
    return Status(StatusCode::kInvalidArgument, "pool name longer than 253 bytes");
  }
  Writer w;
  PutPrefix(w, r.op, r.id, r.pool, count);
  switch (r.op) {
    case Op::kHello:
      w.PutText(r.lease_id);
      w.PutText(r.lease_secret);
      break;
    case Op::kAttach:
      w.PutText(r.pool_name);
      break;
    case Op::kPing:
      break;
    case Op::kGet:
      for (const GetItem& g : r.gets) {
        w.PutKey(g.key);
        w.Put(g.capacity);
      }
      break;
    case Op::kPut:
      for (const PutItem& p : r.puts) {
        w.PutKey(p.key);
        w.Put(p.length);
      }
      break;
    case Op::kExists:
    case Op::kLookupPrefix:
    case Op::kDelete:
      for (const BlockKey& k : r.keys) w.PutKey(k);
      break;
  }
  return w.Take();
}

Result<Request> DecodeRequest(std::span<const std::byte> header) {
  Reader in(header);
  TM_ASSIGN_OR_RETURN(Prefix prefix, ReadPrefix(in, header.size(), "request"));
  Request r;
  r.op = prefix.op;
  r.id = prefix.id;
  r.pool = prefix.word;
  const uint32_t count = prefix.count;
  if (count != 0 && (r.op == Op::kHello || r.op == Op::kAttach || r.op == Op::kPing)) {
    return Malformed("an item count on an op without items");
  }
  switch (r.op) {
    case Op::kHello:
      if (!in.GetText(&r.lease_id, kMaxCredentialBytes) ||
          !in.GetText(&r.lease_secret, kMaxCredentialBytes)) {
        return Malformed("HELLO credentials");
      }
      break;
    case Op::kAttach:
      if (!in.GetText(&r.pool_name, kMaxNameBytes)) return Malformed("ATTACH pool name");
      break;
    case Op::kPing:
      break;
    case Op::kGet:
      if (in.left() != static_cast<size_t>(count) * 20) return Malformed("GET items");
      r.gets.resize(count);
      for (GetItem& g : r.gets) {
        in.GetKey(&g.key);
        in.Get(&g.capacity);
      }
      break;
    case Op::kPut:
      if (in.left() != static_cast<size_t>(count) * 20) return Malformed("PUT items");
      r.puts.resize(count);
      for (PutItem& p : r.puts) {
        in.GetKey(&p.key);
        in.Get(&p.length);
      }
      break;
    case Op::kExists:
    case Op::kLookupPrefix:
    case Op::kDelete:
      if (in.left() != static_cast<size_t>(count) * 16) return Malformed("key list");
      r.keys.resize(count);
      for (BlockKey& k : r.keys) in.GetKey(&k);
      break;
  }
  if (in.left() != 0) return Malformed("trailing bytes");
  return r;
}

Result<std::vector<std::byte>> EncodeReply(const Reply& r) {
  if (!KnownOp(static_cast<uint16_t>(r.op))) return Malformed("unknown op");
  if (r.items.size() > kMaxItems) {
    return Malformed("more than " + std::to_string(kMaxItems) + " items");
  }
  if (!KnownCode(static_cast<uint32_t>(r.status))) return Malformed("unknown status code");
  for (const ItemResult& item : r.items) {
    if (!KnownCode(static_cast<uint32_t>(item.code))) return Malformed("unknown item status code");
  }
  Writer w;
  PutPrefix(w, r.op, r.id, static_cast<uint32_t>(r.status), static_cast<uint32_t>(r.items.size()));
  if (r.status != StatusCode::kOk) {
    w.PutText(std::string_view(r.message).substr(0, kMaxMessageBytes));
    return w.Take();
  }
  switch (r.op) {
    case Op::kHello:
    case Op::kPing:
      if (r.node.size() > kMaxNameBytes) return Malformed("node name longer than 253 bytes");
      w.PutText(r.node);
      break;
    case Op::kAttach:
      w.Put(r.pool);
      w.Put(r.block_size);
      w.Put(static_cast<uint8_t>(r.read_only ? 1 : 0));
      break;
    case Op::kLookupPrefix:
      w.Put(r.matched);
      break;
    default:
      for (const ItemResult& item : r.items) {
        w.Put(static_cast<uint8_t>(item.code));
        w.Put(item.length);
      }
      break;
  }
  return w.Take();
}

Result<Reply> DecodeReply(std::span<const std::byte> header) {
  Reader in(header);
  TM_ASSIGN_OR_RETURN(Prefix prefix, ReadPrefix(in, header.size(), "reply"));
  if (!KnownCode(prefix.word)) return Malformed("unknown status code");
  Reply r;
  r.op = prefix.op;
  r.id = prefix.id;
  r.status = static_cast<StatusCode>(prefix.word);
  const uint32_t count = prefix.count;
  if (count != 0 && (r.status != StatusCode::kOk || !HasItemResults(r.op))) {
    return Malformed("an item count on a reply without items");
  }
  if (r.status != StatusCode::kOk) {
    if (!in.GetText(&r.message, kMaxMessageBytes)) return Malformed("error message");
  } else {
    switch (r.op) {
      case Op::kHello:
      case Op::kPing:
        if (!in.GetText(&r.node, kMaxNameBytes)) return Malformed("node name");
        break;
      case Op::kAttach: {
        uint8_t ro = 0;
        if (!in.Get(&r.pool) || !in.Get(&r.block_size) || !in.Get(&ro) || ro > 1) {
          return Malformed("ATTACH reply");
        }
        r.read_only = ro == 1;
        break;
      }
      case Op::kLookupPrefix:
        if (!in.Get(&r.matched)) return Malformed("LOOKUP_PREFIX reply");
        break;
      default: {
        if (!HasItemResults(r.op) || in.left() != static_cast<size_t>(count) * 5) {
          return Malformed("item results");
        }
        r.items.resize(count);
        for (ItemResult& item : r.items) {
          uint8_t code = 0;
          in.Get(&code);
          in.Get(&item.length);
          if (!KnownCode(code)) return Malformed("unknown item status code");
          item.code = static_cast<StatusCode>(code);
        }
        break;
      }
    }
  }
  if (in.left() != 0) return Malformed("trailing bytes");
  return r;
}

}  // namespace tokenmem::transport
