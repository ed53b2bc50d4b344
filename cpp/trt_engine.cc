// rtinfer's TensorRT layer. Only the name-based API that TensorRT 8.5 and 10.x share is used
// (getNbIOTensors / getIOTensorName / setTensorAddress / enqueueV3); the differences (Dims width,
// getDeviceMemorySizeV2, the explicit-batch flag, and how each version wants fp16 and int8 built:
// see build_path) are behind NV_TENSORRT_MAJOR/MINOR. Nothing a supported version deprecates is
// used: scripts/check_sdk_headers.sh compiles this file against the real 10.3.0 and 10.16.1
// headers with deprecations as errors.
//
// Rules of the real API this file keeps: the logger outlives every object (it is never
// destroyed); builder configs and networks are destroyed before their builder, contexts before
// their engine, engines before their runtime (member and local declaration order; the test
// double aborts on a wrong order); setDLACore does nothing without DLA cores, so a requested DLA
// core is checked against getNbDLACores() and its absence is an error at load.
#include "rtinfer/cpp/trt_engine.h"

#include <NvInfer.h>
#include <NvOnnxParser.h>
#include <cuda_runtime_api.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <iterator>
#include <mutex>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "rtinfer/src/backend/tensorrt/bridge.rs.h"

// TensorRT 10.12 deprecates the weak-typing precision flags (kFP16, kINT8).
#define RTINFER_TRT_SINCE(major, minor) \
  (NV_TENSORRT_MAJOR > (major) || (NV_TENSORRT_MAJOR == (major) && NV_TENSORRT_MINOR >= (minor)))

