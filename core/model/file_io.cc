#include "core/model/file_io.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "core/model/atomic_file.h"
#include "core/status_macros.h"

namespace squeeze::core::model {
namespace {

absl::Status ErrnoError(int error, const std::string& action,
                        const std::string& path) {
  return absl::ErrnoToStatus(error, absl::StrCat(action, " ", path));
}

// Closes the descriptor when it goes out of scope.
class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  ~ScopedFd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

absl::StatusOr<int> OpenForReading(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "open", path);
  return fd;
}

// Reads up to `length` bytes at `offset`; fewer only at end of file.
absl::StatusOr<std::string> PreadUpTo(int fd, const std::string& path,
                                      uint64_t offset, uint64_t length) {
  std::string out(length, '\0');
  uint64_t done = 0;
  while (done < length) {
    const ssize_t n =
        pread(fd, out.data() + done, length - done, offset + done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "read", path);
    }
    if (n == 0) break;
    done += n;
  }
  out.resize(done);
  return out;
}

}  // namespace

absl::StatusOr<uint64_t> FileSize(const std::string& path) {
  struct stat info;
  if (stat(path.c_str(), &info) != 0) return ErrnoError(errno, "stat", path);
  if (!S_ISREG(info.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is not a regular file"));
  }
  return static_cast<uint64_t>(info.st_size);
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  SQ_ASSIGN_OR_RETURN(const uint64_t size, FileSize(path));
  SQ_ASSIGN_OR_RETURN(const int raw_fd, OpenForReading(path));
  ScopedFd fd(raw_fd);
  SQ_ASSIGN_OR_RETURN(std::string bytes, PreadUpTo(fd.get(), path, 0, size));
  // The file may grow between stat and read; read what is left.
  while (true) {
    SQ_ASSIGN_OR_RETURN(std::string more,
                        PreadUpTo(fd.get(), path, bytes.size(), 1 << 16));
    if (more.empty()) break;
    bytes += more;
  }
  return bytes;
}

absl::StatusOr<std::string> ReadFileRange(const std::string& path,
                                          uint64_t offset, uint64_t length) {
  SQ_ASSIGN_OR_RETURN(const int raw_fd, OpenForReading(path));
  ScopedFd fd(raw_fd);
  SQ_ASSIGN_OR_RETURN(std::string bytes,
                      PreadUpTo(fd.get(), path, offset, length));
  if (bytes.size() != length) {
    return absl::OutOfRangeError(
        absl::StrCat(path, " ends at byte ", offset + bytes.size(),
                     ", before the ", length, " bytes requested at ", offset));
  }
  return bytes;
}

absl::Status WriteFileAtomically(const std::string& path,
                                 std::string_view bytes) {
  SQ_ASSIGN_OR_RETURN(std::unique_ptr<AtomicFileWriter> writer,
                      AtomicFileWriter::Create(path));
  SQ_RETURN_IF_ERROR(writer->Append(bytes));
  return writer->Commit();
}

}  // namespace squeeze::core::model
