// vart_shim.cc: ffi/vart_shim.h implemented over Vitis AI VART/XIR (C++17), built on the board
// into librtinfer_vart.so (see cpp/Makefile and the README's "Vitis AI" section).
//
// Why this file exists: rtinfer is Rust and loads this library at run time; VART's C++ ABI is
// never seen by Rust. Everything here is written against the public VART/XIR headers
// (vart/runner.hpp, vart/tensor_buffer.hpp, xir/graph/graph.hpp, xir/tensor/tensor.hpp) and uses
// only what libvart-runner, libvart-util and libxir define: CI compiles it (g++ -fsyntax-only,
// -Werror) against the real headers of Vitis AI 2.5, 3.0 and 3.5 (scripts/check_sdk_headers.sh,
// third_party/). It has never been linked against those libraries nor run on a DPU; the fake in
// cpp/fake_dpu/ stands in for it in tests.
//
// Rules kept here:
//  - no C++ exception crosses the C boundary: every entry point is wrapped in guarded();
//    (glog CHECK failures inside VART abort the process and cannot be caught by anyone);
//  - nothing is allocated per frame: runner, tensor buffers, buffer pointer vectors and host
//    addresses are all prepared in rtv_open; rtv_run only copies bytes and runs the job;
//  - error text is thread-local and fixed-size, so reporting an error cannot itself throw.

#include "../ffi/vart_shim.h"

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <vart/runner.hpp>
#include <vart/tensor_buffer.hpp>
#include <xir/graph/graph.hpp>
#include <xir/tensor/tensor.hpp>

#define RTV_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

thread_local char g_last_error[512];

int32_t fail(int32_t status, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(g_last_error, sizeof g_last_error, fmt, ap);
  va_end(ap);
  return status;
}

// Runs `body` (returning an rtv status), turning any exception into RTV_ERR_INTERNAL.
template <typename F>
int32_t guarded(const char* what, F&& body) noexcept {
  try {
    return body();
  } catch (const std::exception& e) {
    return fail(RTV_ERR_INTERNAL, "%s: %s", what, e.what());
  } catch (...) {
    return fail(RTV_ERR_INTERNAL, "%s: unknown C++ exception", what);
  }
}

int32_t dtype_of(const xir::Tensor* t) {
  const xir::DataType& d = t->get_data_type();
  const bool signed_int = d.type == xir::DataType::INT || d.type == xir::DataType::XINT;
  const bool unsigned_int = d.type == xir::DataType::UINT || d.type == xir::DataType::XUINT;
  if (signed_int && d.bit_width == 8) return RTV_DTYPE_INT8;
  if (unsigned_int && d.bit_width == 8) return RTV_DTYPE_UINT8;
  if (d.type == xir::DataType::FLOAT && d.bit_width == 32) return RTV_DTYPE_FLOAT32;
  return RTV_DTYPE_OTHER;
}

// A runner tensor's host memory, one contiguous row-major block, through VART's own TensorBuffer
// interface (declared in vart/tensor_buffer.hpp, defined in libvart-runner). It replaces
// vart::alloc_cpu_flat_tensor_buffers, which vart/runner_helper.hpp declares but the Vitis AI
// Library's libvitis_ai_library-runner_helper defines (src/vai_library/runner_helper in 3.0/3.5,
// src/Vitis-AI-Library/runner_helper in 2.5): not one of the libraries cpp/Makefile links, and
// not installed with VART alone. The DPU runner copies from and to HOST_VIRT buffers like these.
class HostTensorBuffer final : public vart::TensorBuffer {
 public:
  explicit HostTensorBuffer(const xir::Tensor* tensor)
      : vart::TensorBuffer(tensor),
        bytes_(static_cast<size_t>(tensor->get_element_num()) *
               static_cast<size_t>(tensor->get_data_type().bit_width / 8)),
        data_(bytes_) {}

  // The address of element `idx` (row-major) and the bytes from there to the end.
  std::pair<std::uint64_t, std::size_t> data(const std::vector<std::int32_t> idx) override {
    const std::vector<std::int32_t> shape = tensor_->get_shape();
    const size_t element = static_cast<size_t>(tensor_->get_data_type().bit_width / 8);
    size_t offset = 0;
    for (size_t i = 0; i < shape.size(); i++) {
      const std::int32_t at = i < idx.size() ? idx[i] : 0;
      if (at < 0 || at >= shape[i]) return {0, 0};
      offset = offset * static_cast<size_t>(shape[i]) + static_cast<size_t>(at);
    }
    offset *= element;
    if (offset > bytes_) return {0, 0};
    return {reinterpret_cast<std::uint64_t>(data_.data() + offset), bytes_ - offset};
  }

 private:
  size_t bytes_;
  std::vector<int8_t> data_;
};

// One tensor of the runner with its host buffer, prepared at open.
struct Port {
  rtv_tensor_info info;
  std::unique_ptr<vart::TensorBuffer> buffer;
  int8_t* host = nullptr;  // start of batch element 0 in `buffer`
};

