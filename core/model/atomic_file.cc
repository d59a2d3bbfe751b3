#include "core/model/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"

namespace squeeze::core::model {
namespace {

absl::Status ErrnoStatus(int error, std::string_view what, const std::string& path) {
  absl::StatusCode code = absl::StatusCode::kInternal;
  if (error == ENOENT) code = absl::StatusCode::kNotFound;
  if (error == EACCES || error == EPERM) code = absl::StatusCode::kPermissionDenied;
  if (error == ENOSPC || error == EDQUOT) code = absl::StatusCode::kResourceExhausted;
  return absl::Status(code, absl::StrCat(std::string(what), " ", path, ": ", std::strerror(error)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<AtomicFileWriter>> AtomicFileWriter::Create(
    const std::string& path) {
  std::string temp = path + ".tmp-XXXXXX";
  int fd = mkstemp(temp.data());
  if (fd < 0) return ErrnoStatus(errno, "create temporary file for", path);
  // mkstemp creates the file 0600; the result should be readable like any
  // file the process writes.
  if (fchmod(fd, 0644) != 0) {
    const int error = errno;
    close(fd);
    unlink(temp.c_str());
    return ErrnoStatus(error, "chmod temporary file for", path);
  }
  return std::unique_ptr<AtomicFileWriter>(new AtomicFileWriter(path, temp, fd));
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) close(fd_);
  if (!committed_) unlink(temp_path_.c_str());
}

absl::Status AtomicFileWriter::Append(std::string_view bytes) {
  if (committed_ || fd_ < 0) return absl::FailedPreconditionError("append after commit");
  while (!bytes.empty()) {
    ssize_t n = write(fd_, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "write", temp_path_);
    }
    bytes.remove_prefix(static_cast<size_t>(n));
    bytes_written_ += n;
  }
  return absl::OkStatus();
}

absl::Status AtomicFileWriter::Commit() {
  if (committed_ || fd_ < 0) return absl::FailedPreconditionError("commit called twice");
  if (fsync(fd_) != 0) return ErrnoStatus(errno, "fsync", temp_path_);
  if (close(fd_) != 0) {
    fd_ = -1;
    return ErrnoStatus(errno, "close", temp_path_);
  }
  fd_ = -1;
  if (rename(temp_path_.c_str(), path_.c_str()) != 0) {
    return ErrnoStatus(errno, "rename onto", path_);
  }
  committed_ = true;
  std::string dir = std::filesystem::path(path_).parent_path().string();
  if (dir.empty()) dir = ".";
  int dir_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dir_fd < 0) return ErrnoStatus(errno, "open directory", dir);
  int rc = fsync(dir_fd);
  int error = errno;
  close(dir_fd);
  if (rc != 0) return ErrnoStatus(error, "fsync directory", dir);
  return absl::OkStatus();
}

}  // namespace squeeze::core::model
