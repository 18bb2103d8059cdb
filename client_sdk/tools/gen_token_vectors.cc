// Writes client_sdk/testdata/token_key_vectors.json, the token-key test
// vectors that the C++, C and Python tests read.
//
// The file is generated once and checked in; the keys it holds are frozen
// (docs/token-keys.md). Regenerating it with different keys means the
// implementation changed the format, which needs a new namespace tag.
//
//   gen_token_vectors                 print the file to stdout
//   gen_token_vectors --out FILE      write FILE
//   gen_token_vectors --check FILE    exit 0 when FILE is exactly what this
//                                     program writes, 1 (and say where) if not
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "tokenmem/token_keys.h"

namespace {

using tokenmem::BlockKey;
using tokenmem::KeyNamespace;

struct NamedNamespace {
  std::string name;
  KeyNamespace ns;
};

struct Chain {
  std::string name;
  std::string ns_name;
  std::vector<uint32_t> tokens;
};

struct RawChain {
  std::string name;
  BlockKey prev;
  uint32_t block_tokens;
  std::vector<uint32_t> tokens;
};

struct Invalid {
  std::string name;
  KeyNamespace ns;
  std::string field;
};

// Deterministic token IDs (splitmix64), mostly within a real vocabulary.
class TokenSource {
 public:
  explicit TokenSource(uint64_t seed) : state_(seed) {}
  uint32_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return static_cast<uint32_t>(z % 152064);
  }
  std::vector<uint32_t> Take(size_t n) {
    std::vector<uint32_t> v(n);
    for (auto& t : v) t = Next();
    return v;
  }

 private:
  uint64_t state_;
};

std::string Repeat(std::string_view s, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}

std::vector<NamedNamespace> Namespaces() {
  KeyNamespace llama{.model = "meta-llama/Llama-3.1-8B-Instruct",
                     .revision = "0e9e39f249a16976918f6564b8830bc894c89659",
                     .kv_dtype = "bf16",
                     .kv_layout = "nhd-per-layer"};
  KeyNamespace tenant = llama;
  tenant.tenant_salt = "tenant-7f3a";
  KeyNamespace ranks = llama;
  ranks.kv_dtype = "fp8_e4m3";
  ranks.tp_rank = 3;
  ranks.tp_size = 8;
  ranks.pp_rank = 1;
  ranks.pp_size = 2;
  KeyNamespace unicode{.model = "Qwen/通义千问-7B-Ünïcödé-🚀",
                       .revision = "main",
                       .kv_dtype = "fp16",
                       .kv_layout = "hnd-fused",
                       .tp_rank = 1,
                       .tp_size = 2,
                       .block_tokens = 4,
                       .tenant_salt = "mañana-🔑"};
  KeyNamespace minimal{.model = "m", .block_tokens = 1};
  KeyNamespace large{.model = "large-block-model",
                     .revision = "r1",
                     .kv_dtype = "fp16",
                     .kv_layout = "nhd-per-layer",
                     .block_tokens = 300};
  KeyNamespace longest{.model = Repeat("é", 512),
                       .revision = Repeat("r", 1024),
                       .kv_dtype = "bf16",
                       .kv_layout = "nhd-per-layer",
                       .block_tokens = 16,
                       .tenant_salt = Repeat("s", 1024)};
  KeyNamespace max_ranks{.model = "max-ranks",
                         .kv_dtype = "bf16",
                         .tp_rank = 4294967294u,
                         .tp_size = 4294967295u,
                         .pp_rank = 0,
                         .pp_size = 4294967295u,
                         .block_tokens = 16};
  return {
      {"llama-bf16", llama},
      {"llama-bf16-tenant", tenant},
      {"llama-fp8-tp3of8-pp1of2", ranks},
      {"unicode-block4", unicode},
      {"minimal-block1", minimal},
      {"large-block300", large},
      {"longest-strings", longest},
      {"max-ranks", max_ranks},
  };
}

std::vector<Chain> Chains(const std::vector<NamedNamespace>& namespaces) {
  TokenSource src(0x746F6B656E6D656DULL);
  std::vector<Chain> chains;
  for (const auto& [name, ns] : namespaces) {
    const size_t b = ns.block_tokens;
    chains.push_back({name + "/empty", name, {}});
    if (b >= 256) {
      chains.push_back({name + "/two-blocks-and-tail", name, src.Take(2 * b + 100)});
      continue;
    }
    if (b > 1) chains.push_back({name + "/partial-block", name, src.Take(b - 1)});
    chains.push_back({name + "/one-block", name, src.Take(b)});
    chains.push_back({name + "/five-blocks-and-tail", name, src.Take(5 * b + b / 2)});
    std::vector<uint32_t> extremes;
    for (size_t i = 0; i < b; ++i) extremes.push_back(0);
    for (size_t i = 0; i < b; ++i) extremes.push_back(4294967295u);
    for (size_t i = 0; i < b; ++i) extremes.push_back(i % 2 ? 4294967295u : 0);
    extremes.push_back(4294967295u);
    chains.push_back({name + "/extreme-ids", name, extremes});
  }
  return chains;
}

