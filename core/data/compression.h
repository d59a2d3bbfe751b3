// zlib-backed decompression for dataset files: gzip streams (.gz) and raw
// deflate streams (zip entries). Output sizes are bounded before memory is
// committed, so a small hostile file cannot ask for gigabytes.
#ifndef SQUEEZE_CORE_DATA_COMPRESSION_H_
#define SQUEEZE_CORE_DATA_COMPRESSION_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace squeeze::core::data {

// The decompressed size no reader accepts beyond: 8 GiB.
inline constexpr uint64_t kMaxDecompressedBytes = 8ull << 30;

// True when `bytes` starts with the gzip magic 1f 8b.
bool IsGzip(std::string_view bytes);

// Decompresses a gzip stream (concatenated members included).
// INVALID_ARGUMENT naming `name` when the stream is corrupt or truncated, or
// when the output would exceed `max_output_bytes`.
absl::StatusOr<std::string> Gunzip(std::string_view bytes,
                                   const std::string& name,
                                   uint64_t max_output_bytes =
                                       kMaxDecompressedBytes);

// Decompresses a raw deflate stream (no header) that must produce exactly
// `expected_bytes`. INVALID_ARGUMENT naming `name` otherwise.
absl::StatusOr<std::string> InflateRaw(std::string_view bytes,
                                       uint64_t expected_bytes,
                                       const std::string& name);

// Gunzip when IsGzip(bytes), else the bytes as they are.
absl::StatusOr<std::string> MaybeGunzip(std::string bytes,
                                        const std::string& name);

}  // namespace squeeze::core::data

#endif  // SQUEEZE_CORE_DATA_COMPRESSION_H_
