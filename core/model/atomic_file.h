// Streaming crash-safe file writes, for content too large to hold in memory
// (uploads, downloads). Bytes go to a temporary file beside the destination;
// Commit fsyncs it, renames it over the destination and fsyncs the directory,
// so after a crash the destination holds the old content or the new, never a
// mix. Destroying an uncommitted writer removes the temporary file.
#ifndef SQUEEZE_CORE_MODEL_ATOMIC_FILE_H_
#define SQUEEZE_CORE_MODEL_ATOMIC_FILE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace squeeze::core::model {

class AtomicFileWriter {
 public:
  // Creates the temporary file for `path`; its directory must exist.
  static absl::StatusOr<std::unique_ptr<AtomicFileWriter>> Create(const std::string& path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  absl::Status Append(std::string_view bytes);
  // Makes the content durable under the destination path. Call at most once.
  absl::Status Commit();

  int64_t bytes_written() const { return bytes_written_; }

 private:
  AtomicFileWriter(std::string path, std::string temp_path, int fd)
      : path_(std::move(path)), temp_path_(std::move(temp_path)), fd_(fd) {}

  std::string path_;
  std::string temp_path_;
  int fd_;
  int64_t bytes_written_ = 0;
  bool committed_ = false;
};

}  // namespace squeeze::core::model

#endif  // SQUEEZE_CORE_MODEL_ATOMIC_FILE_H_
