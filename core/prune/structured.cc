// Structured pruning: channel tracing, unit scores, ratio allocation and
// physical removal (see structured.h).
#include "core/prune/structured.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <numeric>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/graph/shape_inference.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/runtime/executor.h"
#include "core/status_macros.h"
#include "core/train/autograd.h"
#include "core/train/losses.h"

namespace squeeze::core::prune {
namespace {

using graph::DataType;
using graph::Graph;
using graph::Node;
using graph::Tensor;

std::string NodeLabel(const Node& node) {
  return node.name.empty() ? absl::StrCat(node.op_type, " -> ", node.outputs.empty() ? "" : node.outputs[0])
                           : node.name;
}

const Tensor* FindInitializer(const Graph& graph, const std::string& name) {
  auto it = graph.initializers.find(name);
  return it == graph.initializers.end() ? nullptr : &it->second;
}

struct GraphIndex {
  std::map<std::string, int> producer;                // value -> node
  std::map<std::string, std::vector<int>> consumers;  // value -> nodes
  std::set<std::string> outputs;
};

GraphIndex IndexGraph(const Graph& graph) {
  GraphIndex index;
  for (int i = 0; i < static_cast<int>(graph.nodes.size()); ++i) {
    for (const auto& out : graph.nodes[i].outputs) index.producer[out] = i;
    for (const auto& in : graph.nodes[i].inputs) {
      if (!in.empty()) index.consumers[in].push_back(i);
    }
  }
  for (const auto& out : graph.outputs) index.outputs.insert(out.name);
  return index;
}

// A layer with a constant weight: Conv (group 1), Gemm, MatMul by an
// initializer or by Transpose(initializer, perm [1, 0]).
struct LayerWeight {
  std::string weight;
  int out_axis = 0, in_axis = 1;
  std::string bias;  // "" when none is sliceable
  int bias_axis = 0;
  int64_t out = 0, in = 0;
  int output_rank = -1;  // -1: unknown
};

std::optional<LayerWeight> AsLayer(const Graph& graph, const GraphIndex& index, const Node& node) {
  if (node.inputs.size() < 2) return std::nullopt;
  LayerWeight layer;
  if (node.op_type == "Conv") {
    const Tensor* w = FindInitializer(graph, node.inputs[1]);
    if (w == nullptr || w->rank() < 3 || node.IntAttribute("group", 1) != 1) return std::nullopt;
    layer.weight = node.inputs[1];
    layer.out_axis = 0;
    layer.in_axis = 1;
    layer.output_rank = static_cast<int>(w->rank());
    if (node.inputs.size() > 2 && FindInitializer(graph, node.inputs[2]) != nullptr) layer.bias = node.inputs[2];
    layer.out = w->shape()[0];
    layer.in = w->shape()[1];
    return layer;
  }
  if (node.op_type == "Gemm") {
    const Tensor* w = FindInitializer(graph, node.inputs[1]);
    if (w == nullptr || w->rank() != 2 || node.IntAttribute("transA", 0) != 0) return std::nullopt;
    const bool trans_b = node.IntAttribute("transB", 0) != 0;
    layer.weight = node.inputs[1];
    layer.out_axis = trans_b ? 0 : 1;
    layer.in_axis = trans_b ? 1 : 0;
    layer.out = w->shape()[layer.out_axis];
    layer.in = w->shape()[layer.in_axis];
    layer.output_rank = 2;
    if (node.inputs.size() > 2 && !node.inputs[2].empty()) {
      const Tensor* c = FindInitializer(graph, node.inputs[2]);
      if (c != nullptr && c->rank() >= 1 && c->shape().back() == layer.out && c->shape().back() > 1) {
        layer.bias = node.inputs[2];
        layer.bias_axis = static_cast<int>(c->rank()) - 1;
      }
    }
    return layer;
  }
  if (node.op_type == "MatMul") {
    if (const Tensor* w = FindInitializer(graph, node.inputs[1]); w != nullptr && w->rank() == 2) {
      layer.weight = node.inputs[1];
      layer.out_axis = 1;
      layer.in_axis = 0;
    } else {
      auto it = index.producer.find(node.inputs[1]);
      if (it == index.producer.end()) return std::nullopt;
      const Node& t = graph.nodes[it->second];
      const Tensor* tw = t.inputs.empty() ? nullptr : FindInitializer(graph, t.inputs[0]);
      if (t.op_type != "Transpose" || tw == nullptr || tw->rank() != 2 ||
          t.IntsAttribute("perm") != std::vector<int64_t>{1, 0}) {
        return std::nullopt;
      }
      layer.weight = t.inputs[0];
      layer.out_axis = 0;
      layer.in_axis = 1;
    }
    const Tensor* w = FindInitializer(graph, layer.weight);
    layer.out = w->shape()[layer.out_axis];
    layer.in = w->shape()[layer.in_axis];
    return layer;
  }
  return std::nullopt;
}

// Where a traced value keeps its units: `axis` counted from the end,
// `block` elements per unit (0: not yet known, after a Flatten), `rank`
// (-1: unknown); unit u holds elements [offset + u * block, offset + (u + 1)
// * block) of the axis, whose size is `extent` (units * block unless a
// Concat put other channels beside them; 0 when block is 0).
struct Layout {
  int rank = -1;
  int axis = -1;
  int64_t block = 1;
  int64_t offset = 0;
  int64_t extent = 0;
  bool operator==(const Layout& o) const {
    return rank == o.rank && axis == o.axis && block == o.block && offset == o.offset && extent == o.extent;
  }
};

// The unit an element at `position` of the unit axis belongs to, or -1 when
// it lies outside the units (another Concat input's channels).
int64_t UnitAt(int64_t position, int64_t offset, int64_t block, int64_t units) {
  if (position < offset) return -1;
  const int64_t unit = (position - offset) / block;
  return unit < units ? unit : -1;
}

// The size of `value` along dimension `axis` (from the end when negative),
// when its shape is known (initializers, declared or inferred shapes).
std::optional<int64_t> DimOf(const Graph& graph, const std::string& value, int axis) {
  std::optional<std::vector<graph::Dim>> shape = graph::KnownShape(graph, value);
  if (!shape) return std::nullopt;
  const int rank = static_cast<int>(shape->size());
  const int a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) return std::nullopt;
  return (*shape)[a].value;
}

const std::set<std::string>& UnaryOps() {
  static const auto* ops = new std::set<std::string>{
      "Relu", "Sigmoid", "Tanh", "LeakyRelu", "Elu", "Selu", "Gelu", "Softplus", "Softsign", "Neg", "Abs",
      "Identity", "Dropout", "Clip", "HardSigmoid", "HardSwish", "Erf", "Exp", "Mish", "ThresholdedRelu"};
  return *ops;
}
const std::set<std::string>& PoolOps() {
  static const auto* ops = new std::set<std::string>{"MaxPool", "AveragePool", "GlobalAveragePool",
                                                     "GlobalMaxPool", "LpPool"};
  return *ops;
}
const std::set<std::string>& BinaryOps() {
  static const auto* ops = new std::set<std::string>{"Add", "Sub", "Mul", "Div", "Max", "Min", "PRelu"};
  return *ops;
}

// What tracing one producer's channels found.
struct Trace {
  std::string producer_weight;
  int64_t units = 0;
  std::map<std::string, Layout> reached;
  std::vector<UnitSlice> slices;
  std::vector<std::string> depthwise_outputs;
  // Non-constant operands of binary ops, with the layout they must have.
  std::vector<std::pair<std::string, Layout>> joins;
  std::string activation;
  Layout activation_layout;
  std::string reason;
};

void Block(Trace* trace, const std::string& reason) {
  if (trace->reason.empty()) trace->reason = reason;
}

// Slices a consumer layer's input columns for `layout`; false (with a
// reason) when the widths do not match.
bool SliceConsumer(const LayerWeight& layer, const Node& node, const std::string& value, const Layout& layout,
                   const std::string& pre_flatten, const Layout& pre_flatten_layout, Trace* trace) {
  int64_t block = layout.block;
  if (block == 0) {
    if (layer.in % trace->units != 0) {
      Block(trace, absl::StrCat("node '", NodeLabel(node), "' has ", layer.in, " input columns, not a multiple of ",
                                trace->units, " channels"));
      return false;
    }
    block = layer.in / trace->units;
  } else if (layer.in != layout.extent) {
    Block(trace, absl::StrCat("node '", NodeLabel(node), "' has ", layer.in, " input columns, expected ",
                              layout.extent));
    return false;
  }
  trace->slices.push_back({layer.weight, layer.in_axis, block, layout.offset});
  if (trace->activation.empty()) {
    if (layout.block == 0) {
      trace->activation = pre_flatten;
      trace->activation_layout = pre_flatten_layout;
    } else {
      trace->activation = value;
      trace->activation_layout = layout;
    }
  }
  return true;
}

Trace TraceProducer(const Graph& graph, const GraphIndex& index, const Node& node, const LayerWeight& layer) {
  Trace trace;
  trace.producer_weight = layer.weight;
  trace.units = layer.out;
  trace.slices.push_back({layer.weight, layer.out_axis, 1});
  if (!layer.bias.empty()) trace.slices.push_back({layer.bias, layer.bias_axis, 1});
  Layout start;
  start.rank = layer.output_rank;
  start.axis = node.op_type == "Conv" ? -(layer.output_rank - 1) : -1;
  start.block = 1;
  start.extent = layer.out;
  // (value, layout, last value before a Flatten and its layout)
  struct Item {
    std::string value;
    Layout layout;
    std::string pre_flatten;
    Layout pre_flatten_layout;
  };
  std::deque<Item> queue{{node.outputs[0], start, "", {}}};
  trace.reached[node.outputs[0]] = start;
  auto push = [&](const std::string& value, const Layout& layout, const Item& from) {
    auto it = trace.reached.find(value);
    if (it != trace.reached.end()) {
      if (!(it->second == layout)) Block(&trace, absl::StrCat("value '", value, "' is reached with two layouts"));
      return;
    }
    trace.reached[value] = layout;
    queue.push_back({value, layout, from.pre_flatten, from.pre_flatten_layout});
  };
  while (!queue.empty() && trace.reason.empty()) {
    const Item item = queue.front();
    queue.pop_front();
    const std::string& v = item.value;
    const Layout& layout = item.layout;
    if (index.outputs.count(v) > 0) {
      Block(&trace, absl::StrCat("its channels reach the graph output '", v, "'"));
      break;
    }
    auto consumers = index.consumers.find(v);
    if (consumers == index.consumers.end()) continue;
    for (int c : consumers->second) {
      const Node& n = graph.nodes[c];
      const std::string label = NodeLabel(n);
      const bool first_input = !n.inputs.empty() && n.inputs[0] == v;
      if (UnaryOps().count(n.op_type) > 0 && first_input) {
        push(n.outputs[0], layout, item);
      } else if (PoolOps().count(n.op_type) > 0 && first_input && layout.block != 0 && layout.rank >= 3 &&
                 layout.rank + layout.axis == 1) {
        push(n.outputs[0], layout, item);
      } else if (n.op_type == "BatchNormalization" && first_input && layout.block == 1 &&
                 (layout.rank < 0 || layout.rank + layout.axis == 1)) {
        for (size_t i = 1; i < 5 && i < n.inputs.size(); ++i) {
          const Tensor* t = FindInitializer(graph, n.inputs[i]);
          if (t == nullptr || t->rank() != 1 || t->shape()[0] != layout.extent) {
            Block(&trace, absl::StrCat("BatchNormalization '", label, "' input ", i, " is not a constant of size ",
                                       layout.extent));
            break;
          }
          trace.slices.push_back({n.inputs[i], 0, 1, layout.offset});
        }
        push(n.outputs[0], layout, item);
      } else if (BinaryOps().count(n.op_type) > 0 && n.inputs.size() == 2) {
        for (int i = 0; i < 2; ++i) {
          const std::string& other = n.inputs[i];
          if (other == v) continue;
          const Tensor* t = FindInitializer(graph, other);
          if (t == nullptr) {
            trace.joins.push_back({other, layout});
            continue;
          }
          const int64_t rank = t->rank();
          if (rank < -layout.axis) continue;  // broadcast over the unit axis
          const int64_t size = t->shape()[rank + layout.axis];
          if (size == 1) continue;
          if (layout.block != 0 && size == layout.extent && (layout.rank < 0 || rank <= layout.rank)) {
            trace.slices.push_back({other, static_cast<int>(rank + layout.axis), layout.block, layout.offset});
          } else {
            Block(&trace, absl::StrCat(n.op_type, " '", label, "' applies constant '", other, "' of shape ",
                                       graph::ShapeToString(t->shape()), " across the channels"));
          }
        }
        push(n.outputs[0], layout, item);
      } else if (n.op_type == "Concat") {
        // Along the unit axis: the units move behind the channels of the
        // inputs before this one; the sizes must be known.
        const int64_t count = std::count(n.inputs.begin(), n.inputs.end(), v);
        int rank = layout.rank;
        if (const auto shape = graph::KnownShape(graph, v); rank < 0 && shape.has_value()) {
          rank = static_cast<int>(shape->size());
        }
        int64_t axis = n.IntAttribute("axis", 0);
        if (rank > 0 && axis < 0) axis += rank;
        if (count != 1 || layout.block == 0 || rank < 0 || axis != rank + layout.axis) {
          Block(&trace, absl::StrCat("Concat '", label, "' joins the channels along another axis"));
          break;
        }
        Layout out = layout;
        out.rank = rank;
        out.extent = 0;
        bool before = true;
        for (const std::string& input : n.inputs) {
          if (input == v) {
            before = false;
            out.extent += layout.extent;
            continue;
          }
          const std::optional<int64_t> size = DimOf(graph, input, layout.axis);
          if (!size.has_value()) {
            Block(&trace, absl::StrCat("Concat '", label, "' input '", input, "' has an unknown size"));
            break;
          }
          out.extent += *size;
          if (before) out.offset += *size;
        }
        if (!trace.reason.empty()) break;
        push(n.outputs[0], out, item);
      } else if (n.op_type == "Flatten" && first_input) {
        const int64_t axis = n.IntAttribute("axis", 1);
        if (layout.rank < 2 || axis != 1 || layout.rank + layout.axis != 1) {
          Block(&trace, absl::StrCat("Flatten '", label, "' does not keep the channel axis first"));
          break;
        }
        Item flat = item;
        if (layout.rank > 2) {
          flat.pre_flatten = v;
          flat.pre_flatten_layout = layout;
        }
        Layout out{2, -1, layout.rank == 2 ? layout.block : 0, 0, 0};
        if (layout.rank == 2) {
          out = layout;
        } else if (layout.offset != 0 || layout.extent != trace.units * layout.block) {
          // Beside other channels (after a Concat): the columns per channel
          // must be known from the shape.
          int64_t inner = 1;
          for (int d = 2; d < layout.rank; ++d) {
            const std::optional<int64_t> size = DimOf(graph, v, d);
            if (!size.has_value()) {
              Block(&trace, absl::StrCat("Flatten '", label, "' after a Concat has an input of unknown shape"));
              break;
            }
            inner *= *size;
          }
          if (!trace.reason.empty()) break;
          out = Layout{2, -1, layout.block * inner, layout.offset * inner, layout.extent * inner};
        }
        auto it = trace.reached.find(n.outputs[0]);
        if (it == trace.reached.end()) {
          trace.reached[n.outputs[0]] = out;
          queue.push_back({n.outputs[0], out, flat.pre_flatten, flat.pre_flatten_layout});
        }
      } else if (n.op_type == "Conv" && first_input && n.IntAttribute("group", 1) != 1) {
        const Tensor* w = n.inputs.size() > 1 ? FindInitializer(graph, n.inputs[1]) : nullptr;
        const int64_t group = n.IntAttribute("group", 1);
        if (w == nullptr || layout.block != 1 || layout.offset != 0 || layout.extent != trace.units ||
            group != trace.units || w->shape()[0] != trace.units || w->shape()[1] != 1) {
          Block(&trace, absl::StrCat("grouped Conv '", label, "' (group ", group,
                                     ") is not depthwise over these channels"));
          break;
        }
        trace.slices.push_back({n.inputs[1], 0, 1, 0});
        if (n.inputs.size() > 2 && !n.inputs[2].empty()) trace.slices.push_back({n.inputs[2], 0, 1, 0});
        trace.depthwise_outputs.push_back(n.outputs[0]);
        push(n.outputs[0], layout, item);
      } else if (std::optional<LayerWeight> consumer = AsLayer(graph, index, n);
                 consumer.has_value() && first_input) {
        if (n.op_type == "Conv" && (layout.block != 1 || (layout.rank >= 0 && layout.rank + layout.axis != 1))) {
          Block(&trace, absl::StrCat("Conv '", label, "' reads the channels on another axis"));
          break;
        }
        if (n.op_type != "Conv" && layout.axis != -1) {
          Block(&trace, absl::StrCat(n.op_type, " '", label, "' reads the channels on another axis"));
          break;
        }
        if (!SliceConsumer(*consumer, n, v, layout, item.pre_flatten, item.pre_flatten_layout, &trace)) break;
      } else {
        Block(&trace, absl::StrCat("its channels reach ", n.op_type, " '", label, "'"));
        break;
      }
    }
  }
  return trace;
}

int64_t Find(std::vector<int64_t>& parent, int64_t i) {
  while (parent[i] != i) i = parent[i] = parent[parent[i]];
  return i;
}

std::optional<std::vector<int64_t>> ShapeConstant(const Graph& graph, const std::string& name) {
  const Tensor* t = FindInitializer(graph, name);
  if (t == nullptr || t->dtype() != DataType::kInt64 || t->rank() != 1) return std::nullopt;
  return t->ToInt64s();
}

// The single consumer of `value` with op type `op`, or -1.
int ConsumerOfType(const Graph& graph, const GraphIndex& index, const std::string& value, const std::string& op) {
  auto it = index.consumers.find(value);
  if (it == index.consumers.end()) return -1;
  for (int c : it->second) {
    if (graph.nodes[c].op_type == op) return c;
  }
  return -1;
}

// The Reshape splitting the projection by `weight` into heads: its output
// and shape [0, 0, heads, head_dim].
std::optional<std::pair<std::string, std::vector<int64_t>>> HeadSplit(const Graph& graph, const GraphIndex& index,
                                                                      const std::string& weight) {
  const int t = ConsumerOfType(graph, index, weight, "Transpose");
  if (t < 0) return std::nullopt;
  const int m = ConsumerOfType(graph, index, graph.nodes[t].outputs[0], "MatMul");
  if (m < 0) return std::nullopt;
  const int r = ConsumerOfType(graph, index, graph.nodes[m].outputs[0], "Reshape");
  if (r < 0) return std::nullopt;
  auto shape = ShapeConstant(graph, graph.nodes[r].inputs[1]);
  if (!shape.has_value() || shape->size() != 4) return std::nullopt;
  return std::make_pair(graph.nodes[r].outputs[0], *shape);
}

// From a head split forward to the key/value repeat Reshape(Expand(Reshape(x,
// [0, KV, 1, -1, hd]))): (outer Reshape output, inner Reshape input).
std::optional<std::pair<std::string, std::string>> KvRepeat(const Graph& graph, const GraphIndex& index,
                                                            const std::string& split) {
  std::deque<std::string> queue{split};
  std::set<std::string> seen{split};
  while (!queue.empty() && seen.size() < 64) {
    const std::string v = queue.front();
    queue.pop_front();
    auto it = index.consumers.find(v);
    if (it == index.consumers.end()) continue;
    for (int c : it->second) {
      const Node& n = graph.nodes[c];
      if (n.op_type == "Reshape" && n.inputs[0] == v) {
        auto shape = ShapeConstant(graph, n.inputs[1]);
        if (shape.has_value() && shape->size() == 5) {
          const int e = ConsumerOfType(graph, index, n.outputs[0], "Expand");
          if (e < 0) return std::nullopt;
          const int r = ConsumerOfType(graph, index, graph.nodes[e].outputs[0], "Reshape");
          if (r < 0) return std::nullopt;
          return std::make_pair(graph.nodes[r].outputs[0], v);
        }
      }
      if (n.op_type == "MatMul" || n.op_type == "Softmax") continue;
      for (const auto& out : n.outputs) {
        if (seen.insert(out).second) queue.push_back(out);
      }
    }
  }
  return std::nullopt;
}

PruneGroup FindHeadGroup(const Graph& graph, const GraphIndex& index, const std::string& q_weight) {
  const std::string prefix = q_weight.substr(0, q_weight.size() - std::string("q_proj.weight").size());
  PruneGroup group;
  group.kind = GroupKind::kHeads;
  group.name = prefix.substr(0, prefix.size() - 1);
  group.aliases = {group.name};
  group.q_weight = q_weight;
  group.k_weight = prefix + "k_proj.weight";
  group.v_weight = prefix + "v_proj.weight";
  group.o_weight = prefix + "o_proj.weight";
  auto fail = [&group](const std::string& reason) {
    group.prunable = false;
    group.reason = reason;
    return group;
  };
  auto q = HeadSplit(graph, index, group.q_weight);
  auto k = HeadSplit(graph, index, group.k_weight);
  auto v = HeadSplit(graph, index, group.v_weight);
  if (!q || !k || !v) return fail("q/k/v projections are not MatMul -> Reshape [0, 0, heads, head_dim]");
  group.units = q->second[2];
  group.head_dim = q->second[3];
  group.kv_heads = k->second[2];
  if (v->second[2] != group.kv_heads || k->second[3] != group.head_dim || v->second[3] != group.head_dim ||
      group.units <= 0 || group.kv_heads <= 0 || group.units % group.kv_heads != 0) {
    return fail("q/k/v head shapes do not agree");
  }
  group.q_split = q->first;
  group.k_split = k->first;
  group.v_split = v->first;
  const int ot = ConsumerOfType(graph, index, group.o_weight, "Transpose");
  const int om = ot < 0 ? -1 : ConsumerOfType(graph, index, graph.nodes[ot].outputs[0], "MatMul");
  if (om < 0) return fail("o_proj is not MatMul(x, Transpose(weight))");
  auto merge = index.producer.find(graph.nodes[om].inputs[0]);
  if (merge == index.producer.end() || graph.nodes[merge->second].op_type != "Reshape" ||
      ShapeConstant(graph, graph.nodes[merge->second].inputs[1]).value_or(std::vector<int64_t>{}).size() != 3) {
    return fail("o_proj's input is not the Reshape merging the heads");
  }
  group.merge = graph.nodes[merge->second].outputs[0];
  if (group.units != group.kv_heads) {
    auto kr = KvRepeat(graph, index, group.k_split);
    auto vr = KvRepeat(graph, index, group.v_split);
    if (!kr || !vr) return fail("grouped-query key/value repeat (Reshape, Expand, Reshape) not found");
    group.k_repeat = kr->first;
    group.k_repeat_input = kr->second;
    group.v_repeat = vr->first;
    group.v_repeat_input = vr->second;
  }
  for (const std::string* w : {&group.q_weight, &group.k_weight, &group.v_weight, &group.o_weight}) {
    const Tensor* t = FindInitializer(graph, *w);
    if (t == nullptr || t->rank() != 2) return fail(absl::StrCat("'", *w, "' is not a matrix"));
  }
  group.slices = {{group.q_weight, 0, group.head_dim}, {group.o_weight, 1, group.head_dim}};
  group.activation = group.merge;
  group.activation_axis = -1;
  group.activation_block = group.head_dim;
  return group;
}

// GPT-2's fused attention, from its c_attn weight [d, 3d]: MatMul(x, W)
// (+ bias) -> three Slices of the last axis at [0, d), [d, 2d), [2d, 3d) ->
// each a Reshape [0, 0, heads, head_dim]; c_proj reads the Reshape
// [0, 0, d] that merges the heads. A head owns head_dim columns of each
// third of c_attn (weight and bias) and head_dim rows of c_proj.
PruneGroup FindFusedHeadGroup(const Graph& graph, const GraphIndex& index, const std::string& qkv_weight) {
  const std::string prefix = qkv_weight.substr(0, qkv_weight.size() - std::string("c_attn.weight").size());
  PruneGroup group;
  group.kind = GroupKind::kHeads;
  group.name = prefix.substr(0, prefix.size() - 1);
  group.aliases = {group.name};
  group.q_weight = qkv_weight;
  group.o_weight = prefix + "c_proj.weight";
  auto fail = [&group](const std::string& reason) {
    group.prunable = false;
    group.reason = reason;
    return group;
  };
  const Tensor* w = FindInitializer(graph, qkv_weight);
  const Tensor* o = FindInitializer(graph, group.o_weight);
  const int m = ConsumerOfType(graph, index, qkv_weight, "MatMul");
  if (w == nullptr || o == nullptr || w->rank() != 2 || o->rank() != 2 || m < 0 ||
      graph.nodes[m].inputs[1] != qkv_weight || w->shape()[1] % 3 != 0) {
    return fail("c_attn is not MatMul(x, weight [d, 3d]) or c_proj is missing");
  }
  const int64_t d = w->shape()[1] / 3;
  std::string qkv = graph.nodes[m].outputs[0];
  std::string bias;
  if (const int a = ConsumerOfType(graph, index, qkv, "Add"); a >= 0) {
    const Node& add = graph.nodes[a];
    const std::string& other = add.inputs[0] == qkv ? add.inputs[1] : add.inputs[0];
    const Tensor* b = FindInitializer(graph, other);
    if (b == nullptr || b->rank() != 1 || b->shape()[0] != 3 * d) return fail("c_attn's bias is not a [3d] constant");
    bias = other;
    qkv = add.outputs[0];
  }
  // The three Slices, ordered by start.
  std::map<int64_t, int> slice_at;
  auto consumers = index.consumers.find(qkv);
  if (consumers != index.consumers.end()) {
    for (int c : consumers->second) {
      const Node& n = graph.nodes[c];
      if (n.op_type != "Slice" || n.inputs.size() != 4) continue;
      auto starts = ShapeConstant(graph, n.inputs[1]);
      auto ends = ShapeConstant(graph, n.inputs[2]);
      auto axes = ShapeConstant(graph, n.inputs[3]);
      if (!starts || !ends || !axes || starts->size() != 1 || ends->size() != 1 || axes->size() != 1 ||
          ((*axes)[0] != 2 && (*axes)[0] != -1) || (*ends)[0] - (*starts)[0] != d) {
        continue;
      }
      slice_at[(*starts)[0]] = c;
    }
  }
  if (slice_at.size() != 3 || !slice_at.count(0) || !slice_at.count(d) || !slice_at.count(2 * d)) {
    return fail("q, k and v are not three Slices of c_attn's output at 0, d and 2d");
  }
  std::vector<std::string> splits;
  for (const auto& [start, c] : slice_at) {
    const int r = ConsumerOfType(graph, index, graph.nodes[c].outputs[0], "Reshape");
    auto shape = r < 0 ? std::nullopt : ShapeConstant(graph, graph.nodes[r].inputs[1]);
    if (!shape || shape->size() != 4 || (*shape)[2] * (*shape)[3] != d) {
      return fail("a q/k/v slice is not split by a Reshape [0, 0, heads, head_dim]");
    }
    if (group.units != 0 && (group.units != (*shape)[2] || group.head_dim != (*shape)[3])) {
      return fail("q/k/v head shapes do not agree");
    }
    group.units = (*shape)[2];
    group.head_dim = (*shape)[3];
    group.fused_slices.push_back(graph.nodes[c].outputs[0]);
    splits.push_back(graph.nodes[r].outputs[0]);
  }
  group.kv_heads = group.units;
  group.q_split = splits[0];
  group.k_split = splits[1];
  group.v_split = splits[2];
  const int om = ConsumerOfType(graph, index, group.o_weight, "MatMul");
  auto merge = om < 0 ? index.producer.end() : index.producer.find(graph.nodes[om].inputs[0]);
  if (om < 0 || graph.nodes[om].inputs[1] != group.o_weight || merge == index.producer.end() ||
      graph.nodes[merge->second].op_type != "Reshape" ||
      ShapeConstant(graph, graph.nodes[merge->second].inputs[1]).value_or(std::vector<int64_t>{}).size() != 3) {
    return fail("c_proj's input is not the Reshape merging the heads");
  }
  group.merge = graph.nodes[merge->second].outputs[0];
  for (int64_t part = 0; part < 3; ++part) {
    group.slices.push_back({qkv_weight, 1, group.head_dim, part * d});
    if (!bias.empty()) group.slices.push_back({bias, 0, group.head_dim, part * d});
  }
  group.slices.push_back({group.o_weight, 0, group.head_dim, 0});
  group.activation = group.merge;
  group.activation_axis = -1;
  group.activation_block = group.head_dim;
  return group;
}

// The LLaMA block stack: block i is Add(Add(x, attention), MLP) with the
// residual adds found from its o_proj and down_proj MatMuls.
std::optional<PruneGroup> FindBlockGroup(const Graph& graph, const GraphIndex& index) {
  PruneGroup group;
  group.kind = GroupKind::kBlocks;
  group.name = "model.layers";
  group.aliases = {group.name};
  auto residual_add = [&](const std::string& weight) -> int {
    const int t = ConsumerOfType(graph, index, weight, "Transpose");
    const int m = t < 0 ? -1 : ConsumerOfType(graph, index, graph.nodes[t].outputs[0], "MatMul");
    return m < 0 ? -1 : ConsumerOfType(graph, index, graph.nodes[m].outputs[0], "Add");
  };
  for (int64_t i = 0;; ++i) {
    const std::string prefix = absl::StrCat(group.name, ".", i, ".");
    if (graph.initializers.count(prefix + "self_attn.o_proj.weight") == 0) break;
    const int attention = residual_add(prefix + "self_attn.o_proj.weight");
    const int mlp = residual_add(prefix + "mlp.down_proj.weight");
    if (attention < 0 || mlp < 0) return std::nullopt;
    const Node& a = graph.nodes[attention];
    const Node& m = graph.nodes[mlp];
    // The residual input is the operand not produced by the branch's MatMul.
    auto residual_input = [&](const Node& add) -> std::string {
      for (const auto& in : add.inputs) {
        auto p = index.producer.find(in);
        if (p == index.producer.end() || graph.nodes[p->second].op_type != "MatMul") return in;
      }
      return "";
    };
    const std::string in = residual_input(a);
    if (in.empty() || residual_input(m) != a.outputs[0]) return std::nullopt;
    if (index.outputs.count(m.outputs[0]) > 0) return std::nullopt;
    group.block_inputs.push_back(in);
    group.block_outputs.push_back(m.outputs[0]);
    group.block_prefixes.push_back(prefix);
  }
  group.units = static_cast<int64_t>(group.block_prefixes.size());
  if (group.units < 2) return std::nullopt;
  for (int64_t i = 1; i < group.units; ++i) {
    if (group.block_inputs[i] != group.block_outputs[i - 1]) return std::nullopt;
  }
  return group;
}

// Initializers of block `unit` (by prefix).
std::vector<std::string> BlockInitializers(const Graph& graph, const PruneGroup& group, int64_t unit) {
  std::vector<std::string> names;
  for (const auto& [name, t] : graph.initializers) {
    if (absl::StartsWith(name, group.block_prefixes[unit])) names.push_back(name);
  }
  return names;
}

// Per-initializer, per-axis keep masks for a removal.
using KeepMasks = std::map<std::string, std::map<int, std::vector<bool>>>;

std::vector<bool>& Mask(const Graph& graph, KeepMasks* masks, const std::string& name, int axis) {
  auto& per_axis = (*masks)[name];
  auto it = per_axis.find(axis);
  if (it == per_axis.end()) {
    const Tensor& t = graph.initializers.at(name);
    it = per_axis.emplace(axis, std::vector<bool>(t.shape()[axis], true)).first;
  }
  return it->second;
}

void DropBlocks(std::vector<bool>* mask, const std::vector<int64_t>& units, int64_t block, int64_t offset = 0) {
  for (int64_t u : units) {
    for (int64_t i = offset + u * block; i < offset + (u + 1) * block && i < static_cast<int64_t>(mask->size()); ++i) {
      (*mask)[i] = false;
    }
  }
}

// Kept key/value heads and, for each kept query head, its new kv index.
struct HeadPlan {
  std::vector<int64_t> kept_q, removed_kv, gather;
};

HeadPlan PlanHeads(const PruneGroup& group, const std::vector<int64_t>& removed) {
  HeadPlan plan;
  std::set<int64_t> gone(removed.begin(), removed.end());
  const int64_t rep = group.units / group.kv_heads;
  std::vector<int64_t> new_kv(group.kv_heads, -1);
  int64_t next = 0;
  for (int64_t kv = 0; kv < group.kv_heads; ++kv) {
    bool used = false;
    for (int64_t h = kv * rep; h < (kv + 1) * rep; ++h) used = used || gone.count(h) == 0;
    if (used) {
      new_kv[kv] = next++;
    } else {
      plan.removed_kv.push_back(kv);
    }
  }
  for (int64_t h = 0; h < group.units; ++h) {
    if (gone.count(h) > 0) continue;
    plan.kept_q.push_back(h);
    plan.gather.push_back(new_kv[h / rep]);
  }
  return plan;
}

KeepMasks BuildMasks(const Graph& graph, const std::vector<PruneGroup>& groups,
                     const std::map<std::string, std::vector<int64_t>>& removed) {
  KeepMasks masks;
  for (const PruneGroup& group : groups) {
    auto it = removed.find(group.name);
    if (it == removed.end() || it->second.empty()) continue;
    for (const UnitSlice& slice : group.slices) {
      DropBlocks(&Mask(graph, &masks, slice.initializer, slice.axis), it->second, slice.block, slice.offset);
    }
    if (group.kind == GroupKind::kHeads) {
      const HeadPlan plan = PlanHeads(group, it->second);
      for (const std::string* w : {&group.k_weight, &group.v_weight}) {
        if (!w->empty()) DropBlocks(&Mask(graph, &masks, *w, 0), plan.removed_kv, group.head_dim);
      }
    }
    if (group.kind == GroupKind::kBlocks) {
      // Everything of a removed block goes (counted as kept size 0).
      for (int64_t unit : it->second) {
        for (const auto& name : BlockInitializers(graph, group, unit)) {
          if (graph.initializers.at(name).rank() == 0) continue;
          std::vector<bool>& mask = Mask(graph, &masks, name, 0);
          std::fill(mask.begin(), mask.end(), false);
        }
      }
    }
  }
  return masks;
}

Tensor SliceAxis(const Tensor& t, int axis, const std::vector<bool>& keep) {
  const int64_t kept = std::count(keep.begin(), keep.end(), true);
  std::vector<int64_t> shape = t.shape();
  const int64_t dim = shape[axis];
  shape[axis] = kept;
  Tensor out(t.dtype(), shape);
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < axis; ++i) outer *= t.shape()[i];
  for (int64_t i = axis + 1; i < t.rank(); ++i) inner *= t.shape()[i];
  const int64_t element = t.num_elements() == 0 ? 0 : t.byte_size() / t.num_elements();
  const char* src = static_cast<const char*>(t.raw_data());
  char* dst = static_cast<char*>(out.raw_data());
  const int64_t row = inner * element;
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t d = 0; d < dim; ++d) {
      if (!keep[d]) continue;
      std::memcpy(dst, src + (o * dim + d) * row, row);
      dst += row;
    }
  }
  return out;
}

