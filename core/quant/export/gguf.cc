#include "core/quant/export/gguf.h"

#include <cstring>
#include <limits>
#include <map>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/model/file_io.h"
#include "core/model/json.h"
#include "core/status_macros.h"

namespace squeeze::core::quant_export {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as little-endian uint32
constexpr uint64_t kMaxCount = uint64_t{1} << 32;  // sanity limit on counts and lengths

class Writer {
 public:
  template <typename T>
  void Put(T value) {
    char bytes[sizeof(T)];
    std::memcpy(bytes, &value, sizeof(T));
    out_.append(bytes, sizeof(T));
  }
  void PutString(const std::string& s) {
    Put<uint64_t>(s.size());
    out_ += s;
  }
  void Pad(uint64_t alignment) {
    out_.append((alignment - out_.size() % alignment) % alignment, '\0');
  }
  void Append(const std::string& bytes) { out_ += bytes; }
  std::string& bytes() { return out_; }

 private:
  std::string out_;
};

void PutScalar(Writer* w, GgufType type, const GgufValue& v, size_t i) {
  switch (type) {
    case GgufType::kUInt8: w->Put<uint8_t>(static_cast<uint8_t>(v.ints[i])); break;
    case GgufType::kInt8: w->Put<int8_t>(static_cast<int8_t>(v.ints[i])); break;
    case GgufType::kUInt16: w->Put<uint16_t>(static_cast<uint16_t>(v.ints[i])); break;
    case GgufType::kInt16: w->Put<int16_t>(static_cast<int16_t>(v.ints[i])); break;
    case GgufType::kUInt32: w->Put<uint32_t>(static_cast<uint32_t>(v.ints[i])); break;
    case GgufType::kInt32: w->Put<int32_t>(static_cast<int32_t>(v.ints[i])); break;
    case GgufType::kUInt64: w->Put<uint64_t>(static_cast<uint64_t>(v.ints[i])); break;
    case GgufType::kInt64: w->Put<int64_t>(v.ints[i]); break;
    case GgufType::kBool: w->Put<uint8_t>(v.ints[i] != 0); break;
    case GgufType::kFloat32: w->Put<float>(static_cast<float>(v.floats[i])); break;
    case GgufType::kFloat64: w->Put<double>(v.floats[i]); break;
    case GgufType::kString: w->PutString(v.strings[i]); break;
    case GgufType::kArray: break;  // nested arrays are not written
  }
}

size_t Count(const GgufValue& v) {
  return std::max({v.ints.size(), v.floats.size(), v.strings.size()});
}

class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}

  template <typename T>
  absl::StatusOr<T> Get(const std::string& what) {
    if (bytes_.size() - pos_ < sizeof(T)) {
      return absl::InvalidArgumentError(
          absl::StrCat("gguf: file ends at byte ", bytes_.size(), " inside ", what));
    }
    T value;
    std::memcpy(&value, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }
  absl::StatusOr<std::string> GetString(const std::string& what) {
    SQ_ASSIGN_OR_RETURN(uint64_t length, Get<uint64_t>(what));
    if (length > bytes_.size() - pos_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "gguf: string of ", length, " bytes at byte ", pos_, " (", what, ") runs past the end"));
    }
    std::string s(bytes_.substr(pos_, length));
    pos_ += length;
    return s;
  }
  size_t pos() const { return pos_; }

 private:
  std::string_view bytes_;
  size_t pos_ = 0;
};

