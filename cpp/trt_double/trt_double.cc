// The TensorRT/CUDA test double: a CPU implementation of the API subset in include/, so the very
// same cpp/trt_engine.cc compiles and runs without a GPU.
//
// What it "runs": a plan of its own format (below). Building parses the ONNX file's graph inputs
// and outputs (a minimal protobuf walk) and records them; running computes, for every output
// element k, `(k + 1) * mean(x)` where x is the first input (after int8 quantisation with the
// calibrated scale, or for a Q/DQ model the scale of the QuantizeLinear on that input, for int8
// engines). That is easy to derive by hand in tests.
//
// Where the real API's rules matter to the layer, the double keeps them: a strongly typed network
// takes its precision from the model (Q/DQ nodes: int8; float16 tensors: fp16) and refuses the
// kFP16/kINT8 flags; setDLACore does nothing without DLA cores (set_dla_cores); build and
// deserialization errors are logged from another thread, as TensorRT's own threads may; an output
// whose ONNX dimension is symbolic (not the batch) has a data-dependent shape (-1 after the input
// shapes are set); a builder, runtime, engine or logger destroyed before the objects that depend
// on it aborts the process.
//
// Plan format (little endian): "TRTDPLAN", u32 major, minor, patch, build, u32 precision
// (0 fp32, 1 fp16, 2 int8), f32 int8 scale, u64 activation bytes, u64 persistent bytes, u32 tensor
// count, then per tensor: u32 name length, name, u32 io mode, u32 data type, u32 nbDims,
// i64 dims[nbDims]. Activation bytes = 2 x the I/O bytes (at the profile's opt shape) rounded up
// to 256; persistent bytes = the ONNX file size rounded up to 256 (the weights' stand-in).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "NvInfer.h"
#include "NvOnnxParser.h"
#include "cuda_runtime_api.h"
#include "trt_double_control.h"

// The double implements what its shapes deprecate (calibrators, the precision flags).
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

// ---------------------------------------------------------------------------------------------
// Programmable failures.

namespace trt_double {
namespace {
struct Planned {
  uint32_t nth;
  Fault fault;
};
thread_local std::map<std::string, std::vector<Planned>> t_faults;
thread_local std::map<std::string, uint64_t> t_calls;
}  // namespace

bool can_throw(std::string const& api) { return NV_TENSORRT_MAJOR < 10 && api == "parse"; }

bool inject(std::string const& api, Fault fault, uint32_t nth) {
  if (fault != Fault::kFail && !can_throw(api)) return false;
  t_faults[api].push_back(Planned{nth, fault});
  return true;
}

void reset() {
  t_faults.clear();
  t_calls.clear();
}

uint64_t calls(std::string const& api) {
  auto it = t_calls.find(api);
  return it == t_calls.end() ? 0 : it->second;
}

bool fires(char const* api, Fault* fault) {
  t_calls[api] += 1;
  auto it = t_faults.find(api);
  if (it == t_faults.end()) return false;
  bool fired = false;
  auto& v = it->second;
  for (auto p = v.begin(); p != v.end();) {
    if (p->nth == 0 && !fired) {
      *fault = p->fault;
      fired = true;
      p = v.erase(p);
    } else {
      if (p->nth > 0) p->nth -= 1;
      ++p;
    }
  }
  return fired;
}
}  // namespace trt_double

using trt_double::Fault;

namespace {

void throw_fault(Fault f, char const* api) {
  if (f == Fault::kThrow) throw std::runtime_error(std::string("trt_double: injected throw in ") + api);
  if (f == Fault::kThrowForeign) throw 42;
}

// ---------------------------------------------------------------------------------------------
// CUDA: tracked "device" memory, streams that run their work at synchronisation.

constexpr size_t kTotalMemory = size_t(8) << 30;

struct Memory {
  std::mutex mu;
  std::map<char*, size_t> device;  // cudaMalloc and mapped host (device view == host pointer)
  std::map<char*, size_t> pinned;  // cudaHostAlloc
  std::map<char*, bool> mapped;    // pinned and allocated with cudaHostAllocMapped
  size_t device_used = 0;
};
Memory& memory() {
  static Memory m;
  return m;
}

thread_local cudaError_t t_last_error = cudaSuccess;

cudaError_t fail(cudaError_t e) {
  t_last_error = e;
  return e;
}

bool cuda_fault(char const* api) {
  Fault f;
  return trt_double::fires(api, &f);
}

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

// Whether [p, p + n) lies in one device-accessible allocation.
bool device_accessible(void const* p, size_t n) {
  auto& m = memory();
  std::lock_guard<std::mutex> g(m.mu);
  char* c = static_cast<char*>(const_cast<void*>(p));
  auto it = m.device.upper_bound(c);
  if (it == m.device.begin()) return false;
  --it;
  return c >= it->first && c + n <= it->first + it->second;
}

}  // namespace

struct CUstream_st {
  std::vector<std::function<void()>> work;
};
struct CUevent_st {
  std::chrono::steady_clock::time_point at;
  bool recorded = false;
};

extern "C" {

cudaError_t cudaGetDevice(int* device) {
  if (cuda_fault("cudaGetDevice")) return fail(cudaErrorNoDevice);
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device != 0) return fail(cudaErrorInvalidValue);
  std::memset(prop, 0, sizeof(*prop));
  std::snprintf(prop->name, sizeof(prop->name), "trt_double CPU (Xavier-like sm_72)");
  prop->totalGlobalMem = kTotalMemory;
  prop->major = 7;
  prop->minor = 2;
  prop->integrated = 1;
  prop->canMapHostMemory = 1;
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** devPtr, size_t size) {
  if (cuda_fault("cudaMalloc")) return fail(cudaErrorMemoryAllocation);
  size_t n = round_up(std::max<size_t>(size, 1), 256);
  void* p = std::aligned_alloc(256, n);
  if (p == nullptr) return fail(cudaErrorMemoryAllocation);
  auto& m = memory();
  std::lock_guard<std::mutex> g(m.mu);
  m.device[static_cast<char*>(p)] = size;
  m.device_used += size;
  *devPtr = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void* devPtr) {
  if (devPtr == nullptr) return cudaSuccess;
  auto& m = memory();
  std::lock_guard<std::mutex> g(m.mu);
  auto it = m.device.find(static_cast<char*>(devPtr));
  if (it == m.device.end() || m.mapped.count(it->first) != 0) return fail(cudaErrorInvalidValue);
  m.device_used -= it->second;
  m.device.erase(it);
  std::free(devPtr);
  return cudaSuccess;
}

cudaError_t cudaHostAlloc(void** pHost, size_t size, unsigned int flags) {
  if (cuda_fault("cudaHostAlloc")) return fail(cudaErrorMemoryAllocation);
  void* p = std::aligned_alloc(4096, round_up(std::max<size_t>(size, 1), 4096));
  if (p == nullptr) return fail(cudaErrorMemoryAllocation);
  auto& m = memory();
  std::lock_guard<std::mutex> g(m.mu);
  char* c = static_cast<char*>(p);
  m.pinned[c] = size;
  if ((flags & cudaHostAllocMapped) != 0) {
    m.mapped[c] = true;
    m.device[c] = size;
  }
  *pHost = p;
  return cudaSuccess;
}

