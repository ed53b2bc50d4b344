// Test double of the ONNX parser subset rtinfer's layer uses (written for rtinfer; not NVIDIA's
// header). `parse` is declared without noexcept in both shapes, as onnx-tensorrt 8.x declared it,
// so the double can throw from it and the layer's exception handling is exercised.
#pragma once

#include "NvInfer.h"

namespace nvonnxparser {

class IParserError {
 public:
  virtual ~IParserError() = default;
  virtual char const* desc() const = 0;
  virtual int32_t node() const = 0;
};

class IParser {
 public:
  virtual ~IParser() = default;
  virtual bool parse(void const* serialized_onnx_model, size_t serialized_onnx_model_size,
                     char const* model_path = nullptr) = 0;
  virtual int32_t getNbErrors() const = 0;
  virtual IParserError const* getError(int32_t index) const = 0;
};

}  // namespace nvonnxparser

extern "C" void* createNvOnnxParser_INTERNAL(void* network, void* logger, int32_t version);

namespace nvonnxparser {
inline IParser* createParser(nvinfer1::INetworkDefinition& network, nvinfer1::ILogger& logger) {
  return static_cast<IParser*>(createNvOnnxParser_INTERNAL(&network, &logger, NV_TENSORRT_VERSION));
}
}  // namespace nvonnxparser
