// Bearer-token authentication. A token file maps tokens to principals, one
// per line:
//
//   # kind   name    token
//   tenant   alice   9f86d081884c7d659a2feaa0c55ad015
//   worker   fleet-a 60303ae22b998861bce3b28f33eec1be
//
// Tenants use the public API and see only their own jobs and blobs. Workers
// use the worker protocol (and may read any blob a job names). Tokens must be
// at least 16 characters; names match [a-z0-9_.-]{1,63}. Only SHA-256 digests
// of tokens are kept in memory and compared.
#ifndef SQUEEZE_SERVER_AUTH_H_
#define SQUEEZE_SERVER_AUTH_H_

#include <map>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace squeeze::server {

struct Principal {
  enum class Kind { kTenant, kWorker };
  Kind kind = Kind::kTenant;
  std::string name;
  bool is_worker() const { return kind == Kind::kWorker; }
};

class TokenAuthenticator {
 public:
  // Parses token-file text; errors name `source` and the line.
  static absl::StatusOr<TokenAuthenticator> Parse(absl::string_view text,
                                                  const std::string& source);
  static absl::StatusOr<TokenAuthenticator> LoadFile(const std::string& path);

  // Adds one token (the daemon adds a fresh worker token for its local workers).
  absl::Status Add(const std::string& token, Principal principal);

  // `authorization` is the raw metadata value ("Bearer <token>").
  // UNAUTHENTICATED when missing, malformed or unknown.
  absl::StatusOr<Principal> Authenticate(absl::string_view authorization) const;

 private:
  std::map<std::string, Principal> by_token_digest_;
};

}  // namespace squeeze::server

#endif  // SQUEEZE_SERVER_AUTH_H_
