#include "client/client.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "core/model/sha256.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace squeeze::client {
namespace {

namespace v1 = ::squeeze::v1;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// An in-process Squeeze service that keeps blobs in memory and records what
// clients sent. Calls without the expected bearer token are UNAUTHENTICATED,
// as on the real daemon.
class FakeSqueeze final : public v1::Squeeze::Service {
 public:
  static constexpr char kToken[] = "secret-token";

  grpc::Status UploadBlob(grpc::ServerContext* context, grpc::ServerReader<v1::UploadChunk>* reader,
                          v1::UploadBlobResponse* response) override {
    if (!Authorized(*context)) return Unauthenticated();
    v1::UploadChunk chunk;
    if (!reader->Read(&chunk) || !chunk.has_header()) {
      return {grpc::StatusCode::INVALID_ARGUMENT, "first message must be a header"};
    }
    const v1::UploadHeader header = chunk.header();
    std::lock_guard lock(mutex_);
    last_header_ = header;
    data_messages_ = 0;
    response->mutable_blob()->set_sha256(header.sha256());
    response->mutable_blob()->set_size_bytes(header.size_bytes());
    if (blobs_.contains(header.sha256())) {
      response->set_already_present(true);
      return grpc::Status::OK;  // Ends the call without reading the data.
    }
    std::string bytes;
    while (reader->Read(&chunk)) {
      ++data_messages_;
      bytes += chunk.data();
    }
    if (core::model::Sha256Hex(bytes) != header.sha256()) {
      return {grpc::StatusCode::INVALID_ARGUMENT, "digest mismatch"};
    }
    blobs_[header.sha256()] = bytes;
    return grpc::Status::OK;
  }

  grpc::Status DownloadBlob(grpc::ServerContext* context, const v1::DownloadBlobRequest* request,
                            grpc::ServerWriter<v1::DownloadChunk>* writer) override {
    if (!Authorized(*context)) return Unauthenticated();
    std::string bytes;
    {
      std::lock_guard lock(mutex_);
      const auto it = blobs_.find(request->sha256());
      if (it == blobs_.end()) return {grpc::StatusCode::NOT_FOUND, "no such blob"};
      bytes = it->second;
      if (corrupt_downloads_) bytes[0] ^= 1;
    }
    v1::DownloadChunk first;
    first.set_size_bytes(static_cast<int64_t>(bytes.size()));
    writer->Write(first);
    // Small chunks so that the client has to join several.
    for (size_t offset = 0; offset < bytes.size(); offset += 5) {
      v1::DownloadChunk chunk;
      chunk.set_data(bytes.substr(offset, 5));
      writer->Write(chunk);
    }
    return grpc::Status::OK;
  }

  grpc::Status SubmitJob(grpc::ServerContext* context, const v1::SubmitJobRequest* request,
                         v1::SubmitJobResponse* response) override {
    if (!Authorized(*context)) return Unauthenticated();
    response->mutable_job()->set_id("job-1");
    *response->mutable_job()->mutable_spec() = request->spec();
    return grpc::Status::OK;
  }

  grpc::Status GetJob(grpc::ServerContext* context, const v1::GetJobRequest* request,
                      v1::Job* job) override {
    if (!Authorized(*context)) return Unauthenticated();
    if (request->id() != "job-1") return {grpc::StatusCode::NOT_FOUND, "no job " + request->id()};
    job->set_id("job-1");
    job->set_state(v1::RUNNING);
    return grpc::Status::OK;
  }

  grpc::Status WatchJob(grpc::ServerContext* context, const v1::WatchJobRequest* request,
                        grpc::ServerWriter<v1::JobEvent>* writer) override {
    if (!Authorized(*context)) return Unauthenticated();
    std::vector<v1::JobState> states;
    {
      std::lock_guard lock(mutex_);
      states = watch_states_;
    }
    for (const v1::JobState state : states) {
      v1::JobEvent event;
      event.mutable_job()->set_id(request->id());
      event.mutable_job()->set_state(state);
      writer->Write(event);
    }
    return grpc::Status::OK;
  }

