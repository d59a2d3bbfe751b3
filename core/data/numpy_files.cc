#include "core/data/numpy_files.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/data/compression.h"
#include "core/model/file_io.h"
#include "core/status_macros.h"

namespace squeeze::core::data {
namespace {

using model::DType;
using model::Tensor;

constexpr std::string_view kNpyMagic = "\x93NUMPY";
constexpr int kMaxNpyDimensions = 32;

absl::Status Invalid(const std::string& name, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(name, ": ", what));
}

uint64_t ReadLittleEndian(std::string_view bytes, size_t pos, int size) {
  uint64_t value = 0;
  for (int i = size - 1; i >= 0; --i) {
    value = (value << 8) | static_cast<uint8_t>(bytes[pos + i]);
  }
  return value;
}

// The fields of a .npy header dict.
struct NpyHeader {
  std::string descr;
  bool fortran_order = false;
  std::vector<int64_t> shape;
};

// A parser for the Python literal dict in a .npy header: string keys;
// values that are strings, True/False, or tuples of non-negative integers.
class NpyHeaderParser {
 public:
  NpyHeaderParser(std::string_view text, const std::string& name)
      : text_(text), name_(name) {}

  absl::StatusOr<NpyHeader> Parse() {
    NpyHeader header;
    bool has_descr = false, has_order = false, has_shape = false;
    SQ_RETURN_IF_ERROR(Expect('{'));
    while (true) {
      SkipSpace();
      if (Peek() == '}') break;
      SQ_ASSIGN_OR_RETURN(const std::string key, ParseString());
      SQ_RETURN_IF_ERROR(Expect(':'));
      SkipSpace();
      if (key == "descr") {
        SQ_ASSIGN_OR_RETURN(header.descr, ParseString());
        has_descr = true;
      } else if (key == "fortran_order") {
        SQ_ASSIGN_OR_RETURN(header.fortran_order, ParseBool());
        has_order = true;
      } else if (key == "shape") {
        SQ_ASSIGN_OR_RETURN(header.shape, ParseShape());
        has_shape = true;
      } else {
        return Error(absl::StrCat("unknown key '", key, "'"));
      }
      SkipSpace();
      if (Peek() == ',') ++pos_;
    }
    if (!has_descr || !has_order || !has_shape) {
      return Error("needs 'descr', 'fortran_order' and 'shape'");
    }
    return header;
  }

 private:
  absl::Status Error(const std::string& what) const {
    return Invalid(name_, absl::StrCat(".npy header: ", what,
                                       " at header byte ", pos_));
  }
  char Peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  void SkipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\n')) {
      ++pos_;
    }
  }
  absl::Status Expect(char c) {
    SkipSpace();
    if (Peek() != c) return Error(absl::StrCat("expected '", std::string(1, c), "'"));
    ++pos_;
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> ParseString() {
    SkipSpace();
    const char quote = Peek();
    if (quote != '\'' && quote != '"') return Error("expected a quoted string");
    const size_t end = text_.find(quote, pos_ + 1);
    if (end == std::string_view::npos) return Error("unterminated string");
    std::string value(text_.substr(pos_ + 1, end - pos_ - 1));
    pos_ = end + 1;
    return value;
  }
  absl::StatusOr<bool> ParseBool() {
    for (const auto& [word, value] :
         {std::pair<std::string_view, bool>{"True", true}, {"False", false}}) {
      if (text_.substr(pos_, word.size()) == word) {
        pos_ += word.size();
        return value;
      }
    }
    return Error("expected True or False");
  }
  absl::StatusOr<std::vector<int64_t>> ParseShape() {
    SQ_RETURN_IF_ERROR(Expect('('));
    std::vector<int64_t> shape;
    while (true) {
      SkipSpace();
      if (Peek() == ')') {
        ++pos_;
        return shape;
      }
      if (Peek() < '0' || Peek() > '9') return Error("expected a dimension");
      int64_t dim = 0;
      while (Peek() >= '0' && Peek() <= '9') {
        if (dim > (std::numeric_limits<int64_t>::max() - 9) / 10) {
          return Error("dimension does not fit in int64");
        }
        dim = dim * 10 + (text_[pos_++] - '0');
      }
      // Python writes a trailing 'L' for longs in old files.
      if (Peek() == 'L') ++pos_;
      if (shape.size() == kMaxNpyDimensions) {
        return Error(absl::StrCat("more than ", kMaxNpyDimensions,
                                  " dimensions"));
      }
      shape.push_back(dim);
      SkipSpace();
      if (Peek() == ',') ++pos_;
    }
  }

  std::string_view text_;
  const std::string& name_;
  size_t pos_ = 0;
};