cudaError_t cudaHostGetDevicePointer(void** pDevice, void* pHost, unsigned int flags) {
  if (flags != 0) return fail(cudaErrorInvalidValue);
  auto& m = memory();
  std::lock_guard<std::mutex> g(m.mu);
  if (m.mapped.count(static_cast<char*>(pHost)) == 0) return fail(cudaErrorInvalidValue);
  *pDevice = pHost;  // unified addressing, as on Jetson
  return cudaSuccess;
}

cudaError_t cudaFreeHost(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  auto& m = memory();
  std::lock_guard<std::mutex> g(m.mu);
  char* c = static_cast<char*>(ptr);
  if (m.pinned.erase(c) == 0) return fail(cudaErrorInvalidValue);
  if (m.mapped.erase(c) != 0) m.device.erase(c);
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  if (cuda_fault("cudaMemcpy")) return fail(cudaErrorInvalidValue);
  if ((kind == cudaMemcpyHostToDevice && !device_accessible(dst, count)) ||
      (kind == cudaMemcpyDeviceToHost && !device_accessible(src, count)))
    return fail(cudaErrorInvalidValue);
  std::memcpy(dst, src, count);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  if (cuda_fault("cudaMemcpyAsync")) return fail(cudaErrorInvalidValue);
  if (stream == nullptr) return cudaMemcpy(dst, src, count, kind);
  if ((kind == cudaMemcpyHostToDevice && !device_accessible(dst, count)) ||
      (kind == cudaMemcpyDeviceToHost && !device_accessible(src, count)))
    return fail(cudaErrorInvalidValue);
  stream->work.emplace_back([dst, src, count] { std::memcpy(dst, src, count); });
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free, size_t* total) {
  auto& m = memory();
  std::lock_guard<std::mutex> g(m.mu);
  *total = kTotalMemory;
  *free = kTotalMemory - m.device_used;
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* pStream, unsigned int) {
  if (cuda_fault("cudaStreamCreate")) return fail(cudaErrorInitializationError);
  *pStream = new CUstream_st();
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  if (stream == nullptr) return fail(cudaErrorInvalidResourceHandle);
  auto work = std::move(stream->work);
  stream->work.clear();
  if (cuda_fault("cudaStreamSynchronize")) return fail(cudaErrorLaunchFailure);
  for (auto& w : work) w();
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  delete stream;
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  *event = new CUevent_st();
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (event == nullptr || stream == nullptr) return fail(cudaErrorInvalidResourceHandle);
  event->recorded = false;
  stream->work.emplace_back([event] {
    event->at = std::chrono::steady_clock::now();
    event->recorded = true;
  });
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  return event != nullptr && event->recorded ? cudaSuccess : fail(cudaErrorNotReady);
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (!start->recorded || !end->recorded) return fail(cudaErrorNotReady);
  *ms = std::chrono::duration<float, std::milli>(end->at - start->at).count();
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete event;
  return cudaSuccess;
}

cudaError_t cudaGetLastError(void) {
  cudaError_t e = t_last_error;
  t_last_error = cudaSuccess;
  return e;
}

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError: return "cudaErrorInitializationError";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    default: return "cudaErrorUnknown";
  }
}

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    default: return "unknown error";
  }
}

cudaError_t cudaRuntimeGetVersion(int* runtimeVersion) {
  *runtimeVersion = NV_TENSORRT_MAJOR >= 10 ? 12020 : 11040;
  return cudaSuccess;
}

}  // extern "C"

// ---------------------------------------------------------------------------------------------
// TensorRT.

namespace {

using namespace nvinfer1;

void log(ILogger* l, ILogger::Severity s, std::string const& msg) {
  if (l != nullptr) l->log(s, msg.c_str());
}

// Logs from a thread of the double's own, as TensorRT's builder and runtime threads may: a layer
// that keeps its last error per calling thread loses these.
void log_elsewhere(ILogger* l, ILogger::Severity s, std::string const& msg) {
  if (l == nullptr) return;
  std::thread t([l, s, &msg] { l->log(s, msg.c_str()); });
  t.join();
}

std::atomic<int32_t> g_dla_cores{0};

[[noreturn]] void lifetime_violation(std::string const& what) {
  std::fprintf(stderr, "trt_double: %s (the real API documents this as undefined behaviour)\n",
               what.c_str());
  std::fflush(stderr);
  std::abort();
}

// Objects created with each logger (runtimes, builders, parsers) that are still alive.
struct Loggers {
  std::mutex mu;
  std::map<ILogger const*, int> live;
};
Loggers& loggers() {
  static Loggers* l = new Loggers();  // never destroyed: loggers may die at exit, after us
  return *l;
}
void logger_acquire(ILogger const* l) {
  std::lock_guard<std::mutex> g(loggers().mu);
  loggers().live[l] += 1;
}
void logger_release(ILogger const* l) {
  std::lock_guard<std::mutex> g(loggers().mu);
  if (--loggers().live[l] == 0) loggers().live.erase(l);
}

// Counts the live objects created from an owner, which must not be destroyed before them.
class Owner {
 public:
  explicit Owner(char const* name) : name_(name) {}
  void adopt() { live_ += 1; }
  void release() { live_ -= 1; }
  void check_empty(char const* child) const {
    if (live_.load() != 0)
      lifetime_violation(std::string(name_) + " destroyed while " + std::to_string(live_.load()) +
                         " " + child + " created from it still live");
  }

 private:
  char const* name_;
  std::atomic<int> live_{0};
};

struct Tensor {
  std::string name;
  TensorIOMode mode = TensorIOMode::kNONE;
  DataType type = DataType::kFLOAT;
  std::vector<int64_t> dims;
};

Dims to_dims(std::vector<int64_t> const& v) {
  Dims d{};
  d.nbDims = static_cast<int32_t>(std::min<size_t>(v.size(), Dims::MAX_DIMS));
  for (int32_t i = 0; i < d.nbDims; ++i) d.d[i] = static_cast<decltype(d.d[0] + 0)>(v[i]);
  return d;
}

std::vector<int64_t> from_dims(Dims const& d) {
  std::vector<int64_t> v;
  for (int32_t i = 0; i < d.nbDims && i < Dims::MAX_DIMS; ++i) v.push_back(d.d[i]);
  return v;
}

int64_t volume(std::vector<int64_t> const& v) {
  int64_t n = 1;
  for (auto d : v) n *= d;
  return n;
}

size_t type_size(DataType t) {
  switch (t) {
    case DataType::kFLOAT: case DataType::kINT32: return 4;
    case DataType::kHALF: return 2;
#if NV_TENSORRT_MAJOR >= 10
    case DataType::kINT64: return 8;
#endif
    default: return 1;
  }
}

// --- plan (de)serialisation ---

struct Plan {
  uint32_t version[4] = {NV_TENSORRT_MAJOR, NV_TENSORRT_MINOR, NV_TENSORRT_PATCH, NV_TENSORRT_BUILD};
  uint32_t precision = 0;
  float scale = 0.0f;
  uint64_t activation = 0;
  uint64_t persistent = 0;
  std::vector<Tensor> tensors;
};

constexpr char kMagic[8] = {'T', 'R', 'T', 'D', 'P', 'L', 'A', 'N'};

template <typename T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<char const*>(&v), sizeof(T));
}

