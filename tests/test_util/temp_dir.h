// A directory under $TMPDIR (or /tmp) that exists for the life of the object
// and is removed with everything in it afterwards.
#ifndef SQUEEZE_TESTS_TEST_UTIL_TEMP_DIR_H_
#define SQUEEZE_TESTS_TEST_UTIL_TEMP_DIR_H_

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace squeeze::testing {

class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base && *base ? base : "/tmp") + "/squeeze-test-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string Join(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace squeeze::testing

#endif  // SQUEEZE_TESTS_TEST_UTIL_TEMP_DIR_H_
