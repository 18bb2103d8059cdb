#include "mini_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { kMaxDepth = 64 };

typedef struct parser {
  const char* begin;
  const char* p;
  const char* end;
  char* err;
  size_t err_len;
  int failed;
} parser;

static void fail(parser* ps, const char* what) {
  if (ps->failed) return;
  ps->failed = 1;
  if (ps->err != NULL && ps->err_len > 0) {
    snprintf(ps->err, ps->err_len, "json: %s at byte %ld", what, (long)(ps->p - ps->begin));
  }
}

static void skip_ws(parser* ps) {
  while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\r' || *ps->p == '\t')) {
    ++ps->p;
  }
}

static void free_children(mj_value* v) {
  size_t i;
  free(v->str);
  for (i = 0; i < v->count; ++i) {
    free_children(&v->items[i]);
    if (v->keys != NULL) free(v->keys[i]);
  }
  free(v->items);
  free(v->keys);
  memset(v, 0, sizeof(*v));
}

/* Growable byte buffer for decoded strings. */
typedef struct buf {
  char* data;
  size_t len, cap;
} buf;

static int buf_put(buf* b, char c) {
  if (b->len + 2 > b->cap) {
    size_t cap = b->cap ? 2 * b->cap : 32;
    char* d = (char*)realloc(b->data, cap);
    if (d == NULL) return 0;
    b->data = d;
    b->cap = cap;
  }
  b->data[b->len++] = c;
  b->data[b->len] = '\0';
  return 1;
}

static int put_utf8(buf* b, unsigned long cp) {
  if (cp < 0x80) return buf_put(b, (char)cp);
  if (cp < 0x800)
    return buf_put(b, (char)(0xC0 | (cp >> 6))) && buf_put(b, (char)(0x80 | (cp & 0x3F)));
  if (cp < 0x10000) {
    return buf_put(b, (char)(0xE0 | (cp >> 12))) && buf_put(b, (char)(0x80 | ((cp >> 6) & 0x3F))) &&
           buf_put(b, (char)(0x80 | (cp & 0x3F)));
  }
  return buf_put(b, (char)(0xF0 | (cp >> 18))) && buf_put(b, (char)(0x80 | ((cp >> 12) & 0x3F))) &&
         buf_put(b, (char)(0x80 | ((cp >> 6) & 0x3F))) && buf_put(b, (char)(0x80 | (cp & 0x3F)));
}

static int hex4(parser* ps, unsigned long* out) {
  int i;
  unsigned long v = 0;
  if (ps->end - ps->p < 4) return 0;
  for (i = 0; i < 4; ++i) {
    char c = ps->p[i];
    int d = (c >= '0' && c <= '9')   ? c - '0'
            : (c >= 'a' && c <= 'f') ? c - 'a' + 10
            : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                     : -1;
    if (d < 0) return 0;
    v = (v << 4) | (unsigned long)d;
  }
  ps->p += 4;
  *out = v;
  return 1;
}

/* Parses a string starting at the opening quote into b. */
static int parse_string(parser* ps, buf* b) {
  if (!buf_put(b, 'x')) return 0; /* makes data non-NULL even for "" */
  b->len = 0;
  b->data[0] = '\0';
  ++ps->p;
  while (ps->p < ps->end) {
    unsigned char c = (unsigned char)*ps->p++;
    if (c == '"') return 1;
    if (c < 0x20) {
      fail(ps, "control character in a string");
      return 0;
    }
    if (c != '\\') {
      if (!buf_put(b, (char)c)) return 0;
      continue;
    }
    if (ps->p >= ps->end) break;
    c = (unsigned char)*ps->p++;
    switch (c) {
      case '"':
      case '\\':
      case '/':
        if (!buf_put(b, (char)c)) return 0;
        break;
      case 'b':
        if (!buf_put(b, '\b')) return 0;
        break;
      case 'f':
        if (!buf_put(b, '\f')) return 0;
        break;
      case 'n':
        if (!buf_put(b, '\n')) return 0;
        break;
      case 'r':
        if (!buf_put(b, '\r')) return 0;
        break;
      case 't':
        if (!buf_put(b, '\t')) return 0;
        break;
      case 'u': {
        unsigned long cp, lo;
        if (!hex4(ps, &cp)) {
          fail(ps, "bad \\u escape");
          return 0;
        }
        if (cp >= 0xD800 && cp < 0xDC00) {
          if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u') {
            fail(ps, "lone high surrogate");
            return 0;
          }
          ps->p += 2;
          if (!hex4(ps, &lo) || lo < 0xDC00 || lo >= 0xE000) {
            fail(ps, "bad low surrogate");
            return 0;
          }
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        } else if (cp >= 0xDC00 && cp < 0xE000) {
          fail(ps, "lone low surrogate");
          return 0;
        }
        if (!put_utf8(b, cp)) return 0;
        break;
      }
      default:
        fail(ps, "unknown escape");
        return 0;
    }
  }
  fail(ps, "unterminated string");
  return 0;
}

static int parse_value(parser* ps, mj_value* out, int depth);

static int append_item(parser* ps, mj_value* v, mj_value* item, char* key) {
  mj_value* items = (mj_value*)realloc(v->items, (v->count + 1) * sizeof(mj_value));
  if (items == NULL) {
    fail(ps, "out of memory");
    return 0;
  }
  v->items = items;
  if (v->type == MJ_OBJECT) {
    char** keys = (char**)realloc(v->keys, (v->count + 1) * sizeof(char*));
    if (keys == NULL) {
      fail(ps, "out of memory");
      return 0;
    }
    v->keys = keys;
    v->keys[v->count] = key;
  }
  v->items[v->count++] = *item;
  return 1;
}

