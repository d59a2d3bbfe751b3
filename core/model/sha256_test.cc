#include "core/model/sha256.h"

#include <string>

#include "core/model/file_io.h"
#include "gtest/gtest.h"

namespace squeeze::core::model {
namespace {

TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(Sha256Hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256Test, StreamingEqualsOneShotAndResetsAfterFinal) {
  Sha256 hash;
  hash.Update("a");
  hash.Update("");
  hash.Update("bc");
  EXPECT_EQ(hash.FinalHex(), Sha256Hex("abc"));
  hash.Update("abc");
  EXPECT_EQ(hash.FinalHex(), Sha256Hex("abc"));
}

TEST(Sha256Test, FileSpanningSeveralChunks) {
  std::string bytes;
  for (int i = 0; i < (3 << 20) + 17; ++i) bytes.push_back(static_cast<char>(i * 31));
  const std::string path = ::testing::TempDir() + "/sha256_test.bin";
  ASSERT_TRUE(WriteFileAtomically(path, bytes).ok());
  EXPECT_EQ(*Sha256File(path), Sha256Hex(bytes));
  EXPECT_EQ(Sha256File(path + ".missing").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace squeeze::core::model
