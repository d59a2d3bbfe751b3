// The safetensors file format (https://github.com/huggingface/safetensors):
//   8 bytes   little-endian uint64 N, the header length
//   N bytes   JSON header: {"__metadata__": {str: str}, "<tensor>": {"dtype":
//             "F32", "shape": [..], "data_offsets": [begin, end]}, ...},
//             padded with spaces so that 8 + N is a multiple of 8
//   rest      tensor bytes; offsets are relative to the start of this part
// Every parse error is INVALID_ARGUMENT naming the problem and where it is
// (byte offset, tensor name). Parsing never trusts a length or offset before
// checking it against the bytes actually present.
#ifndef SQUEEZE_CORE_MODEL_SAFETENSORS_H_
#define SQUEEZE_CORE_MODEL_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "core/model/tensor.h"

namespace squeeze::core::model {

// Headers larger than this are rejected before anything is allocated.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;

struct SafetensorsFile {
  std::map<std::string, std::string> metadata;
  std::map<std::string, Tensor> tensors;
};

// A tensor's entry in the header; [begin, end) are offsets into the data part.
struct SafetensorsTensorInfo {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

// What the header alone says, already validated against the data size:
// offsets lie in the data part, match shape * element size, and do not
// overlap.
struct SafetensorsHeader {
  std::map<std::string, std::string> metadata;
  std::map<std::string, SafetensorsTensorInfo> tensors;
  uint64_t header_bytes = 0;  // N above
  uint64_t data_bytes = 0;    // size of the data part
};

// Parses a whole file held in memory. The result owns copies of the bytes.
absl::StatusOr<SafetensorsFile> ParseSafetensors(std::string_view bytes);

// ReadFile + ParseSafetensors. File-system errors keep their own codes; the
// path is prefixed to parse errors.
absl::StatusOr<SafetensorsFile> ReadSafetensorsFile(const std::string& path);

// Reads and validates only the length prefix and the header: cheap even for
// a multi-gigabyte file.
absl::StatusOr<SafetensorsHeader> ReadSafetensorsHeader(
    const std::string& path);

// Parses the header from the first bytes of a file (`prefix` must hold at
// least the 8-byte length and the header) given the file's total size.
absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(
    std::string_view prefix, uint64_t file_size);

// The file bytes for `file`. Deterministic: tensors are laid out by
// decreasing element size, then by name, so every tensor is aligned to its
// element size; "__metadata__" is omitted when empty. Precondition: each
// tensor's data size equals its element count times its element size.
std::string SerializeSafetensors(const SafetensorsFile& file);

}  // namespace squeeze::core::model

#endif  // SQUEEZE_CORE_MODEL_SAFETENSORS_H_
