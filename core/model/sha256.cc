#include "core/model/sha256.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/model/file_io.h"
#include "core/status_macros.h"

namespace squeeze::core::model {
namespace {

// EVP calls fail only on allocation failure or a broken OpenSSL; like a failed
// operator new, neither is something a caller can handle.
void CheckEvp(int ok) {
  if (ok != 1) std::abort();
}

}  // namespace

Sha256::Sha256() : context_(EVP_MD_CTX_new()) {
  if (context_ == nullptr) std::abort();
  CheckEvp(EVP_DigestInit_ex(context_, EVP_sha256(), nullptr));
}

Sha256::~Sha256() { EVP_MD_CTX_free(context_); }

void Sha256::Update(std::string_view bytes) {
  CheckEvp(EVP_DigestUpdate(context_, bytes.data(), bytes.size()));
}

std::string Sha256::FinalHex() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  CheckEvp(EVP_DigestFinal_ex(context_, digest, &length));
  CheckEvp(EVP_DigestInit_ex(context_, EVP_sha256(), nullptr));
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), length));
}

std::string Sha256Hex(std::string_view bytes) {
  Sha256 hash;
  hash.Update(bytes);
  return hash.FinalHex();
}

absl::StatusOr<std::string> Sha256File(const std::string& path) {
  SQ_ASSIGN_OR_RETURN(const uint64_t size, FileSize(path));
  constexpr uint64_t kChunk = 1 << 20;
  Sha256 hash;
  for (uint64_t offset = 0; offset < size; offset += kChunk) {
    SQ_ASSIGN_OR_RETURN(
        std::string chunk,
        ReadFileRange(path, offset, std::min(kChunk, size - offset)));
    hash.Update(chunk);
  }
  return hash.FinalHex();
}

}  // namespace squeeze::core::model
