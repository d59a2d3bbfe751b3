// A minimal HTTP/1.0 GET over loopback, for scraping /metrics and querying a
// local Prometheus server in tests. Not a general HTTP client.
#ifndef SQUEEZE_TESTS_TEST_UTIL_HTTP_GET_H_
#define SQUEEZE_TESTS_TEST_UTIL_HTTP_GET_H_

#include <string>

#include "absl/status/statusor.h"

namespace squeeze::testing {

// GETs http://<host_port><path> and returns the body of a 200 response.
absl::StatusOr<std::string> HttpGet(const std::string& host_port, const std::string& path);

}  // namespace squeeze::testing

#endif  // SQUEEZE_TESTS_TEST_UTIL_HTTP_GET_H_
