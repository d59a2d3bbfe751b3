#include "core/onnx/onnx_model.h"

#include <filesystem>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/graph/shape_inference.h"
#include "core/model/file_io.h"
#include "core/status_macros.h"
#include "onnx/checker.h"
#include "onnx/onnx_pb.h"
#include "onnx/shape_inference/implementation.h"

namespace squeeze::core::onnx {
namespace {

namespace fs = std::filesystem;
using graph::DataType;
using graph::Tensor;

// The external data file named by `location`, which must stay inside
// `model_dir` (no absolute paths, no "..").
absl::StatusOr<std::string> ExternalPath(const std::string& model_dir,
                                         const std::string& location) {
  const fs::path relative(location);
  if (location.empty() || relative.is_absolute()) {
    return absl::InvalidArgumentError(
        absl::StrCat("external data location '", location, "' must be a relative path"));
  }
  for (const fs::path& part : relative) {
    if (part == "..") {
      return absl::InvalidArgumentError(absl::StrCat(
          "external data location '", location, "' leaves the model directory"));
    }
  }
  return (fs::path(model_dir) / relative).string();
}

absl::StatusOr<Tensor> TensorFromProto(const ::onnx::TensorProto& proto,
                                       const std::string& model_dir) {
  const std::string where = absl::StrCat("tensor '", proto.name(), "'");
  absl::StatusOr<DataType> dtype = graph::DataTypeFromOnnxCode(proto.data_type());
  if (!dtype.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", dtype.status().message()));
  }
  std::vector<int64_t> shape(proto.dims().begin(), proto.dims().end());
  absl::StatusOr<int64_t> count = graph::CountElements(shape);
  if (!count.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", count.status().message()));
  }
  if (proto.data_location() == ::onnx::TensorProto::EXTERNAL) {
    std::string location;
    int64_t offset = 0, length = -1;
    for (const auto& entry : proto.external_data()) {
      try {
        if (entry.key() == "location") location = entry.value();
        if (entry.key() == "offset") offset = std::stoll(entry.value());
        if (entry.key() == "length") length = std::stoll(entry.value());
      } catch (const std::exception&) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": external data ", entry.key(), " '", entry.value(), "' is not a number"));
      }
    }
    SQ_ASSIGN_OR_RETURN(std::string path, ExternalPath(model_dir, location));
    const int64_t expected = graph::StorageBytes(*dtype, *count);
    if (offset < 0 || (length >= 0 && length != expected)) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": external data offset ", offset, " / length ", length,
          " does not fit ", expected, " bytes"));
    }
    absl::StatusOr<std::string> bytes = model::ReadFileRange(path, offset, expected);
    if (!bytes.ok()) {
      return absl::Status(bytes.status().code(),
                          absl::StrCat(where, ": ", bytes.status().message()));
    }
    return Tensor::FromBytes(*dtype, shape, *bytes);
  }
  if (proto.has_raw_data()) {
    absl::StatusOr<Tensor> tensor = Tensor::FromBytes(*dtype, shape, proto.raw_data());
    if (!tensor.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", tensor.status().message()));
    }
    return tensor;
  }
  // Typed fields: float_data, double_data, int64_data, uint64_data, or
  // int32_data carrying every narrower type (16-bit floats as bit patterns).
  // The count is checked before anything is allocated, so a proto claiming
  // absurd dims with little data is an error, not an allocation.
  int64_t have = 0;
  switch (*dtype) {
    case DataType::kFloat32: have = proto.float_data_size(); break;
    case DataType::kFloat64: have = proto.double_data_size(); break;
    case DataType::kInt64: have = proto.int64_data_size(); break;
    case DataType::kUInt32:
    case DataType::kUInt64: have = proto.uint64_data_size(); break;
    default: have = proto.int32_data_size(); break;
  }
  const int64_t needed = *dtype == DataType::kInt4 ? (*count + 1) / 2 : *count;
  if (have != needed) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, " of shape ", graph::ShapeToString(shape), " needs ", needed,
        " values, has ", have));
  }
  Tensor tensor(*dtype, shape);
  switch (*dtype) {
    case DataType::kFloat32:
      std::copy(proto.float_data().begin(), proto.float_data().end(), tensor.data<float>());
      break;
    case DataType::kFloat64:
      std::copy(proto.double_data().begin(), proto.double_data().end(), tensor.data<double>());
      break;
    case DataType::kInt64:
      std::copy(proto.int64_data().begin(), proto.int64_data().end(), tensor.data<int64_t>());
      break;
    case DataType::kUInt32:
    case DataType::kUInt64:
      for (int64_t i = 0; i < *count; ++i) {
        if (*dtype == DataType::kUInt32) {
          tensor.data<uint32_t>()[i] = static_cast<uint32_t>(proto.uint64_data(i));
        } else {
          tensor.data<uint64_t>()[i] = proto.uint64_data(i);
        }
      }
      break;
    default: {
      const int64_t width = *dtype == DataType::kInt4 ? 1 : graph::StorageBytes(*dtype, 1);
      char* dst = static_cast<char*>(tensor.raw_data());
      for (int i = 0; i < proto.int32_data_size(); ++i) {
        const int32_t value = proto.int32_data(i);
        std::memcpy(dst + i * width, &value, width);  // little-endian low bytes
      }
      break;
    }
  }
  return tensor;
}

