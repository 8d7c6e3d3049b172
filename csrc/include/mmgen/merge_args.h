// Host-side argument checks of the fused embedding merge, shared by the CPU and CUDA kernels.
// TORCH_CHECK_TYPE/VALUE/INDEX raise TypeError/ValueError/IndexError in Python, so a bad call made
// straight through torch.ops.mmgen gets the same clear message as one through mmgen.ops.
#pragma once

#include <ATen/ATen.h>

#include <sstream>
#include <string>
#include <vector>

#include "mmgen/merge.h"

namespace mmgen {
namespace merge {

// Tensors the kernels read (kept alive here), and their row pointers.
struct Inputs {
  at::Tensor ids;  // flat, contiguous int64
  at::Tensor weight;
  std::vector<at::Tensor> features;
  Sources sources;
  int64_t hidden;
};

// A 2-D tensor whose rows are contiguous, so each row is one memcpy; copies only when needed.
inline at::Tensor with_contiguous_rows(const at::Tensor& t) {
  return t.size(1) <= 1 || t.stride(1) == 1 ? t : t.contiguous();
}

// The table dtypes: the forward only copies bytes, but the backward sums rows in acc_t, so the
// kernels take exactly the types AT_DISPATCH_FLOATING_TYPES_AND2(Half, BFloat16) covers (fp64 for
// gradcheck), not every floating type (float8 would pass the forward and fail the backward).
inline bool is_table_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kBFloat16 || t == at::kHalf || t == at::kDouble;
}

// Position t of the flattened ids as the user indexes it: "17" or "(1, 5)".
inline std::string position_of(int64_t t, at::IntArrayRef shape) {
  if (shape.size() < 2) return std::to_string(t);
  return "(" + std::to_string(t / shape[1]) + ", " + std::to_string(t % shape[1]) + ")";
}

[[noreturn]] inline void fail_text_id(int64_t id, int64_t t, at::IntArrayRef shape,
                                      int64_t vocab) {
  TORCH_CHECK_INDEX(false, "packed_merge: input_ids holds ", id, " at position ",
                    position_of(t, shape), ", which is no placeholder id and lies outside the ",
                    "embedding table's rows [0, ", vocab, ")");
  __builtin_unreachable();
}

inline void check_counts(const int64_t* counts, const Sources& s) {
  for (int32_t k = 0; k < s.slots; ++k) {
    TORCH_CHECK_VALUE(counts[k] == s.feature_rows[k], "packed_merge: placeholder id ",
                      s.placeholder[k], " occurs at ", counts[k],
                      " positions of input_ids but features[", k, "] has ", s.feature_rows[k],
                      " rows");
  }
}

inline void check_ids(const at::Tensor& input_ids, const at::Device& device) {
  TORCH_CHECK_TYPE(input_ids.scalar_type() == at::kLong,
                   "packed_merge: input_ids must be int64, got ", input_ids.scalar_type());
  TORCH_CHECK_VALUE(input_ids.dim() == 1 || input_ids.dim() == 2,
                    "packed_merge: input_ids must be 1-D (T,) packed or 2-D (B, S) padded, got ",
                    input_ids.dim(), "-D of shape ", input_ids.sizes());
  TORCH_CHECK_VALUE(input_ids.device() == device, "packed_merge: input_ids is on ",
                    input_ids.device(), " but weight is on ", device);
}

inline Sources classifier(at::IntArrayRef placeholder_ids, int64_t vocab) {
  TORCH_CHECK_VALUE(static_cast<int64_t>(placeholder_ids.size()) <= kMaxSlots,
                    "packed_merge: at most ", kMaxSlots, " placeholder ids, got ",
                    placeholder_ids.size());
  Sources s{};
  s.vocab = vocab;
  s.slots = static_cast<int32_t>(placeholder_ids.size());
  for (int32_t k = 0; k < s.slots; ++k) {
    for (int32_t j = 0; j < k; ++j) {
      TORCH_CHECK_VALUE(placeholder_ids[j] != placeholder_ids[k],
                        "packed_merge: placeholder_ids must be distinct, got ", placeholder_ids[k],
                        " twice (at ", j, " and ", k, ")");
    }
    s.placeholder[k] = placeholder_ids[k];
  }
  return s;
}

inline Inputs prepare(const at::Tensor& input_ids, const at::Tensor& weight,
                      at::TensorList features, at::IntArrayRef placeholder_ids) {
  TORCH_CHECK_VALUE(weight.dim() == 2, "packed_merge: weight must be 2-D (V, H), got shape ",
                    weight.sizes());
  TORCH_CHECK_TYPE(is_table_dtype(weight.scalar_type()),
                   "packed_merge: weight must be fp32, fp16 or bf16, got ",
                   weight.scalar_type());
  check_ids(input_ids, weight.device());
  TORCH_CHECK_VALUE(features.size() == placeholder_ids.size(), "packed_merge: got ",
                    features.size(), " feature tensors for ", placeholder_ids.size(),
                    " placeholder ids (need one per id)");
  Inputs in;
  in.hidden = weight.size(1);
  in.sources = classifier(placeholder_ids, weight.size(0));
  in.ids = input_ids.contiguous().view(-1);
  in.weight = with_contiguous_rows(weight);
  const int64_t element = weight.element_size();
  in.sources.weight = static_cast<const char*>(in.weight.const_data_ptr());
  in.sources.weight_stride = in.weight.stride(0) * element;
  for (size_t k = 0; k < features.size(); ++k) {
    const at::Tensor& f = features[k];
    TORCH_CHECK_VALUE(f.dim() == 2, "packed_merge: features[", k, "] must be 2-D (N, H), got ",
                      f.sizes());
    TORCH_CHECK_VALUE(f.size(1) == in.hidden, "packed_merge: features[", k, "] has hidden size ",
                      f.size(1), " but weight has ", in.hidden);
    TORCH_CHECK_TYPE(f.scalar_type() == weight.scalar_type(), "packed_merge: features[", k,
                     "] is ", f.scalar_type(), " but weight is ", weight.scalar_type());
    TORCH_CHECK_VALUE(f.device() == weight.device(), "packed_merge: features[", k, "] is on ",
                      f.device(), " but weight is on ", weight.device());
    in.features.push_back(with_contiguous_rows(f));
    in.sources.features[k] = static_cast<const char*>(in.features[k].const_data_ptr());
    in.sources.feature_stride[k] = in.features[k].stride(0) * element;
    in.sources.feature_rows[k] = f.size(0);
  }
  return in;
}

inline void check_backward_args(const at::Tensor& grad_out, const at::Tensor& input_ids,
                                at::IntArrayRef feature_rows, at::IntArrayRef placeholder_ids,
                                size_t feature_flags) {
  check_ids(input_ids, grad_out.device());
  TORCH_CHECK_TYPE(is_table_dtype(grad_out.scalar_type()),
                   "packed_merge_backward: grad_out must be fp32, fp16 or bf16, got ",
                   grad_out.scalar_type());
  TORCH_CHECK_VALUE(grad_out.dim() == input_ids.dim() + 1 &&
                        grad_out.sizes().slice(0, input_ids.dim()) == input_ids.sizes(),
                    "packed_merge_backward: grad_out has shape ", grad_out.sizes(),
                    ", expected input_ids.shape + (H,) with input_ids.shape ", input_ids.sizes());
  TORCH_CHECK_VALUE(feature_rows.size() == placeholder_ids.size() &&
                        feature_flags == placeholder_ids.size(),
                    "packed_merge_backward: need one feature_rows and feature_grads entry per "
                    "placeholder id, got ", feature_rows.size(), " and ", feature_flags, " for ",
                    placeholder_ids.size(), " ids");
}

// The output's shape: input_ids.shape + (H,).
inline std::vector<int64_t> out_shape(const at::Tensor& input_ids, int64_t hidden) {
  std::vector<int64_t> shape(input_ids.sizes().begin(), input_ids.sizes().end());
  shape.push_back(hidden);
  return shape;
}

}  // namespace merge
}  // namespace mmgen
