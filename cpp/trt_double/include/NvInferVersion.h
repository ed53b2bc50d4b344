// Test double of TensorRT's version header (written for rtinfer, not NVIDIA's). The build script
// picks the shape with -DTRT_DOUBLE_MAJOR and -DTRT_DOUBLE_MINOR: 8.5 (TensorRT 8.5.2, JetPack
// 5.1), 10.3 (TensorRT 10.3.0, JetPack 6.1/6.2) or 10.16 (TensorRT 10.16.1: BuilderFlag::kFP16 and
// kINT8 deprecated, superseded by strong typing).
#pragma once

#ifndef TRT_DOUBLE_MAJOR
#error "define TRT_DOUBLE_MAJOR and TRT_DOUBLE_MINOR (build/tensorrt.rs does)"
#endif
#ifndef TRT_DOUBLE_MINOR
#error "define TRT_DOUBLE_MINOR (build/tensorrt.rs does)"
#endif

#if TRT_DOUBLE_MAJOR == 8 && TRT_DOUBLE_MINOR == 5
#define NV_TENSORRT_MAJOR 8
#define NV_TENSORRT_MINOR 5
#define NV_TENSORRT_PATCH 2
#define NV_TENSORRT_BUILD 2
#elif TRT_DOUBLE_MAJOR == 10 && TRT_DOUBLE_MINOR == 3
#define NV_TENSORRT_MAJOR 10
#define NV_TENSORRT_MINOR 3
#define NV_TENSORRT_PATCH 0
#define NV_TENSORRT_BUILD 30
#elif TRT_DOUBLE_MAJOR == 10 && TRT_DOUBLE_MINOR == 16
#define NV_TENSORRT_MAJOR 10
#define NV_TENSORRT_MINOR 16
#define NV_TENSORRT_PATCH 1
#define NV_TENSORRT_BUILD 11
#else
#error "the TensorRT double has the shapes 8.5, 10.3 and 10.16"
#endif

// True when the imitated version is MAJOR.MINOR or later (the double's own helper).
#define TRT_DOUBLE_SINCE(major, minor) \
  (NV_TENSORRT_MAJOR > (major) || (NV_TENSORRT_MAJOR == (major) && NV_TENSORRT_MINOR >= (minor)))
