// src/typed/heap_layout.hpp — the Heap's on-block format (control area, 64-byte
// chunk tags) and every operation on it, over a plain (control area, arena)
// pair of byte spans. Internal: src/typed/heap.cpp wraps each call in the heap's
// RobustMutex; tests/fuzz/fuzz_heap.cpp drives the same code on arbitrary
// bytes (no lock, no system calls here).
//
// Contract
//   * Every byte of the control area and of the arena is untrusted: another
//     process can write anything there. Each tag is checked where it is read
//     (size a non-zero multiple of 64 that stays inside the arena, no stray
//     bits); no access leaves [arena, arena + size) or the control area.
//     Offsets that only serve as hints (the rover) are range-checked too.
//   * Loops are bounded by the arena: every chunk is >= 64 bytes and a walk
//     only moves forward, so a walk visits at most size/64 tags; allocate
//     walks at most twice.
//   * Errors: a corrupt chain is std::runtime_error("shmkit: <heap> is
//     corrupt at arena offset N: why"), a handle that does not name a live
//     chunk is std::invalid_argument, no room is std::system_error(ENOMEM).
//     What the walk merged before finding corruption stays merged (each
//     merge leaves a valid chain).
//   * Test builds only: the kill points heap_alloc_split, heap_alloc_committed
//     and heap_free_marked (shmkit/detail/fault.hpp) sit between the stores
//     they name; elsewhere they are nothing.
//   * Locking is the caller's: allocate_chunk, free_chunk, walk, check,
//     repair and recover_owner_death change or read the chain as a whole and
//     need the heap's lock (or a single thread); resolve needs no lock.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>

#include "shmkit/detail/fault.hpp"
#include "shmkit/heap.hpp"
#include "shmkit/sync/robust_mutex.hpp"

namespace shmkit::detail {

// The heap's on-block format version, recorded in the block header's
// param[0] (blocks of format 1 recorded 0 there). 2: 64-bit generations from
// HeapControl::last_generation.
inline constexpr std::uint64_t kHeapLayoutVersion = 2;

// The heap's control area: the typed block's prefix.
struct HeapControl {
  RobustMutex mutex;  // guards every field below and every chunk tag
  // Derived state: recomputed from the chain by repair().
  std::uint64_t rover;  // a chunk boundary (or 0) where the next search starts
  std::uint64_t used_bytes;
  std::uint64_t live_objects;
  // Not derived: survives repairs.
  std::uint64_t owner_deaths_recovered;
  // The generation of the last allocation (0: none yet). Every allocation
  // takes the next one, so a generation never repeats in the heap's
  // lifetime (2^64 allocations do not happen); a handle carries it. Stored
  // before the chunk's tag is, so at every instant it is >= every
  // generation in an allocated tag (check() verifies it; repair() restores
  // it after a foreign write).
  std::uint64_t last_generation;
};
static_assert(std::is_standard_layout_v<HeapControl>);

// One per chunk, at the chunk's start. The chain: the chunk at offset o is
// followed by the chunk at o + size(word). Only `word` decides the chain;
// it changes by single 8-byte stores (atomic_ref, relaxed: the heap mutex
// orders them for the living; the single store is what makes a kill
// between two stores harmless).
// The generation is meaningful in an allocated tag only: a free tag keeps
// the last one, and a merge turns tags into interior bytes that the next
// allocation zero-fills, which is why generations come from the control
// area's counter, never from the tag.
struct ChunkTag {
  std::uint64_t word;        // size in bytes (multiple of 64, tag included) | kChunkAllocated
  std::uint64_t generation;  // HeapControl::last_generation when allocated
  std::uint64_t requested;   // bytes the allocator asked for
  std::uint32_t owner_pid;   // the allocating process (diagnostics)
  char pad[36];
};
static_assert(sizeof(ChunkTag) == Heap::kChunkTag && std::is_standard_layout_v<ChunkTag>);
static_assert(offsetof(ChunkTag, word) == 0 && offsetof(ChunkTag, generation) == 8);
inline constexpr std::uint64_t kChunkAllocated = 1;
inline constexpr std::uint64_t kChunkSizeMask = ~std::uint64_t{63};

// A chunk as allocate_chunk leaves it: [offset, offset + size) of the arena,
// the tag first.
struct HeapChunk {
  std::uint64_t offset = 0;
  std::uint64_t size = 0;  // tag included
  std::uint64_t generation = 0;
};

// Writes a fresh heap: the control area's mutex and zero counters, one free
// chunk spanning the whole arena. `control` holds sizeof(HeapControl) bytes;
// the arena is as HeapArena requires.
void init_heap_layout(std::span<std::byte> control, std::span<std::byte> arena);

// A view of one heap's bytes. Cheap to make; owns nothing but the name.
class HeapArena {
 public:
  // `control`: at least sizeof(HeapControl) bytes, suitably aligned;
  // `arena`: 64-byte aligned, a non-zero multiple of 64 bytes. Anything else
  // is std::invalid_argument. `name` is the heap's block name ("" when
  // anonymous); handles must carry it.
  HeapArena(std::span<std::byte> control, std::span<std::byte> arena, std::string name);

