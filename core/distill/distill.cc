// Progressive distillation: validation, the three stage losses and the
// training loop (distill.h).
#include "core/distill/distill.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "absl/strings/str_cat.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/runtime/executor.h"
#include "core/status_macros.h"
#include "core/train/optimizers.h"

namespace squeeze::core::distill {
namespace {

using graph::DataType;
using graph::Graph;
using graph::ShapeToString;
using graph::Tensor;
using train::TensorMap;

bool HasValue(const Graph& graph, const std::string& name) {
  if (graph.initializers.count(name) > 0) return true;
  for (const graph::ValueInfo& input : graph.inputs) {
    if (input.name == name) return true;
  }
  for (const graph::Node& node : graph.nodes) {
    for (const std::string& out : node.outputs) {
      if (out == name) return true;
    }
  }
  return false;
}

// The default trainable set: float32 initializers that are neither
// BatchNormalization running statistics nor core/hf's "squeeze." constants.
std::set<std::string> DefaultTrainable(const Graph& graph) {
  std::set<std::string> statistics, trainable;
  for (const graph::Node& node : graph.nodes) {
    if (node.op_type != "BatchNormalization") continue;
    for (size_t i = 3; i < node.inputs.size() && i < 5; ++i) statistics.insert(node.inputs[i]);
  }
  for (const auto& [name, tensor] : graph.initializers) {
    // "squeeze." initializers are constants core/hf derives (rotary tables,
    // the causal mask); training them diverges.
    if (tensor.dtype() == DataType::kFloat32 && statistics.count(name) == 0 && name.rfind("squeeze.", 0) != 0) {
      trainable.insert(name);
    }
  }
  return trainable;
}

// `graph` with `values` appended to its outputs (each once).
Graph WithOutputs(Graph graph, const std::vector<std::string>& values) {
  for (const std::string& value : values) {
    const bool present = std::any_of(graph.outputs.begin(), graph.outputs.end(),
                                     [&](const graph::ValueInfo& o) { return o.name == value; });
    if (!present) graph.outputs.push_back({value, DataType::kFloat32, std::nullopt});
  }
  return graph;
}

void Accumulate(TensorMap* gradients, const std::string& name, const Tensor& gradient) {
  auto it = gradients->find(name);
  if (it == gradients->end()) {
    gradients->emplace(name, gradient);
    return;
  }
  for (int64_t i = 0; i < gradient.num_elements(); ++i) it->second.data<float>()[i] += gradient.data<float>()[i];
}

int64_t ChannelAxis(int64_t rank) { return rank == 4 ? 1 : rank - 1; }

// Runs a graph and returns the named values (its outputs).
class ValueRunner {
 public:
  static absl::StatusOr<ValueRunner> Create(const Graph& graph, std::vector<std::string> values,
                                            std::shared_ptr<const runtime::KernelBackend> backend) {
    Graph g = graph;
    g.outputs.clear();
    g = WithOutputs(std::move(g), values);
    std::vector<std::string> names;
    for (const graph::ValueInfo& o : g.outputs) names.push_back(o.name);
    SQ_ASSIGN_OR_RETURN(runtime::Executor executor, runtime::Executor::Create(std::move(g), std::move(backend)));
    return ValueRunner(std::move(executor), std::move(names));
  }
  absl::StatusOr<TensorMap> Run(const TensorMap& feeds) const {
    // The executor wants exactly the graph's inputs.
    TensorMap own;
    for (const graph::ValueInfo& input : executor_.graph().inputs) {
      auto it = feeds.find(input.name);
      if (it != feeds.end()) own.emplace(input.name, it->second);
    }
    SQ_ASSIGN_OR_RETURN(std::vector<Tensor> outputs, executor_.Run(own));
    TensorMap values;
    for (size_t i = 0; i < names_.size(); ++i) values.emplace(names_[i], std::move(outputs[i]));
    return values;
  }

