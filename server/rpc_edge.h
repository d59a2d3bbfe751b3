// What every gRPC handler does at the edge, written once: authenticate the
// caller, turn absl::Status into grpc::Status (the codes are the same
// numbers, so it is a cast), and record the request's code and duration.
#ifndef SQUEEZE_SERVER_RPC_EDGE_H_
#define SQUEEZE_SERVER_RPC_EDGE_H_

#include <chrono>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "server/auth.h"
#include "server/metrics.h"

namespace squeeze::server {

grpc::Status ToGrpcStatus(const absl::Status& status);

// Who may make a call.
enum class Callers { kTenants, kWorkers, kBoth };

// Reads the `authorization` metadata of the call: UNAUTHENTICATED for none or
// an unknown token, PERMISSION_DENIED for a principal of the wrong kind.
absl::StatusOr<Principal> AuthenticateCall(const TokenAuthenticator& auth,
                                           const grpc::ServerContext& context, Callers allowed);

// Times one RPC from construction; Finish records it and converts the status.
class RpcScope {
 public:
  RpcScope(Metrics* metrics, const char* method)
      : metrics_(metrics), method_(method), start_(std::chrono::steady_clock::now()) {}
  grpc::Status Finish(const absl::Status& status);

 private:
  Metrics* metrics_;
  const char* method_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace squeeze::server

#endif  // SQUEEZE_SERVER_RPC_EDGE_H_