struct NpyElement {
  bool big_endian;
  char kind;       // 'f', 'i', 'u', 'b'
  int file_size;   // bytes per element in the file
  DType dtype;     // what the tensor holds
};

absl::StatusOr<NpyElement> ParseDescr(const std::string& descr,
                                      const std::string& name) {
  const auto bad = [&] {
    return Invalid(name, absl::StrCat(".npy descr '", descr,
                                      "' is not a supported element type "
                                      "(f2 f4 f8 i1 i2 i4 i8 u1 b1)"));
  };
  if (descr.size() != 3) return bad();
  const char order = descr[0];
  if (order != '<' && order != '>' && order != '|' && order != '=') return bad();
  const std::string type = descr.substr(1);
  NpyElement element{order == '>', descr[1], descr[2] - '0', DType::kF32};
  if (type == "f2") element.dtype = DType::kF16;
  else if (type == "f4" || type == "f8") element.dtype = DType::kF32;
  else if (type == "i1") element.dtype = DType::kI8;
  else if (type == "i2" || type == "i4") element.dtype = DType::kI32;
  else if (type == "i8") element.dtype = DType::kI64;
  else if (type == "u1") element.dtype = DType::kU8;
  else if (type == "b1") element.dtype = DType::kBool;
  else return bad();
  return element;
}

// Converts `count` elements to little-endian Tensor bytes.
std::string ConvertElements(std::string_view data, int64_t count,
                            const NpyElement& element) {
  const int size = element.file_size;
  std::string out;
  if (size == 1 || (!element.big_endian && (element.kind != 'f' || size != 8) &&
                    (element.kind != 'i' || size != 2))) {
    out.assign(data.data(), count * size);
    return out;
  }
  out.reserve(count * model::DTypeSize(element.dtype));
  for (int64_t i = 0; i < count; ++i) {
    char bytes[8];
    for (int b = 0; b < size; ++b) {
      bytes[b] = element.big_endian ? data[i * size + size - 1 - b]
                                    : data[i * size + b];
    }
    if (element.kind == 'f' && size == 8) {
      double value;
      std::memcpy(&value, bytes, 8);
      const float narrowed = static_cast<float>(value);
      out.append(reinterpret_cast<const char*>(&narrowed), 4);
    } else if (element.kind == 'i' && size == 2) {
      int16_t value;
      std::memcpy(&value, bytes, 2);
      const int32_t widened = value;
      out.append(reinterpret_cast<const char*>(&widened), 4);
    } else {
      out.append(bytes, size);
    }
  }
  return out;
}

constexpr uint32_t kEndOfCentralDirectory = 0x06054b50;
constexpr uint32_t kZip64EndLocator = 0x07064b50;
constexpr uint32_t kZip64End = 0x06064b50;
constexpr uint32_t kCentralEntry = 0x02014b50;
constexpr uint32_t kLocalHeader = 0x04034b50;
constexpr uint32_t kZip32Max = 0xFFFFFFFF;

struct ZipEntry {
  std::string entry_name;
  uint16_t flags = 0;
  uint16_t method = 0;
  uint32_t crc32 = 0;
  uint64_t compressed_size = 0;
  uint64_t uncompressed_size = 0;
  uint64_t local_offset = 0;
};

// Bounds-checked little-endian reads over an archive, failing with the
// archive name and what was being read.
class ZipReader {
 public:
  ZipReader(std::string_view bytes, const std::string& name)
      : bytes_(bytes), name_(name) {}

  absl::StatusOr<uint64_t> Read(uint64_t pos, int size,
                                const std::string& field) const {
    if (pos > bytes_.size() || bytes_.size() - pos < static_cast<uint64_t>(size)) {
      return Invalid(name_, absl::StrCat("zip ", field, " at byte ", pos,
                                         " lies past the end (", bytes_.size(),
                                         " bytes)"));
    }
    return ReadLittleEndian(bytes_, pos, size);
  }
  absl::StatusOr<std::string_view> Slice(uint64_t pos, uint64_t size,
                                         const std::string& field) const {
    if (pos > bytes_.size() || bytes_.size() - pos < size) {
      return Invalid(name_, absl::StrCat("zip ", field, " [", pos, ", +", size,
                                         ") lies past the end (",
                                         bytes_.size(), " bytes)"));
    }
    return bytes_.substr(pos, size);
  }
  size_t size() const { return bytes_.size(); }

