#include "pool/lease_table.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tokenmem/common/testing/temp_dir.h"

namespace tokenmem::pool {
namespace {

TEST(LeaseTableTest, CreateAuthenticateRelease) {
  LeaseTable table;
  auto lease = table.Create({.quota_bytes = 1000, .pools = {"a"}});
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ(lease->secret.size(), 32u);
  const std::string id = lease->account->id();
  EXPECT_TRUE(table.Authenticate(id, lease->secret, "a", true).ok());
  EXPECT_EQ(table.Authenticate(id, "wrong", "a", true).status().code(),
            StatusCode::kPermissionDenied);
  EXPECT_EQ(table.Authenticate(id, lease->secret, "b", false).status().code(),
            StatusCode::kPermissionDenied);
  EXPECT_TRUE(table.Authenticate("lease-nope", lease->secret, "a", false).status().IsNotFound());
  ASSERT_TRUE(table.Release(id).ok());
  EXPECT_TRUE(lease->account->released());
  EXPECT_TRUE(table.Authenticate(id, lease->secret, "a", false).status().IsNotFound());
  EXPECT_TRUE(table.Release(id).IsNotFound());
}

TEST(LeaseTableTest, SecretsAreUniqueAndQuotaIsRequired) {
  LeaseTable table;
  auto a = table.Create({.quota_bytes = 1});
  auto b = table.Create({.quota_bytes = 1});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->secret, b->secret);
  EXPECT_NE(a->account->id(), b->account->id());
  EXPECT_EQ(table.Create({.quota_bytes = 0}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(table.size(), 2u);
}

TEST(LeaseTableTest, ReadOnlyLeaseCannotWrite) {
  LeaseTable table;
  auto lease = table.Create({.quota_bytes = 10, .read_only = true});
  ASSERT_TRUE(lease.ok());
  EXPECT_TRUE(table.Authenticate(lease->account->id(), lease->secret, "any", false).ok());
  EXPECT_EQ(table.Authenticate(lease->account->id(), lease->secret, "any", true).status().code(),
            StatusCode::kPermissionDenied);
}

TEST(LeaseAccountTest, ChargesStopAtTheQuota) {
  LeaseAccount account("l", "s", {.quota_bytes = 100}, 0);
  EXPECT_TRUE(account.TryCharge(60));
  EXPECT_FALSE(account.TryCharge(41));
  EXPECT_EQ(account.used_bytes(), 60u);
  EXPECT_TRUE(account.TryCharge(40));
  account.Refund(100);
  EXPECT_EQ(account.used_bytes(), 0u);
  account.Refund(5);  // never below zero
  EXPECT_EQ(account.used_bytes(), 0u);
}

}  // namespace
}  // namespace tokenmem::pool

namespace tokenmem::pool {
namespace {

TEST(LeaseTablePersistenceTest, LeasesSurviveANewTable) {
  testing::TempDir dir;
  const auto file = dir / "leases";
  std::string id, secret;
  {
    LeaseTable table;
    ASSERT_TRUE(table.PersistTo(file).ok());
    auto lease = table.Create({.quota_bytes = 4096,
                               .pools = {"a", "b"},
                               .read_only = true,
                               .owner = "pod\tname\nwith odd bytes"});
    ASSERT_TRUE(lease.ok());
    id = lease->account->id();
    secret = lease->secret;
    auto gone = table.Create({.quota_bytes = 1});
    ASSERT_TRUE(gone.ok());
    ASSERT_TRUE(table.Release(gone->account->id()).ok());
  }
  EXPECT_EQ(std::filesystem::status(file).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  LeaseTable table;
  ASSERT_TRUE(table.PersistTo(file).ok());
  ASSERT_EQ(table.size(), 1u);
  auto back = table.Authenticate(id, secret, "b", false);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ((*back)->options().quota_bytes, 4096u);
  EXPECT_TRUE((*back)->options().read_only);
  EXPECT_EQ((*back)->options().owner, "pod\tname\nwith odd bytes");
  EXPECT_EQ((*back)->options().pools, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(table.Authenticate(id, "wrong", "b", false).status().code(),
            StatusCode::kPermissionDenied);
}

TEST(LeaseTablePersistenceTest, DamagedFileIsRefusedWithTheLine) {
  testing::TempDir dir;
  std::ofstream(dir / "leases") << "v1\tlease-1\tsecret\t100\t0\t5\t\t\nv1\tlease-2\n";
  LeaseTable table;
  Status s = table.PersistTo(dir / "leases");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find(":2:"), std::string::npos) << s.ToString();
}

TEST(LeaseTablePersistenceTest, UnwritableFileRefusesNewLeases) {
  LeaseTable table;
  EXPECT_FALSE(table.PersistTo("/nonexistent-dir/leases").ok());
}

}  // namespace
}  // namespace tokenmem::pool
