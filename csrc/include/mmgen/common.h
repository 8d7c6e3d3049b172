// Small helpers shared by every mmgen kernel, host and device alike.
#pragma once

// Marks logic written once and compiled for both the CPU loop (g++) and CUDA kernels (nvcc).
#if defined(__CUDACC__)
#define MMGEN_HOST_DEVICE __host__ __device__
#else
#define MMGEN_HOST_DEVICE
#endif

// Unrolls the next loop in nvcc; host compilers vectorise the fixed-trip loops on their own.
#if defined(__CUDACC__)
#define MMGEN_UNROLL _Pragma("unroll")
#else
#define MMGEN_UNROLL
#endif
