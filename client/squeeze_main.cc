// squeeze: the command-line client of the Squeeze daemon. See kUsage.
//
// Exit codes: 0 success; 1 an error from the daemon or the local system, or
// a watched job that ended other than SUCCEEDED; 2 a usage error. Errors are
// one line on stderr: "squeeze: <command>: <CODE>: <message>".
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/client.h"
#include "client/command_line.h"
#include "client/format.h"
#include "client/job_spec_file.h"
#include "core/status_macros.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace squeeze::client {
namespace {

namespace v1 = ::squeeze::v1;

constexpr char kUsage[] = R"(usage: squeeze [global flags] <command> [args]

commands:
  submit MODEL_FILE [--spec SPEC_FILE] [--calibration FILE] [--evaluation FILE]
         [--bits N] [--group-size N] [--asymmetric] [--device NAME]...
         [--label KEY=VALUE]... [--priority N] [--idempotency-key KEY] [--watch]
      Upload the model (and datasets), submit a job and print its id.
      SPEC_FILE (.json, .textproto, .txtpb, .pbtxt) holds a squeeze.v1.JobSpec
      without model or datasets. Without --spec the recipe is one quantize
      pass: --bits (default 8), per-group with --group-size, --asymmetric.
      --device replaces the spec's devices; --label and --priority override.
  status JOB_ID                  Show a job and its variants.
  list [--state STATE]... [--label KEY=VALUE]... [--limit N] [--page-token T]
      List jobs, newest first.
  watch JOB_ID                   Follow a job until it ends; exit 0 only when
                                 it SUCCEEDED.
  cancel JOB_ID                  Ask the daemon to cancel a job.
  download JOB_ID|SHA256 [--out DIR]
      Download a blob, or every artifact of a job as
      DIR/<job>-<device>-<technique>.safetensors (.onnx for onnx-qdq
      artifacts; DIR defaults to ".").
  devices                        List the device profiles.
  pareto JOB_ID [--csv]
      The variants of a (search or fleet) job as a table: accuracy, latency
      and energy on each device, size, within the limits or not, Pareto-
      optimal or not. --csv prints CSV; the global --json prints the variants
      as JSON, one per line.

global flags:
  --addr ADDR        daemon address, host:port or unix:/path
                     (env SQUEEZE_ADDR; default 127.0.0.1:7400)
  --token TOKEN      bearer token (env SQUEEZE_TOKEN)
  --token_file FILE  file whose first non-empty line is the token
                     (env SQUEEZE_TOKEN_FILE)
  --tls_ca FILE      PEM root certificate; enables TLS (env SQUEEZE_TLS_CA)
  --json             machine output: the API messages as JSON, one per line
  --help             this text

exit status: 0 success, 1 error or unsuccessful job, 2 usage error
)";

// Usage errors carry this payload so that main() can exit with 2 rather
// than 1; the daemon's own INVALID_ARGUMENT answers do not have it.
constexpr char kUsageErrorPayload[] = "type.squeeze/squeeze.client.UsageError";

absl::Status UsageError(absl::Status status) {
  status.SetPayload(kUsageErrorPayload, absl::Cord("usage"));
  return status;
}

absl::Status UsageError(absl::string_view message) {
  return UsageError(absl::InvalidArgumentError(message));
}

bool IsUsageError(const absl::Status& status) {
  return status.GetPayload(kUsageErrorPayload).has_value();
}

const std::vector<FlagSpec>& GlobalFlags() {
  static const auto* flags = new std::vector<FlagSpec>{
      {"addr", true}, {"token", true}, {"token_file", true},
      {"tls_ca", true}, {"json", false}, {"help", false}};
  return *flags;
}

// What a command gets: its parsed arguments, the client and the output mode.
struct Invocation {
  CommandLine args;
  SqueezeClient& client;
  bool json;
};

struct Command {
  std::string name;
  std::vector<FlagSpec> flags;
  // Returns the exit code on success (0, or 1 for a watched job that failed).
  absl::StatusOr<int> (*run)(Invocation&);
};

void PrintJson(const google::protobuf::Message& message) {
  std::string json;
  // Serializing a message the binary built cannot fail.
  (void)google::protobuf::util::MessageToJsonString(message, &json);
  std::cout << json << "\n" << std::flush;
}