static int parse_container(parser* ps, mj_value* out, int depth) {
  const char close = *ps->p == '[' ? ']' : '}';
  out->type = close == ']' ? MJ_ARRAY : MJ_OBJECT;
  ++ps->p;
  skip_ws(ps);
  if (ps->p < ps->end && *ps->p == close) {
    ++ps->p;
    return 1;
  }
  for (;;) {
    mj_value item;
    buf key = {NULL, 0, 0};
    memset(&item, 0, sizeof(item));
    skip_ws(ps);
    if (out->type == MJ_OBJECT) {
      if (ps->p >= ps->end || *ps->p != '"') {
        fail(ps, "expected a member name");
        return 0;
      }
      if (!parse_string(ps, &key)) {
        free(key.data);
        fail(ps, "bad member name");
        return 0;
      }
      skip_ws(ps);
      if (ps->p >= ps->end || *ps->p != ':') {
        free(key.data);
        fail(ps, "expected ':'");
        return 0;
      }
      ++ps->p;
    }
    if (!parse_value(ps, &item, depth + 1) || !append_item(ps, out, &item, key.data)) {
      free_children(&item);
      free(key.data);
      return 0;
    }
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ',') {
      ++ps->p;
      continue;
    }
    if (ps->p < ps->end && *ps->p == close) {
      ++ps->p;
      return 1;
    }
    fail(ps, "expected ',' or the end of a container");
    return 0;
  }
}

static int parse_literal(parser* ps, const char* word, mj_type type, mj_value* out) {
  size_t n = strlen(word);
  if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) {
    fail(ps, "unexpected character");
    return 0;
  }
  ps->p += n;
  out->type = type;
  return 1;
}

static int parse_value(parser* ps, mj_value* out, int depth) {
  if (depth > kMaxDepth) {
    fail(ps, "nested too deeply");
    return 0;
  }
  skip_ws(ps);
  if (ps->p >= ps->end) {
    fail(ps, "unexpected end");
    return 0;
  }
  switch (*ps->p) {
    case '{':
    case '[':
      return parse_container(ps, out, depth);
    case '"': {
      buf b = {NULL, 0, 0};
      out->type = MJ_STRING;
      if (!parse_string(ps, &b)) {
        free(b.data);
        fail(ps, "out of memory");
        return 0;
      }
      out->str = b.data;
      out->len = b.len;
      return 1;
    }
    case 't':
      return parse_literal(ps, "true", MJ_TRUE, out);
    case 'f':
      return parse_literal(ps, "false", MJ_FALSE, out);
    case 'n':
      return parse_literal(ps, "null", MJ_NULL, out);
    default:
      break;
  }
  if (*ps->p < '0' || *ps->p > '9') {
    fail(ps, "unexpected character (only non-negative integers are numbers here)");
    return 0;
  }
  out->type = MJ_NUMBER;
  out->number = 0;
  while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
    uint64_t d = (uint64_t)(*ps->p - '0');
    if (out->number > (UINT64_MAX - d) / 10) {
      fail(ps, "integer too large");
      return 0;
    }
    out->number = out->number * 10 + d;
    ++ps->p;
  }
  if (ps->p < ps->end && (*ps->p == '.' || *ps->p == 'e' || *ps->p == 'E')) {
    fail(ps, "only integers are supported");
    return 0;
  }
  return 1;
}

mj_value* mj_parse(const char* text, size_t len, char* err, size_t err_len) {
  parser ps;
  mj_value* v = (mj_value*)calloc(1, sizeof(mj_value));
  if (v == NULL) return NULL;
  ps.begin = text;
  ps.p = text;
  ps.end = text + len;
  ps.err = err;
  ps.err_len = err_len;
  ps.failed = 0;
  if (parse_value(&ps, v, 0)) {
    skip_ws(&ps);
    if (ps.p == ps.end) return v;
    fail(&ps, "trailing characters");
  }
  mj_free(v);
  return NULL;
}

mj_value* mj_parse_file(const char* path, char* err, size_t err_len) {
  FILE* f = fopen(path, "rb");
  char* text = NULL;
  size_t len = 0, cap = 0, n;
  mj_value* v;
  if (f == NULL) {
    if (err != NULL && err_len > 0) snprintf(err, err_len, "json: cannot open %s", path);
    return NULL;
  }
  do {
    if (len == cap) {
      char* t;
      cap = cap ? 2 * cap : 65536;
      t = (char*)realloc(text, cap);
      if (t == NULL) {
        free(text);
        fclose(f);
        return NULL;
      }
      text = t;
    }
    n = fread(text + len, 1, cap - len, f);
    len += n;
  } while (n > 0);
  if (ferror(f)) {
    if (err != NULL && err_len > 0) snprintf(err, err_len, "json: cannot read %s", path);
    free(text);
    fclose(f);
    return NULL;
  }
  fclose(f);
  v = mj_parse(text, len, err, err_len);
  free(text);
  return v;
}

void mj_free(mj_value* v) {
  if (v == NULL) return;
  free_children(v);
  free(v);
}

const mj_value* mj_get(const mj_value* v, const char* key) {
  size_t i;
  if (v == NULL || v->type != MJ_OBJECT) return NULL;
  for (i = 0; i < v->count; ++i) {
    if (strcmp(v->keys[i], key) == 0) return &v->items[i];
  }
  return NULL;
}

const mj_value* mj_at(const mj_value* v, size_t i) {
  if (v == NULL || v->type != MJ_ARRAY || i >= v->count) return NULL;
  return &v->items[i];
}
