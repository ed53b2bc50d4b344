// The double's fault injection, in types the cxx bridge can pass (src/backend/tensorrt/double.rs).
#pragma once

#include <cstdint>

#include "rust/cxx.h"

namespace trt_double {
void bridge_inject(rust::Str api, int32_t fault, uint32_t nth);
void bridge_reset();
uint64_t bridge_calls(rust::Str api);
}  // namespace trt_double
