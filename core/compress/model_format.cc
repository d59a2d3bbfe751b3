#include "core/compress/model_format.h"

#include <fstream>

#include "absl/strings/str_cat.h"
#include "core/model/file_io.h"
#include "core/status_macros.h"

namespace squeeze::core::compress {

absl::StatusOr<ModelFormat> DetectModelFormat(const std::string& path) {
  SQ_ASSIGN_OR_RETURN(const uint64_t size, model::FileSize(path));
  std::ifstream in(path, std::ios::binary);
  char prefix[9];
  if (size < sizeof(prefix) || !in.read(prefix, sizeof(prefix))) {
    return absl::InvalidArgumentError(absl::StrCat("model file ", path, " has ", size,
                                " bytes; too short for safetensors or ONNX"));
  }
  uint64_t header = 0;
  for (int i = 7; i >= 0; --i) header = (header << 8) | static_cast<unsigned char>(prefix[i]);
  const bool safetensors = prefix[8] == '{' && header <= size - 8;
  return safetensors ? ModelFormat::kSafetensors : ModelFormat::kOnnx;
}

}  // namespace squeeze::core::compress
