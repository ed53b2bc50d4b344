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

// Makes the `nth` (0 = next) future call of `api` on this thread fail with `fault`. False (and
// nothing injected) for a throw from a call the imitated version declares noexcept: real
// TensorRT cannot throw from those.
bool inject(std::string const& api, Fault fault, uint32_t nth);
// Whether `api` may throw in the imitated version (only IParser::parse, before 10.x).
bool can_throw(std::string const& api);
// How many DLA cores the "device" has (default 0, as on a discrete GPU or this CPU). Process-wide.
void set_dla_cores(int32_t n);
// Creates TensorRT objects and destroys them in the order `kind` names, which the real API
// forbids: "builder_before_network", "builder_before_config", "runtime_before_engine",
// "engine_before_context", "logger_before_runtime". The double aborts; for tests in a child.
void misuse(std::string const& kind);
// Forgets every injected fault and counter of this thread.
void reset();
// How many times `api` was called on this thread since the last reset.
uint64_t calls(std::string const& api);

// Used by the double itself: counts the call and says whether a fault fires now.
bool fires(char const* api, Fault* fault);

}  // namespace trt_double
