// make_lm_job_files: the reference language model (deploy/models/lm) in the
// form a Squeeze job takes, for the service tests and the constraint-search
// demo:
//   <out>/lm.onnx                  the checkpoint as ONNX (input_ids -> logits)
//   <out>/lm_calibration.safetensors  --calibration_windows training windows
//   <out>/lm_evaluation.safetensors   --evaluation_windows held-out windows
// Each dataset holds "inputs" int64 [N, context] and "labels" int64
// [N, context] (the next token at every position), drawn with --seed.
//
//   make_lm_job_files --out=/tmp/lm-job
#include <cstdio>
#include <filesystem>
#include <random>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "core/hf/hf_checkpoint.h"
#include "core/model/file_io.h"
#include "core/model/safetensors.h"
#include "core/onnx/onnx_model.h"
#include "core/status_macros.h"
#include "deploy/models/lm_corpus.h"

ABSL_FLAG(std::string, models_dir, "deploy/models", "The reference models.");
ABSL_FLAG(std::string, lm_data_dir, "third_party/npm/node_modules/@stdlib", "The LM corpus.");
ABSL_FLAG(std::string, out, "", "Output directory (created).");
ABSL_FLAG(int64_t, context, 64, "Tokens per window.");
ABSL_FLAG(int64_t, calibration_windows, 64, "Training windows (random starts).");
ABSL_FLAG(int64_t, evaluation_windows, 64, "Held-out windows (evenly spaced, non-overlapping).");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the training window starts.");

namespace squeeze::deploy {
namespace {

absl::Status WriteWindows(const std::vector<int64_t>& tokens, const std::vector<int64_t>& starts, int64_t context,
                          const std::string& path) {
  auto [inputs, labels] = Windows(tokens, starts, context);
  core::model::SafetensorsFile file;
  SQ_ASSIGN_OR_RETURN(file.tensors["inputs"], core::graph::ToModelTensor(inputs));
  core::model::Tensor y;
  y.dtype = core::model::DType::kI64;
  y.shape = {static_cast<int64_t>(starts.size()), context};
  y.data.assign(reinterpret_cast<const char*>(labels.data()), labels.size() * sizeof(int64_t));
  file.tensors["labels"] = std::move(y);
  return core::model::WriteFileAtomically(path, core::model::SerializeSafetensors(file));
}

absl::Status Run() {
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) return absl::InvalidArgumentError("--out is required");
  std::error_code error;
  std::filesystem::create_directories(out, error);
  if (error) return absl::UnavailableError(absl::StrCat("--out ", out, ": ", error.message()));
  const std::string dir = absl::GetFlag(FLAGS_models_dir) + "/lm";
  SQ_ASSIGN_OR_RETURN(core::hf::HfCheckpoint checkpoint, core::hf::LoadHfCheckpoint(dir));
  SQ_RETURN_IF_ERROR(core::onnx::SaveOnnxModel(checkpoint.graph, out + "/lm.onnx"));
  SQ_ASSIGN_OR_RETURN(core::text::BpeTokenizer tokenizer,
                      core::text::BpeTokenizer::FromVocabAndMerges(dir + "/vocab.json", dir + "/merges.txt"));
  SQ_ASSIGN_OR_RETURN(Corpus corpus, ReadCorpus(absl::GetFlag(FLAGS_lm_data_dir)));
  const int64_t context = absl::GetFlag(FLAGS_context);
  const std::vector<int64_t> train = Tokenize(corpus.train, tokenizer);
  const std::vector<int64_t> held_out = Tokenize(corpus.held_out, tokenizer);
  std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));
  std::uniform_int_distribution<int64_t> start(0, static_cast<int64_t>(train.size()) - context - 2);
  std::vector<int64_t> train_starts(absl::GetFlag(FLAGS_calibration_windows));
  for (int64_t& s : train_starts) s = start(rng);
  SQ_RETURN_IF_ERROR(WriteWindows(train, train_starts, context, out + "/lm_calibration.safetensors"));
  const int64_t n = absl::GetFlag(FLAGS_evaluation_windows);
  const int64_t stride = (static_cast<int64_t>(held_out.size()) - 1) / n;
  if (stride < context) return absl::InvalidArgumentError("held-out split too short for that many windows");
  std::vector<int64_t> held_starts(n);
  for (int64_t i = 0; i < n; ++i) held_starts[i] = i * stride;
  SQ_RETURN_IF_ERROR(WriteWindows(held_out, held_starts, context, out + "/lm_evaluation.safetensors"));
  std::printf("wrote %s/lm.onnx, lm_calibration.safetensors (%lld windows), lm_evaluation.safetensors "
              "(%lld windows) of %lld tokens\n",
              out.c_str(), static_cast<long long>(train_starts.size()), static_cast<long long>(n),
              static_cast<long long>(context));
  return absl::OkStatus();
}

}  // namespace
}  // namespace squeeze::deploy

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  absl::Status status = squeeze::deploy::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "make_lm_job_files: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