int64_t KeptElements(const Tensor& t, const std::map<int, std::vector<bool>>& per_axis) {
  int64_t n = 1;
  for (int64_t a = 0; a < t.rank(); ++a) {
    auto it = per_axis.find(static_cast<int>(a));
    n *= it == per_axis.end() ? t.shape()[a] : std::count(it->second.begin(), it->second.end(), true);
  }
  return n;
}

bool IsParameter(const std::string& name, const Tensor& t) {
  return t.dtype() == DataType::kFloat32 && t.rank() >= 1 && !absl::StartsWith(name, "squeeze.");
}

int64_t ParamsAfter(const Graph& graph, const KeepMasks& masks) {
  int64_t total = 0;
  for (const auto& [name, t] : graph.initializers) {
    if (!IsParameter(name, t)) continue;
    auto it = masks.find(name);
    total += it == masks.end() ? t.num_elements() : KeptElements(t, it->second);
  }
  return total;
}

std::set<std::string> GroupInitializers(const PruneGroup& group) {
  std::set<std::string> names;
  for (const auto& s : group.slices) names.insert(s.initializer);
  if (group.kind == GroupKind::kHeads && group.fused_slices.empty()) {
    names.insert(group.k_weight);
    names.insert(group.v_weight);
  }
  return names;
}

