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

namespace tokenmem::pool {
namespace {

TEST(LeaseNamespaceTest, PoolsAdmitOnlyTheirNamespaces) {
  LeaseTable table;
  auto in_a = table.Create({.quota_bytes = 1, .namespace_name = "team-a"}).value().account;
  auto none = table.Create({.quota_bytes = 1}).value().account;
  auto pending = table.Create({.quota_bytes = 1, .namespace_pending = true}).value().account;
  const std::vector<std::string> a_and_c = {"team-a", "team-c"}, only_b = {"team-b"};
  EXPECT_TRUE(in_a->AdmittedTo("p", {}).ok());  // no list: everyone
  EXPECT_TRUE(none->AdmittedTo("p", {}).ok());
  EXPECT_TRUE(in_a->AdmittedTo("p", a_and_c).ok());
  Status denied = in_a->AdmittedTo("p", only_b);
  EXPECT_EQ(denied.code(), StatusCode::kPermissionDenied);
  EXPECT_NE(denied.message().find("team-b"), std::string::npos) << denied.message();
  EXPECT_NE(denied.message().find("'team-a'"), std::string::npos) << denied.message();
  EXPECT_EQ(none->AdmittedTo("p", only_b).code(), StatusCode::kPermissionDenied);
  Status wait = pending->AdmittedTo("p", only_b);
  EXPECT_EQ(wait.code(), StatusCode::kUnavailable);
  EXPECT_NE(wait.message().find("retry"), std::string::npos) << wait.message();
}

TEST(LeaseNamespaceTest, BindGivesANamespaceOnce) {
  LeaseTable table;
  auto lease = table.Create({.quota_bytes = 1, .namespace_pending = true}).value().account;
  EXPECT_TRUE(lease->namespace_pending());
  EXPECT_EQ(table.Bind(lease->id(), "Not_A_Name").status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(lease->namespace_name().empty());
  auto bound = table.Bind(lease->id(), "team-b");
  ASSERT_TRUE(bound.ok()) << bound.status().ToString();
  EXPECT_EQ(lease->namespace_name(), "team-b");
  EXPECT_FALSE(lease->namespace_pending());
  EXPECT_TRUE(lease->AdmittedTo("p", {"team-b"}).ok());
  EXPECT_TRUE(table.Bind(lease->id(), "team-b").ok());  // the same again
  EXPECT_EQ(table.Bind(lease->id(), "team-c").status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(lease->namespace_name(), "team-b");
  EXPECT_EQ(table.Bind("lease-nope", "team-b").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(table.Create({.quota_bytes = 1, .namespace_name = "-bad"}).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(LeaseNamespaceTest, NamespacesSurviveARestartAndOldFilesStillLoad) {
  testing::TempDir dir;
  const auto file = dir / "leases";
  std::string bound_id, pending_id;
  {
    LeaseTable table;
    ASSERT_TRUE(table.PersistTo(file).ok());
    bound_id = table.Create({.quota_bytes = 1, .namespace_pending = true}).value().account->id();
    pending_id = table.Create({.quota_bytes = 1, .namespace_pending = true}).value().account->id();
    ASSERT_TRUE(table.Bind(bound_id, "inference").ok());
  }
  {
    LeaseTable table;
    ASSERT_TRUE(table.PersistTo(file).ok());
    for (const auto& lease : table.List()) {
      if (lease->id() == bound_id) {
        EXPECT_EQ(lease->namespace_name(), "inference");
        EXPECT_FALSE(lease->namespace_pending());
      } else {
        EXPECT_EQ(lease->id(), pending_id);
        EXPECT_TRUE(lease->namespace_name().empty());
        EXPECT_TRUE(lease->namespace_pending());
      }
    }
  }
  // A file written before leases had namespaces.
  std::ofstream(file) << "v1\tlease-0123\tsecret\t4096\t0\t1700000000\t\t706f64\n";
  LeaseTable table;
  ASSERT_TRUE(table.PersistTo(file).ok());
  ASSERT_EQ(table.size(), 1u);
  EXPECT_TRUE(table.List()[0]->namespace_name().empty());
  EXPECT_EQ(table.List()[0]->options().owner, "pod");
}

}  // namespace
}  // namespace tokenmem::pool
