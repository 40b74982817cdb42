// bench/spsc_rings.hpp — the single-producer single-consumer rings SpscQueue
// is measured against, written for these benchmarks from their published
// designs (no code taken from the projects named). Each one lives entirely in
// one object with its slots inline, so it can be placement-new'ed into a
// shared block and driven by two forked processes; try_push(Item) and
// try_pop(Item&) as bench/round_trip_harness.hpp expects. None has a header,
// a sleep/wake protocol or a check of untrusted indices: they are the floor
// an 8-byte SPSC hand-off can reach, not general-purpose queues.
//
//   PlainRing<Cap>        free-running head and tail, each on its own line
//       next to the owner's cache of the other side's index; Cap slots, all
//       usable. The ring this suite calls "plain".
//   RigtorpStyleRing<Cap> E. Rigtorp's SPSCQueue as its README and talk
//       describe it: indices that wrap at Cap + 1 (one slot always empty),
//       the write index, the producer's cache of the read index, the read
//       index and the consumer's cache of the write index each on a line of
//       its own, and the slot array padded by a line at each end so that no
//       slot shares a line with anything else.
//   RwqStyleRing<Cap>     one block of C. Desrochers' moodycamel
//       ReaderWriterQueue: a power-of-two block of at least Cap + 1 slots
//       (one always empty), the consumer's index `front` sharing a line with
//       its shadow copy of `tail`, the producer's `tail` sharing the next
//       line with its shadow copy of `front`, the mask on a third (read-only)
//       line, and explicit acquire/release fences around the element copy
//       instead of acquire loads and release stores.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace bench {

using RingItem = std::uint64_t;
inline constexpr std::size_t kRingLine = 64;

template <std::uint64_t Cap>
struct PlainRing {
  static_assert((Cap & (Cap - 1)) == 0, "a power of two");
  static constexpr std::uint64_t kMask = Cap - 1;
  alignas(128) std::atomic<std::uint64_t> tail{0};  // producer's line
  std::uint64_t head_cache = 0;
  alignas(128) std::atomic<std::uint64_t> head{0};  // consumer's line
  std::uint64_t tail_cache = 0;
  alignas(128) RingItem slots[Cap];

  bool try_push(RingItem v) noexcept {
    const std::uint64_t t = tail.load(std::memory_order_relaxed);
    if (t - head_cache == Cap) {
      head_cache = head.load(std::memory_order_acquire);
      if (t - head_cache == Cap) return false;
    }
    slots[t & kMask] = v;
    tail.store(t + 1, std::memory_order_release);
    return true;
  }
  bool try_pop(RingItem& v) noexcept {
    const std::uint64_t h = head.load(std::memory_order_relaxed);
    if (h == tail_cache) {
      tail_cache = tail.load(std::memory_order_acquire);
      if (h == tail_cache) return false;
    }
    v = slots[h & kMask];
    head.store(h + 1, std::memory_order_release);
    return true;
  }
};

template <std::uint64_t Cap>
struct RigtorpStyleRing {
  static constexpr std::size_t kSlots = Cap + 1;  // one slot stays empty
  static constexpr std::size_t kPad = (kRingLine + sizeof(RingItem) - 1) / sizeof(RingItem);

  alignas(kRingLine) std::atomic<std::size_t> write_idx{0};
  alignas(kRingLine) std::size_t read_idx_cache = 0;  // the producer's
  alignas(kRingLine) std::atomic<std::size_t> read_idx{0};
  alignas(kRingLine) std::size_t write_idx_cache = 0;  // the consumer's
  alignas(kRingLine) RingItem slots[kPad + kSlots + kPad];

  bool try_push(RingItem v) noexcept {
    const std::size_t w = write_idx.load(std::memory_order_relaxed);
    std::size_t next = w + 1;
    if (next == kSlots) next = 0;
    if (next == read_idx_cache) {
      read_idx_cache = read_idx.load(std::memory_order_acquire);
      if (next == read_idx_cache) return false;
    }
    slots[kPad + w] = v;
    write_idx.store(next, std::memory_order_release);
    return true;
  }
  // front() and pop() of the published design, one call.
  bool try_pop(RingItem& v) noexcept {
    const std::size_t r = read_idx.load(std::memory_order_relaxed);
    if (r == write_idx_cache) {
      write_idx_cache = write_idx.load(std::memory_order_acquire);
      if (r == write_idx_cache) return false;
    }
    v = slots[kPad + r];
    std::size_t next = r + 1;
    if (next == kSlots) next = 0;
    read_idx.store(next, std::memory_order_release);
    return true;
  }
};

template <std::uint64_t Cap>
struct RwqStyleRing {
  static constexpr std::size_t block_size() {
    std::size_t n = 1;
    while (n < Cap + 1) n <<= 1;
    return n;
  }
  static constexpr std::size_t kBlock = block_size();

  alignas(kRingLine) std::atomic<std::size_t> front{0};   // consumer writes
  std::size_t local_tail = 0;                             // the consumer's shadow of tail
  alignas(kRingLine) std::atomic<std::size_t> tail{0};    // producer writes
  std::size_t local_front = 0;                            // the producer's shadow of front
  alignas(kRingLine) std::size_t size_mask = kBlock - 1;  // read by both, written never
  alignas(kRingLine) RingItem data[kBlock];

  bool try_push(RingItem v) noexcept {
    const std::size_t t = tail.load(std::memory_order_relaxed);
    const std::size_t next = (t + 1) & size_mask;
    if (next != local_front || next != (local_front = front.load(std::memory_order_relaxed))) {
      std::atomic_thread_fence(std::memory_order_acquire);  // the consumer is done with the slot
      data[t] = v;
      std::atomic_thread_fence(std::memory_order_release);  // the slot before the index
      tail.store(next, std::memory_order_relaxed);
      return true;
    }
    return false;
  }
  bool try_pop(RingItem& v) noexcept {
    const std::size_t f = front.load(std::memory_order_relaxed);
    if (f != local_tail || f != (local_tail = tail.load(std::memory_order_relaxed))) {
      std::atomic_thread_fence(std::memory_order_acquire);  // the slot after the index
      v = data[f];
      std::atomic_thread_fence(std::memory_order_release);  // our read before the producer reuses it
      front.store((f + 1) & size_mask, std::memory_order_relaxed);
      return true;
    }
    return false;
  }
};

}  // namespace bench
