// Test double of the TensorRT runtime subset rtinfer's layer uses (written for rtinfer from the
// public API's names and signatures; not NVIDIA's header). Three shapes (NvInferVersion.h):
//   8.5  : 32-bit Dims, enqueueV2 and bindings still present (deprecated), getDeviceMemorySize only.
//   10.3 : 64-bit Dims, enqueueV2 and bindings gone, getDeviceMemorySizeV2 added, the implicit
//          quantization API (calibrators) deprecated.
//   10.16: as 10.3, and the weak-typing precision flags deprecated.
// Classes are abstract here (the real ones forward to a pimpl); calling code is the same.
// Deprecation marks (TRT_DEPRECATED, TRT_DEPRECATED_ENUM, as the real macros) and noexcept
// follow the real header of each 10.x shape: tests/trt_headers.rs compares them with the real
// headers in third_party/. Behaviour the real headers document and the double enforces: setDLACore
// does nothing when getNbDLACores() is 0; destroying a builder, runtime or engine while an object
// created from it lives, or a logger while an object created with it lives, aborts.
#pragma once

#include <cstddef>
#include <cstdint>

#include "NvInferVersion.h"
#include "cuda_runtime_api.h"

#define TRT_DEPRECATED [[deprecated]]
#define TRT_DEPRECATED_ENUM TRT_DEPRECATED
// As in each release: 8.x encodes MAJOR*1000+MINOR*100+PATCH, 10.x MAJOR*10000+MINOR*100+PATCH.
#if NV_TENSORRT_MAJOR >= 10
#define NV_TENSORRT_VERSION \
  ((NV_TENSORRT_MAJOR * 10000) + (NV_TENSORRT_MINOR * 100) + NV_TENSORRT_PATCH)
#else
#define NV_TENSORRT_VERSION \
  ((NV_TENSORRT_MAJOR * 1000) + (NV_TENSORRT_MINOR * 100) + NV_TENSORRT_PATCH)
#endif

namespace nvinfer1 {
class ILogger;
}
// The double's hook behind ~ILogger (not a TensorRT API).
extern "C" void trt_double_logger_destroyed(nvinfer1::ILogger const* logger) noexcept;

namespace nvinfer1 {

using AsciiChar = char;

#if NV_TENSORRT_MAJOR >= 10
class Dims64 {
 public:
  static constexpr int32_t MAX_DIMS{8};
  int32_t nbDims;
  int64_t d[MAX_DIMS];
};
using Dims = Dims64;
#else
class Dims32 {
 public:
  static constexpr int32_t MAX_DIMS{8};
  int32_t nbDims;
  int32_t d[MAX_DIMS];
};
using Dims = Dims32;
#endif

enum class DataType : int32_t {
  kFLOAT = 0,
  kHALF = 1,
  kINT8 = 2,
  kINT32 = 3,
  kBOOL = 4,
  kUINT8 = 5,
#if NV_TENSORRT_MAJOR >= 10
  kFP8 = 6,
  kBF16 = 7,
  kINT64 = 8,
  kINT4 = 9,
#endif
};

enum class TensorIOMode : int32_t { kNONE = 0, kINPUT = 1, kOUTPUT = 2 };

#if NV_TENSORRT_MAJOR >= 10
enum class ExecutionContextAllocationStrategy : int32_t {
  kSTATIC = 0,
  kON_PROFILE_CHANGE = 1,
  kUSER_MANAGED = 2,
};
#endif

class ILogger {
 public:
  enum class Severity : int32_t {
    kINTERNAL_ERROR = 0,
    kERROR = 1,
    kWARNING = 2,
    kINFO = 3,
    kVERBOSE = 4,
  };
  virtual void log(Severity severity, AsciiChar const* msg) noexcept = 0;
  // The double checks here that no object created with this logger is still alive.
  virtual ~ILogger() { trt_double_logger_destroyed(this); }
};

class IHostMemory {
 public:
  virtual ~IHostMemory() noexcept = default;
  virtual void* data() const noexcept = 0;
  virtual std::size_t size() const noexcept = 0;
  virtual DataType type() const noexcept = 0;
};

class IExecutionContext {
 public:
  virtual ~IExecutionContext() noexcept = default;
  virtual bool setInputShape(char const* tensorName, Dims const& dims) noexcept = 0;
  virtual Dims getTensorShape(char const* tensorName) const noexcept = 0;
  virtual bool setTensorAddress(char const* tensorName, void* data) noexcept = 0;
  virtual bool allInputDimensionsSpecified() const noexcept = 0;
  virtual bool enqueueV3(cudaStream_t stream) noexcept = 0;
#if NV_TENSORRT_MAJOR < 10
  TRT_DEPRECATED virtual bool enqueueV2(void* const* bindings, cudaStream_t stream,
                                               cudaEvent_t* inputConsumed) noexcept = 0;
#endif
};

class ICudaEngine {
 public:
  virtual ~ICudaEngine() noexcept = default;
  virtual int32_t getNbIOTensors() const noexcept = 0;
  virtual char const* getIOTensorName(int32_t index) const noexcept = 0;
  virtual TensorIOMode getTensorIOMode(char const* tensorName) const noexcept = 0;
  virtual Dims getTensorShape(char const* tensorName) const noexcept = 0;
  virtual DataType getTensorDataType(char const* tensorName) const noexcept = 0;
#if NV_TENSORRT_MAJOR >= 10
  virtual IExecutionContext* createExecutionContext(
      ExecutionContextAllocationStrategy strategy = ExecutionContextAllocationStrategy::kSTATIC) noexcept = 0;
#else
  virtual IExecutionContext* createExecutionContext() noexcept = 0;
#endif
  virtual IHostMemory* serialize() const noexcept = 0;
#if NV_TENSORRT_MAJOR >= 10
  TRT_DEPRECATED virtual size_t getDeviceMemorySize() const noexcept = 0;
  virtual int64_t getDeviceMemorySizeV2() const noexcept = 0;
#else
  virtual size_t getDeviceMemorySize() const noexcept = 0;
  TRT_DEPRECATED virtual int32_t getNbBindings() const noexcept = 0;
#endif
};

class IRuntime {
 public:
  virtual ~IRuntime() noexcept = default;
  virtual ICudaEngine* deserializeCudaEngine(void const* blob, std::size_t size) noexcept = 0;
  // Does nothing when getNbDLACores() is 0 (as the real one documents).
  virtual void setDLACore(int32_t dlaCore) noexcept = 0;
  virtual int32_t getNbDLACores() const noexcept = 0;
};

}  // namespace nvinfer1

extern "C" void* createInferRuntime_INTERNAL(void* logger, int32_t version) noexcept;
extern "C" int32_t getInferLibVersion() noexcept;

namespace nvinfer1 {
inline IRuntime* createInferRuntime(ILogger& logger) noexcept {
  return static_cast<IRuntime*>(createInferRuntime_INTERNAL(&logger, NV_TENSORRT_VERSION));
}
}  // namespace nvinfer1