std::vector<RawChain> RawChains() {
  TokenSource src(0x7261772D636861ULL);
  return {
      {"zero-prev/block2", BlockKey{0, 0}, 2, {0, 0, 1, 0, 0, 1, 7}},
      {"ones-prev/block3", BlockKey{~0ULL, ~0ULL}, 3, src.Take(10)},
      {"mixed-prev/block16", BlockKey{0x0123456789abcdefULL, 0xfedcba9876543210ULL}, 16,
       src.Take(48)},
      {"mixed-prev/block257", BlockKey{0x8000000000000000ULL, 1}, 257, src.Take(2 * 257 + 3)},
  };
}

std::vector<Invalid> Invalids() {
  KeyNamespace base{.model = "meta-llama/Llama-3.1-8B-Instruct",
                    .revision = "main",
                    .kv_dtype = "bf16",
                    .kv_layout = "nhd-per-layer"};
  std::vector<Invalid> out;
  auto add = [&](std::string name, std::string field, auto change) {
    KeyNamespace ns = base;
    change(ns);
    out.push_back({std::move(name), ns, std::move(field)});
  };
  add("empty-model", "model", [](KeyNamespace& ns) { ns.model = ""; });
  add("tp-size-zero", "tp_size", [](KeyNamespace& ns) {
    ns.tp_rank = 0;
    ns.tp_size = 0;
  });
  add("tp-rank-equals-size", "tp_rank", [](KeyNamespace& ns) {
    ns.tp_rank = 2;
    ns.tp_size = 2;
  });
  add("pp-size-zero", "pp_size", [](KeyNamespace& ns) { ns.pp_size = 0; });
  add("pp-rank-above-size", "pp_rank", [](KeyNamespace& ns) {
    ns.pp_rank = 5;
    ns.pp_size = 4;
  });
  add("block-tokens-zero", "block_tokens", [](KeyNamespace& ns) { ns.block_tokens = 0; });
  add("revision-1025-bytes-513-chars", "revision",
      [](KeyNamespace& ns) { ns.revision = Repeat("é", 512) + "a"; });
  add("kv-dtype-1025-bytes", "kv_dtype", [](KeyNamespace& ns) { ns.kv_dtype = Repeat("x", 1025); });
  add("tenant-salt-1025-bytes", "tenant_salt",
      [](KeyNamespace& ns) { ns.tenant_salt = Repeat("t", 1025); });
  add("model-with-nul", "model", [](KeyNamespace& ns) { ns.model = std::string("bad\0model", 9); });
  add("tenant-salt-with-nul", "tenant_salt",
      [](KeyNamespace& ns) { ns.tenant_salt = std::string("a\0b", 3); });
  return out;
}

// JSON text of a byte string: ASCII as is, everything else as \u escapes
// (surrogate pairs above U+FFFF), so the file is pure ASCII and exercises
// every reader's unescaping. The input must be valid UTF-8.
std::string Quote(std::string_view s) {
  std::string out = "\"";
  char esc[16];
  auto put_unit = [&](unsigned u) {
    std::snprintf(esc, sizeof(esc), "\\u%04x", u);
    out += esc;
  };
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
      ++i;
    } else if (c >= 0x20 && c < 0x7F) {
      out += static_cast<char>(c);
      ++i;
    } else if (c < 0x80) {
      put_unit(c);
      ++i;
    } else {
      const int extra = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : 1;
      uint32_t cp = c & (0x3F >> extra);
      for (int k = 1; k <= extra; ++k)
        cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
      i += 1 + extra;
      if (cp >= 0x10000) {
        cp -= 0x10000;
        put_unit(0xD800 + (cp >> 10));
        put_unit(0xDC00 + (cp & 0x3FF));
      } else {
        put_unit(cp);
      }
    }
  }
  return out + "\"";
}

std::string Hex(std::string_view bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

std::string Tokens(const std::vector<uint32_t>& tokens) {
  std::string out = "[";
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(tokens[i]);
  }
  return out + "]";
}

std::string Keys(const std::vector<BlockKey>& keys, std::string_view indent) {
  if (keys.empty()) return "[]";
  std::string out = "[\n";
  for (size_t i = 0; i < keys.size(); ++i) {
    out +=
        std::string(indent) + "  " + Quote(keys[i].ToHex()) + (i + 1 < keys.size() ? ",\n" : "\n");
  }
  return out + std::string(indent) + "]";
}

std::string NamespaceJson(const KeyNamespace& ns) {
  std::ostringstream o;
  o << "{\"model\": " << Quote(ns.model) << ", \"revision\": " << Quote(ns.revision)
    << ", \"kv_dtype\": " << Quote(ns.kv_dtype) << ", \"kv_layout\": " << Quote(ns.kv_layout)
    << ", \"tp_rank\": " << ns.tp_rank << ", \"tp_size\": " << ns.tp_size
    << ", \"pp_rank\": " << ns.pp_rank << ", \"pp_size\": " << ns.pp_size
    << ", \"block_tokens\": " << ns.block_tokens << ", \"tenant_salt\": " << Quote(ns.tenant_salt)
    << "}";
  return o.str();
}