std::string write_plan(Plan const& p) {
  std::string out(kMagic, 8);
  for (auto v : p.version) put(out, v);
  put(out, p.precision);
  put(out, p.scale);
  put(out, p.activation);
  put(out, p.persistent);
  put(out, static_cast<uint32_t>(p.tensors.size()));
  for (auto const& t : p.tensors) {
    put(out, static_cast<uint32_t>(t.name.size()));
    out += t.name;
    put(out, static_cast<uint32_t>(t.mode));
    put(out, static_cast<uint32_t>(t.type));
    put(out, static_cast<uint32_t>(t.dims.size()));
    for (auto d : t.dims) put(out, d);
  }
  return out;
}

struct Reader {
  unsigned char const* p;
  size_t n;
  size_t at = 0;
  template <typename T>
  bool get(T* v) {
    if (n - at < sizeof(T)) return false;
    std::memcpy(v, p + at, sizeof(T));
    at += sizeof(T);
    return true;
  }
};

// Empty string on success, else why the plan is refused.
std::string read_plan(void const* blob, size_t size, Plan* p) {
  Reader r{static_cast<unsigned char const*>(blob), size};
  if (size < 8 || std::memcmp(blob, kMagic, 8) != 0)
    return "Serialization assertion magicTagRead == kMAGIC_TAG failed (not a plan)";
  r.at = 8;
  uint32_t v[4];
  for (auto& x : v)
    if (!r.get(&x)) return "Serialization: truncated plan header";
  if (v[0] != NV_TENSORRT_MAJOR || v[1] != NV_TENSORRT_MINOR || v[2] != NV_TENSORRT_PATCH ||
      v[3] != NV_TENSORRT_BUILD) {
    char msg[256];
    std::snprintf(msg, sizeof msg,
                  "Serialization assertion stdVersionRead == kSERIALIZATION_VERSION failed. "
                  "Version tag does not match: plan built by %u.%u.%u.%u, this is %d.%d.%d.%d",
                  v[0], v[1], v[2], v[3], NV_TENSORRT_MAJOR, NV_TENSORRT_MINOR, NV_TENSORRT_PATCH,
                  NV_TENSORRT_BUILD);
    return msg;
  }
  uint32_t count = 0;
  if (!r.get(&p->precision) || !r.get(&p->scale) || !r.get(&p->activation) ||
      !r.get(&p->persistent) || !r.get(&count) || count > 64)
    return "Serialization: truncated plan";
  for (uint32_t i = 0; i < count; ++i) {
    Tensor t;
    uint32_t len = 0, mode = 0, type = 0, nb = 0;
    if (!r.get(&len) || len > 4096 || r.n - r.at < len) return "Serialization: truncated tensor";
    t.name.assign(reinterpret_cast<char const*>(r.p + r.at), len);
    r.at += len;
    if (!r.get(&mode) || !r.get(&type) || !r.get(&nb) || nb > 8)
      return "Serialization: truncated tensor";
    t.mode = static_cast<TensorIOMode>(mode);
    t.type = static_cast<DataType>(type);
    for (uint32_t k = 0; k < nb; ++k) {
      int64_t d;
      if (!r.get(&d)) return "Serialization: truncated dims";
      t.dims.push_back(d);
    }
    p->tensors.push_back(std::move(t));
  }
  return "";
}

// --- runtime objects ---

class HostMemory : public IHostMemory {
 public:
  explicit HostMemory(std::string b) : bytes_(std::move(b)) {}
  void* data() const noexcept override { return const_cast<char*>(bytes_.data()); }
  std::size_t size() const noexcept override { return bytes_.size(); }
  DataType type() const noexcept override { return DataType::kUINT8; }

 private:
  std::string bytes_;
};

class Engine;

class Context : public IExecutionContext {
 public:
  Context(Engine const* e, ILogger* l, void* activation);
  ~Context() noexcept override;
  bool setInputShape(char const* name, Dims const& dims) noexcept override;
  Dims getTensorShape(char const* name) const noexcept override;
  bool setTensorAddress(char const* name, void* data) noexcept override;
  bool allInputDimensionsSpecified() const noexcept override;
  bool enqueueV3(cudaStream_t stream) noexcept override;
#if NV_TENSORRT_MAJOR < 10
  bool enqueueV2(void* const*, cudaStream_t, cudaEvent_t*) noexcept override {
    log(logger_, ILogger::Severity::kERROR, "trt_double: enqueueV2 (bindings) is not supported");
    return false;
  }
#endif

 private:
  std::vector<int64_t> shape(size_t i) const;
  Engine const* engine_;
  ILogger* logger_;
  void* activation_;
  std::vector<std::vector<int64_t>> shapes_;
  std::vector<void*> addresses_;
};

