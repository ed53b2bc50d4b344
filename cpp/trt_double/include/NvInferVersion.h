// Test double of TensorRT's version header (written for rtinfer, not NVIDIA's). The build script
// picks the shape with -DTRT_DOUBLE_MAJOR=8 (TensorRT 8.5.2) or 10 (TensorRT 10.3.0).
#pragma once

#ifndef TRT_DOUBLE_MAJOR
#error "define TRT_DOUBLE_MAJOR to 8 or 10 (build/tensorrt.rs does)"
#endif

#if TRT_DOUBLE_MAJOR == 8
#define NV_TENSORRT_MAJOR 8
#define NV_TENSORRT_MINOR 5
#define NV_TENSORRT_PATCH 2
#define NV_TENSORRT_BUILD 2
#elif TRT_DOUBLE_MAJOR == 10
#define NV_TENSORRT_MAJOR 10
#define NV_TENSORRT_MINOR 3
#define NV_TENSORRT_PATCH 0
#define NV_TENSORRT_BUILD 30
#else
#error "TRT_DOUBLE_MAJOR must be 8 or 10"
#endif
