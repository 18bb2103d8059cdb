#include "nvme/uring_file.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "nvme/aligned_buffer.h"
#include "nvme/test_temp_dir.h"

namespace tokenmem::nvme {
namespace {

constexpr uint64_t kPage = 4096;

class UringFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::SupportsDirectIo(dir_.path())) {
      GTEST_SKIP() << dir_.path() << " does not support O_DIRECT";
    }
    Result<std::unique_ptr<UringQueue>> q = UringQueue::Create({.rings = 4, .depth = 8});
    ASSERT_TRUE(q.ok()) << q.status().ToString();
    queue_ = std::move(q).value();
  }

  std::unique_ptr<UringFile> Create(const char* name) {
    Result<std::unique_ptr<UringFile>> f =
        UringFile::Open(dir_.path() / name, OpenMode::kCreateExclusive, queue_);
    EXPECT_TRUE(f.ok()) << f.status().ToString();
    return f.ok() ? std::move(f).value() : nullptr;
  }

  static AlignedBuffer Filled(size_t size, uint8_t seed) {
    AlignedBuffer b = AlignedBuffer::Allocate(size).value();
    for (size_t i = 0; i < b.size(); ++i) b.data()[i] = static_cast<std::byte>(seed + i * 7);
    return b;
  }

  tokenmem::testing::TempDir dir_;
  std::shared_ptr<UringQueue> queue_;
};

TEST(AlignedBufferTest, AlignedZeroedAndMovable) {
  AlignedBuffer b = AlignedBuffer::Allocate(5000).value();
  EXPECT_EQ(b.size(), 8192u);
  EXPECT_TRUE(IsIoAligned(b.data()));
  for (std::byte x : b.span()) ASSERT_EQ(x, std::byte{0});
  std::byte* p = b.data();
  AlignedBuffer moved = std::move(b);
  EXPECT_EQ(moved.data(), p);
  EXPECT_EQ(b.data(), nullptr);  // NOLINT(bugprone-use-after-move): documented empty state
  EXPECT_EQ(AlignedBuffer::Allocate(0).value().size(), 0u);
}

TEST_F(UringFileTest, WriteReadRoundTrip) {
  auto f = Create("a");
  ASSERT_TRUE(f);
  ASSERT_TRUE(f->Preallocate(16 * kPage).ok());
  EXPECT_EQ(f->Size().value(), 16 * kPage);
  AlignedBuffer out = Filled(3 * kPage, 11);
  ASSERT_TRUE(f->WriteAt(5 * kPage, out.span()).ok());
  AlignedBuffer in = AlignedBuffer::Allocate(3 * kPage).value();
  ASSERT_TRUE(f->ReadAt(5 * kPage, in.span()).ok());
  EXPECT_EQ(std::memcmp(in.data(), out.data(), out.size()), 0);
  // Preallocated, never written bytes read as zeros.
  ASSERT_TRUE(f->ReadAt(0, in.span()).ok());
  for (std::byte x : in.span()) ASSERT_EQ(x, std::byte{0});
}

