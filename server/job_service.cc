#include "server/job_service.h"

#include <fstream>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "server/rpc_edge.h"

namespace squeeze::server {
namespace {

constexpr size_t kMaxUploadChunk = 4 << 20;
constexpr size_t kDownloadChunk = 1 << 20;
constexpr size_t kMaxFilename = 255;

}  // namespace

JobService::JobService(JobServiceOptions options, const TokenAuthenticator* auth,
                       Scheduler* scheduler, JobStore* store, BlobStore* blobs,
                       const DeviceProfiles* devices, Metrics* metrics,
                       const std::atomic<bool>* shutting_down)
    : options_(options), auth_(auth), scheduler_(scheduler), store_(store), blobs_(blobs),
      devices_(devices), metrics_(metrics), shutting_down_(shutting_down) {}

grpc::Status JobService::UploadBlob(grpc::ServerContext* context,
                                    grpc::ServerReader<v1::UploadChunk>* reader,
                                    v1::UploadBlobResponse* response) {
  RpcScope rpc(metrics_, "/squeeze.v1.Squeeze/UploadBlob");
  absl::StatusOr<Principal> caller = AuthenticateCall(*auth_, *context, Callers::kBoth);
  if (!caller.ok()) return rpc.Finish(caller.status());
  return rpc.Finish(Upload(*caller, reader, response));
}

absl::Status JobService::Upload(const Principal& caller,
                                grpc::ServerReader<v1::UploadChunk>* reader,
                                v1::UploadBlobResponse* response) {
  v1::UploadChunk chunk;
  if (!reader->Read(&chunk) || !chunk.has_header()) {
    return absl::InvalidArgumentError("upload: the first message must be a header");
  }
  const v1::UploadHeader header = chunk.header();
  if (header.size_bytes() <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("upload: header.size_bytes must be > 0, got ", header.size_bytes()));
  }
  if (header.size_bytes() > options_.max_upload_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("upload: header.size_bytes ",
                                                     header.size_bytes(), " exceeds the limit of ",
                                                     options_.max_upload_bytes, " bytes"));
  }
  if (!header.sha256().empty() && !IsSha256Hex(header.sha256())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "upload: header.sha256 must be 64 lower-case hex characters, got '",
        header.sha256().substr(0, 80), "'"));
  }
  if (header.filename().size() > kMaxFilename) {
    return absl::InvalidArgumentError(absl::StrCat("upload: header.filename is ",
                                                   header.filename().size(),
                                                   " bytes; at most 255 are allowed"));
  }
  // Who will own the blob: the caller, or for a worker's artifact the job's tenant.
  std::string owner = caller.name;
  if (!header.job_id().empty()) {
    if (!caller.is_worker()) {
      return absl::PermissionDeniedError("upload: only workers may set header.job_id");
    }
    SQ_ASSIGN_OR_RETURN(v1::Job job, store_->Get("", header.job_id()));
    owner = job.tenant();
  } else if (caller.is_worker()) {
    return absl::InvalidArgumentError("upload: workers must set header.job_id");
  }

  if (!header.sha256().empty() && blobs_->Contains(header.sha256())) {
    SQ_ASSIGN_OR_RETURN(bool owned, store_->TenantOwnsBlob(owner, header.sha256()));
    if (owned) {
      response->mutable_blob()->set_sha256(header.sha256());
      response->mutable_blob()->set_size_bytes(header.size_bytes());
      response->set_already_present(true);
      return absl::OkStatus();
    }
  }

  SQ_ASSIGN_OR_RETURN(auto upload, blobs_->BeginUpload(header.size_bytes()));
  while (reader->Read(&chunk)) {
    if (!chunk.has_data()) {
      return absl::InvalidArgumentError("upload: only data chunks may follow the header");
    }
    if (chunk.data().size() > kMaxUploadChunk) {
      return absl::InvalidArgumentError(absl::StrCat("upload: a data chunk of ",
                                                     chunk.data().size(),
                                                     " bytes exceeds the 4 MiB chunk limit"));
    }
    SQ_RETURN_IF_ERROR(upload->Append(chunk.data()));
  }
  SQ_ASSIGN_OR_RETURN(std::string digest, upload->Finish(header.sha256()));
  SQ_RETURN_IF_ERROR(store_->RecordBlob(owner, digest, header.size_bytes(), header.kind()));
  response->mutable_blob()->set_sha256(digest);
  response->mutable_blob()->set_size_bytes(header.size_bytes());
  response->set_already_present(false);
  return absl::OkStatus();
}

grpc::Status JobService::DownloadBlob(grpc::ServerContext* context,
                                      const v1::DownloadBlobRequest* request,
                                      grpc::ServerWriter<v1::DownloadChunk>* writer) {
  RpcScope rpc(metrics_, "/squeeze.v1.Squeeze/DownloadBlob");
  absl::StatusOr<Principal> caller = AuthenticateCall(*auth_, *context, Callers::kBoth);
  if (!caller.ok()) return rpc.Finish(caller.status());
  return rpc.Finish(Download(*caller, request->sha256(), writer));
}

