// Validation of what clients send, before anything is stored. Every error is
// INVALID_ARGUMENT (or NOT_FOUND / UNIMPLEMENTED where that is the truth)
// with a message naming the field and the bad value, e.g.
//   "spec.recipe.passes[0].quantize.bits must be 4 or 8, got 12".
// Pure functions: no I/O, tested without gRPC.
#ifndef SQUEEZE_SERVER_JOB_SPEC_VALIDATION_H_
#define SQUEEZE_SERVER_JOB_SPEC_VALIDATION_H_

#include <string>

#include "absl/status/status.h"
#include "core/graph/graph.h"
#include "core/model/safetensors.h"
#include "core/quant/ptq/layers.h"
#include "core/quant/ptq/ptq.h"
#include "core/quant/rtn.h"
#include "google/protobuf/message.h"
#include "server/device_profiles.h"
#include "squeeze/v1/squeeze.pb.h"

namespace squeeze::server {

// True for exactly 64 lower-case hex characters (a blob's SHA-256).
bool IsSha256Hex(std::string_view text);

// Fields a newer client set that this daemon does not know arrive as unknown
// fields; silently dropping them would run a different job than was asked.
absl::Status RejectUnknownFields(const google::protobuf::Message& message,
                                 const std::string& path);

// Checks the request on its own: references well formed, options in range,
// devices known. Does not look at the model.
absl::Status ValidateSubmitRequest(const v1::SubmitJobRequest& request,
                                   const DeviceProfiles& devices);

// The core options of a quantize pass, defaults applied.
core::quant::RtnOptions RtnOptionsFromPass(const v1::QuantizePass& pass);

// Checks the recipe against the model's layers (from its header alone).
// The ONNX-only quantize options (method, activation_bits, observer,
// smoothquant_alpha, bias_correction) must keep their defaults.
absl::Status ValidateRecipeForModel(const v1::Recipe& recipe,
                                    const core::model::SafetensorsHeader& model);

// The PTQ options of a quantize pass for an ONNX model, defaults applied
// (GPTQ turns on the calibration Hessian).
core::quant::ptq::PtqOptions PtqOptionsFromPass(const v1::QuantizePass& pass);

// Checks the recipe against an ONNX model's quantizable layers:
// INVALID_ARGUMENT naming the pass and the layer a format does not fit, or
// when the model has no quantizable layer.
absl::Status ValidateRecipeForGraph(const v1::Recipe& recipe, const core::quant::ptq::LayerScan& scan);

// Checks a safetensors dataset's header against the model's data input:
// an "inputs" tensor whose non-batch dims match `input` (symbolic dims match
// anything) and, when `needs_labels`, a "labels" tensor. `field` names the
// dataset in messages ("spec.evaluation_dataset").
absl::Status ValidateDatasetHeader(const core::model::SafetensorsHeader& header,
                                   const core::graph::ValueInfo& input, bool needs_labels,
                                   const std::string& field);

}  // namespace squeeze::server

#endif  // SQUEEZE_SERVER_JOB_SPEC_VALIDATION_H_
