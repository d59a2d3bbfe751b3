#include "server/job_state.h"

namespace squeeze::server {
namespace {

struct Transition {
  JobState from;
  JobState to;
};

constexpr Transition kAllowed[] = {
    {v1::QUEUED, v1::RUNNING},     {v1::QUEUED, v1::CANCELLED},
    {v1::QUEUED, v1::FAILED},      {v1::RUNNING, v1::SUCCEEDED},
    {v1::RUNNING, v1::FAILED},     {v1::RUNNING, v1::QUEUED},
    {v1::RUNNING, v1::CANCELLED},
};

}  // namespace

bool IsAllowedTransition(JobState from, JobState to) {
  for (const Transition& t : kAllowed) {
    if (t.from == from && t.to == to) return true;
  }
  return false;
}

bool IsFinal(JobState state) {
  return state == v1::SUCCEEDED || state == v1::FAILED || state == v1::CANCELLED;
}

const char* JobStateName(JobState state) {
  switch (state) {
    case v1::QUEUED: return "QUEUED";
    case v1::RUNNING: return "RUNNING";
    case v1::SUCCEEDED: return "SUCCEEDED";
    case v1::FAILED: return "FAILED";
    case v1::CANCELLED: return "CANCELLED";
    default: return "UNSPECIFIED";
  }
}

}  // namespace squeeze::server
