// libFuzzer harness for the remote data protocol's frames (frame.h).
//
// Every input is tried in two directions:
//  * decode: the bytes are a request and a reply header. Whatever decodes
//    must re-encode to the same bytes (but for the count, which ops without
//    items ignore), decode again to the same value, and re-encode to the
//    same bytes again.
//  * encode: the first byte picks a request (even) or a reply (odd), the rest
//    fill one in. Whatever the encoder accepts must decode to the same value,
//    as frame.h promises ("nothing produced here fails to decode").
// A broken promise calls abort(), which libFuzzer reports as a crash.
//
// The same source is compiled into frame_corpus_test, which replays the
// checked-in corpus with GoogleTest, so the checks run in every build.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "tokenmem/transport/frame.h"

namespace tokenmem::transport {
namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "frame_fuzzer: broken invariant: %s\n", what);
    std::abort();
  }
}

bool KeysUsedBy(Op op) { return op == Op::kExists || op == Op::kLookupPrefix || op == Op::kDelete; }

bool ItemsUsedBy(Op op) {
  return op == Op::kGet || op == Op::kPut || op == Op::kExists || op == Op::kDelete;
}

// Field-by-field equality of what travels for the request's op; fields that
// another op uses do not travel and are not compared.
bool SameRequest(const Request& a, const Request& b) {
  if (a.op != b.op || a.id != b.id || a.pool != b.pool) return false;
  switch (a.op) {
    case Op::kHello:
      return a.lease_id == b.lease_id && a.lease_secret == b.lease_secret;
    case Op::kAttach:
      return a.pool_name == b.pool_name;
    case Op::kPing:
      return true;
    case Op::kGet:
      if (a.gets.size() != b.gets.size()) return false;
      for (size_t i = 0; i < a.gets.size(); ++i) {
        if (a.gets[i].key != b.gets[i].key || a.gets[i].capacity != b.gets[i].capacity) {
          return false;
        }
      }
      return true;
    case Op::kPut:
      if (a.puts.size() != b.puts.size()) return false;
      for (size_t i = 0; i < a.puts.size(); ++i) {
        if (a.puts[i].key != b.puts[i].key || a.puts[i].length != b.puts[i].length) return false;
      }
      return true;
    case Op::kExists:
    case Op::kLookupPrefix:
    case Op::kDelete:
      return a.keys == b.keys;
  }
  return false;
}

bool SameReply(const Reply& a, const Reply& b) {
  if (a.op != b.op || a.id != b.id || a.status != b.status) return false;
  if (a.status != StatusCode::kOk) {
    // The encoder sends at most kMaxMessageBytes of the text.
    return a.message.substr(0, kMaxMessageBytes) == b.message.substr(0, kMaxMessageBytes);
  }
  switch (a.op) {
    case Op::kHello:
    case Op::kPing:
      return a.node == b.node;
    case Op::kAttach:
      return a.pool == b.pool && a.block_size == b.block_size && a.read_only == b.read_only;
    case Op::kLookupPrefix:
      return a.matched == b.matched;
    case Op::kGet:
    case Op::kPut:
    case Op::kExists:
    case Op::kDelete:
      if (a.items.size() != b.items.size()) return false;
      for (size_t i = 0; i < a.items.size(); ++i) {
        if (a.items[i].code != b.items[i].code || a.items[i].length != b.items[i].length) {
          return false;
        }
      }
      return true;
  }
  return false;
}

// Invariants of any value a decoder returned.
void CheckDecodedRequest(const Request& r) {
  Check(r.gets.size() <= kMaxItems && r.puts.size() <= kMaxItems && r.keys.size() <= kMaxItems,
        "request holds more than kMaxItems items");
  Check(r.lease_id.size() <= kMaxCredentialBytes && r.lease_secret.size() <= kMaxCredentialBytes,
        "request credential longer than kMaxCredentialBytes");
  Check(r.pool_name.size() <= kMaxNameBytes, "request pool name longer than kMaxNameBytes");
  Check(r.op == Op::kGet || r.gets.empty(), "GET items on another op");
  Check(r.op == Op::kPut || r.puts.empty(), "PUT items on another op");
  Check(KeysUsedBy(r.op) || r.keys.empty(), "keys on an op without keys");
  uint64_t payload = 0;
  for (const PutItem& p : r.puts) payload += p.length;
  Check(r.PayloadBytes() == payload, "request PayloadBytes differs from the put lengths");
  Check(r.op == Op::kPut || r.PayloadBytes() == 0, "payload on a request other than PUT");
}

