// Key ownership by rendezvous (highest random weight) hashing.
//
// Every agent computes the owner of a key from the same list of live member
// ids and gets the same answer, with no coordination: each member scores the
// key and the highest score wins. Removing a member moves only the keys it
// owned (each to its runner-up); adding one takes about 1/n of the keys, each
// from a single previous owner. Pure functions, safe from any thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "tokenmem/common/block_key.h"

namespace tokenmem::cluster {

// XXH3-64 (seed 0) of the member id's bytes followed by the key's 16 bytes
// (hi then lo, each big-endian). Fixed across machines, processes and
// versions of this code: it decides where blocks live, so changing it moves
// every key (the tests pin expected values).
uint64_t RendezvousScore(std::string_view member_id, const BlockKey& key);

// Index in `member_ids` of the key's owner: the highest RendezvousScore;
// among equal scores the smallest id (then the first index, for ids listed
// twice). The order of `member_ids` does not change which id wins. -1 when
// the list is empty.
int OwnerIndex(std::span<const std::string> member_ids, const BlockKey& key);

}  // namespace tokenmem::cluster