std::set<std::string> GroupInitializers(const Graph& graph, const PruneGroup& group) {
  std::set<std::string> names = GroupInitializers(group);
  if (group.kind == GroupKind::kBlocks) {
    for (int64_t u = 0; u < group.units; ++u) {
      for (const auto& name : BlockInitializers(graph, group, u)) names.insert(name);
    }
  }
  return names;
}

// Removes nodes none of whose outputs are used, and initializers in
// `candidates` that nothing reads any more.
void RemoveDeadNodes(Graph* graph, const std::set<std::string>& candidates) {
  bool changed = true;
  while (changed) {
    changed = false;
    std::set<std::string> used;
    for (const auto& n : graph->nodes) used.insert(n.inputs.begin(), n.inputs.end());
    for (const auto& o : graph->outputs) used.insert(o.name);
    std::vector<Node> kept;
    for (auto& n : graph->nodes) {
      bool live = false;
      for (const auto& out : n.outputs) live = live || used.count(out) > 0;
      if (live) {
        kept.push_back(std::move(n));
      } else {
        changed = true;
      }
    }
    graph->nodes = std::move(kept);
  }
  std::set<std::string> used;
  for (const auto& n : graph->nodes) used.insert(n.inputs.begin(), n.inputs.end());
  for (const auto& name : candidates) {
    if (used.count(name) == 0) graph->initializers.erase(name);
  }
}

