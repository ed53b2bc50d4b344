#include "rtinfer/cpp/trt_double/control_bridge.h"

#include <string>

#include "trt_double_control.h"

namespace trt_double {
bool bridge_inject(rust::Str api, int32_t fault, uint32_t nth) {
  return inject(std::string(api), static_cast<Fault>(fault), nth);
}
bool bridge_can_throw(rust::Str api) { return can_throw(std::string(api)); }
void bridge_set_dla_cores(int32_t n) { set_dla_cores(n); }
void bridge_misuse(rust::Str kind) { misuse(std::string(kind)); }
void bridge_reset() { reset(); }
uint64_t bridge_calls(rust::Str api) { return calls(std::string(api)); }
}  // namespace trt_double
