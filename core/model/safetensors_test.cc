#include "core/model/safetensors.h"

#include <cstring>
#include <string>

#include "core/model/file_io.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace squeeze::core::model {
namespace {

using ::testing::HasSubstr;

SafetensorsFile SampleFile() {
  SafetensorsFile file;
  file.metadata["format"] = "pt";
  file.metadata["squeeze.layers"] = "fc1,fc2";
  file.tensors["fc1.weight"] =
      Tensor::FromFloats({2, 3}, {1, 2, 3, 4, 5, 6});
  file.tensors["fc1.bias"] = Tensor::FromFloats({2}, {0.5f, -0.5f});
  file.tensors["mask"] = Tensor{DType::kU8, {3}, std::string("\x01\x00\x01", 3)};
  file.tensors["steps"] = Tensor{DType::kI64, {}, std::string("\x07\0\0\0\0\0\0\0", 8)};
  return file;
}

// Builds file bytes around a hand-written header.
std::string WithHeader(const std::string& json, const std::string& data) {
  std::string out(8, '\0');
  const uint64_t n = json.size();
  std::memcpy(out.data(), &n, 8);
  return out + json + data;
}

void ExpectSameFile(const SafetensorsFile& a, const SafetensorsFile& b) {
  EXPECT_EQ(a.metadata, b.metadata);
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (const auto& [name, tensor] : a.tensors) {
    ASSERT_TRUE(b.tensors.contains(name)) << name;
    const Tensor& other = b.tensors.at(name);
    EXPECT_EQ(tensor.dtype, other.dtype) << name;
    EXPECT_EQ(tensor.shape, other.shape) << name;
    EXPECT_EQ(tensor.data, other.data) << name;
  }
}

TEST(SafetensorsTest, SerializeParseRoundTrip) {
  const SafetensorsFile file = SampleFile();
  const std::string bytes = SerializeSafetensors(file);
  absl::StatusOr<SafetensorsFile> parsed = ParseSafetensors(bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ExpectSameFile(file, *parsed);
  EXPECT_EQ(SerializeSafetensors(*parsed), bytes);  // deterministic
}

TEST(SafetensorsTest, HeaderIsPaddedAndTensorsAligned) {
  const std::string bytes = SerializeSafetensors(SampleFile());
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
  EXPECT_EQ(bytes[8], '{');
  const std::string header = bytes.substr(8, n);
  EXPECT_EQ(header.find_last_not_of(' '), header.rfind('}'));
  EXPECT_THAT(header, HasSubstr(R"("__metadata__":{"format":"pt",)"));
  // Largest elements first: the I64 scalar starts the data, then F32s.
  EXPECT_THAT(header, HasSubstr(R"("steps":{"dtype":"I64","shape":[],"data_offsets":[0,8]})"));
  absl::StatusOr<SafetensorsHeader> parsed =
      ParseSafetensorsHeader(bytes, bytes.size());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  for (const auto& [name, info] : parsed->tensors) {
    EXPECT_EQ(info.begin % DTypeSize(info.dtype), 0u) << name;
  }
}

TEST(SafetensorsTest, ParsesHandWrittenHuggingFaceStyleHeader) {
  float values[2] = {1.0f, 2.0f};
  const std::string data(reinterpret_cast<const char*>(values), 8);
  const std::string json =
      R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}    )";
  absl::StatusOr<SafetensorsFile> file = ParseSafetensors(WithHeader(json, data));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->metadata.at("format"), "pt");
  EXPECT_EQ(*file->tensors.at("w").ToFloats(), (std::vector<float>{1, 2}));
}

TEST(SafetensorsTest, EmptyFileWithoutTensors) {
  SafetensorsFile empty;
  absl::StatusOr<SafetensorsFile> parsed =
      ParseSafetensors(SerializeSafetensors(empty));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->tensors.empty());
}

struct BadHeader {
  std::string json;
  std::string data;
  std::string message;
};

