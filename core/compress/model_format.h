// Which of the model formats the service compresses a file holds.
#ifndef SQUEEZE_CORE_COMPRESS_MODEL_FORMAT_H_
#define SQUEEZE_CORE_COMPRESS_MODEL_FORMAT_H_

#include <string>

#include "absl/status/statusor.h"

namespace squeeze::core::compress {

enum class ModelFormat { kSafetensors, kOnnx };

// The format of the model file at `path`, from its first bytes: a
// safetensors file starts with a little-endian uint64 header length N,
// N + 8 <= file size, followed by '{'; every other file is taken to be an
// ONNX ModelProto (and fails to parse later if it is not one). File-system
// errors keep their codes; INVALID_ARGUMENT for a file shorter than 9 bytes.
absl::StatusOr<ModelFormat> DetectModelFormat(const std::string& path);

}  // namespace squeeze::core::compress

#endif  // SQUEEZE_CORE_COMPRESS_MODEL_FORMAT_H_
