// Per-token logic of the variable-length layout ops, written once for the CPU loops
// (csrc/cpu/varlen.cpp) and the CUDA kernels (csrc/cuda/varlen.cu), so the CPU tests exercise
// exactly the indexing the GPU runs.
//
// Layout: N sequences laid end to end in T tokens; cu_seqlens[0..N] (int32) holds their
// boundaries, cu_seqlens[0] = 0, cu_seqlens[N] = T. Sequence n owns tokens [cu[n], cu[n+1]).
#pragma once

#include <cstdint>

#if __has_include("mmgen/common.h")
#include "mmgen/common.h"
#endif
// Fallback until common.h (from the foundation issue) is everywhere; same definition.
#ifndef MMGEN_HOST_DEVICE
#if defined(__CUDACC__)
#define MMGEN_HOST_DEVICE __host__ __device__
#else
#define MMGEN_HOST_DEVICE
#endif
#endif

namespace mmgen {
namespace varlen {

// The sequence holding token t: the last n with cu[n] <= t. Binary search so that any thread
// (or CPU chunk) can start anywhere; empty sequences (cu[n] == cu[n+1]) own no token and are
// skipped because the search lands on the last of equal boundaries.
MMGEN_HOST_DEVICE inline int64_t sequence_of(const int32_t* cu, int64_t n_seq, int64_t t) {
  int64_t lo = 0, hi = n_seq;  // invariant: cu[lo] <= t < cu[hi]
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (cu[mid] <= t) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// position_ids and seq_idx for tokens [begin, end): one search, then a forward walk. CPU
// chunks and CUDA threads both call this with their own token range.
MMGEN_HOST_DEVICE inline void fill_metadata(const int32_t* cu, int64_t n_seq, int64_t begin,
                                            int64_t end, int64_t* position_ids, int32_t* seq_idx) {
  if (begin >= end) return;
  int64_t n = sequence_of(cu, n_seq, begin);
  for (int64_t t = begin; t < end; ++t) {
    while (t >= cu[n + 1]) ++n;  // crossed into the next (non-empty) sequence
    position_ids[t] = t - cu[n];
    seq_idx[t] = static_cast<int32_t>(n);
  }
}

// pad_varlen: the packed row that fills padded row (n, s), or -1 where (n, s) is padding.
MMGEN_HOST_DEVICE inline int64_t pad_source_row(const int32_t* cu, int64_t n, int64_t s) {
  const int64_t start = cu[n];
  return s < cu[n + 1] - start ? start + s : -1;
}

// unpad_varlen: the padded row (flattened n * max_seqlen + s) that fills packed token t,
// where offsets holds the packed start of every sequence (the cumulative lengths).
MMGEN_HOST_DEVICE inline int64_t unpad_source_row(const int32_t* offsets, int64_t n_seq,
                                                  int64_t max_seqlen, int64_t t) {
  const int64_t n = sequence_of(offsets, n_seq, t);
  return n * max_seqlen + (t - offsets[n]);
}

// Block-diagonal causal mask, row q: keys [first_key, q] are visible (same sequence, not in
// the future); everything else gets the dtype's most negative value.
MMGEN_HOST_DEVICE inline int64_t mask_first_key(const int32_t* cu, int64_t n_seq, int64_t q) {
  return cu[sequence_of(cu, n_seq, q)];
}

MMGEN_HOST_DEVICE inline bool mask_visible(int64_t first_key, int64_t q, int64_t k) {
  return first_key <= k && k <= q;
}

}  // namespace varlen
}  // namespace mmgen
