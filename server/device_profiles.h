// The device profiles squeezed serves (ListDeviceProfiles) and resolves for
// workers: one DeviceProfile text proto per file, *.textproto, in a directory
// (deploy/devices/ in the repository). Loaded once at start; read-only after.
#ifndef SQUEEZE_SERVER_DEVICE_PROFILES_H_
#define SQUEEZE_SERVER_DEVICE_PROFILES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "squeeze/v1/squeeze.pb.h"

namespace squeeze::server {

class DeviceProfiles {
 public:
  // Every *.textproto in `dir`, sorted by name. Errors name the file and
  // the parser's message; duplicate or empty names are errors.
  static absl::StatusOr<DeviceProfiles> LoadDirectory(const std::string& dir);

  const std::vector<v1::DeviceProfile>& all() const { return profiles_; }
  // nullptr when no profile has this name.
  const v1::DeviceProfile* Find(const std::string& name) const;

 private:
  std::vector<v1::DeviceProfile> profiles_;
};

}  // namespace squeeze::server

#endif  // SQUEEZE_SERVER_DEVICE_PROFILES_H_