// With --json prints `message` as one line of JSON, else `human_text`.
void PrintJsonOr(const Invocation& invocation, const google::protobuf::Message& message,
                 const std::string& human_text) {
  if (invocation.json) {
    PrintJson(message);
  } else {
    std::cout << human_text << std::flush;
  }
}

std::optional<std::string> Env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

// Flags win over the environment; an explicit token wins over a token file.
absl::StatusOr<ClientOptions> ResolveClientOptions(const CommandLine& args) {
  ClientOptions options;
  options.address = args.Value("addr").value_or(Env("SQUEEZE_ADDR").value_or(kDefaultAddress));
  options.tls_ca_path = args.Value("tls_ca").value_or(Env("SQUEEZE_TLS_CA").value_or(""));
  if (auto token = args.Value("token")) {
    options.token = *token;
  } else if (auto file = args.Value("token_file")) {
    SQ_ASSIGN_OR_RETURN(options.token, ReadTokenFile(*file));
  } else if (auto env_token = Env("SQUEEZE_TOKEN")) {
    options.token = *env_token;
  } else if (auto env_file = Env("SQUEEZE_TOKEN_FILE")) {
    SQ_ASSIGN_OR_RETURN(options.token, ReadTokenFile(*env_file));
  }
  return options;
}

absl::StatusOr<std::string> OnePositional(const Invocation& invocation, absl::string_view what) {
  const auto& positionals = invocation.args.positionals();
  if (positionals.size() != 1) {
    return UsageError(absl::StrCat("want exactly one ", what, ", got ", positionals.size(),
                                   " arguments"));
  }
  return positionals[0];
}

absl::StatusOr<int> WithUsage(absl::StatusOr<int> value) {
  if (!value.ok()) return UsageError(value.status());
  return value;
}

absl::StatusOr<int> WatchAndReport(SqueezeClient& client, const std::string& job_id, bool json) {
  const bool live_line = !json && isatty(STDOUT_FILENO);
  size_t drawn_width = 0;
  auto on_event = [&](const v1::Job& job) {
    if (json) {
      PrintJson(job);
    } else if (live_line) {
      std::string line = FormatProgress(job);
      const size_t width = line.size();
      if (width < drawn_width) line.append(drawn_width - width, ' ');
      drawn_width = width;
      std::cout << "\r" << line << std::flush;
    } else {
      std::cout << FormatWatchLine(job) << "\n" << std::flush;
    }
  };
  absl::StatusOr<v1::Job> final_job = client.WatchJob(job_id, on_event);
  if (live_line && drawn_width > 0) std::cout << "\n";
  SQ_RETURN_IF_ERROR(final_job.status());
  if (!json) std::cout << "\n" << FormatJobStatus(*final_job);
  return final_job->state() == v1::SUCCEEDED ? 0 : 1;
}

absl::StatusOr<v1::BlobRef> Upload(SqueezeClient& client, const std::string& path,
                                   v1::BlobKind kind, bool json) {
  SQ_ASSIGN_OR_RETURN(const v1::UploadBlobResponse response, client.UploadFile(path, kind));
  if (!json) {
    std::cerr << "uploaded " << path << ": sha256 " << response.blob().sha256() << " ("
              << FormatBytes(response.blob().size_bytes())
              << (response.already_present() ? ", already present" : "") << ")\n";
  }
  return response.blob();
}

