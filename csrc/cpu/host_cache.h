// A small cache of large host buffers for the outputs of mmgen's CPU ops.
//
// PyTorch has no caching allocator on the CPU: every large tensor is a fresh mmap, and the kernel
// must fault in and zero every page before the op can write it. For an output written once at
// memory speed that dominates (measured here: 15 ms to allocate and copy 128 MiB, 5.8 ms to copy
// into memory already touched). A training step frees the merged embeddings after its backward
// and asks for a buffer of about the same size in the next step, so keeping a few freed buffers
// (as the CUDA caching allocator does on the GPU) takes page faults out of the steady state.
//
// Only buffers of at least kMinBytes are cached; at most MMGEN_CPU_CACHE_MB MiB (default 2048,
// 0 disables the cache) are kept while unused; `mmgen.ops.empty_cache()` frees them all. New
// buffers ask for transparent huge pages (madvise), which cuts the faults of a first use too.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace mmgen {
namespace host_cache {

// An uninitialised tensor of `shape`, backed by a cached buffer when large enough.
at::Tensor empty(at::IntArrayRef shape, const at::TensorOptions& options);

// Frees every unused cached buffer; returns the bytes released.
int64_t release();

}  // namespace host_cache
}  // namespace mmgen
