// libFuzzer target for ParseIdx (plain and gzip).
#include <cstdint>
#include <string_view>

#include "core/data/idx.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  (void)squeeze::core::data::ParseIdx(bytes, "fuzz.idx");
  return 0;
}
