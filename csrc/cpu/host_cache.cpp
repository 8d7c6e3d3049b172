// The host buffer cache of csrc/cpu/host_cache.h.
#include "host_cache.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <list>
#include <mutex>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace mmgen {
namespace host_cache {
namespace {

// Smaller outputs are cheap to fault in; they go to at::empty.
constexpr size_t kMinBytes = size_t{8} << 20;
// Buffers are whole 2 MiB huge pages...
constexpr size_t kHugePage = size_t{2} << 20;
// ...rounded up by at most 1/8 of their size, so packs of slightly different lengths (a token
// budget is filled to ~98%, not exactly) share one buffer size.
constexpr size_t kSizeClasses = 8;

size_t limit_bytes() {
  static const size_t limit = [] {
    const char* env = std::getenv("MMGEN_CPU_CACHE_MB");
    if (env == nullptr || *env == '\0') return size_t{1024} << 20;
    char* end = nullptr;
    const long long mib = std::strtoll(env, &end, 10);
    TORCH_CHECK(end != env && *end == '\0' && mib >= 0,
                "MMGEN_CPU_CACHE_MB must be a whole number of MiB >= 0, got '", env, "'");
    return static_cast<size_t>(mib) << 20;
  }();
  return limit;
}

size_t buffer_bytes(size_t bytes) {
  const size_t step = std::max(kHugePage, bytes / kSizeClasses / kHugePage * kHugePage);
  return (bytes + step - 1) / step * step;
}

struct Block {
  void* ptr;
  size_t bytes;
};

class Cache {
 public:
  // A cached block of at least `bytes` and not much larger, or nullptr.
  Block take(size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto best = free_.end();
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->bytes >= bytes && it->bytes <= bytes + bytes / 4 &&
          (best == free_.end() || it->bytes < best->bytes)) {
        best = it;
      }
    }
    if (best == free_.end()) return {nullptr, 0};
    const Block block = *best;
    cached_ -= block.bytes;
    free_.erase(best);
    return block;
  }

  // Keeps a freed block, dropping the least recently freed ones beyond the limit.
  void give(Block block) {
    std::list<Block> dropped;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      free_.push_front(block);
      cached_ += block.bytes;
      while (cached_ > limit_bytes() && !free_.empty()) {
        cached_ -= free_.back().bytes;
        dropped.splice(dropped.begin(), free_, std::prev(free_.end()));
      }
    }
    for (const Block& b : dropped) std::free(b.ptr);
  }

  int64_t release() {
    std::list<Block> dropped;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      dropped.swap(free_);
      cached_ = 0;
    }
    int64_t bytes = 0;
    for (const Block& b : dropped) {
      bytes += static_cast<int64_t>(b.bytes);
      std::free(b.ptr);
    }
    return bytes;
  }

 private:
  std::mutex mutex_;
  std::list<Block> free_;  // most recently freed first
  size_t cached_ = 0;
};

// Never destroyed: a tensor freed during interpreter shutdown may still return its buffer.
Cache& cache() {
  static Cache* instance = new Cache();
  return *instance;
}

// Advice only: one page fault per 2 MiB on first use where the kernel's THP mode allows it; only
// the 2 MiB-aligned interior of the range can take huge pages.
void advise_huge_pages(void* ptr, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const auto begin = reinterpret_cast<uintptr_t>(ptr);
  const uintptr_t first = (begin + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t last = (begin + bytes) & ~(kHugePage - 1);
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#else
  (void)ptr;
  (void)bytes;
#endif
}

Block allocate(size_t bytes) {
  void* ptr = std::aligned_alloc(kHugePage, bytes);
  TORCH_CHECK(ptr != nullptr, "mmgen: could not allocate ", bytes, " bytes of host memory");
  advise_huge_pages(ptr, bytes);
  return {ptr, bytes};
}

}  // namespace

at::Tensor empty(at::IntArrayRef shape, const at::TensorOptions& options) {
  const size_t element = c10::elementSize(c10::typeMetaToScalarType(options.dtype()));
  size_t bytes = element;
  for (const int64_t n : shape) bytes *= static_cast<size_t>(n);
  if (bytes < kMinBytes) return at::empty(shape, options);
  if (limit_bytes() == 0) {  // no cache: fresh pages, but at least fewer faults
    at::Tensor out = at::empty(shape, options);
    advise_huge_pages(out.data_ptr(), bytes);
    return out;
  }
  const size_t wanted = buffer_bytes(bytes);
  Block block = cache().take(wanted);
  if (block.ptr == nullptr) block = allocate(wanted);
  return at::from_blob(
      block.ptr, shape, [block](void*) { cache().give(block); }, options);
}

int64_t release() { return cache().release(); }

}  // namespace host_cache
}  // namespace mmgen
