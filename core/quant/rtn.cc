#include "core/quant/rtn.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/quant/packed_formats.h"
#include "core/status_macros.h"

namespace squeeze::core::quant {
namespace {

constexpr int kMinGroupSize = 8;
constexpr int kMaxGroupSize = 4096;

absl::Status CheckFinite(const model::LinearLayer& layer) {
  for (int64_t r = 0; r < layer.out; ++r) {
    for (int64_t c = 0; c < layer.in; ++c) {
      const float w = layer.weight[r * layer.in + c];
      if (!std::isfinite(w)) {
        return absl::InvalidArgumentError(
            absl::StrCat("quantize: weight at row ", r, ", column ", c, " is ",
                         w, " (layer ", layer.name, ")"));
      }
    }
  }
  for (size_t r = 0; r < layer.bias.size(); ++r) {
    if (!std::isfinite(layer.bias[r])) {
      return absl::InvalidArgumentError(
          absl::StrCat("quantize: bias at row ", r, " is ", layer.bias[r],
                       " (layer ", layer.name, ")"));
    }
  }
  return absl::OkStatus();
}

// A group's float32 scale from its range in double; a tiny nonzero range
// that would round to scale 0 gets the smallest positive float instead, so
// that only all-zero groups have scale 0.
float GroupScale(double range, int qmax) {
  if (range == 0.0) return 0.0f;
  const float scale = static_cast<float>(range / qmax);
  return scale > 0.0f ? scale : std::numeric_limits<float>::denorm_min();
}

// Quantizes one group of `count` weights into q[0..count), returning its
// scale and, when asymmetric, its zero point.
void QuantizeGroup(const float* w, int64_t count, int qmax, bool asymmetric,
                   int* q, float* scale, uint8_t* zero) {
  if (!asymmetric) {
    double max_abs = 0.0;
    for (int64_t i = 0; i < count; ++i) {
      max_abs = std::max(max_abs, std::fabs(double{w[i]}));
    }
    *scale = GroupScale(max_abs, qmax);
    for (int64_t i = 0; i < count; ++i) {
      q[i] = *scale == 0.0f
                 ? 0
                 : static_cast<int>(std::clamp(std::round(w[i] / double{*scale}),
                                               static_cast<double>(-qmax), static_cast<double>(qmax)));
    }
    return;
  }
  double lo = 0.0;
  double hi = 0.0;
  for (int64_t i = 0; i < count; ++i) {
    lo = std::min(lo, double{w[i]});
    hi = std::max(hi, double{w[i]});
  }
  *scale = GroupScale(hi - lo, qmax);
  const double zero_point =
      *scale == 0.0f
          ? 0.0
          : std::clamp(std::round(-lo / *scale), 0.0, static_cast<double>(qmax));
  *zero = static_cast<uint8_t>(zero_point);
  for (int64_t i = 0; i < count; ++i) {
    q[i] = *scale == 0.0f
               ? 0
               : static_cast<int>(std::clamp(
                     std::round(w[i] / double{*scale} + zero_point), 0.0,
                     static_cast<double>(qmax)));
  }
}

// Stores one row of q values in the packed layout of packed_formats.h.
void PackRow(const std::vector<int>& q, int bits, bool asymmetric,
             uint8_t* row) {
  const int64_t in = static_cast<int64_t>(q.size());
  if (bits == 8) {
    for (int64_t c = 0; c < in; ++c) {
      row[c] = asymmetric ? static_cast<uint8_t>(q[c])
                          : static_cast<uint8_t>(static_cast<int8_t>(q[c]));
    }
    return;
  }
  const int offset = asymmetric ? 0 : kInt4SymmetricOffset;
  for (int64_t c = 0; c < in; c += 2) {
    const uint8_t low = static_cast<uint8_t>(q[c] + offset);
    const uint8_t high =
        c + 1 < in ? static_cast<uint8_t>(q[c + 1] + offset) : 0;
    row[c / 2] = PackedInt4Pair::Pack(low, high).bits;
  }
}

// The stored q of element `c` in a packed row, before the zero point.
int UnpackElement(const uint8_t* row, int64_t c, int bits, bool asymmetric) {
  if (bits == 8) {
    return asymmetric ? row[c] : static_cast<int8_t>(row[c]);
  }
  const PackedInt4Pair pair{row[c / 2]};
  const int nibble = c % 2 == 0 ? pair.Low() : pair.High();
  return asymmetric ? nibble : nibble - kInt4SymmetricOffset;
}

// The output for `layer`: shape, options and bias set, packed weights zero,
// scales and zero points sized.
QuantizedLinear Allocate(const model::LinearLayer& layer, const RtnOptions& options) {
  QuantizedLinear q;
  q.name = layer.name;
  q.in = layer.in;
  q.out = layer.out;
  q.bits = options.bits;
  q.group_size = options.group_size;
  q.asymmetric = options.asymmetric;
  q.bias = layer.bias;
  q.packed.assign(q.out * PackedRowBytes(q.bits, q.in), '\0');
  q.scales.resize(q.out * q.Groups());
  if (q.asymmetric) q.zero_points.resize(q.out * q.Groups());
  return q;
}

absl::Status CheckConsistent(const QuantizedLinear& q) {
  const RtnOptions options{q.bits, q.group_size, q.asymmetric};
  SQ_RETURN_IF_ERROR(options.Validate(q.in, q.name));
  auto mismatch = [&q](const char* what, size_t got, int64_t want) {
    return absl::InvalidArgumentError(
        absl::StrCat("dequantize: ", what, " has ", got, " entries, expected ",
                     want, " (layer ", q.name, ")"));
  };
  if (q.out <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dequantize: out must be > 0, got ", q.out, " (layer ", q.name, ")"));
  }
  const int64_t groups = q.out * q.Groups();
  if (static_cast<int64_t>(q.packed.size()) !=
      q.out * PackedRowBytes(q.bits, q.in)) {
    return mismatch("packed weight", q.packed.size(),
                    q.out * PackedRowBytes(q.bits, q.in));
  }
  if (static_cast<int64_t>(q.scales.size()) != groups) {
    return mismatch("scales", q.scales.size(), groups);
  }
  if (static_cast<int64_t>(q.zero_points.size()) !=
      (q.asymmetric ? groups : 0)) {
    return mismatch("zero_points", q.zero_points.size(),
                    q.asymmetric ? groups : 0);
  }
  if (!q.bias.empty() && static_cast<int64_t>(q.bias.size()) != q.out) {
    return mismatch("bias", q.bias.size(), q.out);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RtnOptions::Validate(int64_t in, const std::string& layer) const {
  if (!IsUniformBits(bits)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "quantize: bits must be one of 2, 3, 4, 8, got ", bits, " (layer ", layer, ")"));
  }
  if (in <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "quantize: input width must be > 0, got ", in, " (layer ", layer, ")"));
  }
  if (group_size == 0) return absl::OkStatus();
  if (group_size < kMinGroupSize || group_size > kMaxGroupSize ||
      (group_size & (group_size - 1)) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "quantize: group_size must be 0 (per channel) or a power of two in [",
        kMinGroupSize, ", ", kMaxGroupSize, "], got ", group_size, " (layer ",
        layer, ")"));
  }
  if (in % group_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "quantize: group_size ", group_size, " does not divide the input width ",
        in, " (layer ", layer, ")"));
  }
  return absl::OkStatus();
}

