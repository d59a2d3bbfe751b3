// ONNX import and export through Debian's libonnx (onnx.proto, checker).
// Supported: default-domain opsets 9 to 17, tensors inline or in external
// data files next to the model.
#ifndef SQUEEZE_CORE_ONNX_ONNX_MODEL_H_
#define SQUEEZE_CORE_ONNX_ONNX_MODEL_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/graph/graph.h"

namespace squeeze::core::onnx {

inline constexpr int64_t kMinOpset = 9;
inline constexpr int64_t kMaxOpset = 17;

struct OnnxImportOptions {
  // Types the intermediates with libonnx's shape inference instead of the
  // IR's own (core/graph/shape_inference.h). For trusted files only (tests
  // that compare the two): libonnx 1.12 crashes on some malformed nodes that
  // its checker accepts, so files from users never take this path.
  bool onnx_shape_inference = false;
};

// Reads the model at `path`; external data locations resolve against the
// directory holding `path`.
absl::StatusOr<graph::Graph> LoadOnnxModel(const std::string& path,
                                           const OnnxImportOptions& options = {});

// Parses a serialized ModelProto. `model_dir` resolves external data ("" when
// the model has none). Graph::value_infos holds the intermediate types and
// shapes from the IR's shape inference (symbolic dims kept), or the file's
// value_info when that inference finds the shapes contradictory. INVALID_ARGUMENT for bytes that do not parse (a
// truncated or corrupt file), an opset outside [kMinOpset, kMaxOpset], a
// tensor whose data does not match its type and shape, an element type the
// IR lacks, a subgraph attribute, or an external data location that is
// absolute or leaves model_dir; OUT_OF_RANGE when external data ends early.
// Operators are not checked here: Executor::Create names unsupported ones.
absl::StatusOr<graph::Graph> ParseOnnxModel(absl::string_view bytes,
                                            const std::string& model_dir,
                                            const OnnxImportOptions& options = {});

// Parses one serialized TensorProto (the test-data .pb format) with
// external data resolved against `model_dir`.
absl::StatusOr<graph::Tensor> ParseOnnxTensor(absl::string_view bytes,
                                              const std::string& model_dir);

struct OnnxExportOptions {
  // Initializers of at least this many bytes go to `external_data_file`
  // (relative to the model's directory) instead of the ModelProto; 0 keeps
  // every tensor inline.
  int64_t external_data_threshold_bytes = 0;
  std::string external_data_file;
};

// Serializes `graph` as a ModelProto, runs onnx::checker::check_model on it
// and writes it (and its external data file) atomically. INVALID_ARGUMENT
// with the checker's message when the model fails the check, or when the
// inline model would exceed protobuf's 2 GiB limit.
absl::Status SaveOnnxModel(const graph::Graph& graph, const std::string& path,
                           const OnnxExportOptions& options = {});

}  // namespace squeeze::core::onnx

#endif  // SQUEEZE_CORE_ONNX_ONNX_MODEL_H_
