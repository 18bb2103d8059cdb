/* The client C ABI (tokenmem/tokenmem.h) from C, against the fake agent
 * started as a child process (argv[1]: the tokenmem_fake_agent binary).
 * Exits 0 when every check passed; prints each failure. */
#define _GNU_SOURCE
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tokenmem/tokenmem.h"

extern char** environ;

static int failures = 0;

#define CHECK(cond)                                                                            \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, __LINE__, #cond, \
              tm_last_error());                                                                \
      ++failures;                                                                              \
    }                                                                                          \
  } while (0)

static char dir[] = "/tmp/tmsdkc.XXXXXX";
static char socket_path[256];
static pid_t agent_pid = -1;
static int agent_stdin = -1;

/* Starts the fake agent and waits for its "ready" line. */
static int start_agent(const char* binary) {
  int in_pipe[2], out_pipe[2];
  if (pipe(in_pipe) != 0 || pipe(out_pipe) != 0) return -1;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_pipe[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_addclose(&actions, in_pipe[1]);
  posix_spawn_file_actions_addclose(&actions, out_pipe[0]);
  char* argv[] = {(char*)binary, "--socket",       socket_path,
                  "--lease",     "lease1:secret1", "--pool",
                  "p1",          "--nvme-block",   "11112222333344440000000000000007=from nvme",
                  NULL};
  int rc = posix_spawn(&agent_pid, binary, &actions, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  close(in_pipe[0]);
  close(out_pipe[1]);
  if (rc != 0) return -1;
  agent_stdin = in_pipe[1];
  char line[16] = {0};
  size_t got = 0;
  while (got < 6) {
    ssize_t n = read(out_pipe[0], line + got, 6 - got);
    if (n <= 0) break;
    got += (size_t)n;
  }
  close(out_pipe[0]);
  return strncmp(line, "ready\n", 6) == 0 ? 0 : -1;
}

static void stop_agent(void) {
  if (agent_pid <= 0) return;
  close(agent_stdin);
  int status;
  waitpid(agent_pid, &status, 0);
  agent_pid = -1;
}

static tm_key key(uint64_t i) {
  tm_key k = {0x1111222233334444ull, i};
  return k;
}

static void fill(char* buf, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; ++i) buf[i] = (char)(seed * 31u + i * 7u);
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s FAKE_AGENT_BINARY\n", argv[0]);
    return 2;
  }
  if (mkdtemp(dir) == NULL) return 2;
  snprintf(socket_path, sizeof(socket_path), "%s/data.sock", dir);
  if (start_agent(argv[1]) != 0) {
    fprintf(stderr, "cannot start the fake agent\n");
    return 2;
  }

  /* Arguments and refusals. */
  tm_client* client = NULL;
  CHECK(tm_client_connect(NULL, "a", "b", 0, &client) == TM_INVALID_ARGUMENT);
  CHECK(strlen(tm_last_error()) > 0);
  CHECK(tm_client_connect(socket_path, "lease1", "nope", 0, &client) == TM_PERMISSION_DENIED);
  CHECK(client == NULL);
  CHECK(strcmp(tm_status_name(TM_NOT_FOUND), "NOT_FOUND") == 0);
  CHECK(strcmp(tm_status_name(99), "UNKNOWN") == 0);

  /* The environment. */
  unsetenv("TOKENMEM_AGENT_SOCKET");
  CHECK(tm_client_from_env(&client) == TM_INVALID_ARGUMENT);
  CHECK(strstr(tm_last_error(), "TOKENMEM_AGENT_SOCKET") != NULL);
  setenv("TOKENMEM_AGENT_SOCKET", socket_path, 1);
  setenv("TOKENMEM_LEASE", "lease1:secret1", 1);
  setenv("TOKENMEM_DEFAULT_POOL", "p1", 1);
  CHECK(tm_client_from_env(&client) == TM_OK);
  CHECK(strcmp(tm_last_error(), "") == 0);
  tm_pool* pool = NULL;
  CHECK(tm_pool_attach(client, NULL, &pool) == TM_OK); /* the default pool */
  tm_pool_close(pool);
  tm_client_close(client);

  CHECK(tm_client_connect(socket_path, "lease1", "secret1", 5000, &client) == TM_OK);
  CHECK(tm_client_connected(client) == 1);
  CHECK(tm_pool_attach(client, "nope", &pool) == TM_NOT_FOUND);
  CHECK(tm_pool_attach(client, "p1", &pool) == TM_OK);
  CHECK(tm_pool_block_size(pool) == 4096);
  CHECK(tm_pool_read_only(pool) == 0);

  /* Single blocks. */
  char data[4096], out[4096];
  size_t len = 99;
  fill(data, sizeof(data), 1);
  tm_key k1 = key(1);
  CHECK(tm_put(pool, &k1, data, sizeof(data)) == TM_OK);
  CHECK(tm_get(pool, &k1, out, sizeof(out), &len) == TM_OK);
  CHECK(len == sizeof(data) && memcmp(out, data, len) == 0);
  CHECK(tm_get(pool, &k1, out, 10, &len) == TM_INVALID_ARGUMENT);
  CHECK(len == sizeof(data));
  tm_key missing = key(99);
  CHECK(tm_get(pool, &missing, out, sizeof(out), &len) == TM_NOT_FOUND);
  CHECK(len == 0);
  CHECK(tm_contains(pool, &k1) == TM_OK);
  CHECK(tm_contains(pool, &missing) == TM_NOT_FOUND);
  CHECK(tm_put(pool, &k1, data, 4097) == TM_INVALID_ARGUMENT);

  /* A block on NVMe is fetched. */
  tm_key nvme = key(7);
  CHECK(tm_get(pool, &nvme, out, sizeof(out), &len) == TM_OK);
  CHECK(len == 9 && memcmp(out, "from nvme", 9) == 0);

  /* Scatter-gather: 3 blocks of 3 pieces each; read back in 2 pieces each. */
  enum { kBlocks = 3 };
  static char blocks[kBlocks][3000];
  tm_key keys[kBlocks + 1];
  size_t iovcnt[kBlocks + 1];
  tm_iovec iov[3 * kBlocks + 2];
  int codes[kBlocks + 1];
  size_t lengths[kBlocks + 1];
  size_t at = 0;
  for (int b = 0; b < kBlocks; ++b) {
    fill(blocks[b], sizeof(blocks[b]), 10u + (unsigned)b);
    keys[b] = key(100 + (uint64_t)b);
    iovcnt[b] = 3;
    iov[at++] = (tm_iovec){blocks[b], 1000};
    iov[at++] = (tm_iovec){blocks[b] + 1000, 1};
    iov[at++] = (tm_iovec){blocks[b] + 1001, 1999};
  }
  CHECK(tm_put_many(pool, kBlocks, keys, iovcnt, iov, codes, lengths) == TM_OK);
  for (int b = 0; b < kBlocks; ++b) CHECK(codes[b] == TM_OK && lengths[b] == 3000);

  static char back[kBlocks][2][2048];
  at = 0;
  for (int b = 0; b < kBlocks; ++b) {
    iovcnt[b] = 2;
    iov[at++] = (tm_iovec){back[b][0], 2048};
    iov[at++] = (tm_iovec){back[b][1], 2048};
  }
  keys[kBlocks] = missing;
  iovcnt[kBlocks] = 1;
  iov[at++] = (tm_iovec){out, sizeof(out)};
  CHECK(tm_get_many(pool, kBlocks + 1, keys, iovcnt, iov, codes, lengths) == TM_OK);
  for (int b = 0; b < kBlocks; ++b) {
    CHECK(codes[b] == TM_OK && lengths[b] == 3000);
    CHECK(memcmp(back[b][0], blocks[b], 2048) == 0);
    CHECK(memcmp(back[b][1], blocks[b] + 2048, 3000 - 2048) == 0);
  }
  CHECK(codes[kBlocks] == TM_NOT_FOUND && lengths[kBlocks] == 0);
  CHECK(tm_get_many(pool, 1, NULL, iovcnt, iov, codes, lengths) == TM_INVALID_ARGUMENT);

  /* Prefix lookups, pins, removal. */
  CHECK(tm_lookup_prefix(pool, keys, kBlocks + 1) == kBlocks);
  CHECK(tm_lookup_prefix(pool, keys, 0) == 0);
  CHECK(tm_pin(pool, keys, 2, codes) == TM_OK);
  CHECK(codes[0] == TM_OK && codes[1] == TM_OK);
  CHECK(tm_unpin(pool, keys, 2, NULL) == TM_OK);
  tm_key two[2] = {keys[0], missing};
  CHECK(tm_remove(pool, two, 2, codes) == TM_OK);
  CHECK(codes[0] == TM_OK && codes[1] == TM_NOT_FOUND);
  CHECK(tm_contains(pool, &keys[0]) == TM_NOT_FOUND);

  /* The agent goes away: errors, no hang; mapped blocks stay readable. */
  stop_agent();
  CHECK(tm_put(pool, &k1, data, 10) == TM_UNAVAILABLE);
  CHECK(tm_client_connected(client) == 0);
  CHECK(tm_get(pool, &k1, out, sizeof(out), &len) == TM_OK);
  CHECK(len == sizeof(data) && memcmp(out, data, len) == 0);

  tm_client_close(client);
  CHECK(tm_get(pool, &k1, out, sizeof(out), &len) == TM_OK); /* the pool outlives the client */
  tm_pool_close(pool);
  tm_pool_close(NULL);
  tm_client_close(NULL);

  unlink(socket_path);
  rmdir(dir);
  if (failures == 0) printf("c_client_test: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