absl::StatusOr<int> RunSubmit(Invocation& invocation) {
  const CommandLine& args = invocation.args;
  SQ_ASSIGN_OR_RETURN(const std::string model_path, OnePositional(invocation, "MODEL_FILE"));

  v1::JobSpec spec;
  if (auto spec_path = args.Value("spec")) {
    if (args.Has("bits") || args.Has("group-size") || args.Has("asymmetric")) {
      return UsageError("--bits, --group-size and --asymmetric build a recipe; the --spec file "
                        "already has one");
    }
    absl::StatusOr<v1::JobSpec> loaded = LoadJobSpecFile(*spec_path);
    if (!loaded.ok()) return UsageError(loaded.status());
    spec = *std::move(loaded);
  } else {
    SQ_ASSIGN_OR_RETURN(const int bits, WithUsage(args.IntValue("bits", 8, 1, 64)));
    v1::QuantizePass& quantize = *spec.mutable_recipe()->add_passes()->mutable_quantize();
    quantize.set_bits(bits);
    quantize.set_asymmetric(args.Has("asymmetric"));
    if (args.Has("group-size")) {
      SQ_ASSIGN_OR_RETURN(const int group_size,
                          WithUsage(args.IntValue("group-size", 0, 1, 1 << 30)));
      quantize.set_granularity(v1::QuantizePass::PER_GROUP);
      quantize.set_group_size(group_size);
    }
  }
  if (const std::vector<std::string> devices = args.Values("device"); !devices.empty()) {
    spec.clear_target_devices();
    for (const std::string& device : devices) spec.add_target_devices(device);
  }
  absl::StatusOr<std::map<std::string, std::string>> labels = args.KeyValues("label");
  if (!labels.ok()) return UsageError(labels.status());
  for (const auto& [key, value] : *labels) (*spec.mutable_labels())[key] = value;
  if (args.Has("priority")) {
    SQ_ASSIGN_OR_RETURN(const int priority,
                        WithUsage(args.IntValue("priority", 0, -(1 << 30), 1 << 30)));
    spec.set_priority(priority);
  }

  SqueezeClient& client = invocation.client;
  SQ_ASSIGN_OR_RETURN(*spec.mutable_model(),
                      Upload(client, model_path, v1::BLOB_KIND_MODEL, invocation.json));
  if (auto path = args.Value("calibration")) {
    SQ_ASSIGN_OR_RETURN(*spec.mutable_calibration_dataset(),
                        Upload(client, *path, v1::BLOB_KIND_DATASET, invocation.json));
  }
  if (auto path = args.Value("evaluation")) {
    SQ_ASSIGN_OR_RETURN(*spec.mutable_evaluation_dataset(),
                        Upload(client, *path, v1::BLOB_KIND_DATASET, invocation.json));
  }

  v1::SubmitJobRequest request;
  *request.mutable_spec() = std::move(spec);
  request.set_idempotency_key(args.Value("idempotency-key").value_or(""));
  SQ_ASSIGN_OR_RETURN(const v1::SubmitJobResponse response, client.SubmitJob(request));
  if (invocation.json) {
    PrintJson(response);
  } else {
    if (response.deduplicated()) {
      std::cerr << "an earlier job has this idempotency key; not submitted again\n";
    }
    std::cout << response.job().id() << "\n" << std::flush;
  }
  if (!args.Has("watch")) return 0;
  return WatchAndReport(client, response.job().id(), invocation.json);
}

absl::StatusOr<int> RunStatus(Invocation& invocation) {
  SQ_ASSIGN_OR_RETURN(const std::string job_id, OnePositional(invocation, "JOB_ID"));
  SQ_ASSIGN_OR_RETURN(const v1::Job job, invocation.client.GetJob(job_id));
  PrintJsonOr(invocation, job, FormatJobStatus(job));
  return 0;
}

absl::StatusOr<int> RunPareto(Invocation& invocation) {
  SQ_ASSIGN_OR_RETURN(const std::string job_id, OnePositional(invocation, "JOB_ID"));
  SQ_ASSIGN_OR_RETURN(const v1::Job job, invocation.client.GetJob(job_id));
  if (invocation.json) {
    for (const v1::Variant& variant : job.variants()) PrintJson(variant);
  } else if (invocation.args.Has("csv")) {
    std::cout << FormatParetoCsv(job) << std::flush;
  } else {
    std::cout << FormatParetoTable(job) << std::flush;
  }
  return job.variants_size() > 0 ? 0 : 1;
}