absl::StatusOr<graph::ValueInfo> ValueInfoFromProto(const ::onnx::ValueInfoProto& proto) {
  graph::ValueInfo info;
  info.name = proto.name();
  if (!proto.type().has_tensor_type()) {
    return absl::InvalidArgumentError(
        absl::StrCat("value '", proto.name(), "' is not a tensor (sequences, maps and "
                                              "optionals are not supported)"));
  }
  const auto& tensor_type = proto.type().tensor_type();
  absl::StatusOr<DataType> dtype = graph::DataTypeFromOnnxCode(tensor_type.elem_type());
  if (!dtype.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("value '", proto.name(), "': ", dtype.status().message()));
  }
  info.dtype = *dtype;
  if (tensor_type.has_shape()) {
    std::vector<graph::Dim> dims;
    for (const auto& dim : tensor_type.shape().dim()) {
      graph::Dim d;
      if (dim.has_dim_value()) d.value = dim.dim_value();
      d.symbol = dim.dim_param();
      dims.push_back(d);
    }
    info.shape = std::move(dims);
  }
  return info;
}

absl::StatusOr<graph::Attribute> AttributeFromProto(const ::onnx::AttributeProto& proto,
                                                    const std::string& model_dir) {
  using ::onnx::AttributeProto;
  switch (proto.type()) {
    case AttributeProto::INT: return graph::Attribute(proto.i());
    case AttributeProto::FLOAT: return graph::Attribute(proto.f());
    case AttributeProto::STRING: return graph::Attribute(proto.s());
    case AttributeProto::INTS:
      return graph::Attribute(std::vector<int64_t>(proto.ints().begin(), proto.ints().end()));
    case AttributeProto::FLOATS:
      return graph::Attribute(std::vector<float>(proto.floats().begin(), proto.floats().end()));
    case AttributeProto::STRINGS:
      return graph::Attribute(
          std::vector<std::string>(proto.strings().begin(), proto.strings().end()));
    case AttributeProto::TENSOR: {
      SQ_ASSIGN_OR_RETURN(Tensor tensor, TensorFromProto(proto.t(), model_dir));
      return graph::Attribute(std::move(tensor));
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "attribute '", proto.name(), "' has unsupported type ",
          AttributeProto::AttributeType_Name(proto.type())));
  }
}

absl::StatusOr<graph::Graph> GraphFromProto(const ::onnx::ModelProto& model,
                                            const std::string& model_dir) {
  graph::Graph result;
  bool has_default_opset = false;
  for (const auto& opset : model.opset_import()) {
    if (opset.domain().empty() || opset.domain() == "ai.onnx") {
      result.opset_version = opset.version();
      has_default_opset = true;
    }
  }
  if (!has_default_opset || result.opset_version < kMinOpset ||
      result.opset_version > kMaxOpset) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ONNX opset ", has_default_opset ? absl::StrCat(result.opset_version) : "(none)",
        " is not supported; supported opsets are ", kMinOpset, " to ", kMaxOpset));
  }
  const ::onnx::GraphProto& proto = model.graph();
  result.name = proto.name();
  for (const auto& initializer : proto.initializer()) {
    SQ_ASSIGN_OR_RETURN(Tensor tensor, TensorFromProto(initializer, model_dir));
    result.initializers.insert_or_assign(initializer.name(), std::move(tensor));
  }
  for (const auto& input : proto.input()) {
    SQ_ASSIGN_OR_RETURN(graph::ValueInfo info, ValueInfoFromProto(input));
    result.inputs.push_back(std::move(info));
  }
  for (const auto& output : proto.output()) {
    SQ_ASSIGN_OR_RETURN(graph::ValueInfo info, ValueInfoFromProto(output));
    result.outputs.push_back(std::move(info));
  }
  for (const auto& value : proto.value_info()) {
    absl::StatusOr<graph::ValueInfo> info = ValueInfoFromProto(value);
    if (info.ok()) result.value_infos.push_back(*std::move(info));
  }
  for (int i = 0; i < proto.node_size(); ++i) {
    const ::onnx::NodeProto& node_proto = proto.node(i);
    graph::Node node;
    node.name = node_proto.name().empty() ? absl::StrCat(node_proto.op_type(), "_", i)
                                          : node_proto.name();
    node.op_type = node_proto.op_type();
    node.domain = node_proto.domain() == "ai.onnx" ? "" : node_proto.domain();
    node.inputs.assign(node_proto.input().begin(), node_proto.input().end());
    node.outputs.assign(node_proto.output().begin(), node_proto.output().end());
    for (const auto& attribute : node_proto.attribute()) {
      absl::StatusOr<graph::Attribute> value = AttributeFromProto(attribute, model_dir);
      if (!value.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "node '", node.name, "' (", node.op_type, "): ", value.status().message()));
      }
      node.attributes.emplace(attribute.name(), *std::move(value));
    }
    result.nodes.push_back(std::move(node));
  }
  return result;
}

