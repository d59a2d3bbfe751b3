#include "core/data/compression.h"

#include <zlib.h>

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace squeeze::core::data {
namespace {

// Inflates with `window_bits` (16 + 15: gzip, -15: raw) into at most
// `max_output_bytes`; `restart_members` continues after a gzip member ends.
absl::StatusOr<std::string> Inflate(std::string_view bytes, int window_bits,
                                    uint64_t max_output_bytes,
                                    bool restart_members,
                                    const std::string& name) {
  z_stream stream{};
  if (inflateInit2(&stream, window_bits) != Z_OK) {
    return absl::InternalError(absl::StrCat(name, ": inflateInit2 failed"));
  }
  std::string out;
  stream.next_in =
      reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  stream.avail_in = static_cast<uInt>(
      std::min<size_t>(bytes.size(), std::numeric_limits<uInt>::max()));
  size_t consumed_before = 0;
  char buffer[1 << 16];
  int result = Z_OK;
  while (true) {
    stream.next_out = reinterpret_cast<Bytef*>(buffer);
    stream.avail_out = sizeof(buffer);
    result = inflate(&stream, Z_NO_FLUSH);
    const size_t produced = sizeof(buffer) - stream.avail_out;
    if (out.size() + produced > max_output_bytes) {
      inflateEnd(&stream);
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": decompresses to more than ", max_output_bytes,
                       " bytes"));
    }
    out.append(buffer, produced);
    if (result == Z_STREAM_END) {
      const size_t consumed = consumed_before + stream.total_in;
      if (!restart_members || consumed >= bytes.size()) break;
      // Another gzip member follows.
      consumed_before = consumed;
      inflateReset(&stream);
      stream.next_in = reinterpret_cast<Bytef*>(
          const_cast<char*>(bytes.data() + consumed));
      stream.avail_in = static_cast<uInt>(std::min<size_t>(
          bytes.size() - consumed, std::numeric_limits<uInt>::max()));
      continue;
    }
    if (result == Z_OK) {
      if (stream.avail_in == 0 && stream.avail_out != 0) {
        // Refill for inputs beyond 4 GiB; otherwise the data ended early.
        const size_t consumed = consumed_before + stream.total_in;
        if (consumed >= bytes.size()) break;
        stream.next_in = reinterpret_cast<Bytef*>(
            const_cast<char*>(bytes.data() + consumed));
        stream.avail_in = static_cast<uInt>(std::min<size_t>(
            bytes.size() - consumed, std::numeric_limits<uInt>::max()));
      }
      continue;
    }
    if (result == Z_BUF_ERROR && stream.avail_in == 0) break;
    const std::string detail = stream.msg != nullptr ? stream.msg : "error";
    inflateEnd(&stream);
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": corrupt compressed data (zlib: ", detail,
                     ") at input byte ", consumed_before + stream.total_in));
  }
  inflateEnd(&stream);
  if (result != Z_STREAM_END) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": compressed data is truncated after ",
                     bytes.size(), " bytes"));
  }
  return out;
}

}  // namespace

bool IsGzip(std::string_view bytes) {
  return bytes.size() >= 2 && static_cast<uint8_t>(bytes[0]) == 0x1f &&
         static_cast<uint8_t>(bytes[1]) == 0x8b;
}

absl::StatusOr<std::string> Gunzip(std::string_view bytes,
                                   const std::string& name,
                                   uint64_t max_output_bytes) {
  return Inflate(bytes, 16 + MAX_WBITS, max_output_bytes,
                 /*restart_members=*/true, name);
}

absl::StatusOr<std::string> InflateRaw(std::string_view bytes,
                                       uint64_t expected_bytes,
                                       const std::string& name) {
  absl::StatusOr<std::string> out =
      Inflate(bytes, -MAX_WBITS, expected_bytes, /*restart_members=*/false,
              name);
  if (out.ok() && out->size() != expected_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": decompressed to ", out->size(),
                     " bytes, expected ", expected_bytes));
  }
  return out;
}

absl::StatusOr<std::string> MaybeGunzip(std::string bytes,
                                        const std::string& name) {
  if (!IsGzip(bytes)) return bytes;
  return Gunzip(bytes, name);
}

}  // namespace squeeze::core::data