 private:
  std::string_view bytes_;
  const std::string& name_;
};

// Offset of the end-of-central-directory record: the last signature within
// the final 22 + 65535 bytes.
absl::StatusOr<uint64_t> FindEndOfCentralDirectory(std::string_view bytes,
                                                   const std::string& name) {
  if (bytes.size() >= 22) {
    const size_t lowest = bytes.size() >= 22 + 65535 ? bytes.size() - 22 - 65535 : 0;
    for (size_t pos = bytes.size() - 22 + 1; pos-- > lowest;) {
      if (ReadLittleEndian(bytes, pos, 4) == kEndOfCentralDirectory) return pos;
    }
  }
  return Invalid(name, "not a zip archive (no end-of-central-directory record)");
}

// Replaces 0xFFFFFFFF sizes and offset with their zip64 extra-field values.
absl::Status ApplyZip64Extra(std::string_view extra, ZipEntry* entry,
                             const std::string& where) {
  size_t pos = 0;
  while (pos + 4 <= extra.size()) {
    const uint64_t id = ReadLittleEndian(extra, pos, 2);
    const uint64_t size = ReadLittleEndian(extra, pos + 2, 2);
    if (pos + 4 + size > extra.size()) break;
    if (id == 0x0001) {
      std::string_view field = extra.substr(pos + 4, size);
      size_t at = 0;
      for (uint64_t* value : {&entry->uncompressed_size,
                              &entry->compressed_size, &entry->local_offset}) {
        if (*value != kZip32Max) continue;
        if (at + 8 > field.size()) {
          return absl::InvalidArgumentError(
              absl::StrCat(where, ": zip64 extra field is too short"));
        }
        *value = ReadLittleEndian(field, at, 8);
        at += 8;
      }
      return absl::OkStatus();
    }
    pos += 4 + size;
  }
  if (entry->uncompressed_size == kZip32Max ||
      entry->compressed_size == kZip32Max || entry->local_offset == kZip32Max) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": zip64 sizes without a zip64 extra field"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ZipEntry>> ReadCentralDirectory(
    const ZipReader& zip, std::string_view bytes, const std::string& name) {
  SQ_ASSIGN_OR_RETURN(const uint64_t end, FindEndOfCentralDirectory(bytes, name));
  SQ_ASSIGN_OR_RETURN(uint64_t count, zip.Read(end + 10, 2, "entry count"));
  SQ_ASSIGN_OR_RETURN(uint64_t directory_size,
                      zip.Read(end + 12, 4, "central directory size"));
  SQ_ASSIGN_OR_RETURN(uint64_t directory_offset,
                      zip.Read(end + 16, 4, "central directory offset"));
  if (count == 0xFFFF || directory_size == kZip32Max ||
      directory_offset == kZip32Max) {
    if (end < 20) return Invalid(name, "zip64 end record locator is missing");
    SQ_ASSIGN_OR_RETURN(const uint64_t signature,
                        zip.Read(end - 20, 4, "zip64 locator"));
    if (signature != kZip64EndLocator) {
      return Invalid(name, "zip64 end record locator is missing");
    }
    SQ_ASSIGN_OR_RETURN(const uint64_t zip64_end,
                        zip.Read(end - 12, 8, "zip64 end record offset"));
    SQ_ASSIGN_OR_RETURN(const uint64_t zip64_signature,
                        zip.Read(zip64_end, 4, "zip64 end record"));
    if (zip64_signature != kZip64End) {
      return Invalid(name, absl::StrCat("no zip64 end record at byte ",
                                        zip64_end));
    }
    SQ_ASSIGN_OR_RETURN(count, zip.Read(zip64_end + 32, 8, "entry count"));
    SQ_ASSIGN_OR_RETURN(directory_size,
                        zip.Read(zip64_end + 40, 8, "central directory size"));
    SQ_ASSIGN_OR_RETURN(directory_offset, zip.Read(zip64_end + 48, 8,
                                                   "central directory offset"));
  }
  SQ_ASSIGN_OR_RETURN(
      const std::string_view directory,
      zip.Slice(directory_offset, directory_size, "central directory"));
  // Each entry takes at least 46 bytes, which bounds what `count` may claim.
  if (count > directory.size() / 46) {
    return Invalid(name, absl::StrCat("zip claims ", count, " entries in a ",
                                      directory.size(),
                                      "-byte central directory"));
  }
  std::vector<ZipEntry> entries;
  uint64_t pos = directory_offset;
  for (uint64_t i = 0; i < count; ++i) {
    const std::string where = absl::StrCat("central directory entry ", i);
    SQ_ASSIGN_OR_RETURN(const uint64_t signature, zip.Read(pos, 4, where));
    if (signature != kCentralEntry) {
      return Invalid(name, absl::StrCat(where, " at byte ", pos,
                                        " has a bad signature"));
    }
    ZipEntry entry;
    SQ_ASSIGN_OR_RETURN(entry.flags, zip.Read(pos + 8, 2, where));
    SQ_ASSIGN_OR_RETURN(entry.method, zip.Read(pos + 10, 2, where));
    SQ_ASSIGN_OR_RETURN(entry.crc32, zip.Read(pos + 16, 4, where));
    SQ_ASSIGN_OR_RETURN(entry.compressed_size, zip.Read(pos + 20, 4, where));
    SQ_ASSIGN_OR_RETURN(entry.uncompressed_size, zip.Read(pos + 24, 4, where));
    SQ_ASSIGN_OR_RETURN(const uint64_t name_length, zip.Read(pos + 28, 2, where));
    SQ_ASSIGN_OR_RETURN(const uint64_t extra_length, zip.Read(pos + 30, 2, where));
    SQ_ASSIGN_OR_RETURN(const uint64_t comment_length,
                        zip.Read(pos + 32, 2, where));
    SQ_ASSIGN_OR_RETURN(entry.local_offset, zip.Read(pos + 42, 4, where));
    SQ_ASSIGN_OR_RETURN(const std::string_view entry_name,
                        zip.Slice(pos + 46, name_length, where));
    SQ_ASSIGN_OR_RETURN(const std::string_view extra,
                        zip.Slice(pos + 46 + name_length, extra_length, where));
    entry.entry_name = std::string(entry_name);
    SQ_RETURN_IF_ERROR(ApplyZip64Extra(
        extra, &entry, absl::StrCat(name, ": entry '", entry.entry_name, "'")));
    entries.push_back(std::move(entry));
    pos += 46 + name_length + extra_length + comment_length;
  }
  return entries;
}

absl::StatusOr<std::string> ReadEntryBytesUnchecked(const ZipReader& zip,
                                           const ZipEntry& entry,
                                           const std::string& where) {
  if (entry.flags & 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": encrypted entries are not supported"));
  }
  SQ_ASSIGN_OR_RETURN(const uint64_t signature,
                      zip.Read(entry.local_offset, 4, where));
  if (signature != kLocalHeader) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": no local header at byte ", entry.local_offset));
  }
  SQ_ASSIGN_OR_RETURN(const uint64_t name_length,
                      zip.Read(entry.local_offset + 26, 2, where));
  SQ_ASSIGN_OR_RETURN(const uint64_t extra_length,
                      zip.Read(entry.local_offset + 28, 2, where));
  SQ_ASSIGN_OR_RETURN(
      const std::string_view data,
      zip.Slice(entry.local_offset + 30 + name_length + extra_length,
                entry.compressed_size, where));
  if (entry.method == 0) {
    if (entry.compressed_size != entry.uncompressed_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": stored entry has compressed size ", entry.compressed_size,
          " != size ", entry.uncompressed_size));
    }
    return std::string(data);
  }
  if (entry.method == 8) {
    if (entry.uncompressed_size > kMaxDecompressedBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": claims ", entry.uncompressed_size,
                       " uncompressed bytes"));
    }
    return InflateRaw(data, entry.uncompressed_size, where);
  }
  return absl::InvalidArgumentError(
      absl::StrCat(where, ": compression method ", entry.method,
                   " is not supported (only 0 stored and 8 deflate)"));
}

