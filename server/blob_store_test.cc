#include "server/blob_store.h"

#include "core/model/file_io.h"
#include "core/model/sha256.h"
#include "gtest/gtest.h"
#include "tests/test_util/temp_dir.h"

namespace squeeze::server {
namespace {

TEST(BlobStoreTest, UploadLandsAtItsDigest) {
  testing::TempDir dir;
  auto store = BlobStore::Open(dir.path());
  ASSERT_TRUE(store.ok());
  std::string content = "hello squeeze";
  auto upload = (*store)->BeginUpload(content.size());
  ASSERT_TRUE(upload.ok());
  ASSERT_TRUE((*upload)->Append(content.substr(0, 5)).ok());
  ASSERT_TRUE((*upload)->Append(content.substr(5)).ok());
  auto digest = (*upload)->Finish(core::model::Sha256Hex(content));
  ASSERT_TRUE(digest.ok()) << digest.status();
  EXPECT_TRUE((*store)->Contains(*digest));
  EXPECT_EQ(*core::model::ReadFile((*store)->PathFor(*digest)), content);
  EXPECT_EQ(*(*store)->SizeOf(*digest), static_cast<int64_t>(content.size()));
}

TEST(BlobStoreTest, RejectsOversizeShortAndWrongDigest) {
  testing::TempDir dir;
  auto store = *BlobStore::Open(dir.path());
  auto too_many = *store->BeginUpload(3);
  EXPECT_EQ(too_many->Append("abcd").code(), absl::StatusCode::kResourceExhausted);

  auto short_upload = *store->BeginUpload(10);
  ASSERT_TRUE(short_upload->Append("abc").ok());
  EXPECT_EQ(short_upload->Finish("").status().code(), absl::StatusCode::kInvalidArgument);

  auto wrong = *store->BeginUpload(3);
  ASSERT_TRUE(wrong->Append("abc").ok());
  auto result = wrong->Finish(std::string(64, '0'));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(store->Contains(core::model::Sha256Hex("abc")));
}

TEST(BlobStoreTest, Sha256HexValidation) {
  EXPECT_TRUE(IsSha256Hex(std::string(64, 'a')));
  EXPECT_FALSE(IsSha256Hex(std::string(64, 'A')));
  EXPECT_FALSE(IsSha256Hex(std::string(63, 'a')));
  EXPECT_FALSE(IsSha256Hex("../../etc/passwd"));
}

}  // namespace
}  // namespace squeeze::server
