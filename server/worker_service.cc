#include "server/worker_service.h"

#include "server/rpc_edge.h"

namespace squeeze::server {

grpc::Status WorkerService::AcquireJob(grpc::ServerContext* context,
                                       const v1::AcquireJobRequest* request,
                                       v1::AcquireJobResponse* response) {
  RpcScope rpc(metrics_, "/squeeze.v1.WorkerControl/AcquireJob");
  absl::StatusOr<Principal> caller = AuthenticateCall(*auth_, *context, Callers::kWorkers);
  if (!caller.ok()) return rpc.Finish(caller.status());
  absl::StatusOr<v1::AcquireJobResponse> acquired = scheduler_->Acquire(
      *request, [&] { return context->IsCancelled() || shutting_down_->load(); });
  if (acquired.ok()) *response = std::move(*acquired);
  return rpc.Finish(acquired.status());
}

grpc::Status WorkerService::Heartbeat(grpc::ServerContext* context,
                                      const v1::HeartbeatRequest* request,
                                      v1::HeartbeatResponse* response) {
  RpcScope rpc(metrics_, "/squeeze.v1.WorkerControl/Heartbeat");
  absl::StatusOr<Principal> caller = AuthenticateCall(*auth_, *context, Callers::kWorkers);
  if (!caller.ok()) return rpc.Finish(caller.status());
  absl::StatusOr<v1::HeartbeatResponse> beat = scheduler_->Heartbeat(*request);
  if (beat.ok()) *response = *beat;
  return rpc.Finish(beat.status());
}

grpc::Status WorkerService::CompleteJob(grpc::ServerContext* context,
                                        const v1::CompleteJobRequest* request,
                                        v1::CompleteJobResponse* response) {
  RpcScope rpc(metrics_, "/squeeze.v1.WorkerControl/CompleteJob");
  absl::StatusOr<Principal> caller = AuthenticateCall(*auth_, *context, Callers::kWorkers);
  if (!caller.ok()) return rpc.Finish(caller.status());
  return rpc.Finish(scheduler_->Complete(*request));
}

grpc::Status WorkerService::FailJob(grpc::ServerContext* context,
                                    const v1::FailJobRequest* request,
                                    v1::FailJobResponse* response) {
  RpcScope rpc(metrics_, "/squeeze.v1.WorkerControl/FailJob");
  absl::StatusOr<Principal> caller = AuthenticateCall(*auth_, *context, Callers::kWorkers);
  if (!caller.ok()) return rpc.Finish(caller.status());
  return rpc.Finish(scheduler_->Fail(*request));
}

grpc::Status WorkerService::ReportTrial(grpc::ServerContext* context,
                                        const v1::ReportTrialRequest* request,
                                        v1::ReportTrialResponse* response) {
  RpcScope rpc(metrics_, "/squeeze.v1.WorkerControl/ReportTrial");
  absl::StatusOr<Principal> caller = AuthenticateCall(*auth_, *context, Callers::kWorkers);
  if (!caller.ok()) return rpc.Finish(caller.status());
  return rpc.Finish(scheduler_->ReportTrial(*request));
}

}  // namespace squeeze::server
