#include "server/rpc_edge.h"

#include "absl/strings/str_cat.h"

namespace squeeze::server {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::StatusOr<Principal> AuthenticateCall(const TokenAuthenticator& auth,
                                           const grpc::ServerContext& context, Callers allowed) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  absl::string_view value;
  if (it != metadata.end()) value = absl::string_view(it->second.data(), it->second.size());
  absl::StatusOr<Principal> principal = auth.Authenticate(value);
  if (!principal.ok()) return principal.status();
  if (allowed == Callers::kWorkers && !principal->is_worker()) {
    return absl::PermissionDeniedError(
        absl::StrCat("tenant '", principal->name, "' may not call the worker protocol"));
  }
  if (allowed == Callers::kTenants && principal->is_worker()) {
    return absl::PermissionDeniedError(
        absl::StrCat("worker '", principal->name, "' may not call tenant methods"));
  }
  return principal;
}

grpc::Status RpcScope::Finish(const absl::Status& status) {
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  metrics_->RecordRequest(method_, status.code(), seconds);
  return ToGrpcStatus(status);
}

}  // namespace squeeze::server