 private:
  ValueRunner(runtime::Executor executor, std::vector<std::string> names)
      : executor_(std::move(executor)), names_(std::move(names)) {}
  runtime::Executor executor_;
  std::vector<std::string> names_;
};

absl::Status CheckOptions(const Graph& teacher, const Graph& student, const DistillOptions& o) {
  if (!(o.temperature > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("distill: temperature must be > 0, got ", o.temperature));
  }
  if (!(o.hard_label_weight >= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("distill: hard_label_weight must be >= 0, got ", o.hard_label_weight));
  }
  const std::pair<const char*, const StageOptions*> stages[] = {
      {"features", &o.features}, {"attention", &o.attention}, {"output", &o.output}};
  for (const auto& [name, stage] : stages) {
    if (stage->steps < 0 || !(stage->learning_rate > 0)) {
      return absl::InvalidArgumentError(absl::StrCat("distill: stage ", name, " needs steps >= 0 and learning_rate > 0, got ",
                                                     stage->steps, " and ", stage->learning_rate));
    }
  }
  if (o.features.steps > 0 && o.feature_pairs.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("distill: the features stage has ", o.features.steps, " steps but no feature_pairs"));
  }
  if (o.attention.steps > 0 && o.attention_pairs.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("distill: the attention stage has ", o.attention.steps, " steps but no attention_pairs"));
  }
  for (const auto& [kind, pairs] : {std::pair{"feature", &o.feature_pairs}, std::pair{"attention", &o.attention_pairs}}) {
    for (size_t i = 0; i < pairs->size(); ++i) {
      const ValuePair& pair = (*pairs)[i];
      if (!HasValue(teacher, pair.teacher)) {
        return absl::InvalidArgumentError(absl::StrCat("distill: ", kind, " pair ", i, ": '", pair.teacher,
                                                       "' is not a value of the teacher graph"));
      }
      if (!HasValue(student, pair.student)) {
        return absl::InvalidArgumentError(absl::StrCat("distill: ", kind, " pair ", i, ": '", pair.student,
                                                       "' is not a value of the student graph"));
      }
    }
  }
  if (!HasValue(teacher, o.teacher_output)) {
    return absl::InvalidArgumentError(
        absl::StrCat("distill: teacher output '", o.teacher_output, "' is not a value of the teacher graph"));
  }
  if (!HasValue(student, o.student_output)) {
    return absl::InvalidArgumentError(
        absl::StrCat("distill: student output '", o.student_output, "' is not a value of the student graph"));
  }
  if (!o.trainable.empty()) {
    for (const std::string& name : o.trainable) {
      if (student.initializers.count(name) == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("distill: trainable '", name, "' is not an initializer of the student graph"));
      }
    }
  }
  return absl::OkStatus();
}

// How a feature pair is aligned, decided from the probe batch.
struct FeatureAlignment {
  ValuePair pair;
  std::string projection;  // the weight initializer, "" when the widths match
  std::string aligned;     // the student-side value compared with the teacher's
};

absl::StatusOr<FeatureAlignment> PlanFeature(size_t index, const ValuePair& pair, const Tensor& t, const Tensor& s) {
  const std::string where = absl::StrCat("distill: feature pair ", index, " (teacher '", pair.teacher, "' ",
                                         ShapeToString(t.shape()), ", student '", pair.student, "' ",
                                         ShapeToString(s.shape()), ")");
  if (t.dtype() != DataType::kFloat32 || s.dtype() != DataType::kFloat32) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": feature alignment needs float32 values, got ",
                                                   graph::DataTypeName(t.dtype()), " and ",
                                                   graph::DataTypeName(s.dtype())));
  }
  if (t.rank() != s.rank() || t.rank() < 2) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ranks must be equal and >= 2"));
  }
  const int64_t axis = ChannelAxis(t.rank());
  for (int64_t d = 0; d < t.rank(); ++d) {
    if (d != axis && t.shape()[d] != s.shape()[d]) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": shapes differ in dimension ", d,
                                                     ", only the channel width (dimension ", axis, ") may differ"));
    }
  }
  FeatureAlignment plan{pair, "", pair.student};
  if (t.shape()[axis] != s.shape()[axis]) {
    plan.projection = absl::StrCat("distill.projection_", index, ".weight");
    plan.aligned = absl::StrCat("distill.projection_", index, "_out");
  }
  return plan;
}

