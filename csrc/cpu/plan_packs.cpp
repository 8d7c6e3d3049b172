// plan_packs: assign every sample to a pack so that each pack's tokens fit `capacity` and, when
// given, its modality items fit `max_items` (this bounds the encoder's batch). Host-only logic:
// a plan is a few microseconds of work per thousand samples and feeds the data loader.
//
// Lengths are integers in [0, capacity], so the decreasing order is a counting sort, and
// best fit ("the pack with the least room that still fits") is a lookup in a set of
// remaining-capacity values instead of a balanced tree of packs. Every tie is broken by index,
// so the same input always gives the same plan.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "pack_structures.h"

namespace mmgen {
namespace {

// The value-indexed structures below take O(capacity) memory; 2^24 tokens is far beyond any
// context window while keeping them under ~100 MB.
constexpr int64_t kMaxCapacity = int64_t{1} << 24;

struct Problem {
  const int64_t* lengths;
  const int64_t* items;  // nullptr: no item budget
  int64_t n;
  int64_t capacity;
  int64_t max_items;
  int64_t* pack;  // output: pack index per sample

  int64_t items_of(int64_t i) const { return items ? items[i] : 0; }
};

// Samples by length, longest first; equal lengths keep dataset order. The lengths are stored
// beside the indices so the planners read them sequentially instead of gathering lengths[i].
struct Sorted {
  std::vector<int32_t> index;
  std::vector<int32_t> length;
};

Sorted decreasing_order(const Problem& p) {
  Sorted out{std::vector<int32_t>(p.n), std::vector<int32_t>(p.n)};
  if (p.capacity > 4 * p.n + 4096) {  // few samples, huge budget: a comparison sort is cheaper
    for (int32_t i = 0; i < p.n; ++i) out.index[i] = i;
    std::stable_sort(out.index.begin(), out.index.end(),
                     [&](int32_t a, int32_t b) { return p.lengths[a] > p.lengths[b]; });
    for (int64_t j = 0; j < p.n; ++j) out.length[j] = p.lengths[out.index[j]];
    return out;
  }
  // counting sort on key = capacity - length, so ascending keys are descending lengths
  std::vector<int32_t> start(p.capacity + 2, 0);
  for (int64_t i = 0; i < p.n; ++i) ++start[p.capacity - p.lengths[i] + 1];
  for (int64_t k = 1; k < p.capacity + 2; ++k) start[k] += start[k - 1];
  for (int64_t k = 0; k <= p.capacity; ++k) {  // runs of equal length, filled in order
    std::fill(out.length.begin() + start[k], out.length.begin() + start[k + 1],
              static_cast<int32_t>(p.capacity - k));
  }
  for (int32_t i = 0; i < p.n; ++i) out.index[start[p.capacity - p.lengths[i]]++] = i;
  return out;
}

// Best fit without an item budget: packs sit in stacks keyed by their remaining tokens; the
// tightest fit is the smallest non-empty key >= length. O(log64 C) per sample.
int64_t best_fit(const Problem& p) {
  ValueSet open(p.capacity + 1);                  // remaining-token values some pack has
  std::vector<int32_t> top(p.capacity + 1, -1);   // per value: the pack on top of its stack
  std::vector<int32_t> below;                     // per pack: the next pack in its stack
  below.reserve(static_cast<size_t>(p.n / 4 + 16));
  int32_t packs = 0;
  const Sorted sorted = decreasing_order(p);
  for (int64_t j = 0; j < p.n; ++j) {
    const int32_t i = sorted.index[j];
    const int64_t length = sorted.length[j];
    int64_t room = open.next(length);
    int32_t b;
    if (room < 0) {
      b = packs++;
      below.push_back(-1);
      room = p.capacity;
    } else {
      b = top[room];
      top[room] = below[b];
      if (top[room] < 0) open.erase(room);
    }
    p.pack[i] = b;
    // a full pack stays too: a zero-length sample still fits there
    const int64_t left = room - length;
    below[b] = top[left];
    if (top[left] < 0) open.insert(left);
    top[left] = b;
  }
  return packs;
}

// Best fit with an item budget: the tightest token fit among packs that still have room for
// the sample's items. Per remaining-token value, a heap of its packs ordered by items left
// (ties: lowest pack index), and a max-tree over values holding each heap's top, so "smallest
// value >= length whose best pack takes k more items" is one O(log C) tree search.
int64_t best_fit_items(const Problem& p) {
  MaxTree most_items(p.capacity + 1);
  std::unordered_map<int64_t, std::vector<uint64_t>> heaps;
  std::vector<int64_t> items_left;
  const auto key = [](int64_t items, int32_t b) {
    return (static_cast<uint64_t>(items) << 32) | (0xFFFFFFFFu - static_cast<uint32_t>(b));
  };
  const Sorted sorted = decreasing_order(p);
  for (int64_t j = 0; j < p.n; ++j) {
    const int32_t i = sorted.index[j];
    const int64_t length = sorted.length[j], k = p.items_of(i);
    int64_t room = most_items.leftmost(length, k);
    int32_t b;
    if (room < 0) {
      b = static_cast<int32_t>(items_left.size());
      items_left.push_back(p.max_items);
      room = p.capacity;
    } else {
      std::vector<uint64_t>& heap = heaps[room];
      std::pop_heap(heap.begin(), heap.end());
      b = static_cast<int32_t>(0xFFFFFFFFu - static_cast<uint32_t>(heap.back()));
      heap.pop_back();
      most_items.set(room, heap.empty() ? -1 : static_cast<int64_t>(heap.front() >> 32));
    }
    p.pack[i] = b;
    items_left[b] -= k;
    std::vector<uint64_t>& heap = heaps[room - length];
    heap.push_back(key(items_left[b], b));
    std::push_heap(heap.begin(), heap.end());
    most_items.set(room - length, static_cast<int64_t>(heap.front() >> 32));
  }
  return static_cast<int64_t>(items_left.size());
}

// First fit: the lowest-numbered pack with room, found in a max-tree over packs. With an item
// budget the search prunes on both maxima; that stays exact, though a subtree can pass both
// prunes without one pack passing both, so it may visit more than O(log N) nodes.
int64_t first_fit(const Problem& p) {
  // the trees grow with the packs (about N / 20 here), which keeps them in cache
  MaxTree tokens_left(1024);
  MaxTree items_left(1024);
  const MaxTree* item_budget = p.items ? &items_left : nullptr;
  int64_t packs = 0;
  const Sorted sorted = decreasing_order(p);
  for (int64_t j = 0; j < p.n; ++j) {
    const int32_t i = sorted.index[j];
    const int64_t length = sorted.length[j], k = p.items_of(i);
    int64_t b = tokens_left.leftmost(0, length, item_budget, k);
    if (b < 0) {
      b = packs++;
      tokens_left.reserve(packs);
      if (item_budget) items_left.reserve(packs);
      tokens_left.set(b, p.capacity);
      if (item_budget) items_left.set(b, p.max_items);
    }
    p.pack[i] = b;
    tokens_left.set(b, tokens_left.get(b) - length);
    if (item_budget) items_left.set(b, items_left.get(b) - k);
  }
  return packs;
}

// Next fit in dataset order: keeps samples in order, at the price of emptier packs.
int64_t sequential(const Problem& p) {
  int64_t packs = 0, tokens_left = -1, items_left = 0;
  for (int64_t i = 0; i < p.n; ++i) {
    const int64_t length = p.lengths[i], k = p.items_of(i);
    if (packs == 0 || length > tokens_left || k > items_left) {
      ++packs;
      tokens_left = p.capacity;
      items_left = p.max_items;
    }
    p.pack[i] = packs - 1;
    tokens_left -= length;
    items_left -= k;
  }
  return packs;
}

// Checks every argument and names the first offending sample.
void check(const Problem& p, const std::optional<at::Tensor>& items,
           const std::optional<int64_t>& max_items) {
  TORCH_CHECK_VALUE(p.capacity >= 1 && p.capacity <= kMaxCapacity,
                    "plan_packs: capacity must be in [1, 2^24], got ", p.capacity);
  TORCH_CHECK_VALUE(p.n < std::numeric_limits<int32_t>::max(),
                    "plan_packs: at most 2^31 - 2 samples, got ", p.n);
  for (int64_t i = 0; i < p.n; ++i) {
    TORCH_CHECK_VALUE(p.lengths[i] >= 0, "plan_packs: sample ", i, " has negative length ",
                      p.lengths[i]);
    TORCH_CHECK_VALUE(p.lengths[i] <= p.capacity, "plan_packs: sample ", i, " has length ",
                      p.lengths[i], ", more than the capacity of ", p.capacity, " tokens");
  }
  TORCH_CHECK_VALUE(items.has_value() == max_items.has_value(),
                    "plan_packs: give items and max_items together (got ",
                    items ? "items" : "max_items", " only)");
  if (!items) return;
  TORCH_CHECK_VALUE(*max_items >= 0 && *max_items <= std::numeric_limits<int32_t>::max(),
                    "plan_packs: max_items must be in [0, 2^31 - 1], got ", *max_items);
  TORCH_CHECK_VALUE(items->dim() == 1 && items->numel() == p.n, "plan_packs: items must have "
                    "shape (", p.n, ",) like lengths, got ", items->sizes());
  for (int64_t i = 0; i < p.n; ++i) {
    TORCH_CHECK_VALUE(p.items[i] >= 0, "plan_packs: sample ", i, " has negative items ",
                      p.items[i]);
    TORCH_CHECK_VALUE(p.items[i] <= *max_items, "plan_packs: sample ", i, " has ", p.items[i],
                      " items, more than max_items = ", *max_items);
  }
}

at::Tensor plan_packs_cpu(const at::Tensor& lengths, int64_t capacity, c10::string_view strategy,
                          const std::optional<at::Tensor>& items,
                          std::optional<int64_t> max_items) {
  for (const auto* t : {&lengths, items ? &*items : nullptr}) {
    if (t == nullptr) continue;
    TORCH_CHECK_TYPE(t->scalar_type() == at::kLong, "plan_packs: lengths and items must be ",
                     "int64, got ", t->scalar_type());
  }
  TORCH_CHECK_VALUE(lengths.dim() == 1, "plan_packs: lengths must be 1-D, got shape ",
                    lengths.sizes());
  const at::Tensor len = lengths.contiguous();
  const at::Tensor cnt = items ? items->contiguous() : at::Tensor();
  at::Tensor pack = at::empty({len.numel()}, len.options());
  Problem p{len.data_ptr<int64_t>(), items ? cnt.data_ptr<int64_t>() : nullptr, len.numel(),
            capacity, max_items.value_or(0), pack.data_ptr<int64_t>()};
  check(p, items, max_items);
  const std::string name(strategy);
  if (name == "bfd") {
    p.items ? best_fit_items(p) : best_fit(p);
  } else if (name == "ffd") {
    first_fit(p);
  } else if (name == "sequential") {
    sequential(p);
  } else {
    TORCH_CHECK_VALUE(false, "plan_packs: strategy must be 'bfd', 'ffd' or 'sequential', got '",
                      name, "'");
  }
  return pack;
}

}  // namespace
}  // namespace mmgen

TORCH_LIBRARY_IMPL(mmgen, CPU, m) { m.impl("plan_packs", &mmgen::plan_packs_cpu); }