  const std::string& name() const noexcept { return name_; }
  std::uint64_t size() const noexcept { return size_; }
  std::byte* data() const noexcept { return arena_; }
  HeapControl& control() const noexcept { return *ctl_; }
  // "heap 'name'" or "anonymous heap", for messages.
  std::string what() const;

  // The bytes of the live chunk `h` names (all of it after its tag);
  // std::invalid_argument unless it names, inside the arena, a 64-aligned
  // tag marked allocated with h's generation. Lock-free; a forged handle can
  // at worst name bytes inside the arena.
  // Inline: it is the Heap's hottest path (one call, as before the split).
  std::span<std::byte> resolve(const HeapHandle& h) const {
    const std::uint64_t size = live_chunk(h);
    return {arena_ + h.offset + Heap::kChunkTag, size - Heap::kChunkTag};
  }

  // First fit for `size` bytes from the rover, merging free chunks it
  // passes; commits with one store (see heap.hpp). Does not zero the
  // payload. std::invalid_argument for size 0, std::system_error(ENOMEM) if
  // nothing fits or the generation counter is at its maximum.
  HeapChunk allocate_chunk(std::uint64_t size, std::uint32_t pid) const;
  // Marks the live chunk `h` names free (checked as resolve checks it).
  void free_chunk(const HeapHandle& h) const;

  // Walks the whole chain, counting; with `merge`, also merges runs of free
  // chunks. stats() is walk(false).
  HeapStats walk(bool merge) const;
  // walk(false), then: the counters must agree with the chain, the rover
  // must be a chunk boundary (allocate would follow it otherwise), and the
  // generation counter must not be behind any allocated tag (it would hand
  // out that generation again).
  void check() const;
  // Recomputes what is derived from the chain (counters, rover), merging,
  // and raises the generation counter to the chain's largest generation if
  // it is behind (it never lowers it).
  void repair() const;
  // What the lock's next owner does after owner-died: repair, then count it.
  void recover_owner_death() const;

 private:
  ChunkTag* tag_at(std::uint64_t off) const noexcept { return reinterpret_cast<ChunkTag*>(arena_ + off); }
  std::uint64_t word_at(std::uint64_t off) const noexcept {
    return std::atomic_ref(tag_at(off)->word).load(std::memory_order_relaxed);
  }
  void set_word(std::uint64_t off, std::uint64_t w) const noexcept {
    std::atomic_ref(tag_at(off)->word).store(w, std::memory_order_relaxed);
  }
  std::uint64_t chunk_size(std::uint64_t off, std::uint64_t w) const;
  std::uint64_t merge_forward(std::uint64_t off, std::uint64_t size) const;
  std::uint64_t live_chunk(const HeapHandle& h) const;
  HeapStats walk_chain(bool merge, std::uint64_t rover, bool& rover_seen,
                       std::uint64_t& max_generation) const;
  // The throws, out of line (src/typed/heap.cpp): they build strings.
  [[noreturn]] void corrupt(std::uint64_t off, const char* why) const;
  enum class BadHandle { other_heap, outside, not_live };
  [[noreturn]] void bad_handle(const HeapHandle& h, BadHandle why) const;
  [[noreturn]] void bad_request(std::uint64_t size, std::uint64_t need) const;
  [[noreturn]] void generations_exhausted() const;

