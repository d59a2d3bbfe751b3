// The public squeeze.v1.Squeeze service: thin handlers over the Scheduler,
// the BlobStore and the JobStore's blob ownership.
#ifndef SQUEEZE_SERVER_JOB_SERVICE_H_
#define SQUEEZE_SERVER_JOB_SERVICE_H_

#include <atomic>
#include <cstdint>

#include "server/auth.h"
#include "server/blob_store.h"
#include "server/device_profiles.h"
#include "server/job_store.h"
#include "server/metrics.h"
#include "server/scheduler.h"
#include "squeeze/v1/squeeze.grpc.pb.h"

namespace squeeze::server {

struct JobServiceOptions {
  int64_t max_upload_bytes = int64_t{2} << 30;
};

class JobService final : public v1::Squeeze::Service {
 public:
  // Borrows everything; all must outlive the service.
  JobService(JobServiceOptions options, const TokenAuthenticator* auth, Scheduler* scheduler,
             JobStore* store, BlobStore* blobs, const DeviceProfiles* devices, Metrics* metrics,
             const std::atomic<bool>* shutting_down);

  grpc::Status UploadBlob(grpc::ServerContext* context,
                          grpc::ServerReader<v1::UploadChunk>* reader,
                          v1::UploadBlobResponse* response) override;
  grpc::Status DownloadBlob(grpc::ServerContext* context, const v1::DownloadBlobRequest* request,
                            grpc::ServerWriter<v1::DownloadChunk>* writer) override;
  grpc::Status SubmitJob(grpc::ServerContext* context, const v1::SubmitJobRequest* request,
                         v1::SubmitJobResponse* response) override;
  grpc::Status GetJob(grpc::ServerContext* context, const v1::GetJobRequest* request,
                      v1::Job* response) override;
  grpc::Status ListJobs(grpc::ServerContext* context, const v1::ListJobsRequest* request,
                        v1::ListJobsResponse* response) override;
  grpc::Status WatchJob(grpc::ServerContext* context, const v1::WatchJobRequest* request,
                        grpc::ServerWriter<v1::JobEvent>* writer) override;
  grpc::Status CancelJob(grpc::ServerContext* context, const v1::CancelJobRequest* request,
                         v1::CancelJobResponse* response) override;
  grpc::Status ListDeviceProfiles(grpc::ServerContext* context,
                                  const v1::ListDeviceProfilesRequest* request,
                                  v1::ListDeviceProfilesResponse* response) override;

 private:
  absl::Status Upload(const Principal& caller, grpc::ServerReader<v1::UploadChunk>* reader,
                      v1::UploadBlobResponse* response);
  absl::Status Download(const Principal& caller, const std::string& sha256,
                        grpc::ServerWriter<v1::DownloadChunk>* writer);

  JobServiceOptions options_;
  const TokenAuthenticator* auth_;
  Scheduler* scheduler_;
  JobStore* store_;
  BlobStore* blobs_;
  const DeviceProfiles* devices_;
  Metrics* metrics_;
  const std::atomic<bool>* shutting_down_;
};

}  // namespace squeeze::server

#endif  // SQUEEZE_SERVER_JOB_SERVICE_H_