std::string RtnOptions::TechniqueName() const {
  return absl::StrCat(
      "int", bits, "-",
      group_size == 0 ? std::string("pc") : absl::StrCat("g", group_size), "-",
      asymmetric ? "asym" : "sym");
}

int64_t QuantizedLinear::Groups() const {
  return group_size == 0 ? 1 : in / group_size;
}

int64_t QuantizedLinear::StorageBytes() const {
  return static_cast<int64_t>(packed.size() + scales.size() * sizeof(float) +
                              zero_points.size() + bias.size() * sizeof(float));
}

absl::StatusOr<QuantizedLinear> QuantizeRtnRef(const model::LinearLayer& layer,
                                               const RtnOptions& options) {
  SQ_RETURN_IF_ERROR(options.Validate(layer.in, layer.name));
  if (layer.out <= 0 ||
      static_cast<int64_t>(layer.weight.size()) != layer.in * layer.out ||
      (!layer.bias.empty() &&
       static_cast<int64_t>(layer.bias.size()) != layer.out)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "quantize: layer ", layer.name, " is [", layer.out, ", ", layer.in,
        "] but has ", layer.weight.size(), " weights and ", layer.bias.size(),
        " biases"));
  }
  SQ_RETURN_IF_ERROR(CheckFinite(layer));

  QuantizedLinear q = Allocate(layer, options);
  const int64_t groups = q.Groups();
  const int64_t group_width = layer.in / groups;
  const int64_t row_bytes = PackedRowBytes(q.bits, q.in);
  const int qmax = QuantMax(q.bits, q.asymmetric);

  std::vector<int> row_q(q.in);
  for (int64_t r = 0; r < q.out; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      uint8_t zero = 0;
      QuantizeGroup(&layer.weight[r * q.in + g * group_width], group_width,
                    qmax, q.asymmetric, &row_q[g * group_width],
                    &q.scales[r * groups + g], &zero);
      if (q.asymmetric) q.zero_points[r * groups + g] = zero;
    }
    PackRow(row_q, q.bits, q.asymmetric,
            reinterpret_cast<uint8_t*>(&q.packed[r * row_bytes]));
  }
  return q;
}

