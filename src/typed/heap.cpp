#include "shmkit/heap.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <new>
#include <stdexcept>
#include <system_error>
#include <unistd.h>

#include "platform/platform.hpp"
#include "shmkit/sync/robust_mutex.hpp"
#include "shmkit/typed_block.hpp"
#include "sync/robust_guard.hpp"
#include "typed/heap_layout.hpp"

namespace shmkit {
namespace {

struct HeapElement {  // the arena's element type, for the fingerprint
  std::byte line[64];
};

}  // namespace
}  // namespace shmkit

template <>
struct shmkit::TypeName<shmkit::HeapElement> {
  static constexpr std::string_view value = "shmkit::Heap/chunk64";
};

namespace shmkit {

// ------------------------------------------------------------ the layout

namespace detail {

void init_heap_layout(std::span<std::byte> control, std::span<std::byte> arena) {
  auto* ctl = new (control.data()) HeapControl{};
  ctl->rover = 0;
  auto* first = reinterpret_cast<ChunkTag*>(arena.data());
  first->word = arena.size();  // one free chunk: the whole arena
}

HeapArena::HeapArena(std::span<std::byte> control, std::span<std::byte> arena, std::string name)
    : ctl_(reinterpret_cast<HeapControl*>(control.data())),
      arena_(arena.data()),
      size_(arena.size()),
      name_(std::move(name)) {
  if (control.size() < sizeof(HeapControl) ||
      reinterpret_cast<std::uintptr_t>(control.data()) % alignof(HeapControl) != 0) {
    throw std::invalid_argument("shmkit: " + what() + ": control area too small or misaligned");
  }
  if (size_ % Heap::kAlignment != 0 || size_ < Heap::kChunkTag ||
      reinterpret_cast<std::uintptr_t>(arena_) % Heap::kAlignment != 0) {
    throw std::invalid_argument("shmkit: " + what() + ": arena size " + std::to_string(size_) +
                                " is not a multiple of 64 (or the arena is misaligned)");
  }
}

std::string HeapArena::what() const {
  return name_.empty() ? std::string("anonymous heap") : "heap " + platform::quoted(name_);
}

void HeapArena::corrupt(std::uint64_t off, const char* why) const {
  throw std::runtime_error("shmkit: " + what() + " is corrupt at arena offset " + std::to_string(off) + ": " +
                           why);
}

void HeapArena::bad_handle(const HeapHandle& h, BadHandle why) const {
  const std::string head = "shmkit: handle " + h.to_string();
  switch (why) {
    case BadHandle::other_heap:
      throw std::invalid_argument(head + " is not for " + what());
    case BadHandle::outside:
      throw std::invalid_argument(head + ": offset outside " + what());
    case BadHandle::not_live:
      break;
  }
  throw std::invalid_argument(head + " does not name a live object of " + what() +
                              " (freed, reused or forged)");
}

void HeapArena::bad_request(std::uint64_t size, std::uint64_t need) const {
  if (size == 0) throw std::invalid_argument("shmkit: " + what() + ": allocate(0)");
  if (size > size_) {
    throw std::system_error(ENOMEM, std::generic_category(),
                            "shmkit: " + what() + ": cannot allocate " + std::to_string(size) +
                                " bytes (arena is " + std::to_string(size_) + ")");
  }
  throw std::system_error(
      ENOMEM, std::generic_category(),
      "shmkit: " + what() + " is full: no free chunk of " + std::to_string(need) + " bytes");
}

void HeapArena::generations_exhausted() const {
  throw std::system_error(ENOMEM, std::generic_category(),
                          "shmkit: " + what() + " has no fresh generation left (its counter is at 2^64 - 1)");
}

// Walks the chain: recomputes the derived counters and, with `merge`, merges
// adjacent free chunks. Sets rover_seen if `rover` is one of the chunk
// boundaries met (before merging).
HeapStats HeapArena::walk_chain(bool merge, std::uint64_t rover, bool& rover_seen,
                                std::uint64_t& max_generation) const {
  HeapStats st;
  st.arena_bytes = size_;
  rover_seen = false;
  max_generation = 0;
  for (std::uint64_t off = 0; off < size_;) {
    if (off == rover) rover_seen = true;
    std::uint64_t w = word_at(off);
    std::uint64_t size = chunk_size(off, w);
    if (w & kChunkAllocated) {
      st.used_bytes += size;
      st.live_objects += 1;
      max_generation =
          std::max(max_generation, std::atomic_ref(tag_at(off)->generation).load(std::memory_order_relaxed));
    } else {
      if (merge) size = merge_forward(off, size);
      st.free_chunks += 1;
      st.largest_free = std::max(st.largest_free, size - Heap::kChunkTag);
    }
    off += size;
  }
  st.owner_deaths_recovered = ctl_->owner_deaths_recovered;
  return st;
}

HeapStats HeapArena::walk(bool merge) const {
  bool rover_seen;
  std::uint64_t max_generation;
  return walk_chain(merge, 0, rover_seen, max_generation);
}

void HeapArena::check() const {
  // The rover as allocate will read it: out of range or unaligned, it is
  // ignored there; a 64-aligned offset inside the arena is followed, so it
  // must be a chunk boundary. A stale one (a merge absorbed the chunk it
  // named and the writer died before moving it, or a foreign write) would
  // have allocate read interior bytes as a tag and hand out a chunk inside
  // a free chunk or a live object.
  const std::uint64_t rover = ctl_->rover;
  bool rover_seen;
  std::uint64_t max_generation;
  HeapStats st = walk_chain(false, rover, rover_seen, max_generation);
  if (rover < size_ && rover % Heap::kAlignment == 0 && !rover_seen) {
    corrupt(rover, "the allocation hint (rover) is not a chunk boundary");
  }
  const std::uint64_t last = std::atomic_ref(ctl_->last_generation).load(std::memory_order_relaxed);
  if (last < max_generation) {
    throw std::runtime_error("shmkit: " + what() + ": the generation counter (" + std::to_string(last) +
                             ") is behind an allocated chunk's (" + std::to_string(max_generation) + ")");
  }
  if (st.used_bytes != ctl_->used_bytes || st.live_objects != ctl_->live_objects) {
    throw std::runtime_error("shmkit: " + what() + ": counters disagree with the chain (" +
                             std::to_string(ctl_->live_objects) + " objects recorded, " +
                             std::to_string(st.live_objects) + " found)");
  }
}

void HeapArena::repair() const {
  // The hint first: if the walk finds the chain corrupt, at least allocate
  // no longer follows a rover that may be stale.
  ctl_->rover = 0;
  bool rover_seen;
  std::uint64_t max_generation;
  HeapStats st = walk_chain(true, 0, rover_seen, max_generation);
  ctl_->used_bytes = st.used_bytes;
  ctl_->live_objects = st.live_objects;
  // Never lowered: a free chunk's old generation must not come back either.
  std::atomic_ref last(ctl_->last_generation);
  if (last.load(std::memory_order_relaxed) < max_generation) {
    last.store(max_generation, std::memory_order_relaxed);
  }
}

void HeapArena::recover_owner_death() const {
  repair();
  ctl_->owner_deaths_recovered += 1;
}

}  // namespace detail

// ------------------------------------------------------------ the Heap

struct Heap::State {
  State(std::shared_ptr<SharedMemory> m, const TypedRegion& r, std::string name)
      : shm(std::move(m)), arena(r.prefix, r.payload, std::move(name)) {}

