// Runs shell commands and child processes for cross-process tests.
#ifndef SQUEEZE_TESTS_TEST_UTIL_SUBPROCESS_H_
#define SQUEEZE_TESTS_TEST_UTIL_SUBPROCESS_H_

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

namespace squeeze::testing {

struct CommandResult {
  int exit_code = -1;  // -1 when the command did not exit normally.
  std::string output;  // stdout and stderr together.
};

// Runs `command` with /bin/sh and waits for it.
CommandResult RunCommand(const std::string& command);

// Starts `argv` with extra environment variables, output to `log_path`.
pid_t StartProcess(const std::vector<std::string>& argv,
                   const std::map<std::string, std::string>& env, const std::string& log_path);
// Waits up to `timeout_ms` for `pid`; returns its exit code, or -1 (and
// kills it) when it did not exit in time or died from a signal.
int WaitProcess(pid_t pid, int timeout_ms);

// A TCP port on 127.0.0.1 that was free a moment ago.
int FreePort();

}  // namespace squeeze::testing

#endif  // SQUEEZE_TESTS_TEST_UTIL_SUBPROCESS_H_
