// CUDA kernels of the variable-length layout ops. The per-token index logic is the same
// mmgen/varlen.h code the CPU loops run; the argument checks are mmgen/varlen_host.h.
//
// Host synchronisation: each op reads cu_seqlens / lengths (N+1 ints) on the host once, to
// check them and to learn T, which sizes the outputs. cu_seqlens and lengths may be passed on
// the CPU (the usual case: the collator builds them) and are then copied to the device.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <tuple>
#include <vector>

#include "mmgen/varlen.h"
#include "mmgen/varlen_host.h"

namespace mmgen {
namespace {

using varlen::Extent;

constexpr int kThreads = 256;

// Grid-stride launches: enough blocks to fill any GPU, never more than the work needs.
unsigned blocks_for(int64_t n) {
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, 65536);
  return static_cast<unsigned>(std::max<int64_t>(blocks, 1));
}

__global__ void metadata_kernel(const int32_t* cu, int64_t n_seq, int64_t total,
                                int64_t* position_ids, int32_t* seq_idx) {
  for (int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; t < total;
       t += int64_t{gridDim.x} * blockDim.x) {
    varlen::fill_metadata(cu, n_seq, t, t + 1, position_ids, seq_idx);
  }
}

template <typename T>
__global__ void pad_kernel(const T* in, T* out, const int32_t* cu, int64_t n_elems,
                           int64_t max_seqlen, int64_t width, T fill) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n_elems;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t row = i / width, col = i % width;
    const int64_t from = varlen::pad_source_row(cu, row / max_seqlen, row % max_seqlen);
    out[i] = from < 0 ? fill : in[from * width + col];
  }
}

template <typename T>
__global__ void unpad_kernel(const T* in, T* out, const int32_t* offsets, int64_t n_seq,
                             int64_t max_seqlen, int64_t n_elems, int64_t width) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n_elems;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t t = i / width;  // a warp mostly shares t, so its searches hit the same words
    out[i] = in[varlen::unpad_source_row(offsets, n_seq, max_seqlen, t) * width + i % width];
  }
}

template <typename T>
__global__ void mask_kernel(T* out, const int32_t* cu, int64_t n_seq, int64_t total,
                            T visible, T hidden) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total * total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t q = i / total, k = i % total;
    out[i] = varlen::mask_visible(varlen::mask_first_key(cu, n_seq, q), q, k) ? visible : hidden;
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, c10::SymInt> varlen_metadata_cuda(
    const at::Tensor& lengths) {
  const c10::cuda::CUDAGuard guard(lengths.device());
  Extent extent;
  const at::Tensor cu_host = varlen::host_cu_seqlens(lengths, "varlen_metadata", &extent);
  const at::Tensor cu = cu_host.to(lengths.device());
  at::Tensor position_ids = at::empty({extent.total}, lengths.options().dtype(at::kLong));
  at::Tensor seq_idx = at::empty({extent.total}, lengths.options().dtype(at::kInt));
  if (extent.total > 0) {
    metadata_kernel<<<blocks_for(extent.total), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        cu.data_ptr<int32_t>(), lengths.numel(), extent.total, position_ids.data_ptr<int64_t>(),
        seq_idx.data_ptr<int32_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {cu, position_ids, seq_idx, c10::SymInt(extent.longest)};
}

at::Tensor pad_varlen_cuda(const at::Tensor& x, const at::Tensor& cu_seqlens, int64_t max_seqlen,
                           const at::Scalar& value) {
  TORCH_CHECK_VALUE(x.is_cuda(), "pad_varlen: x is on ", x.device(), " but cu_seqlens on CUDA");
  const c10::cuda::CUDAGuard guard(x.device());
  const Extent extent = varlen::check_cu_seqlens(cu_seqlens, "pad_varlen");
  varlen::check_pad_args(x, extent, max_seqlen, "pad_varlen");
  const at::Tensor src = x.contiguous();
  const at::Tensor cu = cu_seqlens.to(x.device()).contiguous();
  const int64_t n_seq = cu.numel() - 1, width = varlen::row_numel(x, 1);
  at::Tensor out = at::empty(varlen::padded_shape(x, n_seq, max_seqlen), x.options());
  const int64_t n_elems = out.numel();
  if (n_elems == 0) return out;
  AT_DISPATCH_ALL_TYPES_AND3(at::kHalf, at::kBFloat16, at::kBool, x.scalar_type(),
                             "pad_varlen", [&] {
    pad_kernel<scalar_t><<<blocks_for(n_elems), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        src.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), cu.data_ptr<int32_t>(), n_elems,
        max_seqlen, width, value.to<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor unpad_varlen_cuda(const at::Tensor& x, const at::Tensor& lengths) {
  TORCH_CHECK_VALUE(x.is_cuda(), "unpad_varlen: x is on ", x.device(), " but lengths on CUDA");
  const c10::cuda::CUDAGuard guard(x.device());
  Extent extent;
  const at::Tensor offsets_host = varlen::host_cu_seqlens(lengths, "unpad_varlen", &extent);
  varlen::check_unpad_args(x, lengths, extent, "unpad_varlen");
  const at::Tensor src = x.contiguous();
  const at::Tensor offsets = offsets_host.to(x.device());
  const int64_t width = varlen::row_numel(x, 2);
  at::Tensor out = at::empty(varlen::unpadded_shape(x, extent.total), x.options());
  const int64_t n_elems = out.numel();
  if (n_elems == 0) return out;
  AT_DISPATCH_ALL_TYPES_AND3(at::kHalf, at::kBFloat16, at::kBool, x.scalar_type(),
                             "unpad_varlen", [&] {
    unpad_kernel<scalar_t><<<blocks_for(n_elems), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        src.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), offsets.data_ptr<int32_t>(),
        lengths.numel(), x.size(1), n_elems, width);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor block_diagonal_causal_mask_cuda(const at::Tensor& cu_seqlens,
                                           std::optional<at::ScalarType> dtype) {
  const char* op = "block_diagonal_causal_mask";
  const c10::cuda::CUDAGuard guard(cu_seqlens.device());
  const Extent extent = varlen::check_cu_seqlens(cu_seqlens, op);
  const at::ScalarType type = varlen::mask_dtype(dtype);
  const at::Tensor cu = cu_seqlens.contiguous();
  const int64_t total = extent.total;
  at::Tensor out = at::empty({1, 1, total, total}, cu_seqlens.options().dtype(type));
  if (total == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, type,
                                  "block_diagonal_causal_mask", [&] {
    mask_kernel<scalar_t><<<blocks_for(total * total), kThreads, 0,
                            c10::cuda::getCurrentCUDAStream()>>>(
        out.data_ptr<scalar_t>(), cu.data_ptr<int32_t>(), cu.numel() - 1, total, scalar_t(0),
        std::numeric_limits<scalar_t>::lowest());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace
}  // namespace mmgen

TORCH_LIBRARY_IMPL(mmgen, CUDA, m) {
  m.impl("varlen_metadata", &mmgen::varlen_metadata_cuda);
  m.impl("pad_varlen", &mmgen::pad_varlen_cuda);
  m.impl("unpad_varlen", &mmgen::unpad_varlen_cuda);
  m.impl("block_diagonal_causal_mask", &mmgen::block_diagonal_causal_mask_cuda);
}