void TensorToProto(const std::string& name, const Tensor& tensor, ::onnx::TensorProto* proto) {
  proto->set_name(name);
  proto->set_data_type(graph::OnnxCode(tensor.dtype()));
  for (int64_t dim : tensor.shape()) proto->add_dims(dim);
  proto->set_raw_data(std::string(tensor.bytes()));
}

void ValueInfoToProto(const graph::ValueInfo& info, ::onnx::ValueInfoProto* proto) {
  proto->set_name(info.name);
  auto* tensor_type = proto->mutable_type()->mutable_tensor_type();
  tensor_type->set_elem_type(graph::OnnxCode(info.dtype));
  if (!info.shape) return;
  auto* shape = tensor_type->mutable_shape();
  for (const graph::Dim& dim : *info.shape) {
    auto* d = shape->add_dim();
    if (dim.value) {
      d->set_dim_value(*dim.value);
    } else if (!dim.symbol.empty()) {
      d->set_dim_param(dim.symbol);
    }
  }
}

void AttributeToProto(const std::string& name, const graph::Attribute& value,
                      ::onnx::AttributeProto* proto) {
  using ::onnx::AttributeProto;
  proto->set_name(name);
  if (const auto* i = std::get_if<int64_t>(&value)) {
    proto->set_type(AttributeProto::INT);
    proto->set_i(*i);
  } else if (const auto* f = std::get_if<float>(&value)) {
    proto->set_type(AttributeProto::FLOAT);
    proto->set_f(*f);
  } else if (const auto* s = std::get_if<std::string>(&value)) {
    proto->set_type(AttributeProto::STRING);
    proto->set_s(*s);
  } else if (const auto* ints = std::get_if<std::vector<int64_t>>(&value)) {
    proto->set_type(AttributeProto::INTS);
    for (int64_t v : *ints) proto->add_ints(v);
  } else if (const auto* floats = std::get_if<std::vector<float>>(&value)) {
    proto->set_type(AttributeProto::FLOATS);
    for (float v : *floats) proto->add_floats(v);
  } else if (const auto* strings = std::get_if<std::vector<std::string>>(&value)) {
    proto->set_type(AttributeProto::STRINGS);
    for (const std::string& v : *strings) proto->add_strings(v);
  } else if (const auto* tensor = std::get_if<Tensor>(&value)) {
    proto->set_type(AttributeProto::TENSOR);
    TensorToProto("", *tensor, proto->mutable_t());
  }
}

// onnx::checker::check_model with external data resolved against
// `model_dir` (check_model(const ModelProto&) resolves it against the
// working directory). Throws onnx::checker::ValidationError.
void CheckModel(const ::onnx::ModelProto& model, const std::string& model_dir) {
  ::onnx::checker::CheckerContext context;
  context.set_ir_version(static_cast<int>(model.ir_version()));
  std::unordered_map<std::string, int> opsets;
  for (const auto& opset : model.opset_import()) {
    opsets[opset.domain()] = static_cast<int>(opset.version());
  }
  context.set_opset_imports(opsets);
  context.set_model_dir(model_dir.empty() ? "." : model_dir);
  ::onnx::checker::LexicalScopeContext scope;
  ::onnx::checker::check_graph(model.graph(), context, scope);
}

}  // namespace

