#include "core/graph/shape_inference.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"

namespace squeeze::core::graph {
namespace {

using Shape = std::vector<Dim>;

// Integer tensors up to this many elements are tracked by value.
constexpr int64_t kMaxTrackedElements = 64;
// A rank taken from a shape tensor's length is believed up to this.
constexpr int64_t kMaxRank = 64;

// a * b and a + b, or nullopt when int64 overflows (dimensions come from
// untrusted files).
std::optional<int64_t> CheckedMul(int64_t a, int64_t b) {
  int64_t out;
  if (__builtin_mul_overflow(a, b, &out)) return std::nullopt;
  return out;
}
std::optional<int64_t> CheckedAdd(int64_t a, int64_t b, int64_t c = 0) {
  int64_t ab, out;
  if (__builtin_add_overflow(a, b, &ab) || __builtin_add_overflow(ab, c, &out)) return std::nullopt;
  return out;
}

// What is known about one value.
struct ValueType {
  DataType dtype = DataType::kFloat32;
  std::optional<Shape> shape;  // Absent: rank unknown.
  // The elements of a small integer tensor in row-major order, when
  // tracked;
  // an element may itself be symbolic or unknown.
  std::optional<std::vector<Dim>> elements;
};

Dim Value(int64_t v) { return Dim{v, ""}; }
Dim Unknown() { return Dim{}; }
bool HasValue(const Dim& d) { return d.value.has_value(); }
bool SameDim(const Dim& a, const Dim& b) {
  if (HasValue(a) || HasValue(b)) return a.value == b.value;
  return !a.symbol.empty() && a.symbol == b.symbol;
}

std::string DimToString(const Dim& d) {
  if (d.value) return absl::StrCat(*d.value);
  return d.symbol.empty() ? "?" : d.symbol;
}

Shape ShapeOf(const std::vector<int64_t>& dims) {
  Shape shape;
  for (int64_t d : dims) shape.push_back(Value(d));
  return shape;
}

// All values known: the plain integers.
std::optional<std::vector<int64_t>> Ints(const std::vector<Dim>& dims) {
  std::vector<int64_t> out;
  for (const Dim& d : dims) {
    if (!d.value) return std::nullopt;
    out.push_back(*d.value);
  }
  return out;
}

Dim Product(const Shape& shape, size_t begin, size_t end) {
  int64_t p = 1;
  for (size_t i = begin; i < end; ++i) {
    if (!shape[i].value) return Unknown();
    const std::optional<int64_t> next = CheckedMul(p, *shape[i].value);
    if (!next) return Unknown();
    p = *next;
  }
  return Value(p);
}

// A shape of `n` unknown dimensions, for a shape tensor of known length;
// nullopt for a length no shape has.
std::optional<Shape> UnknownDims(const Dim& n) {
  if (!n.value || *n.value < 0 || *n.value > kMaxRank) return std::nullopt;
  return Shape(static_cast<size_t>(*n.value));
}

// prod(numerator) / prod(denominator) when it is one known or symbolic
// dimension: the symbols of the denominator cancel against equal symbols of
// the numerator ([b, s, 4, 16] / [b, s] = 64, [b, s, 64] / [s, 64] = b).
// Unknown otherwise.
Dim Quotient(const Shape& numerator, const Shape& denominator) {
  int64_t num = 1, den = 1;
  std::multiset<std::string> symbols;
  for (const Dim& d : numerator) {
    if (d.value) {
      const std::optional<int64_t> next = CheckedMul(num, *d.value);
      if (!next) return Unknown();
      num = *next;
    } else if (!d.symbol.empty()) {
      symbols.insert(d.symbol);
    } else {
      return Unknown();
    }
  }
  for (const Dim& d : denominator) {
    if (d.value) {
      const std::optional<int64_t> next = CheckedMul(den, *d.value);
      if (!next) return Unknown();
      den = *next;
    } else {
      auto it = d.symbol.empty() ? symbols.end() : symbols.find(d.symbol);
      if (it == symbols.end()) return Unknown();
      symbols.erase(it);
    }
  }
  if (den == 0 || num % den != 0) return Unknown();
  if (symbols.empty()) return Value(num / den);
  if (symbols.size() == 1 && num == den) return Dim{std::nullopt, *symbols.begin()};
  return Unknown();
}

// The source offsets, in a row-major tensor of `in_dims`, of every element
// of the row-major output `out_dims` where output index i reads input index
// begin + i * step along each axis, after the axis permutation `perm`
// (output axis d reads input axis perm[d]).
std::vector<int64_t> SourceOffsets(const std::vector<int64_t>& in_dims,
                                   const std::vector<int64_t>& out_dims,
                                   const std::vector<int64_t>& perm,
                                   const std::vector<int64_t>& begin,
                                   const std::vector<int64_t>& step) {
  const size_t rank = in_dims.size();
  std::vector<int64_t> in_strides(rank, 1);
  for (size_t d = rank; d-- > 1;) in_strides[d - 1] = in_strides[d] * in_dims[d];
  int64_t total = 1;
  for (int64_t d : out_dims) total *= d;
  std::vector<int64_t> offsets;
  std::vector<int64_t> index(rank, 0);
  for (int64_t n = 0; n < total; ++n) {
    int64_t offset = 0;
    for (size_t d = 0; d < rank; ++d) {
      const size_t axis = static_cast<size_t>(perm[d]);
      offset += (begin[axis] + index[d] * step[axis]) * in_strides[axis];
    }
    offsets.push_back(offset);
    for (size_t d = rank; d-- > 0;) {
      if (++index[d] < out_dims[d]) break;
      index[d] = 0;
    }
  }
  return offsets;
}

std::vector<int64_t> Iota(size_t n) {
  std::vector<int64_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<int64_t>(i);
  return v;
}

class Inference {
 public:
  explicit Inference(Graph* graph) : graph_(graph) {}

  absl::StatusOr<ShapeInferenceStats> Run();

 private:
  using Rule = absl::Status (Inference::*)(const Node&, std::vector<ValueType>*);

  static const std::map<std::string, Rule>& Rules();

  absl::Status NodeError(const Node& node, const std::string& message) const {
    return absl::InvalidArgumentError(absl::StrCat("shape inference: node '", node.name,
                                                   "' (", node.op_type, "): ", message));
  }

  // Input i of `node`, or null when omitted or of unknown type.
  const ValueType* Input(const Node& node, size_t i) const {
    if (i >= node.inputs.size() || node.inputs[i].empty()) return nullptr;
    auto it = types_.find(node.inputs[i]);
    return it == types_.end() ? nullptr : &it->second;
  }
  const Shape* InputShape(const Node& node, size_t i) const {
    const ValueType* t = Input(node, i);
    return t && t->shape ? &*t->shape : nullptr;
  }
  bool HasInput(const Node& node, size_t i) const {
    return i < node.inputs.size() && !node.inputs[i].empty();
  }
  // The integer elements of input i when every one is known.
  std::optional<std::vector<int64_t>> InputInts(const Node& node, size_t i) const {
    const ValueType* t = Input(node, i);
    if (!t || !t->elements) return std::nullopt;
    return Ints(*t->elements);
  }
  // An ints attribute before `since_opset`, input `index` from then on:
  // the ints, an empty vector when absent, nullopt when an input whose
  // value is not known.
  std::optional<std::vector<int64_t>> AttributeOrInput(const Node& node, const std::string& name,
                                                       int64_t since_opset, size_t index) const {
    if (graph_->opset_version < since_opset) return node.IntsAttribute(name);
    if (!HasInput(node, index)) return std::vector<int64_t>{};
    return InputInts(node, index);
  }
  absl::StatusOr<int64_t> Axis(const Node& node, int64_t axis, int64_t rank) const {
    if (axis < -rank || axis >= rank) {
      return NodeError(node, absl::StrCat("axis ", axis, " is out of range for rank ", rank));
    }
    return axis < 0 ? axis + rank : axis;
  }
  absl::StatusOr<Shape> Broadcast(const Node& node, const Shape& a, const Shape& b) const;

