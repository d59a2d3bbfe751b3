// Whole-file reads and crash-safe whole-file writes. Errors carry the errno
// mapped to its absl code (ENOENT -> NOT_FOUND, EACCES -> PERMISSION_DENIED,
// ...) and name the path.
#ifndef SQUEEZE_CORE_MODEL_FILE_IO_H_
#define SQUEEZE_CORE_MODEL_FILE_IO_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace squeeze::core::model {

// The whole content of the file at `path`.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Exactly `length` bytes starting at `offset`. OUT_OF_RANGE when the file
// ends first.
absl::StatusOr<std::string> ReadFileRange(const std::string& path,
                                          uint64_t offset, uint64_t length);

// Size in bytes of the regular file at `path`.
absl::StatusOr<uint64_t> FileSize(const std::string& path);

// Replaces the file at `path` with `bytes` so that after a crash the path
// holds either the old content or the new, never a mix (AtomicFileWriter in
// one call: temporary file in the same directory, fsync, rename, fsync of
// the directory). On error the temporary file is removed and `path` is left
// as it was.
absl::Status WriteFileAtomically(const std::string& path,
                                 std::string_view bytes);

}  // namespace squeeze::core::model

#endif  // SQUEEZE_CORE_MODEL_FILE_IO_H_
