#include "core/data/numpy_files.h"

#include <zlib.h>

#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "core/data/tensor_collections.h"
#include "core/data/test_util/deflate.h"
#include "core/model/file_io.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace squeeze::core::data {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string Npy(const std::string& dict, const std::string& data,
                int version = 1) {
  std::string header = dict;
  const size_t preamble = version == 1 ? 10 : 12;
  while ((preamble + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(version);
  out += '\0';
  const uint32_t length = header.size();
  out.append(reinterpret_cast<const char*>(&length), version == 1 ? 2 : 4);
  return out + header + data;
}

std::string FloatBytes(const std::vector<float>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()),
                     values.size() * 4);
}

std::string Le(uint64_t value, int size) {
  return std::string(reinterpret_cast<const char*>(&value), size);
}

struct ZipMember {
  std::string name;
  std::string content;
  bool deflate;
};

// A zip archive as Python's zipfile writes one.
std::string Zip(const std::vector<ZipMember>& members) {
  std::string out, directory;
  for (const ZipMember& m : members) {
    const std::string data =
        m.deflate ? test_util::RawDeflate(m.content) : m.content;
    const uint32_t crc = crc32(0, reinterpret_cast<const Bytef*>(m.content.data()),
                               m.content.size());
    const uint64_t offset = out.size();
    const std::string common = Le(m.deflate ? 8 : 0, 2) + Le(0, 4) + Le(crc, 4) +
                               Le(data.size(), 4) + Le(m.content.size(), 4) +
                               Le(m.name.size(), 2) + Le(0, 2);
    out += Le(0x04034b50, 4) + Le(20, 2) + Le(0, 2) + common + m.name + data;
    directory += Le(0x02014b50, 4) + Le(20, 2) + Le(20, 2) + Le(0, 2) + common +
                 Le(0, 2) + Le(0, 2) + Le(0, 2) + Le(0, 4) + Le(offset, 4) +
                 m.name;
  }
  const uint64_t directory_offset = out.size();
  out += directory;
  out += Le(0x06054b50, 4) + Le(0, 4) + Le(members.size(), 2) +
         Le(members.size(), 2) + Le(directory.size(), 4) +
         Le(directory_offset, 4) + Le(0, 2);
  return out;
}

const std::string kFloats = Npy(
    "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
    FloatBytes({1, 2, 3, 4, 5, 6}));

TEST(NpyTest, ParsesFloatArrays) {
  absl::StatusOr<model::Tensor> tensor = ParseNpy(kFloats, "a.npy");
  ASSERT_TRUE(tensor.ok()) << tensor.status();
  EXPECT_THAT(tensor->shape, ElementsAre(2, 3));
  EXPECT_THAT(*tensor->ToFloats(), ElementsAre(1, 2, 3, 4, 5, 6));
}

TEST(NpyTest, ConvertsByteOrderAndWidths) {
  const double d[2] = {0.25, -3.0};
  absl::StatusOr<model::Tensor> doubles = ParseNpy(
      Npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }",
          std::string(reinterpret_cast<const char*>(d), 16), 2),
      "d");
  ASSERT_TRUE(doubles.ok()) << doubles.status();
  EXPECT_THAT(*doubles->ToFloats(), ElementsAre(0.25f, -3.0f));

  absl::StatusOr<model::Tensor> big = ParseNpy(
      Npy("{'descr': '>i4', 'fortran_order': False, 'shape': (1,), }",
          std::string("\x00\x00\x01\x02", 4)),
      "b");
  ASSERT_TRUE(big.ok()) << big.status();
  int32_t value;
  std::memcpy(&value, big->data.data(), 4);
  EXPECT_EQ(value, 0x0102);

  absl::StatusOr<model::Tensor> scalar = ParseNpy(
      Npy("{'descr': '|u1', 'fortran_order': False, 'shape': (), }", "\x07"),
      "s");
  ASSERT_TRUE(scalar.ok()) << scalar.status();
  EXPECT_TRUE(scalar->shape.empty());
  EXPECT_EQ(scalar->dtype, model::DType::kU8);
}