void CheckAttentionShapes(const Tensor& s, const Tensor& t, HeadMatching heads, absl::Status* status) {
  const auto mismatch = [&](const std::string& why) {
    *status = absl::InvalidArgumentError(absl::StrCat("student ", ShapeToString(s.shape()), " and teacher ",
                                                      ShapeToString(t.shape()), " attention ", why));
  };
  if (s.dtype() != DataType::kFloat32 || t.dtype() != DataType::kFloat32) return mismatch("must be float32");
  if (s.shape() == t.shape()) return;
  if (s.rank() != 4 || t.rank() != 4 || s.shape()[0] != t.shape()[0] || s.shape()[2] != t.shape()[2] ||
      s.shape()[3] != t.shape()[3]) {
    return mismatch("shapes do not match (need equal shapes, or [B, H, S, K] differing only in H)");
  }
  if (heads == HeadMatching::kGroups && t.shape()[1] % s.shape()[1] != 0) {
    return mismatch(absl::StrCat("heads: ", t.shape()[1], " teacher heads do not split into groups for ",
                                 s.shape()[1], " student heads"));
  }
}

}  // namespace

std::string StageName(Stage stage) {
  switch (stage) {
    case Stage::kFeatures:
      return "features";
    case Stage::kAttention:
      return "attention";
    case Stage::kOutput:
      return "output";
  }
  return "unknown";
}

std::vector<std::string> AttentionProbabilityValues(const Graph& graph) {
  std::vector<std::string> values;
  for (const graph::Node& node : graph.nodes) {
    if (node.op_type != "Softmax" || node.outputs.empty()) continue;
    const int64_t axis = node.IntAttribute("axis", graph.opset_version >= 13 ? -1 : 1);
    if (axis == -1 || axis == 3) values.push_back(node.outputs[0]);
  }
  return values;
}

absl::StatusOr<train::LossAndGradient> AttentionKlDivergence(const Tensor& student, const Tensor& teacher,
                                                             HeadMatching heads) {
  absl::Status status;
  CheckAttentionShapes(student, teacher, heads, &status);
  if (!status.ok()) return status;
  const std::vector<int64_t>& ss = student.shape();
  const int64_t k = ss.back();
  train::LossAndGradient result{0, Tensor(DataType::kFloat32, ss)};
  const float* p = student.data<float>();
  const float* t = teacher.data<float>();
  float* g = result.gradient.data<float>();
  constexpr double kFloor = 1e-12;
  if (student.shape() == teacher.shape()) {
    const int64_t rows = student.num_elements() / k;
    for (int64_t i = 0; i < rows * k; ++i) {
      if (t[i] <= 0) continue;
      const double q = std::max<double>(p[i], kFloor);
      result.loss += t[i] * (std::log(t[i]) - std::log(q));
      g[i] = static_cast<float>(-t[i] / q / rows);
    }
    result.loss /= rows;
    return result;
  }
  // [B, H, S, K] with different H: compare mixtures of heads.
  const int64_t b = ss[0], hs = ss[1], s = ss[2], ht = teacher.shape()[1];
  // Student head h (or every head, for kAverage) is compared with the mean
  // of teacher heads [t0, t0 + tn) and of student heads [s0, s0 + sn).
  const bool average = heads == HeadMatching::kAverage;
  const int64_t groups = average ? 1 : hs;
  const int64_t tn = ht / groups, sn = hs / groups;
  const int64_t rows = b * groups * s;
  std::vector<double> target(k), mixture(k);
  for (int64_t bi = 0; bi < b; ++bi) {
    for (int64_t gi = 0; gi < groups; ++gi) {
      for (int64_t si = 0; si < s; ++si) {
        std::fill(target.begin(), target.end(), 0.0);
        std::fill(mixture.begin(), mixture.end(), 0.0);
        for (int64_t h = gi * tn; h < (gi + 1) * tn; ++h) {
          const float* row = t + ((bi * ht + h) * s + si) * k;
          for (int64_t j = 0; j < k; ++j) target[j] += row[j] / static_cast<double>(tn);
        }
        for (int64_t h = gi * sn; h < (gi + 1) * sn; ++h) {
          const float* row = p + ((bi * hs + h) * s + si) * k;
          for (int64_t j = 0; j < k; ++j) mixture[j] += row[j] / static_cast<double>(sn);
        }
        for (int64_t j = 0; j < k; ++j) {
          if (target[j] <= 0) continue;
          const double q = std::max(mixture[j], kFloor);
          result.loss += target[j] * (std::log(target[j]) - std::log(q));
          const float grad = static_cast<float>(-target[j] / q / rows / static_cast<double>(sn));
          for (int64_t h = gi * sn; h < (gi + 1) * sn; ++h) g[((bi * hs + h) * s + si) * k + j] = grad;
        }
      }
    }
  }
  result.loss /= rows;
  return result;
}