absl::Status GetScalar(Reader* r, GgufType type, const std::string& key, GgufValue* v) {
  switch (type) {
#define SQ_GGUF_INT(kind, ctype)                                   \
  case GgufType::kind: {                                           \
    SQ_ASSIGN_OR_RETURN(ctype value, r->Get<ctype>(key));          \
    v->ints.push_back(static_cast<int64_t>(value));                \
    return absl::OkStatus();                                       \
  }
    SQ_GGUF_INT(kUInt8, uint8_t)
    SQ_GGUF_INT(kInt8, int8_t)
    SQ_GGUF_INT(kUInt16, uint16_t)
    SQ_GGUF_INT(kInt16, int16_t)
    SQ_GGUF_INT(kUInt32, uint32_t)
    SQ_GGUF_INT(kInt32, int32_t)
    SQ_GGUF_INT(kInt64, int64_t)
    SQ_GGUF_INT(kBool, uint8_t)
#undef SQ_GGUF_INT
    case GgufType::kUInt64: {
      SQ_ASSIGN_OR_RETURN(uint64_t value, r->Get<uint64_t>(key));
      if (value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return absl::InvalidArgumentError(absl::StrCat("gguf: uint64 ", value, " of ", key,
                                                       " exceeds int64"));
      }
      v->ints.push_back(static_cast<int64_t>(value));
      return absl::OkStatus();
    }
    case GgufType::kFloat32: {
      SQ_ASSIGN_OR_RETURN(float value, r->Get<float>(key));
      v->floats.push_back(value);
      return absl::OkStatus();
    }
    case GgufType::kFloat64: {
      SQ_ASSIGN_OR_RETURN(double value, r->Get<double>(key));
      v->floats.push_back(value);
      return absl::OkStatus();
    }
    case GgufType::kString: {
      SQ_ASSIGN_OR_RETURN(std::string value, r->GetString(key));
      v->strings.push_back(std::move(value));
      return absl::OkStatus();
    }
    case GgufType::kArray:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat("gguf: value type ", static_cast<uint32_t>(type),
                                                 " of ", key, " is not a scalar type"));
}

bool KnownType(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::kFloat64); }

absl::StatusOr<std::vector<float>> Floats(const graph::Graph& g, const std::string& name,
                                          int64_t elements) {
  const auto it = g.initializers.find(name);
  if (it == g.initializers.end() || it->second.dtype() != graph::DataType::kFloat32 ||
      it->second.num_elements() != elements) {
    return absl::InvalidArgumentError(
        absl::StrCat("gguf: the checkpoint has no float32 tensor ", name, " of ", elements,
                     " elements"));
  }
  return it->second.ToFloats();
}

absl::StatusOr<GgufTensor> MakeTensor(std::string name, const std::vector<float>& values,
                                      int64_t rows, int64_t cols, GgmlType type) {
  GgufTensor t{std::move(name), rows == 1 ? std::vector<int64_t>{cols}
                                          : std::vector<int64_t>{cols, rows},
               type, ""};
  SQ_ASSIGN_OR_RETURN(int64_t bytes, GgufTensorBytes(type, t.ne));
  t.data.resize(static_cast<size_t>(bytes));
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(t.data.data(), values.data(), values.size() * sizeof(float));
      break;
    case GgmlType::kF16:
      for (size_t i = 0; i < values.size(); ++i) {
        const uint16_t h = graph::FloatToHalf(values[i]);
        std::memcpy(t.data.data() + 2 * i, &h, 2);
      }
      break;
    case GgmlType::kQ8_0:
      QuantizeQ8_0Ref(values.data(), reinterpret_cast<BlockQ8_0*>(t.data.data()),
                      rows * cols);
      break;
    case GgmlType::kQ4_0:
      QuantizeQ4_0Ref(values.data(), reinterpret_cast<BlockQ4_0*>(t.data.data()),
                      rows * cols);
      break;
  }
  return t;
}

uint32_t FileType(GgmlType type) {
  // llama_ftype: ALL_F32 = 0, MOSTLY_F16 = 1, MOSTLY_Q4_0 = 2, MOSTLY_Q8_0 = 7.
  switch (type) {
    case GgmlType::kF32: return 0;
    case GgmlType::kF16: return 1;
    case GgmlType::kQ4_0: return 2;
    case GgmlType::kQ8_0: return 7;
  }
  return 0;
}

// Moves row h * head_dim + j * half + i (Hugging Face) to row h * head_dim +
// 2i + j (GGUF), or back when `inverse`.
std::vector<float> MoveRopeRows(const std::vector<float>& w, int64_t rows, int64_t cols, int64_t heads,
                                bool inverse) {
  const int64_t head_dim = rows / heads, half = head_dim / 2;
  std::vector<float> out(w.size());
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < half; ++i) {
      for (int64_t j = 0; j < 2; ++j) {
        const int64_t hf_row = h * head_dim + j * half + i, gguf_row = h * head_dim + 2 * i + j;
        const float* src = w.data() + (inverse ? gguf_row : hf_row) * cols;
        std::copy(src, src + cols, out.data() + (inverse ? hf_row : gguf_row) * cols);
      }
    }
  }
  return out;
}

}  // namespace

