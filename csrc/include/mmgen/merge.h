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

// Backward to the table: acc[i] = sum of grad[pos[j]][c] over j = 0..n-1 in that order, for the
// columns c = first + i * step (i < kTile, c < hidden). The sum starts from the first row (so a
// single row is copied exactly, -0.0 included) and adds in acc_t; the fixed order makes the
// result deterministic and identical on CPU and GPU. Needs n >= 1.
template <typename scalar_t, typename acc_t, int kTile>
MMGEN_HOST_DEVICE inline void sum_piece(acc_t* acc, const scalar_t* grad, int64_t grad_stride,
                                        const int64_t* pos, int64_t n, int64_t first,
                                        int64_t step, int64_t hidden) {
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
}

// dst[c] = acc[i] for the columns c = first + i * step, in type_t (a table row or a partial).
template <typename type_t, typename acc_t, int kTile>
MMGEN_HOST_DEVICE inline void store_tile(type_t* dst, const acc_t* acc, int64_t first,
                                         int64_t step, int64_t hidden) {
MMGEN_UNROLL
  for (int i = 0; i < kTile; ++i) {
    const int64_t c = first + i * step;
    if (c < hidden) dst[c] = static_cast<type_t>(acc[i]);
  }
}

// The weight gradient without one worker per token id. The text positions, stably sorted by
// token id (keys[i] = id of sorted position i; placeholders sort last with key >= vocab), are cut
// into chunks of kChunkRows at fixed indices of that order, one worker (CPU task, CUDA block) per
// chunk. A run of one id inside a chunk is a piece. A row whose positions lie in one chunk is
// written by that chunk's worker; a row spanning chunks has one piece per chunk, each summed into
// a partial (acc_t), and the worker of its first chunk adds the partials in chunk order. So a
// frequent id costs n / kChunkRows row sums in parallel plus one sum of n / kChunkRows partials,
// and the result depends on the positions only: the same bits on CPU and GPU, any thread count.
constexpr int64_t kChunkRows = 64;

// Each chunk has two partial slots (its first and its last piece; a chunk holding one piece of a
// longer run uses slot 0), so partials need chunks * 2 * hidden acc_t.
MMGEN_HOST_DEVICE inline int64_t chunks_of(int64_t total) {
  return (total + kChunkRows - 1) / kChunkRows;
}

// End of the run of keys[i] that starts at i, within [i, limit).
MMGEN_HOST_DEVICE inline int64_t run_end(const int64_t* keys, int64_t i, int64_t limit) {
  int64_t j = i + 1;
  while (j < limit && keys[j] == keys[i]) ++j;
  return j;
}

// First index in [0, total) whose key is >= v (keys are sorted).
MMGEN_HOST_DEVICE inline int64_t lower_bound(const int64_t* keys, int64_t total, int64_t v) {
  int64_t lo = 0, hi = total;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (keys[mid] < v) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// Where the sum of the piece [i, j) of chunk `chunk` goes: kWholeRow (the whole run of its id,
// written to the table row), a partial slot (0 or 1), or kSkip (placeholder positions).
constexpr int32_t kWholeRow = 2;
constexpr int32_t kSkip = -1;

MMGEN_HOST_DEVICE inline int32_t piece_target(const int64_t* keys, int64_t total, int64_t vocab,
                                              int64_t chunk, int64_t i, int64_t j) {
  if (keys[i] >= vocab) return kSkip;
  const int64_t begin = chunk * kChunkRows;
  const bool before = i == begin && i > 0 && keys[i - 1] == keys[i];
  const bool after = j < total && keys[j] == keys[i];
  if (!before && !after) return kWholeRow;
  return i == begin ? 0 : 1;
}

// A run spanning chunks, combined by the worker of the chunk where it starts: its id (-1: the
// chunk starts no such run), the slot of its first partial, and the last chunk it reaches.
struct Spanning {
  int64_t id;
  int32_t first_slot;
  int64_t last_chunk;
};

MMGEN_HOST_DEVICE inline Spanning spanning_run(const int64_t* keys, int64_t total, int64_t vocab,
                                               int64_t chunk) {
  const int64_t begin = chunk * kChunkRows;
  const int64_t end = begin + kChunkRows < total ? begin + kChunkRows : total;
  const int64_t v = keys[end - 1];  // only the chunk's last run can continue past its end
  if (end >= total || keys[end] != v || v >= vocab) return {-1, 0, 0};
  const int64_t start = lower_bound(keys, total, v);
  if (start < begin) return {-1, 0, 0};  // started in an earlier chunk: that one combines it
  const int64_t last = lower_bound(keys, total, v + 1) - 1;
  return {v, start == begin ? 0 : 1, last / kChunkRows};
}

// acc[i] = partial[first chunk][first_slot][c] + partial[chunk][0][c] for each later chunk, in
// chunk order, for the columns c = first + i * step.
template <typename acc_t, int kTile>
MMGEN_HOST_DEVICE inline void add_partials(acc_t* acc, const acc_t* partials, int64_t hidden,
                                           int64_t chunk, const Spanning& run, int64_t first,
                                           int64_t step) {
  const acc_t* p = partials + (chunk * 2 + run.first_slot) * hidden;
MMGEN_UNROLL
  for (int i = 0; i < kTile; ++i) {
    const int64_t c = first + i * step;
    acc[i] = c < hidden ? p[c] : acc_t(0);
  }
  for (int64_t k = chunk + 1; k <= run.last_chunk; ++k) {
    p = partials + (k * 2) * hidden;
MMGEN_UNROLL
    for (int i = 0; i < kTile; ++i) {
      const int64_t c = first + i * step;
      if (c < hidden) acc[i] += p[c];
    }
  }
}

}  // namespace merge
}  // namespace mmgen
