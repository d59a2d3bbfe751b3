// Reads a JobSpec written by hand: the compression recipe, target devices,
// priority, labels and seed of a job.
//
// The file's model and dataset fields stay empty: the CLI fills them with the
// blobs it uploads. The format follows the extension:
//   .json                     proto3 JSON (google::protobuf::util), unknown
//                             fields rejected
//   .textproto .txtpb .pbtxt  protobuf text format
#ifndef SQUEEZE_CLIENT_JOB_SPEC_FILE_H_
#define SQUEEZE_CLIENT_JOB_SPEC_FILE_H_

#include <string>

#include "absl/status/statusor.h"
#include "squeeze/v1/squeeze.pb.h"

namespace squeeze::client {

// Returns the JobSpec in `path`. Errors name the file:
//   NOT_FOUND etc.    the file cannot be read (as core::model::ReadFile)
//   INVALID_ARGUMENT  unknown extension, a parse error (with the parser's
//                     message), or a model/dataset blob set in the file
absl::StatusOr<squeeze::v1::JobSpec> LoadJobSpecFile(const std::string& path);

}  // namespace squeeze::client

#endif  // SQUEEZE_CLIENT_JOB_SPEC_FILE_H_
