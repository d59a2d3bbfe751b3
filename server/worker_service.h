// The internal squeeze.v1.WorkerControl service: thin handlers over the
// Scheduler for worker processes (local over a unix socket, remote over TCP).
#ifndef SQUEEZE_SERVER_WORKER_SERVICE_H_
#define SQUEEZE_SERVER_WORKER_SERVICE_H_

#include <atomic>

#include "server/auth.h"
#include "server/metrics.h"
#include "server/scheduler.h"
#include "squeeze/v1/worker.grpc.pb.h"

namespace squeeze::server {

class WorkerService final : public v1::WorkerControl::Service {
 public:
  // Borrows everything; all must outlive the service.
  WorkerService(const TokenAuthenticator* auth, Scheduler* scheduler, Metrics* metrics,
                const std::atomic<bool>* shutting_down)
      : auth_(auth), scheduler_(scheduler), metrics_(metrics), shutting_down_(shutting_down) {}

  grpc::Status AcquireJob(grpc::ServerContext* context, const v1::AcquireJobRequest* request,
                          v1::AcquireJobResponse* response) override;
  grpc::Status Heartbeat(grpc::ServerContext* context, const v1::HeartbeatRequest* request,
                         v1::HeartbeatResponse* response) override;
  grpc::Status CompleteJob(grpc::ServerContext* context, const v1::CompleteJobRequest* request,
                           v1::CompleteJobResponse* response) override;
  grpc::Status FailJob(grpc::ServerContext* context, const v1::FailJobRequest* request,
                       v1::FailJobResponse* response) override;
  grpc::Status ReportTrial(grpc::ServerContext* context, const v1::ReportTrialRequest* request,
                           v1::ReportTrialResponse* response) override;

 private:
  const TokenAuthenticator* auth_;
  Scheduler* scheduler_;
  Metrics* metrics_;
  const std::atomic<bool>* shutting_down_;
};

}  // namespace squeeze::server

#endif  // SQUEEZE_SERVER_WORKER_SERVICE_H_