  // Rules: each fills `outputs` (already sized to node.outputs, dtype of
  // input 0 where known, shape unknown).
  absl::Status SameAsInput(const Node& node, std::vector<ValueType>* out);
  absl::Status Elementwise(const Node& node, std::vector<ValueType>* out);
  absl::Status Comparison(const Node& node, std::vector<ValueType>* out);
  absl::Status Where(const Node& node, std::vector<ValueType>* out);
  absl::Status Cast(const Node& node, std::vector<ValueType>* out);
  absl::Status ShapeOp(const Node& node, std::vector<ValueType>* out);
  absl::Status Size(const Node& node, std::vector<ValueType>* out);
  absl::Status Constant(const Node& node, std::vector<ValueType>* out);
  absl::Status ConstantOfShape(const Node& node, std::vector<ValueType>* out);
  absl::Status Gemm(const Node& node, std::vector<ValueType>* out);
  absl::Status MatMul(const Node& node, std::vector<ValueType>* out);
  absl::Status Conv(const Node& node, std::vector<ValueType>* out);
  absl::Status ConvTranspose(const Node& node, std::vector<ValueType>* out);
  absl::Status Pool(const Node& node, std::vector<ValueType>* out);
  absl::Status GlobalPool(const Node& node, std::vector<ValueType>* out);
  absl::Status BatchNormalization(const Node& node, std::vector<ValueType>* out);
  absl::Status LayerNormalization(const Node& node, std::vector<ValueType>* out);
  absl::Status Reduce(const Node& node, std::vector<ValueType>* out);
  absl::Status Reshape(const Node& node, std::vector<ValueType>* out);
  absl::Status Flatten(const Node& node, std::vector<ValueType>* out);
  absl::Status Transpose(const Node& node, std::vector<ValueType>* out);
  absl::Status Concat(const Node& node, std::vector<ValueType>* out);
  absl::Status Split(const Node& node, std::vector<ValueType>* out);
  absl::Status Slice(const Node& node, std::vector<ValueType>* out);
  absl::Status Squeeze(const Node& node, std::vector<ValueType>* out);
  absl::Status Unsqueeze(const Node& node, std::vector<ValueType>* out);
  absl::Status Gather(const Node& node, std::vector<ValueType>* out);
  absl::Status Expand(const Node& node, std::vector<ValueType>* out);
  absl::Status Pad(const Node& node, std::vector<ValueType>* out);
  absl::Status Resize(const Node& node, std::vector<ValueType>* out);
  absl::Status QuantizeLinear(const Node& node, std::vector<ValueType>* out);
  absl::Status DequantizeLinear(const Node& node, std::vector<ValueType>* out);

  absl::StatusOr<std::vector<int64_t>> SpatialOutput(const Node& node,
                                                      const std::vector<int64_t>& in,
                                                      const std::vector<int64_t>& kernel) const;

  std::optional<std::vector<float>> ConstantFloats(const Node& node, size_t i) const;