  std::shared_ptr<SharedMemory> shm;
  detail::HeapArena arena;

  // Holds the heap lock; after a dead owner, repairs (see the header) and
  // counts the recovery.
  struct Guard : detail::RepairingGuard {
    explicit Guard(const State& s)
        : RepairingGuard(
              s.arena.control().mutex, [&s] { s.arena.recover_owner_death(); },
              [&s] { return "shmkit: " + s.arena.what(); }) {}
  };
};

namespace {

constexpr std::uint64_t round_up(std::uint64_t n, std::uint64_t a) { return (n + a - 1) / a * a; }

BlockSpec heap_spec(std::size_t arena_bytes) {
  if (arena_bytes == 0) throw std::invalid_argument("shmkit: a heap's arena must not be empty");
  BlockSpec spec;
  spec.kind = BlockKind::heap;
  spec.type = TypeFingerprint::of<HeapElement>();
  spec.payload_size = round_up(std::max<std::uint64_t>(arena_bytes, 2 * Heap::kChunkTag), 64);
  spec.count = spec.payload_size / 64;
  spec.prefix_size = sizeof(detail::HeapControl);
  spec.param[0] = detail::kHeapLayoutVersion;
  return spec;
}

std::shared_ptr<Heap::State> open_state(SharedMemory shm, const TypedRegion& r, std::string name) {
  if (r.header.param[0] != detail::kHeapLayoutVersion) {
    throw std::invalid_argument("shmkit: heap " + platform::quoted(name) + ": heap layout version " +
                                std::to_string(r.header.param[0]) + " (param[0]), this shmkit reads " +
                                std::to_string(detail::kHeapLayoutVersion));
  }
  return std::make_shared<Heap::State>(std::make_shared<SharedMemory>(std::move(shm)), r, std::move(name));
}

}  // namespace

std::string HeapHandle::to_string() const {
  return "heap:" + heap + ":" + std::to_string(offset) + ":" + std::to_string(generation);
}

HeapHandle HeapHandle::parse(std::string_view text) {
  auto fail = [&] { throw std::invalid_argument("shmkit: not a heap handle: " + platform::quoted(text)); };
  if (!text.starts_with("heap:")) fail();
  text.remove_prefix(5);
  auto last = text.rfind(':');
  if (last == std::string_view::npos) fail();
  auto mid = text.rfind(':', last - 1);
  if (mid == std::string_view::npos || last == 0) fail();
  HeapHandle h;
  h.heap = std::string(text.substr(0, mid));
  auto num = [&](std::string_view s, auto& out) {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    if (ec != std::errc() || p != s.data() + s.size() || s.empty()) fail();
  };
  num(text.substr(mid + 1, last - mid - 1), h.offset);
  num(text.substr(last + 1), h.generation);
  if (!h.heap.empty()) SharedMemory::validate_name(h.heap);
  return h;
}

Heap Heap::create(std::string_view name, std::size_t arena_bytes) {
  SharedMemory::validate_name(name);
  TypedBlock b = create_typed_block(name, heap_spec(arena_bytes), detail::init_heap_layout);
  return Heap(open_state(std::move(b.shm), b, std::string(name)));
}

Heap Heap::attach(std::string_view name) {
  TypedBlock b = attach_typed_block(name, BlockKind::heap, TypeFingerprint::of<HeapElement>());
  return Heap(open_state(std::move(b.shm), b, std::string(name)));
}

Heap Heap::anonymous(std::size_t arena_bytes) {
  BlockSpec spec = heap_spec(arena_bytes);
  SharedMemory shm = SharedMemory::anonymous(static_cast<std::size_t>(typed_region_size(spec)));
  TypedRegion r = init_typed_region(shm.buf(), spec, detail::init_heap_layout);
  return Heap(open_state(std::move(shm), r, std::string()));
}

Heap::Allocation Heap::allocate(std::size_t size) {
  const State& s = *s_;
  detail::HeapChunk c;
  {
    State::Guard g(s);
    c = s.arena.allocate_chunk(size, static_cast<std::uint32_t>(::getpid()));
  }
  // The size committed under the lock, not the tag read again: another
  // process could rewrite the tag now, and this memset must stay in the arena.
  Allocation a;
  a.bytes = std::span<std::byte>(s.arena.data() + c.offset + kChunkTag, c.size - kChunkTag);
  std::memset(a.bytes.data(), 0, a.bytes.size());  // outside the lock: the chunk is ours
  a.handle = HeapHandle{s.arena.name(), c.offset, c.generation};
  return a;
}

void Heap::deallocate(const HeapHandle& handle) {
  State::Guard g(*s_);
  s_->arena.free_chunk(handle);
}

std::span<std::byte> Heap::resolve(const HeapHandle& handle) const { return s_->arena.resolve(handle); }

HeapStats Heap::stats() const {
  State::Guard g(*s_);
  return s_->arena.walk(false);
}

void Heap::check() const {
  State::Guard g(*s_);
  s_->arena.check();
}

const std::string& Heap::name() const noexcept { return s_->arena.name(); }
std::size_t Heap::arena_bytes() const noexcept { return s_->arena.size(); }
std::shared_ptr<SharedMemory> Heap::mapping() const noexcept { return s_->shm; }
void Heap::unlink() { s_->shm->unlink(); }

}  // namespace shmkit
