// Test-only compression, to build gzip files and zip entries for reader
// tests.
#ifndef SQUEEZE_CORE_DATA_TEST_UTIL_DEFLATE_H_
#define SQUEEZE_CORE_DATA_TEST_UTIL_DEFLATE_H_

#include <zlib.h>

#include <string>
#include <string_view>

namespace squeeze::core::data::test_util {

// `bytes` deflated with zlib's `window_bits` (16 + 15: gzip, -15: raw).
inline std::string Deflate(std::string_view bytes, int window_bits) {
  z_stream stream{};
  deflateInit2(&stream, Z_BEST_COMPRESSION, Z_DEFLATED, window_bits, 8,
               Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&stream, bytes.size()), '\0');
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  stream.avail_in = bytes.size();
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = out.size();
  deflate(&stream, Z_FINISH);
  out.resize(stream.total_out);
  deflateEnd(&stream);
  return out;
}

inline std::string Gzip(std::string_view bytes) { return Deflate(bytes, 16 + 15); }
inline std::string RawDeflate(std::string_view bytes) { return Deflate(bytes, -15); }

}  // namespace squeeze::core::data::test_util

#endif  // SQUEEZE_CORE_DATA_TEST_UTIL_DEFLATE_H_