  Graph* graph_;
  std::map<std::string, ValueType> types_;
  // Constant nodes' value tensors by output name (they live in graph_).
  std::map<std::string, const Tensor*> constants_;
};

const std::map<std::string, Inference::Rule>& Inference::Rules() {
  static const auto* rules = new std::map<std::string, Rule>{
      {"Abs", &Inference::SameAsInput},       {"Neg", &Inference::SameAsInput},
      {"Relu", &Inference::SameAsInput},      {"LeakyRelu", &Inference::SameAsInput},
      {"Sigmoid", &Inference::SameAsInput},   {"HardSigmoid", &Inference::SameAsInput},
      {"HardSwish", &Inference::SameAsInput}, {"Tanh", &Inference::SameAsInput},
      {"Exp", &Inference::SameAsInput},       {"Log", &Inference::SameAsInput},
      {"Sqrt", &Inference::SameAsInput},      {"Erf", &Inference::SameAsInput},
      {"Reciprocal", &Inference::SameAsInput}, {"Identity", &Inference::SameAsInput},
      {"Softmax", &Inference::SameAsInput},   {"LogSoftmax", &Inference::SameAsInput},
      {"Clip", &Inference::SameAsInput},      {"BatchNormalization", &Inference::BatchNormalization},
      {"Add", &Inference::Elementwise},       {"Sub", &Inference::Elementwise},
      {"Mul", &Inference::Elementwise},       {"Div", &Inference::Elementwise},
      {"Pow", &Inference::Elementwise},       {"Equal", &Inference::Comparison},
      {"Greater", &Inference::Comparison},    {"Less", &Inference::Comparison},
      {"Where", &Inference::Where},           {"Cast", &Inference::Cast},
      {"Shape", &Inference::ShapeOp},         {"Size", &Inference::Size},
      {"Constant", &Inference::Constant},     {"ConstantOfShape", &Inference::ConstantOfShape},
      {"Gemm", &Inference::Gemm},             {"MatMul", &Inference::MatMul},
      {"MatMulInteger", &Inference::MatMul},  {"Conv", &Inference::Conv},
      {"ConvTranspose", &Inference::ConvTranspose}, {"MaxPool", &Inference::Pool},
      {"AveragePool", &Inference::Pool},      {"GlobalAveragePool", &Inference::GlobalPool},
      {"LayerNormalization", &Inference::LayerNormalization},
      {"ReduceMean", &Inference::Reduce},     {"ReduceSum", &Inference::Reduce},
      {"ReduceMax", &Inference::Reduce},      {"Reshape", &Inference::Reshape},
      {"Flatten", &Inference::Flatten},       {"Transpose", &Inference::Transpose},
      {"Concat", &Inference::Concat},         {"Split", &Inference::Split},
      {"Slice", &Inference::Slice},           {"Squeeze", &Inference::Squeeze},
      {"Unsqueeze", &Inference::Unsqueeze},   {"Gather", &Inference::Gather},
      {"Expand", &Inference::Expand},         {"Pad", &Inference::Pad},
      {"Resize", &Inference::Resize},         {"QuantizeLinear", &Inference::QuantizeLinear},
      {"DequantizeLinear", &Inference::DequantizeLinear},
  };
  return *rules;
}

absl::StatusOr<Shape> Inference::Broadcast(const Node& node, const Shape& a,
                                           const Shape& b) const {
  const size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    const Dim da = i + a.size() >= rank ? a[i + a.size() - rank] : Value(1);
    const Dim db = i + b.size() >= rank ? b[i + b.size() - rank] : Value(1);
    if (da.value == 1) {
      out[i] = db;
    } else if (db.value == 1) {
      out[i] = da;
    } else if (HasValue(da) && HasValue(db)) {
      if (*da.value != *db.value) {
        return NodeError(node, absl::StrCat("shapes ", DimsToString(a), " and ", DimsToString(b),
                                            " do not broadcast"));
      }
      out[i] = da;
    } else if (HasValue(da)) {
      out[i] = da;  // The other is da or 1 at run time: da either way.
    } else if (HasValue(db)) {
      out[i] = db;
    } else {
      out[i] = SameDim(da, db) ? da : Unknown();
    }
  }
  return out;
}

absl::Status Inference::SameAsInput(const Node& node, std::vector<ValueType>* out) {
  const ValueType* x = Input(node, 0);
  if (!x) return absl::OkStatus();
  (*out)[0] = *x;
  if (node.op_type != "Identity") (*out)[0].elements.reset();
  return absl::OkStatus();
}

// Integer arithmetic on tracked elements: d = f(a, b) where both are known.
std::optional<std::vector<Dim>> CombineElements(const std::string& op, const ValueType& a,
                                                const ValueType& b) {
  if (!a.elements || !b.elements) return std::nullopt;
  const std::vector<Dim>& x = *a.elements;
  const std::vector<Dim>& y = *b.elements;
  if (x.size() != y.size() && x.size() != 1 && y.size() != 1) return std::nullopt;
  const size_t n = std::max(x.size(), y.size());
  std::vector<Dim> result;
  for (size_t i = 0; i < n; ++i) {
    const Dim& p = x[x.size() == 1 ? 0 : i];
    const Dim& q = y[y.size() == 1 ? 0 : i];
    if (!p.value || !q.value) {
      // x * 1, x + 0 and the like keep a symbol.
      if ((op == "Mul" || op == "Div") && q.value == 1) {
        result.push_back(p);
      } else if ((op == "Add" || op == "Sub") && q.value == 0) {
        result.push_back(p);
      } else {
        result.push_back(Unknown());
      }
      continue;
    }
    const int64_t u = *p.value, v = *q.value;
    std::optional<int64_t> r;
    if (op == "Add") {
      r = CheckedAdd(u, v);
    } else if (op == "Sub") {
      if (v != std::numeric_limits<int64_t>::min()) r = CheckedAdd(u, -v);
    } else if (op == "Mul") {
      r = CheckedMul(u, v);
    }
    if (op == "Add" || op == "Sub" || op == "Mul") {
      result.push_back(r ? Value(*r) : Unknown());
    } else if (op == "Div" && v != 0 && !(v == -1 && u == std::numeric_limits<int64_t>::min())) {
      // Integer Div truncates toward zero, as the kernel's C++ division.
      result.push_back(Value(u / v));
    } else {
      return std::nullopt;
    }
  }
  return result;
}

absl::Status Inference::Elementwise(const Node& node, std::vector<ValueType>* out) {
  const ValueType* a = Input(node, 0);
  const ValueType* b = Input(node, 1);
  if (!a) return absl::OkStatus();
  if (!b || !a->shape || !b->shape) return absl::OkStatus();
  SQ_ASSIGN_OR_RETURN((*out)[0].shape, Broadcast(node, *a->shape, *b->shape));
  // Element-by-element only when the shapes agree or one side is a single
  // element (the broadcasts shape arithmetic uses).
  const bool aligned = (Ints(*a->shape) && Ints(*a->shape) == Ints(*b->shape)) ||
                       Product(*a->shape, 0, a->shape->size()).value == 1 ||
                       Product(*b->shape, 0, b->shape->size()).value == 1;
  if (!IsFloat(a->dtype) && node.op_type != "Pow" && aligned) {
    (*out)[0].elements = CombineElements(node.op_type, *a, *b);
  }
  return absl::OkStatus();
}

absl::Status Inference::Comparison(const Node& node, std::vector<ValueType>* out) {
  (*out)[0].dtype = DataType::kBool;
  const Shape* a = InputShape(node, 0);
  const Shape* b = InputShape(node, 1);
  if (a && b) {
    SQ_ASSIGN_OR_RETURN((*out)[0].shape, Broadcast(node, *a, *b));
  }
  return absl::OkStatus();
}

absl::Status Inference::Where(const Node& node, std::vector<ValueType>* out) {
  const ValueType* x = Input(node, 1);
  if (!x) return absl::OkStatus();
  (*out)[0].dtype = x->dtype;
  const Shape* c = InputShape(node, 0);
  const Shape* y = InputShape(node, 2);
  if (!c || !x->shape || !y) return absl::OkStatus();
  SQ_ASSIGN_OR_RETURN(Shape cx, Broadcast(node, *c, *x->shape));
  SQ_ASSIGN_OR_RETURN((*out)[0].shape, Broadcast(node, cx, *y));
  return absl::OkStatus();
}

absl::Status Inference::Cast(const Node& node, std::vector<ValueType>* out) {
  absl::StatusOr<DataType> to = DataTypeFromOnnxCode(node.IntAttribute("to", 0));
  if (!to.ok()) return NodeError(node, std::string(to.status().message()));
  (*out)[0].dtype = *to;
  if (const ValueType* x = Input(node, 0)) {
    (*out)[0].shape = x->shape;
    if (!IsFloat(*to) && *to != DataType::kBool) (*out)[0].elements = x->elements;
  }
  return absl::OkStatus();
}

absl::Status Inference::ShapeOp(const Node& node, std::vector<ValueType>* out) {
  (*out)[0].dtype = DataType::kInt64;
  const Shape* x = InputShape(node, 0);
  if (!x) return absl::OkStatus();
  const int64_t rank = static_cast<int64_t>(x->size());
  int64_t start = node.IntAttribute("start", 0);
  int64_t end = node.IntAttribute("end", rank);
  if (start < 0) start += rank;
  if (end < 0) end += rank;
  start = std::clamp<int64_t>(start, 0, rank);
  end = std::clamp<int64_t>(end, 0, rank);
  std::vector<Dim> elements(x->begin() + start, x->begin() + std::max(start, end));
  (*out)[0].shape = ShapeOf({static_cast<int64_t>(elements.size())});
  (*out)[0].elements = std::move(elements);
  return absl::OkStatus();
}

absl::Status Inference::Size(const Node& node, std::vector<ValueType>* out) {
  (*out)[0].dtype = DataType::kInt64;
  (*out)[0].shape = Shape{};
  if (const Shape* x = InputShape(node, 0)) {
    (*out)[0].elements = std::vector<Dim>{Product(*x, 0, x->size())};
  }
  return absl::OkStatus();
}

// A tensor's type; its elements when it is a small integer tensor.
ValueType TypeOfTensor(const Tensor& tensor) {
  ValueType type;
  type.dtype = tensor.dtype();
  type.shape = ShapeOf(tensor.shape());
  const bool integer = tensor.dtype() == DataType::kInt64 || tensor.dtype() == DataType::kInt32;
  if (integer && tensor.num_elements() <= kMaxTrackedElements) {
    std::vector<Dim> elements;
    for (int64_t v : tensor.ToInt64s()) elements.push_back(Value(v));
    type.elements = std::move(elements);
  }
  return type;
}

absl::Status Inference::Constant(const Node& node, std::vector<ValueType>* out) {
  ValueType& type = (*out)[0];
  if (const Tensor* value = node.TensorAttribute("value")) {
    type = TypeOfTensor(*value);
    if (!node.outputs.empty()) constants_[node.outputs[0]] = value;
  } else if (node.HasAttribute("value_float")) {
    type.dtype = DataType::kFloat32;
    type.shape = Shape{};
  } else if (node.HasAttribute("value_floats")) {
    type.dtype = DataType::kFloat32;
    type.shape = ShapeOf({static_cast<int64_t>(node.FloatsAttribute("value_floats").size())});
  } else if (node.HasAttribute("value_int")) {
    type.dtype = DataType::kInt64;
    type.shape = Shape{};
    type.elements = std::vector<Dim>{Value(node.IntAttribute("value_int", 0))};
  } else if (node.HasAttribute("value_ints")) {
    const std::vector<int64_t> values = node.IntsAttribute("value_ints");
    type.dtype = DataType::kInt64;
    type.shape = ShapeOf({static_cast<int64_t>(values.size())});
    type.elements = ShapeOf(values);
  } else {
    return NodeError(node, "needs one of value, value_float(s), value_int(s)");
  }
  return absl::OkStatus();
}

absl::Status Inference::ConstantOfShape(const Node& node, std::vector<ValueType>* out) {
  const Tensor* value = node.TensorAttribute("value");
  (*out)[0].dtype = value ? value->dtype() : DataType::kFloat32;
  const ValueType* shape = Input(node, 0);
  if (shape && shape->elements) {
    for (const Dim& d : *shape->elements) {
      if (d.value && *d.value < 0) {
        return NodeError(node, absl::StrCat("shape ", DimsToString(*shape->elements), " has a negative dimension"));
      }
    }
    (*out)[0].shape = *shape->elements;
    const Dim count = Product(*shape->elements, 0, shape->elements->size());
    if (value && count.value && *count.value <= kMaxTrackedElements) {
      const ValueType fill = TypeOfTensor(*value);
      if (fill.elements && fill.elements->size() == 1) {
        (*out)[0].elements = std::vector<Dim>(*count.value, (*fill.elements)[0]);
      }
    }
  } else if (shape && shape->shape && shape->shape->size() == 1) {
    (*out)[0].shape = UnknownDims((*shape->shape)[0]);
  }
  return absl::OkStatus();
}

absl::Status Inference::Gemm(const Node& node, std::vector<ValueType>* out) {
  const ValueType* a = Input(node, 0);
  const Shape* b = InputShape(node, 1);
  if (!a) return absl::OkStatus();
  if (!a->shape || !b) return absl::OkStatus();
  if (a->shape->size() != 2 || b->size() != 2) {
    return NodeError(node, absl::StrCat("A ", DimsToString(*a->shape), " and B ",
                                        DimsToString(*b), " must be matrices"));
  }
  const bool ta = node.IntAttribute("transA", 0) != 0;
  const bool tb = node.IntAttribute("transB", 0) != 0;
  const Dim m = (*a->shape)[ta ? 1 : 0], ka = (*a->shape)[ta ? 0 : 1];
  const Dim kb = (*b)[tb ? 1 : 0], n = (*b)[tb ? 0 : 1];
  if (ka.value && kb.value && *ka.value != *kb.value) {
    return NodeError(node, absl::StrCat("inner dimensions differ: A ", DimsToString(*a->shape),
                                        (ta ? " (transposed)" : ""), ", B ", DimsToString(*b),
                                        (tb ? " (transposed)" : "")));
  }
  (*out)[0].shape = Shape{m, n};
  if (const Shape* c = InputShape(node, 2)) {
    SQ_RETURN_IF_ERROR(Broadcast(node, *(*out)[0].shape, *c).status());
  }
  return absl::OkStatus();
}

absl::Status Inference::MatMul(const Node& node, std::vector<ValueType>* out) {
  const ValueType* a = Input(node, 0);
  const Shape* b = InputShape(node, 1);
  if (!a) return absl::OkStatus();
  (*out)[0].dtype = node.op_type == "MatMulInteger" ? DataType::kInt32 : a->dtype;
  if (!a->shape || !b) return absl::OkStatus();
  Shape x = *a->shape, y = *b;
  if (x.empty() || y.empty()) return NodeError(node, "MatMul of a scalar");
  const bool vector_a = x.size() == 1, vector_b = y.size() == 1;
  if (vector_a) x.insert(x.begin(), Value(1));
  if (vector_b) y.push_back(Value(1));
  const Dim ka = x[x.size() - 1], kb = y[y.size() - 2];
  if (ka.value && kb.value && *ka.value != *kb.value) {
    return NodeError(node, absl::StrCat("inner dimensions differ: ", DimsToString(*a->shape),
                                        " x ", DimsToString(*b)));
  }
  SQ_ASSIGN_OR_RETURN(Shape batch, Broadcast(node, Shape(x.begin(), x.end() - 2),
                                             Shape(y.begin(), y.end() - 2)));
  if (!vector_a) batch.push_back(x[x.size() - 2]);
  if (!vector_b) batch.push_back(y[y.size() - 1]);
  (*out)[0].shape = std::move(batch);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int64_t>> Inference::SpatialOutput(
    const Node& node, const std::vector<int64_t>& in, const std::vector<int64_t>& kernel) const {
  const size_t k = kernel.size();
  std::vector<int64_t> strides = node.IntsAttribute("strides");
  std::vector<int64_t> dilations = node.IntsAttribute("dilations");
  std::vector<int64_t> pads = node.IntsAttribute("pads");
  if (strides.empty()) strides.assign(k, 1);
  if (dilations.empty()) dilations.assign(k, 1);
  if (pads.empty()) pads.assign(2 * k, 0);
  if (strides.size() != k || dilations.size() != k || pads.size() != 2 * k || in.size() != k) {
    return NodeError(node, absl::StrCat("strides, dilations and pads must match the ", k,
                                        " spatial dims"));
  }
  const std::string auto_pad = node.StringAttribute("auto_pad", "NOTSET");
  const bool ceil_mode = node.IntAttribute("ceil_mode", 0) != 0;
  std::vector<int64_t> out(k);
  for (size_t i = 0; i < k; ++i) {
    if (strides[i] <= 0 || dilations[i] <= 0 || kernel[i] <= 0) {
      return NodeError(node, "kernel, strides and dilations must be positive");
    }
    const int64_t begin = auto_pad == "VALID" ? 0 : pads[i];
    const int64_t end = auto_pad == "VALID" ? 0 : pads[i + k];
    const std::optional<int64_t> dilated = CheckedMul(kernel[i] - 1, dilations[i]);
    const std::optional<int64_t> padded = CheckedAdd(in[i], begin, end);
    if (!dilated || !padded || *dilated >= std::numeric_limits<int64_t>::max() / 2 ||
        *padded >= std::numeric_limits<int64_t>::max() / 2 || in[i] < 0 || begin < 0 || end < 0) {
      return NodeError(node, absl::StrCat("spatial dim ", i, " (input ", in[i], ", kernel ", kernel[i],
                                          ", pads ", begin, "+", end, ") is out of range"));
    }
    const int64_t extent = *dilated + 1;
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      out[i] = (in[i] + strides[i] - 1) / strides[i];
      continue;
    }
    const int64_t span = *padded - extent;
    if (span < 0) {
      return NodeError(node, absl::StrCat("window of extent ", extent,
                                          " does not fit input dim ", in[i], " padded by ",
                                          begin, "+", end));
    }
    out[i] = (ceil_mode ? (span + strides[i] - 1) / strides[i] : span / strides[i]) + 1;
    if (ceil_mode && (out[i] - 1) * strides[i] >= in[i] + begin) --out[i];
  }
  return out;
}

absl::Status Inference::Conv(const Node& node, std::vector<ValueType>* out) {
  const ValueType* x = Input(node, 0);
  const Shape* w = InputShape(node, 1);
  if (!x) return absl::OkStatus();
  if (!x->shape || !w) return absl::OkStatus();
  const Shape& xs = *x->shape;
  if (xs.size() < 3 || w->size() != xs.size()) {
    return NodeError(node, absl::StrCat("X ", DimsToString(xs), " and W ", DimsToString(*w),
                                        " must be [N, C, ...] and [M, C/group, ...]"));
  }
  const int64_t group = node.IntAttribute("group", 1);
  if ((*w)[1].value && xs[1].value && CheckedMul(*(*w)[1].value, group) != xs[1].value) {
    return NodeError(node, absl::StrCat("W ", DimsToString(*w), " with group ", group,
                                        " does not fit the ", *xs[1].value,
                                        " input channels of X ", DimsToString(xs)));
  }
  Shape result = {xs[0], (*w)[0]};
  std::optional<std::vector<int64_t>> in = Ints(Shape(xs.begin() + 2, xs.end()));
  std::vector<int64_t> kernel = node.IntsAttribute("kernel_shape");
  if (kernel.empty()) {
    std::optional<std::vector<int64_t>> k = Ints(Shape(w->begin() + 2, w->end()));
    if (k) kernel = *k;
  }
  if (!in || kernel.empty()) {
    result.resize(xs.size());
  } else {
    SQ_ASSIGN_OR_RETURN(std::vector<int64_t> spatial, SpatialOutput(node, *in, kernel));
    for (int64_t d : spatial) result.push_back(Value(d));
  }
  (*out)[0].shape = std::move(result);
  return absl::OkStatus();
}

absl::Status Inference::ConvTranspose(const Node& node, std::vector<ValueType>* out) {
  const ValueType* x = Input(node, 0);
  const Shape* w = InputShape(node, 1);
  if (!x) return absl::OkStatus();
  if (!x->shape || !w) return absl::OkStatus();
  const Shape& xs = *x->shape;
  if (xs.size() < 3 || w->size() != xs.size()) {
    return NodeError(node, absl::StrCat("X ", DimsToString(xs), " and W ", DimsToString(*w),
                                        " must be [N, C, ...] and [C, M/group, ...]"));
  }
  const int64_t group = node.IntAttribute("group", 1);
  const size_t dims = xs.size() - 2;
  const std::optional<int64_t> channels =
      (*w)[1].value ? CheckedMul(*(*w)[1].value, group) : std::optional<int64_t>();
  Shape result = {xs[0], channels ? Value(*channels) : Unknown()};
  std::vector<int64_t> output_shape = node.IntsAttribute("output_shape");
  if (output_shape.size() > dims) output_shape.erase(output_shape.begin(), output_shape.end() - dims);
  std::optional<std::vector<int64_t>> in = Ints(Shape(xs.begin() + 2, xs.end()));
  std::optional<std::vector<int64_t>> kernel = Ints(Shape(w->begin() + 2, w->end()));
  if (!output_shape.empty()) {
    for (int64_t d : output_shape) result.push_back(Value(d));
  } else if (!in || !kernel) {
    result.resize(xs.size());
  } else {
    std::vector<int64_t> strides = node.IntsAttribute("strides");
    std::vector<int64_t> dilations = node.IntsAttribute("dilations");
    std::vector<int64_t> pads = node.IntsAttribute("pads");
    std::vector<int64_t> output_padding = node.IntsAttribute("output_padding");
    if (strides.empty()) strides.assign(dims, 1);
    if (dilations.empty()) dilations.assign(dims, 1);
    if (pads.empty()) pads.assign(2 * dims, 0);
    if (output_padding.empty()) output_padding.assign(dims, 0);
    if (strides.size() != dims || dilations.size() != dims || pads.size() != 2 * dims ||
        output_padding.size() != dims) {
      return NodeError(node, "strides, dilations, pads and output_padding must match the "
                             "spatial dims");
    }
    const std::string auto_pad = node.StringAttribute("auto_pad", "NOTSET");
    for (size_t d = 0; d < dims; ++d) {
      // Wide arithmetic: every term comes from the file.
      const __int128 in_d = (*in)[d], stride = strides[d];
      __int128 size = in_d * stride;
      if (auto_pad != "SAME_UPPER" && auto_pad != "SAME_LOWER") {
        const __int128 full = stride * (in_d - 1) + output_padding[d] +
                              static_cast<__int128>((*kernel)[d] - 1) * dilations[d] + 1;
        const __int128 pad = auto_pad == "VALID" ? 0 : static_cast<__int128>(pads[d]) + pads[d + dims];
        size = full - pad;
      }
      if (size <= 0 || size > std::numeric_limits<int64_t>::max()) {
        return NodeError(node, absl::StrCat("spatial dim ", d, " of the output would be ",
                                            size <= 0 ? "empty" : "too large"));
      }
      result.push_back(Value(static_cast<int64_t>(size)));
    }
  }
  (*out)[0].shape = std::move(result);
  return absl::OkStatus();
}

absl::Status Inference::Pool(const Node& node, std::vector<ValueType>* out) {
  const ValueType* x = Input(node, 0);
  if (!x) return absl::OkStatus();
  if (out->size() > 1) (*out)[1].dtype = DataType::kInt64;  // MaxPool indices.
  if (!x->shape) return absl::OkStatus();
  const Shape& xs = *x->shape;
  const std::vector<int64_t> kernel = node.IntsAttribute("kernel_shape");
  if (xs.size() < 3 || kernel.size() != xs.size() - 2) {
    return NodeError(node, absl::StrCat("X ", DimsToString(xs), " does not match kernel_shape of ",
                                        kernel.size(), " dims"));
  }
  Shape result = {xs[0], xs[1]};
  std::optional<std::vector<int64_t>> in = Ints(Shape(xs.begin() + 2, xs.end()));
  if (!in) {
    result.resize(xs.size());
  } else {
    SQ_ASSIGN_OR_RETURN(std::vector<int64_t> spatial, SpatialOutput(node, *in, kernel));
    for (int64_t d : spatial) result.push_back(Value(d));
  }
  for (ValueType& o : *out) o.shape = result;
  return absl::OkStatus();
}

absl::Status Inference::GlobalPool(const Node& node, std::vector<ValueType>* out) {
  const ValueType* x = Input(node, 0);
  if (!x || !x->shape) return absl::OkStatus();
  if (x->shape->size() < 3) return NodeError(node, "X must be [N, C, ...]");
  Shape result = {(*x->shape)[0], (*x->shape)[1]};
  result.resize(x->shape->size(), Value(1));
  (*out)[0].shape = std::move(result);
  return absl::OkStatus();
}

absl::Status Inference::BatchNormalization(const Node& node, std::vector<ValueType>* out) {
  SQ_RETURN_IF_ERROR(SameAsInput(node, out));
  // Training mode: running mean and variance, shaped like the scale [C].
  const ValueType* scale = Input(node, 1);
  for (size_t i = 1; i < out->size() && scale; ++i) {
    (*out)[i].dtype = scale->dtype;
    (*out)[i].shape = scale->shape;
  }
  return absl::OkStatus();
}

absl::Status Inference::LayerNormalization(const Node& node, std::vector<ValueType>* out) {
  const ValueType* x = Input(node, 0);
  if (!x) return absl::OkStatus();
  (*out)[0] = *x;
  (*out)[0].elements.reset();
  if (!x->shape) return absl::OkStatus();
  const int64_t rank = static_cast<int64_t>(x->shape->size());
  SQ_ASSIGN_OR_RETURN(int64_t axis, Axis(node, node.IntAttribute("axis", -1), rank));
  Shape stats = *x->shape;
  for (int64_t d = axis; d < rank; ++d) stats[d] = Value(1);
  for (size_t i = 1; i < out->size(); ++i) {
    (*out)[i].dtype = DataType::kFloat32;
    (*out)[i].shape = stats;
  }
  return absl::OkStatus();
}

absl::Status Inference::Reduce(const Node& node, std::vector<ValueType>* out) {
  const ValueType* x = Input(node, 0);
  if (!x || !x->shape) return absl::OkStatus();
  const int64_t since = node.op_type == "ReduceSum" ? 13 : 18;
  std::optional<std::vector<int64_t>> axes = AttributeOrInput(node, "axes", since, 1);
  if (!axes) return absl::OkStatus();
  const bool keepdims = node.IntAttribute("keepdims", 1) != 0;
  const int64_t rank = static_cast<int64_t>(x->shape->size());
  std::set<int64_t> reduced;
  if (axes->empty()) {
    if (node.IntAttribute("noop_with_empty_axes", 0) != 0) {
      (*out)[0].shape = x->shape;
      return absl::OkStatus();
    }
    for (int64_t d = 0; d < rank; ++d) reduced.insert(d);
  }
  for (int64_t a : *axes) {
    SQ_ASSIGN_OR_RETURN(int64_t axis, Axis(node, a, rank));
    reduced.insert(axis);
  }
  Shape result;
  for (int64_t d = 0; d < rank; ++d) {
    if (!reduced.count(d)) {
      result.push_back((*x->shape)[d]);
    } else if (keepdims) {
      result.push_back(Value(1));
    }
  }
  (*out)[0].shape = std::move(result);
  return absl::OkStatus();
}

absl::Status Inference::Reshape(const Node& node, std::vector<ValueType>* out) {
  const ValueType* x = Input(node, 0);
  if (!x) return absl::OkStatus();
  std::vector<Dim> target;
  if (graph_->opset_version < 5) {
    target = ShapeOf(node.IntsAttribute("shape"));
  } else {
    const ValueType* shape = Input(node, 1);
    if (!shape) return absl::OkStatus();
    if (shape->elements) {
      target = *shape->elements;
    } else {
      if (shape->shape && shape->shape->size() == 1) (*out)[0].shape = UnknownDims((*shape->shape)[0]);
      return absl::OkStatus();
    }
  }
  const bool allow_zero = node.IntAttribute("allowzero", 0) != 0;
  int64_t infer_at = -1;
  for (size_t i = 0; i < target.size(); ++i) {
    if (target[i].value == 0 && !allow_zero) {
      if (!x->shape || i >= x->shape->size()) {
        if (x->shape) {
          return NodeError(node, absl::StrCat("target ", DimsToString(target), " copies dim ", i,
                                              " of the ", x->shape->size(), "-d input"));
        }
        target[i] = Unknown();
      } else {
        target[i] = (*x->shape)[i];
      }
    } else if (target[i].value == -1) {
      if (infer_at >= 0) return NodeError(node, "more than one -1 in the target shape");
      infer_at = static_cast<int64_t>(i);
    } else if (target[i].value && *target[i].value < -1) {
      return NodeError(node, absl::StrCat("target dimension ", *target[i].value));
    }
  }
  Dim total = x->shape ? Product(*x->shape, 0, x->shape->size()) : Unknown();
  if (infer_at >= 0) {
    target[infer_at] = Unknown();
    std::vector<Dim> others = target;
    others.erase(others.begin() + infer_at);
    if (x->shape) target[infer_at] = Quotient(*x->shape, others);
    if (total.value && target[infer_at].value.value_or(1) == 0) target[infer_at] = Unknown();
    if (total.value && !target[infer_at].value) {
      const Dim rest = Product(others, 0, others.size());
      if (rest.value && *rest.value != 0 && *total.value % *rest.value != 0) {
        return NodeError(node, absl::StrCat("cannot reshape ", DimsToString(*x->shape), " (",
                                            *total.value, " elements) to ",
                                            DimsToString(target), " with one -1"));
      }
    }
  }
  const Dim new_total = Product(target, 0, target.size());
  if (total.value && new_total.value && *total.value != *new_total.value) {
    return NodeError(node, absl::StrCat("cannot reshape ", DimsToString(*x->shape), " (",
                                        *total.value, " elements) to ", DimsToString(target),
                                        " (", *new_total.value, ")"));
  }
  (*out)[0].shape = std::move(target);
  if (x->elements) (*out)[0].elements = x->elements;
  return absl::OkStatus();
}

absl::Status Inference::Flatten(const Node& node, std::vector<ValueType>* out) {
  const ValueType* x = Input(node, 0);
  if (!x || !x->shape) return absl::OkStatus();
  const int64_t rank = static_cast<int64_t>(x->shape->size());
  int64_t axis = node.IntAttribute("axis", 1);
  if (axis < -rank || axis > rank) {
    return NodeError(node, absl::StrCat("axis ", axis, " is out of range for rank ", rank));
  }
  if (axis < 0) axis += rank;
  const Shape& s = *x->shape;
  Dim outer = Product(s, 0, axis), inner = Product(s, axis, s.size());
  // [batch, c, h, w] with axis 1 keeps the batch symbol.
  if (axis == 1 && !s[0].value) outer = s[0];
  if (axis == rank - 1 && !s[axis].value) inner = s[axis];
  (*out)[0].shape = Shape{outer, inner};
  return absl::OkStatus();
}

absl::Status Inference::Transpose(const Node& node, std::vector<ValueType>* out) {
  const ValueType* x = Input(node, 0);
  if (!x || !x->shape) return absl::OkStatus();
  const int64_t rank = static_cast<int64_t>(x->shape->size());
  std::vector<int64_t> perm = node.IntsAttribute("perm");
  if (perm.empty()) {
    for (int64_t d = rank - 1; d >= 0; --d) perm.push_back(d);
  }
  if (static_cast<int64_t>(perm.size()) != rank) {
    return NodeError(node, absl::StrCat("perm has ", perm.size(), " entries for rank ", rank));
  }
  Shape result;
  std::set<int64_t> seen;
  for (int64_t& p : perm) {
    SQ_ASSIGN_OR_RETURN(p, Axis(node, p, rank));
    if (!seen.insert(p).second) return NodeError(node, "perm repeats an axis");
    result.push_back((*x->shape)[p]);
  }
  const std::optional<std::vector<int64_t>> in_dims = Ints(*x->shape);
  const std::optional<std::vector<int64_t>> out_dims = Ints(result);
  if (x->elements && in_dims && out_dims &&
      Product(*x->shape, 0, x->shape->size()).value == static_cast<int64_t>(x->elements->size())) {
    std::vector<Dim> elements;
    for (int64_t offset : SourceOffsets(*in_dims, *out_dims, perm, std::vector<int64_t>(rank, 0),
                                        std::vector<int64_t>(rank, 1))) {
      elements.push_back((*x->elements)[offset]);
    }
    (*out)[0].elements = std::move(elements);
  }
  (*out)[0].shape = std::move(result);
  return absl::OkStatus();
}

absl::Status Inference::Concat(const Node& node, std::vector<ValueType>* out) {
  const ValueType* first = Input(node, 0);
  if (!first) return absl::OkStatus();
  std::vector<const ValueType*> inputs;
  for (size_t i = 0; i < node.inputs.size(); ++i) {
    const ValueType* t = Input(node, i);
    if (!t || !t->shape) return absl::OkStatus();
    inputs.push_back(t);
  }
  const int64_t rank = static_cast<int64_t>(first->shape->size());
  SQ_ASSIGN_OR_RETURN(int64_t axis, Axis(node, node.IntAttribute("axis", 0), rank));
  Shape result = *first->shape;
  int64_t total = 0;
  bool known = true;
  std::vector<Dim> elements;
  bool all_elements = true;
  for (const ValueType* t : inputs) {
    if (static_cast<int64_t>(t->shape->size()) != rank) {
      return NodeError(node, absl::StrCat("inputs ", DimsToString(*first->shape), " and ",
                                          DimsToString(*t->shape), " differ in rank"));
    }
    for (int64_t d = 0; d < rank; ++d) {
      if (d == axis) continue;
      const Dim& a = result[d];
      const Dim& b = (*t->shape)[d];
      if (a.value && b.value && *a.value != *b.value) {
        return NodeError(node, absl::StrCat("inputs ", DimsToString(*first->shape), " and ",
                                            DimsToString(*t->shape), " differ in dim ", d,
                                            " (concat axis ", axis, ")"));
      }
      if (!a.value && b.value) result[d] = b;
    }
    const std::optional<int64_t> sum =
        (*t->shape)[axis].value ? CheckedAdd(total, *(*t->shape)[axis].value) : std::nullopt;
    if (sum) {
      total = *sum;
    } else {
      known = false;
    }
    if (t->elements) {
      elements.insert(elements.end(), t->elements->begin(), t->elements->end());
    } else {
      all_elements = false;
    }
  }
  result[axis] = known ? Value(total) : Unknown();
  (*out)[0].shape = std::move(result);
  if (all_elements && rank == 1) (*out)[0].elements = std::move(elements);
  return absl::OkStatus();
}

absl::Status Inference::Split(const Node& node, std::vector<ValueType>* out) {
  const ValueType* x = Input(node, 0);
  if (!x || !x->shape) return absl::OkStatus();
  const int64_t rank = static_cast<int64_t>(x->shape->size());
  SQ_ASSIGN_OR_RETURN(int64_t axis, Axis(node, node.IntAttribute("axis", 0), rank));
  std::optional<std::vector<int64_t>> sizes = AttributeOrInput(node, "split", 13, 1);
  const int64_t parts = static_cast<int64_t>(out->size());
  const Dim dim = (*x->shape)[axis];
  if (sizes && sizes->empty() && dim.value) {
    if (*dim.value % parts != 0) {
      return NodeError(node, absl::StrCat("dim ", axis, " of ", DimsToString(*x->shape),
                                          " does not split into ", parts, " equal parts"));
    }
    sizes = std::vector<int64_t>(parts, *dim.value / parts);
  }
  for (int64_t i = 0; i < parts; ++i) {
    Shape shape = *x->shape;
    if (sizes && !sizes->empty()) {
      if (static_cast<int64_t>(sizes->size()) != parts) {
        return NodeError(node, absl::StrCat("split has ", sizes->size(), " sizes for ", parts,
                                            " outputs"));
      }
      shape[axis] = Value((*sizes)[i]);
    } else {
      shape[axis] = Unknown();
    }
    (*out)[i].shape = std::move(shape);
  }
  if (sizes && !sizes->empty() && dim.value) {
    __int128 sum = 0;
    for (int64_t s : *sizes) sum += s;
    if (sum != *dim.value) {
      return NodeError(node, absl::StrCat("split sizes sum to ", static_cast<double>(sum), ", dim ", axis, " of ",
                                          DimsToString(*x->shape), " is ", *dim.value));
    }
  }
  return absl::OkStatus();
}

// Length of x[start:end:step] along a dim of `dim` elements, with ONNX's
// clamping (the same arithmetic as the CPU kernel).
int64_t SliceLength(int64_t dim, int64_t start, int64_t end, int64_t step, int64_t* begin) {
  auto clamp = [&](int64_t value, int64_t low, int64_t high) {
    if (value < 0) value += dim;
    return std::min(high, std::max(low, value));
  };
  if (step > 0) {
    const int64_t s = clamp(std::max<int64_t>(start, -dim - 1), 0, dim);
    const int64_t e = clamp(std::max<int64_t>(end, -dim - 1), 0, dim);
    *begin = s;
    return static_cast<int64_t>(std::max<__int128>(0, (__int128{e} - s + step - 1) / step));
  }
  const int64_t s = clamp(std::max<int64_t>(start, -dim - 1), 0, dim - 1);
  int64_t e = clamp(std::max<int64_t>(end, -dim - 1), -1, dim - 1);
  if (end < -dim) e = -1;
  *begin = s;
  return static_cast<int64_t>(std::max<__int128>(0, (__int128{s} - e - step - 1) / -__int128{step}));
}

absl::Status Inference::Slice(const Node& node, std::vector<ValueType>* out) {
  const ValueType* x = Input(node, 0);
  if (!x || !x->shape) return absl::OkStatus();
  const bool legacy = graph_->opset_version < 10;
  std::optional<std::vector<int64_t>> starts = AttributeOrInput(node, "starts", 10, 1);
  std::optional<std::vector<int64_t>> ends = AttributeOrInput(node, "ends", 10, 2);
  std::optional<std::vector<int64_t>> axes = AttributeOrInput(node, "axes", 10, 3);
  std::optional<std::vector<int64_t>> steps =
      legacy ? std::vector<int64_t>{} : AttributeOrInput(node, "steps", 10, 4);
  const int64_t rank = static_cast<int64_t>(x->shape->size());
  Shape result = *x->shape;
  if (!starts || !ends || !axes || !steps) {
    // Which axes are sliced may still be known: only they become unknown.
    if (axes && !axes->empty()) {
      for (int64_t a : *axes) {
        SQ_ASSIGN_OR_RETURN(int64_t axis, Axis(node, a, rank));
        result[axis] = Unknown();
      }
    } else {
      result.assign(rank, Unknown());
    }
    (*out)[0].shape = std::move(result);
    return absl::OkStatus();
  }
  if (axes->empty()) {
    for (size_t i = 0; i < starts->size(); ++i) axes->push_back(static_cast<int64_t>(i));
  }
  if (steps->empty()) steps->assign(starts->size(), 1);
  if (ends->size() != starts->size() || axes->size() != starts->size() ||
      steps->size() != starts->size()) {
    return NodeError(node, "starts, ends, axes and steps differ in length");
  }
  std::vector<int64_t> begin(rank, 0), stride(rank, 1);
  for (size_t i = 0; i < starts->size(); ++i) {
    SQ_ASSIGN_OR_RETURN(int64_t axis, Axis(node, (*axes)[i], rank));
    if ((*steps)[i] == 0) return NodeError(node, "step 0");
    const Dim& dim = (*x->shape)[axis];
    if (!dim.value) {
      result[axis] = Unknown();
      continue;
    }
    result[axis] = Value(SliceLength(*dim.value, (*starts)[i], (*ends)[i], (*steps)[i],
                                     &begin[axis]));
    stride[axis] = (*steps)[i];
  }
  (*out)[0].shape = result;
  const std::optional<std::vector<int64_t>> in_dims = Ints(*x->shape);
  const std::optional<std::vector<int64_t>> out_dims = Ints(result);
  if (x->elements && in_dims && out_dims &&
      Product(*x->shape, 0, x->shape->size()).value == static_cast<int64_t>(x->elements->size())) {
    std::vector<Dim> elements;
    for (int64_t offset : SourceOffsets(*in_dims, *out_dims, Iota(rank), begin, stride)) {
      elements.push_back((*x->elements)[offset]);
    }
    (*out)[0].elements = std::move(elements);
  }
  return absl::OkStatus();
}

absl::Status Inference::Squeeze(const Node& node, std::vector<ValueType>* out) {
  const ValueType* x = Input(node, 0);
  if (!x || !x->shape) return absl::OkStatus();
  std::optional<std::vector<int64_t>> axes = AttributeOrInput(node, "axes", 13, 1);
  if (!axes) return absl::OkStatus();
  const int64_t rank = static_cast<int64_t>(x->shape->size());
  std::set<int64_t> removed;
  for (int64_t a : *axes) {
    SQ_ASSIGN_OR_RETURN(int64_t axis, Axis(node, a, rank));
    const Dim& d = (*x->shape)[axis];
    if (d.value && *d.value != 1) {
      return NodeError(node, absl::StrCat("axis ", a, " of ", DimsToString(*x->shape),
                                          " is not 1"));
    }
    removed.insert(axis);
  }
  if (axes->empty()) {
    for (int64_t d = 0; d < rank; ++d) {
      const Dim& dim = (*x->shape)[d];
      if (!dim.value) return absl::OkStatus();  // Might be 1: rank unknown.
      if (*dim.value == 1) removed.insert(d);
    }
  }
  Shape result;
  for (int64_t d = 0; d < rank; ++d) {
    if (!removed.count(d)) result.push_back((*x->shape)[d]);
  }
  (*out)[0].shape = std::move(result);
  if (x->elements) (*out)[0].elements = x->elements;
  return absl::OkStatus();
}

absl::Status Inference::Unsqueeze(const Node& node, std::vector<ValueType>* out) {
  const ValueType* x = Input(node, 0);
  if (!x || !x->shape) return absl::OkStatus();
  std::optional<std::vector<int64_t>> axes = AttributeOrInput(node, "axes", 13, 1);
  if (!axes) return absl::OkStatus();
  const int64_t rank = static_cast<int64_t>(x->shape->size() + axes->size());
  std::set<int64_t> inserted;
  for (int64_t a : *axes) {
    SQ_ASSIGN_OR_RETURN(int64_t axis, Axis(node, a, rank));
    if (!inserted.insert(axis).second) return NodeError(node, "axes repeat");
  }
  Shape result;
  size_t next = 0;
  for (int64_t d = 0; d < rank; ++d) {
    result.push_back(inserted.count(d) ? Value(1) : (*x->shape)[next++]);
  }
  (*out)[0].shape = std::move(result);
  if (x->elements) (*out)[0].elements = x->elements;
  return absl::OkStatus();
}

absl::Status Inference::Gather(const Node& node, std::vector<ValueType>* out) {
  const ValueType* data = Input(node, 0);
  const ValueType* indices = Input(node, 1);
  if (!data) return absl::OkStatus();
  if (!data->shape || !indices || !indices->shape) return absl::OkStatus();
  const int64_t rank = static_cast<int64_t>(data->shape->size());
  SQ_ASSIGN_OR_RETURN(int64_t axis, Axis(node, node.IntAttribute("axis", 0), rank));
  Shape result(data->shape->begin(), data->shape->begin() + axis);
  result.insert(result.end(), indices->shape->begin(), indices->shape->end());
  result.insert(result.end(), data->shape->begin() + axis + 1, data->shape->end());
  (*out)[0].shape = std::move(result);
  if (data->elements && rank == 1 && indices->elements) {
    std::optional<std::vector<int64_t>> picks = Ints(*indices->elements);
    if (picks) {
      const int64_t n = static_cast<int64_t>(data->elements->size());
      std::vector<Dim> elements;
      for (int64_t i : *picks) {
        if (i < -n || i >= n) {
          return NodeError(node, absl::StrCat("index ", i, " is out of range for ", n,
                                              " elements"));
        }
        elements.push_back((*data->elements)[i < 0 ? i + n : i]);
      }
      (*out)[0].elements = std::move(elements);
    }
  }
  return absl::OkStatus();
}

absl::Status Inference::Expand(const Node& node, std::vector<ValueType>* out) {
  const ValueType* x = Input(node, 0);
  const ValueType* shape = Input(node, 1);
  if (!x) return absl::OkStatus();
  if (!x->shape || !shape || !shape->elements) return absl::OkStatus();
  SQ_ASSIGN_OR_RETURN((*out)[0].shape, Broadcast(node, *x->shape, *shape->elements));
  return absl::OkStatus();
}

absl::Status Inference::Pad(const Node& node, std::vector<ValueType>* out) {
  const ValueType* x = Input(node, 0);
  if (!x || !x->shape) return absl::OkStatus();
  std::optional<std::vector<int64_t>> pads = AttributeOrInput(node, "pads", 11, 1);
  const int64_t rank = static_cast<int64_t>(x->shape->size());
  if (!pads) {
    (*out)[0].shape = Shape(rank);
    return absl::OkStatus();
  }
  if (static_cast<int64_t>(pads->size()) != 2 * rank) {
    return NodeError(node, absl::StrCat(pads->size(), " pads for rank ", rank));
  }
  Shape result = *x->shape;
  for (int64_t d = 0; d < rank; ++d) {
    if (result[d].value) {
      const std::optional<int64_t> size = CheckedAdd(*result[d].value, (*pads)[d], (*pads)[d + rank]);
      if (!size || *size < 0) {
        return NodeError(node, absl::StrCat("pads ", (*pads)[d], "+", (*pads)[d + rank], " on dim ", d, " of ",
                                            DimsToString(*x->shape), " give no valid size"));
      }
      result[d] = Value(*size);
    } else if ((*pads)[d] != 0 || (*pads)[d + rank] != 0) {
      result[d] = Unknown();
    }
  }
  (*out)[0].shape = std::move(result);
  return absl::OkStatus();
}

// Float elements of a constant input (an initializer or a Constant node's
// value), for Resize scales.
std::optional<std::vector<float>> Inference::ConstantFloats(const Node& node, size_t i) const {
  if (!HasInput(node, i)) return std::nullopt;
  auto init = graph_->initializers.find(node.inputs[i]);
  if (init != graph_->initializers.end()) return init->second.ToFloats();
  auto constant = constants_.find(node.inputs[i]);
  if (constant != constants_.end()) return constant->second->ToFloats();
  return std::nullopt;
}

absl::Status Inference::Resize(const Node& node, std::vector<ValueType>* out) {
  const ValueType* x = Input(node, 0);
  if (!x || !x->shape) return absl::OkStatus();
  const int64_t rank = static_cast<int64_t>(x->shape->size());
  Shape result(rank);
  const size_t scales_input = graph_->opset_version < 11 ? 1 : 2;
  const ValueType* sizes = graph_->opset_version < 11 ? nullptr : Input(node, 3);
  const std::optional<std::vector<float>> scales = ConstantFloats(node, scales_input);
  if (sizes && sizes->elements && !sizes->elements->empty()) {
    if (static_cast<int64_t>(sizes->elements->size()) != rank) {
      return NodeError(node, "sizes length differs from the rank");
    }
    result = *sizes->elements;
  } else if (scales && !scales->empty()) {
    if (static_cast<int64_t>(scales->size()) != rank) {
      return NodeError(node, "scales length differs from the rank");
    }
    for (int64_t d = 0; d < rank; ++d) {
      const Dim& in = (*x->shape)[d];
      if ((*scales)[d] == 1.0f) {
        result[d] = in;
      } else if (in.value) {
        const double size = std::floor(static_cast<double>(*in.value) * (*scales)[d]);
        if (!(size >= 0 && size < 9.0e18)) {
          return NodeError(node, absl::StrCat("scale ", (*scales)[d], " of dim ", d, " gives size ", size));
        }
        result[d] = Value(static_cast<int64_t>(size));
      }
    }
  }
  (*out)[0].shape = std::move(result);
  return absl::OkStatus();
}

absl::Status Inference::QuantizeLinear(const Node& node, std::vector<ValueType>* out) {
  const ValueType* x = Input(node, 0);
  const ValueType* zero = Input(node, 2);
  (*out)[0].dtype = zero ? zero->dtype : DataType::kUInt8;
  if (x) (*out)[0].shape = x->shape;
  return absl::OkStatus();
}

absl::Status Inference::DequantizeLinear(const Node& node, std::vector<ValueType>* out) {
  const ValueType* x = Input(node, 0);
  (*out)[0].dtype = DataType::kFloat32;
  if (x) (*out)[0].shape = x->shape;
  return absl::OkStatus();
}

absl::StatusOr<ShapeInferenceStats> Inference::Run() {
  SQ_RETURN_IF_ERROR(SortTopologically(graph_));
  for (const ValueInfo& input : graph_->inputs) {
    types_[input.name] = ValueType{input.dtype, input.shape, std::nullopt};
  }
  for (const auto& [name, tensor] : graph_->initializers) types_[name] = TypeOfTensor(tensor);

  ShapeInferenceStats stats;
  std::set<std::string> unknown_ops;
  for (const Node& node : graph_->nodes) {
    if (node.outputs.empty()) continue;  // Nothing to type (rules write output 0).
    std::vector<ValueType> outputs(node.outputs.size());
    if (const ValueType* x = Input(node, 0)) {
      for (ValueType& o : outputs) o.dtype = x->dtype;
    }
    auto rule = Rules().find(node.op_type);
    bool typed = rule != Rules().end();
    if (typed) {
      SQ_RETURN_IF_ERROR((this->*(rule->second))(node, &outputs));
      // Without its first input a rule knows at most the dtype of some ops.
      typed = Input(node, 0) != nullptr || node.inputs.empty() ||
              node.op_type == "Constant";
    } else {
      unknown_ops.insert(node.op_type);
    }
    for (size_t i = 0; i < node.outputs.size(); ++i) {
      if (node.outputs[i].empty()) continue;
      ++stats.values;
      if (!typed) continue;
      if (outputs[i].shape) {
        ++stats.rank_known;
        if (Ints(*outputs[i].shape)) ++stats.fully_known;
      }
      types_[node.outputs[i]] = std::move(outputs[i]);
    }
  }
  stats.unknown_ops.assign(unknown_ops.begin(), unknown_ops.end());

  std::set<std::string> graph_value_names;
  for (const ValueInfo& v : graph_->inputs) graph_value_names.insert(v.name);
  for (ValueInfo& output : graph_->outputs) {
    graph_value_names.insert(output.name);
    auto it = types_.find(output.name);
    if (it == types_.end()) continue;
    const ValueType& inferred = it->second;
    const bool produced = !graph_->initializers.count(output.name);
    if (produced && inferred.dtype != output.dtype) {
      return absl::InvalidArgumentError(absl::StrCat(
          "shape inference: graph output '", output.name, "' is declared ",
          DataTypeName(output.dtype), " but computed as ", DataTypeName(inferred.dtype)));
    }
    if (!inferred.shape) continue;
    if (!output.shape) {
      output.shape = inferred.shape;
      continue;
    }
    if (output.shape->size() != inferred.shape->size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "shape inference: graph output '", output.name, "' is declared ",
          DimsToString(*output.shape), " but computed as ", DimsToString(*inferred.shape)));
    }
    for (size_t d = 0; d < output.shape->size(); ++d) {
      Dim& declared = (*output.shape)[d];
      const Dim& computed = (*inferred.shape)[d];
      if (declared.value && computed.value && *declared.value != *computed.value) {
        return absl::InvalidArgumentError(absl::StrCat(
            "shape inference: graph output '", output.name, "' is declared ",
            DimsToString(*output.shape), " but computed as ", DimsToString(*inferred.shape)));
      }
      if (!declared.value && declared.symbol.empty()) declared = computed;
    }
  }
  graph_->value_infos.clear();
  for (const Node& node : graph_->nodes) {
    for (const std::string& name : node.outputs) {
      if (name.empty() || graph_value_names.count(name)) continue;
      auto it = types_.find(name);
      if (it == types_.end()) continue;
      graph_->value_infos.push_back(ValueInfo{name, it->second.dtype, it->second.shape});
    }
  }
  return stats;
}

}  // namespace

absl::StatusOr<ShapeInferenceStats> InferShapes(Graph* graph) {
  return Inference(graph).Run();
}

std::optional<std::vector<Dim>> KnownShape(const Graph& graph, const std::string& value) {
  auto init = graph.initializers.find(value);
  if (init != graph.initializers.end()) return ShapeOf(init->second.shape());
  for (const auto* list : {&graph.inputs, &graph.value_infos, &graph.outputs}) {
    for (const ValueInfo& v : *list) {
      if (v.name == value) return v.shape;
    }
  }
  return std::nullopt;
}

std::string DimsToString(const std::vector<Dim>& dims) {
  std::vector<std::string> parts;
  for (const Dim& d : dims) parts.push_back(DimToString(d));
  return absl::StrCat("[", absl::StrJoin(parts, ", "), "]");
}

}  // namespace squeeze::core::graph
