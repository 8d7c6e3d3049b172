// Per-row logic of the fused embedding merge, written once for the CPU loop (csrc/cpu/merge.cpp)
// and the CUDA kernels (csrc/cuda/merge.cu), so CPU tests exercise the indexing the GPU runs.
//
//   out[t] = features[k][r]     if input_ids[t] == placeholder[k], r = earlier positions with it
//   out[t] = weight[input_ids[t]] otherwise
#pragma once

#include <cstdint>
#include <cstring>

#include "mmgen/common.h"

namespace mmgen {
namespace merge {

// Placeholder ids travel by value inside the kernel arguments, so a CUDA launch needs no
// host-to-device copy (a copy from pageable memory would synchronise the host).
constexpr int kMaxSlots = 32;

// Where output rows come from. Byte pointers and byte strides: the forward is a pure row copy,
// so it is the same code for every dtype.
struct Sources {
  const char* weight;
  int64_t weight_stride;  // bytes between rows
  int64_t vocab;
  int32_t slots;  // number of placeholder ids (K)
  int64_t placeholder[kMaxSlots];
  const char* features[kMaxSlots];
  int64_t feature_stride[kMaxSlots];
  int64_t feature_rows[kMaxSlots];
};

// Where the backward writes each placeholder's gradient rows (nullptr: not wanted).
struct FeatureGrads {
  char* rows[kMaxSlots];
  int64_t stride[kMaxSlots];  // bytes between rows
};

// The placeholder slot of `id`, or -1 for a text token. A placeholder id wins even when it also
// lies inside the vocabulary: it is never looked up in the table.
MMGEN_HOST_DEVICE inline int32_t slot_of(int64_t id, const Sources& s) {
  for (int32_t k = 0; k < s.slots; ++k) {
    if (s.placeholder[k] == id) return k;
  }
  return -1;
}

MMGEN_HOST_DEVICE inline bool in_vocab(int64_t id, const Sources& s) {
  return id >= 0 && id < s.vocab;
}

// The row that out[t] copies: row `rank` of the slot's features, or the table row `id` for text.
// nullptr when that row does not exist (bad text id, or more placeholders than feature rows).
MMGEN_HOST_DEVICE inline const char* source_row(const Sources& s, int32_t slot, int64_t id,
                                                int64_t rank) {
  if (slot < 0) return in_vocab(id, s) ? s.weight + id * s.weight_stride : nullptr;
  if (rank < 0 || rank >= s.feature_rows[slot]) return nullptr;
  return s.features[slot] + rank * s.feature_stride[slot];
}

// Copies `n` units of one row. A CUDA block passes its thread index and size as lane/lanes and
// picks the widest unit the alignment allows; the host copies the whole row at memcpy speed.
template <typename unit_t>
MMGEN_HOST_DEVICE inline void copy_row(char* dst, const char* src, int64_t n, int lane,
                                       int lanes) {
#if defined(__CUDA_ARCH__)
  auto* d = reinterpret_cast<unit_t*>(dst);
  const auto* s = reinterpret_cast<const unit_t*>(src);
  for (int64_t i = lane; i < n; i += lanes) d[i] = s[i];
#else
  (void)lane;
  (void)lanes;
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(unit_t));
#endif
}

// Backward to the table: dst[c] = sum of grad[pos[j]][c] over j = 0..n-1 in that order, for the
// columns c = first + i * step (i < kTile, c < hidden). The sum starts from the first row (so a
// single row is copied exactly, -0.0 included) and adds in acc_t; the fixed order makes the
// result deterministic and identical on CPU and GPU. Needs n >= 1.
template <typename scalar_t, typename acc_t, int kTile>
MMGEN_HOST_DEVICE inline void sum_rows(scalar_t* dst, const scalar_t* grad, int64_t grad_stride,
                                       const int64_t* pos, int64_t n, int64_t first, int64_t step,
                                       int64_t hidden) {
  acc_t acc[kTile];
  const scalar_t* row = grad + pos[0] * grad_stride;
MMGEN_UNROLL
  for (int i = 0; i < kTile; ++i) {
    const int64_t c = first + i * step;
    acc[i] = c < hidden ? static_cast<acc_t>(row[c]) : acc_t(0);
  }
  for (int64_t j = 1; j < n; ++j) {
    row = grad + pos[j] * grad_stride;
MMGEN_UNROLL
    for (int i = 0; i < kTile; ++i) {
      const int64_t c = first + i * step;
      if (c < hidden) acc[i] += static_cast<acc_t>(row[c]);
    }
  }
MMGEN_UNROLL
  for (int i = 0; i < kTile; ++i) {
    const int64_t c = first + i * step;
    if (c < hidden) dst[c] = static_cast<scalar_t>(acc[i]);
  }
}

}  // namespace merge
}  // namespace mmgen
