// CUDA kernels of the fused embedding merge (schemas in csrc/ops.cpp, row logic in merge.h, the
// same code the CPU kernels run).
//
// Forward: classify every position (its slot, its rank among its block's positions of that slot,
// and each block's count per slot: no T x K buffer), a cumsum over the (blocks x K) counts gives
// each block's offsets, then one block copies each output row with the widest aligned vector
// loads. The only host synchronisation is the validate=True check (placeholder counts and
// the first bad text id, copied to the host together); validate=False is sync-free and bad input
// trips a device-side assert instead.
// Backward: the table's gradient is deterministic without atomics: a stable sort of the text
// positions by token id, cut into fixed chunks (merge.h: kChunkRows), one block per chunk and
// column span; a row spanning chunks is summed as partials, added in chunk order by a second
// kernel. A frequent token id so spreads over many blocks instead of serializing on one.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <tuple>
#include <vector>

#include "mmgen/merge.h"
#include "mmgen/merge_args.h"

namespace mmgen {
namespace merge {
namespace {

constexpr int kMaxThreads = 256;
constexpr int kSumTile = 4;  // columns per thread in the table's gradient

int blocks_for(int64_t n) { return static_cast<int>((n + kMaxThreads - 1) / kMaxThreads); }

static_assert(kMaxThreads % 32 == 0 && kMaxSlots <= kMaxThreads, "classify_kernel's layout");
constexpr int kWarps = kMaxThreads / 32;

// slot[t], and for a placeholder position its rank among the positions of its slot in this block
// (local[t]); block_counts[block][slot] counts them. Launched with kMaxThreads threads a block. A
// text id outside the table is reported (first_bad, validate) or asserted on (first_bad ==
// nullptr).
__global__ void classify_kernel(const int64_t* ids, int64_t total, Sources s, int32_t* slot,
                                int32_t* local, int64_t* block_counts,
                                unsigned long long* first_bad) {
  __shared__ int32_t warp_counts[kWarps][kMaxSlots];
  for (int i = threadIdx.x; i < kWarps * kMaxSlots; i += blockDim.x) {
    warp_counts[i / kMaxSlots][i % kMaxSlots] = 0;
  }
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  int32_t k = -2;  // past the end: in no slot, but every lane takes part in the warp vote
  if (t < total) {
    const int64_t id = ids[t];
    k = slot_of(id, s);
    slot[t] = k;
    if (k < 0 && !in_vocab(id, s)) {
      if (first_bad != nullptr) {
        atomicMin(first_bad, static_cast<unsigned long long>(t));
      } else {
        CUDA_KERNEL_ASSERT(false && "packed_merge: a text id lies outside the embedding table");
      }
    }
  }
  // the lanes of this warp in the same slot, and how many of them come before this lane
  const unsigned same = __match_any_sync(0xffffffffu, k);
  const int32_t before = __popc(same & ((1u << lane) - 1u));
  __syncthreads();  // the zeroed counts are visible
  if (k >= 0 && before == 0) warp_counts[warp][k] = __popc(same);
  __syncthreads();
  if (k >= 0) {
    int32_t rank = before;
    for (int w = 0; w < warp; ++w) rank += warp_counts[w][k];
    local[t] = rank;
  }
  if (static_cast<int32_t>(threadIdx.x) < s.slots) {
    int64_t n = 0;
    for (int w = 0; w < kWarps; ++w) n += warp_counts[w][threadIdx.x];
    block_counts[blockIdx.x * static_cast<int64_t>(s.slots) + threadIdx.x] = n;
  }
}

// validate=False: each placeholder's position count against its feature rows, on the device, so
// the forward stays sync-free. Without it, fewer positions than rows would pass silently and the
// backward would hand back never-written gradient rows for the unused features.
__global__ void check_counts_kernel(const int64_t* counts, Sources s) {
  const int32_t k = threadIdx.x;
  if (k < s.slots) {
    CUDA_KERNEL_ASSERT(counts[k] == s.feature_rows[k] &&
                       "packed_merge: a placeholder's position count differs from its feature rows");
  }
}

// rank of position t among the positions of its slot: its rank in its block plus the counts of
// the earlier blocks (cum: the inclusive cumsum of the block counts); a text position's id
__device__ inline int64_t rank_of(const int32_t* local, const int64_t* cum, int64_t t, int32_t k,
                                  int32_t slots, int64_t id) {
  if (k < 0) return id;
  const int64_t block = t / kMaxThreads;
  return local[t] + (block > 0 ? cum[(block - 1) * slots + k] : 0);
}

template <typename unit_t>
__global__ void merge_rows_kernel(const int64_t* ids, const int32_t* slot, const int32_t* local,
                                  const int64_t* cum, Sources s, char* out, int64_t units) {
  const int64_t t = blockIdx.x;
  const int32_t k = slot[t];
  const char* src = source_row(s, k, ids[t], rank_of(local, cum, t, k, s.slots, ids[t]));
  CUDA_KERNEL_ASSERT(src != nullptr && "packed_merge: more placeholder positions than rows");
  copy_row<unit_t>(out + t * units * sizeof(unit_t), src, units, threadIdx.x, blockDim.x);
}

template <typename unit_t>
__global__ void gather_grads_kernel(const int32_t* slot, const int32_t* local, const int64_t* cum,
                                    Sources s, FeatureGrads dst, const char* grad,
                                    int64_t grad_stride, int64_t units) {
  const int64_t t = blockIdx.x;
  const int32_t k = slot[t];
  if (k < 0 || dst.rows[k] == nullptr) return;
  const int64_t r = rank_of(local, cum, t, k, s.slots, 0);
  CUDA_KERNEL_ASSERT(r < s.feature_rows[k] && "packed_merge_backward: rows/positions mismatch");
  copy_row<unit_t>(dst.rows[k] + r * dst.stride[k], grad + t * grad_stride, units, threadIdx.x,
                   blockDim.x);
}

// Pass 1 of the table's gradient: block (chunk, column span) sums the pieces of its chunk of the
// stably sorted keys (placeholders sort last, key = V): whole rows into the table, pieces of rows
// spanning chunks into partials. Each thread owns kSumTile columns, blockDim.x apart.
template <typename scalar_t, typename acc_t>
__global__ void table_grad_kernel(const int64_t* keys, const int64_t* order, int64_t total,
                                  int64_t vocab, const scalar_t* grad, int64_t grad_stride,
                                  scalar_t* table, acc_t* partials, int64_t hidden) {
  const int64_t chunk = blockIdx.x;
  const int64_t step = blockDim.x;
  const int64_t first = blockIdx.y * step * kSumTile + threadIdx.x;
  const int64_t begin = chunk * kChunkRows;
  const int64_t end = begin + kChunkRows < total ? begin + kChunkRows : total;
  acc_t acc[kSumTile];
  for (int64_t i = begin, j; i < end; i = j) {
    j = run_end(keys, i, end);
    const int32_t target = piece_target(keys, total, vocab, chunk, i, j);
    if (target == kSkip) return;  // the placeholders, sorted last
    sum_piece<scalar_t, acc_t, kSumTile>(acc, grad, grad_stride, order + i, j - i, first, step,
                                         hidden);
    if (target == kWholeRow) {
      store_tile<scalar_t, acc_t, kSumTile>(table + keys[i] * hidden, acc, first, step, hidden);
    } else {
      store_tile<acc_t, acc_t, kSumTile>(partials + (chunk * 2 + target) * hidden, acc, first,
                                         step, hidden);
    }
  }
}

// Pass 2: the block of the chunk where a spanning row starts adds its partials in chunk order.
template <typename scalar_t, typename acc_t>
__global__ void combine_partials_kernel(const int64_t* keys, int64_t total, int64_t vocab,
                                        const acc_t* partials, scalar_t* table, int64_t hidden) {
  const Spanning run = spanning_run(keys, total, vocab, blockIdx.x);
  if (run.id < 0) return;
  const int64_t step = blockDim.x;
  const int64_t first = blockIdx.y * step * kSumTile + threadIdx.x;
  acc_t acc[kSumTile];
  add_partials<acc_t, kSumTile>(acc, partials, hidden, blockIdx.x, run, first, step);
  store_tile<scalar_t, acc_t, kSumTile>(table + run.id * hidden, acc, first, step, hidden);
}

// The widest copy unit (16, 8, 4, 2 or 1 bytes) dividing the row size and every row address.
int unit_bytes(int64_t row_bytes, const std::vector<int64_t>& addresses) {
  for (int unit : {16, 8, 4, 2}) {
    bool ok = row_bytes % unit == 0;
    for (int64_t a : addresses) ok = ok && a % unit == 0;
    if (ok) return unit;
  }
  return 1;
}

int threads_for(int64_t units) {
  const int64_t warps = std::max<int64_t>(32, (units + 31) / 32 * 32);
  return static_cast<int>(std::min<int64_t>(kMaxThreads, warps));
}

// Launches kernel<unit_t> with the unit chosen at run time.
template <template <typename> class Launch, typename... Args>
void with_unit(int unit, Args&&... args) {
  switch (unit) {
    case 16: Launch<uint4>::run(args...); break;
    case 8: Launch<uint2>::run(args...); break;
    case 4: Launch<uint32_t>::run(args...); break;
    case 2: Launch<uint16_t>::run(args...); break;
    default: Launch<uint8_t>::run(args...);
  }
}

struct Classified {
  at::Tensor slot;   // int32 (T,)
  at::Tensor local;  // int32 (T,): a placeholder position's rank within its block
  at::Tensor cum;    // int64 (blocks, K): running count of each slot, block by block
};

Classified classify(const at::Tensor& ids, const Sources& s, unsigned long long* first_bad,
                    cudaStream_t stream) {
  const int64_t total = ids.numel();
  const int64_t blocks = blocks_for(total);
  Classified c{at::empty({total}, ids.options().dtype(at::kInt)),
               at::empty({total}, ids.options().dtype(at::kInt)),
               at::empty({blocks, s.slots}, ids.options())};
  if (total > 0) {
    classify_kernel<<<static_cast<unsigned>(blocks), kMaxThreads, 0, stream>>>(
        ids.const_data_ptr<int64_t>(), total, s, c.slot.data_ptr<int32_t>(),
        c.local.data_ptr<int32_t>(), c.cum.data_ptr<int64_t>(), first_bad);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (s.slots > 0) c.cum = c.cum.cumsum(0);
  }
  return c;
}

template <typename unit_t>
struct LaunchMerge {
  static void run(const at::Tensor& ids, const Classified& c, const Sources& s, at::Tensor& out,
                  int64_t row_bytes, cudaStream_t stream) {
    const int64_t units = row_bytes / static_cast<int64_t>(sizeof(unit_t));
    const auto blocks = static_cast<unsigned>(ids.numel());  // one block per output row
    merge_rows_kernel<unit_t><<<blocks, threads_for(units), 0, stream>>>(
        ids.const_data_ptr<int64_t>(), c.slot.const_data_ptr<int32_t>(),
        c.local.const_data_ptr<int32_t>(), c.cum.const_data_ptr<int64_t>(), s,
        static_cast<char*>(out.data_ptr()), units);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

template <typename unit_t>
struct LaunchGather {
  static void run(const Classified& c, const Sources& s, const FeatureGrads& dst,
                  const at::Tensor& grad, int64_t row_bytes, cudaStream_t stream) {
    const int64_t units = row_bytes / static_cast<int64_t>(sizeof(unit_t));
    const auto blocks = static_cast<unsigned>(grad.size(0));  // one block per position
    gather_grads_kernel<unit_t><<<blocks, threads_for(units), 0, stream>>>(
        c.slot.const_data_ptr<int32_t>(), c.local.const_data_ptr<int32_t>(),
        c.cum.const_data_ptr<int64_t>(), s, dst,
        static_cast<const char*>(grad.const_data_ptr()), grad.stride(0) * grad.element_size(),
        units);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

at::Tensor packed_merge_cuda(const at::Tensor& input_ids, const at::Tensor& weight,
                             at::TensorList features, at::IntArrayRef placeholder_ids,
                             bool validate) {
  Inputs in = prepare(input_ids, weight, features, placeholder_ids);
  const c10::cuda::CUDAGuard guard(weight.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t total = in.ids.numel();
  at::Tensor bad;
  if (validate) bad = at::full({1}, total, in.ids.options());
  auto* first_bad = validate ? reinterpret_cast<unsigned long long*>(bad.data_ptr<int64_t>())
                             : nullptr;
  const Classified c = classify(in.ids, in.sources, first_bad, stream);
  if (total == 0) {
    // no positions: every count is 0, known on the host without a sync
    const std::vector<int64_t> zeros(in.sources.slots, 0);
    check_counts(zeros.data(), in.sources);
  } else if (validate) {
    // the one host synchronisation: slot counts and the first bad position, in one copy
    const at::Tensor found = at::cat({c.cum[c.cum.size(0) - 1], bad}).cpu();
    const int64_t* host = found.const_data_ptr<int64_t>();
    const int64_t t = host[in.sources.slots];
    if (t < total) fail_text_id(in.ids[t].item<int64_t>(), t, input_ids.sizes(), in.sources.vocab);
    check_counts(host, in.sources);
  } else if (in.sources.slots > 0) {
    check_counts_kernel<<<1, kMaxSlots, 0, stream>>>(
        c.cum[c.cum.size(0) - 1].const_data_ptr<int64_t>(), in.sources);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  // every row is written below, so no zero fill
  at::Tensor out = at::empty(out_shape(input_ids, in.hidden), weight.options());
  const int64_t row_bytes = in.hidden * weight.element_size();
  if (total == 0 || row_bytes == 0) return out;
  std::vector<int64_t> addresses{reinterpret_cast<int64_t>(out.data_ptr()),
                                 reinterpret_cast<int64_t>(in.sources.weight),
                                 in.sources.weight_stride};
  for (int32_t k = 0; k < in.sources.slots; ++k) {
    addresses.push_back(reinterpret_cast<int64_t>(in.sources.features[k]));
    addresses.push_back(in.sources.feature_stride[k]);
  }
  with_unit<LaunchMerge>(unit_bytes(row_bytes, addresses), in.ids, c, in.sources, out, row_bytes,
                         stream);
  return out;
}

std::tuple<at::Tensor, std::vector<at::Tensor>> packed_merge_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& input_ids, int64_t vocab_size,
    at::IntArrayRef feature_rows, at::IntArrayRef placeholder_ids, bool weight_grad,
    c10::List<bool> feature_grads) {
  check_backward_args(grad_out, input_ids, feature_rows, placeholder_ids, feature_grads.size());
  const c10::cuda::CUDAGuard guard(grad_out.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  Sources s = classifier(placeholder_ids, vocab_size);
  for (int32_t k = 0; k < s.slots; ++k) s.feature_rows[k] = feature_rows[k];
  const at::Tensor ids = input_ids.contiguous().view(-1);
  const int64_t hidden = grad_out.size(-1);
  const at::Tensor grad = with_contiguous_rows(grad_out.reshape({ids.numel(), hidden}));
  const Classified c = classify(ids, s, nullptr, stream);  // the forward checked the ids

  std::vector<at::Tensor> grads(s.slots);
  FeatureGrads dst{};
  const int64_t element = grad.element_size();
  const int64_t row_bytes = hidden * element;
  std::vector<int64_t> addresses{reinterpret_cast<int64_t>(grad.const_data_ptr()),
                                 grad.stride(0) * element};
  for (int32_t k = 0; k < s.slots; ++k) {
    // unwanted gradients come back with 0 rows; every wanted row is written by the gather
    grads[k] = at::empty({feature_grads.get(k) ? feature_rows[k] : 0, hidden}, grad.options());
    dst.rows[k] = feature_grads.get(k) ? static_cast<char*>(grads[k].data_ptr()) : nullptr;
    dst.stride[k] = row_bytes;
    addresses.push_back(reinterpret_cast<int64_t>(grads[k].data_ptr()));
  }
  if (ids.numel() > 0 && row_bytes > 0) {
    with_unit<LaunchGather>(unit_bytes(row_bytes, addresses), c, s, dst, grad, row_bytes, stream);
  }

  at::Tensor table = at::zeros({weight_grad ? vocab_size : 0, hidden}, grad.options());
  if (weight_grad && ids.numel() > 0 && hidden > 0) {
    const at::Tensor keys = at::where(c.slot.ge(0), at::full_like(ids, vocab_size), ids);
    const auto sorted_keys = keys.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false);
    const at::Tensor& sorted = std::get<0>(sorted_keys);
    const at::Tensor& order = std::get<1>(sorted_keys);
    const int64_t total = ids.numel();
    const int64_t chunks = chunks_of(total);
    const int threads = threads_for((hidden + kSumTile - 1) / kSumTile);
    const dim3 grid(static_cast<unsigned>(chunks),
                    static_cast<unsigned>((hidden + threads * kSumTile - 1) / (threads * kSumTile)));
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(),
                                    "packed_merge_backward_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      // only the slots of spanning rows are ever written and read, so no zero fill
      at::Tensor partials = at::empty({chunks * 2 * hidden},
                                      grad.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
      table_grad_kernel<scalar_t, acc_t><<<grid, threads, 0, stream>>>(
          sorted.const_data_ptr<int64_t>(), order.const_data_ptr<int64_t>(), total, vocab_size,
          grad.const_data_ptr<scalar_t>(), grad.stride(0), table.data_ptr<scalar_t>(),
          partials.data_ptr<acc_t>(), hidden);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      combine_partials_kernel<scalar_t, acc_t><<<grid, threads, 0, stream>>>(
          sorted.const_data_ptr<int64_t>(), total, vocab_size, partials.const_data_ptr<acc_t>(),
          table.data_ptr<scalar_t>(), hidden);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return {table, grads};
}

}  // namespace
}  // namespace merge
}  // namespace mmgen

TORCH_LIBRARY_IMPL(mmgen, CUDA, m) {
  m.impl("packed_merge", &mmgen::merge::packed_merge_cuda);
  m.impl("packed_merge_backward", &mmgen::merge::packed_merge_backward_cuda);
}
