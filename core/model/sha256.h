// SHA-256 over bytes and files (OpenSSL EVP underneath), as lowercase hex.
// The server names stored models and artifacts by this digest.
#ifndef SQUEEZE_CORE_MODEL_SHA256_H_
#define SQUEEZE_CORE_MODEL_SHA256_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

typedef struct evp_md_ctx_st EVP_MD_CTX;

namespace squeeze::core::model {

// Streaming hash: Update any number of times, then FinalHex once. After
// FinalHex the object starts over as if new. Not thread-safe.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(std::string_view bytes);

  // The digest of everything passed to Update since construction or the last
  // FinalHex: 64 lowercase hex characters.
  std::string FinalHex();

 private:
  EVP_MD_CTX* context_;
};

// SHA-256 of `bytes` as 64 lowercase hex characters.
std::string Sha256Hex(std::string_view bytes);

// SHA-256 of the file at `path`, read in 1 MiB chunks so that large files do
// not need to fit in memory. Errors as for ReadFile.
absl::StatusOr<std::string> Sha256File(const std::string& path);

}  // namespace squeeze::core::model

#endif  // SQUEEZE_CORE_MODEL_SHA256_H_
