// The argument parser of the `squeeze` CLI: GNU-style long flags and
// positional arguments, with each subcommand declaring the flags it takes.
//
// Accepted forms: "--name value", "--name=value", "--name" for a switch, and
// "--" to end the flags. Flags and positionals may be interleaved. A flag may
// repeat; Value() returns its last value, Values() all of them in order.
#ifndef SQUEEZE_CLIENT_COMMAND_LINE_H_
#define SQUEEZE_CLIENT_COMMAND_LINE_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace squeeze::client {

struct FlagSpec {
  std::string name;  // Without the leading "--".
  bool takes_value;  // False for a switch such as --json.
};

class CommandLine {
 public:
  // INVALID_ARGUMENT naming the flag for an unknown flag, a value given to a
  // switch, or a flag missing its value.
  static absl::StatusOr<CommandLine> Parse(const std::vector<std::string>& args,
                                           const std::vector<FlagSpec>& flags);

  const std::vector<std::string>& positionals() const { return positionals_; }
  bool Has(const std::string& name) const { return values_.contains(name); }
  std::optional<std::string> Value(const std::string& name) const;
  std::vector<std::string> Values(const std::string& name) const;

  // The flag's last value as an integer in [min, max], or `fallback` when the
  // flag is absent. INVALID_ARGUMENT naming the flag otherwise.
  absl::StatusOr<int> IntValue(const std::string& name, int fallback, int min, int max) const;

  // Every value of a repeated "key=value" flag (--label a=b --label c=d).
  // INVALID_ARGUMENT naming the value when one lacks '=' or has an empty key.
  absl::StatusOr<std::map<std::string, std::string>> KeyValues(const std::string& name) const;

 private:
  std::vector<std::string> positionals_;
  std::map<std::string, std::vector<std::string>> values_;  // A switch holds "".
};

}  // namespace squeeze::client

#endif  // SQUEEZE_CLIENT_COMMAND_LINE_H_