class Engine : public ICudaEngine {
 public:
  Engine(Plan p, ILogger* l, void* persistent, Owner* runtime)
      : plan_(std::move(p)), logger_(l), persistent_(persistent), runtime_(runtime) {
    runtime_->adopt();
  }
  ~Engine() noexcept override {
    contexts_.check_empty("execution context(s)");
    cudaFree(persistent_);
    runtime_->release();
  }
  int32_t getNbIOTensors() const noexcept override { return static_cast<int32_t>(plan_.tensors.size()); }
  char const* getIOTensorName(int32_t i) const noexcept override {
    return i >= 0 && i < getNbIOTensors() ? plan_.tensors[i].name.c_str() : nullptr;
  }
  TensorIOMode getTensorIOMode(char const* name) const noexcept override {
    int i = index(name);
    return i < 0 ? TensorIOMode::kNONE : plan_.tensors[i].mode;
  }
  Dims getTensorShape(char const* name) const noexcept override {
    int i = index(name);
    Dims d{};
    d.nbDims = -1;
    return i < 0 ? d : to_dims(plan_.tensors[i].dims);
  }
  DataType getTensorDataType(char const* name) const noexcept override {
    int i = index(name);
    return i < 0 ? DataType::kFLOAT : plan_.tensors[i].type;
  }
#if NV_TENSORRT_MAJOR >= 10
  IExecutionContext* createExecutionContext(ExecutionContextAllocationStrategy) noexcept override {
#else
  IExecutionContext* createExecutionContext() noexcept override {
#endif
    Fault f;
    if (trt_double::fires("createExecutionContext", &f)) {
      log(logger_, ILogger::Severity::kERROR, "trt_double: injected createExecutionContext failure");
      return nullptr;
    }
    void* act = nullptr;
    if (cudaMalloc(&act, plan_.activation) != cudaSuccess) {
      log(logger_, ILogger::Severity::kERROR, "Requested amount of GPU memory could not be allocated");
      return nullptr;
    }
    return new Context(this, logger_, act);
  }
  IHostMemory* serialize() const noexcept override { return new HostMemory(write_plan(plan_)); }
  Owner& contexts() const { return contexts_; }
#if NV_TENSORRT_MAJOR >= 10
  size_t getDeviceMemorySize() const noexcept override { return plan_.activation; }
  int64_t getDeviceMemorySizeV2() const noexcept override { return static_cast<int64_t>(plan_.activation); }
#else
  size_t getDeviceMemorySize() const noexcept override { return plan_.activation; }
  int32_t getNbBindings() const noexcept override { return getNbIOTensors(); }
#endif
  int index(char const* name) const {
    if (name == nullptr) return -1;
    for (size_t i = 0; i < plan_.tensors.size(); ++i)
      if (plan_.tensors[i].name == name) return static_cast<int>(i);
    return -1;
  }
  Plan const& plan() const { return plan_; }

 private:
  Plan plan_;
  ILogger* logger_;
  void* persistent_;
  Owner* runtime_;
  mutable Owner contexts_{"ICudaEngine"};
};

Context::Context(Engine const* e, ILogger* l, void* activation)
    : engine_(e), logger_(l), activation_(activation) {
  engine_->contexts().adopt();
  for (auto const& t : e->plan().tensors) {
    shapes_.push_back(t.dims);
    addresses_.push_back(nullptr);
  }
}

Context::~Context() noexcept {
  cudaFree(activation_);
  engine_->contexts().release();
}

std::vector<int64_t> Context::shape(size_t i) const {
  auto s = shapes_[i];
  auto const& tensors = engine_->plan().tensors;
  // Outputs take a dynamic batch from the first input.
  if (tensors[i].mode == TensorIOMode::kOUTPUT && !s.empty() && s[0] < 0) {
    for (size_t k = 0; k < tensors.size(); ++k)
      if (tensors[k].mode == TensorIOMode::kINPUT && !shapes_[k].empty()) {
        s[0] = shapes_[k][0];
        break;
      }
  }
  return s;
}

bool Context::setInputShape(char const* name, Dims const& dims) noexcept {
  int i = engine_->index(name);
  if (i < 0 || engine_->plan().tensors[i].mode != TensorIOMode::kINPUT) {
    log(logger_, ILogger::Severity::kERROR, std::string("setInputShape: no input named ") + (name ? name : "(null)"));
    return false;
  }
  auto want = engine_->plan().tensors[i].dims;
  auto got = from_dims(dims);
  if (got.size() != want.size()) return false;
  for (size_t k = 0; k < got.size(); ++k)
    if (got[k] <= 0 || (want[k] >= 0 && want[k] != got[k])) return false;
  shapes_[i] = got;
  return true;
}

Dims Context::getTensorShape(char const* name) const noexcept {
  int i = engine_->index(name);
  Dims d{};
  d.nbDims = -1;
  return i < 0 ? d : to_dims(shape(i));
}

bool Context::setTensorAddress(char const* name, void* data) noexcept {
  Fault f;
  if (trt_double::fires("setTensorAddress", &f)) return false;
  int i = engine_->index(name);
  if (i < 0) {
    log(logger_, ILogger::Severity::kERROR, std::string("setTensorAddress: no tensor named ") + (name ? name : "(null)"));
    return false;
  }
  if (reinterpret_cast<uintptr_t>(data) % 256 != 0) {
    log(logger_, ILogger::Severity::kERROR, "setTensorAddress: address is not 256-byte aligned");
    return false;
  }
  addresses_[i] = data;
  return true;
}

bool Context::allInputDimensionsSpecified() const noexcept {
  for (size_t i = 0; i < shapes_.size(); ++i)
    for (auto d : shape(i))
      if (d < 0) return false;
  return true;
}

bool Context::enqueueV3(cudaStream_t stream) noexcept {
  Fault f;
  if (trt_double::fires("enqueueV3", &f)) {
    log(logger_, ILogger::Severity::kERROR, "trt_double: injected enqueueV3 failure");
    return false;
  }
  if (stream == nullptr) return false;
  if (!allInputDimensionsSpecified()) {
    log(logger_, ILogger::Severity::kERROR, "enqueueV3: not all input shapes are specified");
    return false;
  }
  auto const& tensors = engine_->plan().tensors;
  int in = -1;
  std::vector<std::pair<float*, int64_t>> outs;
  for (size_t i = 0; i < tensors.size(); ++i) {
    size_t bytes = static_cast<size_t>(volume(shape(i))) * type_size(tensors[i].type);
    if (addresses_[i] == nullptr || !device_accessible(addresses_[i], bytes)) {
      log(logger_, ILogger::Severity::kERROR,
          "enqueueV3: tensor '" + tensors[i].name + "' has no device address of " + std::to_string(bytes) + " bytes");
      return false;
    }
    if (tensors[i].mode == TensorIOMode::kINPUT && in < 0) in = static_cast<int>(i);
    if (tensors[i].mode == TensorIOMode::kOUTPUT)
      outs.emplace_back(static_cast<float*>(addresses_[i]), volume(shape(i)));
  }
  if (in < 0) return false;
  float const* x = static_cast<float const*>(addresses_[in]);
  int64_t n = volume(shape(in));
  uint32_t precision = engine_->plan().precision;
  float scale = engine_->plan().scale;
  stream->work.emplace_back([x, n, outs, precision, scale] {
    double sum = 0;
    for (int64_t k = 0; k < n; ++k) {
      float v = x[k];
      if (precision == 2 && scale > 0) v = std::clamp(std::nearbyint(v / scale), -127.0f, 127.0f) * scale;
      sum += v;
    }
    float mean = n > 0 ? static_cast<float>(sum / n) : 0.0f;
    for (auto const& o : outs)
      for (int64_t k = 0; k < o.second; ++k) o.first[k] = static_cast<float>(k + 1) * mean;
  });
  return true;
}

class Runtime : public IRuntime {
 public:
  explicit Runtime(ILogger* l) : logger_(l) { logger_acquire(l); }
  ~Runtime() noexcept override {
    engines_.check_empty("engine(s)");
    logger_release(logger_);
  }
  ICudaEngine* deserializeCudaEngine(void const* blob, std::size_t size) noexcept override {
    Fault f;
    if (trt_double::fires("deserializeCudaEngine", &f)) {
      log_elsewhere(logger_, ILogger::Severity::kERROR, "trt_double: injected deserializeCudaEngine failure");
      return nullptr;
    }
    Plan p;
    std::string why = read_plan(blob, size, &p);
    if (!why.empty()) {
      log_elsewhere(logger_, ILogger::Severity::kERROR, "1: [stdArchiveReader.cpp] Error Code 1: " + why);
      return nullptr;
    }
    void* persistent = nullptr;
    if (cudaMalloc(&persistent, p.persistent) != cudaSuccess) return nullptr;
    log(logger_, ILogger::Severity::kINFO,
        "[MemUsageChange] TensorRT-managed allocation in engine deserialization: GPU +" +
            std::to_string(p.persistent) + " bytes");
    return new Engine(std::move(p), logger_, persistent, &engines_);
  }
  // The real rule: nothing happens without DLA cores.
  void setDLACore(int32_t dla) noexcept override {
    if (getNbDLACores() == 0) return;
    Fault counted;  // counted for tests; no fault is injected here
    trt_double::fires("setDLACore", &counted);
    if (dla >= 0 && dla < getNbDLACores()) dla_ = dla;
  }
  int32_t getNbDLACores() const noexcept override { return g_dla_cores.load(); }

