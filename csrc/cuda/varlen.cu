// CUDA kernels of the variable-length layout ops. The per-token index logic is the same
// mmgen/varlen.h code the CPU loops run; the argument checks are mmgen/varlen_host.h.
//
// Host synchronisation: by default (validate=True) each op reads cu_seqlens / lengths (N+1 ints)
// on the host once, to check them and to learn T and the longest length, which size the outputs:
// one sync when they are on the GPU. cu_seqlens and lengths may also be passed on the CPU (the
// collator builds them there), where reading them is free; they are then copied to the device.
//
// Sync-free path: validate=False, cu_seqlens / lengths on the GPU, and every output size the op
// needs given as a host int (pad_varlen: max_seqlen, always given; unpad_varlen: total;
// block_diagonal_causal_mask: total; varlen_metadata: total and max_seqlen). Nothing is then read
// back: check_cu_seqlens_kernel / offsets_kernel check the same values with device-side asserts
// (bad input then fails the next synchronising CUDA call instead of raising ValueError).
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

// validate=False: the host checks of cu_seqlens as device-side asserts. Boundary i: cu[0] == 0,
// no length below 0 or above max_len, cu[N] == total.
__global__ void check_cu_seqlens_kernel(const int32_t* cu, int64_t n_seq, int64_t total,
                                        int64_t max_len) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i <= n_seq;
       i += int64_t{gridDim.x} * blockDim.x) {
    if (i == 0) {
      CUDA_KERNEL_ASSERT(cu[0] == 0 && "mmgen varlen: cu_seqlens[0] must be 0");
    } else {
      const int64_t len = int64_t{cu[i]} - cu[i - 1];
      CUDA_KERNEL_ASSERT(len >= 0 && "mmgen varlen: cu_seqlens must not decrease");
      CUDA_KERNEL_ASSERT(len <= max_len && "mmgen varlen: a sequence is longer than max_seqlen");
    }
    if (i == n_seq) {
      CUDA_KERNEL_ASSERT(cu[i] == total && "mmgen varlen: cu_seqlens must end at the given T");
    }
  }
}

// validate=False: lengths (N) -> offsets (N+1, int32: the cu_seqlens of the lengths) from their
// inclusive cumsum, checking on the device what host_cu_seqlens checks on the host: no length
// below 0 or above max_len, the sum equal to the given total (<= 2^31 - 1, checked on the host,
// so no offset overflows int32) and, when longest is given, the longest length equal to *longest.
__global__ void offsets_kernel(const int64_t* lengths, const int64_t* cumsum, int64_t n,
                               int64_t total, int64_t max_len, const int64_t* longest,
                               int32_t* offsets) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i <= n;
       i += int64_t{gridDim.x} * blockDim.x) {
    if (i == 0) {
      offsets[0] = 0;
      if (longest != nullptr) {
        CUDA_KERNEL_ASSERT(*longest == max_len &&
                           "mmgen varlen: max_seqlen is not the longest length");
      }
      continue;
    }
    const int64_t len = lengths[i - 1];
    CUDA_KERNEL_ASSERT(len >= 0 && "mmgen varlen: a length is negative");
    CUDA_KERNEL_ASSERT(len <= max_len && "mmgen varlen: a length is longer than max_seqlen");
    if (i == n) {
      CUDA_KERNEL_ASSERT(cumsum[i - 1] == total && "mmgen varlen: the lengths do not add up to T");
    }
    offsets[i] = static_cast<int32_t>(cumsum[i - 1]);
  }
}

// The sync-free path's offsets of lengths (on its device), checked by offsets_kernel.
at::Tensor device_offsets(const at::Tensor& lengths, int64_t total, int64_t max_len,
                          bool exact_max) {
  const int64_t n = lengths.numel();
  const at::Tensor len = lengths.contiguous();
  at::Tensor offsets = at::empty({n + 1}, lengths.options().dtype(at::kInt));
  const at::Tensor cumsum = at::cumsum(len, 0);
  const at::Tensor longest = exact_max && n > 0 ? at::amax(len) : at::Tensor();
  offsets_kernel<<<blocks_for(n + 1), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      len.const_data_ptr<int64_t>(), cumsum.const_data_ptr<int64_t>(), n, total, max_len,
      longest.defined() ? longest.const_data_ptr<int64_t>() : nullptr,
      offsets.mutable_data_ptr<int32_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return offsets;
}