namespace rtinfer {
namespace trt {
namespace {

namespace nv = nvinfer1;
using nvinfer1::Dims;
using nvinfer1::ILogger;
using nvinfer1::TensorIOMode;

// TensorRT reports failures by returning null or false and explains them only through the
// logger, which it may call from threads of its own (builder and runtime workers). So an error
// logged on a thread that is running one of our calls belongs to that call; one logged on any
// other thread is kept (the last few, numbered) and a call that fails takes those logged since it
// began. Two calls failing at once on two threads may both show such a message: better than none.
thread_local bool t_in_call = false;
thread_local uint64_t t_call_start = 0;
thread_local std::string t_last_error;

struct ForeignErrors {
  std::mutex mu;
  std::atomic<uint64_t> seq{0};
  std::deque<std::pair<uint64_t, std::string>> last;
};
ForeignErrors& foreign_errors() {
  static ForeignErrors* f = new ForeignErrors();  // never destroyed: see logger()
  return *f;
}

std::string foreign_errors_since(uint64_t start) {
  auto& f = foreign_errors();
  std::lock_guard<std::mutex> g(f.mu);
  std::string s;
  for (auto const& e : f.last)
    if (e.first > start) s += (s.empty() ? "" : "; ") + e.second;
  return s;
}

Severity severity_of(ILogger::Severity s) {
  switch (s) {
    case ILogger::Severity::kINTERNAL_ERROR: return Severity::InternalError;
    case ILogger::Severity::kERROR: return Severity::Error;
    case ILogger::Severity::kWARNING: return Severity::Warning;
    case ILogger::Severity::kINFO: return Severity::Info;
    default: return Severity::Verbose;
  }
}

class Logger : public ILogger {
 public:
  void log(Severity severity, char const* msg) noexcept override {
    if (msg == nullptr) return;
    try {
      if (severity <= Severity::kERROR) {
        if (t_in_call) {
          t_last_error = msg;
        } else {
          auto& f = foreign_errors();
          std::lock_guard<std::mutex> g(f.mu);
          f.last.emplace_back(f.seq.fetch_add(1) + 1, msg);
          if (f.last.size() > 16) f.last.pop_front();
        }
      }
      trt_log(severity_of(severity),
              rust::Slice<const uint8_t>(reinterpret_cast<uint8_t const*>(msg), std::strlen(msg)));
    } catch (...) {
      // Logging must never throw into TensorRT.
    }
  }
};

// One logger for the process, never destroyed: the real API requires it to outlive every object
// created with it, and an engine may still be alive when static destructors run at exit.
Logger& logger() {
  static Logger* l = new Logger();
  return *l;
}

// Marks the calling thread as running one of our calls for as long as it lives.
class InCall {
 public:
  InCall() {
    t_in_call = true;
    t_call_start = foreign_errors().seq.load();
    t_last_error.clear();
  }
  ~InCall() { t_in_call = false; }
  InCall(InCall const&) = delete;
  InCall& operator=(InCall const&) = delete;
};

[[noreturn]] void fail(std::string const& what) {
  std::string msg = what;
  std::string why = t_last_error.empty() ? foreign_errors_since(t_call_start) : t_last_error;
  if (!why.empty()) msg += " (TensorRT: " + why + ")";
  t_last_error.clear();
  throw std::runtime_error(msg);
}

void check(cudaError_t e, char const* call) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string(call) + " failed: " + cudaGetErrorName(e) + " (" +
                             cudaGetErrorString(e) + ")");
}

// Runs `f`, turning anything thrown into std::runtime_error prefixed by `what`.
template <typename F>
auto guarded(char const* what, F&& f) -> decltype(f()) {
  InCall in_call;
  try {
    return f();
  } catch (std::exception const& e) {
    throw std::runtime_error(std::string(what) + ": " + e.what());
  } catch (...) {
    throw std::runtime_error(std::string(what) + ": a non-standard C++ exception was thrown");
  }
}

std::vector<int64_t> to_vec(Dims const& d) {
  std::vector<int64_t> v;
  for (int32_t i = 0; i < d.nbDims && i < Dims::MAX_DIMS; ++i) v.push_back(static_cast<int64_t>(d.d[i]));
  return v;
}

// Dims::d is int32_t in 8.x and int64_t in 10.x.
Dims to_dims(std::vector<int64_t> const& v) {
  using Elem = std::remove_reference_t<decltype(Dims{}.d[0])>;
  if (v.size() > static_cast<size_t>(Dims::MAX_DIMS)) throw std::runtime_error("too many dimensions");
  Dims d{};
  d.nbDims = static_cast<int32_t>(v.size());
  for (size_t i = 0; i < v.size(); ++i) d.d[i] = static_cast<Elem>(v[i]);
  return d;
}

int64_t volume(std::vector<int64_t> const& v) {
  int64_t n = 1;
  for (auto d : v) {
    if (d < 0) throw std::runtime_error("volume of a dynamic shape");
    n *= d;
  }
  return n;
}

DataType bridge_type(nv::DataType t) {
  switch (t) {
    case nv::DataType::kFLOAT: return DataType::Float32;
    case nv::DataType::kHALF: return DataType::Float16;
    case nv::DataType::kINT8: return DataType::Int8;
    case nv::DataType::kINT32: return DataType::Int32;
    case nv::DataType::kBOOL: return DataType::Bool;
    case nv::DataType::kUINT8: return DataType::Uint8;
#if NV_TENSORRT_MAJOR >= 10
    case nv::DataType::kINT64: return DataType::Int64;
    case nv::DataType::kBF16: return DataType::Bfloat16;
    case nv::DataType::kFP8: return DataType::Fp8;
    case nv::DataType::kINT4: return DataType::Int4;
#endif
    default: return DataType::Other;
  }
}

char const* type_name(nv::DataType t) {
  switch (bridge_type(t)) {
    case DataType::Float32: return "float32";
    case DataType::Float16: return "float16";
    case DataType::Int8: return "int8";
    case DataType::Int32: return "int32";
    case DataType::Bool: return "bool";
    case DataType::Uint8: return "uint8";
    case DataType::Int64: return "int64";
    case DataType::Bfloat16: return "bfloat16";
    case DataType::Fp8: return "fp8";
    case DataType::Int4: return "int4";
    default: return "other";
  }
}

size_t type_size(nv::DataType t) {
  switch (t) {
    case nv::DataType::kFLOAT: case nv::DataType::kINT32: return 4;
    case nv::DataType::kHALF: return 2;
#if NV_TENSORRT_MAJOR >= 10
    case nv::DataType::kINT64: return 8;
    case nv::DataType::kBF16: return 2;
#endif
    default: return 1;
  }
}

std::string dims_text(std::vector<int64_t> const& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

// A requested DLA core against the cores the runtime or builder reports: setDLACore does nothing
// when there are none, so without this check a dla_core setting would silently run on the GPU.
void check_dla(int32_t core, int32_t available, char const* who) {
  if (available == 0)
    fail("tensorrt.dla_core = " + std::to_string(core) + ", but this device has no DLA core (" + who +
         "::getNbDLACores() = 0): remove dla_core to run on the GPU");
  if (core >= available)
    fail("tensorrt.dla_core = " + std::to_string(core) + ", but this device has " +
         std::to_string(available) + " DLA core(s), numbered from 0");
}

template <typename T>
struct Deleter {
  void operator()(T* p) const { delete p; }
};
template <typename T>
using Owned = std::unique_ptr<T, Deleter<T>>;

size_t free_device_memory() {
  size_t free = 0, total = 0;
  check(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
  return free;
}

// One tensor's memory: pinned host + device, or (zero copy) mapped host memory whose device
// view TensorRT reads directly. cudaMalloc and cudaHostAlloc return >= 256-byte aligned memory.
struct Buffer {
  std::string name;
  bool input = false;
  nv::DataType type = nv::DataType::kFLOAT;
  std::vector<int64_t> shape;
  size_t bytes = 0;
  void* host = nullptr;
  void* device = nullptr;
  bool mapped = false;

  Buffer() = default;
  Buffer(Buffer const&) = delete;
  Buffer& operator=(Buffer const&) = delete;
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    std::swap(name, o.name);
    input = o.input;
    type = o.type;
    std::swap(shape, o.shape);
    bytes = o.bytes;
    std::swap(host, o.host);
    std::swap(device, o.device);
    mapped = o.mapped;
    return *this;
  }
  ~Buffer() {
    if (!mapped && device != nullptr) cudaFree(device);
    if (host != nullptr) cudaFreeHost(host);
  }

  void allocate(bool zero_copy) {
    mapped = zero_copy;
    if (zero_copy) {
      check(cudaHostAlloc(&host, bytes, cudaHostAllocMapped), "cudaHostAlloc(mapped)");
      check(cudaHostGetDevicePointer(&device, host, 0), "cudaHostGetDevicePointer");
    } else {
      check(cudaHostAlloc(&host, bytes, cudaHostAllocDefault), "cudaHostAlloc");
      check(cudaMalloc(&device, bytes), "cudaMalloc");
    }
    std::memset(host, 0, bytes);
  }
};

std::string version_string() {
  return std::to_string(NV_TENSORRT_MAJOR) + "." + std::to_string(NV_TENSORRT_MINOR) + "." +
         std::to_string(NV_TENSORRT_PATCH) + "." + std::to_string(NV_TENSORRT_BUILD);
}

}  // namespace

// ---------------------------------------------------------------------------------------------

class TrtEngine::Impl {
 public:
  ~Impl() {
    if (stop_ != nullptr) cudaEventDestroy(stop_);
    if (start_ != nullptr) cudaEventDestroy(start_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  void load(rust::Slice<const uint8_t> plan, EngineOptions const& opts) {
    zero_copy_ = opts.zero_copy;
    output_ = std::string(opts.output);
    runtime_.reset(nvinfer1::createInferRuntime(logger()));
    if (!runtime_) fail("createInferRuntime failed (TensorRT " + version_string() + ")");
    if (opts.dla_core >= 0) {
      check_dla(opts.dla_core, runtime_->getNbDLACores(), "IRuntime");
      runtime_->setDLACore(opts.dla_core);
    }
    size_t free_before = free_device_memory();
    engine_.reset(runtime_->deserializeCudaEngine(plan.data(), plan.size()));
    if (!engine_)
      fail("deserializeCudaEngine refused the plan: it was built by another TensorRT version or for "
           "another GPU, or is not a TensorRT plan; this is TensorRT " + version_string() +
           ": rebuild the engine on this device from the .onnx");
    context_.reset(engine_->createExecutionContext());
    if (!context_) fail("createExecutionContext failed");
    size_t free_after = free_device_memory();
    memory_.serialized_bytes = plan.size();
#if NV_TENSORRT_MAJOR > 10 || (NV_TENSORRT_MAJOR == 10 && NV_TENSORRT_MINOR >= 1)
    memory_.activation_bytes = static_cast<uint64_t>(engine_->getDeviceMemorySizeV2());
#else
    memory_.activation_bytes = static_cast<uint64_t>(engine_->getDeviceMemorySize());
#endif
    uint64_t used = free_before > free_after ? free_before - free_after : 0;
    memory_.persistent_bytes = used > memory_.activation_bytes ? used - memory_.activation_bytes : 0;
    memory_.persistent_source = rust::String(
        "cudaMemGetInfo difference around deserializeCudaEngine + createExecutionContext, minus "
        "the activation memory");
    bind();
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    check(cudaEventCreate(&start_), "cudaEventCreate");
    check(cudaEventCreate(&stop_), "cudaEventCreate");
  }

  rust::Vec<TensorDesc> tensors() const {
    rust::Vec<TensorDesc> out;
    for (auto const& b : buffers_) {
      TensorDesc d;
      d.name = rust::String(b.name);
      d.input = b.input;
      d.element = bridge_type(b.type);
      for (auto x : b.shape) d.shape.push_back(x);
      Dims declared = engine_->getTensorShape(b.name.c_str());
      for (auto x : to_vec(declared)) d.declared_shape.push_back(x);
      out.push_back(std::move(d));
    }
    return out;
  }

  MemoryFigures memory() const { return memory_; }

  rust::Slice<float> input() {
    return rust::Slice<float>(static_cast<float*>(in_->host), in_->bytes / sizeof(float));
  }

  rust::Slice<const float> output() const {
    return rust::Slice<const float>(static_cast<float const*>(out_->host), out_->bytes / sizeof(float));
  }

  // Copies in, enqueues, copies out, and waits: the output is complete when this returns. The
  // CUDA events bracket the enqueue alone, so last_gpu_ms() is GPU compute without the copies.
  void run() {
    if (!zero_copy_)
      check(cudaMemcpyAsync(in_->device, in_->host, in_->bytes, cudaMemcpyHostToDevice, stream_),
            "cudaMemcpyAsync(host to device)");
    check(cudaEventRecord(start_, stream_), "cudaEventRecord");
    if (!context_->enqueueV3(stream_)) fail("enqueueV3 failed");
    check(cudaEventRecord(stop_, stream_), "cudaEventRecord");
    if (!zero_copy_)
      check(cudaMemcpyAsync(out_->host, out_->device, out_->bytes, cudaMemcpyDeviceToHost, stream_),
            "cudaMemcpyAsync(device to host)");
    check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    float ms = 0;
    if (cudaEventElapsedTime(&ms, start_, stop_) == cudaSuccess) gpu_ms_ = ms;
  }

  float last_gpu_ms() const { return gpu_ms_; }

 private:
  // Fixes dynamic batch dimensions to 1, then gives every I/O tensor a buffer and an address.
  void bind() {
    int32_t n = engine_->getNbIOTensors();
    for (int32_t i = 0; i < n; ++i) {
      char const* name = engine_->getIOTensorName(i);
      if (name == nullptr) fail("getIOTensorName(" + std::to_string(i) + ") returned null");
      if (engine_->getTensorIOMode(name) != TensorIOMode::kINPUT) continue;
      auto shape = to_vec(engine_->getTensorShape(name));
      bool dynamic = false;
      for (size_t k = 0; k < shape.size(); ++k)
        if (shape[k] < 0) {
          if (k != 0)
            fail(std::string("input '") + name + "' has a dynamic dimension other than the batch; "
                 "build the engine with a fixed input shape");
          shape[k] = 1;
          dynamic = true;
        }
      if (dynamic && !context_->setInputShape(name, to_dims(shape)))
        fail(std::string("setInputShape('") + name + "') failed");
    }
    for (int32_t i = 0; i < n; ++i) {
      Buffer b;
      b.name = engine_->getIOTensorName(i);
      b.input = engine_->getTensorIOMode(b.name.c_str()) == TensorIOMode::kINPUT;
      b.type = engine_->getTensorDataType(b.name.c_str());
      b.shape = to_vec(context_->getTensorShape(b.name.c_str()));
      for (auto x : b.shape)
        if (x < 0)
          fail(std::string(b.input ? "input '" : "output '") + b.name + "' has a data-dependent shape " +
               dims_text(b.shape) + " once the inputs are set: rtinfer binds fixed-size buffers at load "
               "(no IOutputAllocator); export the model with static output shapes");
      b.bytes = static_cast<size_t>(volume(b.shape)) * type_size(b.type);
      b.allocate(zero_copy_);
      if (!context_->setTensorAddress(b.name.c_str(), b.device))
        fail("setTensorAddress('" + b.name + "') failed");
      buffers_.push_back(std::move(b));
    }
    std::string outputs;
    for (auto& b : buffers_) {
      if (b.input && in_ == nullptr) in_ = &b;
      if (b.input) continue;
      outputs += (outputs.empty() ? "" : ", ") + b.name + " " + dims_text(b.shape);
      // The chosen output (postprocess.output), else the first; only it is copied back.
      if (out_ == nullptr && (output_.empty() || b.name == output_)) out_ = &b;
    }
    if (out_ == nullptr && !output_.empty() && !outputs.empty())
      fail("postprocess.output '" + output_ + "' is not one of the engine's outputs: " + outputs);
    if (in_ == nullptr || out_ == nullptr) fail("the engine needs at least one input and one output");
    if (in_->type != nv::DataType::kFLOAT || out_->type != nv::DataType::kFLOAT)
      fail("input '" + in_->name + "' is " + type_name(in_->type) + " and output '" + out_->name +
           "' is " + type_name(out_->type) + ": rtinfer feeds and reads float32 I/O (int8 engines "
           "keep float32 I/O unless built with explicit I/O formats)");
  }

  Owned<nvinfer1::IRuntime> runtime_;
  Owned<nvinfer1::ICudaEngine> engine_;
  Owned<nvinfer1::IExecutionContext> context_;
  std::vector<Buffer> buffers_;
  Buffer* in_ = nullptr;
  Buffer* out_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t start_ = nullptr;
  cudaEvent_t stop_ = nullptr;
  MemoryFigures memory_{};
  bool zero_copy_ = false;
  std::string output_;
  float gpu_ms_ = 0;
};

TrtEngine::TrtEngine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TrtEngine::~TrtEngine() = default;

rust::Vec<TensorDesc> TrtEngine::tensors() const { return impl_->tensors(); }
MemoryFigures TrtEngine::memory() const { return impl_->memory(); }
rust::Slice<float> TrtEngine::input() { return impl_->input(); }
rust::Slice<const float> TrtEngine::output() const { return impl_->output(); }
void TrtEngine::run() {
  guarded("run", [&] { impl_->run(); });
}
float TrtEngine::last_gpu_ms() const { return impl_->last_gpu_ms(); }

std::unique_ptr<TrtEngine> new_engine(rust::Slice<const uint8_t> plan, EngineOptions const& opts) {
  return guarded("load", [&] {
    auto impl = std::make_unique<TrtEngine::Impl>();
    impl->load(plan, opts);
    return std::make_unique<TrtEngine>(std::move(impl));
  });
}

BuildPath build_path(Precision precision) {
  switch (precision) {
    case Precision::Fp16:
#if RTINFER_TRT_SINCE(10, 12)
      return BuildPath::Fp16StronglyTyped;
#else
      return BuildPath::Fp16Flag;
#endif
    case Precision::Int8:
#if NV_TENSORRT_MAJOR >= 10
      return BuildPath::Int8Explicit;
#else
      return BuildPath::Int8Calibrated;
#endif
    default:
      return BuildPath::Fp32;
  }
}

RuntimeInfo runtime_info() {
  return guarded("runtime_info", [&] {
    RuntimeInfo info;
    info.version = rust::String(version_string());
    info.header_version = NV_TENSORRT_VERSION;
    info.library_version = getInferLibVersion();
    int device = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
    info.device = rust::String(prop.name);
    info.compute_capability = rust::String(std::to_string(prop.major) + "." + std::to_string(prop.minor));
    info.integrated = prop.integrated != 0;
    return info;
  });
}

// ---------------------------------------------------------------------------------------------
// Building an engine from ONNX on the device.

namespace {

#if NV_TENSORRT_MAJOR < 10
// Feeds TensorRT's int8 calibration from the Rust side (CalibSource::next_batch fills one
// preprocessed image per batch) and keeps the calibration cache file in sync.
class Calibrator : public nvinfer1::IInt8EntropyCalibrator2 {
 public:
  Calibrator(CalibSource& src, size_t elements, std::string cache_path, bool read_cache)
      : src_(src), host_(elements), cache_path_(std::move(cache_path)), read_cache_(read_cache) {}
  ~Calibrator() noexcept override {
    if (device_ != nullptr) cudaFree(device_);
  }

  int32_t getBatchSize() const noexcept override { return 1; }

  bool getBatch(void* bindings[], char const* names[], int32_t nb) noexcept override {
    (void)names;
    try {
      if (nb < 1) return false;
      if (device_ == nullptr) check(cudaMalloc(&device_, host_.size() * sizeof(float)), "cudaMalloc");
      if (!src_.next_batch(rust::Slice<float>(host_.data(), host_.size()))) return false;
      check(cudaMemcpy(device_, host_.data(), host_.size() * sizeof(float), cudaMemcpyHostToDevice),
            "cudaMemcpy");
      bindings[0] = device_;
      return true;
    } catch (std::exception const& e) {
      logger().log(ILogger::Severity::kERROR, (std::string("calibrator: ") + e.what()).c_str());
      return false;
    } catch (...) {
      return false;
    }
  }

  void const* readCalibrationCache(std::size_t& length) noexcept override {
    length = 0;
    if (!read_cache_ || cache_path_.empty()) return nullptr;
    try {
      std::ifstream f(cache_path_, std::ios::binary);
      if (!f) return nullptr;
      cache_.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
      length = cache_.size();
      return cache_.empty() ? nullptr : cache_.data();
    } catch (...) {
      return nullptr;
    }
  }

  void writeCalibrationCache(void const* ptr, std::size_t length) noexcept override {
    if (cache_path_.empty()) return;
    try {
      std::string tmp = cache_path_ + ".tmp";
      {
        std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
        f.write(static_cast<char const*>(ptr), static_cast<std::streamsize>(length));
        if (!f) throw std::runtime_error("cannot write " + tmp);
      }
      if (std::rename(tmp.c_str(), cache_path_.c_str()) != 0)
        throw std::runtime_error("cannot rename " + tmp + " to " + cache_path_);
      written_ = true;
    } catch (std::exception const& e) {
      logger().log(ILogger::Severity::kWARNING, (std::string("calibration cache: ") + e.what()).c_str());
    }
  }

  bool written() const { return written_; }

 private:
  CalibSource& src_;
  std::vector<float> host_;
  void* device_ = nullptr;
  std::string cache_path_;
  bool read_cache_;
  std::vector<char> cache_;
  bool written_ = false;
};
#endif  // TensorRT 8.x: the calibrator (10.x deprecates implicit quantization)

std::string parser_errors(nvonnxparser::IParser const& parser) {
  std::string s;
  for (int32_t i = 0; i < parser.getNbErrors(); ++i) {
    auto const* e = parser.getError(i);
    if (e == nullptr) continue;
    if (!s.empty()) s += "; ";
    s += e->desc();
  }
  return s.empty() ? "no parser error recorded" : s;
}

// Builds in the way build_path() names: fp32 and calibrated int8 in a weakly typed network with
// precision flags (8.x; kFP16 through 10.11), explicit int8 and 10.12+ fp16 in a strongly typed
// network whose types come from the model (the Rust side has checked that it carries Q/DQ nodes
// or float16 tensors).
rust::Vec<uint8_t> build(rust::Slice<const uint8_t> onnx, BuildOptions const& opts, CalibSource& calib) {
  BuildPath const path = build_path(opts.precision);
  Owned<nvinfer1::IBuilder> builder(nvinfer1::createInferBuilder(logger()));
  if (!builder) fail("createInferBuilder failed (TensorRT " + version_string() + ")");
#if NV_TENSORRT_MAJOR >= 10
  nvinfer1::NetworkDefinitionCreationFlags flags = 0;  // explicit batch is the only mode
  if (path == BuildPath::Fp16StronglyTyped || path == BuildPath::Int8Explicit)
    flags |= 1U << static_cast<uint32_t>(nvinfer1::NetworkDefinitionCreationFlag::kSTRONGLY_TYPED);
#else
  nvinfer1::NetworkDefinitionCreationFlags flags =
      1U << static_cast<uint32_t>(nvinfer1::NetworkDefinitionCreationFlag::kEXPLICIT_BATCH);
#endif
  Owned<nvinfer1::INetworkDefinition> network(builder->createNetworkV2(flags));
  if (!network) fail("createNetworkV2 failed");
  Owned<nvonnxparser::IParser> parser(nvonnxparser::createParser(*network, logger()));
  if (!parser) fail("createParser failed");
  if (!parser->parse(onnx.data(), onnx.size())) fail("the ONNX parser refused the model: " + parser_errors(*parser));
  Owned<nvinfer1::IBuilderConfig> config(builder->createBuilderConfig());
  if (!config) fail("createBuilderConfig failed");
  if (opts.workspace_bytes > 0)
    config->setMemoryPoolLimit(nvinfer1::MemoryPoolType::kWORKSPACE, static_cast<size_t>(opts.workspace_bytes));
#if !RTINFER_TRT_SINCE(10, 12)
  if (path == BuildPath::Fp16Flag || (path == BuildPath::Int8Calibrated && opts.fp16_fallback))
    config->setFlag(nvinfer1::BuilderFlag::kFP16);
#endif
  if (opts.dla_core >= 0) {
    check_dla(opts.dla_core, builder->getNbDLACores(), "IBuilder");
    config->setDefaultDeviceType(nvinfer1::DeviceType::kDLA);
    config->setDLACore(opts.dla_core);
    if (opts.gpu_fallback) config->setFlag(nvinfer1::BuilderFlag::kGPU_FALLBACK);
  }
  // A dynamic input gets one profile, min = opt = max = the configured (or batch-1) shape.
  std::vector<int64_t> first_shape;
  nvinfer1::IOptimizationProfile* profile = nullptr;
  for (int32_t i = 0; i < network->getNbInputs(); ++i) {
    auto* t = network->getInput(i);
    auto shape = to_vec(t->getDimensions());
    bool dynamic = false;
    for (size_t k = 0; k < shape.size(); ++k)
      if (shape[k] < 0) {
        dynamic = true;
        if (!opts.profile_shape.empty() && opts.profile_shape.size() == shape.size())
          shape[k] = opts.profile_shape[k];
        else if (k == 0)
          shape[k] = 1;
        else
          fail(std::string("input '") + t->getName() + "' has dynamic dimension " + std::to_string(k) +
               "; set tensorrt.input_shape");
      }
    if (dynamic) {
      if (profile == nullptr) profile = builder->createOptimizationProfile();
      auto d = to_dims(shape);
      for (auto sel : {nvinfer1::OptProfileSelector::kMIN, nvinfer1::OptProfileSelector::kOPT,
                       nvinfer1::OptProfileSelector::kMAX})
        if (!profile->setDimensions(t->getName(), sel, d)) fail("IOptimizationProfile::setDimensions failed");
    }
    if (i == 0) first_shape = shape;
  }
  if (profile != nullptr && config->addOptimizationProfile(profile) < 0) fail("addOptimizationProfile failed");
#if NV_TENSORRT_MAJOR < 10
  // Declared after the config, so destroyed before it: the config points at it until then.
  std::unique_ptr<Calibrator> calibrator;
  if (path == BuildPath::Int8Calibrated) {
    if (first_shape.empty()) fail("an int8 build needs an input");
    calibrator = std::make_unique<Calibrator>(calib, static_cast<size_t>(volume(first_shape)),
                                              std::string(opts.calibration_cache), opts.read_cache);
    config->setFlag(nvinfer1::BuilderFlag::kINT8);
    config->setInt8Calibrator(calibrator.get());
  }
#else
  (void)calib;  // explicit quantization: the ranges are the model's Q/DQ scales
#endif
  Owned<nvinfer1::IHostMemory> plan(builder->buildSerializedNetwork(*network, *config));
  if (!plan || plan->size() == 0) fail("buildSerializedNetwork failed");
  rust::Vec<uint8_t> out;
  out.reserve(plan->size());
  auto const* p = static_cast<uint8_t const*>(plan->data());
  for (size_t i = 0; i < plan->size(); ++i) out.push_back(p[i]);
  return out;
}

}  // namespace

rust::Vec<uint8_t> build_engine(rust::Slice<const uint8_t> onnx, BuildOptions const& opts, CalibSource& calib) {
  return guarded("build", [&] { return build(onnx, opts, calib); });
}

}  // namespace trt
}  // namespace rtinfer