 private:
  ILogger* logger_;
  int32_t dla_ = -1;
  Owner engines_{"IRuntime"};
};

// --- builder ---

class NetTensor : public ITensor {
 public:
  Tensor t;
  char const* getName() const noexcept override { return t.name.c_str(); }
  Dims getDimensions() const noexcept override { return to_dims(t.dims); }
  DataType getType() const noexcept override { return t.type; }
};

class Network : public INetworkDefinition {
 public:
  Network(Owner* builder, bool strongly_typed) : strongly_typed(strongly_typed), builder_(builder) {
    builder_->adopt();
  }
  ~Network() noexcept override { builder_->release(); }
  std::vector<std::unique_ptr<NetTensor>> inputs, outputs;
  size_t model_bytes = 0;
  bool strongly_typed;
  // What the parser saw: Q/DQ nodes (with the scale of the QuantizeLinear on the first input),
  // float16 tensors.
  bool qdq = false;
  float qdq_input_scale = 0.0f;
  bool has_half = false;
  int32_t getNbInputs() const noexcept override { return static_cast<int32_t>(inputs.size()); }
  ITensor* getInput(int32_t i) const noexcept override {
    return i >= 0 && i < getNbInputs() ? inputs[i].get() : nullptr;
  }
  int32_t getNbOutputs() const noexcept override { return static_cast<int32_t>(outputs.size()); }
  ITensor* getOutput(int32_t i) const noexcept override {
    return i >= 0 && i < getNbOutputs() ? outputs[i].get() : nullptr;
  }

 private:
  Owner* builder_;
};

class Profile : public IOptimizationProfile {
 public:
  std::map<std::string, std::vector<int64_t>> opt, min, max;
  bool setDimensions(char const* name, OptProfileSelector sel, Dims const& d) noexcept override {
    auto& m = sel == OptProfileSelector::kMIN ? min : sel == OptProfileSelector::kOPT ? opt : max;
    m[name] = from_dims(d);
    return true;
  }
  ~Profile() noexcept override = default;
};

class Config : public IBuilderConfig {
 public:
  explicit Config(Owner* builder) : builder_(builder) { builder_->adopt(); }
  ~Config() noexcept override { builder_->release(); }
  size_t workspace = 0;
  bool fp16 = false, int8 = false, gpu_fallback = false;
  IInt8Calibrator* calibrator = nullptr;
  DeviceType device = DeviceType::kGPU;
  int32_t dla = -1;
  std::vector<Profile const*> profiles;
  void setMemoryPoolLimit(MemoryPoolType pool, std::size_t size) noexcept override {
    if (pool == MemoryPoolType::kWORKSPACE) workspace = size;
  }
// The flags are named through their values: the double itself may use what it deprecates.
  void setFlag(BuilderFlag f) noexcept override {
    switch (static_cast<int32_t>(f)) {
      case 0: fp16 = true; break;
      case 1: int8 = true; break;
      case 3: gpu_fallback = true; break;
      default: break;
    }
  }
  void setInt8Calibrator(IInt8Calibrator* c) noexcept override { calibrator = c; }
  void setDefaultDeviceType(DeviceType d) noexcept override { device = d; }
  // The real rule: nothing happens without DLA cores.
  void setDLACore(int32_t d) noexcept override {
    if (g_dla_cores.load() == 0) return;
    Fault counted;
    trt_double::fires("setDLACore", &counted);
    if (d >= 0 && d < g_dla_cores.load()) dla = d;
  }
  int32_t addOptimizationProfile(IOptimizationProfile const* p) noexcept override {
    profiles.push_back(static_cast<Profile const*>(p));
    return static_cast<int32_t>(profiles.size()) - 1;
  }