  HeapControl* ctl_;
  std::byte* arena_;
  std::uint64_t size_;
  std::string name_;
};

// ------------------------------------------------------------ hot paths
// Inline here, not in heap.cpp: the library is position-independent, and
// GCC does not inline an exported function into its callers there, while
// resolve/allocate/free want every tag access inlined as before the split.

// Size of the chunk at `off` (< size_, 64-aligned), checked to stay inside
// the arena.
inline std::uint64_t HeapArena::chunk_size(std::uint64_t off, std::uint64_t w) const {
  const std::uint64_t size = w & kChunkSizeMask;
  if ((w & ~kChunkSizeMask & ~kChunkAllocated) != 0) [[unlikely]] {
    corrupt(off, "stray bits in a chunk tag");
  }
  if (size < Heap::kChunkTag || size > size_ - off) [[unlikely]] {
    corrupt(off, "chunk size out of range");
  }
  return size;
}

// Absorbs the free chunks that follow the free chunk at `off`. Each step
// grows `size` by >= 64 and stops at the arena's end.
inline std::uint64_t HeapArena::merge_forward(std::uint64_t off, std::uint64_t size) const {
  while (off + size < size_) {
    const std::uint64_t next = off + size;
    const std::uint64_t nw = word_at(next);
    if (nw & kChunkAllocated) break;
    size += chunk_size(next, nw);
    set_word(off, size);  // one store: the absorbed tags become interior bytes
    // Invariant: the rover is a chunk boundary. Keep it one.
    if (ctl_->rover == next) ctl_->rover = off;
  }
  return size;
}

// The chunk a handle names, validated; returns its size. One load of the
// word: a concurrent free (resolve takes no lock) is seen before or after.
inline std::uint64_t HeapArena::live_chunk(const HeapHandle& h) const {
  if (h.heap != name_) [[unlikely]]
    bad_handle(h, BadHandle::other_heap);
  if (h.offset % Heap::kAlignment != 0 || h.offset >= size_ || size_ - h.offset < Heap::kChunkTag)
      [[unlikely]] {
    bad_handle(h, BadHandle::outside);
  }
  const std::uint64_t w = word_at(h.offset);
  const std::uint64_t size = w & kChunkSizeMask;
  // Allocated and no stray bits, as the walks require: a tag check() rejects
  // is never accepted here.
  if ((w & ~kChunkSizeMask) != kChunkAllocated || size < Heap::kChunkTag || size > size_ - h.offset ||
      std::atomic_ref(tag_at(h.offset)->generation).load(std::memory_order_relaxed) != h.generation)
      [[unlikely]] {
    bad_handle(h, BadHandle::not_live);
  }
  return size;
}

inline void HeapArena::free_chunk(const HeapHandle& h) const {
  const std::uint64_t size = live_chunk(h);
  set_word(h.offset, size);              // one store: now free
  SHMKIT_FAULT_POINT(heap_free_marked);  // counters not yet updated
  ctl_->used_bytes -= std::min(ctl_->used_bytes, size);
  ctl_->live_objects -= std::min<std::uint64_t>(ctl_->live_objects, 1);
}

inline HeapChunk HeapArena::allocate_chunk(std::uint64_t size, std::uint32_t pid) const {
  if (size == 0 || size > size_) [[unlikely]]
    bad_request(size, 0);
  const std::uint64_t need = (size + Heap::kChunkTag + Heap::kAlignment - 1) & kChunkSizeMask;
  // Checked before anything changes. 2^64 allocations do not happen: only
  // a foreign write gets here, and then no allocation can get a fresh
  // generation, ever (not corruption: the chain is fine, and lowering the
  // counter is what must never happen).
  const std::uint64_t last_generation =
      std::atomic_ref(ctl_->last_generation).load(std::memory_order_relaxed);
  if (last_generation == ~std::uint64_t{0}) [[unlikely]]
    generations_exhausted();
  std::uint64_t rover = ctl_->rover;
  if (rover >= size_ || rover % Heap::kAlignment != 0) rover = 0;  // a hint, never trusted
  // Two passes: [rover, end) then [0, end). The second pass revisits the
  // first's chunks, harmless. The rover is a chunk boundary (check() says
  // so; only a dead writer or a foreign one can break that, and the repair
  // after a dead writer resets it); following it costs nothing, proving it
  // would cost a walk from 0.
  for (const std::uint64_t start : {rover, std::uint64_t{0}}) {
    for (std::uint64_t off = start; off < size_;) {
      const std::uint64_t w = word_at(off);
      std::uint64_t csize = chunk_size(off, w);
      if (!(w & kChunkAllocated)) {
        csize = merge_forward(off, csize);
        if (csize >= need) {
          ChunkTag* t = tag_at(off);
          std::uint64_t take = csize;
          if (csize - need >= 2 * Heap::kChunkTag) {
            // The tail's tag first: unreachable until the commit below.
            set_word(off + need, csize - need);
            SHMKIT_FAULT_POINT(heap_alloc_split);
            take = need;
          }
          // A fresh generation (heap.hpp): the counter first, then the tag,
          // then the commit. A kill between them skips a number, never
          // reuses one; each is one 8-byte store. (Relaxed: the heap mutex
          // orders them for the living; were a compiler to sink the
          // counter's store past the commit, the repair after a dead owner
          // raises the counter to the chain's largest generation anyway.)
          const std::uint64_t generation = last_generation + 1;
          std::atomic_ref(ctl_->last_generation).store(generation, std::memory_order_relaxed);
          std::atomic_ref(t->generation).store(generation, std::memory_order_relaxed);
          t->owner_pid = pid;
          t->requested = size;
          set_word(off, take | kChunkAllocated);     // the commit: one 8-byte store
          SHMKIT_FAULT_POINT(heap_alloc_committed);  // counters and rover not yet updated
          ctl_->used_bytes += take;
          ctl_->live_objects += 1;
          ctl_->rover = off + take < size_ ? off + take : 0;
          return {off, take, generation};
        }
      }
      off += csize;
    }
    if (start == 0) break;
  }
  bad_request(size, need);
}

}  // namespace shmkit::detail