TEST_F(UringFileTest, RejectsUnalignedIo) {
  auto f = Create("a");
  ASSERT_TRUE(f);
  ASSERT_TRUE(f->Preallocate(4 * kPage).ok());
  AlignedBuffer b = AlignedBuffer::Allocate(2 * kPage).value();
  EXPECT_EQ(f->ReadAt(100, b.span()).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(f->ReadAt(0, b.span().subspan(0, 1000)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(f->WriteAt(0, b.span().subspan(512, kPage)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(f->WriteAt(0, b.span().subspan(0, 0)).code(), StatusCode::kInvalidArgument);
}

TEST_F(UringFileTest, ReadPastEndIsAnError) {
  auto f = Create("a");
  ASSERT_TRUE(f);
  ASSERT_TRUE(f->Preallocate(2 * kPage).ok());
  AlignedBuffer b = AlignedBuffer::Allocate(2 * kPage).value();
  Status s = f->ReadAt(4 * kPage, b.span());
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_NE(s.message().find("end of file"), std::string::npos) << s.ToString();
  // Straddling the end: the first half is read, then end of file.
  EXPECT_EQ(f->ReadAt(kPage, b.span()).code(), StatusCode::kIoError);
}

TEST_F(UringFileTest, OpenModes) {
  Result<std::unique_ptr<UringFile>> missing =
      UringFile::Open(dir_.path() / "missing", OpenMode::kOpenExisting, queue_);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  auto f = Create("a");
  ASSERT_TRUE(f);
  EXPECT_EQ(UringFile::Open(dir_.path() / "a", OpenMode::kCreateExclusive, queue_).status().code(),
            StatusCode::kAlreadyExists);
  EXPECT_TRUE(UringFile::Open(dir_.path() / "a", OpenMode::kOpenExisting, queue_).ok());
  EXPECT_EQ(UringFile::Open(dir_.path() / "no-dir" / "x", OpenMode::kCreateExclusive, queue_)
                .status()
                .code(),
            StatusCode::kIoError);
}

TEST_F(UringFileTest, TruncateRenameAndSync) {
  auto f = Create("a");
  ASSERT_TRUE(f);
  ASSERT_TRUE(f->Preallocate(8 * kPage).ok());
  ASSERT_TRUE(f->Preallocate(4 * kPage).ok());  // never shrinks
  EXPECT_EQ(f->Size().value(), 8 * kPage);
  ASSERT_TRUE(f->Truncate(3 * kPage).ok());
  EXPECT_EQ(f->Size().value(), 3 * kPage);
  ASSERT_TRUE(f->RenameTo(dir_.path() / "b").ok());
  EXPECT_EQ(f->path(), dir_.path() / "b");
  EXPECT_TRUE(std::filesystem::exists(dir_.path() / "b"));
  EXPECT_FALSE(std::filesystem::exists(dir_.path() / "a"));
  EXPECT_TRUE(f->Sync().ok());
}

// More reads than the ring's depth (8): the queue must keep refilling.
TEST_F(UringFileTest, ReadBatchBeyondQueueDepth) {
  constexpr size_t kReads = 100;
  auto f = Create("a");
  ASSERT_TRUE(f);
  AlignedBuffer content = Filled(kReads * kPage, 3);
  ASSERT_TRUE(f->WriteAt(0, content.span()).ok());

  AlignedBuffer in = AlignedBuffer::Allocate(kReads * kPage).value();
  std::vector<UringFile::ReadRequest> reads(kReads);
  for (size_t i = 0; i < kReads; ++i) {
    const size_t page = (i * 37) % kReads;  // scattered order
    reads[i].offset = page * kPage;
    reads[i].buffer = in.span().subspan(i * kPage, kPage);
  }
  ASSERT_TRUE(f->ReadBatch(reads).ok());
  for (size_t i = 0; i < kReads; ++i) {
    EXPECT_TRUE(reads[i].status.ok());
    ASSERT_EQ(std::memcmp(in.data() + i * kPage, content.data() + reads[i].offset, kPage), 0) << i;
  }
}

TEST_F(UringFileTest, ReadBatchReportsEachFailure) {
  auto f = Create("a");
  ASSERT_TRUE(f);
  ASSERT_TRUE(f->Preallocate(4 * kPage).ok());
  AlignedBuffer in = AlignedBuffer::Allocate(3 * kPage).value();
  std::vector<UringFile::ReadRequest> reads(3);
  reads[0] = {0, in.span().subspan(0, kPage), {}};
  reads[1] = {100 * kPage, in.span().subspan(kPage, kPage), {}};  // past the end
  reads[2] = {3 * kPage, in.span().subspan(2 * kPage, kPage), {}};
  Status s = f->ReadBatch(reads);
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_TRUE(reads[0].status.ok());
  EXPECT_EQ(reads[1].status.code(), StatusCode::kIoError);
  EXPECT_TRUE(reads[2].status.ok());
}

TEST_F(UringFileTest, QueueRejectsBadOpsBeforeAnyIo) {
  UringQueue::Op op;
  EXPECT_EQ(queue_->Run({&op, 1}).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(queue_->Run({}).ok());
  EXPECT_EQ(UringQueue::Create({.rings = 0, .depth = 8}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(UringQueue::Create({.rings = 1, .depth = 0}).status().code(),
            StatusCode::kInvalidArgument);
}

// Four threads write and read their own regions and read a shared region
// at the same time; more threads than rings would not be (4 rings here),
// so the test also runs with 8 threads to exercise waiting for a ring.
TEST_F(UringFileTest, ConcurrentReadsAndWritesFromManyThreads) {
  constexpr uint64_t kRegionPages = 16;
  constexpr int kRounds = 40;
  auto f = Create("a");
  ASSERT_TRUE(f);
  for (int threads : {4, 8}) {
    ASSERT_TRUE(f->Preallocate((threads + 1) * kRegionPages * kPage).ok());
    AlignedBuffer shared = Filled(kRegionPages * kPage, 99);
    const uint64_t shared_offset = threads * kRegionPages * kPage;
    ASSERT_TRUE(f->WriteAt(shared_offset, shared.span()).ok());

    std::atomic<int> failures{0};
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        const uint64_t base = t * kRegionPages * kPage;
        AlignedBuffer in = AlignedBuffer::Allocate(kRegionPages * kPage).value();
        for (int round = 0; round < kRounds; ++round) {
          const uint64_t pages = 1 + (round % kRegionPages);
          AlignedBuffer out = Filled(pages * kPage, static_cast<uint8_t>(t * 31 + round));
          if (!f->WriteAt(base, out.span()).ok()) ++failures;
          if (!f->ReadAt(base, in.span().subspan(0, pages * kPage)).ok()) ++failures;
          if (std::memcmp(in.data(), out.data(), pages * kPage) != 0) ++failures;
          // A batch over the shared region, several reads in flight.
          std::vector<UringFile::ReadRequest> reads(4);
          for (size_t i = 0; i < reads.size(); ++i) {
            reads[i].offset = shared_offset + i * 4 * kPage;
            reads[i].buffer = in.span().subspan(i * 4 * kPage, 4 * kPage);
          }
          if (!f->ReadBatch(reads).ok()) ++failures;
          if (std::memcmp(in.data(), shared.data(), kRegionPages * kPage) != 0) ++failures;
        }
      });
    }
    for (auto& w : workers) w.join();
    EXPECT_EQ(failures.load(), 0) << threads << " threads";
  }
}

}  // namespace
}  // namespace tokenmem::nvme
