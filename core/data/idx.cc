#include "core/data/idx.h"

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/data/compression.h"
#include "core/model/file_io.h"
#include "core/status_macros.h"

namespace squeeze::core::data {
namespace {

using model::DType;
using model::Tensor;

constexpr int kMaxDimensions = 16;

uint64_t ReadBigEndian(const unsigned char* p, int size) {
  uint64_t value = 0;
  for (int i = 0; i < size; ++i) value = (value << 8) | p[i];
  return value;
}

template <typename T>
void AppendLittleEndian(T value, std::string* out) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));  // the host is little-endian
  out->append(bytes, sizeof(T));
}

struct IdxType {
  int file_size;  // bytes per element in the file
  DType dtype;    // what the tensor holds
};

absl::StatusOr<IdxType> IdxTypeFromCode(uint8_t code, const std::string& name) {
  switch (code) {
    case 0x08: return IdxType{1, DType::kU8};
    case 0x09: return IdxType{1, DType::kI8};
    case 0x0B: return IdxType{2, DType::kI32};
    case 0x0C: return IdxType{4, DType::kI32};
    case 0x0D: return IdxType{4, DType::kF32};
    case 0x0E: return IdxType{8, DType::kF32};
  }
  return absl::InvalidArgumentError(absl::StrCat(
      name, ": IDX element type (byte 2) is 0x", absl::Hex(code),
      ", not one of 08 09 0B 0C 0D 0E"));
}

// Converts `count` big-endian elements of IDX type `code` to Tensor bytes.
std::string ConvertElements(const unsigned char* p, int64_t count,
                            uint8_t code) {
  std::string out;
  if (code == 0x08 || code == 0x09) {
    out.assign(reinterpret_cast<const char*>(p), count);
    return out;
  }
  out.reserve(count * 4);
  for (int64_t i = 0; i < count; ++i) {
    switch (code) {
      case 0x0B: {
        const auto bits = static_cast<uint16_t>(ReadBigEndian(p + 2 * i, 2));
        AppendLittleEndian(static_cast<int32_t>(static_cast<int16_t>(bits)),
                           &out);
        break;
      }
      case 0x0C:  // i32 and f32: the same four bytes, reversed
      case 0x0D:
        AppendLittleEndian(static_cast<uint32_t>(ReadBigEndian(p + 4 * i, 4)),
                           &out);
        break;
      case 0x0E: {
        const uint64_t bits = ReadBigEndian(p + 8 * i, 8);
        double value;
        std::memcpy(&value, &bits, 8);
        AppendLittleEndian(static_cast<float>(value), &out);
        break;
      }
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<Tensor> ParseIdx(std::string_view file_bytes,
                                const std::string& name) {
  std::string decompressed;
  if (IsGzip(file_bytes)) {
    SQ_ASSIGN_OR_RETURN(decompressed, Gunzip(file_bytes, name));
    file_bytes = decompressed;
  }
  const auto* p = reinterpret_cast<const unsigned char*>(file_bytes.data());
  if (file_bytes.size() < 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": IDX header needs 4 bytes, file has ", file_bytes.size()));
  }
  if (p[0] != 0 || p[1] != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": not an IDX file (magic bytes 0-1 are ", p[0], " ", p[1],
        ", expected 0 0)"));
  }
  SQ_ASSIGN_OR_RETURN(const IdxType type, IdxTypeFromCode(p[2], name));
  const int rank = p[3];
  if (rank < 1 || rank > kMaxDimensions) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": IDX dimension count (byte 3) is ", rank,
                     ", expected 1..", kMaxDimensions));
  }
  const uint64_t header_bytes = 4 + 4ull * rank;
  if (file_bytes.size() < header_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": IDX header with ", rank, " dimensions needs ", header_bytes,
        " bytes, file has ", file_bytes.size()));
  }
  Tensor tensor;
  tensor.dtype = type.dtype;
  for (int d = 0; d < rank; ++d) {
    tensor.shape.push_back(
        static_cast<int64_t>(ReadBigEndian(p + 4 + 4 * d, 4)));
  }
  absl::StatusOr<int64_t> count =
      model::CheckedNumElements(tensor.shape, type.file_size);
  if (!count.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": IDX dimensions [", absl::StrJoin(tensor.shape, ", "),
        "] are too large"));
  }
  const int64_t data_bytes = *count * type.file_size;
  if (file_bytes.size() - header_bytes != static_cast<uint64_t>(data_bytes)) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": IDX dimensions [", absl::StrJoin(tensor.shape, ", "),
        "] need ", data_bytes, " data bytes, file has ",
        file_bytes.size() - header_bytes));
  }
  tensor.data = ConvertElements(p + header_bytes, *count, p[2]);
  return tensor;
}

absl::StatusOr<Tensor> ReadIdxFile(const std::string& path) {
  SQ_ASSIGN_OR_RETURN(std::string bytes, model::ReadFile(path));
  return ParseIdx(bytes, path);
}

absl::StatusOr<Dataset> ReadIdxDataset(const std::string& images_path,
                                       const std::string& labels_path) {
  SQ_ASSIGN_OR_RETURN(Tensor images, ReadIdxFile(images_path));
  SQ_ASSIGN_OR_RETURN(Tensor labels, ReadIdxFile(labels_path));
  absl::StatusOr<Dataset> dataset =
      MakeDataset(std::move(images), std::move(labels));
  if (!dataset.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        images_path, " and ", labels_path, ": ", dataset.status().message()));
  }
  return dataset;
}

}  // namespace squeeze::core::data
