#include "client/client.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/model/atomic_file.h"
#include "core/model/file_io.h"
#include "core/model/sha256.h"
#include "core/status_macros.h"

namespace squeeze::client {
namespace {

namespace v1 = ::squeeze::v1;

constexpr size_t kUploadChunkBytes = size_t{1} << 20;


}  // namespace

bool IsFinalState(v1::JobState state) {
  return state == v1::SUCCEEDED || state == v1::FAILED || state == v1::CANCELLED;
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  SQ_ASSIGN_OR_RETURN(const std::string contents, core::model::ReadFile(path));
  for (absl::string_view line : absl::StrSplit(contents, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (!line.empty()) return std::string(line);
  }
  return absl::InvalidArgumentError(absl::StrCat("token file ", path, ": holds no token"));
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const ClientOptions& options) {
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options.tls_ca_path.empty()) {
    credentials = grpc::InsecureChannelCredentials();
  } else {
    grpc::SslCredentialsOptions ssl;
    SQ_ASSIGN_OR_RETURN(ssl.pem_root_certs, core::model::ReadFile(options.tls_ca_path));
    credentials = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(8 << 20);
  return grpc::CreateCustomChannel(options.address, credentials, arguments);
}

absl::StatusOr<std::unique_ptr<SqueezeClient>> SqueezeClient::Connect(
    const ClientOptions& options) {
  SQ_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel, MakeChannel(options));
  return FromChannel(std::move(channel), options);
}

std::unique_ptr<SqueezeClient> SqueezeClient::FromChannel(std::shared_ptr<grpc::Channel> channel,
                                                          const ClientOptions& options) {
  return std::unique_ptr<SqueezeClient>(new SqueezeClient(std::move(channel), options));
}

SqueezeClient::SqueezeClient(std::shared_ptr<grpc::Channel> channel, const ClientOptions& options)
    : stub_(v1::Squeeze::NewStub(std::move(channel))), options_(options) {}

std::unique_ptr<grpc::ClientContext> SqueezeClient::NewContext(bool with_deadline) const {
  auto context = std::make_unique<grpc::ClientContext>();
  if (!options_.token.empty()) {
    context->AddMetadata("authorization", absl::StrCat("Bearer ", options_.token));
  }
  if (with_deadline) {
    context->set_deadline(std::chrono::system_clock::now() +
                          absl::ToChronoMilliseconds(options_.call_timeout));
  }
  return context;
}

absl::StatusOr<v1::UploadBlobResponse> SqueezeClient::UploadFile(const std::string& path,
                                                                 v1::BlobKind kind,
                                                                 const std::string& job_id) {
  SQ_ASSIGN_OR_RETURN(const uint64_t size, core::model::FileSize(path));
  if (size == 0) return absl::InvalidArgumentError(absl::StrCat("upload ", path, ": file is empty"));
  SQ_ASSIGN_OR_RETURN(const std::string sha256, core::model::Sha256File(path));
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("upload ", path, ": cannot read the file"));

  auto context = NewContext(/*with_deadline=*/false);
  v1::UploadBlobResponse response;
  auto stream = stub_->UploadBlob(context.get(), &response);

  v1::UploadChunk header_chunk;
  v1::UploadHeader& header = *header_chunk.mutable_header();
  header.set_kind(kind);
  header.set_size_bytes(static_cast<int64_t>(size));
  header.set_sha256(sha256);
  header.set_filename(std::filesystem::path(path).filename().string());
  header.set_job_id(job_id);
  // Write() turns false when the daemon has finished the call: either it had
  // the blob already or it failed. Finish() tells which.
  bool open = stream->Write(header_chunk);
  std::string buffer(kUploadChunkBytes, '\0');
  v1::UploadChunk data_chunk;
  while (open && in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const std::streamsize read = in.gcount();
    if (read <= 0) break;
    data_chunk.set_data(buffer.data(), static_cast<size_t>(read));
    open = stream->Write(data_chunk);
  }
  if (open && in.bad()) {
    context->TryCancel();
    (void)stream->Finish();
    return absl::DataLossError(absl::StrCat("upload ", path, ": read failed midway"));
  }
  stream->WritesDone();
  SQ_RETURN_IF_ERROR(FromGrpcStatus(stream->Finish()));
  return response;
}