namespace {

// std::round of a double already clamped to [-qmax, qmax] (clamping first
// gives the same result, as round is monotone and fixes integers), without
// the libm call: truncate, then step away from zero on a remainder of at
// least one half, exactly as round-half-away-from-zero. The subtraction is
// exact, so this is bit-identical to std::round, and it vectorizes.
inline int RoundClamped(double v) {
  const int t = static_cast<int>(v);
  const double rest = v - static_cast<double>(t);
  return t + (rest >= 0.5) - (rest <= -0.5);
}

// QuantizeGroup's arithmetic, element by element the same operations in the
// same precision, written as branch-free loops over float min/max (exact) so
// that the compiler vectorizes them.
void QuantizeGroupFast(const float* w, int64_t count, int qmax, bool asymmetric,
                       int8_t* q, float* scale, uint8_t* zero) {
  if (!asymmetric) {
    float max_abs = 0.0f;
    for (int64_t i = 0; i < count; ++i) max_abs = std::max(max_abs, std::fabs(w[i]));
    *scale = GroupScale(max_abs, qmax);
    if (*scale == 0.0f) {
      std::fill(q, q + count, 0);
      return;
    }
    const double s = *scale, lim = qmax;
    for (int64_t i = 0; i < count; ++i) {
      q[i] = static_cast<int8_t>(RoundClamped(std::clamp(w[i] / s, -lim, lim)));
    }
    return;
  }
  float lo = 0.0f, hi = 0.0f;
  for (int64_t i = 0; i < count; ++i) {
    lo = std::min(lo, w[i]);
    hi = std::max(hi, w[i]);
  }
  *scale = GroupScale(double{hi} - double{lo}, qmax);
  if (*scale == 0.0f) {
    *zero = 0;
    std::fill(q, q + count, 0);
    return;
  }
  const double zero_point =
      std::clamp(std::round(-double{lo} / *scale), 0.0, static_cast<double>(qmax));
  *zero = static_cast<uint8_t>(zero_point);
  const double s = *scale, lim = qmax;
  // Stored as uint8 bits in an int8 buffer: q is in [0, 255].
  for (int64_t i = 0; i < count; ++i) {
    q[i] = static_cast<int8_t>(static_cast<uint8_t>(
        RoundClamped(std::clamp(w[i] / s + zero_point, 0.0, lim))));
  }
}

// Rows [begin, end) of QuantizeRtnRef's output, for a layer already checked.
void QuantizeRowsFast(const model::LinearLayer& layer, int64_t begin, int64_t end,
                      QuantizedLinear* q) {
  const int64_t groups = q->Groups();
  const int64_t width = q->in / groups;
  const int64_t row_bytes = PackedRowBytes(q->bits, q->in);
  const int qmax = QuantMax(q->bits, q->asymmetric);
  const int offset = IsNibbleBits(q->bits) && !q->asymmetric ? kInt4SymmetricOffset : 0;
  std::vector<int8_t> row_q(q->in + 1, 0);
  for (int64_t r = begin; r < end; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      uint8_t zero = 0;
      QuantizeGroupFast(&layer.weight[r * q->in + g * width], width, qmax, q->asymmetric,
                        &row_q[g * width], &q->scales[r * groups + g], &zero);
      if (q->asymmetric) q->zero_points[r * groups + g] = zero;
    }
    uint8_t* row = reinterpret_cast<uint8_t*>(&q->packed[r * row_bytes]);
    if (q->bits == 8) {
      std::memcpy(row, row_q.data(), q->in);
      continue;
    }
    row_q[q->in] = static_cast<int8_t>(-offset);  // an odd row's last high nibble is 0
    for (int64_t c = 0; c < row_bytes; ++c) {
      const auto low = static_cast<uint8_t>(row_q[2 * c] + offset);
      const auto high = static_cast<uint8_t>(row_q[2 * c + 1] + offset);
      row[c] = static_cast<uint8_t>((low & 0x0f) | (high << 4));
    }
  }
}

