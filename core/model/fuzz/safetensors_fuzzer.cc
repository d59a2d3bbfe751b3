// libFuzzer target for ParseSafetensors.
#include <cstdint>
#include <string_view>

#include "core/model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  (void)squeeze::core::model::ParseSafetensors(bytes);
  return 0;
}