Node* ProducerNode(Graph* graph, const std::string& value) {
  for (auto& n : graph->nodes) {
    for (const auto& out : n.outputs) {
      if (out == value) return &n;
    }
  }
  return nullptr;
}

const PruneGroup* FindGroup(const std::vector<PruneGroup>& groups, const std::string& name) {
  for (const auto& g : groups) {
    if (g.name == name || std::find(g.aliases.begin(), g.aliases.end(), name) != g.aliases.end()) return &g;
  }
  return nullptr;
}

std::shared_ptr<const runtime::KernelBackend> Cpu() {
  static const auto* backend = new std::shared_ptr<const runtime::KernelBackend>(kernels::cpu::CreateCpuBackend());
  return *backend;
}

// Units of `group` by ascending score; the first `count` are removed.
std::vector<int64_t> Lowest(const std::vector<double>& scores, int64_t count) {
  std::vector<int64_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return scores[a] < scores[b]; });
  order.resize(std::min<int64_t>(count, static_cast<int64_t>(order.size())));
  std::sort(order.begin(), order.end());
  return order;
}

int64_t UnitsFor(double ratio, int64_t units) {
  return std::min<int64_t>(units - 1, static_cast<int64_t>(std::floor(ratio * static_cast<double>(units) + 1e-9)));
}