absl::Status JobService::Download(const Principal& caller, const std::string& sha256,
                                  grpc::ServerWriter<v1::DownloadChunk>* writer) {
  if (!IsSha256Hex(sha256)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sha256 must be 64 lower-case hex characters, got '", sha256.substr(0, 80),
                     "'"));
  }
  // Workers run jobs for every tenant and may read any blob.
  if (!caller.is_worker()) {
    SQ_ASSIGN_OR_RETURN(bool owned, store_->TenantOwnsBlob(caller.name, sha256));
    if (!owned) return absl::NotFoundError(absl::StrCat("blob ", sha256, " not found"));
  }
  SQ_ASSIGN_OR_RETURN(int64_t size, blobs_->SizeOf(sha256));
  std::ifstream in(blobs_->PathFor(sha256), std::ios::binary);
  if (!in) return absl::UnavailableError(absl::StrCat("blob ", sha256, " cannot be opened"));
  v1::DownloadChunk chunk;
  chunk.set_size_bytes(size);
  std::string buffer(kDownloadChunk, '\0');
  bool first = true;
  while (in) {
    in.read(buffer.data(), buffer.size());
    std::streamsize n = in.gcount();
    if (n <= 0 && !first) break;
    chunk.set_data(buffer.data(), static_cast<size_t>(n));
    if (!writer->Write(chunk)) return absl::CancelledError("download: client went away");
    chunk.clear_size_bytes();
    first = false;
  }
  return absl::OkStatus();
}

grpc::Status JobService::SubmitJob(grpc::ServerContext* context,
                                   const v1::SubmitJobRequest* request,
                                   v1::SubmitJobResponse* response) {
  RpcScope rpc(metrics_, "/squeeze.v1.Squeeze/SubmitJob");
  absl::StatusOr<Principal> caller = AuthenticateCall(*auth_, *context, Callers::kTenants);
  if (!caller.ok()) return rpc.Finish(caller.status());
  absl::StatusOr<SubmitResult> result = scheduler_->Submit(caller->name, *request);
  if (result.ok()) {
    *response->mutable_job() = std::move(result->job);
    response->set_deduplicated(result->deduplicated);
  }
  return rpc.Finish(result.status());
}

grpc::Status JobService::GetJob(grpc::ServerContext* context, const v1::GetJobRequest* request,
                                v1::Job* response) {
  RpcScope rpc(metrics_, "/squeeze.v1.Squeeze/GetJob");
  absl::StatusOr<Principal> caller = AuthenticateCall(*auth_, *context, Callers::kTenants);
  if (!caller.ok()) return rpc.Finish(caller.status());
  absl::StatusOr<v1::Job> job = scheduler_->Get(caller->name, request->id());
  if (job.ok()) *response = std::move(*job);
  return rpc.Finish(job.status());
}

grpc::Status JobService::ListJobs(grpc::ServerContext* context,
                                  const v1::ListJobsRequest* request,
                                  v1::ListJobsResponse* response) {
  RpcScope rpc(metrics_, "/squeeze.v1.Squeeze/ListJobs");
  absl::StatusOr<Principal> caller = AuthenticateCall(*auth_, *context, Callers::kTenants);
  if (!caller.ok()) return rpc.Finish(caller.status());
  absl::StatusOr<v1::ListJobsResponse> list = scheduler_->List(caller->name, *request);
  if (list.ok()) *response = std::move(*list);
  return rpc.Finish(list.status());
}

grpc::Status JobService::WatchJob(grpc::ServerContext* context,
                                  const v1::WatchJobRequest* request,
                                  grpc::ServerWriter<v1::JobEvent>* writer) {
  RpcScope rpc(metrics_, "/squeeze.v1.Squeeze/WatchJob");
  absl::StatusOr<Principal> caller = AuthenticateCall(*auth_, *context, Callers::kTenants);
  if (!caller.ok()) return rpc.Finish(caller.status());
  absl::Status status = scheduler_->Watch(
      caller->name, request->id(),
      [&](const v1::Job& job) {
        v1::JobEvent event;
        *event.mutable_job() = job;
        return writer->Write(event);
      },
      [&] { return context->IsCancelled() || shutting_down_->load(); });
  return rpc.Finish(status);
}

grpc::Status JobService::CancelJob(grpc::ServerContext* context,
                                   const v1::CancelJobRequest* request,
                                   v1::CancelJobResponse* response) {
  RpcScope rpc(metrics_, "/squeeze.v1.Squeeze/CancelJob");
  absl::StatusOr<Principal> caller = AuthenticateCall(*auth_, *context, Callers::kTenants);
  if (!caller.ok()) return rpc.Finish(caller.status());
  absl::StatusOr<v1::Job> job = scheduler_->Cancel(caller->name, request->id());
  if (job.ok()) *response->mutable_job() = std::move(*job);
  return rpc.Finish(job.status());
}

grpc::Status JobService::ListDeviceProfiles(grpc::ServerContext* context,
                                            const v1::ListDeviceProfilesRequest* request,
                                            v1::ListDeviceProfilesResponse* response) {
  RpcScope rpc(metrics_, "/squeeze.v1.Squeeze/ListDeviceProfiles");
  absl::StatusOr<Principal> caller = AuthenticateCall(*auth_, *context, Callers::kBoth);
  if (!caller.ok()) return rpc.Finish(caller.status());
  for (const v1::DeviceProfile& profile : devices_->all()) *response->add_profiles() = profile;
  return rpc.Finish(absl::OkStatus());
}

}  // namespace squeeze::server
