#include "core/quant/export/hf_quantized.h"

#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/model/file_io.h"
#include "core/model/json.h"
#include "core/model/linear_chain.h"
#include "core/model/safetensors.h"
#include "core/quant/packed_formats.h"
#include "core/status_macros.h"

namespace squeeze::core::quant_export {
namespace {

bool IsQuantizedLinear(const std::string& name, const hf::HfConfig& config) {
  return absl::EndsWith(name, "_proj.weight") ||
         (name == "lm_head.weight" && !config.tie_word_embeddings);
}

model::Tensor Bytes(model::DType dtype, std::vector<int64_t> shape, std::string data) {
  return model::Tensor{dtype, std::move(shape), std::move(data)};
}

model::Tensor Floats(std::vector<int64_t> shape, const std::vector<float>& v) {
  return model::Tensor::FromFloats(std::move(shape), v);
}

absl::StatusOr<const model::Tensor*> Find(const model::SafetensorsFile& file,
                                          const std::string& name, model::DType dtype,
                                          const std::vector<int64_t>& shape) {
  const auto it = file.tensors.find(name);
  if (it == file.tensors.end() || it->second.dtype != dtype || it->second.shape != shape) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model.safetensors: want tensor ", name, " ", model::DTypeName(dtype), " [",
        absl::StrJoin(shape, ", "), "]", it == file.tensors.end() ? " (missing)" : ""));
  }
  return &it->second;
}

}  // namespace

absl::Status SaveHfQuantized(const hf::HfConfig& config, const graph::Graph& graph,
                             const quant::RtnOptions& options, const std::string& dir) {
  if (config.family != hf::ModelFamily::kLlama) {
    return absl::InvalidArgumentError("hf-quantized: only LLaMA checkpoints are exported");
  }
  model::SafetensorsFile file;
  std::vector<std::string> modules;
  for (const auto& [name, shape] : hf::CheckpointTensorShapes(config)) {
    const auto it = graph.initializers.find(name);
    if (it == graph.initializers.end()) {
      return absl::InvalidArgumentError(absl::StrCat("hf-quantized: the graph has no tensor ", name));
    }
    const std::vector<float> values = it->second.ToFloats();
    if (!IsQuantizedLinear(name, config)) {
      file.tensors[name] = Floats(shape, values);
      continue;
    }
    const std::string module = name.substr(0, name.size() - std::string(".weight").size());
    SQ_ASSIGN_OR_RETURN(quant::QuantizedLinear q,
                        quant::QuantizeRtn(model::LinearLayer{module, shape[1], shape[0], values, {}},
                                           options));
    const int64_t groups = q.Groups();
    const bool int8_signed = q.bits == 8 && !q.asymmetric;
    file.tensors[module + ".qweight"] =
        Bytes(int8_signed ? model::DType::kI8 : model::DType::kU8,
              {q.out, quant::PackedRowBytes(q.bits, q.in)}, q.packed);
    file.tensors[module + ".scales"] = Floats({q.out, groups}, q.scales);
    if (q.asymmetric) {
      file.tensors[module + ".qzeros"] = Bytes(
          model::DType::kU8, {q.out, groups},
          std::string(q.zero_points.begin(), q.zero_points.end()));
    }
    modules.push_back(module);
  }
  std::string json = hf::HfConfigToJson(config);
  json.resize(json.rfind('}'));
  while (!json.empty() && (json.back() == '\n' || json.back() == ' ')) json.pop_back();
  std::vector<std::string> quoted;
  for (const std::string& m : modules) quoted.push_back(model::JsonQuote(m));
  absl::StrAppend(&json, ",\n  \"quantization_config\": {\"quant_method\": \"", kHfQuantMethod,
                  "\", \"bits\": ", options.bits, ", \"group_size\": ", options.group_size,
                  ", \"sym\": ", options.asymmetric ? "false" : "true", ", \"modules\": [",
                  absl::StrJoin(quoted, ", "), "]}\n}\n");
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) return absl::InternalError(absl::StrCat("hf-quantized: cannot create ", dir, ": ", error.message()));
  SQ_RETURN_IF_ERROR(model::WriteFileAtomically(dir + "/config.json", json));
  return model::WriteFileAtomically(dir + "/model.safetensors", model::SerializeSafetensors(file));
}

