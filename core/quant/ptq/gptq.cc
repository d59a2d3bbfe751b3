#include "core/quant/ptq/gptq.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "core/quant/packed_formats.h"
#include "core/status_macros.h"

namespace squeeze::core::quant::ptq {
namespace {

using Matrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic>;

// Scales and zero points of `count` columns, one set per row, from
// QuantizeRtn per channel on that slice: the one definition of the formula.
absl::Status GroupParameters(const std::string& name, const Matrix& values, const RtnOptions& format,
                             std::vector<float>* scales, std::vector<uint8_t>* zeros) {
  model::LinearLayer slice;
  slice.name = name;
  slice.out = values.rows();
  slice.in = values.cols();
  slice.weight.resize(slice.out * slice.in);
  for (int64_t r = 0; r < slice.out; ++r) {
    for (int64_t c = 0; c < slice.in; ++c) slice.weight[r * slice.in + c] = static_cast<float>(values(r, c));
  }
  RtnOptions per_channel = format;
  per_channel.group_size = 0;
  SQ_ASSIGN_OR_RETURN(QuantizedLinear q, QuantizeRtn(slice, per_channel));
  *scales = std::move(q.scales);
  *zeros = std::move(q.zero_points);
  return absl::OkStatus();
}

// q of one weight, as QuantizeRtnRef rounds it.
int QuantizeValue(double w, float scale, uint8_t zero, const RtnOptions& format) {
  if (scale == 0.0f) return 0;
  const int qmax = QuantMax(format.bits, format.asymmetric);
  if (!format.asymmetric) {
    return static_cast<int>(std::clamp(std::round(w / double{scale}), static_cast<double>(-qmax),
                                       static_cast<double>(qmax)));
  }
  return static_cast<int>(std::clamp(std::round(w / double{scale} + zero), 0.0, static_cast<double>(qmax)));
}

double DequantizeValue(int q, float scale, uint8_t zero, bool asymmetric) {
  return (asymmetric ? q - zero : q) * double{scale};
}

}  // namespace

QuantizedLinear PackQuantizedLinear(const std::string& name, int64_t out, int64_t in, const RtnOptions& format,
                                    const std::vector<int>& q, std::vector<float> scales,
                                    std::vector<uint8_t> zero_points) {
  QuantizedLinear result;
  result.name = name;
  result.in = in;
  result.out = out;
  result.bits = format.bits;
  result.group_size = format.group_size;
  result.asymmetric = format.asymmetric;
  result.scales = std::move(scales);
  result.zero_points = std::move(zero_points);
  const int64_t row_bytes = PackedRowBytes(format.bits, in);
  result.packed.assign(out * row_bytes, '\0');
  for (int64_t r = 0; r < out; ++r) {
    auto* row = reinterpret_cast<uint8_t*>(result.packed.data() + r * row_bytes);
    const int* qr = q.data() + r * in;
    if (format.bits == 8) {
      for (int64_t c = 0; c < in; ++c) {
        row[c] = format.asymmetric ? static_cast<uint8_t>(qr[c]) : static_cast<uint8_t>(static_cast<int8_t>(qr[c]));
      }
      continue;
    }
    const int offset = format.asymmetric ? 0 : kInt4SymmetricOffset;
    for (int64_t c = 0; c < in; c += 2) {
      const auto low = static_cast<uint8_t>(qr[c] + offset);
      const auto high = c + 1 < in ? static_cast<uint8_t>(qr[c + 1] + offset) : uint8_t{0};
      row[c / 2] = PackedInt4Pair::Pack(low, high).bits;
    }
  }
  return result;
}

absl::StatusOr<GptqResult> QuantizeGptq(const std::string& name, const std::vector<float>& weight, int64_t out,
                                        int64_t in, const std::vector<double>& hessian, const RtnOptions& format,
                                        const GptqOptions& options) {
  SQ_RETURN_IF_ERROR(format.Validate(in, name));
  if (out <= 0 || static_cast<int64_t>(weight.size()) != out * in ||
      static_cast<int64_t>(hessian.size()) != in * in) {
    return absl::InvalidArgumentError(absl::StrCat("gptq: layer ", name, " is [", out, ", ", in, "] but has ",
                                                   weight.size(), " weights and a Hessian of ", hessian.size(),
                                                   " entries (expected ", in * in, ")"));
  }
  if (options.block_size <= 0 || options.dampening < 0) {
    return absl::InvalidArgumentError(absl::StrCat("gptq: block_size must be > 0 and dampening >= 0, got ",
                                                   options.block_size, " and ", options.dampening, " (layer ",
                                                   name, ")"));
  }
  for (size_t i = 0; i < weight.size(); ++i) {
    if (!std::isfinite(weight[i])) {
      return absl::InvalidArgumentError(absl::StrCat("gptq: weight at row ", i / in, ", column ", i % in, " is ",
                                                     weight[i], " (layer ", name, ")"));
    }
  }
  for (double h : hessian) {
    if (!std::isfinite(h)) return absl::InvalidArgumentError(absl::StrCat("gptq: non-finite Hessian (layer ", name, ")"));
  }
  GptqResult result;
  Matrix w(out, in);
  for (int64_t r = 0; r < out; ++r) {
    for (int64_t c = 0; c < in; ++c) w(r, c) = weight[r * in + c];
  }
  Matrix h = Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
      hessian.data(), in, in);
  for (int64_t c = 0; c < in; ++c) {
    if (h(c, c) == 0.0) {
      h(c, c) = 1.0;
      w.col(c).setZero();
      ++result.dead_columns;
    }
  }
  // perm[k]: the original column processed k-th; position[c]: inverse.
  std::vector<int64_t> perm(in), position(in);
  std::iota(perm.begin(), perm.end(), 0);
  if (options.act_order) {
    std::stable_sort(perm.begin(), perm.end(), [&h](int64_t a, int64_t b) { return h(a, a) > h(b, b); });
  }
  for (int64_t k = 0; k < in; ++k) position[perm[k]] = k;
  Matrix wp(out, in), hp(in, in);
  for (int64_t k = 0; k < in; ++k) {
    wp.col(k) = w.col(perm[k]);
    for (int64_t j = 0; j < in; ++j) hp(k, j) = h(perm[k], perm[j]);
  }
  double damp = options.dampening * hp.diagonal().mean();
  Matrix u;
  for (int attempt = 0;; ++attempt) {
    Matrix damped = hp;
    damped.diagonal().array() += damp;
    Eigen::LLT<Matrix> llt(damped);
    if (llt.info() == Eigen::Success) {
      const Matrix inverse = llt.solve(Matrix::Identity(in, in));
      Eigen::LLT<Matrix> inverse_llt(inverse);
      if (inverse_llt.info() == Eigen::Success) {
        u = inverse_llt.matrixU();
        break;
      }
    }
    if (attempt == 4) {
      return absl::InvalidArgumentError(
          absl::StrCat("gptq: the Hessian is not positive definite even with damping ", damp, " (layer ", name, ")"));
    }
    damp = damp > 0 ? damp * 10 : 1e-6 * std::max(1.0, hp.diagonal().mean());
    result.notes.push_back(absl::StrCat("damping raised to ", damp, " (Hessian not positive definite)"));
  }

