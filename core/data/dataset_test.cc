#include "core/data/dataset.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "core/data/tensor_collections.h"
#include "core/model/file_io.h"
#include "core/model/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace squeeze::core::data {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using model::DType;
using model::Tensor;

// n examples of 2 floats each (10i, 10i + 1), labels i as I64.
Dataset Numbered(int64_t n) {
  std::vector<float> values;
  Tensor labels{DType::kI64, {n}, std::string(n * 8, '\0')};
  for (int64_t i = 0; i < n; ++i) {
    values.push_back(10.0f * i);
    values.push_back(10.0f * i + 1);
    std::memcpy(&labels.data[i * 8], &i, 8);
  }
  return *MakeDataset(Tensor::FromFloats({n, 2}, values), labels);
}

TEST(DatasetTest, MakeDatasetChecksShapes) {
  EXPECT_THAT(MakeDataset(Tensor::FromFloats({}, {1.0f}), std::nullopt)
                  .status().message(),
              HasSubstr("inputs must have an examples dimension"));
  Tensor short_data = Tensor::FromFloats({2}, {1.0f, 2.0f});
  short_data.data.pop_back();
  EXPECT_THAT(MakeDataset(short_data, std::nullopt).status().message(),
              HasSubstr("needs 8 bytes, holds 7"));
  EXPECT_THAT(MakeDataset(Tensor::FromFloats({2}, {1.0f, 2.0f}),
                          Tensor::FromFloats({3}, {1.0f, 2.0f, 3.0f}))
                  .status().message(),
              HasSubstr("2 inputs but 3 labels"));
}

TEST(DatasetTest, SelectAndSliceExamples) {
  const Dataset dataset = Numbered(5);
  absl::StatusOr<Dataset> picked = SelectExamples(dataset, {4, 0, 4});
  ASSERT_TRUE(picked.ok()) << picked.status();
  EXPECT_THAT(*picked->inputs.ToFloats(), ElementsAre(40, 41, 0, 1, 40, 41));
  EXPECT_THAT(*LabelsAsInt64(*picked), ElementsAre(4, 0, 4));
  EXPECT_THAT(*LabelsAsInt64(*SliceExamples(dataset, 1, 3)), ElementsAre(1, 2));
  EXPECT_EQ(SelectExamples(dataset, {5}).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_THAT(SliceExamples(dataset, 3, 6).status().message(),
              HasSubstr("slice [3, 6) outside [0, 5]"));
  EXPECT_THAT(LabelsAsInt64(Dataset{dataset.inputs, dataset.inputs})
                  .status().message(),
              HasSubstr("labels are F32"));
}

TEST(DatasetTest, SplitMix64MatchesReferenceValues) {
  // First outputs for seed 0 from the reference implementation
  // (https://prng.di.unimi.it/splitmix64.c).
  SplitMix64 random(0);
  EXPECT_EQ(random.Next(), 0xE220A8397B1DCDAFull);
  EXPECT_EQ(random.Next(), 0x6E789E6AA1B965F4ull);
  EXPECT_EQ(random.Next(), 0x06C45D188009454Full);
}

TEST(DatasetTest, ShuffleIsAPermutationFixedBySeed) {
  const std::vector<int64_t> a = ShuffledIndices(1000, 42);
  EXPECT_EQ(a, ShuffledIndices(1000, 42));
  EXPECT_NE(a, ShuffledIndices(1000, 43));
  std::vector<int64_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 1000; ++i) ASSERT_EQ(sorted[i], i);
  // Pinned so that a change of algorithm is noticed (results must not move
  // between releases or platforms).
  EXPECT_THAT(ShuffledIndices(6, 7), ElementsAre(1, 5, 0, 2, 4, 3));
  EXPECT_TRUE(ShuffledIndices(0, 1).empty());
}

TEST(DatasetTest, SplitsAreDisjointCompleteAndDeterministic) {
  const Dataset dataset = Numbered(103);
  absl::StatusOr<DatasetSplits> splits = SplitDataset(dataset, 0.1, 0.2, 9);
  ASSERT_TRUE(splits.ok()) << splits.status();
  EXPECT_EQ(splits->test.NumExamples(), 20);
  EXPECT_EQ(splits->validation.NumExamples(), 10);
  EXPECT_EQ(splits->train.NumExamples(), 73);
  std::vector<int64_t> all;
  for (const Dataset* part : {&splits->train, &splits->validation, &splits->test}) {
    const std::vector<int64_t> labels = *LabelsAsInt64(*part);
    all.insert(all.end(), labels.begin(), labels.end());
  }
  std::sort(all.begin(), all.end());
  for (int64_t i = 0; i < 103; ++i) ASSERT_EQ(all[i], i);
  EXPECT_EQ(*LabelsAsInt64(SplitDataset(dataset, 0.1, 0.2, 9)->test),
            *LabelsAsInt64(splits->test));
  EXPECT_THAT(SplitDataset(dataset, 0.7, 0.5, 1).status().message(),
              HasSubstr("validation 0.7 and test 0.5"));
}

TEST(DatasetTest, ReadsSafetensorsCollections) {
  const auto dir = std::filesystem::temp_directory_path() /
                   absl::StrCat("dataset_test_", getpid());
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "data.safetensors").string();
  model::SafetensorsFile file;
  const Dataset dataset = Numbered(3);
  file.tensors["x"] = dataset.inputs;
  file.tensors["inputs"] = dataset.inputs;
  file.tensors["labels"] = *dataset.labels;
  ASSERT_TRUE(model::WriteFileAtomically(path, SerializeSafetensors(file)).ok());

  absl::StatusOr<Dataset> read = ReadSafetensorsDataset(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_THAT(*LabelsAsInt64(*read), ElementsAre(0, 1, 2));
  absl::StatusOr<Dataset> unlabeled = ReadSafetensorsDataset(path, "x", "");
  ASSERT_TRUE(unlabeled.ok()) << unlabeled.status();
  EXPECT_FALSE(unlabeled->labels.has_value());
  EXPECT_THAT(ReadSafetensorsDataset(path, "images").status().message(),
              HasSubstr(path + ": no tensor named \"images\" (it holds: "
                               "inputs, labels, x)"));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace squeeze::core::data
