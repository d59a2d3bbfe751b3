#include "core/model/safetensors.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/model/file_io.h"
#include "core/model/json.h"
#include "core/status_macros.h"

namespace squeeze::core::model {
namespace {

constexpr char kMetadataKey[] = "__metadata__";
constexpr uint64_t kLengthBytes = 8;

absl::Status Invalid(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("safetensors: ", what));
}

absl::Status WithPath(const absl::Status& status, const std::string& path) {
  if (status.ok()) return status;
  return absl::Status(status.code(),
                      absl::StrCat(path, ": ", status.message()));
}

// The header length N from the first 8 bytes, checked against the file size
// and the limit before anyone allocates N bytes.
absl::StatusOr<uint64_t> DecodeHeaderLength(std::string_view prefix,
                                            uint64_t file_size) {
  if (file_size < kLengthBytes || prefix.size() < kLengthBytes) {
    return Invalid(absl::StrCat("file is ", file_size,
                                " bytes, too short for the 8-byte header "
                                "length (truncated file?)"));
  }
  uint64_t length = 0;
  for (int i = 7; i >= 0; --i) {
    length = (length << 8) | static_cast<unsigned char>(prefix[i]);
  }
  if (length > kMaxSafetensorsHeaderBytes) {
    return Invalid(absl::StrCat("header length ", length,
                                " at byte 0 exceeds the limit of ",
                                kMaxSafetensorsHeaderBytes, " bytes"));
  }
  if (length > file_size - kLengthBytes) {
    return Invalid(absl::StrCat("header length ", length,
                                " at byte 0 runs past the end of the ",
                                file_size, "-byte file (truncated file?)"));
  }
  return length;
}

absl::StatusOr<std::vector<int64_t>> IntegerArray(const JsonValue& value,
                                                  const std::string& field,
                                                  const std::string& tensor) {
  if (value.kind != JsonValue::Kind::kArray) {
    return Invalid(absl::StrCat("tensor \"", tensor, "\": \"", field,
                                "\" is not an array (header byte ",
                                value.offset, ")"));
  }
  std::vector<int64_t> out;
  out.reserve(value.array.size());
  for (const JsonValue& element : value.array) {
    if (element.kind != JsonValue::Kind::kInteger) {
      return Invalid(absl::StrCat("tensor \"", tensor, "\": \"", field,
                                  "\" holds a non-integer (header byte ",
                                  element.offset, ")"));
    }
    out.push_back(element.integer_value);
  }
  return out;
}

absl::StatusOr<SafetensorsTensorInfo> ParseTensorEntry(const std::string& name,
                                                       const JsonValue& entry,
                                                       uint64_t data_bytes) {
  if (entry.kind != JsonValue::Kind::kObject) {
    return Invalid(absl::StrCat("tensor \"", name,
                                "\": entry is not an object (header byte ",
                                entry.offset, ")"));
  }
  const JsonValue* dtype = nullptr;
  const JsonValue* shape = nullptr;
  const JsonValue* offsets = nullptr;
  for (const auto& [key, value] : entry.object) {
    if (key == "dtype") {
      dtype = &value;
    } else if (key == "shape") {
      shape = &value;
    } else if (key == "data_offsets") {
      offsets = &value;
    } else {
      return Invalid(absl::StrCat("tensor \"", name, "\": unknown field \"",
                                  key, "\" (header byte ", value.offset, ")"));
    }
  }
  if (dtype == nullptr || shape == nullptr || offsets == nullptr) {
    return Invalid(absl::StrCat(
        "tensor \"", name,
        "\": entry needs \"dtype\", \"shape\" and \"data_offsets\" (header "
        "byte ",
        entry.offset, ")"));
  }
  if (dtype->kind != JsonValue::Kind::kString) {
    return Invalid(absl::StrCat("tensor \"", name,
                                "\": \"dtype\" is not a string (header byte ",
                                dtype->offset, ")"));
  }
  SafetensorsTensorInfo info;
  absl::StatusOr<DType> parsed_dtype = ParseDType(dtype->string_value);
  if (!parsed_dtype.ok()) {
    return Invalid(absl::StrCat("tensor \"", name, "\": ",
                                parsed_dtype.status().message()));
  }
  info.dtype = *parsed_dtype;
  SQ_ASSIGN_OR_RETURN(info.shape, IntegerArray(*shape, "shape", name));
  SQ_ASSIGN_OR_RETURN(std::vector<int64_t> range,
                      IntegerArray(*offsets, "data_offsets", name));
  absl::StatusOr<int64_t> elements =
      CheckedNumElements(info.shape, DTypeSize(info.dtype));
  if (!elements.ok()) {
    return Invalid(absl::StrCat("tensor \"", name, "\": ",
                                elements.status().message()));
  }
  const std::string where =
      absl::StrCat("tensor \"", name, "\": data_offsets [",
                   absl::StrJoin(range, ", "), "]");
  if (range.size() != 2 || range[0] < 0 || range[1] < range[0]) {
    return Invalid(absl::StrCat(
        where, " must be two offsets with 0 <= begin <= end"));
  }
  info.begin = range[0];
  info.end = range[1];
  if (info.end > data_bytes) {
    return Invalid(absl::StrCat(where, " run past the ", data_bytes,
                                "-byte data section (truncated file?)"));
  }
  const uint64_t expected = *elements * DTypeSize(info.dtype);
  if (info.end - info.begin != expected) {
    return Invalid(absl::StrCat(where, " hold ", info.end - info.begin,
                                " bytes but shape [",
                                absl::StrJoin(info.shape, ", "), "] of ",
                                DTypeName(info.dtype), " needs ", expected));
  }
  return info;
}

absl::Status CheckNoOverlap(const SafetensorsHeader& header) {
  std::vector<std::pair<const std::string*, const SafetensorsTensorInfo*>>
      by_offset;
  for (const auto& [name, info] : header.tensors) {
    by_offset.emplace_back(&name, &info);
  }
  std::sort(by_offset.begin(), by_offset.end(), [](auto a, auto b) {
    return std::make_pair(a.second->begin, a.second->end) <
           std::make_pair(b.second->begin, b.second->end);
  });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const auto& [prev_name, prev] = by_offset[i - 1];
    const auto& [name, info] = by_offset[i];
    if (info->begin < prev->end) {
      return Invalid(absl::StrCat("tensor \"", *name, "\" bytes [",
                                  info->begin, ", ", info->end,
                                  ") overlap tensor \"", *prev_name,
                                  "\" bytes [", prev->begin, ", ", prev->end,
                                  ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::map<std::string, std::string>> ParseMetadata(
    const JsonValue& value) {
  if (value.kind != JsonValue::Kind::kObject) {
    return Invalid(absl::StrCat("\"__metadata__\" is not an object (header "
                                "byte ",
                                value.offset, ")"));
  }
  std::map<std::string, std::string> metadata;
  for (const auto& [key, entry] : value.object) {
    if (entry.kind != JsonValue::Kind::kString) {
      return Invalid(absl::StrCat("metadata \"", key,
                                  "\" is not a string (header byte ",
                                  entry.offset, ")"));
    }
    metadata[key] = entry.string_value;
  }
  return metadata;
}

void AppendLittleEndian64(uint64_t value, std::string* out) {
  for (int i = 0; i < 8; ++i) {
    out->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
  }
}

}  // namespace

absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(
    std::string_view prefix, uint64_t file_size) {
  SQ_ASSIGN_OR_RETURN(const uint64_t length,
                      DecodeHeaderLength(prefix, file_size));
  if (prefix.size() < kLengthBytes + length) {
    return Invalid(absl::StrCat("only ", prefix.size(),
                                " bytes given for a header that ends at byte ",
                                kLengthBytes + length));
  }
  SafetensorsHeader header;
  header.header_bytes = length;
  header.data_bytes = file_size - kLengthBytes - length;
  absl::StatusOr<JsonValue> json =
      ParseJson(prefix.substr(kLengthBytes, length));
  if (!json.ok()) {
    return Invalid(absl::StrCat("bad header (byte offsets count from the "
                                "header start, file byte 8): ",
                                json.status().message()));
  }
  if (json->kind != JsonValue::Kind::kObject) {
    return Invalid("header is not a JSON object");
  }
  for (const auto& [name, entry] : json->object) {
    if (name == kMetadataKey) {
      SQ_ASSIGN_OR_RETURN(header.metadata, ParseMetadata(entry));
      continue;
    }
    SQ_ASSIGN_OR_RETURN(header.tensors[name],
                        ParseTensorEntry(name, entry, header.data_bytes));
  }
  SQ_RETURN_IF_ERROR(CheckNoOverlap(header));
  return header;
}

absl::StatusOr<SafetensorsFile> ParseSafetensors(std::string_view bytes) {
  SQ_ASSIGN_OR_RETURN(SafetensorsHeader header,
                      ParseSafetensorsHeader(bytes, bytes.size()));
  SafetensorsFile file;
  file.metadata = std::move(header.metadata);
  const std::string_view data =
      bytes.substr(kLengthBytes + header.header_bytes);
  for (auto& [name, info] : header.tensors) {
    Tensor& tensor = file.tensors[name];
    tensor.dtype = info.dtype;
    tensor.shape = std::move(info.shape);
    tensor.data = std::string(data.substr(info.begin, info.end - info.begin));
  }
  return file;
}

absl::StatusOr<SafetensorsFile> ReadSafetensorsFile(const std::string& path) {
  SQ_ASSIGN_OR_RETURN(const std::string bytes, ReadFile(path));
  absl::StatusOr<SafetensorsFile> file = ParseSafetensors(bytes);
  if (!file.ok()) return WithPath(file.status(), path);
  return file;
}

absl::StatusOr<SafetensorsHeader> ReadSafetensorsHeader(
    const std::string& path) {
  SQ_ASSIGN_OR_RETURN(const uint64_t file_size, FileSize(path));
  SQ_ASSIGN_OR_RETURN(
      const std::string length_bytes,
      ReadFileRange(path, 0, std::min(kLengthBytes, file_size)));
  absl::StatusOr<uint64_t> length = DecodeHeaderLength(length_bytes, file_size);
  if (!length.ok()) return WithPath(length.status(), path);
  SQ_ASSIGN_OR_RETURN(const std::string prefix,
                      ReadFileRange(path, 0, kLengthBytes + *length));
  absl::StatusOr<SafetensorsHeader> header =
      ParseSafetensorsHeader(prefix, file_size);
  if (!header.ok()) return WithPath(header.status(), path);
  return header;
}

std::string SerializeSafetensors(const SafetensorsFile& file) {
  std::vector<const std::pair<const std::string, Tensor>*> order;
  for (const auto& entry : file.tensors) order.push_back(&entry);
  std::stable_sort(order.begin(), order.end(), [](auto* a, auto* b) {
    return DTypeSize(a->second.dtype) > DTypeSize(b->second.dtype);
  });

  std::string json = "{";
  if (!file.metadata.empty()) {
    json += absl::StrCat(JsonQuote(kMetadataKey), ":{");
    bool first = true;
    for (const auto& [key, value] : file.metadata) {
      if (!first) json += ",";
      first = false;
      json += absl::StrCat(JsonQuote(key), ":", JsonQuote(value));
    }
    json += "}";
  }
  uint64_t offset = 0;
  for (const auto* entry : order) {
    const Tensor& tensor = entry->second;
    if (json.size() > 1) json += ",";
    json += absl::StrCat(JsonQuote(entry->first), ":{\"dtype\":\"",
                         DTypeName(tensor.dtype), "\",\"shape\":[",
                         absl::StrJoin(tensor.shape, ","),
                         "],\"data_offsets\":[", offset, ",",
                         offset + tensor.data.size(), "]}");
    offset += tensor.data.size();
  }
  json += "}";
  while ((kLengthBytes + json.size()) % 8 != 0) json.push_back(' ');

  std::string out;
  out.reserve(kLengthBytes + json.size() + offset);
  AppendLittleEndian64(json.size(), &out);
  out += json;
  for (const auto* entry : order) out += entry->second.data;
  return out;
}

}  // namespace squeeze::core::model
