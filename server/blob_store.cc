#include "server/blob_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace squeeze::server {
namespace fs = std::filesystem;

absl::StatusOr<std::unique_ptr<BlobStore>> BlobStore::Open(const std::string& root) {
  std::error_code error;
  fs::remove_all(fs::path(root) / "incoming", error);
  fs::create_directories(fs::path(root) / "incoming", error);
  if (error) {
    return absl::UnavailableError(absl::StrCat("blob store: cannot create ", root,
                                               "/incoming: ", error.message()));
  }
  return std::unique_ptr<BlobStore>(new BlobStore(root));
}

absl::StatusOr<std::unique_ptr<BlobStore::Upload>> BlobStore::BeginUpload(
    int64_t declared_size) {
  std::string incoming =
      absl::StrCat(root_, "/incoming/upload-", getpid(), "-", next_upload_.fetch_add(1));
  SQ_ASSIGN_OR_RETURN(auto file, core::model::AtomicFileWriter::Create(incoming));
  return std::unique_ptr<Upload>(new Upload(this, declared_size, std::move(file), incoming));
}

absl::Status BlobStore::Upload::Append(std::string_view bytes) {
  if (file_->bytes_written() + static_cast<int64_t>(bytes.size()) > declared_size_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("upload: more bytes than the declared size_bytes ", declared_size_));
  }
  hash_.Update(bytes);
  return file_->Append(bytes);
}

absl::StatusOr<std::string> BlobStore::Upload::Finish(const std::string& expected_sha256) {
  if (file_->bytes_written() != declared_size_) {
    return absl::InvalidArgumentError(absl::StrCat("upload: received ", file_->bytes_written(),
                                                   " bytes, header declared size_bytes ",
                                                   declared_size_));
  }
  std::string digest = hash_.FinalHex();
  if (!expected_sha256.empty() && digest != expected_sha256) {
    return absl::InvalidArgumentError(absl::StrCat(
        "upload: content hashes to ", digest, ", header declared sha256 ", expected_sha256));
  }
  SQ_RETURN_IF_ERROR(file_->Commit());
  std::string final_path = store_->PathFor(digest);
  std::error_code error;
  fs::create_directories(fs::path(final_path).parent_path(), error);
  if (error) return absl::UnavailableError(absl::StrCat("blob store: ", error.message()));
  // Identical concurrent uploads both land on the same address: rename is
  // atomic, and either copy is the right content.
  if (rename(incoming_path_.c_str(), final_path.c_str()) != 0) {
    return absl::UnavailableError(
        absl::StrCat("blob store: rename to ", final_path, ": ", std::strerror(errno)));
  }
  int dir_fd = open(fs::path(final_path).parent_path().c_str(), O_RDONLY | O_DIRECTORY);
  if (dir_fd >= 0) {
    fsync(dir_fd);
    close(dir_fd);
  }
  return digest;
}

bool BlobStore::Contains(const std::string& sha256) const {
  if (!IsSha256Hex(sha256)) return false;
  std::error_code error;
  return fs::is_regular_file(PathFor(sha256), error);
}

std::string BlobStore::PathFor(const std::string& sha256) const {
  return absl::StrCat(root_, "/", sha256.substr(0, 2), "/", sha256);
}

absl::StatusOr<int64_t> BlobStore::SizeOf(const std::string& sha256) const {
  std::error_code error;
  auto size = fs::file_size(PathFor(sha256), error);
  if (error) return absl::NotFoundError(absl::StrCat("blob ", sha256, " not found"));
  return static_cast<int64_t>(size);
}

}  // namespace squeeze::server