template <typename Request, typename Response>
absl::StatusOr<Response> SqueezeClient::CallUnary(
    grpc::Status (v1::Squeeze::Stub::*method)(grpc::ClientContext*, const Request&, Response*),
    const Request& request) {
  auto context = NewContext(/*with_deadline=*/true);
  Response response;
  SQ_RETURN_IF_ERROR(FromGrpcStatus((stub_.get()->*method)(context.get(), request, &response)));
  return response;
}

absl::StatusOr<v1::SubmitJobResponse> SqueezeClient::SubmitJob(
    const v1::SubmitJobRequest& request) {
  return CallUnary(&v1::Squeeze::Stub::SubmitJob, request);
}

absl::StatusOr<v1::Job> SqueezeClient::GetJob(const std::string& job_id) {
  v1::GetJobRequest request;
  request.set_id(job_id);
  return CallUnary(&v1::Squeeze::Stub::GetJob, request);
}

absl::StatusOr<v1::ListJobsResponse> SqueezeClient::ListJobs(const v1::ListJobsRequest& request) {
  return CallUnary(&v1::Squeeze::Stub::ListJobs, request);
}

absl::StatusOr<v1::Job> SqueezeClient::WatchJob(
    const std::string& job_id, const std::function<void(const v1::Job&)>& on_event) {
  auto context = NewContext(/*with_deadline=*/false);
  v1::WatchJobRequest request;
  request.set_id(job_id);
  auto stream = stub_->WatchJob(context.get(), request);
  v1::JobEvent event;
  v1::Job last;
  bool seen_any = false;
  while (stream->Read(&event)) {
    last = event.job();
    seen_any = true;
    on_event(last);
  }
  SQ_RETURN_IF_ERROR(FromGrpcStatus(stream->Finish()));
  if (!seen_any || !IsFinalState(last.state())) {
    return absl::UnavailableError(
        absl::StrCat("watch ", job_id, ": the stream ended before the job reached a final state"));
  }
  return last;
}

absl::StatusOr<v1::Job> SqueezeClient::CancelJob(const std::string& job_id) {
  v1::CancelJobRequest request;
  request.set_id(job_id);
  SQ_ASSIGN_OR_RETURN(v1::CancelJobResponse response,
                      CallUnary(&v1::Squeeze::Stub::CancelJob, request));
  return std::move(*response.mutable_job());
}

absl::StatusOr<int64_t> SqueezeClient::DownloadBlob(const std::string& sha256,
                                                    const std::string& out_path) {
  SQ_ASSIGN_OR_RETURN(std::unique_ptr<core::model::AtomicFileWriter> file,
                      core::model::AtomicFileWriter::Create(out_path));
  auto context = NewContext(/*with_deadline=*/false);
  v1::DownloadBlobRequest request;
  request.set_sha256(sha256);
  auto stream = stub_->DownloadBlob(context.get(), request);

  core::model::Sha256 hasher;
  int64_t announced_size = -1;
  v1::DownloadChunk chunk;
  absl::Status write_status;
  while (stream->Read(&chunk)) {
    if (announced_size < 0) announced_size = chunk.size_bytes();
    hasher.Update(chunk.data());
    write_status = file->Append(chunk.data());
    if (!write_status.ok()) {
      context->TryCancel();
      break;
    }
  }
  const grpc::Status rpc_status = stream->Finish();
  SQ_RETURN_IF_ERROR(write_status);
  SQ_RETURN_IF_ERROR(FromGrpcStatus(rpc_status));

  const int64_t received = file->bytes_written();
  if (announced_size >= 0 && received != announced_size) {
    return absl::DataLossError(absl::StrCat("download ", sha256, ": got ", received,
                                            " bytes, the daemon announced ", announced_size));
  }
  const std::string actual = hasher.FinalHex();
  if (actual != absl::AsciiStrToLower(sha256)) {
    return absl::DataLossError(
        absl::StrCat("download ", sha256, ": the received bytes hash to ", actual));
  }
  SQ_RETURN_IF_ERROR(file->Commit());
  return received;
}

absl::StatusOr<std::vector<v1::DeviceProfile>> SqueezeClient::ListDeviceProfiles() {
  SQ_ASSIGN_OR_RETURN(const v1::ListDeviceProfilesResponse response,
                      CallUnary(&v1::Squeeze::Stub::ListDeviceProfiles,
                                v1::ListDeviceProfilesRequest()));
  return std::vector<v1::DeviceProfile>(response.profiles().begin(), response.profiles().end());
}

}  // namespace squeeze::client