absl::StatusOr<int> RunList(Invocation& invocation) {
  const CommandLine& args = invocation.args;
  if (!args.positionals().empty()) return UsageError("list takes no positional arguments");
  v1::ListJobsRequest request;
  for (const std::string& name : args.Values("state")) {
    v1::JobState state;
    if (!v1::JobState_Parse(absl::AsciiStrToUpper(name), &state) ||
        state == v1::JOB_STATE_UNSPECIFIED) {
      return UsageError(absl::StrCat("--state wants QUEUED, RUNNING, SUCCEEDED, FAILED or "
                                     "CANCELLED, got \"", name, "\""));
    }
    request.add_states(state);
  }
  absl::StatusOr<std::map<std::string, std::string>> labels = args.KeyValues("label");
  if (!labels.ok()) return UsageError(labels.status());
  request.mutable_labels()->insert(labels->begin(), labels->end());
  SQ_ASSIGN_OR_RETURN(const int limit, WithUsage(args.IntValue("limit", 0, 0, 1 << 30)));
  request.set_page_size(limit);
  request.set_page_token(args.Value("page-token").value_or(""));

  SQ_ASSIGN_OR_RETURN(const v1::ListJobsResponse response, invocation.client.ListJobs(request));
  PrintJsonOr(invocation, response,
              FormatJobTable({response.jobs().begin(), response.jobs().end()}));
  if (!invocation.json && !response.next_page_token().empty()) {
    std::cerr << "more jobs: squeeze list --page-token " << response.next_page_token() << "\n";
  }
  return 0;
}

absl::StatusOr<int> RunWatch(Invocation& invocation) {
  SQ_ASSIGN_OR_RETURN(const std::string job_id, OnePositional(invocation, "JOB_ID"));
  return WatchAndReport(invocation.client, job_id, invocation.json);
}

absl::StatusOr<int> RunCancel(Invocation& invocation) {
  SQ_ASSIGN_OR_RETURN(const std::string job_id, OnePositional(invocation, "JOB_ID"));
  SQ_ASSIGN_OR_RETURN(const v1::Job job, invocation.client.CancelJob(job_id));
  PrintJsonOr(invocation, job,
              absl::StrCat(job.id(), " ", v1::JobState_Name(job.state()),
                           job.cancel_requested() ? " (cancel requested)" : "", "\n"));
  return 0;
}

bool IsSha256Hex(const std::string& text) {
  return text.size() == 64 && std::all_of(text.begin(), text.end(), [](char c) {
           return absl::ascii_isdigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
         });
}

// Device and technique names come from the daemon; keep them to one safe
// path component.
std::string FileNamePart(absl::string_view text) {
  std::string part(text);
  for (char& c : part) {
    if (!absl::ascii_isalnum(c) && c != '-' && c != '_' && c != '.') c = '_';
  }
  return part.empty() || part == "." || part == ".." ? "_" : part;
}

absl::Status DownloadOne(Invocation& invocation, const std::string& sha256,
                         const std::filesystem::path& path) {
  SQ_ASSIGN_OR_RETURN(const int64_t bytes, invocation.client.DownloadBlob(sha256, path.string()));
  if (invocation.json) {
    google::protobuf::Struct record;
    auto& fields = *record.mutable_fields();
    fields["path"].set_string_value(path.string());
    fields["sha256"].set_string_value(sha256);
    fields["sizeBytes"].set_number_value(static_cast<double>(bytes));
    PrintJson(record);
  } else {
    std::cout << path.string() << " (" << FormatBytes(bytes) << ")\n";
  }
  return absl::OkStatus();
}

absl::StatusOr<int> RunDownload(Invocation& invocation) {
  SQ_ASSIGN_OR_RETURN(const std::string target, OnePositional(invocation, "JOB_ID or SHA256"));
  const std::filesystem::path dir = invocation.args.Value("out").value_or(".");
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create ", dir.string(), ": ", error.message()));
  }
  if (IsSha256Hex(target)) {
    const std::string sha256 = absl::AsciiStrToLower(target);
    SQ_RETURN_IF_ERROR(DownloadOne(invocation, sha256, dir / sha256));
    return 0;
  }
  SQ_ASSIGN_OR_RETURN(const v1::Job job, invocation.client.GetJob(target));
  int downloaded = 0;
  for (const v1::Variant& variant : job.variants()) {
    if (variant.artifact().sha256().empty()) continue;
    const std::string name =
        absl::StrCat(FileNamePart(job.id()), "-", FileNamePart(variant.device()), "-",
                     FileNamePart(variant.technique()),
                     variant.artifact_format() == "onnx-qdq" ? ".onnx" : ".safetensors");
    SQ_RETURN_IF_ERROR(DownloadOne(invocation, variant.artifact().sha256(), dir / name));
    ++downloaded;
  }
  if (downloaded == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", job.id(), " has no artifacts (state ", v1::JobState_Name(job.state()), ")"));
  }
  return 0;
}

