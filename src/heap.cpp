#include "shmkit/heap.hpp"

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <new>
#include <stdexcept>
#include <system_error>
#include <unistd.h>

#include "platform.hpp"
#include "robust_guard.hpp"
#include "shmkit/sync/robust_mutex.hpp"
#include "shmkit/typed_block.hpp"

namespace shmkit {
namespace {

// The heap's control area: the typed block's prefix.
struct HeapControl {
  RobustMutex mutex;  // guards every field below and every chunk tag
  // Derived state: recomputed from the chain by repair().
  std::uint64_t rover;         // offset where the next search starts
  std::uint64_t used_bytes;
  std::uint64_t live_objects;
  // Not derived: survives repairs.
  std::uint64_t owner_deaths_recovered;
};
static_assert(std::is_standard_layout_v<HeapControl>);

// One per chunk, at the chunk's start. The chain: the chunk at offset o is
// followed by the chunk at o + size(word). Only `word` decides the chain;
// it changes by single 8-byte stores (atomic_ref, relaxed: the heap mutex
// orders them for the living; the single store is what makes a kill
// between two stores harmless).
struct ChunkTag {
  std::uint64_t word;        // size in bytes (multiple of 64, tag included) | kAllocated
  std::uint32_t generation;  // incremented by every allocation of this chunk
  std::uint32_t owner_pid;   // the allocating process (diagnostics)
  std::uint64_t requested;   // bytes the allocator asked for
  char pad[40];
};
static_assert(sizeof(ChunkTag) == Heap::kChunkTag && std::is_standard_layout_v<ChunkTag>);
constexpr std::uint64_t kAllocated = 1;
constexpr std::uint64_t kSizeMask = ~std::uint64_t{63};

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

struct Heap::State {
  std::shared_ptr<SharedMemory> shm;
  HeapControl* ctl = nullptr;
  std::byte* arena = nullptr;
  std::uint64_t arena_size = 0;
  std::string name;

  std::string what() const {
    return name.empty() ? std::string("anonymous heap") : "heap " + platform::quoted(name);
  }

  ChunkTag* tag_at(std::uint64_t off) const { return reinterpret_cast<ChunkTag*>(arena + off); }
  std::uint64_t word_at(std::uint64_t off) const {
    return std::atomic_ref(tag_at(off)->word).load(std::memory_order_relaxed);
  }
  void set_word(std::uint64_t off, std::uint64_t w) const {
    std::atomic_ref(tag_at(off)->word).store(w, std::memory_order_relaxed);
  }

  [[noreturn]] void corrupt(std::uint64_t off, const char* why) const {
    throw std::runtime_error("shmkit: " + what() + " is corrupt at arena offset " +
                             std::to_string(off) + ": " + why);
  }

  // Size of the chunk at `off`, checked to stay inside the arena.
  std::uint64_t chunk_size(std::uint64_t off, std::uint64_t w) const {
    std::uint64_t size = w & kSizeMask;
    if ((w & ~kSizeMask & ~kAllocated) != 0) corrupt(off, "stray bits in a chunk tag");
    if (size < kChunkTag || size > arena_size - off) corrupt(off, "chunk size out of range");
    return size;
  }

  // Walks the chain: recomputes the derived counters and merges adjacent free
  // chunks. Called under the lock.
  HeapStats walk(bool merge) const {
    HeapStats st;
    st.arena_bytes = arena_size;
    for (std::uint64_t off = 0; off < arena_size;) {
      std::uint64_t w = word_at(off);
      std::uint64_t size = chunk_size(off, w);
      if (w & kAllocated) {
        st.used_bytes += size;
        st.live_objects += 1;
      } else {
        if (merge) size = merge_forward(off, size);
        st.free_chunks += 1;
        st.largest_free = std::max(st.largest_free, size - kChunkTag);
      }
      off += size;
    }
    st.owner_deaths_recovered = ctl->owner_deaths_recovered;
    return st;
  }

  // Absorbs the free chunks that follow the free chunk at `off`.
  std::uint64_t merge_forward(std::uint64_t off, std::uint64_t size) const {
    while (off + size < arena_size) {
      std::uint64_t next = off + size;
      std::uint64_t nw = word_at(next);
      if (nw & kAllocated) break;
      size += chunk_size(next, nw);
      set_word(off, size);  // one store: the absorbed tags become interior bytes
      // Invariant: the rover is a chunk boundary. Keep it one.
      if (ctl->rover == next) ctl->rover = off;
    }
    return size;
  }