absl::StatusOr<graph::Graph> ParseOnnxModel(absl::string_view bytes,
                                            const std::string& model_dir,
                                            const OnnxImportOptions& options) {
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return absl::InvalidArgumentError("ONNX model over 2 GiB must use external data");
  }
  ::onnx::ModelProto model;
  if (!model.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "not a valid ONNX ModelProto (", bytes.size(), " bytes; truncated or corrupt?)"));
  }
  if (options.onnx_shape_inference) {
    // libonnx's inference functions assume schema-valid nodes, so they run
    // only on models the checker accepts (and even then 1.12 can crash).
    try {
      CheckModel(model, model_dir);
      ::onnx::shape_inference::InferShapes(
          model, ::onnx::OpSchemaRegistry::Instance(),
          ::onnx::ShapeInferenceOptions(/*check_type_val=*/false, /*strict_mode_val=*/0,
                                        /*data_prop_val=*/true));
    } catch (const std::exception&) {
    }
    return GraphFromProto(model, model_dir);
  }
  SQ_ASSIGN_OR_RETURN(graph::Graph graph, GraphFromProto(model, model_dir));
  // The IR's own inference fills value_infos. A model whose shapes
  // contradict keeps the file's value_info and declared outputs: the runtime
  // checks shapes as it goes and names the node that fails. (Only what the
  // inference writes is saved, not the weights.)
  std::vector<graph::ValueInfo> declared_infos = graph.value_infos;
  std::vector<graph::ValueInfo> declared_outputs = graph.outputs;
  if (!graph::InferShapes(&graph).ok()) {
    graph.value_infos = std::move(declared_infos);
    graph.outputs = std::move(declared_outputs);
  }
  return graph;
}

absl::StatusOr<graph::Graph> LoadOnnxModel(const std::string& path,
                                           const OnnxImportOptions& options) {
  SQ_ASSIGN_OR_RETURN(std::string bytes, model::ReadFile(path));
  absl::StatusOr<graph::Graph> graph =
      ParseOnnxModel(bytes, fs::path(path).parent_path().string(), options);
  if (!graph.ok()) {
    return absl::Status(graph.status().code(),
                        absl::StrCat(path, ": ", graph.status().message()));
  }
  return graph;
}

absl::StatusOr<graph::Tensor> ParseOnnxTensor(absl::string_view bytes,
                                              const std::string& model_dir) {
  ::onnx::TensorProto proto;
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max()) ||
      !proto.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a valid ONNX TensorProto (", bytes.size(), " bytes)"));
  }
  return TensorFromProto(proto, model_dir);
}

absl::Status SaveOnnxModel(const graph::Graph& graph, const std::string& path,
                           const OnnxExportOptions& options) {
  ::onnx::ModelProto model;
  model.set_ir_version(8);  // the IR version that goes with opsets up to 17
  model.set_producer_name("squeeze");
  auto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(graph.opset_version);
  ::onnx::GraphProto* proto = model.mutable_graph();
  proto->set_name(graph.name.empty() ? "graph" : graph.name);
  for (const auto& [name, tensor] : graph.initializers) {
    TensorToProto(name, tensor, proto->add_initializer());
  }
  for (const auto& input : graph.inputs) ValueInfoToProto(input, proto->add_input());
  for (const auto& output : graph.outputs) ValueInfoToProto(output, proto->add_output());
  for (const auto& info : graph.value_infos) ValueInfoToProto(info, proto->add_value_info());
  for (const graph::Node& node : graph.nodes) {
    ::onnx::NodeProto* node_proto = proto->add_node();
    node_proto->set_name(node.name);
    node_proto->set_op_type(node.op_type);
    node_proto->set_domain(node.domain);
    for (const std::string& input : node.inputs) node_proto->add_input(input);
    for (const std::string& output : node.outputs) node_proto->add_output(output);
    for (const auto& [name, value] : node.attributes) {
      AttributeToProto(name, value, node_proto->add_attribute());
    }
  }
  // The checker runs on the inline model: it would otherwise look for
  // external files relative to the working directory.
  try {
    CheckModel(model, "");
  } catch (const std::exception& error) {
    return absl::InvalidArgumentError(
        absl::StrCat("ONNX export of ", path, " fails the checker: ", error.what()));
  }
  std::string external;
  if (options.external_data_threshold_bytes > 0) {
    for (::onnx::TensorProto& initializer : *proto->mutable_initializer()) {
      if (static_cast<int64_t>(initializer.raw_data().size()) <
          options.external_data_threshold_bytes) {
        continue;
      }
      auto add_entry = [&](const char* key, const std::string& value) {
        auto* entry = initializer.add_external_data();
        entry->set_key(key);
        entry->set_value(value);
      };
      add_entry("location", options.external_data_file);
      add_entry("offset", absl::StrCat(external.size()));
      add_entry("length", absl::StrCat(initializer.raw_data().size()));
      external += initializer.raw_data();
      initializer.clear_raw_data();
      initializer.set_data_location(::onnx::TensorProto::EXTERNAL);
    }
  }
  if (model.ByteSizeLong() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ONNX export of ", path, ": model exceeds 2 GiB; set external_data_threshold_bytes"));
  }
  if (!external.empty()) {
    SQ_ASSIGN_OR_RETURN(std::string external_path,
                        ExternalPath(fs::path(path).parent_path().string(),
                                     options.external_data_file));
    SQ_RETURN_IF_ERROR(model::WriteFileAtomically(external_path, external));
  }
  return model::WriteFileAtomically(path, model.SerializeAsString());
}

}  // namespace squeeze::core::onnx