GgufValue GgufValue::UInt32(uint32_t v) { return {GgufType::kUInt32, {}, {v}, {}, {}}; }
GgufValue GgufValue::Float32(float v) { return {GgufType::kFloat32, {}, {}, {v}, {}}; }
GgufValue GgufValue::Bool(bool v) { return {GgufType::kBool, {}, {v ? 1 : 0}, {}, {}}; }
GgufValue GgufValue::String(std::string v) {
  return {GgufType::kString, {}, {}, {}, {std::move(v)}};
}
GgufValue GgufValue::StringArray(std::vector<std::string> v) {
  return {GgufType::kArray, GgufType::kString, {}, {}, std::move(v)};
}
GgufValue GgufValue::Int32Array(std::vector<int32_t> v) {
  return {GgufType::kArray, GgufType::kInt32, std::vector<int64_t>(v.begin(), v.end()), {}, {}};
}

const GgufValue* GgufFile::Find(std::string_view key) const {
  for (const auto& [k, v] : metadata) {
    if (k == key) return &v;
  }
  return nullptr;
}

const GgufTensor* GgufFile::FindTensor(std::string_view name) const {
  for (const GgufTensor& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

absl::StatusOr<int64_t> GgufTensorBytes(GgmlType type, const std::vector<int64_t>& ne) {
  int64_t elements = 1;
  for (const int64_t d : ne) {
    if (d <= 0 || elements > std::numeric_limits<int64_t>::max() / 64 / d) {
      return absl::InvalidArgumentError(absl::StrCat("gguf: bad tensor dimension ", d));
    }
    elements *= d;
  }
  const bool quantized = type == GgmlType::kQ8_0 || type == GgmlType::kQ4_0;
  if (quantized && (ne.empty() || ne[0] % kGgmlBlockSize != 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gguf: row length ", ne.empty() ? 0 : ne[0], " is not a multiple of ", kGgmlBlockSize));
  }
  switch (type) {
    case GgmlType::kF32: return elements * 4;
    case GgmlType::kF16: return elements * 2;
    case GgmlType::kQ8_0: return elements / kGgmlBlockSize * int64_t{sizeof(BlockQ8_0)};
    case GgmlType::kQ4_0: return elements / kGgmlBlockSize * int64_t{sizeof(BlockQ4_0)};
  }
  return absl::InvalidArgumentError(
      absl::StrCat("gguf: unsupported ggml type ", static_cast<uint32_t>(type)));
}

std::string SerializeGguf(const GgufFile& file) {
  Writer w;
  w.Put<uint32_t>(kMagic);
  w.Put<uint32_t>(3);
  w.Put<uint64_t>(file.tensors.size());
  w.Put<uint64_t>(file.metadata.size());
  for (const auto& [key, value] : file.metadata) {
    w.PutString(key);
    w.Put<uint32_t>(static_cast<uint32_t>(value.type));
    if (value.type == GgufType::kArray) {
      w.Put<uint32_t>(static_cast<uint32_t>(value.element_type));
      w.Put<uint64_t>(Count(value));
      for (size_t i = 0; i < Count(value); ++i) PutScalar(&w, value.element_type, value, i);
    } else {
      PutScalar(&w, value.type, value, 0);
    }
  }
  uint64_t offset = 0;
  for (const GgufTensor& t : file.tensors) {
    w.PutString(t.name);
    w.Put<uint32_t>(static_cast<uint32_t>(t.ne.size()));
    for (const int64_t d : t.ne) w.Put<uint64_t>(static_cast<uint64_t>(d));
    w.Put<uint32_t>(static_cast<uint32_t>(t.type));
    w.Put<uint64_t>(offset);
    offset += (t.data.size() + kGgufAlignment - 1) / kGgufAlignment * kGgufAlignment;
  }
  w.Pad(kGgufAlignment);
  for (const GgufTensor& t : file.tensors) {
    w.Append(t.data);
    w.Pad(kGgufAlignment);
  }
  return std::move(w.bytes());
}

absl::StatusOr<GgufFile> ParseGguf(std::string_view bytes) {
  Reader r(bytes);
  SQ_ASSIGN_OR_RETURN(uint32_t magic, r.Get<uint32_t>("the magic"));
  if (magic != kMagic) {
    return absl::InvalidArgumentError("gguf: bad magic at byte 0 (not a GGUF file)");
  }
  SQ_ASSIGN_OR_RETURN(uint32_t version, r.Get<uint32_t>("the version"));
  if (version != 2 && version != 3) {
    return absl::InvalidArgumentError(absl::StrCat("gguf: version ", version, " at byte 4, want 2 or 3"));
  }
  SQ_ASSIGN_OR_RETURN(uint64_t n_tensors, r.Get<uint64_t>("the tensor count"));
  SQ_ASSIGN_OR_RETURN(uint64_t n_kv, r.Get<uint64_t>("the metadata count"));
  if (n_tensors > kMaxCount || n_kv > kMaxCount) {
    return absl::InvalidArgumentError(absl::StrCat("gguf: implausible counts ", n_tensors, ", ", n_kv));
  }
  GgufFile file;
  uint64_t alignment = kGgufAlignment;
  for (uint64_t i = 0; i < n_kv; ++i) {
    SQ_ASSIGN_OR_RETURN(std::string key, r.GetString(absl::StrCat("metadata key ", i)));
    SQ_ASSIGN_OR_RETURN(uint32_t type, r.Get<uint32_t>(key));
    if (!KnownType(type)) {
      return absl::InvalidArgumentError(absl::StrCat("gguf: unknown value type ", type, " of ", key,
                                                     " (byte ", r.pos() - 4, ")"));
    }
    GgufValue value;
    value.type = static_cast<GgufType>(type);
    if (value.type == GgufType::kArray) {
      SQ_ASSIGN_OR_RETURN(uint32_t element, r.Get<uint32_t>(key));
      SQ_ASSIGN_OR_RETURN(uint64_t count, r.Get<uint64_t>(key));
      if (!KnownType(element) || element == static_cast<uint32_t>(GgufType::kArray) ||
          count > bytes.size()) {
        return absl::InvalidArgumentError(absl::StrCat("gguf: bad array (type ", element,
                                                       ", ", count, " elements) in ", key));
      }
      value.element_type = static_cast<GgufType>(element);
      for (uint64_t j = 0; j < count; ++j) {
        SQ_RETURN_IF_ERROR(GetScalar(&r, value.element_type, key, &value));
      }
    } else {
      SQ_RETURN_IF_ERROR(GetScalar(&r, value.type, key, &value));
    }
    if (key == "general.alignment") {
      if (value.ints.size() != 1 || value.ints[0] <= 0 || value.ints[0] % 8 != 0) {
        return absl::InvalidArgumentError("gguf: general.alignment must be a positive multiple of 8");
      }
      alignment = static_cast<uint64_t>(value.ints[0]);
    }
    file.metadata.emplace_back(std::move(key), std::move(value));
  }
  std::vector<uint64_t> offsets;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensor t;
    SQ_ASSIGN_OR_RETURN(t.name, r.GetString(absl::StrCat("tensor info ", i)));
    SQ_ASSIGN_OR_RETURN(uint32_t n_dims, r.Get<uint32_t>(t.name));
    if (n_dims == 0 || n_dims > 4) {
      return absl::InvalidArgumentError(absl::StrCat("gguf: tensor ", t.name, " has ", n_dims, " dims"));
    }
    for (uint32_t d = 0; d < n_dims; ++d) {
      SQ_ASSIGN_OR_RETURN(uint64_t dim, r.Get<uint64_t>(t.name));
      if (dim == 0 || dim > bytes.size() * 2) {
        return absl::InvalidArgumentError(absl::StrCat("gguf: tensor ", t.name, " dim ", dim));
      }
      t.ne.push_back(static_cast<int64_t>(dim));
    }
    SQ_ASSIGN_OR_RETURN(uint32_t type, r.Get<uint32_t>(t.name));
    if (type != 0 && type != 1 && type != 2 && type != 8) {
      return absl::InvalidArgumentError(
          absl::StrCat("gguf: tensor ", t.name, " has ggml type ", type, " (supported: F32, F16, Q4_0, Q8_0)"));
    }
    t.type = static_cast<GgmlType>(type);
    SQ_ASSIGN_OR_RETURN(uint64_t offset, r.Get<uint64_t>(t.name));
    if (offset % alignment != 0) {
      return absl::InvalidArgumentError(absl::StrCat("gguf: tensor ", t.name, " offset ", offset,
                                                     " is not a multiple of ", alignment));
    }
    offsets.push_back(offset);
    file.tensors.push_back(std::move(t));
  }
  const uint64_t data_start = (r.pos() + alignment - 1) / alignment * alignment;
  std::map<uint64_t, uint64_t> ranges;  // begin -> end, to find overlaps
  for (size_t i = 0; i < file.tensors.size(); ++i) {
    GgufTensor& t = file.tensors[i];
    SQ_ASSIGN_OR_RETURN(int64_t size, GgufTensorBytes(t.type, t.ne));
    const uint64_t begin = data_start + offsets[i];
    if (begin < data_start || begin > bytes.size() || static_cast<uint64_t>(size) > bytes.size() - begin) {
      return absl::InvalidArgumentError(absl::StrCat("gguf: data of tensor ", t.name, " (", size,
                                                     " bytes at ", begin, ") runs past the end"));
    }
    const auto next = ranges.lower_bound(begin);
    if ((next != ranges.end() && next->first < begin + size) ||
        (next != ranges.begin() && std::prev(next)->second > begin)) {
      return absl::InvalidArgumentError(absl::StrCat("gguf: data of tensor ", t.name, " overlaps another"));
    }
    ranges[begin] = begin + size;
    t.data = std::string(bytes.substr(begin, static_cast<size_t>(size)));
  }
  return file;
}

absl::StatusOr<std::vector<float>> DequantizeGgufTensor(const GgufTensor& t) {
  SQ_ASSIGN_OR_RETURN(int64_t bytes, GgufTensorBytes(t.type, t.ne));
  if (static_cast<int64_t>(t.data.size()) != bytes) {
    return absl::InvalidArgumentError(absl::StrCat("gguf: tensor ", t.name, " holds ", t.data.size(),
                                                   " bytes, want ", bytes));
  }
  int64_t elements = 1;
  for (const int64_t d : t.ne) elements *= d;
  std::vector<float> out(static_cast<size_t>(elements));
  switch (t.type) {
    case GgmlType::kF32:
      std::memcpy(out.data(), t.data.data(), out.size() * sizeof(float));
      break;
    case GgmlType::kF16:
      for (int64_t i = 0; i < elements; ++i) {
        uint16_t h;
        std::memcpy(&h, t.data.data() + 2 * i, 2);
        out[i] = model::HalfToFloat(h);
      }
      break;
    case GgmlType::kQ8_0:
      DequantizeQ8_0(reinterpret_cast<const BlockQ8_0*>(t.data.data()), out.data(), elements);
      break;
    case GgmlType::kQ4_0:
      DequantizeQ4_0(reinterpret_cast<const BlockQ4_0*>(t.data.data()), out.data(), elements);
      break;
  }
  return out;
}

std::vector<float> PermuteForGgufRope(const std::vector<float>& w, int64_t rows, int64_t cols,
                                      int64_t heads) {
  return MoveRopeRows(w, rows, cols, heads, /*inverse=*/false);
}

std::vector<float> UnpermuteFromGgufRope(const std::vector<float>& w, int64_t rows, int64_t cols,
                                         int64_t heads) {
  return MoveRopeRows(w, rows, cols, heads, /*inverse=*/true);
}

absl::StatusOr<GgufFile> LlamaToGguf(const hf::HfConfig& c, const graph::Graph& graph,
                                     const std::vector<std::string>& tokens,
                                     const std::vector<std::string>& merges,
                                     const GgufExportOptions& options) {
  if (c.family != hf::ModelFamily::kLlama) {
    return absl::InvalidArgumentError("gguf: only LLaMA checkpoints are exported");
  }
  if (static_cast<int64_t>(tokens.size()) != c.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("gguf: ", tokens.size(), " tokens for vocab_size ",
                                                   c.vocab_size));
  }
  GgufFile f;
  auto& m = f.metadata;
  m.emplace_back("general.architecture", GgufValue::String("llama"));
  m.emplace_back("general.name", GgufValue::String(options.name));
  m.emplace_back("general.alignment", GgufValue::UInt32(kGgufAlignment));
  m.emplace_back("general.file_type", GgufValue::UInt32(FileType(options.weight_type)));
  m.emplace_back("llama.vocab_size", GgufValue::UInt32(static_cast<uint32_t>(c.vocab_size)));
  m.emplace_back("llama.context_length", GgufValue::UInt32(static_cast<uint32_t>(c.max_positions)));
  m.emplace_back("llama.embedding_length", GgufValue::UInt32(static_cast<uint32_t>(c.hidden_size)));
  m.emplace_back("llama.block_count", GgufValue::UInt32(static_cast<uint32_t>(c.num_layers)));
  m.emplace_back("llama.feed_forward_length",
                 GgufValue::UInt32(static_cast<uint32_t>(c.intermediate_size)));
  m.emplace_back("llama.attention.head_count", GgufValue::UInt32(static_cast<uint32_t>(c.num_heads)));
  m.emplace_back("llama.attention.head_count_kv",
                 GgufValue::UInt32(static_cast<uint32_t>(c.num_kv_heads)));
  m.emplace_back("llama.attention.key_length", GgufValue::UInt32(static_cast<uint32_t>(c.head_dim)));
  m.emplace_back("llama.attention.value_length", GgufValue::UInt32(static_cast<uint32_t>(c.head_dim)));
  m.emplace_back("llama.rope.dimension_count", GgufValue::UInt32(static_cast<uint32_t>(c.head_dim)));
  m.emplace_back("llama.rope.freq_base", GgufValue::Float32(static_cast<float>(c.rope_theta)));
  m.emplace_back("llama.attention.layer_norm_rms_epsilon",
                 GgufValue::Float32(static_cast<float>(c.norm_epsilon)));
  m.emplace_back("tokenizer.ggml.model", GgufValue::String("gpt2"));
  m.emplace_back("tokenizer.ggml.pre", GgufValue::String("gpt-2"));
  m.emplace_back("tokenizer.ggml.tokens", GgufValue::StringArray(tokens));
  // 1 = LLAMA_TOKEN_TYPE_NORMAL: the byte-level BPE vocabulary has no
  // special tokens.
  m.emplace_back("tokenizer.ggml.token_type",
                 GgufValue::Int32Array(std::vector<int32_t>(tokens.size(), 1)));
  m.emplace_back("tokenizer.ggml.merges", GgufValue::StringArray(merges));
  m.emplace_back("tokenizer.ggml.add_bos_token", GgufValue::Bool(false));

  const int64_t d = c.hidden_size, q_rows = c.num_heads * c.head_dim,
                kv_rows = c.num_kv_heads * c.head_dim, ff = c.intermediate_size;
  auto add = [&](const std::string& hf_name, const std::string& gguf_name, int64_t rows,
                 int64_t cols, GgmlType type, int64_t permute_heads) -> absl::Status {
    SQ_ASSIGN_OR_RETURN(std::vector<float> w, Floats(graph, hf_name, rows * cols));
    if (permute_heads > 0) w = PermuteForGgufRope(w, rows, cols, permute_heads);
    absl::StatusOr<GgufTensor> t = MakeTensor(gguf_name, w, rows, cols, type);
    if (!t.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(t.status().message(), " (", hf_name, ")"));
    }
    f.tensors.push_back(*std::move(t));
    return absl::OkStatus();
  };
  const GgmlType wt = options.weight_type;
  SQ_RETURN_IF_ERROR(add("model.embed_tokens.weight", "token_embd.weight", c.vocab_size, d, wt, 0));
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string l = absl::StrCat("model.layers.", i, "."), b = absl::StrCat("blk.", i, ".");
    SQ_RETURN_IF_ERROR(add(l + "input_layernorm.weight", b + "attn_norm.weight", 1, d, GgmlType::kF32, 0));
    SQ_RETURN_IF_ERROR(add(l + "self_attn.q_proj.weight", b + "attn_q.weight", q_rows, d, wt, c.num_heads));
    SQ_RETURN_IF_ERROR(add(l + "self_attn.k_proj.weight", b + "attn_k.weight", kv_rows, d, wt, c.num_kv_heads));
    SQ_RETURN_IF_ERROR(add(l + "self_attn.v_proj.weight", b + "attn_v.weight", kv_rows, d, wt, 0));
    SQ_RETURN_IF_ERROR(add(l + "self_attn.o_proj.weight", b + "attn_output.weight", d, q_rows, wt, 0));
    SQ_RETURN_IF_ERROR(add(l + "post_attention_layernorm.weight", b + "ffn_norm.weight", 1, d, GgmlType::kF32, 0));
    SQ_RETURN_IF_ERROR(add(l + "mlp.gate_proj.weight", b + "ffn_gate.weight", ff, d, wt, 0));
    SQ_RETURN_IF_ERROR(add(l + "mlp.up_proj.weight", b + "ffn_up.weight", ff, d, wt, 0));
    SQ_RETURN_IF_ERROR(add(l + "mlp.down_proj.weight", b + "ffn_down.weight", d, ff, wt, 0));
  }
  SQ_RETURN_IF_ERROR(add("model.norm.weight", "output_norm.weight", 1, d, GgmlType::kF32, 0));
  if (!c.tie_word_embeddings) {
    SQ_RETURN_IF_ERROR(add("lm_head.weight", "output.weight", c.vocab_size, d, wt, 0));
  }
  return f;
}

