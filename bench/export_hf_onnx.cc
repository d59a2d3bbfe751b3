// squeeze-export-hf-onnx: writes a Hugging Face causal-LM checkpoint
// directory (core/hf: LLaMA or GPT-2 family) as one ONNX file, so that the
// runtime bench (scripts/bench-runtime.sh) can time our runtime and ONNX
// Runtime on the same file. The model takes "input_ids" int64 [batch, seq]
// and returns "logits" float32 [batch, seq, vocab].
//
//   squeeze-export-hf-onnx --checkpoint=deploy/models/lm --out=/tmp/lm.onnx
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "core/hf/hf_checkpoint.h"
#include "core/onnx/onnx_model.h"
#include "core/status_macros.h"

ABSL_FLAG(std::string, checkpoint, "", "Hugging Face checkpoint directory.");
ABSL_FLAG(std::string, out, "", "ONNX file to write.");

namespace {

absl::Status Run() {
  const std::string dir = absl::GetFlag(FLAGS_checkpoint), out = absl::GetFlag(FLAGS_out);
  if (dir.empty() || out.empty()) {
    return absl::InvalidArgumentError("--checkpoint and --out are required");
  }
  SQ_ASSIGN_OR_RETURN(squeeze::core::hf::HfCheckpoint checkpoint,
                      squeeze::core::hf::LoadHfCheckpoint(dir));
  return squeeze::core::onnx::SaveOnnxModel(checkpoint.graph, out);
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  if (const absl::Status status = Run(); !status.ok()) {
    std::fprintf(stderr, "squeeze-export-hf-onnx: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
