// Host-side argument checks and output shapes of the variable-length ops, shared by the CPU and
// CUDA entry points.
// By default (validate=True) the ops read the (small, N+1) cu_seqlens / lengths on the host —
// free for CPU tensors, one host synchronisation for CUDA ones — and every value check runs here
// on that host copy, so both backends raise the same Python errors (TORCH_CHECK_VALUE ->
// ValueError, TORCH_CHECK_TYPE -> TypeError). The CUDA ops given validate=False and every
// output size as a host int (the sizes below) read nothing back: they check the same values
// with device-side asserts instead (csrc/cuda/varlen.cu).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

namespace mmgen {
namespace varlen {

struct Extent {
  int64_t total = 0;    // T: tokens in all sequences
  int64_t longest = 0;  // max_seqlen
};

inline void check_vector(const at::Tensor& t, at::ScalarType dtype, const char* op,
                         const char* name) {
  TORCH_CHECK_VALUE(t.dim() == 1, op, ": ", name, " must be 1-D, got shape ", t.sizes());
  TORCH_CHECK_TYPE(t.scalar_type() == dtype, op, ": ", name, " must be ", dtype, ", got ",
                   t.scalar_type());
}

// lengths (int64, any device) -> cu_seqlens (int32, on the host), with T and the longest length.
inline at::Tensor host_cu_seqlens(const at::Tensor& lengths, const char* op, Extent* extent) {
  check_vector(lengths, at::kLong, op, "lengths");
  const at::Tensor host = lengths.to(at::kCPU).contiguous();
  const int64_t n = host.numel();
  const int64_t* len = host.data_ptr<int64_t>();
  at::Tensor cu = at::empty({n + 1}, at::kInt);
  int32_t* out = cu.data_ptr<int32_t>();
  int64_t total = 0, longest = 0;
  out[0] = 0;
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK_VALUE(len[i] >= 0, op, ": lengths[", i, "] = ", len[i], " is negative");
    // checked before adding: total <= 2^31 - 1 here, so the difference cannot overflow
    TORCH_CHECK_VALUE(len[i] <= std::numeric_limits<int32_t>::max() - total, op,
                      ": the lengths add up to more than 2^31 - 1 tokens at lengths[", i,
                      "]; cu_seqlens is int32");
    total += len[i];
    longest = len[i] > longest ? len[i] : longest;
    out[i + 1] = static_cast<int32_t>(total);
  }
  *extent = {total, longest};
  return cu;
}

// Checks cu_seqlens (int32, any device): starts at 0, never decreases. Returns T and the longest.
inline Extent check_cu_seqlens(const at::Tensor& cu_seqlens, const char* op) {
  check_vector(cu_seqlens, at::kInt, op, "cu_seqlens");
  TORCH_CHECK_VALUE(cu_seqlens.numel() >= 1, op, ": cu_seqlens must hold at least [0]");
  const at::Tensor host = cu_seqlens.to(at::kCPU).contiguous();
  const int32_t* cu = host.data_ptr<int32_t>();
  TORCH_CHECK_VALUE(cu[0] == 0, op, ": cu_seqlens[0] must be 0, got ", cu[0]);
  Extent extent;
  for (int64_t i = 1; i < host.numel(); ++i) {
    const int64_t len = int64_t{cu[i]} - cu[i - 1];
    TORCH_CHECK_VALUE(len >= 0, op, ": cu_seqlens must not decrease, but cu_seqlens[", i,
                      "] = ", cu[i], " < cu_seqlens[", i - 1, "] = ", cu[i - 1]);
    extent.longest = len > extent.longest ? len : extent.longest;
  }
  extent.total = cu[host.numel() - 1];
  return extent;
}

// A host-given output size (unpad_varlen's / block_diagonal_causal_mask's total,
// varlen_metadata's total and max_seqlen): checked without reading any tensor data.
inline void check_size_arg(std::optional<int64_t> size, const char* op, const char* name) {
  if (!size) return;
  TORCH_CHECK_VALUE(*size >= 0, op, ": ", name, " = ", *size, " is negative");
  TORCH_CHECK_VALUE(*size <= std::numeric_limits<int32_t>::max(), op, ": ", name, " = ", *size,
                    " is more than 2^31 - 1 tokens; cu_seqlens is int32");
}

// A host-given size against the value the data gives (known on the host on the checked path).
inline void check_size_matches(std::optional<int64_t> size, int64_t actual, const char* op,
                               const char* name, const char* what) {
  TORCH_CHECK_VALUE(!size || *size == actual, op, ": ", name, " = ", size.value_or(0), " but ",
                    what, " ", actual);
}

inline void check_pad_args(const at::Tensor& x, const Extent& extent, int64_t max_seqlen,
                           const char* op) {
  TORCH_CHECK_VALUE(x.dim() >= 1, op, ": x must have a token dimension, got a 0-d tensor");
  TORCH_CHECK_VALUE(x.size(0) == extent.total, op, ": x has ", x.size(0),
                    " tokens but cu_seqlens ends at ", extent.total);
  TORCH_CHECK_VALUE(max_seqlen >= extent.longest, op, ": max_seqlen = ", max_seqlen,
                    " is shorter than the longest sequence (", extent.longest, ")");
}

inline void check_unpad_args(const at::Tensor& x, const at::Tensor& lengths,
                             const Extent& extent, const char* op) {
  TORCH_CHECK_VALUE(x.dim() >= 2, op, ": x must be (N, max_seqlen, ...), got shape ", x.sizes());
  TORCH_CHECK_VALUE(x.size(0) == lengths.numel(), op, ": x holds ", x.size(0),
                    " sequences but lengths has ", lengths.numel());
  TORCH_CHECK_VALUE(extent.longest <= x.size(1), op, ": a length of ", extent.longest,
                    " does not fit x's max_seqlen of ", x.size(1));
}

// Elements per token row: the product of the dims from first_trailing_dim on (1 if none).
inline int64_t row_numel(const at::Tensor& x, int64_t first_trailing_dim) {
  int64_t numel = 1;
  for (int64_t d = first_trailing_dim; d < x.dim(); ++d) numel *= x.size(d);
  return numel;
}

// (T, ...) -> (N, max_seqlen, ...) and (N, S, ...) -> (T, ...).
inline std::vector<int64_t> padded_shape(const at::Tensor& x, int64_t n_seq, int64_t max_seqlen) {
  std::vector<int64_t> shape = {n_seq, max_seqlen};
  shape.insert(shape.end(), x.sizes().begin() + 1, x.sizes().end());
  return shape;
}

inline std::vector<int64_t> unpadded_shape(const at::Tensor& x, int64_t total) {
  std::vector<int64_t> shape = {total};
  shape.insert(shape.end(), x.sizes().begin() + 2, x.sizes().end());
  return shape;
}

inline at::ScalarType mask_dtype(std::optional<at::ScalarType> dtype) {
  const at::ScalarType type = dtype.value_or(at::kFloat);
  TORCH_CHECK_TYPE(at::isFloatingType(type), "block_diagonal_causal_mask: dtype must be a ",
                   "floating type (the mask is added to attention scores), got ", type);
  return type;
}

}  // namespace varlen
}  // namespace mmgen
