/* TM_API marks the functions that libtokenmem.so exports.
 *
 * The library is built with hidden visibility and a linker version script
 * that keeps only tm_* symbols, so everything not marked stays internal.
 * Static users (tokenmem_keys) see the same declarations. */
#ifndef TOKENMEM_TM_EXPORT_H_
#define TOKENMEM_TM_EXPORT_H_

#if defined(__GNUC__) || defined(__clang__)
#define TM_API __attribute__((visibility("default")))
#else
#define TM_API
#endif

#endif /* TOKENMEM_TM_EXPORT_H_ */