  grpc::Status ListDeviceProfiles(grpc::ServerContext* context,
                                  const v1::ListDeviceProfilesRequest*,
                                  v1::ListDeviceProfilesResponse* response) override {
    if (!Authorized(*context)) return Unauthenticated();
    response->add_profiles()->set_name("a100-80g");
    response->add_profiles()->set_name("local");
    return grpc::Status::OK;
  }

  void AddBlob(const std::string& bytes) {
    std::lock_guard lock(mutex_);
    blobs_[core::model::Sha256Hex(bytes)] = bytes;
  }
  void set_corrupt_downloads(bool corrupt) {
    std::lock_guard lock(mutex_);
    corrupt_downloads_ = corrupt;
  }
  void set_watch_states(std::vector<v1::JobState> states) {
    std::lock_guard lock(mutex_);
    watch_states_ = std::move(states);
  }
  v1::UploadHeader last_header() {
    std::lock_guard lock(mutex_);
    return last_header_;
  }
  int data_messages() {
    std::lock_guard lock(mutex_);
    return data_messages_;
  }

 private:
  static bool Authorized(const grpc::ServerContext& context) {
    const auto& metadata = context.client_metadata();
    const auto it = metadata.find("authorization");
    return it != metadata.end() &&
           std::string(it->second.data(), it->second.size()) == absl::StrCat("Bearer ", kToken);
  }
  static grpc::Status Unauthenticated() {
    return {grpc::StatusCode::UNAUTHENTICATED, "missing or unknown bearer token"};
  }

  std::mutex mutex_;
  std::map<std::string, std::string> blobs_;
  v1::UploadHeader last_header_;
  int data_messages_ = 0;
  bool corrupt_downloads_ = false;
  std::vector<v1::JobState> watch_states_;
};

class SqueezeClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    address_ = absl::StrCat("127.0.0.1:", port);
    client_ = Connect(FakeSqueeze::kToken);

    dir_ = std::filesystem::path(::testing::TempDir()) /
           absl::StrCat("client_test_", ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }

  void TearDown() override {
    server_->Shutdown();
    std::filesystem::remove_all(dir_);
  }

  std::unique_ptr<SqueezeClient> Connect(const std::string& token) {
    ClientOptions options;
    options.address = address_;
    options.token = token;
    auto client = SqueezeClient::Connect(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return *std::move(client);
  }

  std::string WriteFile(const std::string& name, const std::string& bytes) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }

  std::vector<std::string> FilesInDir() {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  FakeSqueeze service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  std::unique_ptr<SqueezeClient> client_;
  std::filesystem::path dir_;
};

TEST_F(SqueezeClientTest, UploadSendsHeaderThenMebibyteChunks) {
  const std::string bytes(5 * (1 << 19) + 7, 'w');  // 2.5 MiB + 7 bytes.
  const std::string path = WriteFile("model.safetensors", bytes);
  const auto response = client_->UploadFile(path, v1::BLOB_KIND_MODEL);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_FALSE(response->already_present());
  EXPECT_EQ(response->blob().sha256(), core::model::Sha256Hex(bytes));

  const v1::UploadHeader header = service_.last_header();
  EXPECT_EQ(header.kind(), v1::BLOB_KIND_MODEL);
  EXPECT_EQ(header.size_bytes(), static_cast<int64_t>(bytes.size()));
  EXPECT_EQ(header.sha256(), core::model::Sha256Hex(bytes));
  EXPECT_EQ(header.filename(), "model.safetensors");
  EXPECT_EQ(service_.data_messages(), 3);
}

TEST_F(SqueezeClientTest, UploadOfAKnownBlobSendsNoData) {
  const std::string bytes(3 << 20, 'k');
  service_.AddBlob(bytes);
  const auto response = client_->UploadFile(WriteFile("m.safetensors", bytes), v1::BLOB_KIND_MODEL);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_TRUE(response->already_present());
  EXPECT_EQ(service_.data_messages(), 0);
}

TEST_F(SqueezeClientTest, UploadRejectsMissingAndEmptyFiles) {
  EXPECT_EQ(client_->UploadFile((dir_ / "absent").string(), v1::BLOB_KIND_MODEL).status().code(),
            absl::StatusCode::kNotFound);
  const auto empty = client_->UploadFile(WriteFile("empty", ""), v1::BLOB_KIND_DATASET);
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(empty.status().message(), HasSubstr("empty"));
}

TEST_F(SqueezeClientTest, CallsWithoutTokenAreUnauthenticated) {
  const auto client = Connect("");
  const auto job = client->GetJob("job-1");
  EXPECT_EQ(job.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(job.status().message(), HasSubstr("bearer token"));
}

TEST_F(SqueezeClientTest, ServerErrorsKeepTheirCode) {
  const auto job = client_->GetJob("job-404");
  EXPECT_EQ(job.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(job.status().message(), "no job job-404");
  EXPECT_EQ(client_->CancelJob("job-1").status().code(), absl::StatusCode::kUnimplemented);
}

TEST_F(SqueezeClientTest, SubmitAndListDevices) {
  v1::SubmitJobRequest request;
  request.mutable_spec()->set_priority(4);
  const auto response = client_->SubmitJob(request);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->job().id(), "job-1");
  EXPECT_EQ(response->job().spec().priority(), 4);

  const auto profiles = client_->ListDeviceProfiles();
  ASSERT_TRUE(profiles.ok()) << profiles.status();
  ASSERT_EQ(profiles->size(), 2u);
  EXPECT_EQ((*profiles)[0].name(), "a100-80g");
}

TEST_F(SqueezeClientTest, DownloadWritesTheVerifiedFile) {
  const std::string bytes = "artifact bytes spread over several chunks";
  service_.AddBlob(bytes);
  const std::string out = (dir_ / "artifact.safetensors").string();
  const auto size = client_->DownloadBlob(core::model::Sha256Hex(bytes), out);
  ASSERT_TRUE(size.ok()) << size.status();
  EXPECT_EQ(*size, static_cast<int64_t>(bytes.size()));
  std::ifstream in(out, std::ios::binary);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), bytes);
  EXPECT_THAT(FilesInDir(), ElementsAre("artifact.safetensors"));
}

TEST_F(SqueezeClientTest, CorruptDownloadLeavesNoFile) {
  const std::string bytes = "bytes that will arrive damaged";
  service_.AddBlob(bytes);
  service_.set_corrupt_downloads(true);
  const auto size = client_->DownloadBlob(core::model::Sha256Hex(bytes),
                                          (dir_ / "artifact.safetensors").string());
  EXPECT_EQ(size.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(FilesInDir(), ElementsAre());
}

TEST_F(SqueezeClientTest, DownloadOfUnknownBlobIsNotFoundAndLeavesNoFile) {
  const auto size = client_->DownloadBlob(std::string(64, 'a'), (dir_ / "x").string());
  EXPECT_EQ(size.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(FilesInDir(), ElementsAre());
}

TEST_F(SqueezeClientTest, WatchReportsEveryEventAndReturnsTheFinalJob) {
  service_.set_watch_states({v1::QUEUED, v1::RUNNING, v1::SUCCEEDED});
  std::vector<v1::JobState> seen;
  const auto job = client_->WatchJob("job-1", [&](const v1::Job& event) {
    seen.push_back(event.state());
  });
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state(), v1::SUCCEEDED);
  EXPECT_THAT(seen, ElementsAre(v1::QUEUED, v1::RUNNING, v1::SUCCEEDED));
}

TEST_F(SqueezeClientTest, WatchThatEndsEarlyIsUnavailable) {
  service_.set_watch_states({v1::QUEUED, v1::RUNNING});
  const auto job = client_->WatchJob("job-1", [](const v1::Job&) {});
  EXPECT_EQ(job.status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(SqueezeClientTest, ConnectNeedsAReadableCaFile) {
  ClientOptions options;
  options.tls_ca_path = (dir_ / "absent-ca.pem").string();
  EXPECT_EQ(SqueezeClient::Connect(options).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SqueezeClientTest, TokenFileGivesItsFirstNonEmptyLineTrimmed) {
  EXPECT_EQ(*ReadTokenFile(WriteFile("token", "\n  \n  abc.def \nsecond\n")), "abc.def");
  EXPECT_EQ(ReadTokenFile(WriteFile("blank", " \n\n")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadTokenFile((dir_ / "absent").string()).status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace squeeze::client