bool AllFinite(const std::vector<float>& values) {
  // An all-ones exponent is inf or NaN; integer ORs vectorize.
  uint32_t non_finite = 0;
  for (float v : values) {
    uint32_t bits;
    std::memcpy(&bits, &v, sizeof(bits));
    non_finite |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
  }
  return non_finite == 0;
}

// Layers below this many weights are quantized on the calling thread.
constexpr int64_t kMinWeightsPerThread = int64_t{1} << 20;  // 1M: threads start for 2M+

}  // namespace

absl::StatusOr<QuantizedLinear> QuantizeRtn(const model::LinearLayer& layer,
                                            const RtnOptions& options) {
  SQ_RETURN_IF_ERROR(options.Validate(layer.in, layer.name));
  if (layer.out <= 0 ||
      static_cast<int64_t>(layer.weight.size()) != layer.in * layer.out ||
      (!layer.bias.empty() && static_cast<int64_t>(layer.bias.size()) != layer.out) ||
      !AllFinite(layer.weight) || !AllFinite(layer.bias)) {
    return QuantizeRtnRef(layer, options);  // its errors, naming row and column
  }
  QuantizedLinear q = Allocate(layer, options);
  // core/ sits below the kernel library and its ParallelFor pool, so rows
  // are split over plain threads, one contiguous block each.
  const int64_t threads = std::clamp<int64_t>(
      std::min<int64_t>(std::thread::hardware_concurrency(),
                        layer.in * layer.out / kMinWeightsPerThread),
      1, q.out);
  std::vector<std::thread> workers;
  const int64_t step = (q.out + threads - 1) / threads;
  for (int64_t t = 1; t < threads; ++t) {
    workers.emplace_back(QuantizeRowsFast, std::cref(layer), t * step,
                         std::min(q.out, (t + 1) * step), &q);
  }
  QuantizeRowsFast(layer, 0, std::min(q.out, step), &q);
  for (std::thread& worker : workers) worker.join();
  return q;
}

absl::Status DequantizeRtn(const QuantizedLinear& q, float* out) {
  SQ_RETURN_IF_ERROR(CheckConsistent(q));
  const int64_t groups = q.Groups();
  const int64_t group_width = q.in / groups;
  const int64_t row_bytes = PackedRowBytes(q.bits, q.in);
  for (int64_t r = 0; r < q.out; ++r) {
    const uint8_t* row =
        reinterpret_cast<const uint8_t*>(q.packed.data() + r * row_bytes);
    for (int64_t c = 0; c < q.in; ++c) {
      const int64_t g = r * groups + c / group_width;
      const int zero = q.asymmetric ? q.zero_points[g] : 0;
      out[r * q.in + c] =
          static_cast<float>(UnpackElement(row, c, q.bits, q.asymmetric) - zero) *
          q.scales[g];
    }
  }
  return absl::OkStatus();
}