TEST(SafetensorsTest, RejectsBadHeadersNamingTheProblem) {
  const std::string eight(8, '\0');
  const BadHeader cases[] = {
      {"[]", "", "header is not a JSON object"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", eight,
       "bad header"},
      {R"({"w":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", eight,
       "tensor \"w\": unknown dtype \"F33\""},
      {R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", eight,
       "tensor \"w\": negative dimension -2"},
      {R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})",
       eight, "tensor \"w\": shape [4294967296, 4294967296] is too large"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", eight,
       "tensor \"w\": data_offsets [0, 16] run past the 8-byte data section"},
      {R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", eight,
       "tensor \"w\": data_offsets [0, 8] hold 8 bytes but shape [3] of F32 "
       "needs 12"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", eight,
       "0 <= begin <= end"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", eight,
       "must be two offsets"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I32","shape":[1],"data_offsets":[4,8]}})",
       eight, "tensor \"b\" bytes [4, 8) overlap tensor \"a\" bytes [0, 8)"},
      {R"({"w":{"dtype":"F32","shape":[2]}})", eight,
       "tensor \"w\": entry needs \"dtype\", \"shape\" and \"data_offsets\""},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":[]}})",
       eight, "tensor \"w\": unknown field \"x\""},
      {R"({"w":{"dtype":7,"shape":[2],"data_offsets":[0,8]}})", eight,
       "\"dtype\" is not a string"},
      {R"({"w":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", eight,
       "\"shape\" is not an array"},
      {R"({"w":{"dtype":"F32","shape":[[2]],"data_offsets":[0,8]}})", eight,
       "\"shape\" holds a non-integer"},
      {R"({"w":[]})", eight, "tensor \"w\": entry is not an object"},
      {R"({"__metadata__":{"k":1}})", "", "metadata \"k\" is not a string"},
      {R"({"__metadata__":[]})", "", "\"__metadata__\" is not an object"},
  };
  for (const BadHeader& c : cases) {
    absl::StatusOr<SafetensorsFile> file =
        ParseSafetensors(WithHeader(c.json, c.data));
    EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument)
        << c.json;
    EXPECT_THAT(file.status().message(), HasSubstr(c.message)) << c.json;
  }
}

TEST(SafetensorsTest, RejectsBadLengthPrefix) {
  EXPECT_THAT(ParseSafetensors("abc").status().message(),
              HasSubstr("file is 3 bytes, too short"));
  std::string huge(16, '\0');
  const uint64_t too_big = kMaxSafetensorsHeaderBytes + 1;
  std::memcpy(huge.data(), &too_big, 8);
  EXPECT_THAT(ParseSafetensors(huge).status().message(),
              HasSubstr("exceeds the limit"));
  std::string past(16, '\0');
  const uint64_t nine = 9;
  std::memcpy(past.data(), &nine, 8);
  EXPECT_THAT(ParseSafetensors(past).status().message(),
              HasSubstr("header length 9 at byte 0 runs past the end of the "
                        "16-byte file"));
}

TEST(SafetensorsTest, EveryTruncationIsInvalidArgument) {
  const std::string bytes = SerializeSafetensors(SampleFile());
  for (size_t length = 0; length < bytes.size(); ++length) {
    absl::StatusOr<SafetensorsFile> file =
        ParseSafetensors(std::string_view(bytes).substr(0, length));
    EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument)
        << "length " << length;
  }
}

TEST(SafetensorsTest, FlippedBytesNeverCrash) {
  const std::string bytes = SerializeSafetensors(SampleFile());
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (unsigned char flip : {0x01, 0x20, 0x80, 0xff}) {
      std::string corrupted = bytes;
      corrupted[i] = static_cast<char>(corrupted[i] ^ flip);
      absl::StatusOr<SafetensorsFile> file = ParseSafetensors(corrupted);
      if (!file.ok()) {
        EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument)
            << "byte " << i;
      }
    }
  }
}

TEST(SafetensorsTest, ReadFileAndHeaderOnly) {
  const std::string path = ::testing::TempDir() + "/safetensors_test.safetensors";
  const SafetensorsFile file = SampleFile();
  const std::string bytes = SerializeSafetensors(file);
  ASSERT_TRUE(WriteFileAtomically(path, bytes).ok());

  absl::StatusOr<SafetensorsFile> read = ReadSafetensorsFile(path);
  ASSERT_TRUE(read.ok()) << read.status();
  ExpectSameFile(file, *read);

  absl::StatusOr<SafetensorsHeader> header = ReadSafetensorsHeader(path);
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->metadata, file.metadata);
  EXPECT_EQ(header->tensors.at("fc1.weight").shape,
            (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(header->tensors.at("fc1.weight").dtype, DType::kF32);
  EXPECT_EQ(8 + header->header_bytes + header->data_bytes, bytes.size());

  ASSERT_TRUE(WriteFileAtomically(path, bytes.substr(0, bytes.size() - 1)).ok());
  absl::StatusOr<SafetensorsHeader> truncated = ReadSafetensorsHeader(path);
  EXPECT_EQ(truncated.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(truncated.status().message(), HasSubstr(path));
  EXPECT_THAT(truncated.status().message(), HasSubstr("truncated file?"));
  ASSERT_TRUE(WriteFileAtomically(path, "abc").ok());
  EXPECT_THAT(ReadSafetensorsHeader(path).status().message(),
              HasSubstr("too short"));
  EXPECT_EQ(ReadSafetensorsFile(path + ".missing").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace squeeze::core::model
