#include "core/kernels/cpu/kernel_util.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace squeeze::core::kernels::cpu {

absl::StatusOr<const Tensor*> RequiredInput(const runtime::KernelCall& call,
                                            size_t index) {
  const Tensor* tensor = call.input(index);
  if (tensor == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("input ", index, " is required"));
  }
  return tensor;
}

absl::StatusOr<int64_t> NormalizeAxis(int64_t axis, int64_t rank) {
  if (axis < -rank || axis >= std::max<int64_t>(rank, 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("axis ", axis, " is out of range for rank ", rank));
  }
  return axis < 0 ? axis + rank : axis;
}

absl::Status CheckDataShapedSize(DataType dtype, const std::vector<int64_t>& shape) {
  absl::StatusOr<int64_t> count = graph::CountElements(shape);
  if (!count.ok()) return count.status();
  if (graph::StorageBytes(dtype, *count) > kMaxDataShapedBytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "output shape ", graph::ShapeToString(shape), " of ", graph::DataTypeName(dtype),
        " exceeds ", kMaxDataShapedBytes, " bytes"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int64_t>> BroadcastShapes(
    const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  const size_t rank = std::max(a.size(), b.size());
  std::vector<int64_t> out(rank);
  for (size_t i = 0; i < rank; ++i) {
    const int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    const int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da != db && da != 1 && db != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("shapes ", graph::ShapeToString(a), " and ",
                       graph::ShapeToString(b), " do not broadcast"));
    }
    out[i] = da == 1 ? db : da;
  }
  return out;
}

std::vector<int64_t> Strides(const std::vector<int64_t>& shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (int64_t i = static_cast<int64_t>(shape.size()) - 2; i >= 0; --i) {
    strides[i] = strides[i + 1] * shape[i + 1];
  }
  return strides;
}

std::vector<int64_t> BroadcastStrides(const std::vector<int64_t>& in_shape,
                                      const std::vector<int64_t>& out_shape) {
  const size_t rank = out_shape.size();
  std::vector<int64_t> in_strides(rank, 0);
  const std::vector<int64_t> strides = Strides(in_shape);
  for (size_t i = 0; i < in_shape.size(); ++i) {
    const size_t o = rank - in_shape.size() + i;
    in_strides[o] = in_shape[i] == 1 ? 0 : strides[i];
  }
  return in_strides;
}

std::vector<int64_t> BroadcastIndex(const std::vector<int64_t>& in_shape,
                                    const std::vector<int64_t>& out_shape) {
  int64_t count = 1;
  for (int64_t dim : out_shape) count *= dim;
  std::vector<int64_t> index(static_cast<size_t>(count));
  const size_t rank = out_shape.size();
  // Strides of the input, aligned to the output's rank, 0 where broadcast.
  const std::vector<int64_t> in_strides = BroadcastStrides(in_shape, out_shape);
  std::vector<int64_t> counter(rank, 0);
  int64_t offset = 0;
  for (int64_t flat = 0; flat < count; ++flat) {
    index[flat] = offset;
    for (int64_t d = static_cast<int64_t>(rank) - 1; d >= 0; --d) {
      if (++counter[d] < out_shape[d]) {
        offset += in_strides[d];
        break;
      }
      offset -= in_strides[d] * (out_shape[d] - 1);
      counter[d] = 0;
    }
  }
  return index;
}