void CheckDecodedReply(const Reply& r) {
  Check(r.items.size() <= kMaxItems, "reply holds more than kMaxItems items");
  Check(r.message.size() <= kMaxMessageBytes, "reply message longer than kMaxMessageBytes");
  Check(r.node.size() <= kMaxNameBytes, "reply node name longer than kMaxNameBytes");
  Check(r.status == StatusCode::kOk || r.items.empty(), "item results on a failed reply");
  Check(r.status != StatusCode::kOk || r.message.empty(), "message on an OK reply");
  Check(ItemsUsedBy(r.op) || r.items.empty(), "item results on an op without items");
  uint64_t payload = 0;
  if (r.op == Op::kGet && r.status == StatusCode::kOk) {
    for (const ItemResult& item : r.items) {
      Check(static_cast<int>(item.code) >= 0 && item.code <= StatusCode::kInternal,
            "unknown item status code");
      if (item.code == StatusCode::kOk) payload += item.length;
    }
  }
  Check(r.PayloadBytes() == payload, "reply PayloadBytes differs from the found GET lengths");
}

// A frame that decodes is the encoding of its value, byte for byte, but for
// the count field (prefix bytes 20..23), which ops without items ignore.
bool SameButCount(std::span<const std::byte> input, const std::vector<std::byte>& encoded) {
  constexpr size_t kCountAt = 20;
  if (input.size() != encoded.size() || input.size() < kCountAt + 4) return false;
  for (size_t i = 0; i < input.size(); ++i) {
    if ((i < kCountAt || i >= kCountAt + 4) && input[i] != encoded[i]) return false;
  }
  return true;
}

void DecodeRequestRoundTrip(std::span<const std::byte> bytes) {
  Result<Request> first = DecodeRequest(bytes);
  if (!first.ok()) {
    Check(first.status().code() == StatusCode::kInvalidArgument,
          "request decode failed with a code other than kInvalidArgument");
    return;
  }
  CheckDecodedRequest(*first);
  Result<std::vector<std::byte>> encoded = EncodeRequest(*first);
  Check(encoded.ok(), "a decoded request does not re-encode");
  Check(SameButCount(bytes, *encoded), "a re-encoded request differs from its frame");
  Result<Request> second = DecodeRequest(*encoded);
  Check(second.ok(), "a re-encoded request does not decode");
  Check(SameRequest(*first, *second), "request changed in a round trip");
  Result<std::vector<std::byte>> again = EncodeRequest(*second);
  Check(again.ok() && *again == *encoded, "request encoding is not canonical");
}

void DecodeReplyRoundTrip(std::span<const std::byte> bytes) {
  Result<Reply> first = DecodeReply(bytes);
  if (!first.ok()) {
    Check(first.status().code() == StatusCode::kInvalidArgument,
          "reply decode failed with a code other than kInvalidArgument");
    return;
  }
  CheckDecodedReply(*first);
  Result<std::vector<std::byte>> encoded = EncodeReply(*first);
  Check(encoded.ok(), "a decoded reply does not re-encode");
  Check(SameButCount(bytes, *encoded), "a re-encoded reply differs from its frame");
  Result<Reply> second = DecodeReply(*encoded);
  Check(second.ok(), "a re-encoded reply does not decode");
  Check(SameReply(*first, *second), "reply changed in a round trip");
  Result<std::vector<std::byte>> again = EncodeReply(*second);
  Check(again.ok() && *again == *encoded, "reply encoding is not canonical");
}