absl::StatusOr<int> RunDevices(Invocation& invocation) {
  if (!invocation.args.positionals().empty()) {
    return UsageError("devices takes no positional arguments");
  }
  SQ_ASSIGN_OR_RETURN(const std::vector<v1::DeviceProfile> profiles,
                      invocation.client.ListDeviceProfiles());
  v1::ListDeviceProfilesResponse response;
  response.mutable_profiles()->Add(profiles.begin(), profiles.end());
  PrintJsonOr(invocation, response, FormatDeviceProfiles(profiles));
  return 0;
}

const std::vector<Command>& Commands() {
  static const auto* commands = new std::vector<Command>{
      {"submit",
       {{"spec", true},
        {"calibration", true},
        {"evaluation", true},
        {"bits", true},
        {"group-size", true},
        {"asymmetric", false},
        {"device", true},
        {"label", true},
        {"priority", true},
        {"idempotency-key", true},
        {"watch", false}},
       RunSubmit},
      {"status", {}, RunStatus},
      {"list", {{"state", true}, {"label", true}, {"limit", true}, {"page-token", true}}, RunList},
      {"watch", {}, RunWatch},
      {"cancel", {}, RunCancel},
      {"download", {{"out", true}}, RunDownload},
      {"devices", {}, RunDevices},
      {"pareto", {{"csv", false}}, RunPareto},
  };
  return *commands;
}

// The command is the first argument that is neither a global flag nor the
// value of one, so global flags may come before or after it.
std::optional<size_t> FindCommandIndex(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.compare(0, 2, "--") != 0) return i;
    if (arg.find('=') != std::string::npos) continue;
    const std::string name = arg.substr(2);
    const auto& globals = GlobalFlags();
    const auto spec = std::find_if(globals.begin(), globals.end(),
                                   [&](const FlagSpec& flag) { return flag.name == name; });
    if (spec != globals.end() && spec->takes_value) ++i;
  }
  return std::nullopt;
}

absl::StatusOr<int> Run(const Command& command, const std::vector<std::string>& args) {
  std::vector<FlagSpec> flags = GlobalFlags();
  flags.insert(flags.end(), command.flags.begin(), command.flags.end());
  absl::StatusOr<CommandLine> parsed = CommandLine::Parse(args, flags);
  if (!parsed.ok()) return UsageError(parsed.status());
  if (parsed->Has("help")) {
    std::cout << kUsage;
    return 0;
  }
  SQ_ASSIGN_OR_RETURN(const ClientOptions options, ResolveClientOptions(*parsed));
  SQ_ASSIGN_OR_RETURN(std::unique_ptr<SqueezeClient> client, SqueezeClient::Connect(options));
  const bool json = parsed->Has("json");
  Invocation invocation{*std::move(parsed), *client, json};
  return command.run(invocation);
}

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  const std::optional<size_t> index = FindCommandIndex(args);
  if (!index.has_value()) {
    const bool asked = std::find(args.begin(), args.end(), "--help") != args.end();
    (asked ? std::cout : std::cerr) << kUsage;
    return asked ? 0 : 2;
  }
  const std::string name = args[*index];
  if (name == "help") {
    std::cout << kUsage;
    return 0;
  }
  args.erase(args.begin() + static_cast<std::ptrdiff_t>(*index));
  const auto& commands = Commands();
  const auto command = std::find_if(commands.begin(), commands.end(),
                                    [&](const Command& c) { return c.name == name; });
  absl::StatusOr<int> exit_code =
      command == commands.end()
          ? absl::StatusOr<int>(UsageError(absl::StrCat("unknown command; see squeeze --help")))
          : Run(*command, args);
  if (exit_code.ok()) return *exit_code;
  std::cerr << "squeeze: " << name << ": " << absl::StatusCodeToString(exit_code.status().code())
            << ": " << exit_code.status().message() << "\n";
  return IsUsageError(exit_code.status()) ? 2 : 1;
}

}  // namespace
}  // namespace squeeze::client

int main(int argc, char** argv) { return squeeze::client::Main(argc, argv); }