namespace {

// Polls `ready` for up to about 50 microseconds; returns whether it became
// true (the caller then blocks as usual if not).
template <typename Ready>
bool SpinUntil(const Ready& ready) {
  constexpr int kSpins = 20000;
  for (int i = 0; i < kSpins; ++i) {
    if (ready()) return true;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
  return false;
}

// Process-wide worker threads for ParallelFor, started on first use and
// grown on demand, never stopped (kernels may run during static
// destruction). Process-wide rather than per backend because ParallelFor,
// whose signature core/train shares, has no backend to ask.
class WorkerPool {
 public:
  static WorkerPool& Get() {
    static WorkerPool* pool = new WorkerPool;
    return *pool;
  }

  // Runs `task` on a worker; at least `workers` workers exist afterwards.
  void Post(std::function<void()> task, int workers) {
    std::lock_guard<std::mutex> lock(mutex_);
    while (static_cast<int>(threads_.size()) < workers) {
      threads_.emplace_back([this] { Work(); });
      threads_.back().detach();
    }
    tasks_.push_back(std::move(task));
    pending_.fetch_add(1, std::memory_order_release);
    wake_.notify_one();
  }

 private:
  void Work() {
    for (;;) {
      // A model's kernels follow each other within microseconds: poll
      // briefly before sleeping, since waking a sleeping thread costs more
      // than a small kernel.
      SpinUntil([this] { return pending_.load(std::memory_order_acquire) > 0; });
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [this] { return !tasks_.empty(); });
        task = std::move(tasks_.front());
        tasks_.pop_front();
        pending_.fetch_sub(1, std::memory_order_relaxed);
      }
      task();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> tasks_;
  std::atomic<int> pending_{0};  // tasks_.size(), readable without the lock
  std::vector<std::thread> threads_;
};

// One ParallelFor call: chunks are claimed from `next` by the caller and
// the workers alike, so the caller never waits on a task that has not
// started (nested and concurrent calls cannot deadlock). Shared with the
// posted tasks, which may start after the call returned and then find no
// chunk left.
struct ParallelJob {
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  std::mutex mutex;
  std::condition_variable finished;
};

}  // namespace

void ParallelFor(int64_t n, int64_t min_per_thread, int num_threads,
                 const std::function<void(int64_t, int64_t)>& body) {
  const int64_t chunks = std::min<int64_t>(
      num_threads, std::max<int64_t>(1, n / std::max<int64_t>(1, min_per_thread)));
  if (chunks <= 1) {
    if (n > 0) body(0, n);
    return;
  }
  const int64_t step = (n + chunks - 1) / chunks;
  const int64_t count = (n + step - 1) / step;
  auto job = std::make_shared<ParallelJob>();
  const auto* work = &body;
  auto run = [job, work, step, count, n] {
    for (int64_t chunk; (chunk = job->next.fetch_add(1)) < count;) {
      (*work)(chunk * step, std::min(n, (chunk + 1) * step));
      if (job->done.fetch_add(1) + 1 == count) {
        std::lock_guard<std::mutex> lock(job->mutex);
        job->finished.notify_all();
      }
    }
  };
  for (int64_t i = 1; i < count; ++i) {
    WorkerPool::Get().Post(run, static_cast<int>(count - 1));
  }
  run();
  if (SpinUntil([&] { return job->done.load() == count; })) return;
  std::unique_lock<std::mutex> lock(job->mutex);
  job->finished.wait(lock, [&] { return job->done.load() == count; });
}

Tensor FloatTensorAs(DataType dtype, std::vector<int64_t> shape,
                     const std::vector<float>& values) {
  if (dtype == DataType::kFloat32) {
    return Tensor::FromVector(DataType::kFloat32, std::move(shape), values);
  }
  return graph::TensorFromDoubles(dtype, std::move(shape),
                                  std::vector<double>(values.begin(), values.end()));
}

FloatInput::FloatInput(const Tensor& tensor) {
  if (tensor.dtype() == DataType::kFloat32) {
    data_ = tensor.data<float>();
  } else {
    converted_ = tensor.ToFloats();
    data_ = converted_.data();
  }
}

FloatOutput::FloatOutput(DataType dtype, std::vector<int64_t> shape)
    : dtype_(dtype), shape_(std::move(shape)) {
  if (dtype_ == DataType::kFloat32) {
    tensor_ = Tensor(DataType::kFloat32, shape_);
    data_ = tensor_.data<float>();
  } else {
    int64_t count = 1;
    for (int64_t dim : shape_) count *= dim;
    scratch_.resize(static_cast<size_t>(count));
    data_ = scratch_.data();
  }
}

Tensor FloatOutput::Finish() {
  if (dtype_ == DataType::kFloat32) return std::move(tensor_);
  return FloatTensorAs(dtype_, shape_, scratch_);
}

absl::Status RequireFloat(const runtime::KernelCall& call, const Tensor& tensor) {
  if (!graph::IsFloat(tensor.dtype())) {
    return absl::InvalidArgumentError(
        absl::StrCat(call.node.op_type, " needs a float tensor, got ",
                     graph::DataTypeName(tensor.dtype())));
  }
  return absl::OkStatus();
}

}  // namespace squeeze::core::kernels::cpu
