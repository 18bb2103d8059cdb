/* tokenmem.h: the C ABI of libtokenmem, the tokenmem client SDK.
 *
 * A tm_client is a session with the node's tokenmem agent over its data
 * socket, proved by a lease. A tm_pool is one pool attached through it:
 * the pool's block index and memory segments are mapped into this process,
 * so a get is a lookup in shared memory plus one copy, with no request to
 * the agent; puts reserve slots, copy into them and commit through the
 * agent. Keys are tm_key (tokenmem_keys.h), derived from token IDs with
 * tm_chain_keys.
 *
 * Remote path. When the agent is on another node, a client made by
 * tm_client_connect_remote (or by tm_client_from_env, which picks the
 * path) talks to the agent's remote listener over UCX instead: every call
 * is a request to the agent, with the same functions, results and codes,
 * except that tm_pin / tm_unpin fail with TM_FAILED_PRECONDITION (pins
 * are not available there). tm_client_is_remote tells which path a client
 * uses.
 *
 * Return codes. Every function returning int returns a tm_status value
 * (tm_status.h): TM_OK (0) on success, TM_NOT_FOUND for a miss (an
 * answer, not a failure), otherwise the error. TM_UNAVAILABLE means the
 * agent is gone or did not answer within the timeout; the session is then
 * over for good: close the client and connect again. Reads of blocks in
 * memory already mapped keep working meanwhile.
 *
 * Error messages. Every int-returning function records a message for the
 * calling thread: tm_last_error() returns it ("" after TM_OK). The string
 * belongs to the library and stays valid until the same thread calls into
 * the library again. Messages never contain a lease secret.
 *
 * Ownership. tm_client_* and tm_pool_attach hand out handles that the
 * caller owns and must release with tm_client_close / tm_pool_close, once
 * each. A pool handle stays usable after its client is closed (it keeps
 * the session open until its own close). All buffers passed in belong to
 * the caller; the library keeps no pointer to them after a call returns.
 *
 * Thread safety. A tm_client and a tm_pool may be used from any number of
 * threads at once, except that a handle must not be closed while another
 * thread uses it. Requests to the agent are serialized per client; gets,
 * tm_contains and tm_lookup_prefix take no lock. Nothing is valid in a
 * child after fork().
 *
 * Stability. Functions are only ever added; the meaning of existing ones,
 * their signatures and the layout of tm_iovec do not change.
 */
#ifndef TOKENMEM_TOKENMEM_H_
#define TOKENMEM_TOKENMEM_H_

#include <stddef.h>
#include <stdint.h>

#include "tokenmem/tm_export.h"
#include "tokenmem/tm_status.h"
#include "tokenmem/tokenmem_keys.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tm_client tm_client;
typedef struct tm_pool tm_pool;

/* One piece of a block in the caller's memory; a block's bytes are the
 * concatenation of its pieces, in order (for example one piece per layer).
 * Read by puts, written by gets. Same layout as struct iovec. */
typedef struct tm_iovec {
  void* data;
  size_t len;
} tm_iovec;

/* The default timeout for one request to the agent, in milliseconds. */
#define TM_DEFAULT_TIMEOUT_MS 10000

/* ---- clients ---------------------------------------------------------- */

/* Connects to the agent's data socket and presents the lease (id and
 * secret, at most 63 bytes each). timeout_ms bounds each request to the
 * agent; 0 means TM_DEFAULT_TIMEOUT_MS. On TM_OK *out is a new client.
 * TM_INVALID_ARGUMENT: a NULL or malformed argument, or a socket that is
 * not the agent's data socket. TM_UNAVAILABLE: no agent there.
 * TM_PERMISSION_DENIED / TM_NOT_FOUND: the agent refused the lease. */
TM_API int tm_client_connect(const char* socket_path, const char* lease_id,
                             const char* lease_secret, uint32_t timeout_ms, tm_client** out);