int32_t describe(const xir::Tensor* t, const char* path, rtv_tensor_info* out) {
  std::memset(out, 0, sizeof *out);
  std::snprintf(out->name, sizeof out->name, "%s", t->get_name().c_str());
  const std::vector<std::int32_t> shape = t->get_shape();
  if (shape.empty() || shape.size() > RTV_MAX_DIMS || shape[0] <= 0)
    return fail(RTV_ERR_MODEL, "%s: tensor %s has an unsupported shape (%zu dimensions)", path,
                out->name, shape.size());
  out->ndims = static_cast<int32_t>(shape.size());
  for (size_t i = 0; i < shape.size(); i++) out->dims[i] = shape[i];
  out->dtype = dtype_of(t);
  if (t->has_attr("fix_point")) {
    out->fix_point = t->get_attr<int>("fix_point");
    out->has_fix_point = 1;
  }
  const int64_t bytes_per_element = t->get_data_type().bit_width / 8;
  out->batch_bytes = static_cast<int64_t>(t->get_element_num()) / shape[0] * bytes_per_element;
  return RTV_OK;
}

// Allocates the runner's host buffers and records where batch element 0 starts.
int32_t prepare(const std::vector<const xir::Tensor*>& tensors, const char* path,
                std::vector<Port>& ports, std::vector<vart::TensorBuffer*>& raw) {
  ports.resize(tensors.size());
  raw.clear();
  for (size_t i = 0; i < tensors.size(); i++) {
    int32_t st = describe(tensors[i], path, &ports[i].info);
    if (st != RTV_OK) return st;
    ports[i].buffer = std::make_unique<HostTensorBuffer>(tensors[i]);
    std::vector<std::int32_t> origin(tensors[i]->get_shape().size(), 0);
    auto addr = ports[i].buffer->data(origin);
    if (addr.first == 0 || static_cast<int64_t>(addr.second) < ports[i].info.batch_bytes)
      return fail(RTV_ERR_MODEL, "%s: tensor %s: host buffer too small", path,
                  ports[i].info.name);
    ports[i].host = reinterpret_cast<int8_t*>(addr.first);
    raw.push_back(ports[i].buffer.get());
  }
  return RTV_OK;
}

// The child subgraph the DPU runs; the others are CPU pre/post-processing we do not run.
int32_t find_dpu_subgraph(const xir::Graph& graph, const char* path, const xir::Subgraph** out) {
  const xir::Subgraph* root = graph.get_root_subgraph();
  if (root == nullptr) return fail(RTV_ERR_MODEL, "%s: graph has no root subgraph", path);
  std::vector<const xir::Subgraph*> dpu;
  for (const xir::Subgraph* child : root->children_topological_sort()) {
    if (child->has_attr("device") && child->get_attr<std::string>("device") == "DPU")
      dpu.push_back(child);
  }
  if (dpu.empty())
    return fail(RTV_ERR_MODEL, "%s: no subgraph with device \"DPU\" (not compiled for a DPU?)",
                path);
  if (dpu.size() > 1)
    return fail(RTV_ERR_MODEL,
                "%s: %zu DPU subgraphs; rtinfer runs models compiled into a single DPU subgraph",
                path, dpu.size());
  *out = dpu[0];
  return RTV_OK;
}

}  // namespace

struct rtv_model {
  std::string path;
  std::unique_ptr<xir::Graph> graph;  // owns the subgraph the runner refers to
  std::unique_ptr<vart::Runner> runner;
  std::vector<Port> inputs;
  std::vector<Port> outputs;
  std::vector<vart::TensorBuffer*> input_raw;  // prebuilt arguments of execute_async
  std::vector<vart::TensorBuffer*> output_raw;
};

RTV_EXPORT int32_t rtv_abi_version(void) { return RTV_ABI_VERSION; }

RTV_EXPORT const char* rtv_version(void) {
  return "rtinfer VART shim (Vitis AI 3.0 API, DPU subgraph runner)";
}

RTV_EXPORT const char* rtv_last_error(void) { return g_last_error; }

RTV_EXPORT int32_t rtv_open(const char* xmodel_path, rtv_model** out) {
  g_last_error[0] = '\0';
  if (xmodel_path == nullptr || out == nullptr)
    return fail(RTV_ERR_ARGUMENT, "rtv_open: null argument");
  *out = nullptr;
  return guarded("rtv_open", [&]() -> int32_t {
    auto m = std::make_unique<rtv_model>();
    m->path = xmodel_path;
    const char* path = m->path.c_str();
    try {
      m->graph = xir::Graph::deserialize(m->path);
    } catch (const std::exception& e) {
      return fail(RTV_ERR_OPEN, "%s: cannot deserialise: %s", path, e.what());
    }
    const xir::Subgraph* subgraph = nullptr;
    int32_t st = find_dpu_subgraph(*m->graph, path, &subgraph);
    if (st != RTV_OK) return st;
    m->runner = vart::Runner::create_runner(subgraph, "run");
    if (!m->runner) return fail(RTV_ERR_MODEL, "%s: VART created no runner", path);
    st = prepare(m->runner->get_input_tensors(), path, m->inputs, m->input_raw);
    if (st != RTV_OK) return st;
    st = prepare(m->runner->get_output_tensors(), path, m->outputs, m->output_raw);
    if (st != RTV_OK) return st;
    *out = m.release();
    return RTV_OK;
  });
}

