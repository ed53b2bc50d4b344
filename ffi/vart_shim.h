/*
 * vart_shim.h: rtinfer's own C ABI over Vitis AI VART (issue 8).
 *
 * Why a shim of our own: VART and XIR are C++ libraries whose ABI depends on the compiler and the
 * Vitis AI release on the board, and their official C API (vart/vart.h) is not exported by every
 * image. rtinfer loads a library implementing THIS header at run time (libloading), so one rtinfer
 * binary serves every board and the default build needs no Vitis AI SDK. Two implementations
 * exist: cpp/vart_shim.cc (the real one, over VART/XIR, built on the board into
 * librtinfer_vart.so) and cpp/fake_dpu/fake_dpu.c (a test double built at test time).
 *
 * Rules of the ABI:
 *  - Only fixed-width integer types, char and opaque pointers cross it; the one struct holds no
 *    pointers, so its layout is the same on every 32- and 64-bit target.
 *  - Every function that can fail returns an rtv status (RTV_OK = 0). On failure the text of the
 *    error is available from rtv_last_error() on the SAME thread until the next call on it.
 *    No C++ exception ever crosses the boundary.
 *  - A model handle may move between threads but must not be used by two threads at once.
 *  - Shapes are reported as the DPU stores tensors: NHWC for images, batch first.
 *  - Tensor data is int8 (XINT8 on the DPU): a real value v is stored as
 *    q = clamp(round(v * 2^fix_point), -128, 127) and read back as q * 2^-fix_point.
 *
 * Bindings: src/backend/vitis/ffi.rs is generated from this file by bindgen 0.73 and committed;
 * the test `vitis::bindings` regenerates it and fails when it differs (see that test for the
 * exact regeneration command). Bump RTV_ABI_VERSION on any incompatible change.
 */
#ifndef RTINFER_VART_SHIM_H
#define RTINFER_VART_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI this header describes; rtv_abi_version() of a loadable library must return it. */
#define RTV_ABI_VERSION 1

/* Status codes. */
#define RTV_OK 0
/* A pointer argument was null, an index out of range, or a buffer of the wrong size. */
#define RTV_ERR_ARGUMENT 1
/* The .xmodel could not be read or deserialised. */
#define RTV_ERR_OPEN 2
/* The model was read but cannot run here (no DPU subgraph, unsupported tensors, no runner). */
#define RTV_ERR_MODEL 3
/* The runner reported a failure for this job. */
#define RTV_ERR_RUN 4
/* wait() gave up before the job finished (the job may still complete on the device). */
#define RTV_ERR_TIMEOUT 5
/* Anything else (an unexpected exception, out of memory). */
#define RTV_ERR_INTERNAL 6

/* Tensor element types (xir::DataType with its bit width). */
#define RTV_DTYPE_UNKNOWN 0
#define RTV_DTYPE_INT8 1
#define RTV_DTYPE_UINT8 2
#define RTV_DTYPE_FLOAT32 3
#define RTV_DTYPE_OTHER 4

/* Tensor directions. */
#define RTV_INPUT 0
#define RTV_OUTPUT 1

/* Limits of rtv_tensor_info. */
#define RTV_MAX_DIMS 8
#define RTV_NAME_LEN 128

/* One input or output tensor of the DPU subgraph. */
typedef struct rtv_tensor_info {
  /* NUL-terminated, truncated to RTV_NAME_LEN - 1 bytes. */
  char name[RTV_NAME_LEN];
  /* Number of valid entries in dims. */
  int32_t ndims;
  /* Dimensions, batch first (NHWC for images). */
  int32_t dims[RTV_MAX_DIMS];
  /* One of RTV_DTYPE_*. */
  int32_t dtype;
  /* The tensor's fix_point attribute (scale 2^fix_point); 0 when it has none. */
  int32_t fix_point;
  /* 1 when the tensor had a fix_point attribute, else 0. */
  int32_t has_fix_point;
  /* Bytes of one batch element: what rtv_run reads or writes for this tensor. */
  int64_t batch_bytes;
} rtv_tensor_info;

/* An opened model with its runner and tensor buffers. */
typedef struct rtv_model rtv_model;

/* RTV_ABI_VERSION of the header the library was built from. */
int32_t rtv_abi_version(void);

/* A static, human-readable description of the implementation (e.g. "vart 3.0 shim"). */
const char *rtv_version(void);

/* Text of the last failure on this thread ("" when none); valid until the next call. */
const char *rtv_last_error(void);

/*
 * Opens an .xmodel: deserialises the graph, selects the DPU subgraph, creates its runner and
 * allocates its host buffers. On success *out holds a handle to release with rtv_close.
 */
int32_t rtv_open(const char *xmodel_path, rtv_model **out);

/* Releases a handle from rtv_open; null is ignored. */
void rtv_close(rtv_model *model);

/* Number of tensors in a direction (RTV_INPUT or RTV_OUTPUT). */
int32_t rtv_tensor_count(const rtv_model *model, int32_t direction, int32_t *out);

/* Describes tensor `index` of a direction. */
int32_t rtv_describe_tensor(const rtv_model *model, int32_t direction, int32_t index,
                            rtv_tensor_info *out);

/*
 * Runs one frame (batch element 0): copies inputs[i] (input_bytes[i] bytes, which must equal
 * that tensor's batch_bytes) into the runner's buffers, executes, waits up to timeout_ms
 * (negative: forever), and copies the results into outputs[i] (output_bytes[i] bytes each).
 * Allocates nothing after rtv_open. On the ZCU104 the DPU job runs synchronously inside
 * execute_async, so the timeout cannot interrupt it.
 */
int32_t rtv_run(rtv_model *model, const int8_t *const *inputs, const int64_t *input_bytes,
                int32_t input_count, int8_t *const *outputs, const int64_t *output_bytes,
                int32_t output_count, int32_t timeout_ms);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* RTINFER_VART_SHIM_H */
