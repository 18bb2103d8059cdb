// tokenmem::Client and tokenmem::Pool against the FakeAgent.
#include "tokenmem/client.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fake_agent.h"
#include "local/pool_impl.h"
#include "tokenmem/layout/local_protocol.h"

namespace tokenmem {
namespace {

using testing::FakeAgent;
using testing::FakeAgentOptions;

BlockKey K(uint64_t i) { return BlockKey{0xabcdef0123456789ull, i}; }

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

std::span<const std::byte> AsBytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

class TempDir {
 public:
  TempDir() {
    char templ[] = "/tmp/tmsdk.XXXXXX";
    path_ = ::mkdtemp(templ);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class ClientTest : public ::testing::Test {
 protected:
  void StartAgent(FakeAgentOptions options = {}) {
    options.socket_path = dir_.path() + "/data.sock";
    agent_ = std::make_unique<FakeAgent>(options);
    ASSERT_TRUE(agent_->Start().ok());
  }
  ClientOptions Options() {
    ClientOptions o;
    o.socket_path = dir_.path() + "/data.sock";
    o.lease_id = "lease1";
    o.lease_secret = "secret1";
    o.timeout = std::chrono::seconds(5);
    return o;
  }
  void ConnectAndAttach() {
    auto client = Client::Connect(Options());
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    client_ = std::move(client).value();
    auto pool = client_->Attach("p1");
    ASSERT_TRUE(pool.ok()) << pool.status().ToString();
    pool_ = *pool;
  }

  TempDir dir_;
  std::unique_ptr<FakeAgent> agent_;
  std::unique_ptr<Client> client_;
  std::shared_ptr<Pool> pool_;
};

TEST_F(ClientTest, AttachMapsThePool) {
  StartAgent();
  ConnectAndAttach();
  EXPECT_EQ(pool_->name(), "p1");
  EXPECT_EQ(pool_->block_size(), 4096u);
  EXPECT_FALSE(pool_->read_only());
  EXPECT_TRUE(client_->connected());
  auto again = client_->Attach("p1");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->get(), pool_.get());  // the same Pool while it lives
  auto missing = client_->Attach("nope");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound) << missing.status().ToString();
  EXPECT_EQ(client_->Attach("").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->AttachDefault().status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(ClientTest, RefusedLeases) {
  StartAgent();
  ClientOptions o = Options();
  o.lease_secret = "bad-guess";
  auto c = Client::Connect(o);
  EXPECT_EQ(c.status().code(), StatusCode::kPermissionDenied) << c.status().ToString();
  EXPECT_EQ(c.status().message().find("bad-guess"), std::string::npos);  // no secret in messages
  o = Options();
  o.lease_id = "other";
  EXPECT_EQ(Client::Connect(o).status().code(), StatusCode::kNotFound);
  o = Options();
  o.lease_secret = std::string(64, 'x');
  EXPECT_EQ(Client::Connect(o).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(ClientTest, NoAgentIsUnavailable) {
  auto c = Client::Connect(Options());
  EXPECT_EQ(c.status().code(), StatusCode::kUnavailable) << c.status().ToString();
}

TEST_F(ClientTest, ControlSocketIsNotADataSocket) {
  const std::string path = dir_.path() + "/data.sock";
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, path.c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  auto c = Client::Connect(Options());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("data socket"), std::string::npos) << c.status().ToString();
  ::close(fd);
}

TEST_F(ClientTest, PutThenGetIsByteExact) {
  StartAgent();
  ConnectAndAttach();
  const std::string data = RandomBytes(4096, 1);
  ASSERT_TRUE(pool_->Put(K(1), AsBytes(data)).ok());
  auto held = agent_->Read("p1", K(1));
  ASSERT_TRUE(held.ok());
  EXPECT_EQ(*held, data);  // and the fake checked the CRC32C the client sent

  std::string out(4096, '\0');
  auto n = pool_->Get(K(1), {reinterpret_cast<std::byte*>(out.data()), out.size()});
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 4096u);
  EXPECT_EQ(out, data);
  EXPECT_EQ(agent_->Accessed("p1", K(1)), 1);
  layout::ClientArea* area = agent_->client_area("p1");
  EXPECT_EQ(area->hits[0].load(), 1u);
  EXPECT_EQ(area->bytes_read[0].load(), 4096u);
  EXPECT_EQ(area->misses.load(), 0u);
  EXPECT_TRUE(pool_->Contains(K(1)));
  EXPECT_EQ(agent_->Requests(layout::kReserve), 1u);
  EXPECT_EQ(agent_->Requests(layout::kCommit), 1u);
  EXPECT_EQ(agent_->OpenReservations(), 0u);

  // A shorter block replaces it; the rest of the buffer is untouched.
  const std::string small = RandomBytes(100, 2);
  ASSERT_TRUE(pool_->Put(K(1), AsBytes(small)).ok());
  n = pool_->Get(K(1), {reinterpret_cast<std::byte*>(out.data()), out.size()});
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 100u);
  EXPECT_EQ(out.substr(0, 100), small);
  EXPECT_EQ(out.substr(100), data.substr(100));
}

TEST_F(ClientTest, MissesAndSizes) {
  StartAgent();
  ConnectAndAttach();
  std::string out(4096, '\0');
  auto n = pool_->Get(K(7), {reinterpret_cast<std::byte*>(out.data()), out.size()});
  EXPECT_EQ(n.status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(pool_->Contains(K(7)));
  EXPECT_EQ(agent_->client_area("p1")->misses.load(), 1u);

  const std::string big(4097, 'x');
  EXPECT_EQ(pool_->Put(K(8), AsBytes(big)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(agent_->Requests(layout::kReserve), 0u);

  const std::string data(3000, 'y');
  ASSERT_TRUE(pool_->Put(K(8), AsBytes(data)).ok());
  std::string tiny(100, '\0');
  n = pool_->Get(K(8), {reinterpret_cast<std::byte*>(tiny.data()), tiny.size()});
  EXPECT_EQ(n.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(tiny, std::string(100, '\0'));  // nothing copied
  const BlockIo item{K(8), {}};
  IoResult r;
  Status s = pool_->GetMany({&item, 1}, {&r, 1});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.code, StatusCode::kInvalidArgument);
  EXPECT_EQ(r.length, 3000u);  // what the caller needs

  // An empty block is a block.
  ASSERT_TRUE(pool_->Put(K(9), {}).ok());
  n = pool_->Get(K(9), {});
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0u);
}

TEST_F(ClientTest, ScatterGatherBatchesAreByteExact) {
  StartAgent();  // 8 slots per segment: 40 blocks span 5 segments
  ConnectAndAttach();
  constexpr size_t kBlocks = 40;
  std::vector<std::string> blocks;
  for (size_t i = 0; i < kBlocks; ++i) blocks.push_back(RandomBytes(4096 - (i % 3) * 7, 100 + i));

  // Puts: 4 pieces per block, cut at different places.
  std::vector<std::vector<IoVec>> put_pieces(kBlocks);
  std::vector<BlockIo> puts;
  for (size_t i = 0; i < kBlocks; ++i) {
    std::string& b = blocks[i];
    const size_t cuts[] = {0, 1000, 1024, 3000, b.size()};
    for (int p = 0; p < 4; ++p)
      put_pieces[i].push_back({b.data() + cuts[p], cuts[p + 1] - cuts[p]});
    puts.push_back({K(i), put_pieces[i]});
  }
  std::vector<IoResult> put_results(kBlocks);
  Status s = pool_->PutMany(puts, put_results);
  ASSERT_TRUE(s.ok()) << s.ToString();
  for (size_t i = 0; i < kBlocks; ++i) {
    EXPECT_EQ(put_results[i].code, StatusCode::kOk);
    EXPECT_EQ(put_results[i].length, blocks[i].size());
    EXPECT_EQ(*agent_->Read("p1", K(i)), blocks[i]);
  }
  EXPECT_EQ(agent_->Requests(layout::kReserve), 1u);
  EXPECT_EQ(agent_->Requests(layout::kCommit), 1u);
  EXPECT_GE(agent_->Requests(layout::kSegments), 1u);  // segments 1..4 appeared after attach

  // Gets: two "layers" per block, plus one missing key.
  std::vector<std::string> halves(2 * kBlocks, std::string(2048, '\0'));
  std::vector<std::vector<IoVec>> get_pieces(kBlocks + 1);
  std::vector<BlockIo> gets;
  for (size_t i = 0; i < kBlocks; ++i) {
    get_pieces[i] = {{halves[2 * i].data(), 2048}, {halves[2 * i + 1].data(), 2048}};
    gets.push_back({K(i), get_pieces[i]});
  }
  std::string spare(10, 'z');
  get_pieces[kBlocks] = {{spare.data(), spare.size()}};
  gets.push_back({K(999), get_pieces[kBlocks]});
  std::vector<IoResult> get_results(gets.size());
  s = pool_->GetMany(gets, get_results);
  ASSERT_TRUE(s.ok()) << s.ToString();  // a miss is not a failure
  for (size_t i = 0; i < kBlocks; ++i) {
    ASSERT_EQ(get_results[i].code, StatusCode::kOk);
    ASSERT_EQ(get_results[i].length, blocks[i].size());
    EXPECT_EQ((halves[2 * i] + halves[2 * i + 1]).substr(0, blocks[i].size()), blocks[i]);
  }
  EXPECT_EQ(get_results[kBlocks].code, StatusCode::kNotFound);
  EXPECT_EQ(spare, std::string(10, 'z'));
  EXPECT_EQ(agent_->client_area("p1")->hits[0].load(), kBlocks);
  EXPECT_EQ(agent_->client_area("p1")->misses.load(), 1u);
  EXPECT_EQ(pool_->GetMany(gets, {}).code(), StatusCode::kInvalidArgument);
}

TEST_F(ClientTest, BatchesLargerThanTheProtocolLimitAreSplit) {
  FakeAgentOptions o;
  o.block_size = 64;
  o.dram_slots = 2 * layout::kMaxBatch + 10;
  o.slots_per_segment = 512;
  o.index_capacity = 8192;
  StartAgent(o);
  ConnectAndAttach();
  const size_t n = layout::kMaxBatch + 5;
  std::vector<std::string> data;
  std::vector<IoVec> pieces(n);
  std::vector<BlockIo> items(n);
  for (size_t i = 0; i < n; ++i) data.push_back(RandomBytes(64, static_cast<uint32_t>(i)));
  for (size_t i = 0; i < n; ++i) {
    pieces[i] = {data[i].data(), 64};
    items[i] = {K(i), {&pieces[i], 1}};
  }
  std::vector<IoResult> results(n);
  ASSERT_TRUE(pool_->PutMany(items, results).ok());
  EXPECT_EQ(agent_->Requests(layout::kReserve), 2u);
  EXPECT_EQ(agent_->Requests(layout::kCommit), 2u);
  std::vector<std::string> out(n, std::string(64, '\0'));
  for (size_t i = 0; i < n; ++i) pieces[i] = {out[i].data(), 64};
  ASSERT_TRUE(pool_->GetMany(items, results).ok());
  EXPECT_EQ(out, data);
  std::vector<BlockKey> keys;
  for (size_t i = 0; i < n; ++i) keys.push_back(K(i));
  std::vector<StatusCode> codes(n);
  ASSERT_TRUE(pool_->RemoveMany(keys, codes).ok());
  EXPECT_EQ(agent_->Requests(layout::kRemove), 2u);
  EXPECT_FALSE(pool_->Contains(K(0)));
  EXPECT_FALSE(pool_->Contains(K(n - 1)));
}

TEST_F(ClientTest, ReadFindsSegmentsCreatedAfterAttach) {
  StartAgent();
  ConnectAndAttach();
  // Slots 0..7 are segment 0; the tenth block lands in segment 1, which
  // did not exist at attach.
  for (uint64_t i = 0; i < 10; ++i) {
    ASSERT_TRUE(agent_->Store("p1", K(i), RandomBytes(4096, 50 + i)).ok());
  }
  EXPECT_EQ(agent_->Segments("p1"), 2u);
  std::string out(4096, '\0');
  auto n = pool_->Get(K(9), {reinterpret_cast<std::byte*>(out.data()), out.size()});
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(out, RandomBytes(4096, 59));
  EXPECT_EQ(agent_->Requests(layout::kSegments), 1u);
  // Mapped now: no more requests.
  n = pool_->Get(K(8), {reinterpret_cast<std::byte*>(out.data()), out.size()});
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(out, RandomBytes(4096, 58));
  EXPECT_EQ(agent_->Requests(layout::kSegments), 1u);
}

TEST_F(ClientTest, NvmeBlocksAreFetchedThenRead) {
  StartAgent();
  ConnectAndAttach();
  const std::string data = RandomBytes(4000, 9);
  ASSERT_TRUE(agent_->Store("p1", K(1), data, 2).ok());
  ASSERT_TRUE(agent_->Store("p1", K(2), "dram block").ok());
  EXPECT_TRUE(pool_->Contains(K(1)));
  EXPECT_EQ(agent_->Requests(layout::kFetch), 0u);

  std::string a(4096, '\0'), b(4096, '\0'), c(4096, '\0');
  IoVec pa{a.data(), a.size()}, pb{b.data(), b.size()}, pc{c.data(), c.size()};
  std::vector<BlockIo> items = {{K(1), {&pa, 1}}, {K(2), {&pb, 1}}, {K(3), {&pc, 1}}};
  std::vector<IoResult> results(3);
  ASSERT_TRUE(pool_->GetMany(items, results).ok());
  EXPECT_EQ(results[0].code, StatusCode::kOk);
  EXPECT_EQ(a.substr(0, results[0].length), data);
  EXPECT_EQ(b.substr(0, results[1].length), "dram block");
  EXPECT_EQ(results[2].code, StatusCode::kNotFound);
  EXPECT_EQ(agent_->Requests(layout::kFetch), 1u);  // one FETCH for the batch
  EXPECT_EQ(agent_->TierOf("p1", K(1)), 0);         // promoted
  // The DRAM block is a DRAM hit; the fetched one counts as an NVMe hit.
  EXPECT_EQ(agent_->client_area("p1")->hits[0].load(), 1u);
  EXPECT_EQ(agent_->client_area("p1")->hits[2].load(), 1u);
  EXPECT_EQ(agent_->client_area("p1")->misses.load(), 1u);
}

TEST_F(ClientTest, LookupPrefixProbesLocallyAndPromotesNvme) {
  StartAgent();
  ConnectAndAttach();
  std::vector<BlockKey> chain;
  for (uint64_t i = 0; i < 10; ++i) chain.push_back(K(i));
  for (uint64_t i = 0; i < 6; ++i) {
    ASSERT_TRUE(agent_->Store("p1", K(i), "b" + std::to_string(i), i == 3 ? 2 : 0).ok());
  }
  ASSERT_TRUE(agent_->Store("p1", K(7), "after a gap").ok());
  EXPECT_EQ(pool_->LookupPrefix(chain), 6u);
  EXPECT_EQ(agent_->Requests(layout::kLookup), 1u);  // K(3) is on NVMe
  EXPECT_EQ(agent_->TierOf("p1", K(3)), 0);          // the agent promoted it
  EXPECT_EQ(pool_->LookupPrefix(chain), 6u);
  EXPECT_EQ(agent_->Requests(layout::kLookup), 1u);  // all in memory: no request
  EXPECT_EQ(pool_->LookupPrefix({}), 0u);
  EXPECT_EQ(pool_->LookupPrefix(std::span<const BlockKey>(chain).subspan(6)), 0u);
  layout::ClientArea* area = agent_->client_area("p1");
  EXPECT_EQ(area->prefix_lookups.load(), 4u);
  EXPECT_EQ(area->prefix_keys_matched.load(), 12u);
}

TEST_F(ClientTest, LocalPoolMissesNeverAskTheAgent) {
  StartAgent();
  ConnectAndAttach();
  agent_->StoreElsewhere("p1", K(1), "not a cluster pool");
  std::vector<std::byte> out(4096);
  EXPECT_EQ(pool_->Get(K(1), out).status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(pool_->Contains(K(1)));
  const std::vector<BlockKey> chain = {K(1), K(2)};
  EXPECT_EQ(pool_->LookupPrefix(chain), 0u);
  EXPECT_EQ(agent_->Requests(layout::kFetch), 0u);
  EXPECT_EQ(agent_->ElsewhereAsks(), 0u);
}

TEST_F(ClientTest, ClusterPoolMissesAreFetchedFromOtherNodesInOneRequest) {
  FakeAgentOptions o;
  o.cluster = true;
  StartAgent(o);
  ConnectAndAttach();
  const std::string far = RandomBytes(3000, 21);
  agent_->StoreElsewhere("p1", K(1), far);
  agent_->StoreElsewhere("p1", K(2), "also far");
  ASSERT_TRUE(agent_->Store("p1", K(3), "here").ok());
  ASSERT_TRUE(agent_->Store("p1", K(4), "on nvme", 2).ok());

  std::string a(4096, '\0'), b(4096, '\0'), c(4096, '\0'), d(4096, '\0'), e(4096, '\0');
  IoVec pa{a.data(), a.size()}, pb{b.data(), b.size()}, pc{c.data(), c.size()},
      pd{d.data(), d.size()}, pe{e.data(), e.size()};
  std::vector<BlockIo> items = {
      {K(1), {&pa, 1}}, {K(2), {&pb, 1}}, {K(3), {&pc, 1}}, {K(4), {&pd, 1}}, {K(5), {&pe, 1}}};
  std::vector<IoResult> results(items.size());
  ASSERT_TRUE(pool_->GetMany(items, results).ok());
  EXPECT_EQ(agent_->Requests(layout::kFetch), 1u);  // NVMe and missing keys together
  EXPECT_EQ(agent_->ElsewhereAsks(), 3u);           // K(1), K(2), K(5)
  ASSERT_EQ(results[0].code, StatusCode::kOk);
  EXPECT_EQ(a.substr(0, results[0].length), far);
  ASSERT_EQ(results[1].code, StatusCode::kOk);
  EXPECT_EQ(b.substr(0, results[1].length), "also far");
  EXPECT_EQ(c.substr(0, results[2].length), "here");
  ASSERT_EQ(results[3].code, StatusCode::kOk);
  EXPECT_EQ(d.substr(0, results[3].length), "on nvme");
  EXPECT_EQ(results[4].code, StatusCode::kNotFound);  // nowhere: a miss
  layout::ClientArea* area = agent_->client_area("p1");
  EXPECT_EQ(area->hits[0].load(), 3u);  // here, and the two brought from elsewhere
  EXPECT_EQ(area->hits[2].load(), 1u);  // the NVMe block
  EXPECT_EQ(area->misses.load(), 1u);

  // Now local: no request.
  std::vector<std::byte> out(4096);
  auto got = pool_->Get(K(1), out);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(out.data()), *got), far);
  EXPECT_EQ(agent_->Requests(layout::kFetch), 1u);

  // Contains asks once for a key missing here.
  agent_->StoreElsewhere("p1", K(6), "contained elsewhere");
  EXPECT_TRUE(pool_->Contains(K(6)));
  EXPECT_EQ(agent_->TierOf("p1", K(6)), 0);
  EXPECT_FALSE(pool_->Contains(K(7)));
  EXPECT_EQ(agent_->Requests(layout::kFetch), 3u);
}

TEST_F(ClientTest, ClusterPoolLookupPrefixFetchesTheRestOfTheChain) {
  FakeAgentOptions o;
  o.cluster = true;
  o.dram_slots = 512;
  o.slots_per_segment = 64;
  o.index_capacity = 1024;
  StartAgent(o);
  ConnectAndAttach();
  std::vector<BlockKey> chain;
  for (uint64_t i = 0; i < 400; ++i) chain.push_back(K(i));
  for (uint64_t i = 0; i < 5; ++i) ASSERT_TRUE(agent_->Store("p1", K(i), "local").ok());
  for (uint64_t i = 5; i < 105; ++i) agent_->StoreElsewhere("p1", K(i), "far");
  EXPECT_EQ(pool_->LookupPrefix(chain), 105u);
  // Growing windows: 16, 32, 64 keys; the last one holds the end.
  EXPECT_EQ(agent_->Requests(layout::kFetch), 3u);
  EXPECT_EQ(agent_->ElsewhereAsks(), 112u);
  EXPECT_EQ(agent_->TierOf("p1", K(104)), 0);
  // Now all local; the rest of the chain is nowhere: one small window.
  EXPECT_EQ(pool_->LookupPrefix(chain), 105u);
  EXPECT_EQ(agent_->Requests(layout::kFetch), 4u);
  EXPECT_EQ(agent_->ElsewhereAsks(), 128u);
  // At most 256 keys are brought in per call.
  for (uint64_t i = 105; i < 400; ++i) agent_->StoreElsewhere("p1", K(i), "far");
  EXPECT_EQ(pool_->LookupPrefix(chain), 105u + 256u);
  EXPECT_EQ(pool_->LookupPrefix(chain), 400u);
}

TEST_F(ClientTest, LookupPrefixOf8192Keys) {
  FakeAgentOptions o;
  o.block_size = 64;
  o.dram_slots = 8192;
  o.slots_per_segment = 8192;
  o.index_capacity = 16384;
  StartAgent(o);
  ConnectAndAttach();
  std::vector<BlockKey> chain;
  std::mt19937_64 rng(5);
  for (int i = 0; i < 8192; ++i) chain.push_back({rng(), rng()});
  for (const BlockKey& k : chain) ASSERT_TRUE(agent_->Store("p1", k, "x").ok());
  uint32_t matched = 0;
  auto best = std::chrono::nanoseconds::max();
  for (int round = 0; round < 5; ++round) {
    const auto t0 = std::chrono::steady_clock::now();
    matched = pool_->LookupPrefix(chain);
    best = std::min(best, std::chrono::steady_clock::now() - t0);
  }
  EXPECT_EQ(matched, 8192u);
  // Reported, not asserted: timings belong to the benchmarks.
  std::cout << "LookupPrefix(8192 keys): best of 5 = "
            << std::chrono::duration_cast<std::chrono::microseconds>(best).count() << " us\n";
}

TEST_F(ClientTest, ReaderRetriesWhenTheEntryChangesDuringTheCopy) {
  StartAgent();
  ConnectAndAttach();
  const std::string data = RandomBytes(4096, 3);
  ASSERT_TRUE(agent_->Store("p1", K(1), data).ok());
  int copies = 0;
  PoolImplForTesting(*pool_).after_copy_for_testing = [&](const BlockKey& key) {
    if (++copies == 1) agent_->BumpSeq("p1", key);
  };
  std::string out(4096, '\0');
  auto n = pool_->Get(K(1), {reinterpret_cast<std::byte*>(out.data()), out.size()});
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(copies, 2);  // the first copy was discarded
  EXPECT_EQ(out, data);

  // An entry that changes under every copy: a bounded number of tries, then a miss.
  copies = 0;
  PoolImplForTesting(*pool_).after_copy_for_testing = [&](const BlockKey& key) {
    ++copies;
    agent_->BumpSeq("p1", key);
  };
  n = pool_->Get(K(1), {reinterpret_cast<std::byte*>(out.data()), out.size()});
  EXPECT_EQ(n.status().code(), StatusCode::kNotFound);
  EXPECT_GT(copies, 1);
  EXPECT_LE(copies, 64);
  EXPECT_EQ(agent_->client_area("p1")->misses.load(), 1u);
  PoolImplForTesting(*pool_).after_copy_for_testing = nullptr;
}

TEST_F(ClientTest, ConcurrentRewritesAreNeverSeenTorn) {
  StartAgent();
  ConnectAndAttach();
  const std::string a(4096, 'a'), b(4096, 'b');
  ASSERT_TRUE(agent_->Store("p1", K(1), a).ok());
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; !stop.load(); ++i) {
      agent_->Rewrite("p1", K(1), i % 2 ? a : b);
      // Room for readers to finish a copy now and then (slow sanitizer builds).
      if (i % 4 == 0) std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  });
  std::atomic<int> torn{0}, reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&] {
      std::string out(4096, '\0');
      for (int i = 0; i < 3000; ++i) {
        auto n = pool_->Get(K(1), {reinterpret_cast<std::byte*>(out.data()), out.size()});
        if (!n.ok()) continue;  // gave up after retries: a miss, allowed
        reads.fetch_add(1);
        if (out != a && out != b) torn.fetch_add(1);
      }
    });
  }
  for (auto& r : readers) r.join();
  stop.store(true);
  writer.join();
  EXPECT_EQ(torn.load(), 0);
  EXPECT_GT(reads.load(), 0);
}