// Output positions per example of every layer weight (Conv, depthwise
// Conv, Gemm, MatMul by a weight), from one forward run on `batch`.
absl::StatusOr<std::map<std::string, double>> WeightPositions(const Graph& graph, const LabeledBatch& batch) {
  const GraphIndex index = IndexGraph(graph);
  std::map<std::string, std::pair<std::string, int64_t>> layers;  // weight -> (output, out units)
  for (const Node& node : graph.nodes) {
    if (node.outputs.empty()) continue;
    if (std::optional<LayerWeight> layer = AsLayer(graph, index, node); layer.has_value()) {
      layers[layer->weight] = {node.outputs[0], layer->out};
    } else if (node.op_type == "Conv" && node.inputs.size() > 1 && FindInitializer(graph, node.inputs[1])) {
      layers[node.inputs[1]] = {node.outputs[0], FindInitializer(graph, node.inputs[1])->shape()[0]};
    }
  }
  std::set<std::string> trainable;
  for (const auto& [weight, unused] : layers) trainable.insert(weight);
  SQ_ASSIGN_OR_RETURN(train::GradientProgram program, train::GradientProgram::Create(graph, Cpu(), trainable));
  SQ_ASSIGN_OR_RETURN(train::Tape tape, program.Forward(batch.feeds));
  int64_t examples = 1;
  for (const auto& [name, tensor] : batch.feeds) {
    if (tensor.rank() > 0) examples = std::max<int64_t>(examples, tensor.shape()[0]);
  }
  std::map<std::string, double> positions;
  for (const auto& [weight, output] : layers) {
    auto it = tape.values.find(output.first);
    if (it == tape.values.end() || output.second <= 0) continue;
    positions[weight] = static_cast<double>(it->second.num_elements()) /
                        static_cast<double>(output.second * examples);
  }
  return positions;
}

double MacsAfter(const Graph& graph, const std::map<std::string, double>& positions, const KeepMasks& masks) {
  double total = 0;
  for (const auto& [weight, count] : positions) {
    const Tensor& t = graph.initializers.at(weight);
    auto it = masks.find(weight);
    total += count * static_cast<double>(it == masks.end() ? t.num_elements() : KeptElements(t, it->second));
  }
  return total;
}

}  // namespace

std::string StructuredScoreName(StructuredScore score) {
  switch (score) {
    case StructuredScore::kL1: return "l1";
    case StructuredScore::kL2: return "l2";
    case StructuredScore::kTaylor: return "taylor";
    case StructuredScore::kCombined: return "combined";
  }
  return "unknown";
}

absl::StatusOr<StructuredScore> ParseStructuredScore(const std::string& name) {
  for (auto s : {StructuredScore::kL1, StructuredScore::kL2, StructuredScore::kTaylor, StructuredScore::kCombined}) {
    if (StructuredScoreName(s) == name) return s;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("structured pruning: score must be l1, l2, taylor or combined, got '", name, "'"));
}