 private:
  Owner* builder_;
};

std::string calibration_header() {
  return "TRT-" + std::to_string(NV_TENSORRT_VERSION) + "-EntropyCalibration2";
}

// The scale a calibration cache holds for `input`, or 0 when the cache does not fit.
float scale_from_cache(void const* data, size_t n, std::string const& input) {
  std::string text(static_cast<char const*>(data), n);
  if (text.rfind(calibration_header() + "\n", 0) != 0) return 0;
  auto at = text.find("\n" + input + ": ");
  if (at == std::string::npos) return 0;
  uint32_t bits = static_cast<uint32_t>(std::strtoul(text.c_str() + at + input.size() + 3, nullptr, 16));
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

class Builder : public IBuilder {
 public:
  explicit Builder(ILogger* l) : logger_(l) { logger_acquire(l); }
  ~Builder() noexcept override {
    children_.check_empty("network(s) or builder config(s)");
    logger_release(logger_);
  }
  INetworkDefinition* createNetworkV2(NetworkDefinitionCreationFlags flags) noexcept override {
#if NV_TENSORRT_MAJOR < 10
    if ((flags & 1U) == 0) {  // kEXPLICIT_BATCH
      log(logger_, ILogger::Severity::kERROR, "trt_double: only explicit-batch networks are supported");
      return nullptr;
    }
    return new Network(&children_, false);
#else
    bool strongly_typed = (flags & (1U << static_cast<uint32_t>(NetworkDefinitionCreationFlag::kSTRONGLY_TYPED))) != 0;
    return new Network(&children_, strongly_typed);
#endif
  }
  IBuilderConfig* createBuilderConfig() noexcept override { return new Config(&children_); }
  IOptimizationProfile* createOptimizationProfile() noexcept override {
    profiles_.push_back(std::make_unique<Profile>());
    return profiles_.back().get();
  }
  int32_t getNbDLACores() const noexcept override { return g_dla_cores.load(); }
  IHostMemory* buildSerializedNetwork(INetworkDefinition& network, IBuilderConfig& config) noexcept override;

 private:
  float calibrate(Network const& net, Config const& cfg, std::vector<int64_t> const& in_shape);
  ILogger* logger_;
  std::vector<std::unique_ptr<Profile>> profiles_;
  Owner children_{"IBuilder"};
};

float Builder::calibrate(Network const& net, Config const& cfg, std::vector<int64_t> const& in_shape) {
  auto* c = cfg.calibrator;
  std::string const& name = net.inputs[0]->t.name;
  size_t len = 0;
  void const* cache = c->readCalibrationCache(len);
  if (cache != nullptr && len > 0) {
    float s = scale_from_cache(cache, len, name);
    if (s > 0) {
      log(logger_, ILogger::Severity::kINFO, "Calibration table read from the cache");
      return s;
    }
    log(logger_, ILogger::Severity::kWARNING, "Calibration cache does not fit this network: recalibrating");
  }
  int64_t n = volume(in_shape) * std::max(c->getBatchSize(), 1);
  void* buf = nullptr;
  if (cudaMalloc(&buf, static_cast<size_t>(n) * 4) != cudaSuccess) return 0;
  float amax = 0;
  int batches = 0;
  void* bindings[1] = {buf};
  char const* names[1] = {name.c_str()};
  for (;;) {
    Fault counted;  // getBatch calls are counted for tests; no fault is injected here
    trt_double::fires("getBatch", &counted);
    if (!c->getBatch(bindings, names, 1)) break;
    batches += 1;
    float const* x = static_cast<float const*>(bindings[0]);
    if (!device_accessible(x, static_cast<size_t>(n) * 4)) {
      log_elsewhere(logger_, ILogger::Severity::kERROR, "Calibrator getBatch gave a non-device pointer");
      cudaFree(buf);
      return 0;
    }
    for (int64_t k = 0; k < n; ++k) amax = std::max(amax, std::fabs(x[k]));
  }
  cudaFree(buf);
  if (batches == 0 || amax <= 0) {
    log_elsewhere(logger_, ILogger::Severity::kERROR, "Calibration failure: the calibrator gave no (non-zero) batch");
    return 0;
  }
  float scale = amax / 127.0f;
  uint32_t bits;
  std::memcpy(&bits, &scale, 4);
  char hex[16];
  std::snprintf(hex, sizeof hex, "%08x", bits);
  std::string table = calibration_header() + "\n" + name + ": " + hex + "\n";
  c->writeCalibrationCache(table.data(), table.size());
  return scale;
}

IHostMemory* Builder::buildSerializedNetwork(INetworkDefinition& network, IBuilderConfig& config) noexcept {
  Fault f;
  if (trt_double::fires("buildSerializedNetwork", &f)) {
    log_elsewhere(logger_, ILogger::Severity::kERROR, "trt_double: injected buildSerializedNetwork failure");
    return nullptr;
  }
  auto& net = static_cast<Network&>(network);
  auto& cfg = static_cast<Config&>(config);
  if (net.inputs.empty() || net.outputs.empty()) {
    log_elsewhere(logger_, ILogger::Severity::kERROR, "Network must have at least one input and one output");
    return nullptr;
  }
  if (net.strongly_typed && (cfg.fp16 || cfg.int8)) {
    log_elsewhere(logger_, ILogger::Severity::kERROR,
                  "Error Code 4: API Usage Error (BuilderFlag::kFP16 and kINT8 are not allowed with a "
                  "strongly typed network: its types come from the network)");
    return nullptr;
  }
  if (cfg.device == DeviceType::kDLA && cfg.dla < 0) {
    // No DLA core took (setDLACore does nothing without one): the GPU, if allowed.
    if (!cfg.gpu_fallback) {
      log_elsewhere(logger_, ILogger::Severity::kERROR, "Default device is DLA but no DLA core is available");
      return nullptr;
    }
    log_elsewhere(logger_, ILogger::Severity::kWARNING,
                  "Default DLA is enabled but no DLA core is available: layers fall back to the GPU");
  }
  Plan plan;
  std::vector<int64_t> first_in;
  size_t io_bytes = 0;
  auto add = [&](NetTensor const& t, TensorIOMode mode) -> bool {
    auto opt = t.t.dims;
    bool dynamic = std::any_of(opt.begin(), opt.end(), [](int64_t d) { return d < 0; });
    if (dynamic && mode == TensorIOMode::kINPUT) {
      Profile const* p = nullptr;
      for (auto* q : cfg.profiles)
        if (q->opt.count(t.t.name) != 0 && q->min.count(t.t.name) != 0 && q->max.count(t.t.name) != 0) p = q;
      if (p == nullptr) {
        log_elsewhere(logger_, ILogger::Severity::kERROR,
                      "Network has dynamic or shape inputs, but no optimization profile has been defined (" + t.t.name + ")");
        return false;
      }
      opt = p->opt.at(t.t.name);
    }
    if (mode == TensorIOMode::kOUTPUT && !opt.empty() && opt[0] < 0 && !first_in.empty()) opt[0] = first_in[0];
    if (mode == TensorIOMode::kINPUT && first_in.empty()) first_in = opt;
    io_bytes += static_cast<size_t>(std::max<int64_t>(volume(opt), 0)) * type_size(t.t.type);
    Tensor copy = t.t;
    copy.mode = mode;
    plan.tensors.push_back(copy);
    return true;
  };
  for (auto const& t : net.inputs)
    if (!add(*t, TensorIOMode::kINPUT)) return nullptr;
  for (auto const& t : net.outputs)
    if (!add(*t, TensorIOMode::kOUTPUT)) return nullptr;
  if (plan.tensors[0].type != DataType::kFLOAT) {
    log_elsewhere(logger_, ILogger::Severity::kERROR, "trt_double: the first input must be float32");
    return nullptr;
  }
  if (net.strongly_typed) {
    // Types from the network: Q/DQ nodes quantize, float16 tensors compute in fp16.
    plan.precision = net.qdq ? 2 : net.has_half ? 1 : 0;
    plan.scale = net.qdq ? net.qdq_input_scale : 0.0f;
  } else {
    plan.precision = cfg.int8 ? 2 : cfg.fp16 ? 1 : 0;
  }
  if (!net.strongly_typed && cfg.int8 && net.qdq) {
    // Explicit quantization in a weakly typed network: the Q/DQ scales, no calibration.
    if (cfg.calibrator != nullptr)
      log(logger_, ILogger::Severity::kWARNING, "Calibrator won't be used in explicit precision mode.");
    plan.scale = net.qdq_input_scale;
  } else if (!net.strongly_typed && cfg.int8) {
    if (cfg.calibrator == nullptr) {
      log_elsewhere(logger_, ILogger::Severity::kERROR,
                    "Calibrator is not being used. Users must provide dynamic range for all tensors that are not Int32 or Bool.");
      return nullptr;
    }
    plan.scale = calibrate(net, cfg, first_in);
    if (plan.scale <= 0) return nullptr;
  }
  plan.activation = round_up(io_bytes * 2, 256);
  plan.persistent = round_up(net.model_bytes, 256);
  if (cfg.workspace != 0 && cfg.workspace < plan.activation) {
    log_elsewhere(logger_, ILogger::Severity::kERROR,
        "Memory pool limit kWORKSPACE of " + std::to_string(cfg.workspace) + " bytes is below the " +
            std::to_string(plan.activation) + " bytes every tactic needs");
    return nullptr;
  }
  log(logger_, ILogger::Severity::kINFO, "Total Activation Memory: " + std::to_string(plan.activation));
  return new HostMemory(write_plan(plan));
}

// --- ONNX parser: just enough protobuf to read graph inputs and outputs ---

struct Proto {
  unsigned char const* p;
  size_t n;
  size_t at = 0;
  bool varint(uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (at >= n) return false;
      unsigned char b = p[at++];
      *v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return true;
    }
    return false;
  }
  // Next field: number, wire type, and for length-delimited fields the sub-message.
  bool next(uint32_t* field, uint32_t* wire, Proto* sub, uint64_t* value) {
    uint64_t key;
    if (!varint(&key)) return false;
    *field = static_cast<uint32_t>(key >> 3);
    *wire = static_cast<uint32_t>(key & 7);
    switch (*wire) {
      case 0: return varint(value);
      case 1: if (n - at < 8) return false; at += 8; return true;
      case 5: if (n - at < 4) return false; at += 4; return true;
      case 2: {
        uint64_t len;
        if (!varint(&len) || len > n - at) return false;
        *sub = Proto{p + at, static_cast<size_t>(len)};
        at += len;
        return true;
      }
      default: return false;
    }
  }
};

DataType onnx_type(uint64_t t, bool* ok) {
  *ok = true;
  switch (t) {
    case 1: return DataType::kFLOAT;
    case 10: return DataType::kHALF;
    case 3: return DataType::kINT8;
    case 2: return DataType::kUINT8;
    case 6: return DataType::kINT32;
    case 9: return DataType::kBOOL;
#if NV_TENSORRT_MAJOR >= 10
    case 7: return DataType::kINT64;
#else
    case 7: return DataType::kINT32;  // 8.x casts INT64 down, as onnx-tensorrt did
#endif
    default: *ok = false; return DataType::kFLOAT;
  }
}

// ValueInfoProto → Tensor. False when malformed.
bool value_info(Proto m, Tensor* t) {
  uint32_t f, w;
  Proto sub{nullptr, 0};
  uint64_t v;
  while (m.at < m.n) {
    if (!m.next(&f, &w, &sub, &v)) return false;
    if (f == 1 && w == 2) t->name.assign(reinterpret_cast<char const*>(sub.p), sub.n);
    if (f == 2 && w == 2) {  // TypeProto
      Proto type = sub;
      while (type.at < type.n) {
        Proto tt{nullptr, 0};
        if (!type.next(&f, &w, &tt, &v)) return false;
        if (f != 1 || w != 2) continue;  // tensor_type
        while (tt.at < tt.n) {
          Proto s{nullptr, 0};
          if (!tt.next(&f, &w, &s, &v)) return false;
          if (f == 1 && w == 0) {
            bool ok;
            t->type = onnx_type(v, &ok);
            if (!ok) return false;
          }
          if (f == 2 && w == 2) {  // TensorShapeProto
            while (s.at < s.n) {
              Proto dim{nullptr, 0};
              if (!s.next(&f, &w, &dim, &v)) return false;
              if (f != 1 || w != 2) continue;
              int64_t d = -1;
              while (dim.at < dim.n) {
                Proto x{nullptr, 0};
                if (!dim.next(&f, &w, &x, &v)) return false;
                if (f == 1 && w == 0) d = static_cast<int64_t>(v);
              }
              t->dims.push_back(d);
            }
          }
        }
      }
    }
  }
  return !t->name.empty();
}

class ParserError : public nvonnxparser::IParserError {
 public:
  explicit ParserError(std::string d) : desc_(std::move(d)) {}
  char const* desc() const override { return desc_.c_str(); }
  int node() const override { return -1; }

