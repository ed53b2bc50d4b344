// rtinfer's C++ layer over TensorRT and the CUDA runtime, behind the cxx bridge in
// src/backend/tensorrt/bridge.rs. Pimpl: no TensorRT or CUDA header leaks into the bridge's
// generated code, so the same declarations serve the real SDK and the test double.
//
// Every function the bridge declares `-> Result<T>` may throw std::runtime_error; every TensorRT
// or CUDA failure (null object, false, error code) becomes one, and anything else thrown inside is
// caught and rethrown as one, so nothing reaches cxx's boundary that it cannot turn into `Err`.
#pragma once

#include <cstdint>
#include <memory>

#include "rust/cxx.h"

namespace rtinfer {
namespace trt {

enum class Precision : std::uint8_t;
enum class BuildPath : std::uint8_t;
struct RuntimeInfo;
struct EngineOptions;
struct BuildOptions;
struct TensorDesc;
struct MemoryFigures;
struct CalibSource;

class TrtEngine {
 public:
  class Impl;
  explicit TrtEngine(std::unique_ptr<Impl> impl);
  ~TrtEngine();

  rust::Vec<TensorDesc> tensors() const;
  MemoryFigures memory() const;
  rust::Slice<float> input();
  rust::Slice<const float> output() const;
  void run();
  float last_gpu_ms() const;

 private:
  std::unique_ptr<Impl> impl_;
};

RuntimeInfo runtime_info();
BuildPath build_path(Precision precision);
std::unique_ptr<TrtEngine> new_engine(rust::Slice<const uint8_t> plan, EngineOptions const& opts);
rust::Vec<uint8_t> build_engine(rust::Slice<const uint8_t> onnx, BuildOptions const& opts,
                                CalibSource& calib);

}  // namespace trt
}  // namespace rtinfer
