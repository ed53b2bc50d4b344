// The double's fault injection, in types the cxx bridge can pass (src/backend/tensorrt/double.rs).
#pragma once

#include <cstdint>

#include "rust/cxx.h"

namespace trt_double {
bool bridge_inject(rust::Str api, int32_t fault, uint32_t nth);
bool bridge_can_throw(rust::Str api);
void bridge_set_dla_cores(int32_t n);
void bridge_misuse(rust::Str kind);
void bridge_reset();
uint64_t bridge_calls(rust::Str api);
}  // namespace trt_double