absl::Status ExportLlamaGguf(const std::string& hf_dir, const std::string& out_path,
                             const GgufExportOptions& options) {
  SQ_ASSIGN_OR_RETURN(hf::HfCheckpoint checkpoint, hf::LoadHfCheckpoint(hf_dir));
  SQ_ASSIGN_OR_RETURN(std::string vocab_text, model::ReadFile(hf_dir + "/vocab.json"));
  SQ_ASSIGN_OR_RETURN(model::JsonValue vocab, model::ParseJson(vocab_text));
  if (vocab.kind != model::JsonValue::Kind::kObject) {
    return absl::InvalidArgumentError(absl::StrCat(hf_dir, "/vocab.json is not an object"));
  }
  std::vector<std::string> tokens(vocab.object.size());
  std::vector<bool> seen(tokens.size(), false);
  for (const auto& [token, id] : vocab.object) {
    if (id.kind != model::JsonValue::Kind::kInteger || id.integer_value < 0 ||
        id.integer_value >= static_cast<int64_t>(tokens.size()) || seen[id.integer_value]) {
      return absl::InvalidArgumentError(absl::StrCat(hf_dir, "/vocab.json: token ", token,
                                                     " has a bad or repeated id"));
    }
    tokens[id.integer_value] = token;
    seen[id.integer_value] = true;
  }
  SQ_ASSIGN_OR_RETURN(std::string merges_text, model::ReadFile(hf_dir + "/merges.txt"));
  std::vector<std::string> merges;
  size_t begin = 0;
  while (begin < merges_text.size()) {
    size_t end = merges_text.find('\n', begin);
    if (end == std::string::npos) end = merges_text.size();
    std::string line = merges_text.substr(begin, end - begin);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty() && !(merges.empty() && line.rfind("#version", 0) == 0)) merges.push_back(line);
    begin = end + 1;
  }
  SQ_ASSIGN_OR_RETURN(GgufFile file,
                      LlamaToGguf(checkpoint.config, checkpoint.graph, tokens, merges, options));
  return model::WriteFileAtomically(out_path, SerializeGguf(file));
}

}  // namespace squeeze::core::quant_export
