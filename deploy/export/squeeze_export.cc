// squeeze-export: writes quantized models in the formats other runtimes load
// and evaluates them in our runtime (docs/formats.md). Subcommands:
//
//   squeeze-export qdq --model=IN.onnx --out=OUT.onnx [--bits=8] [--group_size=0]
//       [--asymmetric] [--calibration_images=IDX.gz --calibration_count=512]
//     RTN-quantizes every Conv/Gemm/MatMul weight and writes the QDQ model;
//     with calibration images (Fashion-MNIST idx, pixels / 255), also static
//     uint8 activation Q/DQ pairs from min-max ranges.
//   squeeze-export eval --model=M.onnx --images=IDX.gz --labels=IDX.gz
//       [--count=0] --input_out=IN.f32 --output_out=OUT.f32 --labels_out=L.i64
//     Runs an image classifier in our runtime; writes the input batch, the
//     logits and the labels as raw little-endian arrays; prints the accuracy.
//   squeeze-export compare --ours=A.f32 --theirs=B.f32 --labels=L.i64 [--classes=10]
//     Max abs and relative difference of two logit files, accuracy of each.
//   squeeze-export gguf --model=HF_DIR --out=M.gguf [--gguf_type=q8_0|q4_0|f16|f32]
//     llama.cpp's GGUF of a LLaMA checkpoint directory (with vocab.json, merges.txt).
//   squeeze-export hf --model=HF_DIR --out=DIR [--bits=4] [--group_size=0] [--asymmetric]
//     Weight-only quantized safetensors, format "squeeze-rtn".
#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/data/dataset.h"
#include "core/data/idx.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/model/file_io.h"
#include "core/onnx/onnx_model.h"
#include "core/hf/hf_checkpoint.h"
#include "core/quant/export/gguf.h"
#include "core/quant/export/hf_quantized.h"
#include "core/quant/export/onnx_qdq.h"
#include "core/runtime/executor.h"
#include "core/status_macros.h"

ABSL_FLAG(std::string, model, "", "Input model.");
ABSL_FLAG(std::string, out, "", "Output file.");
ABSL_FLAG(int, bits, 8, "Weight bits: 4 or 8.");
ABSL_FLAG(int, group_size, 0, "0: per output channel; else inputs per group.");
ABSL_FLAG(bool, asymmetric, false, "Asymmetric weights (uint8 containers with zero points).");
ABSL_FLAG(std::string, calibration_images, "", "qdq: idx images for activation ranges.");
ABSL_FLAG(int, calibration_count, 512, "qdq: calibration images used.");
ABSL_FLAG(std::string, images, "", "eval: idx images.");
ABSL_FLAG(std::string, labels, "", "eval: idx labels; compare: raw int64 labels.");
ABSL_FLAG(int, count, 0, "eval: images used (0: all).");
ABSL_FLAG(std::string, input_out, "", "eval: raw float32 input written here.");
ABSL_FLAG(std::string, output_out, "", "eval: raw float32 logits written here.");
ABSL_FLAG(std::string, labels_out, "", "eval: raw int64 labels written here.");
ABSL_FLAG(std::string, ours, "", "compare: our logits.");
ABSL_FLAG(std::string, theirs, "", "compare: the other runtime's logits.");
ABSL_FLAG(int, classes, 10, "compare: logits per example.");
ABSL_FLAG(std::string, gguf_type, "q8_0", "gguf: q8_0, q4_0, f16 or f32 for the 2-D weights.");