absl::StatusOr<std::vector<PruneGroup>> FindPruneGroups(const Graph& input) {
  Graph graph = input;
  // Concat offsets need the sizes of the other inputs.
  SQ_RETURN_IF_ERROR(graph::InferShapes(&graph).status());
  const GraphIndex index = IndexGraph(graph);
  std::vector<Trace> traces;
  for (const Node& node : graph.nodes) {
    std::optional<LayerWeight> layer = AsLayer(graph, index, node);
    if (!layer.has_value() || node.outputs.empty()) continue;
    traces.push_back(TraceProducer(graph, index, node, *layer));
  }
  // Producers whose traces meet are one group.
  const int64_t n = static_cast<int64_t>(traces.size());
  std::vector<int64_t> parent(n);
  std::iota(parent.begin(), parent.end(), 0);
  // A value holds the channels of several producers side by side after a
  // Concat (different offsets): those stay separate groups.
  auto key = [](const std::string& value, const Layout& layout) { return absl::StrCat(value, "@", layout.offset); };
  std::map<std::string, int64_t> owner;
  for (int64_t i = 0; i < n; ++i) {
    for (const auto& [value, layout] : traces[i].reached) {
      auto [it, inserted] = owner.emplace(key(value, layout), i);
      if (!inserted) parent[Find(parent, i)] = Find(parent, it->second);
    }
  }
  // Initializer use counts: a sliced initializer read elsewhere blocks.
  std::map<std::string, int> uses;
  for (const auto& node : graph.nodes) {
    for (const auto& in : node.inputs) ++uses[in];
  }
  std::vector<PruneGroup> groups;
  std::map<int64_t, size_t> group_of_root;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t root = Find(parent, i);
    auto [it, inserted] = group_of_root.emplace(root, groups.size());
    if (inserted) {
      groups.emplace_back();
      groups.back().name = traces[i].producer_weight;
      groups.back().units = traces[i].units;
    }
    PruneGroup& g = groups[it->second];
    const Trace& t = traces[i];
    g.aliases.push_back(t.producer_weight);
    if (!t.reason.empty() && g.prunable) {
      g.prunable = false;
      g.reason = t.producer_weight == g.name ? t.reason : absl::StrCat("'", t.producer_weight, "': ", t.reason);
    }
    if (t.units != g.units && g.prunable) {
      g.prunable = false;
      g.reason = absl::StrCat("'", t.producer_weight, "' has ", t.units, " outputs, joined with ", g.units);
    }
    for (const auto& s : t.slices) {
      bool dup = false;
      for (const auto& e : g.slices) {
        dup = dup || (e.initializer == s.initializer && e.axis == s.axis && e.offset == s.offset);
      }
      if (!dup) g.slices.push_back(s);
    }
    g.depthwise_outputs.insert(g.depthwise_outputs.end(), t.depthwise_outputs.begin(), t.depthwise_outputs.end());
    if (g.activation.empty() && !t.activation.empty()) {
      g.activation = t.activation;
      g.activation_axis = t.activation_layout.axis;
      g.activation_block = t.activation_layout.block;
      g.activation_offset = t.activation_layout.offset;
    }
  }
  // Joins must be satisfied inside the group; layouts must agree.
  for (int64_t i = 0; i < n; ++i) {
    PruneGroup& g = groups[group_of_root[Find(parent, i)]];
    if (!g.prunable) continue;
    for (const auto& [value, layout] : traces[i].joins) {
      auto it = owner.find(key(value, layout));
      if (it == owner.end() || Find(parent, it->second) != Find(parent, i)) {
        g.prunable = false;
        g.reason = absl::StrCat("its channels are combined with '", value,
                                "', which no prunable layer produces (e.g. a residual from the input)");
        break;
      }
      const Layout& other = traces[it->second].reached.at(value);
      if (!(other == layout)) {
        g.prunable = false;
        g.reason = absl::StrCat("'", value, "' holds the channels on another axis");
        break;
      }
    }
  }
  for (PruneGroup& g : groups) {
    if (!g.prunable) continue;
    for (const auto& s : g.slices) {
      if (uses[s.initializer] > 1) {
        g.prunable = false;
        g.reason = absl::StrCat("initializer '", s.initializer, "' is read by ", uses[s.initializer], " nodes");
        break;
      }
    }
    if (g.prunable && g.units < 2) {
      g.prunable = false;
      g.reason = "fewer than 2 units";
    }
  }
  for (const auto& [name, tensor] : graph.initializers) {
    if (absl::EndsWith(name, "self_attn.q_proj.weight")) groups.push_back(FindHeadGroup(graph, index, name));
    if (absl::EndsWith(name, "attn.c_attn.weight")) groups.push_back(FindFusedHeadGroup(graph, index, name));
  }
  if (std::optional<PruneGroup> blocks = FindBlockGroup(graph, index); blocks.has_value()) {
    groups.push_back(std::move(*blocks));
  }
  return groups;
}

int64_t CountParameters(const Graph& graph) { return ParamsAfter(graph, {}); }

absl::StatusOr<Graph> RemoveUnits(const Graph& input, const std::vector<PruneGroup>& groups,
                                  const std::map<std::string, std::vector<int64_t>>& removed) {
  Graph graph = input;
  for (const auto& [name, units] : removed) {
    const PruneGroup* group = FindGroup(groups, name);
    if (group == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("structured pruning: unknown layer '", name, "'"));
    }
    if (!group->prunable && !units.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("structured pruning: layer '", name, "' cannot be pruned: ", group->reason));
    }
    std::set<int64_t> distinct;
    for (int64_t u : units) {
      if (u < 0 || u >= group->units) {
        return absl::InvalidArgumentError(absl::StrCat("structured pruning: layer '", name, "': unit ", u,
                                                       " is outside [0, ", group->units, ")"));
      }
      distinct.insert(u);
    }
    if (static_cast<int64_t>(distinct.size()) >= group->units) {
      return absl::InvalidArgumentError(absl::StrCat("structured pruning: layer '", name, "': removing all ",
                                                     group->units, " units"));
    }
  }
  // Canonical names, so that aliases select their group.
  std::map<std::string, std::vector<int64_t>> by_group;
  for (const auto& [name, units] : removed) {
    auto& list = by_group[FindGroup(groups, name)->name];
    list.insert(list.end(), units.begin(), units.end());
    std::sort(list.begin(), list.end());
    list.erase(std::unique(list.begin(), list.end()), list.end());
  }
  const KeepMasks masks = BuildMasks(graph, groups, by_group);
  for (const auto& [name, per_axis] : masks) {
    Tensor t = graph.initializers.at(name);
    for (const auto& [axis, keep] : per_axis) t = SliceAxis(t, axis, keep);
    graph.initializers[name] = std::move(t);
  }
  std::set<std::string> stale_initializers;
  for (const PruneGroup& group : groups) {
    auto it = by_group.find(group.name);
    if (it == by_group.end() || it->second.empty()) continue;
    const int64_t kept = group.units - static_cast<int64_t>(it->second.size());
    for (const auto& out : group.depthwise_outputs) {
      Node* node = ProducerNode(&graph, out);
      if (node != nullptr) node->attributes["group"] = kept;
    }
    if (group.kind == GroupKind::kBlocks) {
      // Ascending, so that a run of removed blocks resolves to the input of
      // the first one.
      std::map<std::string, std::string> replaced;
      for (int64_t unit : it->second) {
        std::string target = group.block_inputs[unit];
        if (auto r = replaced.find(target); r != replaced.end()) target = r->second;
        replaced[group.block_outputs[unit]] = target;
        for (auto& node : graph.nodes) {
          for (auto& in : node.inputs) {
            if (in == group.block_outputs[unit]) in = target;
          }
        }
        for (const auto& name : BlockInitializers(input, group, unit)) stale_initializers.insert(name);
      }
      continue;
    }
    if (group.kind != GroupKind::kHeads) continue;
    const HeadPlan plan = PlanHeads(group, it->second);
    const int64_t kv = group.kv_heads - static_cast<int64_t>(plan.removed_kv.size());
    auto reshape = [&](const std::string& out, const std::string& suffix, std::vector<int64_t> shape) {
      Node* node = ProducerNode(&graph, out);
      const std::string name = absl::StrCat(group.name, ".pruned_", suffix);
      stale_initializers.insert(node->inputs[1]);
      graph.initializers[name] = Tensor::FromVector(DataType::kInt64, {static_cast<int64_t>(shape.size())}, shape);
      node->inputs[1] = name;
    };
    reshape(group.q_split, "q_heads_shape", {0, 0, kept, group.head_dim});
    reshape(group.k_split, "k_heads_shape", {0, 0, kv, group.head_dim});
    reshape(group.v_split, "v_heads_shape", {0, 0, kv, group.head_dim});
    reshape(group.merge, "merge_shape", {0, 0, kept * group.head_dim});
    // Fused q/k/v: the Slices take thirds of the narrower c_attn output.
    for (size_t part = 0; part < group.fused_slices.size(); ++part) {
      Node* node = ProducerNode(&graph, group.fused_slices[part]);
      const int64_t width = kept * group.head_dim;
      for (int bound = 0; bound < 2; ++bound) {
        const std::string name = absl::StrCat(group.name, ".pruned_qkv_", part, bound == 0 ? "_start" : "_end");
        stale_initializers.insert(node->inputs[1 + bound]);
        graph.initializers[name] =
            Tensor::FromVector<int64_t>(DataType::kInt64, {1}, {(static_cast<int64_t>(part) + bound) * width});
        node->inputs[1 + bound] = name;
      }
    }
    if (!group.k_repeat.empty()) {
      const std::string indices = absl::StrCat(group.name, ".pruned_kv_of_head");
      graph.initializers[indices] =
          Tensor::FromVector(DataType::kInt64, {static_cast<int64_t>(plan.gather.size())}, plan.gather);
      for (const auto& [out, in] : {std::make_pair(group.k_repeat, group.k_repeat_input),
                                    std::make_pair(group.v_repeat, group.v_repeat_input)}) {
        Node* node = ProducerNode(&graph, out);
        stale_initializers.insert(node->inputs[1]);
        node->op_type = "Gather";
        node->inputs = {in, indices};
        node->attributes = {{"axis", int64_t{1}}};
      }
    }
  }
  RemoveDeadNodes(&graph, stale_initializers);
  // Re-derive every intermediate shape (channel counts changed), which also
  // checks that the removal left a consistent graph.
  SQ_RETURN_IF_ERROR(graph::InferShapes(&graph).status());
  return graph;
}

absl::StatusOr<double> CalibrationLoss(const Graph& graph, const std::vector<LabeledBatch>& batches) {
  SQ_ASSIGN_OR_RETURN(runtime::Executor executor, runtime::Executor::Create(graph, Cpu()));
  double total = 0;
  for (const auto& batch : batches) {
    SQ_ASSIGN_OR_RETURN(std::vector<Tensor> outputs, executor.Run(batch.feeds));
    SQ_ASSIGN_OR_RETURN(train::LossAndGradient loss, train::SoftmaxCrossEntropy(outputs[0], batch.labels));
    total += loss.loss;
  }
  return batches.empty() ? 0.0 : total / static_cast<double>(batches.size());
}