 private:
  std::string desc_;
};

// A TensorProto initializer: what the parser needs of it.
struct Initializer {
  std::string name;
  uint64_t type = 0;
  std::vector<float> floats;
};

bool initializer(Proto m, Initializer* t) {
  uint32_t f, w;
  uint64_t v;
  while (m.at < m.n) {
    Proto sub{nullptr, 0};
    size_t at = m.at;
    if (!m.next(&f, &w, &sub, &v)) return false;
    if (f == 8 && w == 2) t->name.assign(reinterpret_cast<char const*>(sub.p), sub.n);
    if (f == 2 && w == 0) t->type = v;
    if (f == 4 && w == 2)  // packed float_data
      for (size_t k = 0; k + 4 <= sub.n; k += 4) {
        float x;
        std::memcpy(&x, sub.p + k, 4);
        t->floats.push_back(x);
      }
    if (f == 4 && w == 5) {  // one unpacked float
      float x;
      std::memcpy(&x, m.p + m.at - 4, 4);
      t->floats.push_back(x);
    }
    if (f == 9 && w == 2 && t->floats.empty())  // raw_data (float32 little endian)
      for (size_t k = 0; k + 4 <= sub.n; k += 4) {
        float x;
        std::memcpy(&x, sub.p + k, 4);
        t->floats.push_back(x);
      }
    (void)at;
  }
  return true;
}

// A NodeProto: its operator, inputs, and whether it is a Cast to float16.
struct Node {
  std::string op;
  std::vector<std::string> inputs;
  bool to_half = false;
};

bool node(Proto m, Node* n) {
  uint32_t f, w;
  uint64_t v;
  while (m.at < m.n) {
    Proto sub{nullptr, 0};
    if (!m.next(&f, &w, &sub, &v)) return false;
    if (f == 1 && w == 2) n->inputs.emplace_back(reinterpret_cast<char const*>(sub.p), sub.n);
    if (f == 4 && w == 2) n->op.assign(reinterpret_cast<char const*>(sub.p), sub.n);
    if (f == 5 && w == 2) {  // AttributeProto: name 1, i 3
      std::string name;
      int64_t i = 0;
      while (sub.at < sub.n) {
        Proto x{nullptr, 0};
        if (!sub.next(&f, &w, &x, &v)) return false;
        if (f == 1 && w == 2) name.assign(reinterpret_cast<char const*>(x.p), x.n);
        if (f == 3 && w == 0) i = static_cast<int64_t>(v);
      }
      if (name == "to" && i == 10) n->to_half = true;
    }
  }
  return true;
}

class Parser : public nvonnxparser::IParser {
 public:
  Parser(Network* n, ILogger* l) : net_(n), logger_(l) { logger_acquire(l); }
  ~Parser() override { logger_release(logger_); }
  bool parse(void const* data, size_t size, char const*) TRT_DOUBLE_PARSER_NOEXCEPT override {
    errors_.clear();
    Fault f;
    if (trt_double::fires("parse", &f)) {
      if (trt_double::can_throw("parse")) throw_fault(f, "IParser::parse");
      return error("injected parse failure");
    }
    Proto model{static_cast<unsigned char const*>(data), size};
    uint32_t field, wire;
    uint64_t v;
    Proto graph{nullptr, 0};
    bool found = false;
    while (model.at < model.n) {
      Proto sub{nullptr, 0};
      if (!model.next(&field, &wire, &sub, &v)) return error("malformed ModelProto");
      if (field == 7 && wire == 2) {
        graph = sub;
        found = true;
      }
    }
    if (!found) return error("ModelProto has no graph");
    std::vector<Tensor> ins, outs;
    std::vector<std::string> initializers;
    std::vector<Initializer> inits;
    std::vector<Node> nodes;
    while (graph.at < graph.n) {
      Proto sub{nullptr, 0};
      if (!graph.next(&field, &wire, &sub, &v)) return error("malformed GraphProto");
      if (wire != 2) continue;
      if (field == 11 || field == 12) {
        Tensor t;
        if (!value_info(sub, &t)) return error("malformed ValueInfoProto");
        (field == 11 ? ins : outs).push_back(t);
      }
      if (field == 5) {  // TensorProto initializer
        Initializer t;
        if (!initializer(sub, &t)) return error("malformed TensorProto");
        initializers.push_back(t.name);
        inits.push_back(std::move(t));
      }
      if (field == 1) {  // NodeProto
        Node n;
        if (!node(sub, &n)) return error("malformed NodeProto");
        nodes.push_back(std::move(n));
      }
    }
    for (auto& t : ins) {
      if (std::find(initializers.begin(), initializers.end(), t.name) != initializers.end()) continue;
      auto nt = std::make_unique<NetTensor>();
      nt->t = t;
      net_->inputs.push_back(std::move(nt));
    }
    for (auto& t : outs) {
      auto nt = std::make_unique<NetTensor>();
      nt->t = t;
      net_->outputs.push_back(std::move(nt));
    }
    net_->model_bytes = size;
    if (net_->inputs.empty()) return error("the graph has no input");
    for (auto const& t : inits)
      if (t.type == 10) net_->has_half = true;
    for (auto const& n : nodes) {
      if (n.to_half) net_->has_half = true;
      if (n.op != "QuantizeLinear" && n.op != "DequantizeLinear") continue;
      net_->qdq = true;
      if (n.op == "QuantizeLinear" && n.inputs.size() >= 2 && n.inputs[0] == net_->inputs[0]->t.name)
        for (auto const& t : inits)
          if (t.name == n.inputs[1] && !t.floats.empty()) net_->qdq_input_scale = t.floats[0];
    }
    if (net_->qdq && net_->qdq_input_scale <= 0)
      return error("trt_double: a Q/DQ model needs a QuantizeLinear with a float scale on its first input");
    return true;
  }
  int getNbErrors() const TRT_DOUBLE_PARSER_NOEXCEPT override { return static_cast<int>(errors_.size()); }
  nvonnxparser::IParserError const* getError(int i) const TRT_DOUBLE_PARSER_NOEXCEPT override {
    return i >= 0 && i < getNbErrors() ? &errors_[i] : nullptr;
  }