RTV_EXPORT void rtv_close(rtv_model* model) {
  // Destructors of VART objects are not expected to throw; if one does, leaking beats crashing.
  guarded("rtv_close", [&]() -> int32_t {
    delete model;
    return RTV_OK;
  });
}

RTV_EXPORT int32_t rtv_tensor_count(const rtv_model* model, int32_t direction, int32_t* out) {
  if (model == nullptr || out == nullptr)
    return fail(RTV_ERR_ARGUMENT, "rtv_tensor_count: null argument");
  if (direction != RTV_INPUT && direction != RTV_OUTPUT)
    return fail(RTV_ERR_ARGUMENT, "rtv_tensor_count: bad direction %d", direction);
  const auto& ports = direction == RTV_INPUT ? model->inputs : model->outputs;
  *out = static_cast<int32_t>(ports.size());
  return RTV_OK;
}

RTV_EXPORT int32_t rtv_describe_tensor(const rtv_model* model, int32_t direction, int32_t index,
                                       rtv_tensor_info* out) {
  if (model == nullptr || out == nullptr)
    return fail(RTV_ERR_ARGUMENT, "rtv_describe_tensor: null argument");
  if (direction != RTV_INPUT && direction != RTV_OUTPUT)
    return fail(RTV_ERR_ARGUMENT, "rtv_describe_tensor: bad direction %d", direction);
  const auto& ports = direction == RTV_INPUT ? model->inputs : model->outputs;
  if (index < 0 || static_cast<size_t>(index) >= ports.size())
    return fail(RTV_ERR_ARGUMENT, "rtv_describe_tensor: no tensor %d", index);
  *out = ports[static_cast<size_t>(index)].info;
  return RTV_OK;
}

RTV_EXPORT int32_t rtv_run(rtv_model* model, const int8_t* const* inputs,
                           const int64_t* input_bytes, int32_t input_count,
                           int8_t* const* outputs, const int64_t* output_bytes,
                           int32_t output_count, int32_t timeout_ms) {
  if (model == nullptr || inputs == nullptr || input_bytes == nullptr || outputs == nullptr ||
      output_bytes == nullptr)
    return fail(RTV_ERR_ARGUMENT, "rtv_run: null argument");
  if (static_cast<size_t>(input_count) != model->inputs.size() ||
      static_cast<size_t>(output_count) != model->outputs.size())
    return fail(RTV_ERR_ARGUMENT, "rtv_run: %d inputs and %d outputs given, model has %zu and %zu",
                input_count, output_count, model->inputs.size(), model->outputs.size());
  for (int32_t i = 0; i < input_count; i++) {
    if (inputs[i] == nullptr || input_bytes[i] != model->inputs[i].info.batch_bytes)
      return fail(RTV_ERR_ARGUMENT, "rtv_run: input %d: %lld bytes given, tensor has %lld", i,
                  static_cast<long long>(input_bytes[i]),
                  static_cast<long long>(model->inputs[i].info.batch_bytes));
  }
  for (int32_t i = 0; i < output_count; i++) {
    if (outputs[i] == nullptr || output_bytes[i] != model->outputs[i].info.batch_bytes)
      return fail(RTV_ERR_ARGUMENT, "rtv_run: output %d: %lld bytes given, tensor has %lld", i,
                  static_cast<long long>(output_bytes[i]),
                  static_cast<long long>(model->outputs[i].info.batch_bytes));
  }
  return guarded("rtv_run", [&]() -> int32_t {
    for (int32_t i = 0; i < input_count; i++) {
      Port& p = model->inputs[i];
      std::memcpy(p.host, inputs[i], static_cast<size_t>(input_bytes[i]));
      p.buffer->sync_for_write(0, static_cast<size_t>(input_bytes[i]));
    }
    // On the ZCU104 (DPUCZDX8G, edge) the job runs to completion inside execute_async; wait()
    // then returns at once and its timeout has no effect.
    std::pair<std::uint32_t, int> job = model->runner->execute_async(model->input_raw,
                                                                     model->output_raw);
    if (job.second != 0)
      return fail(RTV_ERR_RUN, "%s: execute_async returned status %d", model->path.c_str(),
                  job.second);
    int st = model->runner->wait(static_cast<int>(job.first), timeout_ms);
    if (st != 0)
      return fail(RTV_ERR_RUN, "%s: wait(job %u, %d ms) returned status %d",
                  model->path.c_str(), job.first, timeout_ms, st);
    for (int32_t i = 0; i < output_count; i++) {
      Port& p = model->outputs[i];
      p.buffer->sync_for_read(0, static_cast<size_t>(output_bytes[i]));
      std::memcpy(outputs[i], p.host, static_cast<size_t>(output_bytes[i]));
    }
    return RTV_OK;
  });
}
