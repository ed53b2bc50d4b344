// Programmable failures and call counters of the TensorRT/CUDA test double. Per thread, so tests
// running in parallel threads do not see each other's faults.
#pragma once

#include <cstdint>
#include <string>

namespace trt_double {

enum class Fault : int32_t {
  // The call reports failure the API's own way: nullptr, false, or a CUDA error code.
  kFail = 0,
  // The call throws std::runtime_error (only on calls not declared noexcept).
  kThrow = 1,
  // The call throws something that is not a std::exception.
  kThrowForeign = 2,
};

// Makes the `nth` (0 = next) future call of `api` on this thread fail with `fault`.
void inject(std::string const& api, Fault fault, uint32_t nth);
// Forgets every injected fault and counter of this thread.
void reset();
// How many times `api` was called on this thread since the last reset.
uint64_t calls(std::string const& api);

// Used by the double itself: counts the call and says whether a fault fires now.
bool fires(char const* api, Fault* fault);

}  // namespace trt_double