  const int64_t group_size = format.group_size == 0 ? in : format.group_size;
  const int64_t groups = in / group_size;
  std::vector<float> scales(out * groups, 0.0f);
  std::vector<uint8_t> zeros(format.asymmetric ? out * groups : 0, 0);
  std::vector<bool> ready(groups, false);
  auto set_group = [&](int64_t g, const Matrix& values) -> absl::Status {
    std::vector<float> s;
    std::vector<uint8_t> z;
    SQ_RETURN_IF_ERROR(GroupParameters(name, values, format, &s, &z));
    for (int64_t r = 0; r < out; ++r) {
      scales[r * groups + g] = s[r];
      if (format.asymmetric) zeros[r * groups + g] = z[r];
    }
    ready[g] = true;
    return absl::OkStatus();
  };
  if (format.group_size == 0) SQ_RETURN_IF_ERROR(set_group(0, w));

  std::vector<int> q(out * in, 0);
  for (int64_t i1 = 0; i1 < in; i1 += options.block_size) {
    const int64_t i2 = std::min(in, i1 + options.block_size), count = i2 - i1;
    Matrix w1 = wp.middleCols(i1, count);
    Matrix err1 = Matrix::Zero(out, count);
    for (int64_t i = 0; i < count; ++i) {
      const int64_t k = i1 + i, column = perm[k], g = column / group_size;
      if (!ready[g]) {
        // The group's weights as they stand now: block columns are current
        // in w1; later columns still owe this block's pending updates.
        Matrix values(out, group_size);
        for (int64_t j = 0; j < group_size; ++j) {
          const int64_t p = position[g * group_size + j];
          if (p < i2) {
            values.col(j) = w1.col(p - i1);
          } else {
            values.col(j) = wp.col(p) - err1.leftCols(i) * u.block(i1, p, i, 1);
          }
        }
        SQ_RETURN_IF_ERROR(set_group(g, values));
      }
      const double d = u(k, k);
      Eigen::VectorXd error(out);
      for (int64_t r = 0; r < out; ++r) {
        const float scale = scales[r * groups + g];
        const uint8_t zero = format.asymmetric ? zeros[r * groups + g] : 0;
        const int value = QuantizeValue(w1(r, i), scale, zero, format);
        q[r * in + column] = value;
        error(r) = (w1(r, i) - DequantizeValue(value, scale, zero, format.asymmetric)) / d;
      }
      w1.rightCols(count - i) -= error * u.block(k, k, 1, count - i);
      err1.col(i) = error;
    }
    if (i2 < in) wp.rightCols(in - i2) -= err1 * u.block(i1, i2, count, in - i2);
  }
  result.quantized = PackQuantizedLinear(name, out, in, format, q, std::move(scales), std::move(zeros));
  return result;
}

}  // namespace squeeze::core::quant::ptq
