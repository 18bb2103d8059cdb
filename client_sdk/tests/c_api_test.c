/* The token-key C ABI as a C program uses it: compiled as C11, linked to
 * libtokenmem.so, checked against the shared vector file.
 *
 * usage: client_sdk_c_api_test VECTORS.json */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mini_json.h"
#include "tokenmem/tokenmem_keys.h"

static int g_failures = 0;
static int g_checks = 0;

#define CHECK(cond, ...)                                                \
  do {                                                                  \
    ++g_checks;                                                         \
    if (!(cond)) {                                                      \
      ++g_failures;                                                     \
      fprintf(stderr, "%s:%d: FAILED %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                     \
      fputc('\n', stderr);                                              \
    }                                                                   \
  } while (0)

static const mj_value* member(const mj_value* obj, const char* key) {
  const mj_value* v = mj_get(obj, key);
  if (v == NULL) {
    fprintf(stderr, "vector file: missing member %s\n", key);
    exit(2);
  }
  return v;
}

static const char* str(const mj_value* obj, const char* key) { return member(obj, key)->str; }

/* Strings holding a NUL cannot be passed through a C string. */
static int has_nul(const mj_value* obj, const char* key) {
  const mj_value* v = member(obj, key);
  return strlen(v->str) != v->len;
}

static uint32_t u32(const mj_value* obj, const char* key) {
  return (uint32_t)member(obj, key)->number;
}

/* Fills ns from a vector namespace object; 0 when it holds a NUL byte. */
static int namespace_from(const mj_value* obj, tm_namespace* ns) {
  static const char* const kStrings[] = {"model", "revision", "kv_dtype", "kv_layout",
                                         "tenant_salt"};
  size_t i;
  for (i = 0; i < sizeof(kStrings) / sizeof(kStrings[0]); ++i) {
    if (has_nul(obj, kStrings[i])) return 0;
  }
  tm_namespace_init(ns);
  ns->model = str(obj, "model");
  ns->revision = str(obj, "revision");
  ns->kv_dtype = str(obj, "kv_dtype");
  ns->kv_layout = str(obj, "kv_layout");
  ns->tp_rank = u32(obj, "tp_rank");
  ns->tp_size = u32(obj, "tp_size");
  ns->pp_rank = u32(obj, "pp_rank");
  ns->pp_size = u32(obj, "pp_size");
  ns->block_tokens = u32(obj, "block_tokens");
  ns->tenant_salt = str(obj, "tenant_salt");
  return 1;
}

static uint32_t* tokens_of(const mj_value* obj, size_t* n) {
  const mj_value* arr = member(obj, "tokens");
  uint32_t* t = (uint32_t*)malloc((arr->count + 1) * sizeof(uint32_t));
  size_t i;
  for (i = 0; i < arr->count; ++i) t[i] = (uint32_t)arr->items[i].number;
  *n = arr->count;
  return t;
}

static int key_is(const tm_key* key, const char* want_hex) {
  char hex[TM_KEY_HEX_LEN + 1];
  tm_key_to_hex(key, hex);
  return strcmp(hex, want_hex) == 0;
}

static const mj_value* find_namespace(const mj_value* root, const char* name) {
  const mj_value* list = member(root, "namespaces");
  size_t i;
  for (i = 0; i < list->count; ++i) {
    if (strcmp(str(&list->items[i], "name"), name) == 0) return &list->items[i];
  }
  return NULL;
}

/* Checks tm_chain_keys from prev against want: the whole chain, a count-only
 * call, a short buffer, and the chain continued from its middle. */
static void check_chain(const char* name, const uint32_t* tokens, size_t n, uint32_t block,
                        const tm_key* prev, const mj_value* want) {
  const size_t blocks = want->count;
  tm_key* out = (tm_key*)malloc((blocks + 1) * sizeof(tm_key));
  const tm_key sentinel = {0x5e5e5e5e5e5e5e5eULL, 0xa5a5a5a5a5a5a5a5ULL};
  size_t i;
  for (i = 0; i <= blocks; ++i) out[i] = sentinel;

  CHECK(tm_chain_keys(tokens, n, block, prev, NULL, 0) == blocks, "%s: count", name);
  CHECK(tm_chain_keys(tokens, n, block, prev, out, blocks + 1) == blocks, "%s: return", name);
  for (i = 0; i < blocks; ++i) {
    CHECK(key_is(&out[i], want->items[i].str), "%s: key %zu", name, i);
  }
  CHECK(out[blocks].hi == sentinel.hi && out[blocks].lo == sentinel.lo, "%s: wrote past", name);

  if (blocks >= 2) {
    tm_key part[2] = {sentinel, sentinel};
    tm_key* rest = (tm_key*)malloc(blocks * sizeof(tm_key));
    const size_t half = blocks / 2;
    CHECK(tm_chain_keys(tokens, n, block, prev, part, 1) == blocks, "%s: short return", name);
    CHECK(key_is(&part[0], want->items[0].str), "%s: short key", name);
    CHECK(part[1].hi == sentinel.hi && part[1].lo == sentinel.lo, "%s: short wrote past", name);
    /* Extend the chain from block half-1's key with the tokens after it. */
    CHECK(tm_chain_keys(tokens + half * block, n - half * block, block, &out[half - 1], rest,
                        blocks) == blocks - half,
          "%s: continuation count", name);
    for (i = half; i < blocks; ++i) {
      CHECK(key_is(&rest[i - half], want->items[i].str), "%s: continued key %zu", name, i);
    }
    free(rest);
  }
  free(out);
}

static void test_vectors(const mj_value* root) {
  const mj_value* list = member(root, "namespaces");
  const mj_value* chains = member(root, "chains");
  const mj_value* raws = member(root, "raw_chains");
  const mj_value* invalid = member(root, "invalid_namespaces");
  size_t i, checked_invalid = 0;

  CHECK(list->count >= 6, "namespaces: %zu", list->count);
  for (i = 0; i < list->count; ++i) {
    const mj_value* e = &list->items[i];
    tm_namespace ns;
    tm_key seed;
    char err[256];
    CHECK(namespace_from(member(e, "namespace"), &ns), "%s has a NUL", str(e, "name"));
    CHECK(tm_namespace_seed(&ns, &seed, err, sizeof(err)) == TM_OK, "%s: %s", str(e, "name"), err);
    CHECK(err[0] == '\0', "%s: err not cleared", str(e, "name"));
    CHECK(key_is(&seed, str(e, "seed")), "%s: seed", str(e, "name"));
  }

  CHECK(chains->count >= 10, "chains: %zu", chains->count);
  for (i = 0; i < chains->count; ++i) {
    const mj_value* c = &chains->items[i];
    const mj_value* ns_entry = find_namespace(root, str(c, "namespace"));
    tm_namespace ns;
    tm_key seed;
    size_t n;
    uint32_t* tokens;
    CHECK(ns_entry != NULL, "%s: namespace", str(c, "name"));
    if (ns_entry == NULL) continue;
    namespace_from(member(ns_entry, "namespace"), &ns);
    CHECK(tm_namespace_seed(&ns, &seed, NULL, 0) == TM_OK, "%s", str(c, "name"));
    tokens = tokens_of(c, &n);
    check_chain(str(c, "name"), tokens, n, ns.block_tokens, &seed, member(c, "keys"));
    free(tokens);
  }

  CHECK(raws->count >= 3, "raw chains: %zu", raws->count);
  for (i = 0; i < raws->count; ++i) {
    const mj_value* r = &raws->items[i];
    tm_key prev;
    size_t n;
    uint32_t* tokens = tokens_of(r, &n);
    CHECK(tm_key_from_hex(str(r, "prev"), &prev) == TM_OK, "%s: prev", str(r, "name"));
    check_chain(str(r, "name"), tokens, n, u32(r, "block_tokens"), &prev, member(r, "keys"));
    free(tokens);
  }

  for (i = 0; i < invalid->count; ++i) {
    const mj_value* e = &invalid->items[i];
    tm_namespace ns;
    tm_key seed = {1, 2};
    char err[256] = "unset";
    if (!namespace_from(member(e, "namespace"), &ns)) continue;
    ++checked_invalid;
    CHECK(tm_namespace_seed(&ns, &seed, err, sizeof(err)) == TM_INVALID_ARGUMENT, "%s",
          str(e, "name"));
    CHECK(strstr(err, str(e, "field")) != NULL, "%s: message '%s'", str(e, "name"), err);
    CHECK(seed.hi == 1 && seed.lo == 2, "%s: out changed", str(e, "name"));
  }
  CHECK(checked_invalid >= 6, "invalid namespaces checked: %zu", checked_invalid);
}

static void test_namespace_edges(void) {
  tm_namespace ns, empty_strings;
  tm_key a, b;
  char err[8];
  char* big;

  tm_namespace_init(&ns);
  CHECK(ns.model == NULL && ns.tenant_salt == NULL && ns.tp_size == 1 && ns.pp_size == 1 &&
            ns.block_tokens == 16 && ns.tp_rank == 0 && ns.pp_rank == 0,
        "init defaults");
  CHECK(tm_namespace_seed(&ns, &a, NULL, 0) == TM_INVALID_ARGUMENT, "NULL model");
  CHECK(tm_namespace_seed(NULL, &a, NULL, 0) == TM_INVALID_ARGUMENT, "NULL ns");
  ns.model = "m";
  CHECK(tm_namespace_seed(&ns, NULL, NULL, 0) == TM_INVALID_ARGUMENT, "NULL out");

  /* NULL optional strings hash as "". */
  empty_strings = ns;
  empty_strings.revision = "";
  empty_strings.kv_dtype = "";
  empty_strings.kv_layout = "";
  empty_strings.tenant_salt = "";
  CHECK(tm_namespace_seed(&ns, &a, NULL, 0) == TM_OK, "NULL strings");
  CHECK(tm_namespace_seed(&empty_strings, &b, NULL, 0) == TM_OK, "empty strings");
  CHECK(a.hi == b.hi && a.lo == b.lo, "NULL and \"\" differ");

  /* Messages are truncated to fit, always terminated. */
  ns.model = "";
  CHECK(tm_namespace_seed(&ns, &a, err, sizeof(err)) == TM_INVALID_ARGUMENT, "empty model");
  CHECK(strlen(err) == sizeof(err) - 1, "truncated: '%s'", err);
  CHECK(tm_namespace_seed(&ns, &a, err, 1) == TM_INVALID_ARGUMENT && err[0] == '\0', "len 1");

  /* A string far over the limit is rejected without reading all of it. */
  big = (char*)malloc(5000);
  memset(big, 'x', 4999);
  big[4999] = '\0';
  ns.model = "m";
  ns.tenant_salt = big;
  CHECK(tm_namespace_seed(&ns, &a, NULL, 0) == TM_INVALID_ARGUMENT, "long salt");
  big[TM_NAMESPACE_MAX_STRING] = '\0';
  CHECK(tm_namespace_seed(&ns, &a, NULL, 0) == TM_OK, "salt at the limit");
  free(big);
}

static void test_chain_edges(void) {
  const uint32_t tokens[4] = {1, 2, 3, 4};
  const tm_key prev = {7, 9};
  tm_key out[4];
  CHECK(tm_chain_keys(tokens, 4, 0, &prev, out, 4) == TM_CHAIN_INVALID, "block 0");
  CHECK(tm_chain_keys(tokens, 4, 2, NULL, out, 4) == TM_CHAIN_INVALID, "NULL prev");
  CHECK(tm_chain_keys(NULL, 4, 2, &prev, out, 4) == TM_CHAIN_INVALID, "NULL tokens");
  CHECK(tm_chain_keys(tokens, 4, 2, &prev, NULL, 4) == TM_CHAIN_INVALID, "NULL out");
  CHECK(tm_chain_keys(NULL, 0, 2, &prev, out, 4) == 0, "no tokens");
  CHECK(tm_chain_keys(tokens, 3, 4, &prev, out, 4) == 0, "partial block");
  CHECK(tm_chain_keys(tokens, 4, 1, &prev, out, 4) == 4, "block 1");
  CHECK(tm_chain_keys(tokens, 4, 5, &prev, out, 4) == 0, "block larger than input");
}

static void test_hex(void) {
  tm_key k = {0x0123456789abcdefULL, 0xfedcba9876543210ULL}, back = {0, 0};
  char hex[TM_KEY_HEX_LEN + 1];
  tm_key_to_hex(&k, hex);
  CHECK(strcmp(hex, "0123456789abcdeffedcba9876543210") == 0, "%s", hex);
  CHECK(tm_key_from_hex(hex, &back) == TM_OK && back.hi == k.hi && back.lo == k.lo, "round trip");
  CHECK(tm_key_from_hex("0123456789ABCDEFFEDCBA9876543210", &back) == TM_OK && back.hi == k.hi,
        "upper case");
  back.hi = 5;
  CHECK(tm_key_from_hex("0123456789abcdeffedcba987654321", &back) == TM_INVALID_ARGUMENT, "31");
  CHECK(tm_key_from_hex("0123456789abcdeffedcba98765432100", &back) == TM_INVALID_ARGUMENT, "33");
  CHECK(tm_key_from_hex("0123456789abcdeffedcba987654321g", &back) == TM_INVALID_ARGUMENT, "g");
  CHECK(tm_key_from_hex(NULL, &back) == TM_INVALID_ARGUMENT, "NULL");
  CHECK(back.hi == 5, "out changed on error");
}

int main(int argc, char** argv) {
  char err[256] = "";
  mj_value* root;
  if (argc != 2) {
    fprintf(stderr, "usage: %s VECTORS.json\n", argv[0]);
    return 2;
  }
  root = mj_parse_file(argv[1], err, sizeof(err));
  if (root == NULL) {
    fprintf(stderr, "cannot load %s: %s\n", argv[1], err);
    return 2;
  }
  test_vectors(root);
  test_namespace_edges();
  test_chain_edges();
  test_hex();
  mj_free(root);
  printf("c_api_test: %d checks, %d failures\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
