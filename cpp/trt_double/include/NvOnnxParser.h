// Test double of the ONNX parser subset rtinfer's layer uses (written for rtinfer; not NVIDIA's
// header). In the 8.5 shape `parse`, `getNbErrors`, `getError` and `createParser` are declared
// without noexcept, as onnx-tensorrt 8.x declared them, so the double can throw from `parse` and
// the layer's exception handling is exercised; from 10.x they are noexcept, as in the real header,
// and the double cannot throw from them (tests/trt_headers.rs checks the marks).
#pragma once

#include "NvInfer.h"

#if NV_TENSORRT_MAJOR >= 10
#define TRT_DOUBLE_PARSER_NOEXCEPT noexcept
#else
#define TRT_DOUBLE_PARSER_NOEXCEPT
#endif

namespace nvonnxparser {

class IParserError {
 public:
  virtual ~IParserError() = default;
  virtual char const* desc() const = 0;
  virtual int node() const = 0;
};

class IParser {
 public:
  virtual ~IParser() = default;
  virtual bool parse(void const* serialized_onnx_model, size_t serialized_onnx_model_size,
                     char const* model_path = nullptr) TRT_DOUBLE_PARSER_NOEXCEPT = 0;
  virtual int getNbErrors() const TRT_DOUBLE_PARSER_NOEXCEPT = 0;
  virtual IParserError const* getError(int index) const TRT_DOUBLE_PARSER_NOEXCEPT = 0;
};

}  // namespace nvonnxparser

extern "C" void* createNvOnnxParser_INTERNAL(void* network, void* logger,
                                             int version) TRT_DOUBLE_PARSER_NOEXCEPT;

namespace nvonnxparser {
inline IParser* createParser(nvinfer1::INetworkDefinition& network,
                             nvinfer1::ILogger& logger) TRT_DOUBLE_PARSER_NOEXCEPT {
  return static_cast<IParser*>(createNvOnnxParser_INTERNAL(&network, &logger, NV_TENSORRT_VERSION));
}
}  // namespace nvonnxparser
