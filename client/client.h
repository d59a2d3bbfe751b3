// SqueezeClient: a synchronous C++ client of the public squeeze.v1.Squeeze
// service, used by the `squeeze` CLI and usable on its own.
//
// Every call sends `authorization: Bearer <token>` when a token is set (with
// no token the daemon answers UNAUTHENTICATED). gRPC statuses come back as
// absl::Status with the same code and message: the codes are the same set,
// so the mapping is a cast. Local failures (a file that cannot be read, a
// download whose bytes hash differently) use the matching absl code and name
// the file or digest.
//
// A SqueezeClient is safe to use from several threads at once.
#ifndef SQUEEZE_CLIENT_CLIENT_H_
#define SQUEEZE_CLIENT_CLIENT_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "squeeze/v1/squeeze.grpc.pb.h"

namespace squeeze::client {

inline constexpr char kDefaultAddress[] = "127.0.0.1:7400";

struct ClientOptions {
  // "host:port", or "unix:/path/to/socket".
  std::string address = kDefaultAddress;
  // Bearer token; empty sends no authorization metadata.
  std::string token;
  // PEM file of the root certificate to trust; empty means plaintext.
  std::string tls_ca_path;
  // Deadline of each unary call. Streaming calls (upload, download, watch)
  // have none: they last as long as the data or the job.
  absl::Duration call_timeout = absl::Seconds(30);
};

// SUCCEEDED, FAILED and CANCELLED: the states a job never leaves.
bool IsFinalState(squeeze::v1::JobState state);

// gRPC status to absl::Status, code for code.
absl::Status FromGrpcStatus(const grpc::Status& status);

// The token in a token file: its first non-empty line, whitespace trimmed.
// NOT_FOUND when the file cannot be read, INVALID_ARGUMENT when it holds no
// token.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

// A channel to options.address, over TLS when options.tls_ca_path is set.
// The worker shares one channel between SqueezeClient and its own stub.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const ClientOptions& options);

class SqueezeClient {
 public:
  // Creates a channel to options.address. gRPC connects lazily, so an
  // unreachable daemon shows up as UNAVAILABLE on the first call, not here.
  // NOT_FOUND when tls_ca_path cannot be read.
  static absl::StatusOr<std::unique_ptr<SqueezeClient>> Connect(const ClientOptions& options);

  // Creates a client on a channel the caller made (tests, custom transports).
  static std::unique_ptr<SqueezeClient> FromChannel(std::shared_ptr<grpc::Channel> channel,
                                                    const ClientOptions& options);

  // Uploads the file at `path`: a header with its size, SHA-256 and base name,
  // then 1 MiB chunks. When the daemon already holds the blob it ends the
  // stream early and the response says already_present; no data is sent
  // then. NOT_FOUND when the file cannot be read; INVALID_ARGUMENT when it is
  // empty (the daemon requires size_bytes > 0). Workers pass the `job_id`
  // whose tenant will own an artifact; tenants leave it empty.
  absl::StatusOr<squeeze::v1::UploadBlobResponse> UploadFile(const std::string& path,
                                                             squeeze::v1::BlobKind kind,
                                                             const std::string& job_id = "");

  absl::StatusOr<squeeze::v1::SubmitJobResponse> SubmitJob(
      const squeeze::v1::SubmitJobRequest& request);
  absl::StatusOr<squeeze::v1::Job> GetJob(const std::string& job_id);
  absl::StatusOr<squeeze::v1::ListJobsResponse> ListJobs(
      const squeeze::v1::ListJobsRequest& request);

  // Streams the job: calls `on_event` with the job now and after each change,
  // on the calling thread, and returns the job in its final state. When the
  // stream ends before a final state (daemon restart), returns UNAVAILABLE.
  absl::StatusOr<squeeze::v1::Job> WatchJob(
      const std::string& job_id, const std::function<void(const squeeze::v1::Job&)>& on_event);

  // Asks the daemon to cancel; returns the job as the daemon has it after
  // the request (a running job may still be RUNNING with cancel_requested).
  absl::StatusOr<squeeze::v1::Job> CancelJob(const std::string& job_id);

  // Downloads blob `sha256` to `out_path` and returns its size in bytes. The
  // bytes stream into a core::model::AtomicFileWriter beside `out_path`,
  // which is committed only when the size and the SHA-256 match, so
  // `out_path` is either untouched or complete. The directory must exist.
  // DATA_LOSS when the bytes measure or hash differently; file errors as the
  // writer gives them.
  absl::StatusOr<int64_t> DownloadBlob(const std::string& sha256, const std::string& out_path);

  absl::StatusOr<std::vector<squeeze::v1::DeviceProfile>> ListDeviceProfiles();

 private:
  SqueezeClient(std::shared_ptr<grpc::Channel> channel, const ClientOptions& options);

  // A context with the token and, for unary calls, the deadline.
  std::unique_ptr<grpc::ClientContext> NewContext(bool with_deadline) const;

  // One unary call with a deadline, its status converted.
  template <typename Request, typename Response>
  absl::StatusOr<Response> CallUnary(
      grpc::Status (squeeze::v1::Squeeze::Stub::*method)(grpc::ClientContext*, const Request&,
                                                         Response*),
      const Request& request);

  std::unique_ptr<squeeze::v1::Squeeze::Stub> stub_;
  ClientOptions options_;
};

}  // namespace squeeze::client

#endif  // SQUEEZE_CLIENT_CLIENT_H_