TEST(NpyTest, BadFilesNameTheFileAndField) {
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  struct Case {
    std::string bytes;
    const char* message;
  };
  const Case cases[] = {
      {"PK\x03\x04", "x.npy: not a .npy file"},
      {"\x93NUMPY\x01", "preamble is truncated"},
      {std::string("\x93NUMPY\x09\x00\x10\x00", 10), "version 9"},
      {std::string("\x93NUMPY\x01\x00\xff\x00", 10) + "{}", "header length 255 runs past"},
      {Npy("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", "12345678"),
       "descr '<c8' is not a supported"},
      {Npy("{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }", "1234"),
       "fortran_order True"},
      {Npy("{'descr': '<f4', 'shape': (1,), }", "1234"),
       "needs 'descr', 'fortran_order' and 'shape'"},
      {Npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1, x), }", "1234"),
       "expected a dimension at header byte"},
      {Npy(dict, "1234567"), "needs 8 data bytes, file has 7"},
      {Npy("{'descr': '<f4', 'fortran_order': False, 'shape': "
           "(4294967296, 4294967296, 4294967296), }", ""),
       "is too large"},
      {Npy("{'descr': '<f4', 'fortran_order': False, 'shape': "
           "(99999999999999999999,), }", ""),
       "does not fit in int64"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<model::Tensor> tensor = ParseNpy(c.bytes, "x.npy");
    EXPECT_EQ(tensor.status().code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(tensor.status().message(), HasSubstr(c.message));
  }
}

TEST(NpzTest, ReadsStoredAndDeflatedEntries) {
  const std::string labels = Npy(
      "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }",
      Le(4, 8) + Le(9, 8));
  const std::string archive =
      Zip({{"inputs.npy", kFloats, false}, {"labels.npy", labels, true}});
  absl::StatusOr<std::map<std::string, model::Tensor>> arrays =
      ParseNpz(archive, "d.npz");
  ASSERT_TRUE(arrays.ok()) << arrays.status();
  ASSERT_EQ(arrays->size(), 2u);
  EXPECT_THAT(*arrays->at("inputs").ToFloats(), ElementsAre(1, 2, 3, 4, 5, 6));
  EXPECT_EQ(arrays->at("labels").dtype, model::DType::kI64);

  const auto dir = std::filesystem::temp_directory_path() /
                   absl::StrCat("numpy_files_test_", getpid());
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "d.npz").string();
  ASSERT_TRUE(model::WriteFileAtomically(path, archive).ok());
  absl::StatusOr<Dataset> dataset = ReadNpzDataset(path);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_THAT(*LabelsAsInt64(*dataset), ElementsAre(4, 9));
  std::filesystem::remove_all(dir);
}

TEST(NpzTest, DamagedArchivesNameTheEntry) {
  const std::string good = Zip({{"a.npy", kFloats, true}});
  std::string bad_crc = Zip({{"a.npy", kFloats, false}});
  bad_crc[40] ^= 1;  // a byte of the stored .npy header
  const struct {
    std::string bytes;
    const char* message;
  } cases[] = {
      {"not a zip", "z.npz: not a zip archive"},
      {good.substr(0, good.size() - 30), "not a zip archive"},
      {bad_crc, "z.npz: entry 'a.npy': CRC-32 mismatch"},
      {Zip({{"a.txt", "hello", false}}), "entry 'a.txt' is not a .npy file"},
      {Zip({{"a.npy", "\x93NUMPY", false}}), "entry 'a.npy': .npy preamble"},
  };
  for (const auto& c : cases) {
    absl::StatusOr<std::map<std::string, model::Tensor>> arrays =
        ParseNpz(c.bytes, "z.npz");
    EXPECT_EQ(arrays.status().code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(arrays.status().message(), HasSubstr(c.message));
  }
  // Corrupt deflate data inside an otherwise valid archive.
  std::string corrupt = good;
  for (size_t i = 40; i < 60; ++i) corrupt[i] = '\xff';
  EXPECT_EQ(ParseNpz(corrupt, "z.npz").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace squeeze::core::data

namespace squeeze::core::data {
namespace {

// The fuzz seed corpus holds archives written by Python's zipfile, including
// the zip64 local headers that np.savez writes (force_zip64=True).
TEST(NpzTest, ReadsArchivesWrittenByPythonZipfile) {
  const std::string corpus =
      std::string(SQUEEZE_SOURCE_DIR) + "/core/data/fuzz/npz_corpus/";
  for (const char* name : {"stored.npz", "deflated.npz", "zip64_local.npz"}) {
    absl::StatusOr<std::map<std::string, model::Tensor>> arrays =
        ReadNpzFile(corpus + name);
    ASSERT_TRUE(arrays.ok()) << name << ": " << arrays.status();
    EXPECT_THAT(*arrays->at("inputs").ToFloats(), ElementsAre(1, 2, 3, 4, 5, 6))
        << name;
  }
}

}  // namespace
}  // namespace squeeze::core::data