  void repair() const {
    HeapStats st = walk(true);
    ctl->used_bytes = st.used_bytes;
    ctl->live_objects = st.live_objects;
    ctl->rover = 0;
  }

  // Holds the heap lock; after a dead owner, repairs (see the header) and
  // counts the recovery.
  struct Guard : detail::RepairingGuard {
    explicit Guard(const State& s)
        : RepairingGuard(
              s.ctl->mutex,
              [&s] {
                s.repair();
                s.ctl->owner_deaths_recovered += 1;
              },
              [&s] { return "shmkit: " + s.what(); }) {}
  };

  // The chunk a handle names, validated; returns its size.
  std::uint64_t checked_chunk(const HeapHandle& h) const {
    if (h.heap != name) {
      throw std::invalid_argument("shmkit: handle " + h.to_string() + " is not for " + what());
    }
    if (h.offset % kAlignment != 0 || h.offset >= arena_size ||
        arena_size - h.offset < kChunkTag) {
      throw std::invalid_argument("shmkit: handle " + h.to_string() + ": offset outside " + what());
    }
    std::uint64_t w = word_at(h.offset);
    std::uint64_t size = w & kSizeMask;
    if (!(w & kAllocated) || size < kChunkTag || size > arena_size - h.offset ||
        std::atomic_ref(tag_at(h.offset)->generation).load(std::memory_order_relaxed) !=
            h.generation) {
      throw std::invalid_argument("shmkit: handle " + h.to_string() +
                                  " does not name a live object of " + what() +
                                  " (freed, reused or forged)");
    }
    return size;
  }
};

namespace {

constexpr std::uint64_t round_up(std::uint64_t n, std::uint64_t a) { return (n + a - 1) / a * a; }

std::shared_ptr<Heap::State> open_state(SharedMemory shm, const TypedRegion& r, std::string name) {
  auto s = std::make_shared<Heap::State>();
  if (r.prefix.size() < sizeof(HeapControl)) {
    throw std::invalid_argument("shmkit: heap " + platform::quoted(name) + ": control area too small");
  }
  if (r.payload.size() % Heap::kAlignment != 0 || r.payload.size() < Heap::kChunkTag) {
    throw std::invalid_argument("shmkit: heap " + platform::quoted(name) + ": arena size " +
                                std::to_string(r.payload.size()) + " is not a multiple of 64");
  }
  s->ctl = reinterpret_cast<HeapControl*>(r.prefix.data());
  s->arena = r.payload.data();
  s->arena_size = r.payload.size();
  s->name = std::move(name);
  s->shm = std::make_shared<SharedMemory>(std::move(shm));
  return s;
}

BlockSpec heap_spec(std::size_t arena_bytes) {
  if (arena_bytes == 0) throw std::invalid_argument("shmkit: a heap's arena must not be empty");
  BlockSpec spec;
  spec.kind = BlockKind::heap;
  spec.type = TypeFingerprint::of<HeapElement>();
  spec.payload_size = round_up(std::max<std::uint64_t>(arena_bytes, 2 * Heap::kChunkTag), 64);
  spec.count = spec.payload_size / 64;
  spec.prefix_size = sizeof(HeapControl);
  return spec;
}

void init_heap(std::span<std::byte> prefix, std::span<std::byte> payload) {
  auto* ctl = new (prefix.data()) HeapControl{};
  ctl->rover = 0;
  auto* first = reinterpret_cast<ChunkTag*>(payload.data());
  first->word = payload.size();  // one free chunk: the whole arena
}

}  // namespace

std::string HeapHandle::to_string() const {
  return "heap:" + heap + ":" + std::to_string(offset) + ":" + std::to_string(generation);
}

HeapHandle HeapHandle::parse(std::string_view text) {
  auto fail = [&] {
    throw std::invalid_argument("shmkit: not a heap handle: " + platform::quoted(text));
  };
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
  TypedBlock b = create_typed_block(name, heap_spec(arena_bytes), init_heap);
  return Heap(open_state(std::move(b.shm), b, std::string(name)));
}

Heap Heap::attach(std::string_view name) {
  TypedBlock b = attach_typed_block(name, BlockKind::heap, TypeFingerprint::of<HeapElement>());
  return Heap(open_state(std::move(b.shm), b, std::string(name)));
}

Heap Heap::anonymous(std::size_t arena_bytes) {
  BlockSpec spec = heap_spec(arena_bytes);
  SharedMemory shm = SharedMemory::anonymous(static_cast<std::size_t>(typed_region_size(spec)));
  TypedRegion r = init_typed_region(shm.buf(), spec, init_heap);
  return Heap(open_state(std::move(shm), r, std::string()));
}

Heap::Allocation Heap::allocate(std::size_t size) {
  if (size == 0) throw std::invalid_argument("shmkit: " + s_->what() + ": allocate(0)");
  const State& s = *s_;
  if (size > s.arena_size) {
    throw std::system_error(ENOMEM, std::generic_category(),
                            "shmkit: " + s.what() + ": cannot allocate " + std::to_string(size) +
                                " bytes (arena is " + std::to_string(s.arena_size) + ")");
  }
  const std::uint64_t need = round_up(size + kChunkTag, kAlignment);
  std::uint64_t found = ~std::uint64_t{0};
  std::uint32_t generation = 0;
  {
    State::Guard g(s);
    std::uint64_t rover = s.ctl->rover;
    if (rover >= s.arena_size || rover % kAlignment != 0) rover = 0;  // a hint, never trusted
    // Two passes: [rover, end) then [0, end). The second pass revisits the
    // first's chunks, harmless; a rover that is not a chunk boundary (only
    // after a bug) makes the first pass fail its checks, and the error says so.
    for (std::uint64_t start : {rover, std::uint64_t{0}}) {
      for (std::uint64_t off = start; off < s.arena_size;) {
        std::uint64_t w = s.word_at(off);
        std::uint64_t csize = s.chunk_size(off, w);
        if (!(w & kAllocated)) {
          csize = s.merge_forward(off, csize);
          if (csize >= need) {
            ChunkTag* t = s.tag_at(off);
            std::uint64_t take = csize;
            if (csize - need >= 2 * kChunkTag) {
              // The tail's tag first: unreachable until the commit below.
              s.set_word(off + need, csize - need);
              take = need;
            }
            generation = t->generation + 1;
            std::atomic_ref(t->generation).store(generation, std::memory_order_relaxed);
            t->owner_pid = static_cast<std::uint32_t>(::getpid());
            t->requested = size;
            s.set_word(off, take | kAllocated);  // the commit: one 8-byte store
            s.ctl->used_bytes += take;
            s.ctl->live_objects += 1;
            s.ctl->rover = off + take < s.arena_size ? off + take : 0;
            found = off;
            break;
          }
        }
        off += csize;
      }
      if (found != ~std::uint64_t{0} || start == 0) break;
    }
  }
  if (found == ~std::uint64_t{0}) {
    throw std::system_error(ENOMEM, std::generic_category(),
                            "shmkit: " + s.what() + " is full: no free chunk of " +
                                std::to_string(need) + " bytes");
  }
  Allocation a;
  std::uint64_t csize = s.word_at(found) & kSizeMask;
  a.bytes = std::span<std::byte>(s.arena + found + kChunkTag, csize - kChunkTag);
  std::memset(a.bytes.data(), 0, a.bytes.size());  // outside the lock: the chunk is ours
  a.handle = HeapHandle{s.name, found, generation};
  return a;
}

void Heap::deallocate(const HeapHandle& handle) {
  const State& s = *s_;
  State::Guard g(s);
  std::uint64_t size = s.checked_chunk(handle);
  s.set_word(handle.offset, size);  // one store: now free
  s.ctl->used_bytes -= std::min(s.ctl->used_bytes, size);
  s.ctl->live_objects -= std::min<std::uint64_t>(s.ctl->live_objects, 1);
}

std::span<std::byte> Heap::resolve(const HeapHandle& handle) const {
  std::uint64_t size = s_->checked_chunk(handle);
  return {s_->arena + handle.offset + kChunkTag, size - kChunkTag};
}

HeapStats Heap::stats() const {
  State::Guard g(*s_);
  return s_->walk(false);
}

void Heap::check() const {
  State::Guard g(*s_);
  HeapStats st = s_->walk(false);
  if (st.used_bytes != s_->ctl->used_bytes || st.live_objects != s_->ctl->live_objects) {
    throw std::runtime_error("shmkit: " + s_->what() + ": counters disagree with the chain (" +
                             std::to_string(s_->ctl->live_objects) + " objects recorded, " +
                             std::to_string(st.live_objects) + " found)");
  }
}

const std::string& Heap::name() const noexcept { return s_->name; }
std::size_t Heap::arena_bytes() const noexcept { return s_->arena_size; }
std::shared_ptr<SharedMemory> Heap::mapping() const noexcept { return s_->shm; }
void Heap::unlink() { s_->shm->unlink(); }

}  // namespace shmkit
