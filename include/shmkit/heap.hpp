// shmkit/heap.hpp — Heap: many small shared objects in one block, the
// counterpart of CPython's multiprocessing.heap (which sharedctypes' Value and
// Array allocate from). Objects are passed to other processes as HeapHandle
// (a short string); a forked child needs nothing at all.
//
// Contract
//   * The heap is one typed block (kind heap): a control area (a RobustMutex,
//     allocation hints and counters) and a fixed arena. The arena does not
//     grow; allocate() on a full heap throws std::system_error(ENOMEM) naming
//     the heap. Allocations are 64-byte aligned (a cache line) and zero-filled.
//   * Allocation metadata is a chain of 64-byte chunk tags (boundary tags),
//     first fit from a roving hint, free chunks merged lazily when a search
//     passes them. allocate/deallocate take the heap's RobustMutex; resolve()
//     (handle -> bytes) takes no lock: it bounds-checks the offset against the
//     arena and checks the chunk tag (allocated, size, generation).
//   * A killed allocator never corrupts the heap. Every change to the chain
//     is a single aligned 8-byte store of one tag word (a split writes the new
//     tail's tag first, where nothing can reach it, then commits the head's
//     word), so the chain is walkable at every instant. The next locker gets
//     owner-died from the RobustMutex; the heap then walks and checks the
//     whole chain, recomputes its counters and resets its hint (a repair it
//     can do because nothing but the chain is authoritative), counts the
//     event in stats().owner_deaths_recovered, and marks the mutex
//     consistent. What can be lost: an allocation committed by a process that
//     died before handing its handle on stays allocated (a leak, never an
//     overlap); stats() and check() show it.
//   * Handles carry a generation: a 64-bit number that the heap's control
//     area counts up on every allocation (under the lock, stored before the
//     chunk is committed), so it never repeats in the heap's lifetime,
//     whatever merges and splits reuse an offset. A handle to a freed (or
//     freed and reused) chunk is rejected by resolve() and deallocate() with
//     std::invalid_argument, never read or freed as someone else's object.
//     (The counter is not derived: the repair keeps it, raising it to the
//     chain's largest generation if a foreign write put it behind.) A peer
//     that rewrites the counter lower can make a generation of a *freed*
//     object come back (nothing left in the block remembers it): that is
//     data corruption inside the trust boundary (README), like any write to
//     the objects themselves. A forged handle can at worst name bytes inside
//     the arena, never outside it.
//   * On-block format version 2 (header param[0]); attach refuses a heap of
//     another version (version 1 had 32-bit generations in the chunk tags)
//     with std::invalid_argument.
//   * Heap is a cheap copyable handle (shared ownership of one mapping);
//     objects created in it keep the mapping alive.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "shmkit/shared_memory.hpp"

namespace shmkit {

// Names one object in a heap: serialisable, so any process can attach.
struct HeapHandle {
  std::string heap;              // the heap block's name (empty: anonymous heap)
  std::uint64_t offset = 0;      // of the chunk in the arena
  std::uint64_t generation = 0;  // the allocation's number in the heap (1, 2, ...)

  // "heap:<name>:<offset>:<generation>", both numbers in decimal (the
  // generation up to 2^64 - 1; handles of format-1 heaps parse the same).
  std::string to_string() const;
  // Parses to_string()'s form; std::invalid_argument otherwise.
  static HeapHandle parse(std::string_view text);
  friend bool operator==(const HeapHandle&, const HeapHandle&) = default;
};

struct HeapStats {
  std::uint64_t arena_bytes = 0;
  std::uint64_t used_bytes = 0;    // allocated chunks, tags included
  std::uint64_t live_objects = 0;  // allocated chunks
  std::uint64_t free_chunks = 0;   // after merging adjacent free chunks
  std::uint64_t largest_free = 0;  // bytes usable by one allocation
  std::uint64_t owner_deaths_recovered = 0;
};

class Heap {
 public:
  static constexpr std::size_t kChunkTag = 64;  // bytes of metadata per allocation
  static constexpr std::size_t kAlignment = 64;

  // A named heap whose arena holds `arena_bytes` (rounded up to 64).
  static Heap create(std::string_view name, std::size_t arena_bytes);
  static Heap attach(std::string_view name);
  // A heap in an anonymous block: shared with forked children only.
  static Heap anonymous(std::size_t arena_bytes);

  struct Allocation {
    std::span<std::byte> bytes;  // zero-filled, 64-byte aligned
    HeapHandle handle;
  };
  // Allocates `size` bytes (> 0). Throws std::system_error(ENOMEM) when no
  // free chunk is large enough (or, after a foreign write only, when the
  // generation counter is at 2^64 - 1), std::runtime_error if the heap is
  // corrupt.
  Allocation allocate(std::size_t size);
  // Frees the object; std::invalid_argument for a handle that does not name
  // a live allocation of this heap.
  void deallocate(const HeapHandle& handle);
  // The object's bytes (all of the chunk after its tag, >= what was asked).
  std::span<std::byte> resolve(const HeapHandle& handle) const;

  HeapStats stats() const;
  // Walks the whole chain under the lock; throws std::runtime_error naming
  // the offset of the first inconsistency.
  void check() const;

  const std::string& name() const noexcept;
  std::size_t arena_bytes() const noexcept;
  // The mapping (objects share ownership of it).
  std::shared_ptr<SharedMemory> mapping() const noexcept;
  void unlink();

  struct State;  // internal

 private:
  explicit Heap(std::shared_ptr<State> s) noexcept : s_(std::move(s)) {}
  std::shared_ptr<State> s_;
};

}  // namespace shmkit