absl::StatusOr<std::vector<std::vector<double>>> ScoreUnits(const Graph& graph, const std::vector<PruneGroup>& groups,
                                                            const std::vector<LabeledBatch>& batches,
                                                            StructuredScore score, double gradient_weight) {
  std::vector<std::vector<double>> scores(groups.size());
  if (score == StructuredScore::kL1 || score == StructuredScore::kL2) {
    for (size_t gi = 0; gi < groups.size(); ++gi) {
      const PruneGroup& g = groups[gi];
      if (!g.prunable) continue;
      std::vector<double> sum(g.units, 0.0);
      for (int64_t u = 0; g.kind == GroupKind::kBlocks && u < g.units; ++u) {
        for (const auto& name : BlockInitializers(graph, g, u)) {
          for (float w : graph.initializers.at(name).ToFloats()) {
            sum[u] += score == StructuredScore::kL1 ? std::fabs(w) : static_cast<double>(w) * w;
          }
        }
      }
      for (const UnitSlice& s : g.slices) {
        const Tensor& t = graph.initializers.at(s.initializer);
        const std::vector<float> w = t.ToFloats();
        int64_t inner = 1;
        for (int64_t a = s.axis + 1; a < t.rank(); ++a) inner *= t.shape()[a];
        const int64_t dim = t.shape()[s.axis];
        for (int64_t i = 0; i < t.num_elements(); ++i) {
          const int64_t unit = UnitAt((i / inner) % dim, s.offset, s.block, g.units);
          if (unit < 0) continue;
          sum[unit] += score == StructuredScore::kL1 ? std::fabs(w[i]) : static_cast<double>(w[i]) * w[i];
        }
      }
      if (score == StructuredScore::kL2) {
        for (double& v : sum) v = std::sqrt(v);
      }
      scores[gi] = std::move(sum);
    }
    return scores;
  }
  if (batches.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("structured pruning: score '", StructuredScoreName(score), "' needs calibration batches"));
  }
  std::set<std::string> bn_statistics;
  for (const auto& node : graph.nodes) {
    if (node.op_type == "BatchNormalization" && node.inputs.size() >= 5) {
      bn_statistics.insert(node.inputs[3]);
      bn_statistics.insert(node.inputs[4]);
    }
  }
  std::set<std::string> trainable;
  for (const auto& g : groups) {
    if (!g.prunable) continue;
    for (const auto& s : g.slices) {
      if (bn_statistics.count(s.initializer) == 0 &&
          graph.initializers.at(s.initializer).dtype() == DataType::kFloat32) {
        trainable.insert(s.initializer);
      }
    }
  }
  for (const auto& g : groups) {
    if (!g.prunable || g.kind != GroupKind::kBlocks) continue;
    for (int64_t u = 0; u < g.units; ++u) {
      for (const auto& name : BlockInitializers(graph, g, u)) {
        if (graph.initializers.at(name).dtype() == DataType::kFloat32) trainable.insert(name);
      }
    }
  }
  SQ_ASSIGN_OR_RETURN(train::GradientProgram program, train::GradientProgram::Create(graph, Cpu(), trainable));
  const std::string output = graph.outputs.at(0).name;
  std::vector<std::vector<double>> taylor(groups.size()), act_sum(groups.size()), act_sq(groups.size());
  std::vector<double> act_count(groups.size(), 0.0);
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    taylor[gi].assign(groups[gi].units, 0.0);
    act_sum[gi].assign(groups[gi].units, 0.0);
    act_sq[gi].assign(groups[gi].units, 0.0);
  }
  for (const LabeledBatch& batch : batches) {
    SQ_ASSIGN_OR_RETURN(train::Tape tape, program.Forward(batch.feeds));
    SQ_ASSIGN_OR_RETURN(const Tensor* logits, program.Output(tape, output));
    SQ_ASSIGN_OR_RETURN(train::LossAndGradient loss, train::SoftmaxCrossEntropy(*logits, batch.labels));
    SQ_ASSIGN_OR_RETURN(train::TensorMap gradients, program.Backward(tape, {{output, loss.gradient}}));
    for (size_t gi = 0; gi < groups.size(); ++gi) {
      const PruneGroup& g = groups[gi];
      if (!g.prunable) continue;
      std::vector<double> dot(g.units, 0.0);
      for (const UnitSlice& s : g.slices) {
        auto grad = gradients.find(s.initializer);
        if (grad == gradients.end()) continue;
        const Tensor& t = program.graph().initializers.at(s.initializer);
        const float* w = t.data<float>();
        const float* d = grad->second.data<float>();
        int64_t inner = 1;
        for (int64_t a = s.axis + 1; a < t.rank(); ++a) inner *= t.shape()[a];
        const int64_t dim = t.shape()[s.axis];
        for (int64_t i = 0; i < t.num_elements(); ++i) {
          const int64_t unit = UnitAt((i / inner) % dim, s.offset, s.block, g.units);
          if (unit >= 0) dot[unit] += static_cast<double>(w[i]) * d[i];
        }
      }
      if (g.kind == GroupKind::kBlocks) {
        for (int64_t u = 0; u < g.units; ++u) {
          for (const auto& name : BlockInitializers(graph, g, u)) {
            auto grad = gradients.find(name);
            if (grad == gradients.end()) continue;
            const float* w = program.graph().initializers.at(name).data<float>();
            const float* d = grad->second.data<float>();
            for (int64_t i = 0; i < grad->second.num_elements(); ++i) dot[u] += static_cast<double>(w[i]) * d[i];
          }
          // Activation statistic: variance of what the block adds to the
          // residual stream.
          auto in = tape.values.find(g.block_inputs[u]);
          auto out = tape.values.find(g.block_outputs[u]);
          if (in == tape.values.end() || out == tape.values.end()) continue;
          const float* a = in->second.data<float>();
          const float* b = out->second.data<float>();
          for (int64_t i = 0; i < out->second.num_elements(); ++i) {
            const double delta = static_cast<double>(b[i]) - a[i];
            act_sum[gi][u] += delta;
            act_sq[gi][u] += delta * delta;
          }
          if (u == 0) act_count[gi] += static_cast<double>(out->second.num_elements());
        }
        for (int64_t u = 0; u < g.units; ++u) taylor[gi][u] += std::fabs(dot[u]);
        continue;
      }
      for (int64_t u = 0; u < g.units; ++u) taylor[gi][u] += std::fabs(dot[u]);
      auto act = tape.values.find(g.activation);
      if (act == tape.values.end() || act->second.dtype() != DataType::kFloat32) continue;
      const Tensor& a = act->second;
      const int axis = static_cast<int>(a.rank()) + g.activation_axis;
      if (axis < 0 || a.shape()[axis] < g.activation_offset + g.units * g.activation_block) continue;
      int64_t inner = 1;
      for (int64_t x = axis + 1; x < a.rank(); ++x) inner *= a.shape()[x];
      const int64_t dim = a.shape()[axis];
      const float* values = a.data<float>();
      for (int64_t i = 0; i < a.num_elements(); ++i) {
        const int64_t unit = UnitAt((i / inner) % dim, g.activation_offset, g.activation_block, g.units);
        if (unit < 0) continue;
        act_sum[gi][unit] += values[i];
        act_sq[gi][unit] += static_cast<double>(values[i]) * values[i];
      }
      act_count[gi] += static_cast<double>(a.num_elements() / dim * g.activation_block);
    }
  }
  const double nb = static_cast<double>(batches.size());
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    if (!groups[gi].prunable) continue;
    std::vector<double> t = taylor[gi];
    for (double& v : t) v /= nb;
    if (score == StructuredScore::kTaylor) {
      scores[gi] = std::move(t);
      continue;
    }
    std::vector<double> var(groups[gi].units, 0.0);
    if (act_count[gi] > 0) {
      for (int64_t u = 0; u < groups[gi].units; ++u) {
        const double mean = act_sum[gi][u] / act_count[gi];
        var[u] = std::max(0.0, act_sq[gi][u] / act_count[gi] - mean * mean);
      }
    }
    const double tmax = *std::max_element(t.begin(), t.end());
    const double vmax = *std::max_element(var.begin(), var.end());
    std::vector<double> combined(groups[gi].units);
    for (int64_t u = 0; u < groups[gi].units; ++u) {
      combined[u] = gradient_weight * (tmax > 0 ? t[u] / tmax : 0.0) +
                    (1 - gradient_weight) * (vmax > 0 ? var[u] / vmax : 0.0);
    }
    scores[gi] = std::move(combined);
  }
  return scores;
}

