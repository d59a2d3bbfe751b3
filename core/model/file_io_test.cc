#include "core/model/file_io.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace squeeze::core::model {
namespace {

using ::testing::HasSubstr;

std::string MakeTempDir() {
  std::string pattern = ::testing::TempDir() + "/file_io_test.XXXXXX";
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  const char* dir = mkdtemp(buffer.data());
  EXPECT_NE(dir, nullptr);
  return dir == nullptr ? "" : dir;
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  while (const dirent* entry = readdir(d)) {
    const std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  closedir(d);
  return names;
}

TEST(FileIoTest, WriteAtomicallyThenReadBack) {
  const std::string dir = MakeTempDir();
  const std::string path = dir + "/a.bin";
  const std::string bytes("hello\0world", 11);
  ASSERT_TRUE(WriteFileAtomically(path, bytes).ok());
  EXPECT_EQ(*ReadFile(path), bytes);
  EXPECT_EQ(*FileSize(path), 11u);
  ASSERT_TRUE(WriteFileAtomically(path, "second").ok());
  EXPECT_EQ(*ReadFile(path), "second");
  // No temporary file is left behind.
  EXPECT_THAT(ListDir(dir), ::testing::ElementsAre("a.bin"));
  struct stat info;
  ASSERT_EQ(stat(path.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0644u);
}

TEST(FileIoTest, ReadFileRange) {
  const std::string path = MakeTempDir() + "/r.bin";
  ASSERT_TRUE(WriteFileAtomically(path, "0123456789").ok());
  EXPECT_EQ(*ReadFileRange(path, 3, 4), "3456");
  EXPECT_EQ(*ReadFileRange(path, 10, 0), "");
  absl::StatusOr<std::string> past = ReadFileRange(path, 8, 5);
  EXPECT_EQ(past.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(past.status().message(), HasSubstr("ends at byte 10"));
}

TEST(FileIoTest, MissingFileIsNotFoundNamingThePath) {
  absl::StatusOr<std::string> missing = ReadFile("/nonexistent/squeeze/x");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("/nonexistent/squeeze/x"));
}

TEST(FileIoTest, WriteIntoMissingDirectoryFailsCleanly) {
  const absl::Status status =
      WriteFileAtomically("/nonexistent/squeeze/out.bin", "x");
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
}

TEST(FileIoTest, FailedRenameRemovesTemporaryFile) {
  const std::string dir = MakeTempDir();
  // Renaming a file over a non-empty directory fails.
  const std::string target = dir + "/occupied";
  ASSERT_EQ(mkdir(target.c_str(), 0700), 0);
  ASSERT_TRUE(WriteFileAtomically(target + "/inner", "x").ok());
  EXPECT_FALSE(WriteFileAtomically(target, "y").ok());
  EXPECT_THAT(ListDir(dir), ::testing::ElementsAre("occupied"));
}

TEST(FileIoTest, DirectoryIsNotARegularFile) {
  EXPECT_EQ(ReadFile(MakeTempDir()).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace squeeze::core::model
