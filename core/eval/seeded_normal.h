// Standard normal samples that are the same for a seed on every platform:
// std::mt19937_64 (fully specified by the standard) and Box-Muller written
// here, unlike std::normal_distribution whose algorithm varies by library.
#ifndef SQUEEZE_CORE_EVAL_SEEDED_NORMAL_H_
#define SQUEEZE_CORE_EVAL_SEEDED_NORMAL_H_

#include <cstdint>
#include <random>
#include <vector>

namespace squeeze::core::eval {

class SeededNormal {
 public:
  explicit SeededNormal(uint64_t seed) : engine_(seed) {}

  // The next N(0, 1) sample.
  double Next();

  // The next uniform sample in [0, 1).
  double NextUniform();

 private:
  std::mt19937_64 engine_;
  bool has_spare_ = false;
  double spare_ = 0.0;
};

// `count` N(0, 1) samples as float, from `seed`.
std::vector<float> NormalFloats(uint64_t seed, int64_t count);

}  // namespace squeeze::core::eval

#endif  // SQUEEZE_CORE_EVAL_SEEDED_NORMAL_H_
