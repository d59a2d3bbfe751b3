#include "core/compress/variant_builder.h"

#include <cmath>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/eval/fidelity.h"
#include "core/eval/seeded_normal.h"
#include "core/model/file_io.h"
#include "core/model/linear_chain.h"
#include "core/model/safetensors.h"
#include "core/quant/quantized_model.h"
#include "core/status_macros.h"

namespace squeeze::core::compress {
namespace {

constexpr char kInputsTensor[] = "inputs";
// Latency budgets: enough samples for stable percentiles of a small model
// without making a job wait.
constexpr int kLatencyWarmup = 3;
constexpr int kLatencyMinIterations = 10;
constexpr double kLatencyMinSeconds = 0.2;

struct Inputs {
  std::vector<float> values;  // [rows, width]
  int64_t rows = 0;
};

absl::Status Invalid(const std::string& what) {
  return absl::InvalidArgumentError(what);
}

absl::StatusOr<Inputs> LoadInputs(const std::string& path, int64_t width,
                                  const std::string& role) {
  const std::string where = absl::StrCat(role, " file ", path, ": ");
  SQ_ASSIGN_OR_RETURN(const model::SafetensorsFile file,
                      model::ReadSafetensorsFile(path));
  const auto it = file.tensors.find(kInputsTensor);
  if (it == file.tensors.end()) {
    std::vector<std::string> names;
    for (const auto& [name, unused] : file.tensors) names.push_back(name);
    return Invalid(absl::StrCat(where, "no tensor \"", kInputsTensor,
                                "\" (tensors: ", absl::StrJoin(names, ", "),
                                ")"));
  }
  const model::Tensor& tensor = it->second;
  if (tensor.shape.size() != 2 || tensor.shape[0] <= 0) {
    return Invalid(absl::StrCat(where, "\"inputs\" has shape [",
                                absl::StrJoin(tensor.shape, ", "),
                                "]; expected [N, ", width, "] with N > 0"));
  }
  if (tensor.shape[1] != width) {
    return Invalid(absl::StrCat(where, "inputs width ", tensor.shape[1],
                                " does not match the model input width ",
                                width));
  }
  absl::StatusOr<std::vector<float>> values = tensor.ToFloats();
  if (!values.ok()) {
    return Invalid(absl::StrCat(where, "\"inputs\": ",
                                values.status().message()));
  }
  for (size_t i = 0; i < values->size(); ++i) {
    if (!std::isfinite((*values)[i])) {
      return Invalid(absl::StrCat(where, "inputs[", i / width, ", ", i % width,
                                  "] is ", (*values)[i]));
    }
  }
  return Inputs{std::move(*values), tensor.shape[0]};
}

// Reports progress and turns a false answer into CANCELLED.
class StageReporter {
 public:
  explicit StageReporter(const ProgressFn& progress) : progress_(progress) {}

  absl::Status Report(const std::string& stage, int64_t step, int64_t total) {
    if (progress_ && !progress_(stage, step, total)) {
      return absl::CancelledError(absl::StrCat(
          "cancelled during ", stage, " (step ", step, " of ", total, ")"));
    }
    return absl::OkStatus();
  }