absl::StatusOr<hf::HfCheckpoint> LoadHfQuantized(const std::string& dir) {
  SQ_ASSIGN_OR_RETURN(std::string json, model::ReadFile(dir + "/config.json"));
  SQ_ASSIGN_OR_RETURN(hf::HfConfig config, hf::ParseHfConfig(json, dir + "/config.json"));
  SQ_ASSIGN_OR_RETURN(model::JsonValue root, model::ParseJson(json));
  const model::JsonValue* qc = model::FindJsonMember(root, "quantization_config");
  const model::JsonValue* method = qc ? model::FindJsonMember(*qc, "quant_method") : nullptr;
  if (method == nullptr || method->string_value != kHfQuantMethod) {
    return absl::InvalidArgumentError(absl::StrCat(
        dir, "/config.json: quantization_config.quant_method is not \"", kHfQuantMethod, "\""));
  }
  quant::QuantizedLinear prototype;
  for (const auto& [key, field] : {std::pair<const char*, int*>{"bits", &prototype.bits},
                                   std::pair<const char*, int*>{"group_size", &prototype.group_size}}) {
    const model::JsonValue* v = model::FindJsonMember(*qc, key);
    if (v == nullptr || v->kind != model::JsonValue::Kind::kInteger) {
      return absl::InvalidArgumentError(absl::StrCat(dir, "/config.json: quantization_config.", key,
                                                     " is missing or not an integer"));
    }
    *field = static_cast<int>(v->integer_value);
  }
  const model::JsonValue* sym = model::FindJsonMember(*qc, "sym");
  if (sym == nullptr || sym->kind != model::JsonValue::Kind::kBool) {
    return absl::InvalidArgumentError(absl::StrCat(dir, "/config.json: quantization_config.sym is missing"));
  }
  prototype.asymmetric = !sym->bool_value;
  SQ_ASSIGN_OR_RETURN(model::SafetensorsFile file,
                      model::ReadSafetensorsFile(dir + "/model.safetensors"));
  std::map<std::string, graph::Tensor> weights;
  for (const auto& [name, shape] : hf::CheckpointTensorShapes(config)) {
    if (!IsQuantizedLinear(name, config)) {
      SQ_ASSIGN_OR_RETURN(const model::Tensor* t, Find(file, name, model::DType::kF32, shape));
      SQ_ASSIGN_OR_RETURN(weights[name], graph::FromModelTensor(*t));
      continue;
    }
    const std::string module = name.substr(0, name.size() - std::string(".weight").size());
    quant::QuantizedLinear q = prototype;
    q.name = module;
    q.out = shape[0];
    q.in = shape[1];
    const int64_t groups = q.group_size == 0 ? 1 : q.in / q.group_size;
    const bool int8_signed = q.bits == 8 && !q.asymmetric;
    SQ_ASSIGN_OR_RETURN(const model::Tensor* packed,
                        Find(file, module + ".qweight", int8_signed ? model::DType::kI8 : model::DType::kU8,
                             {q.out, quant::PackedRowBytes(q.bits, q.in)}));
    SQ_ASSIGN_OR_RETURN(const model::Tensor* scales,
                        Find(file, module + ".scales", model::DType::kF32, {q.out, groups}));
    q.packed = packed->data;
    SQ_ASSIGN_OR_RETURN(q.scales, scales->ToFloats());
    if (q.asymmetric) {
      SQ_ASSIGN_OR_RETURN(const model::Tensor* zeros,
                          Find(file, module + ".qzeros", model::DType::kU8, {q.out, groups}));
      q.zero_points.assign(zeros->data.begin(), zeros->data.end());
    }
    graph::Tensor w(graph::DataType::kFloat32, shape);
    SQ_RETURN_IF_ERROR(quant::DequantizeRtn(q, w.data<float>()));
    weights[name] = std::move(w);
  }
  SQ_ASSIGN_OR_RETURN(graph::Graph graph, hf::BuildCausalLmGraph(config, std::move(weights)));
  return hf::HfCheckpoint{config, std::move(graph)};
}

}  // namespace squeeze::core::quant_export
