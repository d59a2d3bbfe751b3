// The job lifecycle, in one place. Every state change in the store goes
// through IsAllowedTransition; nothing else decides which moves are legal.
//
//   QUEUED  -> RUNNING     a worker acquired the job (attempt counted)
//   QUEUED  -> CANCELLED   the tenant cancelled before it ran
//   QUEUED  -> FAILED      the job cannot run (never admitted, input gone)
//   RUNNING -> SUCCEEDED   the worker completed it
//   RUNNING -> FAILED      a non-retryable error, or the last attempt failed
//   RUNNING -> QUEUED      the attempt failed or its lease expired; retried
//   RUNNING -> CANCELLED   the tenant cancelled; the worker learns it on its
//                          next heartbeat and stops
// SUCCEEDED, FAILED and CANCELLED are final.
#ifndef SQUEEZE_SERVER_JOB_STATE_H_
#define SQUEEZE_SERVER_JOB_STATE_H_



#include "squeeze/v1/squeeze.pb.h"

namespace squeeze::server {

using JobState = ::squeeze::v1::JobState;

bool IsAllowedTransition(JobState from, JobState to);
bool IsFinal(JobState state);
// "QUEUED", "RUNNING", ... ; "UNSPECIFIED" for anything else.
const char* JobStateName(JobState state);

}  // namespace squeeze::server

#endif  // SQUEEZE_SERVER_JOB_STATE_H_