void check_cu_seqlens_on_device(const at::Tensor& cu, int64_t total, int64_t max_len) {
  const int64_t n_seq = cu.numel() - 1;
  check_cu_seqlens_kernel<<<blocks_for(n_seq + 1), kThreads, 0,
                            c10::cuda::getCurrentCUDAStream()>>>(cu.const_data_ptr<int32_t>(),
                                                                 n_seq, total, max_len);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
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
    const at::Tensor& lengths, std::optional<int64_t> total, std::optional<int64_t> max_seqlen,
    bool validate) {
  const char* op = "varlen_metadata";
  const c10::cuda::CUDAGuard guard(lengths.device());
  varlen::check_size_arg(total, op, "total");
  varlen::check_size_arg(max_seqlen, op, "max_seqlen");
  Extent extent;
  at::Tensor cu;
  if (validate || !total || !max_seqlen || !lengths.is_cuda()) {
    cu = varlen::host_cu_seqlens(lengths, op, &extent).to(lengths.device());
    varlen::check_size_matches(total, extent.total, op, "total", "the lengths add up to");
    varlen::check_size_matches(max_seqlen, extent.longest, op, "max_seqlen",
                               "the longest length is");
  } else {
    varlen::check_vector(lengths, at::kLong, op, "lengths");
    TORCH_CHECK_VALUE(lengths.numel() > 0 || (*total == 0 && *max_seqlen == 0), op,
                      ": no lengths, but total = ", *total, " and max_seqlen = ", *max_seqlen);
    extent = {*total, *max_seqlen};
    cu = device_offsets(lengths, extent.total, extent.longest, /*exact_max=*/true);
  }
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
                           const at::Scalar& value, bool validate) {
  const char* op = "pad_varlen";
  TORCH_CHECK_VALUE(x.is_cuda(), op, ": x is on ", x.device(), " but cu_seqlens on CUDA");
  const c10::cuda::CUDAGuard guard(x.device());
  const bool on_device = cu_seqlens.is_cuda() && !validate;
  if (on_device) {
    // T is x's row count and max_seqlen is given: nothing to read back
    varlen::check_vector(cu_seqlens, at::kInt, op, "cu_seqlens");
    TORCH_CHECK_VALUE(cu_seqlens.numel() >= 1, op, ": cu_seqlens must hold at least [0]");
    TORCH_CHECK_VALUE(x.dim() >= 1, op, ": x must have a token dimension, got a 0-d tensor");
    TORCH_CHECK_VALUE(max_seqlen >= 0, op, ": max_seqlen = ", max_seqlen, " is negative");
  } else {
    const Extent extent = varlen::check_cu_seqlens(cu_seqlens, op);
    varlen::check_pad_args(x, extent, max_seqlen, op);
  }
  const at::Tensor src = x.contiguous();
  const at::Tensor cu = cu_seqlens.to(x.device()).contiguous();
  if (on_device) check_cu_seqlens_on_device(cu, x.size(0), max_seqlen);
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

at::Tensor unpad_varlen_cuda(const at::Tensor& x, const at::Tensor& lengths,
                             std::optional<int64_t> total, bool validate) {
  const char* op = "unpad_varlen";
  TORCH_CHECK_VALUE(x.is_cuda(), op, ": x is on ", x.device(), " but lengths on CUDA");
  const c10::cuda::CUDAGuard guard(x.device());
  varlen::check_size_arg(total, op, "total");
  Extent extent;
  at::Tensor offsets;
  if (validate || !total || !lengths.is_cuda()) {
    offsets = varlen::host_cu_seqlens(lengths, op, &extent).to(x.device());
    varlen::check_unpad_args(x, lengths, extent, op);
    varlen::check_size_matches(total, extent.total, op, "total", "the lengths add up to");
  } else {
    varlen::check_vector(lengths, at::kLong, op, "lengths");
    TORCH_CHECK_VALUE(x.dim() >= 2, op, ": x must be (N, max_seqlen, ...), got shape ", x.sizes());
    TORCH_CHECK_VALUE(x.size(0) == lengths.numel(), op, ": x holds ", x.size(0),
                      " sequences but lengths has ", lengths.numel());
    TORCH_CHECK_VALUE(lengths.numel() > 0 || *total == 0, op, ": no lengths, but total = ",
                      *total);
    extent.total = *total;
    offsets = device_offsets(lengths.to(x.device()), extent.total, x.size(1), /*exact_max=*/false);
  }
  const at::Tensor src = x.contiguous();
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
                                           std::optional<at::ScalarType> dtype,
                                           std::optional<int64_t> given_total, bool validate) {
  const char* op = "block_diagonal_causal_mask";
  const c10::cuda::CUDAGuard guard(cu_seqlens.device());
  varlen::check_size_arg(given_total, op, "total");
  int64_t total = 0;
  const bool on_device = !validate && given_total.has_value();
  if (on_device) {
    varlen::check_vector(cu_seqlens, at::kInt, op, "cu_seqlens");
    TORCH_CHECK_VALUE(cu_seqlens.numel() >= 1, op, ": cu_seqlens must hold at least [0]");
    total = *given_total;
  } else {
    total = varlen::check_cu_seqlens(cu_seqlens, op).total;
    varlen::check_size_matches(given_total, total, op, "total", "cu_seqlens ends at");
  }
  const at::ScalarType type = varlen::mask_dtype(dtype);
  const at::Tensor cu = cu_seqlens.contiguous();
  // a sequence may span all T tokens: total bounds every length
  if (on_device) check_cu_seqlens_on_device(cu, total, total);
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
