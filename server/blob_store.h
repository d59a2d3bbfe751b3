// BlobStore: content-addressed files under <data_dir>/blobs, named by the
// lower-case hex SHA-256 of their bytes (blobs/ab/abcdef...). A blob appears
// at its address only once all of its bytes are durable on disk, so a reader
// never sees a partial blob, and a crash mid-upload leaves only a file in
// blobs/incoming/, which Open clears. Thread-safe. Ownership (which tenant
// may read what) is not kept here but in the JobStore.
#ifndef SQUEEZE_SERVER_BLOB_STORE_H_
#define SQUEEZE_SERVER_BLOB_STORE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/model/atomic_file.h"
#include "core/model/sha256.h"
#include "server/job_spec_validation.h"

namespace squeeze::server {

class BlobStore {
 public:
  static absl::StatusOr<std::unique_ptr<BlobStore>> Open(const std::string& root);

  // One upload in progress: bytes are hashed and counted as they arrive.
  class Upload {
   public:
    // RESOURCE_EXHAUSTED once more bytes arrive than the declared size.
    absl::Status Append(std::string_view bytes);
    // Checks the size (and the digest, when `expected_sha256` is not empty),
    // then moves the bytes to their address. Returns the digest.
    absl::StatusOr<std::string> Finish(const std::string& expected_sha256);

   private:
    friend class BlobStore;
    Upload(BlobStore* store, int64_t declared_size,
           std::unique_ptr<core::model::AtomicFileWriter> file, std::string incoming_path)
        : store_(store), declared_size_(declared_size), file_(std::move(file)),
          incoming_path_(std::move(incoming_path)) {}
    BlobStore* store_;
    int64_t declared_size_;
    std::unique_ptr<core::model::AtomicFileWriter> file_;
    std::string incoming_path_;
    core::model::Sha256 hash_;
  };

  absl::StatusOr<std::unique_ptr<Upload>> BeginUpload(int64_t declared_size);

  bool Contains(const std::string& sha256) const;
  // Where the blob lives; the file exists only when Contains is true.
  std::string PathFor(const std::string& sha256) const;
  absl::StatusOr<int64_t> SizeOf(const std::string& sha256) const;

 private:
  explicit BlobStore(std::string root) : root_(std::move(root)) {}
  std::string root_;
  std::atomic<uint64_t> next_upload_{0};
};

}  // namespace squeeze::server

#endif  // SQUEEZE_SERVER_BLOB_STORE_H_