absl::StatusOr<StructuredResult> PruneStructured(const Graph& graph, const std::vector<LabeledBatch>& batches,
                                                 const StructuredOptions& options,
                                                 const StructuredProgress& progress) {
  auto range_error = [](const std::string& option, double value, const std::string& range) {
    return absl::InvalidArgumentError(
        absl::StrCat("structured pruning: ", option, " must be in ", range, ", got ", value));
  };
  if (!(options.target >= 0 && options.target < 1)) return range_error("target", options.target, "[0, 1)");
  if (!(options.probe_ratio > 0 && options.probe_ratio < 1)) {
    return range_error("probe_ratio", options.probe_ratio, "(0, 1)");
  }
  if (!(options.max_layer_ratio >= 0 && options.max_layer_ratio < 1)) {
    return range_error("max_layer_ratio", options.max_layer_ratio, "[0, 1)");
  }
  if (!(options.gradient_weight >= 0 && options.gradient_weight <= 1)) {
    return range_error("gradient_weight", options.gradient_weight, "[0, 1]");
  }
  SQ_ASSIGN_OR_RETURN(std::vector<PruneGroup> groups, FindPruneGroups(graph));
  std::map<std::string, double> fixed;
  for (const auto& [name, ratio] : options.layer_ratios) {
    if (!(ratio >= 0 && ratio < 1)) return range_error(absl::StrCat("layer_ratios['", name, "']"), ratio, "[0, 1)");
    const PruneGroup* g = FindGroup(groups, name);
    if (g == nullptr) return absl::InvalidArgumentError(absl::StrCat("structured pruning: unknown layer '", name, "'"));
    if (!g->prunable) {
      return absl::InvalidArgumentError(
          absl::StrCat("structured pruning: layer '", name, "' cannot be pruned: ", g->reason));
    }
    fixed[g->name] = ratio;
  }
  std::set<std::string> excluded;
  for (const auto& name : options.exclude) {
    const PruneGroup* g = FindGroup(groups, name);
    if (g == nullptr) return absl::InvalidArgumentError(absl::StrCat("structured pruning: unknown layer '", name, "'"));
    excluded.insert(g->name);
  }
  const bool needs_batches = options.score == StructuredScore::kTaylor ||
                             options.score == StructuredScore::kCombined ||
                             (options.allocation == RatioAllocation::kSensitivity && options.target > 0);
  if (needs_batches && batches.empty()) {
    return absl::FailedPreconditionError("structured pruning: the score or the sensitivity allocation needs "
                                         "calibration batches");
  }
  auto report = [&](const std::string& stage, double fraction) -> absl::Status {
    if (progress && !progress(stage, fraction)) return absl::CancelledError("structured pruning cancelled");
    return absl::OkStatus();
  };
  SQ_RETURN_IF_ERROR(report("scores", 0));
  SQ_ASSIGN_OR_RETURN(std::vector<std::vector<double>> scores,
                      ScoreUnits(graph, groups, batches, options.score, options.gradient_weight));
  StructuredResult result;
  result.params_before = CountParameters(graph);
  if (!batches.empty()) {
    SQ_ASSIGN_OR_RETURN(result.loss_before, CalibrationLoss(graph, batches));
  }
  std::vector<size_t> candidates;
  for (size_t i = 0; i < groups.size(); ++i) {
    const PruneGroup& g = groups[i];
    if (!g.prunable) {
      result.skipped.push_back({g.name, g.reason});
    } else if (fixed.count(g.name) == 0 && excluded.count(g.name) == 0 && options.kinds.count(g.kind) > 0) {
      candidates.push_back(i);
    }
  }
  // The cost `target` counts, for a removal plan.
  std::map<std::string, double> positions;
  if (options.cost == PruneCost::kMacs) {
    if (batches.empty()) return absl::FailedPreconditionError("structured pruning: cost kMacs needs a batch");
    SQ_ASSIGN_OR_RETURN(positions, WeightPositions(graph, batches.front()));
    result.macs_before = MacsAfter(graph, positions, {});
  }
  auto cost_after = [&](const KeepMasks& masks) {
    return options.cost == PruneCost::kMacs ? MacsAfter(graph, positions, masks)
                                            : static_cast<double>(ParamsAfter(graph, masks));
  };
  const double cost_before = cost_after({});
  std::map<std::string, double> probe_increase;
  std::map<std::string, double> sensitivity;  // loss increase per removed unit of cost
  if (options.allocation == RatioAllocation::kSensitivity && options.target > 0) {
    for (size_t k = 0; k < candidates.size(); ++k) {
      const PruneGroup& g = groups[candidates[k]];
      SQ_RETURN_IF_ERROR(report(absl::StrCat("probe ", g.name), static_cast<double>(k) / candidates.size()));
      const int64_t count = std::max<int64_t>(1, UnitsFor(options.probe_ratio, g.units));
      std::map<std::string, std::vector<int64_t>> removed{{g.name, Lowest(scores[candidates[k]], count)}};
      SQ_ASSIGN_OR_RETURN(Graph probe, RemoveUnits(graph, groups, removed));
      SQ_ASSIGN_OR_RETURN(double loss, CalibrationLoss(probe, batches));
      const double cost = cost_before - cost_after(BuildMasks(graph, groups, removed));
      probe_increase[g.name] = loss - result.loss_before;
      // A floor keeps layers whose loss did not rise from taking everything.
      sensitivity[g.name] = std::max(loss - result.loss_before, 1e-4 * std::max(result.loss_before, 1e-3)) /
                            std::max(cost, 1.0);
    }
  }
  // Removal plan for candidate ratios given by `ratio_of`.
  auto plan = [&](const std::function<double(const PruneGroup&)>& ratio_of) {
    std::map<std::string, std::vector<int64_t>> removed;
    for (size_t i = 0; i < groups.size(); ++i) {
      const PruneGroup& g = groups[i];
      double ratio = 0;
      if (auto it = fixed.find(g.name); it != fixed.end()) {
        ratio = it->second;
      } else if (std::find(candidates.begin(), candidates.end(), i) != candidates.end()) {
        ratio = ratio_of(g);
      }
      const int64_t count = UnitsFor(ratio, g.units);
      if (count > 0) removed[g.name] = Lowest(scores[i], count);
    }
    return removed;
  };
  auto ratio_at = [&](double k) {
    return [&, k](const PruneGroup& g) {
      if (k <= 0) return 0.0;
      if (options.allocation == RatioAllocation::kUniform) return std::min(k, options.max_layer_ratio);
      return std::min(options.max_layer_ratio, k / sensitivity.at(g.name));
    };
  };
  const double goal = options.target * cost_before;
  auto removed_params = [&](const std::map<std::string, std::vector<int64_t>>& removed) {
    return cost_before - cost_after(BuildMasks(graph, groups, removed));
  };
  std::map<std::string, std::vector<int64_t>> removed = plan(ratio_at(0));
  if (removed_params(removed) < goal) {
    double hi = options.max_layer_ratio;
    if (options.allocation == RatioAllocation::kSensitivity) {
      for (const auto& [name, s] : sensitivity) hi = std::max(hi, s * options.max_layer_ratio);
    }
    if (removed_params(plan(ratio_at(hi))) < goal) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "structured pruning: target %.3f is out of reach: the prunable layers at max_layer_ratio %.2f remove %.3f "
          "of the %s",
          options.target, options.max_layer_ratio, removed_params(plan(ratio_at(hi))) / cost_before,
          options.cost == PruneCost::kMacs ? "MACs" : "parameters"));
    }
    double lo = 0;
    for (int it = 0; it < 60; ++it) {
      const double mid = 0.5 * (lo + hi);
      (removed_params(plan(ratio_at(mid))) >= goal ? hi : lo) = mid;
    }
    removed = plan(ratio_at(hi));
  }
  SQ_RETURN_IF_ERROR(report("remove", 1));
  SQ_ASSIGN_OR_RETURN(result.graph, RemoveUnits(graph, groups, removed));
  result.params_after = CountParameters(result.graph);
  if (options.cost == PruneCost::kMacs) result.macs_after = MacsAfter(graph, positions, BuildMasks(graph, groups, removed));
  if (!batches.empty()) {
    SQ_ASSIGN_OR_RETURN(result.loss_after, CalibrationLoss(result.graph, batches));
  }
  for (const PruneGroup& g : groups) {
    if (!g.prunable) continue;
    StructuredLayerReport layer;
    layer.name = g.name;
    layer.kind = g.kind;
    layer.units_before = g.units;
    auto it = removed.find(g.name);
    if (it != removed.end()) layer.removed_units = it->second;
    layer.units_after = g.units - static_cast<int64_t>(layer.removed_units.size());
    layer.ratio = 1.0 - static_cast<double>(layer.units_after) / static_cast<double>(g.units);
    for (const auto& name : GroupInitializers(graph, g)) {
      layer.params_before += graph.initializers.at(name).num_elements();
      auto after = result.graph.initializers.find(name);
      if (after != result.graph.initializers.end()) layer.params_after += after->second.num_elements();
    }
    if (auto p = probe_increase.find(g.name); p != probe_increase.end()) layer.probe_loss_increase = p->second;
    result.layers.push_back(layer);
  }
  return result;
}

}  // namespace squeeze::core::prune