// The entry's bytes, verified against its CRC-32.
absl::StatusOr<std::string> ReadEntryBytes(const ZipReader& zip,
                                           const ZipEntry& entry,
                                           const std::string& where) {
  SQ_ASSIGN_OR_RETURN(std::string bytes,
                      ReadEntryBytesUnchecked(zip, entry, where));
  uLong crc = crc32(0L, Z_NULL, 0);
  for (size_t done = 0; done < bytes.size();) {
    const uInt chunk = static_cast<uInt>(std::min<size_t>(bytes.size() - done, 1u << 30));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(bytes.data() + done), chunk);
    done += chunk;
  }
  if (crc != entry.crc32) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": CRC-32 mismatch (stored ", entry.crc32, ", computed ", crc,
        ")"));
  }
  return bytes;
}

}  // namespace

absl::StatusOr<Tensor> ParseNpy(std::string_view bytes,
                                const std::string& name) {
  if (bytes.substr(0, kNpyMagic.size()) != kNpyMagic) {
    return Invalid(name, "not a .npy file (magic \\x93NUMPY missing)");
  }
  if (bytes.size() < 10) return Invalid(name, ".npy preamble is truncated");
  const int major = static_cast<uint8_t>(bytes[6]);
  if (major < 1 || major > 3) {
    return Invalid(name, absl::StrCat(".npy version ", major,
                                      " is not 1, 2 or 3"));
  }
  const int length_bytes = major == 1 ? 2 : 4;
  if (bytes.size() < 8u + length_bytes) {
    return Invalid(name, ".npy preamble is truncated");
  }
  const uint64_t header_length = ReadLittleEndian(bytes, 8, length_bytes);
  const uint64_t data_start = 8 + length_bytes + header_length;
  if (data_start > bytes.size()) {
    return Invalid(name, absl::StrCat(".npy header length ", header_length,
                                      " runs past the end (", bytes.size(),
                                      " bytes)"));
  }
  SQ_ASSIGN_OR_RETURN(
      const NpyHeader header,
      NpyHeaderParser(bytes.substr(8 + length_bytes, header_length), name)
          .Parse());
  if (header.fortran_order) {
    return Invalid(name, ".npy fortran_order True is not supported; save a "
                         "C-order array (np.ascontiguousarray)");
  }
  SQ_ASSIGN_OR_RETURN(const NpyElement element, ParseDescr(header.descr, name));
  absl::StatusOr<int64_t> count =
      model::CheckedNumElements(header.shape, element.file_size);
  if (!count.ok()) {
    return Invalid(name, absl::StrCat(".npy shape (",
                                      absl::StrJoin(header.shape, ", "),
                                      ") is too large"));
  }
  const int64_t data_bytes = *count * element.file_size;
  if (bytes.size() - data_start != static_cast<uint64_t>(data_bytes)) {
    return Invalid(name, absl::StrCat(".npy shape (",
                                      absl::StrJoin(header.shape, ", "), ") '",
                                      header.descr, "' needs ", data_bytes,
                                      " data bytes, file has ",
                                      bytes.size() - data_start));
  }
  Tensor tensor;
  tensor.dtype = element.dtype;
  tensor.shape = header.shape;
  tensor.data = ConvertElements(bytes.substr(data_start), *count, element);
  return tensor;
}