absl::StatusOr<DistillResult> Distill(const Graph& teacher, const Graph& student, const DistillBatchSource& batches,
                                      const DistillOptions& input_options, const DistillProgressCallback& progress) {
  DistillOptions options = input_options;
  if (options.teacher_output.empty() && !teacher.outputs.empty()) options.teacher_output = teacher.outputs[0].name;
  if (options.student_output.empty() && !student.outputs.empty()) options.student_output = student.outputs[0].name;
  SQ_RETURN_IF_ERROR(CheckOptions(teacher, student, options));
  std::shared_ptr<const runtime::KernelBackend> backend =
      options.backend ? options.backend : kernels::cpu::CreateCpuBackend();

  // Both graphs on batch 0: every shape check happens before training.
  std::vector<std::string> teacher_values = {options.teacher_output}, student_values = {options.student_output};
  for (const auto* pairs : {&options.feature_pairs, &options.attention_pairs}) {
    for (const ValuePair& pair : *pairs) {
      teacher_values.push_back(pair.teacher);
      student_values.push_back(pair.student);
    }
  }
  SQ_ASSIGN_OR_RETURN(ValueRunner teacher_runner, ValueRunner::Create(teacher, teacher_values, backend));
  SQ_ASSIGN_OR_RETURN(DistillBatch first_batch, batches(0));
  SQ_ASSIGN_OR_RETURN(TensorMap teacher_probe, teacher_runner.Run(first_batch.feeds));
  TensorMap student_probe;
  {
    SQ_ASSIGN_OR_RETURN(ValueRunner student_runner, ValueRunner::Create(student, student_values, backend));
    SQ_ASSIGN_OR_RETURN(student_probe, student_runner.Run(first_batch.feeds));
  }
  if (options.output.steps > 0) {
    const Tensor& t = teacher_probe.at(options.teacher_output);
    const Tensor& s = student_probe.at(options.student_output);
    if (t.shape() != s.shape() || t.dtype() != DataType::kFloat32 || s.dtype() != DataType::kFloat32) {
      return absl::InvalidArgumentError(absl::StrCat(
          "distill: teacher output '", options.teacher_output, "' ", graph::DataTypeName(t.dtype()), " ",
          ShapeToString(t.shape()), " and student output '", options.student_output, "' ",
          graph::DataTypeName(s.dtype()), " ", ShapeToString(s.shape()), " must be float32 of one shape"));
    }
  }
  std::vector<FeatureAlignment> features;
  for (size_t i = 0; i < options.feature_pairs.size(); ++i) {
    const ValuePair& pair = options.feature_pairs[i];
    SQ_ASSIGN_OR_RETURN(FeatureAlignment plan,
                        PlanFeature(i, pair, teacher_probe.at(pair.teacher), student_probe.at(pair.student)));
    features.push_back(std::move(plan));
  }
  for (size_t i = 0; i < options.attention_pairs.size(); ++i) {
    const ValuePair& pair = options.attention_pairs[i];
    absl::Status status;
    CheckAttentionShapes(student_probe.at(pair.student), teacher_probe.at(pair.teacher), options.heads, &status);
    if (!status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("distill: attention pair ", i, " (teacher '", pair.teacher,
                                                     "', student '", pair.student, "'): ", status.message()));
    }
  }

  const std::set<std::string> trainable = options.trainable.empty() ? DefaultTrainable(student) : options.trainable;
  DistillResult result{student, {}};
  int64_t global_step = 0;

  // One stage: `graph` is the student (plus projections), `loss` fills the
  // output gradients of one step and returns its loss.
  using StageLoss = std::function<absl::StatusOr<double>(const TensorMap& teacher_values, const train::Tape& tape,
                                                         const train::GradientProgram& program,
                                                         const DistillBatch& batch, TensorMap* gradients)>;
  auto run_stage = [&](Stage stage, const StageOptions& stage_options, Graph graph,
                       std::set<std::string> stage_trainable, const StageLoss& loss) -> absl::Status {
    if (stage_options.steps == 0) return absl::OkStatus();
    SQ_ASSIGN_OR_RETURN(train::GradientProgram program,
                        train::GradientProgram::Create(std::move(graph), backend, std::move(stage_trainable)));
    train::AdamW optimizer({stage_options.learning_rate, 0.9, 0.999, 1e-8, options.weight_decay});
    StageCurve curve{stage, {}};
    for (int64_t step = 0; step < stage_options.steps; ++step, ++global_step) {
      const double progress_fraction = static_cast<double>(step) / static_cast<double>(stage_options.steps);
      optimizer.set_learning_rate(stage_options.learning_rate *
                                  (0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * progress_fraction))));
      DistillBatch batch;
      if (global_step == 0) {
        batch = first_batch;
      } else {
        SQ_ASSIGN_OR_RETURN(batch, batches(global_step));
      }
      TensorMap teacher_values;
      if (global_step == 0) {
        teacher_values = teacher_probe;
      } else {
        SQ_ASSIGN_OR_RETURN(teacher_values, teacher_runner.Run(batch.feeds));
      }
      SQ_ASSIGN_OR_RETURN(train::Tape tape, program.Forward(batch.feeds));
      TensorMap output_gradients;
      SQ_ASSIGN_OR_RETURN(double value, loss(teacher_values, tape, program, batch, &output_gradients));
      SQ_ASSIGN_OR_RETURN(TensorMap gradients, program.Backward(tape, output_gradients));
      train::ClipGradientNorm(&gradients, options.clip_norm);
      SQ_RETURN_IF_ERROR(optimizer.Step(&program.mutable_parameters(), gradients));
      curve.losses.push_back(value);
      if (progress && !progress({stage, step + 1, stage_options.steps, value})) {
        return absl::CancelledError(absl::StrCat("distill: cancelled at stage ", StageName(stage), " step ", step + 1,
                                                 " of ", stage_options.steps));
      }
    }
    // Keep the student's own initializers; projections are dropped here.
    for (auto& [name, tensor] : result.student.initializers) tensor = program.graph().initializers.at(name);
    result.curves.push_back(std::move(curve));
    return absl::OkStatus();
  };

  // Stage 1: features, through projections where widths differ.
  {
    Graph graph = student;
    std::set<std::string> stage_trainable = trainable;
    std::vector<std::string> outputs;
    std::mt19937_64 rng(options.seed);
    for (const FeatureAlignment& plan : features) {
      if (!plan.projection.empty()) {
        const Tensor& t = teacher_probe.at(plan.pair.teacher);
        const Tensor& s = student_probe.at(plan.pair.student);
        const int64_t axis = ChannelAxis(t.rank());
        const int64_t cs = s.shape()[axis], ct = t.shape()[axis];
        const bool conv = t.rank() == 4;
        Tensor weight(DataType::kFloat32, conv ? std::vector<int64_t>{ct, cs, 1, 1} : std::vector<int64_t>{cs, ct});
        std::normal_distribution<float> normal(0.0f, static_cast<float>(1.0 / std::sqrt(static_cast<double>(cs))));
        for (int64_t i = 0; i < weight.num_elements(); ++i) weight.data<float>()[i] = normal(rng);
        graph.initializers[plan.projection] = std::move(weight);
        graph::Node node;
        node.name = plan.aligned.substr(0, plan.aligned.size() - 4);
        node.op_type = conv ? "Conv" : "MatMul";
        node.inputs = {plan.pair.student, plan.projection};
        node.outputs = {plan.aligned};
        if (conv) node.attributes["kernel_shape"] = std::vector<int64_t>{1, 1};
        graph.nodes.push_back(std::move(node));
        stage_trainable.insert(plan.projection);
      }
      outputs.push_back(plan.aligned);
    }
    graph = WithOutputs(std::move(graph), outputs);
    SQ_RETURN_IF_ERROR(run_stage(
        Stage::kFeatures, options.features, std::move(graph), std::move(stage_trainable),
        [&](const TensorMap& teacher_values, const train::Tape& tape, const train::GradientProgram& program,
            const DistillBatch&, TensorMap* gradients) -> absl::StatusOr<double> {
          double total = 0;
          for (const FeatureAlignment& plan : features) {
            SQ_ASSIGN_OR_RETURN(const Tensor* aligned, program.Output(tape, plan.aligned));
            const Tensor& target = teacher_values.at(plan.pair.teacher);
            absl::StatusOr<train::LossAndGradient> mse = train::MeanSquaredError(*aligned, target);
            if (!mse.ok()) {
              return absl::InvalidArgumentError(absl::StrCat("distill: feature pair teacher '", plan.pair.teacher,
                                                             "' ", ShapeToString(target.shape()), ", student '",
                                                             plan.aligned, "' ", ShapeToString(aligned->shape()),
                                                             ": ", mse.status().message()));
            }
            if (options.normalize_features) {
              double mean_square = 0;
              for (int64_t i = 0; i < target.num_elements(); ++i) {
                mean_square += double{target.data<float>()[i]} * target.data<float>()[i];
              }
              mean_square = std::max(mean_square / static_cast<double>(target.num_elements()), 1e-12);
              mse->loss /= mean_square;
              for (int64_t i = 0; i < mse->gradient.num_elements(); ++i) {
                mse->gradient.data<float>()[i] = static_cast<float>(mse->gradient.data<float>()[i] / mean_square);
              }
            }
            total += mse->loss;
            Accumulate(gradients, plan.aligned, mse->gradient);
          }
          return total;
        }));
  }

  // Stage 2: attention distributions.
  {
    std::vector<std::string> outputs;
    for (const ValuePair& pair : options.attention_pairs) outputs.push_back(pair.student);
    SQ_RETURN_IF_ERROR(run_stage(
        Stage::kAttention, options.attention, WithOutputs(result.student, outputs), trainable,
        [&](const TensorMap& teacher_values, const train::Tape& tape, const train::GradientProgram& program,
            const DistillBatch&, TensorMap* gradients) -> absl::StatusOr<double> {
          double total = 0;
          for (const ValuePair& pair : options.attention_pairs) {
            SQ_ASSIGN_OR_RETURN(const Tensor* probs, program.Output(tape, pair.student));
            absl::StatusOr<train::LossAndGradient> kl =
                AttentionKlDivergence(*probs, teacher_values.at(pair.teacher), options.heads);
            if (!kl.ok()) {
              return absl::InvalidArgumentError(absl::StrCat("distill: attention pair teacher '", pair.teacher,
                                                             "', student '", pair.student, "': ",
                                                             kl.status().message()));
            }
            total += kl->loss;
            Accumulate(gradients, pair.student, kl->gradient);
          }
          return total;
        }));
  }

  // Stage 3: softened logits plus the hard labels.
  SQ_RETURN_IF_ERROR(run_stage(
      Stage::kOutput, options.output, WithOutputs(result.student, {options.student_output}), trainable,
      [&](const TensorMap& teacher_values, const train::Tape& tape, const train::GradientProgram& program,
          const DistillBatch& batch, TensorMap* gradients) -> absl::StatusOr<double> {
        SQ_ASSIGN_OR_RETURN(const Tensor* logits, program.Output(tape, options.student_output));
        const Tensor& target = teacher_values.at(options.teacher_output);
        if (logits->shape() != target.shape()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "distill: teacher output '", options.teacher_output, "' ", ShapeToString(target.shape()),
              " and student output '", options.student_output, "' ", ShapeToString(logits->shape()), " differ"));
        }
        SQ_ASSIGN_OR_RETURN(train::LossAndGradient kl,
                            train::SoftenedKlDivergence(*logits, target, options.temperature));
        double total = kl.loss;
        Accumulate(gradients, options.student_output, kl.gradient);
        if (!batch.labels.empty() && options.hard_label_weight > 0) {
          SQ_ASSIGN_OR_RETURN(train::LossAndGradient ce, train::SoftmaxCrossEntropy(*logits, batch.labels));
          total += options.hard_label_weight * ce.loss;
          float* g = (*gradients)[options.student_output].data<float>();
          for (int64_t i = 0; i < ce.gradient.num_elements(); ++i) {
            g[i] += static_cast<float>(options.hard_label_weight) * ce.gradient.data<float>()[i];
          }
        }
        return total;
      }));
  return result;
}

}  // namespace squeeze::core::distill