namespace squeeze {
namespace {

using core::graph::DataType;
using core::graph::Tensor;

constexpr int64_t kBatch = 500;

// Images [N, 28, 28] uint8 -> float32 [count, 1, 28, 28] in [0, 1].
Tensor ImagesToTensor(const core::model::Tensor& images, int64_t count) {
  Tensor t(DataType::kFloat32, {count, 1, images.shape[1], images.shape[2]});
  const auto* pixels = reinterpret_cast<const uint8_t*>(images.data.data());
  for (int64_t i = 0; i < t.num_elements(); ++i) t.data<float>()[i] = pixels[i] / 255.0f;
  return t;
}

// Runs `graph` on `x` in batches of kBatch rows; returns all outputs'
// tensors concatenated per output.
absl::StatusOr<std::vector<std::vector<float>>> RunBatched(const core::graph::Graph& graph,
                                                           const Tensor& x) {
  SQ_ASSIGN_OR_RETURN(auto executor, core::runtime::Executor::Create(
                                         graph, core::kernels::cpu::CreateCpuBackend(1)));
  const int64_t n = x.shape()[0], row = x.num_elements() / n;
  std::vector<std::vector<float>> outputs(graph.outputs.size());
  for (int64_t begin = 0; begin < n; begin += kBatch) {
    const int64_t rows = std::min(kBatch, n - begin);
    std::vector<int64_t> shape = x.shape();
    shape[0] = rows;
    Tensor batch(DataType::kFloat32, shape);
    std::copy_n(x.data<float>() + begin * row, rows * row, batch.data<float>());
    SQ_ASSIGN_OR_RETURN(auto result, executor.Run({{graph.inputs[0].name, batch}}));
    for (size_t o = 0; o < result.size(); ++o) {
      const std::vector<float> values = result[o].ToFloats();
      outputs[o].insert(outputs[o].end(), values.begin(), values.end());
    }
  }
  return outputs;
}

std::string FloatBytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

absl::StatusOr<std::vector<float>> ReadFloats(const std::string& path) {
  SQ_ASSIGN_OR_RETURN(std::string bytes, core::model::ReadFile(path));
  std::vector<float> v(bytes.size() / sizeof(float));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
  return v;
}

absl::Status Qdq() {
  SQ_ASSIGN_OR_RETURN(core::graph::Graph graph, core::onnx::LoadOnnxModel(absl::GetFlag(FLAGS_model)));
  core::quant::RtnOptions options;
  options.bits = absl::GetFlag(FLAGS_bits);
  options.group_size = absl::GetFlag(FLAGS_group_size);
  options.asymmetric = absl::GetFlag(FLAGS_asymmetric);
  SQ_ASSIGN_OR_RETURN(auto weights, core::quant_export::QuantizeGraphWeights(graph, options));
  core::quant_export::QdqOptions qdq;
  if (!absl::GetFlag(FLAGS_calibration_images).empty()) {
    SQ_ASSIGN_OR_RETURN(core::model::Tensor images,
                        core::data::ReadIdxFile(absl::GetFlag(FLAGS_calibration_images)));
    const int64_t count = std::min<int64_t>(absl::GetFlag(FLAGS_calibration_count), images.shape[0]);
    // Min-max over the data input of every quantized node, read by making
    // those values extra graph outputs.
    core::graph::Graph probe = graph;
    probe.outputs.clear();
    std::vector<std::string> names;
    for (const core::graph::Node& node : graph.nodes) {
      if (node.inputs.size() >= 2 && weights.count(node.inputs[1]) &&
          std::find(names.begin(), names.end(), node.inputs[0]) == names.end()) {
        names.push_back(node.inputs[0]);
        probe.outputs.push_back({node.inputs[0], DataType::kFloat32, std::nullopt});
      }
    }
    SQ_ASSIGN_OR_RETURN(auto values, RunBatched(probe, ImagesToTensor(images, count)));
    for (size_t i = 0; i < names.size(); ++i) {
      const auto [lo, hi] = std::minmax_element(values[i].begin(), values[i].end());
      qdq.activation_ranges[names[i]] = {*lo, *hi};
      std::fprintf(stderr, "activation %s: [%g, %g]\n", names[i].c_str(), *lo, *hi);
    }
  }
  SQ_ASSIGN_OR_RETURN(core::graph::Graph exported,
                      core::quant_export::ExportQdqGraph(graph, weights, qdq));
  SQ_RETURN_IF_ERROR(core::onnx::SaveOnnxModel(exported, absl::GetFlag(FLAGS_out)));
  std::printf("{\"model\": \"%s\", \"quantized_weights\": %zu, \"activation_pairs\": %zu}\n",
              absl::GetFlag(FLAGS_out).c_str(), weights.size(), qdq.activation_ranges.size());
  return absl::OkStatus();
}

absl::Status Eval() {
  SQ_ASSIGN_OR_RETURN(core::graph::Graph graph, core::onnx::LoadOnnxModel(absl::GetFlag(FLAGS_model)));
  SQ_ASSIGN_OR_RETURN(core::data::Dataset data,
                      core::data::ReadIdxDataset(absl::GetFlag(FLAGS_images), absl::GetFlag(FLAGS_labels)));
  SQ_ASSIGN_OR_RETURN(std::vector<int64_t> labels, core::data::LabelsAsInt64(data));
  int64_t count = absl::GetFlag(FLAGS_count);
  if (count <= 0 || count > data.NumExamples()) count = data.NumExamples();
  labels.resize(static_cast<size_t>(count));
  const Tensor x = ImagesToTensor(data.inputs, count);
  SQ_ASSIGN_OR_RETURN(auto outputs, RunBatched(graph, x));
  const std::vector<float>& logits = outputs[0];
  const int64_t classes = static_cast<int64_t>(logits.size()) / count;
  int64_t correct = 0;
  for (int64_t i = 0; i < count; ++i) {
    const float* row = logits.data() + i * classes;
    correct += (std::max_element(row, row + classes) - row) == labels[i];
  }
  SQ_RETURN_IF_ERROR(core::model::WriteFileAtomically(absl::GetFlag(FLAGS_input_out),
                                                      std::string(x.bytes())));
  SQ_RETURN_IF_ERROR(core::model::WriteFileAtomically(absl::GetFlag(FLAGS_output_out), FloatBytes(logits)));
  SQ_RETURN_IF_ERROR(core::model::WriteFileAtomically(
      absl::GetFlag(FLAGS_labels_out),
      std::string(reinterpret_cast<const char*>(labels.data()), labels.size() * sizeof(int64_t))));
  std::printf("{\"model\": \"%s\", \"examples\": %lld, \"accuracy\": %.4f}\n",
              absl::GetFlag(FLAGS_model).c_str(), static_cast<long long>(count),
              static_cast<double>(correct) / count);
  return absl::OkStatus();
}

absl::Status Compare() {
  SQ_ASSIGN_OR_RETURN(std::vector<float> ours, ReadFloats(absl::GetFlag(FLAGS_ours)));
  SQ_ASSIGN_OR_RETURN(std::vector<float> theirs, ReadFloats(absl::GetFlag(FLAGS_theirs)));
  SQ_ASSIGN_OR_RETURN(std::string label_bytes, core::model::ReadFile(absl::GetFlag(FLAGS_labels)));
  const int64_t classes = absl::GetFlag(FLAGS_classes);
  const int64_t count = static_cast<int64_t>(label_bytes.size() / sizeof(int64_t));
  if (ours.size() != theirs.size() || static_cast<int64_t>(ours.size()) != count * classes) {
    return absl::InvalidArgumentError(absl::StrCat("compare: ", ours.size(), " and ", theirs.size(),
                                                   " logits for ", count, " labels"));
  }
  std::vector<int64_t> labels(static_cast<size_t>(count));
  std::memcpy(labels.data(), label_bytes.data(), label_bytes.size());
  double max_abs = 0, max_magnitude = 0;
  for (size_t i = 0; i < ours.size(); ++i) {
    max_abs = std::max(max_abs, std::abs(static_cast<double>(ours[i]) - theirs[i]));
    max_magnitude = std::max(max_magnitude, std::abs(static_cast<double>(ours[i])));
  }
  int64_t ours_correct = 0, theirs_correct = 0, agree = 0;
  for (int64_t i = 0; i < count; ++i) {
    const float* a = ours.data() + i * classes;
    const float* b = theirs.data() + i * classes;
    const int64_t pa = std::max_element(a, a + classes) - a, pb = std::max_element(b, b + classes) - b;
    ours_correct += pa == labels[i];
    theirs_correct += pb == labels[i];
    agree += pa == pb;
  }
  std::printf("{\"examples\": %lld, \"max_abs_diff\": %.3g, \"max_rel_diff\": %.3g, "
              "\"ours_accuracy\": %.4f, \"theirs_accuracy\": %.4f, \"argmax_agreement\": %.4f}\n",
              static_cast<long long>(count), max_abs, max_abs / std::max(max_magnitude, 1e-30),
              static_cast<double>(ours_correct) / count, static_cast<double>(theirs_correct) / count,
              static_cast<double>(agree) / count);
  return absl::OkStatus();
}

absl::Status Gguf() {
  const std::string type = absl::GetFlag(FLAGS_gguf_type);
  core::quant_export::GgufExportOptions options;
  if (type == "q8_0") {
    options.weight_type = core::quant_export::GgmlType::kQ8_0;
  } else if (type == "q4_0") {
    options.weight_type = core::quant_export::GgmlType::kQ4_0;
  } else if (type == "f16") {
    options.weight_type = core::quant_export::GgmlType::kF16;
  } else if (type == "f32") {
    options.weight_type = core::quant_export::GgmlType::kF32;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("--gguf_type must be q8_0, q4_0, f16 or f32, got ", type));
  }
  return core::quant_export::ExportLlamaGguf(absl::GetFlag(FLAGS_model), absl::GetFlag(FLAGS_out), options);
}

absl::Status Hf() {
  SQ_ASSIGN_OR_RETURN(core::hf::HfCheckpoint checkpoint, core::hf::LoadHfCheckpoint(absl::GetFlag(FLAGS_model)));
  core::quant::RtnOptions options;
  options.bits = absl::GetFlag(FLAGS_bits);
  options.group_size = absl::GetFlag(FLAGS_group_size);
  options.asymmetric = absl::GetFlag(FLAGS_asymmetric);
  return core::quant_export::SaveHfQuantized(checkpoint.config, checkpoint.graph, options,
                                              absl::GetFlag(FLAGS_out));
}

}  // namespace
}  // namespace squeeze

int main(int argc, char** argv) {
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  const std::string command = positional.size() == 2 ? positional[1] : "";
  absl::Status status;
  if (command == "qdq") {
    status = squeeze::Qdq();
  } else if (command == "eval") {
    status = squeeze::Eval();
  } else if (command == "compare") {
    status = squeeze::Compare();
  } else if (command == "gguf") {
    status = squeeze::Gguf();
  } else if (command == "hf") {
    status = squeeze::Hf();
  } else {
    std::fprintf(stderr, "usage: squeeze-export {qdq|eval|compare|gguf|hf} --flags (see the source header)\n");
    return 2;
  }
  if (!status.ok()) {
    std::fprintf(stderr, "squeeze-export %s: %s\n", command.c_str(), status.ToString().c_str());
    return 1;
  }
  return 0;
}
