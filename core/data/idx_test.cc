#include "core/data/idx.h"

#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "core/data/test_util/deflate.h"
#include "core/model/file_io.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace squeeze::core::data {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string BigEndian32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
          static_cast<char>(v >> 8), static_cast<char>(v)};
}

std::string IdxHeader(uint8_t type, const std::vector<uint32_t>& dims) {
  std::string out = {0, 0, static_cast<char>(type),
                     static_cast<char>(dims.size())};
  for (uint32_t d : dims) out += BigEndian32(d);
  return out;
}

TEST(IdxTest, ParsesUnsignedBytes) {
  const std::string file = IdxHeader(0x08, {2, 3}) + "\x01\x02\x03\x04\x05\xff";
  absl::StatusOr<model::Tensor> tensor = ParseIdx(file, "images");
  ASSERT_TRUE(tensor.ok()) << tensor.status();
  EXPECT_EQ(tensor->dtype, model::DType::kU8);
  EXPECT_THAT(tensor->shape, ElementsAre(2, 3));
  EXPECT_EQ(tensor->data, "\x01\x02\x03\x04\x05\xff");
}

TEST(IdxTest, ConvertsBigEndianWiderTypes) {
  float one_half = 0.5f;
  uint32_t bits;
  std::memcpy(&bits, &one_half, 4);
  absl::StatusOr<model::Tensor> floats =
      ParseIdx(IdxHeader(0x0D, {1}) + BigEndian32(bits), "f");
  ASSERT_TRUE(floats.ok()) << floats.status();
  EXPECT_THAT(*floats->ToFloats(), ElementsAre(0.5f));

  absl::StatusOr<model::Tensor> shorts =
      ParseIdx(IdxHeader(0x0B, {2}) + std::string("\xff\xfe\x01\x00", 4), "s");
  ASSERT_TRUE(shorts.ok()) << shorts.status();
  ASSERT_EQ(shorts->dtype, model::DType::kI32);
  int32_t values[2];
  std::memcpy(values, shorts->data.data(), 8);
  EXPECT_EQ(values[0], -2);
  EXPECT_EQ(values[1], 256);
}

TEST(IdxTest, ReadsGzipByMagic) {
  const std::string file = IdxHeader(0x08, {4}) + "abcd";
  absl::StatusOr<model::Tensor> tensor = ParseIdx(test_util::Gzip(file), "gz");
  ASSERT_TRUE(tensor.ok()) << tensor.status();
  EXPECT_EQ(tensor->data, "abcd");
}

TEST(IdxTest, BadFilesNameTheFileAndField) {
  struct Case {
    std::string bytes;
    const char* message;
  };
  const std::string good = IdxHeader(0x08, {4}) + "abcd";
  const Case cases[] = {
      {"", "f: IDX header needs 4 bytes, file has 0"},
      {std::string("\x01\x00\x08\x01", 4), "magic bytes 0-1 are 1 0"},
      {IdxHeader(0x07, {1}) + "a", "element type (byte 2) is 0x7"},
      {std::string("\0\0\x08\0", 4), "dimension count (byte 3) is 0"},
      {IdxHeader(0x08, {1, 2}).substr(0, 9), "needs 12 bytes, file has 9"},
      {IdxHeader(0x08, {4}) + "abc", "need 4 data bytes, file has 3"},
      {IdxHeader(0x08, {4}) + "abcde", "need 4 data bytes, file has 5"},
      {IdxHeader(0x0E, {0xffffffff, 0xffffffff, 0xffffffff}),
       "dimensions [4294967295, 4294967295, 4294967295] are too large"},
      {test_util::Gzip(good).substr(0, 15), "truncated"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<model::Tensor> tensor = ParseIdx(c.bytes, "f");
    EXPECT_EQ(tensor.status().code(), absl::StatusCode::kInvalidArgument)
        << c.message;
    EXPECT_THAT(tensor.status().message(), HasSubstr(c.message));
    EXPECT_THAT(tensor.status().message(), HasSubstr("f: "));
  }
}

TEST(IdxTest, ReadsDatasetFromFilesAndChecksCounts) {
  const auto dir = std::filesystem::temp_directory_path() /
                   absl::StrCat("idx_test_", getpid());
  std::filesystem::create_directories(dir);
  const std::string images = (dir / "images.gz").string();
  const std::string labels = (dir / "labels").string();
  const std::string few_labels = (dir / "few_labels").string();
  ASSERT_TRUE(model::WriteFileAtomically(
      images, test_util::Gzip(IdxHeader(0x08, {2, 2, 2}) + "12345678")).ok());
  ASSERT_TRUE(model::WriteFileAtomically(
      labels, IdxHeader(0x08, {2}) + std::string("\x03\x07", 2)).ok());
  ASSERT_TRUE(model::WriteFileAtomically(
      few_labels, IdxHeader(0x08, {1}) + std::string("\x03", 1)).ok());
  absl::StatusOr<Dataset> dataset = ReadIdxDataset(images, labels);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_EQ(dataset->NumExamples(), 2);
  EXPECT_THAT(*LabelsAsInt64(*dataset), ElementsAre(3, 7));
  EXPECT_THAT(ReadIdxDataset(images, few_labels).status().message(),
              HasSubstr("2 inputs but 1 labels"));
  EXPECT_EQ(ReadIdxFile((dir / "absent").string()).status().code(),
            absl::StatusCode::kNotFound);
  std::filesystem::remove_all(dir);
}

TEST(IdxTest, ReadsFashionMnistTestSet) {
  const std::string dir = "/usr/share/datasets/fashion-mnist/";
  if (!std::filesystem::exists(dir + "t10k-images-idx3-ubyte.gz")) {
    GTEST_SKIP() << "install the Debian package dataset-fashion-mnist "
                    "(scripts/install-deps.sh)";
  }
  absl::StatusOr<Dataset> dataset =
      ReadIdxDataset(dir + "t10k-images-idx3-ubyte.gz",
                     dir + "t10k-labels-idx1-ubyte.gz");
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_THAT(dataset->inputs.shape, ElementsAre(10000, 28, 28));
  EXPECT_EQ(dataset->inputs.dtype, model::DType::kU8);
  absl::StatusOr<std::vector<int64_t>> labels = LabelsAsInt64(*dataset);
  ASSERT_TRUE(labels.ok());
  ASSERT_EQ(labels->size(), 10000u);
  std::vector<int> per_class(10, 0);
  for (int64_t label : *labels) {
    ASSERT_GE(label, 0);
    ASSERT_LE(label, 9);
    ++per_class[label];
  }
  // The test set is balanced: 1000 examples of each class.
  for (int count : per_class) EXPECT_EQ(count, 1000);
}

}  // namespace
}  // namespace squeeze::core::data
