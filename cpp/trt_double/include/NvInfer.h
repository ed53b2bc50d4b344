// Test double of the TensorRT builder subset rtinfer's layer uses (written for rtinfer; not
// NVIDIA's header). See NvInferRuntime.h for the two shapes.
#pragma once

#include "NvInferRuntime.h"

namespace nvinfer1 {

class ITensor {
 public:
  virtual ~ITensor() = default;
  virtual char const* getName() const noexcept = 0;
  virtual Dims getDimensions() const noexcept = 0;
  virtual DataType getType() const noexcept = 0;
};

class INetworkDefinition {
 public:
  virtual ~INetworkDefinition() noexcept = default;
  virtual int32_t getNbInputs() const noexcept = 0;
  virtual ITensor* getInput(int32_t index) const noexcept = 0;
  virtual int32_t getNbOutputs() const noexcept = 0;
  virtual ITensor* getOutput(int32_t index) const noexcept = 0;
};

#if NV_TENSORRT_MAJOR >= 10
enum class NetworkDefinitionCreationFlag : int32_t {
  kEXPLICIT_BATCH TRT_DEPRECATED_ENUM = 0,  // every network is explicit batch
  kSTRONGLY_TYPED = 1,  // tensor types from the model (e.g. Q/DQ nodes), no precision flags
};
#else
enum class NetworkDefinitionCreationFlag : int32_t {
  kEXPLICIT_BATCH = 0,
};
#endif
using NetworkDefinitionCreationFlags = uint32_t;

enum class MemoryPoolType : int32_t { kWORKSPACE = 0, kDLA_MANAGED_SRAM = 1 };
// 10.12 deprecates the weak-typing precision flags: "superseded by strong typing".
#if TRT_DOUBLE_SINCE(10, 12)
#define TRT_DOUBLE_WEAK_TYPING TRT_DEPRECATED_ENUM
#else
#define TRT_DOUBLE_WEAK_TYPING
#endif
enum class BuilderFlag : int32_t {
  kFP16 TRT_DOUBLE_WEAK_TYPING = 0,
  kINT8 TRT_DOUBLE_WEAK_TYPING = 1,
  kDEBUG = 2,
  kGPU_FALLBACK = 3,
};
enum class DeviceType : int32_t { kGPU = 0, kDLA = 1 };
enum class OptProfileSelector : int32_t { kMIN = 0, kOPT = 1, kMAX = 2 };
// Implicit quantization (calibrators) is deprecated from 10.1, "superseded by explicit
// quantization"; the enumerators carry the mark in 10.16.1's header but not in 10.3.0's.
#if NV_TENSORRT_MAJOR >= 10
#define TRT_DOUBLE_IMPLICIT_INT8 TRT_DEPRECATED
#else
#define TRT_DOUBLE_IMPLICIT_INT8
#endif
#if TRT_DOUBLE_SINCE(10, 12)
#define TRT_DOUBLE_CALIBRATION_ALGO TRT_DEPRECATED_ENUM
#else
#define TRT_DOUBLE_CALIBRATION_ALGO
#endif
enum class CalibrationAlgoType : int32_t {
  kLEGACY_CALIBRATION TRT_DOUBLE_CALIBRATION_ALGO = 0,
  kENTROPY_CALIBRATION TRT_DOUBLE_CALIBRATION_ALGO = 1,
  kENTROPY_CALIBRATION_2 TRT_DOUBLE_CALIBRATION_ALGO = 2,
  kMINMAX_CALIBRATION TRT_DOUBLE_CALIBRATION_ALGO = 3,
};

class TRT_DOUBLE_IMPLICIT_INT8 IInt8Calibrator {
 public:
  virtual ~IInt8Calibrator() noexcept = default;
  TRT_DOUBLE_IMPLICIT_INT8 virtual int32_t getBatchSize() const noexcept = 0;
  virtual bool getBatch(void* bindings[], char const* names[], int32_t nbBindings) noexcept = 0;
  virtual void const* readCalibrationCache(std::size_t& length) noexcept = 0;
  virtual void writeCalibrationCache(void const* ptr, std::size_t length) noexcept = 0;
  virtual CalibrationAlgoType getAlgorithm() noexcept = 0;
};

class TRT_DOUBLE_IMPLICIT_INT8 IInt8EntropyCalibrator2 : public IInt8Calibrator {
 public:
  CalibrationAlgoType getAlgorithm() noexcept override {
    return CalibrationAlgoType::kENTROPY_CALIBRATION_2;
  }
};

class IOptimizationProfile {
 public:
  virtual bool setDimensions(char const* inputName, OptProfileSelector select,
                             Dims const& dims) noexcept = 0;

 protected:
  virtual ~IOptimizationProfile() noexcept = default;
};

class IBuilderConfig {
 public:
  virtual ~IBuilderConfig() noexcept = default;
  virtual void setMemoryPoolLimit(MemoryPoolType pool, std::size_t poolSize) noexcept = 0;
  virtual void setFlag(BuilderFlag builderFlag) noexcept = 0;
  TRT_DOUBLE_IMPLICIT_INT8 virtual void setInt8Calibrator(IInt8Calibrator* calibrator) noexcept = 0;
  virtual void setDefaultDeviceType(DeviceType deviceType) noexcept = 0;
  // Does nothing when the builder's getNbDLACores() is 0 (as the real one documents).
  virtual void setDLACore(int32_t dlaCore) noexcept = 0;
  virtual int32_t addOptimizationProfile(IOptimizationProfile const* profile) noexcept = 0;
};

// Its networks and builder configs must be destroyed before it (the double aborts otherwise).
class IBuilder {
 public:
  virtual ~IBuilder() noexcept = default;
  virtual INetworkDefinition* createNetworkV2(NetworkDefinitionCreationFlags flags) noexcept = 0;
  virtual IBuilderConfig* createBuilderConfig() noexcept = 0;
  virtual IOptimizationProfile* createOptimizationProfile() noexcept = 0;
  virtual IHostMemory* buildSerializedNetwork(INetworkDefinition& network,
                                              IBuilderConfig& config) noexcept = 0;
  virtual int32_t getNbDLACores() const noexcept = 0;
};

}  // namespace nvinfer1

extern "C" void* createInferBuilder_INTERNAL(void* logger, int32_t version) noexcept;

namespace nvinfer1 {
inline IBuilder* createInferBuilder(ILogger& logger) noexcept {
  return static_cast<IBuilder*>(createInferBuilder_INTERNAL(&logger, NV_TENSORRT_VERSION));
}
}  // namespace nvinfer1