namespace {

// A binary float format narrower than float32, encoded in the low bits.
struct Minifloat {
  int exponent_bits, mantissa_bits, bias;
  bool has_inf;         // the top exponent holds inf (mantissa 0) and NaN
  bool keep_inf;        // +-inf encodes as +-inf (else saturates to +-max)
  uint16_t max_finite;  // encoding of the largest finite magnitude
  uint16_t nan;         // the NaN produced, without sign
};

constexpr Minifloat kHalf{5, 10, 15, true, true, 0x7bff, 0x7e00};
constexpr Minifloat kBFloat16{8, 7, 127, true, true, 0x7f7f, 0x7fc0};
constexpr Minifloat kE4M3{4, 3, 7, false, false, 0x7e, 0x7f};
constexpr Minifloat kE5M2{5, 2, 15, true, false, 0x7b, 0x7f};

const Minifloat& FormatOf(FloatFormat format) {
  switch (format) {
    case FloatFormat::kFloat16: return kHalf;
    case FloatFormat::kBFloat16: return kBFloat16;
    case FloatFormat::kFp8E4M3: return kE4M3;
    case FloatFormat::kFp8E5M2: break;
  }
  return kE5M2;
}

float DecodeMinifloat(uint16_t bits, const Minifloat& f) {
  const int total = 1 + f.exponent_bits + f.mantissa_bits;
  const bool negative = (bits >> (total - 1)) & 1;
  const int magnitude = bits & ((1 << (total - 1)) - 1);
  const int exponent = magnitude >> f.mantissa_bits;
  const int mantissa = magnitude & ((1 << f.mantissa_bits) - 1);
  const int top = (1 << f.exponent_bits) - 1;
  double value;
  if (f.has_inf && exponent == top) {
    value = mantissa == 0 ? std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
  } else if (!f.has_inf && magnitude == f.nan) {
    value = std::numeric_limits<double>::quiet_NaN();
  } else if (exponent == 0) {
    value = std::ldexp(static_cast<double>(mantissa), 1 - f.bias - f.mantissa_bits);
  } else {
    value = std::ldexp(1.0 + std::ldexp(static_cast<double>(mantissa), -f.mantissa_bits), exponent - f.bias);
  }
  return static_cast<float>(negative ? -value : value);
}

uint16_t EncodeMinifloat(float value, const Minifloat& f) {
  const uint16_t sign = std::signbit(value) ? uint16_t(1u << (f.exponent_bits + f.mantissa_bits)) : 0;
  if (std::isnan(value)) return sign | f.nan;
  if (std::isinf(value) && f.keep_inf) return sign | static_cast<uint16_t>(f.max_finite + 1);
  const double max = DecodeMinifloat(f.max_finite, f);
  const double a = std::fabs(static_cast<double>(value));
  if (a > max) return sign | f.max_finite;  // a finite overflow or inf: rounding cannot bring it below max
  if (a == 0) return sign;
  int exponent;
  std::frexp(a, &exponent);  // a = m * 2^exponent, m in [0.5, 1)
  // The spacing of the format at a: 2^(e - M) with e = max(exponent - 1, 1 - bias).
  const int e = std::max(exponent - 1, 1 - f.bias);
  // nearbyint rounds ties to even in the default rounding mode; the
  // quotient is exact (a power-of-two scaling of a float).
  const auto steps = static_cast<int64_t>(std::nearbyint(std::ldexp(a, f.mantissa_bits - e)));
  // steps in [0, 2^(M+1)]: below 2^M only for subnormals (e = 1 - bias);
  // 2^(M+1) carries into the next binade. The code is continuous across.
  const int64_t code = static_cast<int64_t>(e - (1 - f.bias)) * (int64_t{1} << f.mantissa_bits) + steps;
  if (code > f.max_finite) return sign | f.max_finite;  // rounded up past max (e.g. 464 in E4M3)
  return sign | static_cast<uint16_t>(code);
}

}  // namespace

std::string FloatFormatName(FloatFormat format) {
  switch (format) {
    case FloatFormat::kFloat16: return "fp16";
    case FloatFormat::kBFloat16: return "bf16";
    case FloatFormat::kFp8E4M3: return "fp8-e4m3";
    case FloatFormat::kFp8E5M2: return "fp8-e5m2";
  }
  return "?";
}

int FloatFormatBits(FloatFormat format) {
  return format == FloatFormat::kFloat16 || format == FloatFormat::kBFloat16 ? 16 : 8;
}

uint16_t EncodeFloat(float value, FloatFormat format) { return EncodeMinifloat(value, FormatOf(format)); }

float DecodeFloat(uint16_t bits, FloatFormat format) { return DecodeMinifloat(bits, FormatOf(format)); }

void CastQuantize(FloatFormat format, std::vector<float>* values) {
  for (float& v : *values) v = DecodeFloat(EncodeFloat(v, format), format);
}

}  // namespace squeeze::core::quant
