#include "cluster/rendezvous.h"

// Compiled in from libxxhash-dev's header, as the SDK's token keys are.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <array>
#include <cstring>
#include <vector>

namespace tokenmem::cluster {
namespace {

void PutBigEndian(uint64_t v, unsigned char* out) {
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<unsigned char>(v & 0xff);
    v >>= 8;
  }
}

}  // namespace

uint64_t RendezvousScore(std::string_view member_id, const BlockKey& key) {
  // Ids are node names (at most 253 bytes): one buffer on the stack covers them.
  constexpr size_t kStackBytes = 512;
  const size_t size = member_id.size() + 16;
  std::array<unsigned char, kStackBytes> stack;
  std::vector<unsigned char> heap;
  unsigned char* buf = stack.data();
  if (size > kStackBytes) {
    heap.resize(size);
    buf = heap.data();
  }
  if (!member_id.empty()) std::memcpy(buf, member_id.data(), member_id.size());
  PutBigEndian(key.hi, buf + member_id.size());
  PutBigEndian(key.lo, buf + member_id.size() + 8);
  return XXH3_64bits(buf, size);
}

int OwnerIndex(std::span<const std::string> member_ids, const BlockKey& key) {
  int best = -1;
  uint64_t best_score = 0;
  for (size_t i = 0; i < member_ids.size(); ++i) {
    uint64_t score = RendezvousScore(member_ids[i], key);
    if (best < 0 || score > best_score ||
        (score == best_score && member_ids[i] < member_ids[static_cast<size_t>(best)])) {
      best = static_cast<int>(i);
      best_score = score;
    }
  }
  return best;
}

}  // namespace tokenmem::cluster
