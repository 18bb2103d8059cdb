/* A minimal JSON reader for the token-key test vectors.
 *
 * Test-only. Reads objects, arrays, strings (all escapes, \u surrogate
 * pairs decoded to UTF-8), true, false, null, and non-negative integers up
 * to 2^64-1; anything else (fractions, exponents, negative numbers) is an
 * error, which the vector file never needs. A parsed tree is owned by the
 * caller and released with mj_free; it is not shared between threads. */
#ifndef TOKENMEM_CLIENT_SDK_TESTS_MINI_JSON_H_
#define TOKENMEM_CLIENT_SDK_TESTS_MINI_JSON_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mj_type {
  MJ_NULL,
  MJ_FALSE,
  MJ_TRUE,
  MJ_NUMBER,
  MJ_STRING,
  MJ_ARRAY,
  MJ_OBJECT
} mj_type;

typedef struct mj_value {
  mj_type type;
  uint64_t number; /* MJ_NUMBER */
  char* str;       /* MJ_STRING: decoded bytes plus a NUL; may contain NULs */
  size_t len;      /* MJ_STRING: bytes before the final NUL */
  size_t count;    /* MJ_ARRAY, MJ_OBJECT: number of items */
  struct mj_value* items;
  char** keys; /* MJ_OBJECT: items[i] is the value of keys[i] */
} mj_value;

/* The tree, or NULL with a message in err (when err_len > 0). */
mj_value* mj_parse(const char* text, size_t len, char* err, size_t err_len);
/* Reads and parses a whole file. */
mj_value* mj_parse_file(const char* path, char* err, size_t err_len);
void mj_free(mj_value* v);

/* Member `key` of an object, or NULL (missing, or v is not an object). */
const mj_value* mj_get(const mj_value* v, const char* key);
/* Item i of an array, or NULL (out of range, or v is not an array). */
const mj_value* mj_at(const mj_value* v, size_t i);

#ifdef __cplusplus
}
#endif

#endif /* TOKENMEM_CLIENT_SDK_TESTS_MINI_JSON_H_ */
