#include "tokenmem/token_keys.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "mini_json.h"

namespace tokenmem {
namespace {

struct JsonDeleter {
  void operator()(mj_value* v) const { mj_free(v); }
};
using Json = std::unique_ptr<mj_value, JsonDeleter>;

const mj_value& Vectors() {
  static Json vectors = [] {
    char err[256] = "";
    Json v(mj_parse_file(TOKENMEM_KEY_VECTORS, err, sizeof(err)));
    if (!v) ADD_FAILURE() << "cannot load " << TOKENMEM_KEY_VECTORS << ": " << err;
    return v;
  }();
  if (!vectors) std::abort();
  return *vectors;
}

const mj_value& Member(const mj_value* obj, const char* key) {
  const mj_value* v = mj_get(obj, key);
  if (v == nullptr) {
    ADD_FAILURE() << "vector file: missing member " << key;
    std::abort();
  }
  return *v;
}

std::string Str(const mj_value* obj, const char* key) {
  const mj_value& v = Member(obj, key);
  EXPECT_EQ(v.type, MJ_STRING) << key;
  return std::string(v.str, v.len);
}

uint32_t U32(const mj_value* obj, const char* key) {
  const mj_value& v = Member(obj, key);
  EXPECT_EQ(v.type, MJ_NUMBER) << key;
  EXPECT_LE(v.number, UINT32_MAX) << key;
  return static_cast<uint32_t>(v.number);
}

std::vector<uint32_t> Tokens(const mj_value* obj) {
  const mj_value& arr = Member(obj, "tokens");
  std::vector<uint32_t> out;
  for (size_t i = 0; i < arr.count; ++i) {
    EXPECT_LE(arr.items[i].number, UINT32_MAX);
    out.push_back(static_cast<uint32_t>(arr.items[i].number));
  }
  return out;
}

std::vector<std::string> HexKeys(const mj_value* obj) {
  const mj_value& arr = Member(obj, "keys");
  std::vector<std::string> out;
  for (size_t i = 0; i < arr.count; ++i) out.emplace_back(arr.items[i].str, arr.items[i].len);
  return out;
}

std::vector<std::string> ToHex(const std::vector<BlockKey>& keys) {
  std::vector<std::string> out;
  for (const BlockKey& k : keys) out.push_back(k.ToHex());
  return out;
}

KeyNamespace NamespaceFrom(const mj_value* obj) {
  return KeyNamespace{.model = Str(obj, "model"),
                      .revision = Str(obj, "revision"),
                      .kv_dtype = Str(obj, "kv_dtype"),
                      .kv_layout = Str(obj, "kv_layout"),
                      .tp_rank = U32(obj, "tp_rank"),
                      .tp_size = U32(obj, "tp_size"),
                      .pp_rank = U32(obj, "pp_rank"),
                      .pp_size = U32(obj, "pp_size"),
                      .block_tokens = U32(obj, "block_tokens"),
                      .tenant_salt = Str(obj, "tenant_salt")};
}

std::string Hex(const std::string& bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

const mj_value* FindNamespace(const std::string& name) {
  const mj_value& list = Member(&Vectors(), "namespaces");
  for (size_t i = 0; i < list.count; ++i) {
    if (Str(&list.items[i], "name") == name) return &list.items[i];
  }
  ADD_FAILURE() << "no namespace named " << name;
  return nullptr;
}

KeyNamespace BaseNamespace() {
  return KeyNamespace{.model = "meta-llama/Llama-3.1-8B-Instruct",
                      .revision = "main",
                      .kv_dtype = "bf16",
                      .kv_layout = "nhd-per-layer",
                      .tp_rank = 1,
                      .tp_size = 4,
                      .pp_rank = 0,
                      .pp_size = 2,
                      .block_tokens = 16,
                      .tenant_salt = "acme"};
}

BlockKey SeedOf(const KeyNamespace& ns) {
  Result<BlockKey> seed = NamespaceSeed(ns);
  EXPECT_TRUE(seed.ok()) << seed.status().ToString();
  return seed.ok() ? *seed : BlockKey{};
}

std::vector<uint32_t> Sequence(size_t n, uint32_t salt) {
  std::vector<uint32_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint32_t>((i * 2654435761u) ^ salt) % 128256;
  return v;
}

TEST(TokenKeyVectors, NamespaceEncodingsAndSeedsMatch) {
  const mj_value& list = Member(&Vectors(), "namespaces");
  ASSERT_GE(list.count, 6u);
  for (size_t i = 0; i < list.count; ++i) {
    const mj_value* entry = &list.items[i];
    SCOPED_TRACE(Str(entry, "name"));
    const KeyNamespace ns = NamespaceFrom(&Member(entry, "namespace"));
    Result<std::string> enc = EncodeKeyNamespace(ns);
    ASSERT_TRUE(enc.ok()) << enc.status().ToString();
    EXPECT_EQ(Hex(*enc), Str(entry, "encoding_hex"));
    EXPECT_EQ(SeedOf(ns).ToHex(), Str(entry, "seed"));
  }
}

TEST(TokenKeyVectors, ChainsMatch) {
  const mj_value& list = Member(&Vectors(), "chains");
  ASSERT_GE(list.count, 10u);
  for (size_t i = 0; i < list.count; ++i) {
    const mj_value* entry = &list.items[i];
    SCOPED_TRACE(Str(entry, "name"));
    const mj_value* ns_entry = FindNamespace(Str(entry, "namespace"));
    ASSERT_NE(ns_entry, nullptr);
    const KeyNamespace ns = NamespaceFrom(&Member(ns_entry, "namespace"));
    const std::vector<uint32_t> tokens = Tokens(entry);
    const std::vector<std::string> want = HexKeys(entry);
    ASSERT_EQ(want.size(), tokens.size() / ns.block_tokens);

    Result<std::vector<BlockKey>> keys = PrefixKeys(ns, tokens);
    ASSERT_TRUE(keys.ok()) << keys.status().ToString();
    EXPECT_EQ(ToHex(*keys), want);
    EXPECT_EQ(ToHex(ChainKeys(tokens, ns.block_tokens, SeedOf(ns))), want);
  }
}

TEST(TokenKeyVectors, RawChainsMatch) {
  const mj_value& list = Member(&Vectors(), "raw_chains");
  ASSERT_GE(list.count, 3u);
  for (size_t i = 0; i < list.count; ++i) {
    const mj_value* entry = &list.items[i];
    SCOPED_TRACE(Str(entry, "name"));
    Result<BlockKey> prev = BlockKey::FromHex(Str(entry, "prev"));
    ASSERT_TRUE(prev.ok());
    EXPECT_EQ(ToHex(ChainKeys(Tokens(entry), U32(entry, "block_tokens"), *prev)), HexKeys(entry));
  }
}

TEST(TokenKeyVectors, InvalidNamespacesAreRejectedNamingTheField) {
  const mj_value& list = Member(&Vectors(), "invalid_namespaces");
  ASSERT_GE(list.count, 8u);
  for (size_t i = 0; i < list.count; ++i) {
    const mj_value* entry = &list.items[i];
    SCOPED_TRACE(Str(entry, "name"));
    const KeyNamespace ns = NamespaceFrom(&Member(entry, "namespace"));
    const Status status = ns.Validate();
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(status.message().find(Str(entry, "field")), std::string::npos) << status.message();
    Result<BlockKey> seed = NamespaceSeed(ns);
    ASSERT_FALSE(seed.ok());
    EXPECT_EQ(seed.status().message(), status.message());
    EXPECT_FALSE(PrefixKeys(ns, Sequence(32, 1)).ok());
  }
}

// The file must keep covering what the requirement lists, or the three
// implementations could drift apart where it stopped looking.
TEST(TokenKeyVectors, CoverTheRequiredCases) {
  const mj_value& namespaces = Member(&Vectors(), "namespaces");
  bool non_ascii_model = false, empty_salt = false, salted = false, tp = false, pp = false;
  for (size_t i = 0; i < namespaces.count; ++i) {
    const KeyNamespace ns = NamespaceFrom(&Member(&namespaces.items[i], "namespace"));
    non_ascii_model |= std::any_of(ns.model.begin(), ns.model.end(),
                                   [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
    empty_salt |= ns.tenant_salt.empty();
    salted |= !ns.tenant_salt.empty();
    tp |= ns.tp_size > 1 && ns.tp_rank > 0;
    pp |= ns.pp_size > 1 && ns.pp_rank > 0;
  }
  EXPECT_TRUE(non_ascii_model && empty_salt && salted && tp && pp);

  const mj_value& chains = Member(&Vectors(), "chains");
  bool empty = false, partial_only = false, several = false, zero = false, max = false;
  for (size_t i = 0; i < chains.count; ++i) {
    const std::vector<uint32_t> tokens = Tokens(&chains.items[i]);
    const size_t keys = HexKeys(&chains.items[i]).size();
    empty |= tokens.empty();
    partial_only |= !tokens.empty() && keys == 0;
    several |= keys >= 3;
    zero |= std::count(tokens.begin(), tokens.end(), 0u) > 0;
    max |= std::count(tokens.begin(), tokens.end(), UINT32_MAX) > 0;
  }
  EXPECT_TRUE(empty && partial_only && several && zero && max);
}

TEST(TokenKeys, EachNamespaceFieldChangedAloneChangesTheSeed) {
  const KeyNamespace base = BaseNamespace();
  std::vector<KeyNamespace> variants(10, base);
  variants[0].model += "x";
  variants[1].revision += "x";
  variants[2].kv_dtype = "fp16";
  variants[3].kv_layout = "hnd-per-layer";
  variants[4].tp_rank = 2;
  variants[5].tp_size = 8;
  variants[6].pp_rank = 1;
  variants[7].pp_size = 3;
  variants[8].block_tokens = 32;
  variants[9].tenant_salt = "";
  std::set<BlockKey> seeds = {SeedOf(base)};
  for (const KeyNamespace& ns : variants) seeds.insert(SeedOf(ns));
  EXPECT_EQ(seeds.size(), variants.size() + 1);
}

TEST(TokenKeys, LengthPrefixesKeepFieldBoundaries) {
  KeyNamespace a = BaseNamespace(), b = BaseNamespace();
  a.model = "ab";
  a.revision = "c";
  b.model = "a";
  b.revision = "bc";
  EXPECT_NE(SeedOf(a), SeedOf(b));
  a = b = BaseNamespace();
  a.kv_dtype = "";
  a.kv_layout = "bf16";
  b.kv_dtype = "bf16";
  b.kv_layout = "";
  EXPECT_NE(SeedOf(a), SeedOf(b));
}

TEST(TokenKeys, SeedIsStableAcrossCalls) {
  const KeyNamespace ns = BaseNamespace();
  EXPECT_EQ(SeedOf(ns), SeedOf(KeyNamespace(ns)));
}

TEST(TokenKeys, ChainsShareKeysExactlyAsFarAsTheirFullBlocks) {
  constexpr uint32_t kBlock = 16;
  const BlockKey seed = SeedOf(BaseNamespace());
  const std::vector<uint32_t> a = Sequence(10 * kBlock + 5, 7);
  const std::vector<BlockKey> ka = ChainKeys(a, kBlock, seed);
  ASSERT_EQ(ka.size(), 10u);
  for (size_t pos : {size_t{0}, size_t{15}, size_t{16}, size_t{77}, size_t{159}, size_t{160}}) {
    SCOPED_TRACE(pos);
    std::vector<uint32_t> b = a;
    b[pos] ^= 1;
    const std::vector<BlockKey> kb = ChainKeys(b, kBlock, seed);
    ASSERT_EQ(kb.size(), ka.size());
    const size_t shared = std::min(pos / kBlock, ka.size());
    for (size_t i = 0; i < ka.size(); ++i) {
      if (i < shared) {
        EXPECT_EQ(ka[i], kb[i]) << i;
      } else {
        EXPECT_NE(ka[i], kb[i]) << i;
      }
    }
  }
  // A longer sequence with the same start extends the chain.
  std::vector<uint32_t> longer = a;
  longer.resize(a.size() + 3 * kBlock, 42);
  const std::vector<BlockKey> kl = ChainKeys(longer, kBlock, seed);
  ASSERT_EQ(kl.size(), 13u);
  EXPECT_TRUE(std::equal(ka.begin(), ka.end(), kl.begin()));
}

TEST(TokenKeys, DifferentSeedsShareNoKeys) {
  KeyNamespace other = BaseNamespace();
  other.tenant_salt = "globex";
  const std::vector<uint32_t> tokens = Sequence(8 * 16, 3);
  const std::vector<BlockKey> a = ChainKeys(tokens, 16, SeedOf(BaseNamespace()));
  const std::vector<BlockKey> b = ChainKeys(tokens, 16, SeedOf(other));
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NE(a[i], b[i]) << i;
}

TEST(TokenKeys, RepeatedBlocksGetDifferentKeys) {
  const std::vector<uint32_t> tokens(4 * 16, 9);
  const std::vector<BlockKey> keys = ChainKeys(tokens, 16, SeedOf(BaseNamespace()));
  EXPECT_EQ(std::set<BlockKey>(keys.begin(), keys.end()).size(), keys.size());
}

TEST(TokenKeys, IncrementalExtensionEqualsOneCall) {
  const BlockKey seed = SeedOf(BaseNamespace());
  const std::vector<uint32_t> tokens = Sequence(9 * 16, 11);
  const std::vector<BlockKey> whole = ChainKeys(tokens, 16, seed);
  std::vector<BlockKey> keys;
  const std::span<const uint32_t> all(tokens);
  EXPECT_EQ(ChainKeys(all.subspan(0, 2 * 16 + 3), 16, seed, keys), 2u);  // tail ignored
  EXPECT_EQ(ChainKeys(all.subspan(2 * 16, 16), 16, seed, keys), 1u);
  EXPECT_EQ(ChainKeys(all.subspan(3 * 16, 0), 16, seed, keys), 0u);
  EXPECT_EQ(ChainKeys(all.subspan(3 * 16), 16, seed, keys), 6u);
  EXPECT_EQ(keys, whole);
}

TEST(TokenKeys, ChainKeysIntoWritesAtMostItsSpan) {
  const BlockKey seed = SeedOf(BaseNamespace());
  const std::vector<uint32_t> tokens = Sequence(5 * 16 + 1, 5);
  const std::vector<BlockKey> whole = ChainKeys(tokens, 16, seed);
  const BlockKey sentinel{0xdeadULL, 0xbeefULL};
  std::vector<BlockKey> out(4, sentinel);
  EXPECT_EQ(ChainKeysInto(tokens, 16, seed, std::span<BlockKey>(out).first(2)), 5u);
  EXPECT_EQ(out[0], whole[0]);
  EXPECT_EQ(out[1], whole[1]);
  EXPECT_EQ(out[2], sentinel);
  EXPECT_EQ(ChainKeysInto(tokens, 16, seed, {}), 5u);
  EXPECT_EQ(ChainKeysInto(tokens, 0, seed, out), 0u);
  EXPECT_TRUE(ChainKeys(tokens, 0, seed).empty());
}

TEST(TokenKeys, LargeBlocksStreamToTheSameKeysAsOneShot) {
  // Blocks over 256 tokens are hashed in pieces; a block exactly at the
  // boundary and one just past it must agree with the definition, which
  // the vector file pins for 257 and 300. Here: the chain's structure.
  const BlockKey seed = SeedOf(BaseNamespace());
  for (uint32_t block : {255u, 256u, 257u, 1000u}) {
    const std::vector<uint32_t> tokens = Sequence(3 * block, block);
    const std::vector<BlockKey> keys = ChainKeys(tokens, block, seed);
    ASSERT_EQ(keys.size(), 3u);
    const std::vector<BlockKey> tail =
        ChainKeys(std::span<const uint32_t>(tokens).subspan(block), block, keys[0]);
    EXPECT_EQ(tail, std::vector<BlockKey>(keys.begin() + 1, keys.end()));
  }
}

TEST(TokenKeys, ValidationNamesTheField) {
  KeyNamespace ns = BaseNamespace();
  EXPECT_TRUE(ns.Validate().ok());
  ns.tp_rank = 4;
  EXPECT_EQ(ns.Validate().message(), "key namespace: tp_rank (4) must be less than tp_size (4)");
  ns = BaseNamespace();
  ns.kv_layout = std::string(kKeyNamespaceMaxString, 'x');
  EXPECT_TRUE(ns.Validate().ok());
  ns.kv_layout += "x";
  EXPECT_EQ(ns.Validate().message(),
            "key namespace: kv_layout is 1025 bytes, more than the limit of 1024");
  ns = BaseNamespace();
  ns.revision = std::string("ab\0c", 4);
  EXPECT_EQ(ns.Validate().message(), "key namespace: revision contains a NUL byte at offset 2");
}

}  // namespace
}  // namespace tokenmem
