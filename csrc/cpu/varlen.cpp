// CPU kernels of the variable-length layout ops. The per-token index logic lives in
// mmgen/varlen.h and is the same code the CUDA kernels run; this file only loops over it.
// validate is ignored here: reading the lengths / cu_seqlens costs no sync on the CPU, so the
// checks always run, and host-given sizes are always compared with the data.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <tuple>

#include "mmgen/varlen.h"
#include "mmgen/varlen_host.h"

namespace mmgen {
namespace {

using varlen::Extent;

// Tokens (or rows) per parallel chunk: big enough that scheduling costs nothing next to the
// copies, small enough that both cores get work on short packs.
constexpr int64_t kGrain = 2048;

std::tuple<at::Tensor, at::Tensor, at::Tensor, c10::SymInt> varlen_metadata_cpu(
    const at::Tensor& lengths, std::optional<int64_t> total, std::optional<int64_t> max_seqlen,
    bool /*validate*/) {
  const char* op = "varlen_metadata";
  varlen::check_size_arg(total, op, "total");
  varlen::check_size_arg(max_seqlen, op, "max_seqlen");
  Extent extent;
  at::Tensor cu = varlen::host_cu_seqlens(lengths, op, &extent);
  varlen::check_size_matches(total, extent.total, op, "total", "the lengths add up to");
  varlen::check_size_matches(max_seqlen, extent.longest, op, "max_seqlen",
                             "the longest length is");
  at::Tensor position_ids = at::empty({extent.total}, at::kLong);
  at::Tensor seq_idx = at::empty({extent.total}, at::kInt);
  const int32_t* cu_ptr = cu.data_ptr<int32_t>();
  int64_t* pos_ptr = position_ids.data_ptr<int64_t>();
  int32_t* seq_ptr = seq_idx.data_ptr<int32_t>();
  const int64_t n_seq = lengths.numel();
  at::parallel_for(0, extent.total, kGrain, [&](int64_t begin, int64_t end) {
    varlen::fill_metadata(cu_ptr, n_seq, begin, end, pos_ptr, seq_ptr);
  });
  return {cu, position_ids, seq_idx, c10::SymInt(extent.longest)};
}

template <typename T>
void pad_rows(const T* in, T* out, const int32_t* cu, int64_t n_rows, int64_t max_seqlen,
              int64_t width, T fill) {
  at::parallel_for(0, n_rows, kGrain / 8, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t from = varlen::pad_source_row(cu, r / max_seqlen, r % max_seqlen);
      if (from < 0) {
        std::fill_n(out + r * width, width, fill);
      } else {
        std::copy_n(in + from * width, width, out + r * width);
      }
    }
  });
}

template <typename T>
void unpad_rows(const T* in, T* out, const int32_t* offsets, int64_t n_seq, int64_t max_seqlen,
                int64_t total, int64_t width) {
  at::parallel_for(0, total, kGrain / 8, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t from = varlen::unpad_source_row(offsets, n_seq, max_seqlen, t);
      std::copy_n(in + from * width, width, out + t * width);
    }
  });
}

at::Tensor pad_varlen_cpu(const at::Tensor& x, const at::Tensor& cu_seqlens, int64_t max_seqlen,
                          const at::Scalar& value, bool /*validate*/) {
  const Extent extent = varlen::check_cu_seqlens(cu_seqlens, "pad_varlen");
  varlen::check_pad_args(x, extent, max_seqlen, "pad_varlen");
  const at::Tensor src = x.contiguous();
  const at::Tensor cu = cu_seqlens.contiguous();
  const int64_t n_seq = cu.numel() - 1;
  at::Tensor out = at::empty(varlen::padded_shape(x, n_seq, max_seqlen), x.options());
  const int64_t width = varlen::row_numel(x, 1);
  AT_DISPATCH_ALL_TYPES_AND3(at::kHalf, at::kBFloat16, at::kBool, x.scalar_type(),
                             "pad_varlen", [&] {
    pad_rows(src.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), cu.data_ptr<int32_t>(),
             n_seq * max_seqlen, max_seqlen, width, value.to<scalar_t>());
  });
  return out;
}

at::Tensor unpad_varlen_cpu(const at::Tensor& x, const at::Tensor& lengths,
                            std::optional<int64_t> total, bool /*validate*/) {
  const char* op = "unpad_varlen";
  varlen::check_size_arg(total, op, "total");
  Extent extent;
  const at::Tensor offsets = varlen::host_cu_seqlens(lengths, op, &extent);
  varlen::check_unpad_args(x, lengths, extent, op);
  varlen::check_size_matches(total, extent.total, op, "total", "the lengths add up to");
  const at::Tensor src = x.contiguous();
  at::Tensor out = at::empty(varlen::unpadded_shape(x, extent.total), x.options());
  const int64_t width = varlen::row_numel(x, 2);
  AT_DISPATCH_ALL_TYPES_AND3(at::kHalf, at::kBFloat16, at::kBool, x.scalar_type(),
                             "unpad_varlen", [&] {
    unpad_rows(src.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), offsets.data_ptr<int32_t>(),
               lengths.numel(), x.size(1), extent.total, width);
  });
  return out;
}

at::Tensor block_diagonal_causal_mask_cpu(const at::Tensor& cu_seqlens,
                                          std::optional<at::ScalarType> dtype,
                                          std::optional<int64_t> given_total, bool /*validate*/) {
  const char* op = "block_diagonal_causal_mask";
  varlen::check_size_arg(given_total, op, "total");
  const Extent extent = varlen::check_cu_seqlens(cu_seqlens, op);
  varlen::check_size_matches(given_total, extent.total, op, "total", "cu_seqlens ends at");
  const at::ScalarType type = varlen::mask_dtype(dtype);
  const at::Tensor cu = cu_seqlens.contiguous();
  const int64_t n_seq = cu.numel() - 1, total = extent.total;
  at::Tensor out = at::empty({1, 1, total, total}, cu_seqlens.options().dtype(type));
  const int32_t* cu_ptr = cu.data_ptr<int32_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, type,
                                  "block_diagonal_causal_mask", [&] {
    const scalar_t hidden = std::numeric_limits<scalar_t>::lowest();
    const scalar_t visible = scalar_t(0);
    scalar_t* dst = out.data_ptr<scalar_t>();
    at::parallel_for(0, total, 16, [&](int64_t begin, int64_t end) {
      for (int64_t q = begin; q < end; ++q) {
        const int64_t first = varlen::mask_first_key(cu_ptr, n_seq, q);
        scalar_t* row = dst + q * total;
        for (int64_t k = 0; k < total; ++k) {
          row[k] = varlen::mask_visible(first, q, k) ? visible : hidden;
        }
      }
    });
  });
  return out;
}

}  // namespace
}  // namespace mmgen

TORCH_LIBRARY_IMPL(mmgen, CPU, m) {
  m.impl("varlen_metadata", &mmgen::varlen_metadata_cpu);
  m.impl("pad_varlen", &mmgen::pad_varlen_cpu);
  m.impl("unpad_varlen", &mmgen::unpad_varlen_cpu);
  m.impl("block_diagonal_causal_mask", &mmgen::block_diagonal_causal_mask_cpu);
}