bool Generate(std::string& out) {
  const std::vector<NamedNamespace> namespaces = Namespaces();
  std::ostringstream o;
  o << "{\n"
    << "  \"format\": \"tokenmem-token-key-vectors-v1\",\n"
    << "  \"spec\": \"docs/token-keys.md\",\n"
    << "  \"generator\": \"client_sdk/tools/gen_token_vectors.cc\",\n"
    << "  \"namespaces\": [\n";
  for (size_t i = 0; i < namespaces.size(); ++i) {
    const auto& [name, ns] = namespaces[i];
    auto enc = tokenmem::EncodeKeyNamespace(ns);
    auto seed = tokenmem::NamespaceSeed(ns);
    if (!enc.ok() || !seed.ok()) {
      std::fprintf(stderr, "namespace %s: %s\n", name.c_str(), seed.status().ToString().c_str());
      return false;
    }
    o << "    {\n      \"name\": " << Quote(name) << ",\n      \"namespace\": " << NamespaceJson(ns)
      << ",\n      \"encoding_hex\": " << Quote(Hex(*enc))
      << ",\n      \"seed\": " << Quote(seed->ToHex()) << "\n    }"
      << (i + 1 < namespaces.size() ? ",\n" : "\n");
  }
  o << "  ],\n  \"chains\": [\n";
  const std::vector<Chain> chains = Chains(namespaces);
  for (size_t i = 0; i < chains.size(); ++i) {
    const Chain& c = chains[i];
    const KeyNamespace* ns = nullptr;
    for (const auto& n : namespaces) {
      if (n.name == c.ns_name) ns = &n.ns;
    }
    auto keys = tokenmem::PrefixKeys(*ns, c.tokens);
    if (!keys.ok()) return false;
    o << "    {\n      \"name\": " << Quote(c.name)
      << ",\n      \"namespace\": " << Quote(c.ns_name)
      << ",\n      \"tokens\": " << Tokens(c.tokens)
      << ",\n      \"keys\": " << Keys(*keys, "      ") << "\n    }"
      << (i + 1 < chains.size() ? ",\n" : "\n");
  }
  o << "  ],\n  \"raw_chains\": [\n";
  const std::vector<RawChain> raws = RawChains();
  for (size_t i = 0; i < raws.size(); ++i) {
    const RawChain& r = raws[i];
    auto keys = tokenmem::ChainKeys(r.tokens, r.block_tokens, r.prev);
    o << "    {\n      \"name\": " << Quote(r.name)
      << ",\n      \"prev\": " << Quote(r.prev.ToHex())
      << ",\n      \"block_tokens\": " << r.block_tokens
      << ",\n      \"tokens\": " << Tokens(r.tokens)
      << ",\n      \"keys\": " << Keys(keys, "      ") << "\n    }"
      << (i + 1 < raws.size() ? ",\n" : "\n");
  }
  o << "  ],\n  \"invalid_namespaces\": [\n";
  const std::vector<Invalid> invalids = Invalids();
  for (size_t i = 0; i < invalids.size(); ++i) {
    const Invalid& v = invalids[i];
    if (v.ns.Validate().ok()) {
      std::fprintf(stderr, "invalid namespace %s validates\n", v.name.c_str());
      return false;
    }
    o << "    {\"name\": " << Quote(v.name) << ", \"field\": " << Quote(v.field)
      << ",\n     \"namespace\": " << NamespaceJson(v.ns) << "}"
      << (i + 1 < invalids.size() ? ",\n" : "\n");
  }
  o << "  ]\n}\n";
  out = o.str();
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::string text;
  if (!Generate(text)) return 2;
  const std::string_view mode = argc >= 3 ? argv[1] : "";
  if (argc == 1) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    return 0;
  }
  if (argc == 3 && mode == "--out") {
    std::ofstream f(argv[2], std::ios::binary | std::ios::trunc);
    f << text;
    f.close();
    if (!f) {
      std::fprintf(stderr, "cannot write %s\n", argv[2]);
      return 2;
    }
    return 0;
  }
  if (argc == 3 && mode == "--check") {
    std::ifstream f(argv[2], std::ios::binary);
    if (!f) {
      std::fprintf(stderr, "cannot read %s\n", argv[2]);
      return 2;
    }
    const std::string have((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (have == text) return 0;
    size_t at = 0;
    while (at < have.size() && at < text.size() && have[at] == text[at]) ++at;
    std::fprintf(stderr,
                 "%s differs from the generator's output at byte %zu: the token-key format or "
                 "the generator changed (see docs/token-keys.md)\n",
                 argv[2], at);
    return 1;
  }
  std::fprintf(stderr, "usage: %s [--out FILE | --check FILE]\n", argv[0]);
  return 2;
}
