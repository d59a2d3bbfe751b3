#include "core/graph/shape_inference.h"

#include <limits>
#include <string>
#include <vector>

#include "core/graph/builder.h"
#include "gtest/gtest.h"

namespace squeeze::core::graph {
namespace {

Dim V(int64_t v) { return Dim{v, ""}; }
Dim S(const std::string& symbol) { return Dim{std::nullopt, symbol}; }

Tensor Zeros(std::vector<int64_t> shape) { return Tensor(DataType::kFloat32, std::move(shape)); }

std::string Shape(const Graph& graph, const std::string& value) {
  std::optional<std::vector<Dim>> shape = KnownShape(graph, value);
  return shape ? DimsToString(*shape) : "unknown";
}

TEST(ShapeInferenceTest, CnnWithSymbolicBatch) {
  GraphBuilder b("cnn");
  b.AddInput({"x", DataType::kFloat32, std::vector<Dim>{S("batch"), V(1), V(28), V(28)}});
  b.Initializer("w1", Zeros({8, 1, 3, 3}));
  b.Initializer("b1", Zeros({8}));
  const std::string c1 = b.Add("Conv", {"x", "w1", "b1"}, {{"pads", std::vector<int64_t>{1, 1, 1, 1}}});
  const std::string r1 = b.Add("Relu", {c1});
  const std::string p1 = b.Add("MaxPool", {r1}, {{"kernel_shape", std::vector<int64_t>{2, 2}},
                                                 {"strides", std::vector<int64_t>{2, 2}}});
  const std::string f = b.Add("Flatten", {p1});
  b.Initializer("w2", Zeros({10, 8 * 14 * 14}));
  const std::string y = b.Add("Gemm", {f, "w2"}, {{"transB", int64_t{1}}}, "logits");
  b.AddOutput({"logits", DataType::kFloat32, std::nullopt});
  Graph graph = b.Finish();

  absl::StatusOr<ShapeInferenceStats> stats = InferShapes(&graph);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(Shape(graph, c1), "[batch, 8, 28, 28]");
  EXPECT_EQ(Shape(graph, p1), "[batch, 8, 14, 14]");
  EXPECT_EQ(Shape(graph, f), "[batch, 1568]");
  EXPECT_EQ(Shape(graph, y), "[batch, 10]");
  EXPECT_EQ(stats->values, 5);
  EXPECT_EQ(stats->rank_known, 5);
  EXPECT_EQ(stats->fully_known, 0);  // Every value keeps the batch symbol.
  EXPECT_TRUE(stats->unknown_ops.empty());
}

TEST(ShapeInferenceTest, ShapeArithmeticFeedsReshape) {
  // The exported-transformer pattern: split heads with a target shape
  // computed from Shape -> Gather -> Unsqueeze -> Concat.
  GraphBuilder b("heads");
  b.AddInput({"h", DataType::kFloat32, std::vector<Dim>{S("batch"), S("seq"), V(64)}});
  const std::string shape = b.Add("Shape", {"h"});
  b.Int64s("i0", {0});
  b.Int64s("i1", {1});
  const std::string batch = b.Add("Gather", {shape, "i0"});
  const std::string seq = b.Add("Gather", {shape, "i1"});
  b.Int64s("heads_and_dim", {4, 16});
  const std::string target = b.Add("Concat", {batch, seq, "heads_and_dim"}, {{"axis", int64_t{0}}});
  const std::string split = b.Add("Reshape", {"h", target});
  const std::string t = b.Add("Transpose", {split}, {{"perm", std::vector<int64_t>{0, 2, 1, 3}}});
  const std::string scores = b.Add("MatMul", {t, b.Add("Transpose", {t}, {{"perm", std::vector<int64_t>{0, 1, 3, 2}}})});
  b.Int64s("merge", {0, 0, -1});
  const std::string merged = b.Add("Reshape", {b.Add("Transpose", {t}, {{"perm", std::vector<int64_t>{0, 2, 1, 3}}}), "merge"});
  Graph graph = b.Finish();

  ASSERT_TRUE(InferShapes(&graph).ok());
  EXPECT_EQ(Shape(graph, target), "[4]");
  EXPECT_EQ(Shape(graph, split), "[batch, seq, 4, 16]");
  EXPECT_EQ(Shape(graph, scores), "[batch, 4, seq, seq]");
  EXPECT_EQ(Shape(graph, merged), "[batch, seq, 64]");
}

TEST(ShapeInferenceTest, MismatchedGemmNamesTheNode) {
  GraphBuilder b("bad");
  b.AddInput({"x", DataType::kFloat32, std::vector<Dim>{S("batch"), V(784)}});
  b.Initializer("w", Zeros({10, 780}));
  b.Add("Gemm", {"x", "w"}, {{"transB", int64_t{1}}});
  Graph graph = b.Finish();
  graph.nodes[0].name = "fc1";
  absl::StatusOr<ShapeInferenceStats> stats = InferShapes(&graph);
  ASSERT_EQ(stats.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(stats.status().message().find("'fc1' (Gemm)"), std::string::npos) << stats.status();
  EXPECT_NE(stats.status().message().find("[batch, 784]"), std::string::npos) << stats.status();
}

TEST(ShapeInferenceTest, BroadcastConflictAndBadReshapeAreErrors) {
  {
    GraphBuilder b("add");
    b.AddInput({"x", DataType::kFloat32, std::vector<Dim>{V(2), V(3)}});
    b.Initializer("y", Zeros({4}));
    b.Add("Add", {"x", "y"});
    Graph graph = b.Finish();
    absl::StatusOr<ShapeInferenceStats> stats = InferShapes(&graph);
    ASSERT_EQ(stats.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(stats.status().message().find("do not broadcast"), std::string::npos);
  }
  {
    GraphBuilder b("reshape");
    b.AddInput({"x", DataType::kFloat32, std::vector<Dim>{V(2), V(3)}});
    b.Int64s("target", {4, -1});
    b.Add("Reshape", {"x", "target"});
    Graph graph = b.Finish();
    absl::StatusOr<ShapeInferenceStats> stats = InferShapes(&graph);
    ASSERT_EQ(stats.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(stats.status().message().find("cannot reshape [2, 3]"), std::string::npos)
        << stats.status();
  }
}

TEST(ShapeInferenceTest, DeclaredOutputThatContradictsIsAnError) {
  GraphBuilder b("out");
  b.AddInput({"x", DataType::kFloat32, std::vector<Dim>{V(2), V(3)}});
  b.Add("Relu", {"x"}, {}, "y");
  b.AddOutput({"y", DataType::kFloat32, std::vector<Dim>{V(2), V(4)}});
  Graph graph = b.Finish();
  absl::StatusOr<ShapeInferenceStats> stats = InferShapes(&graph);
  ASSERT_EQ(stats.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(stats.status().message().find("'y' is declared [2, 4] but computed as [2, 3]"),
            std::string::npos)
      << stats.status();
}

TEST(ShapeInferenceTest, SliceSplitConcatPadAndReduce) {
  GraphBuilder b("misc");
  b.AddInput({"x", DataType::kFloat32, std::vector<Dim>{S("n"), V(10), V(6)}});
  b.Int64s("starts", {1});
  b.Int64s("ends", {-1});
  b.Int64s("axes", {1});
  b.Int64s("steps", {2});
  const std::string sliced = b.Add("Slice", {"x", "starts", "ends", "axes", "steps"});
  b.Int64s("split", {2, 4});
  b.Add("Split", {"x", "split"}, {{"axis", int64_t{2}}});
  Graph graph = b.graph();
  graph.nodes.back().outputs = {"part0", "part1"};
  Node concat;
  concat.name = "concat";
  concat.op_type = "Concat";
  concat.inputs = {"part1", "part0"};
  concat.outputs = {"joined"};
  concat.attributes["axis"] = int64_t{-1};
  graph.nodes.push_back(concat);
  Node reduce;
  reduce.name = "reduce";
  reduce.op_type = "ReduceMean";
  reduce.inputs = {"joined"};
  reduce.outputs = {"mean"};
  reduce.attributes["axes"] = std::vector<int64_t>{1};
  reduce.attributes["keepdims"] = int64_t{0};
  graph.nodes.push_back(reduce);
  graph.initializers["pads"] = Tensor::FromVector<int64_t>(DataType::kInt64, {6}, {0, 1, 2, 0, 3, 4});
  Node pad;
  pad.name = "pad";
  pad.op_type = "Pad";
  pad.inputs = {"x", "pads"};
  pad.outputs = {"padded"};
  graph.nodes.push_back(pad);

  absl::StatusOr<ShapeInferenceStats> stats = InferShapes(&graph);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(Shape(graph, sliced), "[n, 4, 6]");  // 1, 3, 5, 7 of 0..9 (end -1 = 9).
  EXPECT_EQ(Shape(graph, "part0"), "[n, 10, 2]");
  EXPECT_EQ(Shape(graph, "part1"), "[n, 10, 4]");
  EXPECT_EQ(Shape(graph, "joined"), "[n, 10, 6]");
  EXPECT_EQ(Shape(graph, "mean"), "[n, 6]");
  EXPECT_EQ(Shape(graph, "padded"), "[n, 14, 12]");
}

TEST(ShapeInferenceTest, AbsurdDimensionsAreErrorsNotCrashes) {
  const int64_t huge = std::numeric_limits<int64_t>::max();
  {
    GraphBuilder b("pad");
    b.AddInput({"x", DataType::kFloat32, std::vector<Dim>{V(2), V(3)}});
    b.Int64s("pads", {0, huge, 0, huge});
    b.Add("Pad", {"x", "pads"});
    Graph graph = b.Finish();
    EXPECT_EQ(InferShapes(&graph).status().code(), absl::StatusCode::kInvalidArgument);
  }
  {
    GraphBuilder b("conv");
    b.AddInput({"x", DataType::kFloat32, std::vector<Dim>{V(1), V(1), V(8), V(8)}});
    b.Initializer("w", Zeros({1, 1, 3, 3}));
    b.Add("Conv", {"x", "w"}, {{"dilations", std::vector<int64_t>{huge, 1}}});
    Graph graph = b.Finish();
    EXPECT_EQ(InferShapes(&graph).status().code(), absl::StatusCode::kInvalidArgument);
  }
  {
    // A shape tensor claiming 2^40 dimensions, and a product that overflows.
    GraphBuilder b("shapes");
    b.AddInput({"n", DataType::kInt64, std::vector<Dim>{V(int64_t{1} << 40)}});
    b.AddInput({"x", DataType::kFloat32, std::vector<Dim>{V(2), V(huge), V(2)}});
    const std::string filled = b.Add("ConstantOfShape", {"n"});
    const std::string flat = b.Add("Flatten", {"x"});
    Graph graph = b.Finish();
    absl::StatusOr<ShapeInferenceStats> stats = InferShapes(&graph);
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_EQ(Shape(graph, filled), "unknown");
    EXPECT_EQ(Shape(graph, flat), "[2, ?]");
  }
}

TEST(ShapeInferenceTest, UnknownOperatorLeavesItsOutputsUnknown) {
  GraphBuilder b("custom");
  b.AddInput({"x", DataType::kFloat32, std::vector<Dim>{V(2)}});
  const std::string y = b.Add("NoSuchOp", {"x"});
  const std::string z = b.Add("Relu", {y});
  Graph graph = b.Finish();
  absl::StatusOr<ShapeInferenceStats> stats = InferShapes(&graph);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->unknown_ops, std::vector<std::string>{"NoSuchOp"});
  EXPECT_EQ(Shape(graph, z), "unknown");
  EXPECT_EQ(stats->rank_known, 0);
}

}  // namespace
}  // namespace squeeze::core::graph