TEST_F(ClientTest, ReadOnlyLeaseMapsReadOnly) {
  FakeAgentOptions o;
  o.read_only = true;
  StartAgent(o);
  ASSERT_TRUE(agent_->Store("p1", K(1), "readable").ok());
  ConnectAndAttach();
  EXPECT_TRUE(pool_->read_only());
  std::string out(16, '\0');
  auto n = pool_->Get(K(1), {reinterpret_cast<std::byte*>(out.data()), out.size()});
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(out.substr(0, *n), "readable");
  EXPECT_EQ(pool_->Put(K(2), AsBytes(out)).code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(pool_->Remove(K(1)).code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(agent_->Requests(layout::kReserve), 0u);
  EXPECT_EQ(agent_->Requests(layout::kRemove), 0u);

  // The segment is mapped without write permission.
  std::byte* addr = nullptr;
  uint32_t segment = 0;
  ASSERT_EQ(PoolImplForTesting(*pool_).map->Locate(0, 0, 8, &addr, &segment),
            client_internal::PoolMap::Where::kMapped);
  std::ifstream maps("/proc/self/maps");
  std::string line, perms;
  const auto a = reinterpret_cast<uintptr_t>(addr);
  while (std::getline(maps, line)) {
    std::istringstream in(line);
    std::string range;
    in >> range >> perms;
    const uintptr_t lo = std::stoull(range.substr(0, range.find('-')), nullptr, 16);
    const uintptr_t hi = std::stoull(range.substr(range.find('-') + 1), nullptr, 16);
    if (a >= lo && a < hi) break;
    perms.clear();
  }
  EXPECT_EQ(perms, "r--s");
}

TEST_F(ClientTest, AgentDeathGivesUnavailableAndMappedReadsGoOn) {
  StartAgent();
  ConnectAndAttach();
  const std::string data = RandomBytes(4096, 4);
  ASSERT_TRUE(pool_->Put(K(1), AsBytes(data)).ok());
  agent_->DropConnections();
  Status s = pool_->Put(K(2), AsBytes(data));
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  EXPECT_FALSE(client_->connected());
  EXPECT_EQ(pool_->Remove(K(1)).code(), StatusCode::kUnavailable);
  EXPECT_EQ(client_->Attach("p2").status().code(), StatusCode::kUnavailable);
  std::string out(4096, '\0');
  auto n = pool_->Get(K(1), {reinterpret_cast<std::byte*>(out.data()), out.size()});
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(out, data);
  EXPECT_EQ(pool_->LookupPrefix(std::vector<BlockKey>{K(1), K(2)}), 1u);

  // A new client gets going again.
  auto client = Client::Connect(Options());
  ASSERT_TRUE(client.ok());
  auto pool = (*client)->Attach("p1");
  ASSERT_TRUE(pool.ok());
  EXPECT_TRUE((*pool)->Put(K(2), AsBytes(data)).ok());
}

TEST_F(ClientTest, SilentAgentTimesOut) {
  StartAgent();
  ClientOptions o = Options();
  o.timeout = std::chrono::milliseconds(200);
  auto client = Client::Connect(o);
  ASSERT_TRUE(client.ok());
  auto pool = (*client)->Attach("p1");
  ASSERT_TRUE(pool.ok());
  agent_->SetSilent(true);
  const auto t0 = std::chrono::steady_clock::now();
  Status s = (*pool)->Put(K(1), AsBytes("x"));
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  EXPECT_FALSE((*client)->connected());
  EXPECT_EQ((*pool)->Pin(K(1)).code(), StatusCode::kUnavailable);  // at once: the session is over
}

TEST_F(ClientTest, AgentGoneEntirely) {
  StartAgent();
  ConnectAndAttach();
  agent_->Stop();
  EXPECT_EQ(pool_->Put(K(1), AsBytes("x")).code(), StatusCode::kUnavailable);
  EXPECT_EQ(Client::Connect(Options()).status().code(), StatusCode::kUnavailable);
}

TEST_F(ClientTest, RemovePinUnpin) {
  StartAgent();
  ConnectAndAttach();
  ASSERT_TRUE(pool_->Put(K(1), AsBytes("one")).ok());
  ASSERT_TRUE(pool_->Put(K(2), AsBytes("two")).ok());
  EXPECT_TRUE(pool_->Pin(K(1)).ok());
  EXPECT_TRUE(agent_->Pinned("p1", K(1)));
  EXPECT_EQ(pool_->Pin(K(5)).code(), StatusCode::kNotFound);
  EXPECT_TRUE(pool_->Unpin(K(1)).ok());
  EXPECT_FALSE(agent_->Pinned("p1", K(1)));
  EXPECT_TRUE(pool_->Remove(K(1)).ok());
  EXPECT_FALSE(pool_->Contains(K(1)));
  EXPECT_EQ(pool_->Remove(K(1)).code(), StatusCode::kNotFound);

  std::vector<BlockKey> keys = {K(2), K(1)};
  std::vector<StatusCode> codes(2);
  EXPECT_TRUE(pool_->PinMany(keys, codes).ok());  // a miss is no failure
  EXPECT_EQ(codes[0], StatusCode::kOk);
  EXPECT_EQ(codes[1], StatusCode::kNotFound);
  EXPECT_TRUE(pool_->UnpinMany(keys, codes).ok());
  EXPECT_TRUE(pool_->RemoveMany(keys, codes).ok());
  EXPECT_EQ(codes[0], StatusCode::kOk);
  EXPECT_EQ(codes[1], StatusCode::kNotFound);
  EXPECT_EQ(pool_->RemoveMany(keys, {}).code(), StatusCode::kInvalidArgument);
}

TEST_F(ClientTest, PartialGrantsFailTheRest) {
  FakeAgentOptions o;
  o.max_grant = 3;
  StartAgent(o);
  ConnectAndAttach();
  std::vector<std::string> data(5, std::string(100, 'q'));
  std::vector<IoVec> pieces(5);
  std::vector<BlockIo> items(5);
  for (size_t i = 0; i < 5; ++i) {
    pieces[i] = {data[i].data(), data[i].size()};
    items[i] = {K(i), {&pieces[i], 1}};
  }
  std::vector<IoResult> results(5);
  Status s = pool_->PutMany(items, results);
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(results[i].code, i < 3 ? StatusCode::kOk : StatusCode::kResourceExhausted) << i;
  }
  EXPECT_TRUE(pool_->Contains(K(2)));
  EXPECT_FALSE(pool_->Contains(K(3)));
  EXPECT_EQ(agent_->OpenReservations(), 0u);
}

TEST_F(ClientTest, FullPoolIsResourceExhausted) {
  FakeAgentOptions o;
  o.dram_slots = 2;
  StartAgent(o);
  ConnectAndAttach();
  ASSERT_TRUE(pool_->Put(K(1), AsBytes("a")).ok());
  ASSERT_TRUE(pool_->Put(K(2), AsBytes("b")).ok());
  Status s = pool_->Put(K(3), AsBytes("c"));
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s.ToString();
  EXPECT_NE(s.message().find("pool is full"), std::string::npos) << s.ToString();
}

TEST_F(ClientTest, ManyThreadsShareOneClient) {
  StartAgent();
  ConnectAndAttach();
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::string out(4096, '\0');
      for (int i = 0; i < 40; ++i) {
        const BlockKey key = K(static_cast<uint64_t>(t * 1000 + i));
        const std::string data = RandomBytes(512, static_cast<uint32_t>(t * 1000 + i));
        if (!pool_->Put(key, AsBytes(data)).ok()) failures.fetch_add(1);
        auto n = pool_->Get(key, {reinterpret_cast<std::byte*>(out.data()), out.size()});
        if (!n.ok() || out.substr(0, *n) != data) failures.fetch_add(1);
        if (!pool_->Remove(key).ok()) failures.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST_F(ClientTest, PoolOutlivesItsClient) {
  StartAgent();
  ConnectAndAttach();
  client_.reset();
  ASSERT_TRUE(pool_->Put(K(1), AsBytes("still here")).ok());
  std::string out(32, '\0');
  auto n = pool_->Get(K(1), {reinterpret_cast<std::byte*>(out.data()), out.size()});
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(out.substr(0, *n), "still here");
}

class EnvTest : public ClientTest {
 protected:
  void SetUp() override {
    for (const char* v : {kEnvAgentSocket, kEnvLease, kEnvDefaultPool, kEnvQuotaBytes})
      ::unsetenv(v);
  }
  void TearDown() override { SetUp(); }
};

TEST_F(EnvTest, MissingAndMalformedVariablesAreNamed) {
  auto o = Client::OptionsFromEnv();
  EXPECT_EQ(o.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(o.status().message().find("TOKENMEM_AGENT_SOCKET"), std::string::npos);

  ::setenv(kEnvAgentSocket, "/nonexistent/data.sock", 1);
  o = Client::OptionsFromEnv();
  EXPECT_NE(o.status().message().find("TOKENMEM_LEASE"), std::string::npos)
      << o.status().ToString();

  for (const char* bad : {"nocolon", ":secret", "id:"}) {
    ::setenv(kEnvLease, bad, 1);
    o = Client::OptionsFromEnv();
    EXPECT_EQ(o.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(o.status().message().find("TOKENMEM_LEASE"), std::string::npos);
    EXPECT_EQ(o.status().message().find("secret"), std::string::npos) << o.status().ToString();
  }
  ::setenv(kEnvLease, "id:s3cr3t:with:colons", 1);
  ::setenv(kEnvQuotaBytes, "12GiB", 1);
  o = Client::OptionsFromEnv();
  EXPECT_NE(o.status().message().find("TOKENMEM_QUOTA_BYTES"), std::string::npos);
  ::setenv(kEnvQuotaBytes, "99999999999999999999999", 1);
  EXPECT_FALSE(Client::OptionsFromEnv().ok());
  ::setenv(kEnvQuotaBytes, "1073741824", 1);
  o = Client::OptionsFromEnv();
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->lease_id, "id");
  EXPECT_EQ(o->lease_secret, "s3cr3t:with:colons");
  EXPECT_EQ(o->quota_bytes, 1073741824u);
  EXPECT_EQ(Client::FromEnv().status().code(), StatusCode::kUnavailable);
}

TEST_F(EnvTest, FromEnvConnectsAndAttachesTheDefaultPool) {
  StartAgent();
  ::setenv(kEnvAgentSocket, (dir_.path() + "/data.sock").c_str(), 1);
  ::setenv(kEnvLease, "lease1:secret1", 1);
  ::setenv(kEnvDefaultPool, "p1", 1);
  auto client = Client::FromEnv();
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  EXPECT_EQ((*client)->options().default_pool, "p1");
  auto pool = (*client)->AttachDefault();
  ASSERT_TRUE(pool.ok());
  EXPECT_EQ((*pool)->name(), "p1");
}

}  // namespace
}  // namespace tokenmem