/* Connects to an agent on another node over the remote data path. address
 * is "host:port" of the agent's remote listener; the lease, timeout_ms and
 * *out are as for tm_client_connect. TM_INVALID_ARGUMENT: a NULL or
 * malformed argument (address included). TM_UNAVAILABLE: no agent
 * answered there in time. TM_PERMISSION_DENIED / TM_NOT_FOUND: the agent
 * refused the lease. */
TM_API int tm_client_connect_remote(const char* address, const char* lease_id,
                                    const char* lease_secret, uint32_t timeout_ms, tm_client** out);

/* Connects with the environment a tokenmem device plugin gives a container:
 * TOKENMEM_AGENT_SOCKET (the local data socket) and/or
 * TOKENMEM_AGENT_ADDRESS ("host:port" of the agent's remote listener), at
 * least one; TOKENMEM_LEASE ("ID:SECRET", required), TOKENMEM_DEFAULT_POOL
 * (optional: what tm_pool_attach attaches for a NULL name),
 * TOKENMEM_QUOTA_BYTES (optional, informational). The local socket is
 * used when it is set, exists and an agent answers on it; otherwise, when
 * TOKENMEM_AGENT_ADDRESS is set, the remote path. TM_INVALID_ARGUMENT
 * names the variable that is missing or malformed; otherwise as
 * tm_client_connect / tm_client_connect_remote. */
TM_API int tm_client_from_env(tm_client** out);

/* Releases the client. Pools attached through it stay usable until closed.
 * NULL is ignored. */
TM_API void tm_client_close(tm_client* client);

/* 1 while the session with the agent lasts, 0 after it ended (or NULL). */
TM_API int tm_client_connected(const tm_client* client);

/* 1 when the client uses the remote path, 0 for the local one (or NULL). */
TM_API int tm_client_is_remote(const tm_client* client);

/* ---- pools ------------------------------------------------------------ */

/* Attaches the pool `name` (NULL: the client's default pool) and sets *out
 * to a new handle. TM_NOT_FOUND: no such pool. TM_PERMISSION_DENIED: the
 * lease may not use it. TM_FAILED_PRECONDITION: name is NULL and there is
 * no default pool. */
TM_API int tm_pool_attach(tm_client* client, const char* name, tm_pool** out);

/* Releases the handle; the pool is unmapped when its last handle goes.
 * NULL is ignored. */
TM_API void tm_pool_close(tm_pool* pool);

/* The largest block the pool stores, in bytes (0 for NULL). */
TM_API uint64_t tm_pool_block_size(const tm_pool* pool);

/* 1 when the pool was attached with a read-only lease (puts and removes
 * fail with TM_PERMISSION_DENIED), else 0. */
TM_API int tm_pool_read_only(const tm_pool* pool);

/* ---- single blocks ---------------------------------------------------- */

/* Stores len bytes (at most the block size) under *key, replacing any block
 * of that key; the block is visible to every reader when this returns
 * TM_OK. TM_INVALID_ARGUMENT: too large. TM_RESOURCE_EXHAUSTED: quota or
 * capacity. TM_PERMISSION_DENIED: read-only lease. */
TM_API int tm_put(tm_pool* pool, const tm_key* key, const void* data, size_t len);

/* Copies the block of *key into buf (cap bytes) and sets *len to its
 * length. TM_NOT_FOUND on a miss (*len = 0). TM_INVALID_ARGUMENT when cap
 * is smaller than the block: nothing is copied and *len is the length
 * needed (the block size always suffices). len may be NULL. */
TM_API int tm_get(tm_pool* pool, const tm_key* key, void* buf, size_t cap, size_t* len);

/* ---- batches (scatter-gather) ----------------------------------------- */