 private:
  const ProgressFn& progress_;
};

absl::Status WithPrefix(const absl::Status& status, const std::string& prefix) {
  return absl::Status(status.code(), absl::StrCat(prefix, status.message()));
}

}  // namespace

std::string CpuModelName() {
  absl::StatusOr<std::string> cpuinfo = model::ReadFile("/proc/cpuinfo");
  if (cpuinfo.ok()) {
    for (absl::string_view line : absl::StrSplit(*cpuinfo, '\n')) {
      std::pair<absl::string_view, absl::string_view> field =
          absl::StrSplit(line, absl::MaxSplits(':', 1));
      if (absl::StripAsciiWhitespace(field.first) == "model name") {
        return std::string(absl::StripAsciiWhitespace(field.second));
      }
    }
  }
  return "unknown CPU";
}

absl::StatusOr<VariantReport> BuildQuantizedVariant(
    const VariantRequest& request, const ProgressFn& progress) {
  if (request.artifact_path.empty()) {
    return Invalid("variant: artifact_path is empty");
  }
  StageReporter stages(progress);
  VariantReport report;
  report.technique = request.rtn.TechniqueName();

  SQ_RETURN_IF_ERROR(stages.Report("load", 0, 1));
  SQ_ASSIGN_OR_RETURN(const uint64_t model_bytes,
                      model::FileSize(request.model_path));
  report.baseline_bytes = static_cast<int64_t>(model_bytes);
  SQ_ASSIGN_OR_RETURN(const model::SafetensorsFile model_file,
                      model::ReadSafetensorsFile(request.model_path));
  absl::StatusOr<model::LinearChain> chain =
      model::LinearChainFromSafetensors(model_file);
  if (!chain.ok()) {
    return WithPrefix(chain.status(),
                      absl::StrCat("model file ", request.model_path, ": "));
  }
  for (const model::LinearLayer& layer : chain->layers) {
    SQ_RETURN_IF_ERROR(request.rtn.Validate(layer.in, layer.name));
  }
  report.fp32_weight_bytes =
      chain->Parameters() * static_cast<int64_t>(sizeof(float));
  SQ_RETURN_IF_ERROR(stages.Report("load", 1, 1));

  SQ_RETURN_IF_ERROR(stages.Report("calibrate", 0, 1));
  const int64_t width = chain->InputWidth();
  Inputs calibration;
  if (request.calibration_path.empty()) {
    calibration.rows = kGeneratedCalibrationRows;
    calibration.values =
        eval::NormalFloats(request.seed, kGeneratedCalibrationRows * width);
  } else {
    SQ_ASSIGN_OR_RETURN(
        calibration,
        LoadInputs(request.calibration_path, width, "calibration"));
  }
  Inputs evaluation = calibration;
  if (!request.evaluation_path.empty()) {
    SQ_ASSIGN_OR_RETURN(
        evaluation, LoadInputs(request.evaluation_path, width, "evaluation"));
  }
  std::vector<float> unused_output;
  std::vector<std::vector<float>> layer_inputs;
  model::Forward(*chain, calibration.values.data(), calibration.rows,
                 &unused_output, &layer_inputs);
  SQ_RETURN_IF_ERROR(stages.Report("calibrate", 1, 1));

  const int layer_count = static_cast<int>(chain->layers.size());
  SQ_RETURN_IF_ERROR(stages.Report("quantize", 0, layer_count));
  SQ_ASSIGN_OR_RETURN(
      const quant::QuantizedChain quantized,
      quant::QuantizeChain(*chain, request.rtn, [&stages](int i, int n) {
        return stages.Report("quantize", i + 1, n).ok();
      }));

  // Everything below measures the variant as read back from the artifact
  // bytes, so the report describes exactly what is shipped.
  const std::string artifact = model::SerializeSafetensors(
      quant::QuantizedChainToSafetensors(quantized));
  report.artifact_bytes = static_cast<int64_t>(artifact.size());
  SQ_ASSIGN_OR_RETURN(const model::SafetensorsFile artifact_file,
                      model::ParseSafetensors(artifact));
  SQ_ASSIGN_OR_RETURN(const quant::QuantizedChain shipped,
                      quant::QuantizedChainFromSafetensors(artifact_file));
  SQ_ASSIGN_OR_RETURN(const model::LinearChain dequantized,
                      quant::DequantizeChain(shipped));

  SQ_RETURN_IF_ERROR(stages.Report("evaluate", 0, layer_count + 1));
  for (int i = 0; i < layer_count; ++i) {
    const model::LinearLayer& original = chain->layers[i];
    const model::LinearLayer& approximate = dequantized.layers[i];
    const std::vector<float>& x = layer_inputs[i];
    std::vector<float> expected(calibration.rows * original.out);
    std::vector<float> actual(expected.size());
    const float* bias = original.bias.empty() ? nullptr : original.bias.data();
    model::LinearForward(x.data(), calibration.rows, original.in, original.out,
                         original.weight.data(), bias, /*relu=*/false,
                         expected.data());
    model::LinearForward(x.data(), calibration.rows, original.in, original.out,
                         approximate.weight.data(), bias, /*relu=*/false,
                         actual.data());
    const eval::FidelityReport fidelity =
        eval::CompareOutputs(expected.data(), actual.data(), expected.size());
    report.layers.push_back(LayerFidelity{original.name, request.rtn.bits,
                                          fidelity.relative_error,
                                          fidelity.sqnr_db,
                                          original.Parameters()});
    SQ_RETURN_IF_ERROR(stages.Report("evaluate", i + 1, layer_count + 1));
  }
  std::vector<float> reference_output;
  model::Forward(*chain, evaluation.values.data(), evaluation.rows,
                 &reference_output, nullptr);
  std::vector<float> variant_output;
  SQ_RETURN_IF_ERROR(quant::QuantizedForward(shipped, evaluation.values.data(),
                                             evaluation.rows, &variant_output));
  const eval::FidelityReport output = eval::CompareOutputs(
      reference_output.data(), variant_output.data(), reference_output.size());
  report.metric = output.relative_error;
  report.output_sqnr_db = output.sqnr_db;
  SQ_RETURN_IF_ERROR(
      stages.Report("evaluate", layer_count + 1, layer_count + 1));

  SQ_RETURN_IF_ERROR(stages.Report("measure", 0, 2));
  report.batch_size = 1;
  const float* one_row = evaluation.values.data();
  std::vector<float> scratch;
  report.baseline_latency = eval::MeasureLatency(
      [&] { model::Forward(*chain, one_row, 1, &scratch, nullptr); },
      kLatencyWarmup, kLatencyMinIterations, kLatencyMinSeconds);
  SQ_RETURN_IF_ERROR(stages.Report("measure", 1, 2));
  // The variant as a runtime loads it: weights dequantized once, then the
  // same fp32 forward (decoding per call would time the decoder, not the
  // model; our low-bit GEMMs are not faster than fp32 at these sizes).
  SQ_ASSIGN_OR_RETURN(model::LinearChain loaded, quant::DequantizeChain(shipped));
  report.latency = eval::MeasureLatency(
      [&] { model::Forward(loaded, one_row, 1, &scratch, nullptr); },
      kLatencyWarmup, kLatencyMinIterations, kLatencyMinSeconds);

  const int64_t macs = chain->MacsPerRow();
  const eval::EnergyEstimate baseline_energy = eval::EstimateJoules(
      macs, eval::FormatForBits(32), report.fp32_weight_bytes,
      request.energy_model);
  const eval::EnergyEstimate variant_energy = eval::EstimateJoules(
      macs, eval::FormatForBits(request.rtn.bits), shipped.StorageBytes(),
      request.energy_model);
  report.baseline_joules = baseline_energy.joules;
  report.joules = variant_energy.joules;
  report.energy_model_description = absl::StrCat(
      request.energy_model.Describe(), "; per inference: baseline ",
      baseline_energy.Describe(), "; variant ", variant_energy.Describe());
  report.hardware = CpuModelName();
  SQ_RETURN_IF_ERROR(stages.Report("measure", 2, 2));

  SQ_RETURN_IF_ERROR(
      model::WriteFileAtomically(request.artifact_path, artifact));
  return report;
}

}  // namespace squeeze::core::compress
