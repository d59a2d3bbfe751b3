#include "server/auth.h"

#include "gtest/gtest.h"

namespace squeeze::server {
namespace {

constexpr char kFile[] = R"(# kind name token
tenant alice 0123456789abcdef-alice
worker fleet 0123456789abcdef-fleet
)";

TEST(TokenAuthenticatorTest, MapsTokensToPrincipals) {
  auto auth = TokenAuthenticator::Parse(kFile, "tokens");
  ASSERT_TRUE(auth.ok()) << auth.status();
  auto alice = auth->Authenticate("Bearer 0123456789abcdef-alice");
  ASSERT_TRUE(alice.ok());
  EXPECT_EQ(alice->name, "alice");
  EXPECT_FALSE(alice->is_worker());
  EXPECT_TRUE(auth->Authenticate("Bearer 0123456789abcdef-fleet")->is_worker());
}

TEST(TokenAuthenticatorTest, RejectsMissingMalformedAndUnknown) {
  auto auth = *TokenAuthenticator::Parse(kFile, "tokens");
  EXPECT_EQ(auth.Authenticate("").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth.Authenticate("Basic abc").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth.Authenticate("Bearer 0123456789abcdef-mallory").status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(TokenAuthenticatorTest, BadFilesNameTheLine) {
  auto short_token = TokenAuthenticator::Parse("tenant bob short\n", "tokens");
  EXPECT_EQ(short_token.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(short_token.status().message().find("tokens:1"), std::string::npos);
  auto bad_kind = TokenAuthenticator::Parse("\nadmin bob 0123456789abcdef0\n", "tokens");
  EXPECT_NE(bad_kind.status().message().find("tokens:2"), std::string::npos);
  auto duplicate = TokenAuthenticator::Parse(
      "tenant a 0123456789abcdef0\ntenant b 0123456789abcdef0\n", "tokens");
  EXPECT_NE(duplicate.status().message().find("already used"), std::string::npos);
  auto bad_name = TokenAuthenticator::Parse("tenant Alice! 0123456789abcdef0\n", "tokens");
  EXPECT_EQ(bad_name.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace squeeze::server