absl::StatusOr<Tensor> ReadNpyFile(const std::string& path) {
  SQ_ASSIGN_OR_RETURN(std::string bytes, model::ReadFile(path));
  return ParseNpy(bytes, path);
}

absl::StatusOr<std::map<std::string, Tensor>> ParseNpz(
    std::string_view bytes, const std::string& name) {
  const ZipReader zip(bytes, name);
  SQ_ASSIGN_OR_RETURN(const std::vector<ZipEntry> entries,
                      ReadCentralDirectory(zip, bytes, name));
  std::map<std::string, Tensor> arrays;
  for (const ZipEntry& entry : entries) {
    const std::string where = absl::StrCat(name, ": entry '", entry.entry_name, "'");
    constexpr std::string_view kSuffix = ".npy";
    if (entry.entry_name.size() <= kSuffix.size() ||
        entry.entry_name.compare(entry.entry_name.size() - kSuffix.size(),
                                 kSuffix.size(), kSuffix) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, " is not a .npy file"));
    }
    SQ_ASSIGN_OR_RETURN(const std::string npy, ReadEntryBytes(zip, entry, where));
    SQ_ASSIGN_OR_RETURN(Tensor tensor, ParseNpy(npy, where));
    const std::string array_name =
        entry.entry_name.substr(0, entry.entry_name.size() - kSuffix.size());
    if (!arrays.emplace(array_name, std::move(tensor)).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, " appears twice"));
    }
  }
  return arrays;
}

absl::StatusOr<std::map<std::string, Tensor>> ReadNpzFile(
    const std::string& path) {
  SQ_ASSIGN_OR_RETURN(std::string bytes, model::ReadFile(path));
  return ParseNpz(bytes, path);
}

}  // namespace squeeze::core::data
