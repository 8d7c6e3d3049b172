// Search structures behind plan_packs (csrc/cpu/plan_packs.cpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace mmgen {

// A set of integers in [0, n) with "smallest member >= v" in O(log64 n): a stack of bitsets,
// each level marking which 64-bit words of the level below are non-empty. For n = 8193 that is
// two levels (129 words + 3 words), so a best-fit lookup touches a handful of cached words.
class ValueSet {
 public:
  explicit ValueSet(int64_t n) {
    int64_t words = (n + 63) / 64;
    levels_.emplace_back(words > 0 ? words : 1, 0);
    while (levels_.back().size() > 1) {
      words = (static_cast<int64_t>(levels_.back().size()) + 63) / 64;
      levels_.emplace_back(words, 0);
    }
  }

  void insert(int64_t v) {
    for (auto& level : levels_) {
      uint64_t& word = level[v >> 6];
      const bool was_empty = word == 0;
      word |= uint64_t{1} << (v & 63);
      if (!was_empty) return;  // the levels above already mark this word
      v >>= 6;
    }
  }

  void erase(int64_t v) {
    for (auto& level : levels_) {
      uint64_t& word = level[v >> 6];
      word &= ~(uint64_t{1} << (v & 63));
      if (word != 0) return;  // the word still has members: the levels above stay marked
      v >>= 6;
    }
  }

  // The smallest member >= v, or -1 when there is none.
  int64_t next(int64_t v) const {
    size_t l = 0;
    for (;;) {  // climb until a word holds a member at or after v
      const std::vector<uint64_t>& level = levels_[l];
      if (static_cast<size_t>(v >> 6) >= level.size()) return -1;
      const uint64_t word = level[v >> 6] & (~uint64_t{0} << (v & 63));
      if (word != 0) {
        v = (v & ~int64_t{63}) + __builtin_ctzll(word);
        break;
      }
      v = (v >> 6) + 1;  // the next word of this level is bit v of the level above
      if (++l == levels_.size()) return -1;
    }
    while (l > 0) {  // descend to the first member inside the marked word
      --l;
      v = (v << 6) + __builtin_ctzll(levels_[l][v]);
    }
    return v;
  }

 private:
  std::vector<std::vector<uint64_t>> levels_;
};

// Max over n leaves (initially -1 = "nothing here") with a leftmost search.
class MaxTree {
 public:
  explicit MaxTree(int64_t n) {
    while (size_ < n) size_ *= 2;
    node_.assign(2 * size_, -1);
  }

  int64_t get(int64_t i) const { return node_[size_ + i]; }

  // Room for n leaves, doubling (amortised O(1) per leaf); leaves keep their values.
  void reserve(int64_t n) {
    if (n <= size_) return;
    int64_t size = size_;
    while (size < n) size *= 2;
    std::vector<int32_t> node(2 * size, -1);
    std::copy(node_.begin() + size_, node_.end(), node.begin() + size);
    for (int64_t i = size - 1; i >= 1; --i) node[i] = std::max(node[2 * i], node[2 * i + 1]);
    node_.swap(node);
    size_ = size;
  }

  void set(int64_t i, int64_t value) {
    i += size_;
    node_[i] = static_cast<int32_t>(value);
    for (i /= 2; i >= 1; i /= 2) {
      const int32_t m = node_[2 * i] > node_[2 * i + 1] ? node_[2 * i] : node_[2 * i + 1];
      if (node_[i] == m) return;  // unchanged here, so unchanged above
      node_[i] = m;
    }
  }

  // The leftmost leaf i >= lo with leaf >= need and, when `other` (a tree of the same size) is
  // given, other's leaf i >= other_need; -1 when there is none. With one condition this visits
  // O(log n) nodes; with two, subtrees are pruned on both maxima.
  int64_t leftmost(int64_t lo, int64_t need, const MaxTree* other = nullptr,
                   int64_t other_need = 0) const {
    return search(1, 0, size_, lo, need, other, other_need);
  }

 private:
  int64_t search(int64_t node, int64_t node_lo, int64_t node_hi, int64_t lo, int64_t need,
                 const MaxTree* other, int64_t other_need) const {
    if (node_hi <= lo || node_[node] < need) return -1;
    if (other != nullptr && other->node_[node] < other_need) return -1;
    if (node >= size_) return node_lo;
    const int64_t mid = (node_lo + node_hi) / 2;
    const int64_t left = search(2 * node, node_lo, mid, lo, need, other, other_need);
    return left >= 0 ? left : search(2 * node + 1, mid, node_hi, lo, need, other, other_need);
  }

  int64_t size_ = 1;
  std::vector<int32_t> node_;  // node_[1] is the root; leaves start at size_
};

}  // namespace mmgen