// Hands out fuzz bytes as typed values; zeros once the input runs out.
class Source {
 public:
  explicit Source(std::span<const uint8_t> in) : in_(in) {}
  template <typename T>
  T Take() {
    T value = 0;
    for (size_t i = 0; i < sizeof(T); ++i) {
      value = static_cast<T>((static_cast<uint64_t>(value) << 8) | Byte());
    }
    return value;
  }
  // Lengths are drawn up to `limit` plus a little more, so the encoders'
  // own limits get exercised too.
  std::string Text(size_t limit) {
    const size_t n = Take<uint16_t>() % (limit + 8);
    std::string text(n, '\0');
    for (char& c : text) c = static_cast<char>(Byte());
    return text;
  }
  size_t Count() { return Take<uint16_t>() % (kMaxItems + 4); }
  BlockKey Key() { return BlockKey{Take<uint64_t>(), Take<uint64_t>()}; }
  StatusCode Code() {
    return static_cast<StatusCode>(Byte() % (static_cast<int>(StatusCode::kInternal) + 1));
  }
  Op AnyOp() { return static_cast<Op>(1 + Byte() % 8); }

 private:
  uint8_t Byte() { return pos_ < in_.size() ? in_[pos_++] : 0; }
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
};

void EncodeRequestRoundTrip(Source& src) {
  Request r;
  r.op = src.AnyOp();
  r.id = src.Take<uint64_t>();
  r.pool = src.Take<uint32_t>();
  r.lease_id = src.Text(kMaxCredentialBytes);
  r.lease_secret = src.Text(kMaxCredentialBytes);
  r.pool_name = src.Text(kMaxNameBytes);
  const size_t n = src.Count();
  for (size_t i = 0; i < n; ++i) {
    const BlockKey key = src.Key();
    const uint32_t size = src.Take<uint32_t>();
    r.gets.push_back(GetItem{key, size});
    r.puts.push_back(PutItem{key, size});
    r.keys.push_back(key);
  }
  Result<std::vector<std::byte>> encoded = EncodeRequest(r);
  if (!encoded.ok()) return;
  Check(encoded->size() <= kLargestFrameBytes, "request frame larger than kLargestFrameBytes");
  Result<Request> decoded = DecodeRequest(*encoded);
  Check(decoded.ok(), "an encoded request does not decode");
  Check(SameRequest(r, *decoded), "request changed between encode and decode");
}

void EncodeReplyRoundTrip(Source& src) {
  Reply r;
  r.op = src.AnyOp();
  r.id = src.Take<uint64_t>();
  r.status = src.Code();
  r.message = src.Text(kMaxMessageBytes);
  r.node = src.Text(kMaxNameBytes);
  r.pool = src.Take<uint32_t>();
  r.block_size = src.Take<uint64_t>();
  r.read_only = (src.Take<uint8_t>() & 1) != 0;
  r.matched = src.Take<uint32_t>();
  const size_t n = src.Count();
  for (size_t i = 0; i < n; ++i) r.items.push_back(ItemResult{src.Code(), src.Take<uint32_t>()});
  Result<std::vector<std::byte>> encoded = EncodeReply(r);
  if (!encoded.ok()) return;
  Check(encoded->size() <= kLargestFrameBytes, "reply frame larger than kLargestFrameBytes");
  Result<Reply> decoded = DecodeReply(*encoded);
  Check(decoded.ok(), "an encoded reply does not decode");
  Check(SameReply(r, *decoded), "reply changed between encode and decode");
}

}  // namespace
}  // namespace tokenmem::transport

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tokenmem::transport;
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  DecodeRequestRoundTrip(bytes);
  DecodeReplyRoundTrip(bytes);
  if (size > 0) {
    Source src(std::span<const uint8_t>(data + 1, size - 1));
    if ((data[0] & 1) == 0) {
      EncodeRequestRoundTrip(src);
    } else {
      EncodeReplyRoundTrip(src);
    }
  }
  return 0;
}