/* n blocks in one call. Block i has key keys[i] and iovcnt[i] pieces,
 * taken in order from the flat array iov: block 0 uses iov[0 ..
 * iovcnt[0]), block 1 the next iovcnt[1] entries, and so on.
 * codes[i] receives block i's result (TM_OK, TM_NOT_FOUND for a get miss,
 * or an error); lengths[i] (lengths may be NULL) the bytes stored or read
 * (for a get that failed with TM_INVALID_ARGUMENT, the bytes needed).
 * A get writes a block across its pieces in order and leaves the rest of
 * the pieces untouched. Any n: requests to the agent are batched.
 * Returns TM_OK when every block succeeded or missed; otherwise the code of
 * the first block that failed (tm_last_error says which and why), with
 * every block's result in codes. TM_INVALID_ARGUMENT without touching
 * codes when a required pointer is NULL while n > 0. */
TM_API int tm_put_many(tm_pool* pool, size_t n, const tm_key* keys, const size_t* iovcnt,
                       const tm_iovec* iov, int* codes, size_t* lengths);
TM_API int tm_get_many(tm_pool* pool, size_t n, const tm_key* keys, const size_t* iovcnt,
                       const tm_iovec* iov, int* codes, size_t* lengths);

/* ---- in place (for DMA engines such as a GPU) -------------------------- */

/* The pool's memory segments mapped in this process now (address and
 * length), to register with a device (cudaHostRegister): up to cap into
 * out, *count set to how many there are. Segments mapped later are not
 * included. TM_FAILED_PRECONDITION on the remote path. */
TM_API int tm_pool_mapped_regions(tm_pool* pool, tm_iovec* out, size_t cap, size_t* count);

/* Calls copy(ctx, src, len) with the block of *key where it lies in the
 * mapped pool; copy must have finished reading when it returns (0: done,
 * anything else: failed). Then checks that the block did not change
 * meanwhile, calling copy again with the new bytes if it did. *length (may
 * be NULL) receives the block's length. A block on NVMe is fetched into
 * memory first. TM_NOT_FOUND on a miss; TM_INTERNAL when copy failed;
 * TM_FAILED_PRECONDITION on the remote path. */
typedef int (*tm_copy_fn)(void* ctx, const void* src, size_t len);
TM_API int tm_read_in_place(tm_pool* pool, const tm_key* key, tm_copy_fn copy, void* ctx,
                            size_t* length);

/* ---- presence --------------------------------------------------------- */

/* TM_OK when the pool holds *key (in any tier), TM_NOT_FOUND when not.
 * Local: never talks to the agent. */
TM_API int tm_contains(tm_pool* pool, const tm_key* key);

/* How many leading keys of keys[0, n) (a chain) the pool holds, in any
 * tier. Probes the shared index locally; when matched blocks are on NVMe
 * it also asks the agent to start bringing them into memory. Never fails;
 * 0 for NULL arguments. */
TM_API size_t tm_lookup_prefix(tm_pool* pool, const tm_key* keys, size_t n);

/* ---- removal and pinning ---------------------------------------------- */

/* Each acts on keys[0, n) and stores each key's result in codes[i] (codes
 * may be NULL): TM_OK, TM_NOT_FOUND when the pool does not hold the key,
 * or an error. Returns as tm_put_many does. A pinned block stays in
 * memory: it is never demoted, dropped or expired until unpinned.
 * tm_remove on a read-only pool: TM_PERMISSION_DENIED. */
TM_API int tm_remove(tm_pool* pool, const tm_key* keys, size_t n, int* codes);
TM_API int tm_pin(tm_pool* pool, const tm_key* keys, size_t n, int* codes);
TM_API int tm_unpin(tm_pool* pool, const tm_key* keys, size_t n, int* codes);

/* ---- errors ----------------------------------------------------------- */

/* The calling thread's message for its last int-returning call (see the
 * top of this file). Never NULL. */
TM_API const char* tm_last_error(void);

/* "OK", "NOT_FOUND", ... for a tm_status value; "UNKNOWN" otherwise.
 * A static string. */
TM_API const char* tm_status_name(int code);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* TOKENMEM_TOKENMEM_H_ */