 private:
  bool error(std::string const& d) {
    errors_.emplace_back("ModelImporter.cpp: " + d);
    log(logger_, ILogger::Severity::kERROR, "ModelImporter.cpp: " + d);
    return false;
  }
  Network* net_;
  ILogger* logger_;
  std::vector<ParserError> errors_;
};

}  // namespace

extern "C" void* createInferRuntime_INTERNAL(void* logger, int32_t version) noexcept {
  Fault f;
  if (trt_double::fires("createInferRuntime", &f)) return nullptr;
  if (version != NV_TENSORRT_VERSION) return nullptr;
  return static_cast<IRuntime*>(new Runtime(static_cast<ILogger*>(logger)));
}

extern "C" void* createInferBuilder_INTERNAL(void* logger, int32_t version) noexcept {
  Fault f;
  if (trt_double::fires("createInferBuilder", &f)) return nullptr;
  if (version != NV_TENSORRT_VERSION) return nullptr;
  return static_cast<IBuilder*>(new Builder(static_cast<ILogger*>(logger)));
}

extern "C" int32_t getInferLibVersion() noexcept { return NV_TENSORRT_VERSION; }

extern "C" void* createNvOnnxParser_INTERNAL(void* network, void* logger, int version) TRT_DOUBLE_PARSER_NOEXCEPT {
  if (version != NV_TENSORRT_VERSION) return nullptr;
  return static_cast<nvonnxparser::IParser*>(
      new Parser(static_cast<Network*>(static_cast<INetworkDefinition*>(network)), static_cast<ILogger*>(logger)));
}

extern "C" void trt_double_logger_destroyed(nvinfer1::ILogger const* logger) noexcept {
  std::lock_guard<std::mutex> g(loggers().mu);
  auto it = loggers().live.find(logger);
  if (it != loggers().live.end() && it->second > 0)
    lifetime_violation("ILogger destroyed while " + std::to_string(it->second) +
                       " runtime(s), builder(s) or parser(s) created with it still live");
}

namespace trt_double {

void set_dla_cores(int32_t n) { g_dla_cores.store(n < 0 ? 0 : n); }

namespace {
class QuietLogger : public nvinfer1::ILogger {
 public:
  void log(Severity, char const*) noexcept override {}
};
}  // namespace

void misuse(std::string const& kind) {
  using namespace nvinfer1;
  if (kind == "logger_before_runtime") {
    auto* l = new QuietLogger();
    IRuntime* r = createInferRuntime(*l);
    delete l;  // aborts: the runtime still uses it
    delete r;
    return;
  }
  QuietLogger l;
  if (kind == "builder_before_network" || kind == "builder_before_config") {
    IBuilder* b = createInferBuilder(l);
    INetworkDefinition* n = kind == "builder_before_network" ? b->createNetworkV2(1U) : nullptr;
    IBuilderConfig* c = kind == "builder_before_config" ? b->createBuilderConfig() : nullptr;
    delete b;  // aborts
    delete n;
    delete c;
    return;
  }
  if (kind == "runtime_before_engine" || kind == "engine_before_context") {
    Plan p;
    p.tensors.push_back(Tensor{"x", TensorIOMode::kINPUT, DataType::kFLOAT, {1, 4}});
    p.tensors.push_back(Tensor{"y", TensorIOMode::kOUTPUT, DataType::kFLOAT, {1, 2}});
    p.activation = 256;
    std::string blob = write_plan(p);
    IRuntime* r = createInferRuntime(l);
    ICudaEngine* e = r->deserializeCudaEngine(blob.data(), blob.size());
    if (e == nullptr) return;
    IExecutionContext* c = kind == "engine_before_context" ? e->createExecutionContext() : nullptr;
    if (kind == "runtime_before_engine") {
      delete r;  // aborts
      delete e;
    } else {
      delete e;  // aborts
      delete c;
      delete r;
    }
    return;
  }
  std::fprintf(stderr, "trt_double: unknown misuse '%s'\n", kind.c_str());
}

}  // namespace trt_double
