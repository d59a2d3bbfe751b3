// libFuzzer target for ParseNpz (zip directory, stored and deflated entries).
#include <cstdint>
#include <string_view>

#include "core/data/numpy_files.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  (void)squeeze::core::data::ParseNpz(bytes, "fuzz.npz");
  return 0;
}
