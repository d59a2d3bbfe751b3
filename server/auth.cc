#include "server/auth.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/model/file_io.h"
#include "core/model/sha256.h"
#include "core/status_macros.h"

namespace squeeze::server {
namespace {

constexpr size_t kMinTokenLength = 16;

bool IsValidName(absl::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  for (char c : name) {
    if (!(absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '_' || c == '.' || c == '-')) {
      return false;
    }
  }
  return true;
}

}  // namespace

absl::StatusOr<TokenAuthenticator> TokenAuthenticator::Parse(absl::string_view text,
                                                             const std::string& source) {
  TokenAuthenticator auth;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    const std::string where = absl::StrCat(source, ":", line_number);
    if (fields.size() != 3) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": expected 'tenant|worker NAME TOKEN', got ", fields.size(),
                       " fields"));
    }
    Principal principal;
    if (fields[0] == "tenant") {
      principal.kind = Principal::Kind::kTenant;
    } else if (fields[0] == "worker") {
      principal.kind = Principal::Kind::kWorker;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": kind must be 'tenant' or 'worker', got '", fields[0], "'"));
    }
    principal.name = std::string(fields[1]);
    absl::Status added = auth.Add(std::string(fields[2]), principal);
    if (!added.ok()) return absl::InvalidArgumentError(absl::StrCat(where, ": ", added.message()));
  }
  return auth;
}

absl::StatusOr<TokenAuthenticator> TokenAuthenticator::LoadFile(const std::string& path) {
  SQ_ASSIGN_OR_RETURN(std::string text, core::model::ReadFile(path));
  return Parse(text, path);
}

absl::Status TokenAuthenticator::Add(const std::string& token, Principal principal) {
  if (!IsValidName(principal.name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("name '", principal.name, "' must match [a-z0-9_.-]{1,63}"));
  }
  if (token.size() < kMinTokenLength) {
    return absl::InvalidArgumentError(absl::StrCat("token for '", principal.name, "' has ",
                                                   token.size(), " characters; at least ",
                                                   kMinTokenLength, " are required"));
  }
  auto [it, inserted] = by_token_digest_.emplace(core::model::Sha256Hex(token), principal);
  if (!inserted) {
    return absl::InvalidArgumentError(absl::StrCat("token for '", principal.name,
                                                   "' is already used by '", it->second.name,
                                                   "'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Principal> TokenAuthenticator::Authenticate(absl::string_view authorization) const {
  if (authorization.empty()) {
    return absl::UnauthenticatedError("missing 'authorization: Bearer <token>' metadata");
  }
  constexpr absl::string_view kBearer = "Bearer ";
  if (authorization.substr(0, kBearer.size()) != kBearer) {
    return absl::UnauthenticatedError("authorization metadata must start with 'Bearer '");
  }
  const absl::string_view token = authorization.substr(kBearer.size());
  auto it = by_token_digest_.find(core::model::Sha256Hex(std::string_view(token.data(), token.size())));
  if (it == by_token_digest_.end()) return absl::UnauthenticatedError("unknown bearer token");
  return it->second;
}

}  // namespace squeeze::server
