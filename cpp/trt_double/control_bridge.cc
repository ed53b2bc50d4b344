#include "rtinfer/cpp/trt_double/control_bridge.h"

#include <string>

#include "trt_double_control.h"

namespace trt_double {
void bridge_inject(rust::Str api, int32_t fault, uint32_t nth) {
  inject(std::string(api), static_cast<Fault>(fault), nth);
}
void bridge_reset() { reset(); }
uint64_t bridge_calls(rust::Str api) { return calls(std::string(api)); }
}  // namespace trt_double
