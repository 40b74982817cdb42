// libFuzzer target for the Heap's metadata (src/typed/heap_layout.hpp): the chain
// of 64-byte chunk tags and the control area's counters and rover, as
// another process could have written them, driven by a short script of the
// operations the Heap runs on them (resolve, allocate, free, check, stats,
// the repair after an owner died) and of further scribbles.
//
// What must hold, on any bytes (checked here, std::abort otherwise):
//   * Only std::runtime_error (corruption), std::invalid_argument (bad
//     handle, allocate(0)) and std::system_error(ENOMEM) come out.
//   * Nothing is read or written outside the control area and the arena
//     (each in a buffer of exactly its size, so ASan sees any overrun); a
//     span handed out lies inside the arena, after a 64-aligned tag; a chunk
//     handed out by allocate is 64-aligned, big enough and marked allocated
//     with its generation. Every call returns (libFuzzer's -timeout).
//   * stats() describes at most size/64 chunks and at most size bytes.
//   * A repair that returns leaves a heap that check() accepts.
// And once check() (or a repair) has accepted the heap, until a scribble or
// a forged free (below) corrupts it again ("trusted"):
//   * no operation reports corruption: the heap never corrupts itself;
//   * the allocated chunks on the chain are exactly those this model
//     expects (those found when it became trusted, plus what allocate
//     returned, minus what was freed): allocations never overlap each other
//     or anything live, and merges never swallow a live chunk;
//   * a handle accepted at a chunk boundary names a live chunk of that
//     generation, and never one this model saw freed (a stale handle);
//   * every allocation's generation is above every generation seen before
//     (generations never repeat: they come from the control area's counter,
//     which never falls behind an allocated tag and which a repair never
//     lowers). (A handle accepted between boundaries names bytes inside some
//     chunk that happen to look like a tag: allowed for resolve, see
//     heap.hpp on forged handles; freeing it corrupts the counters, so the
//     model stops trusting the heap.)
//
// Input (little-endian):
//   [0]      flags: bit 0 ignores the image and starts from a fresh heap
//   [1]      number of script ops (at most kMaxOps used)
//   [2..3]   arena size in 64-byte lines (clamped to 1..kMaxLines)
//   [4..43]  control counters: rover, used_bytes, live_objects,
//            owner_deaths_recovered, last_generation
//   then     the script: 9 bytes per op: kind, u32 a, u32 b (see run_op)
//   then     the arena image, zero-filled past its end
#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <new>
#include <set>
#include <span>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "typed/heap_layout.hpp"

namespace {

using shmkit::HeapHandle;
using shmkit::detail::ChunkTag;
using shmkit::detail::HeapArena;
using shmkit::detail::HeapControl;

constexpr std::size_t kMaxLines = 1024;  // a 64 KiB arena at most
constexpr std::size_t kMaxOps = 48;
constexpr std::size_t kHeaderBytes = 44;
constexpr std::size_t kMaxRetired = 64;
constexpr std::size_t kOpBytes = 9;
constexpr std::uint64_t kLine = 64;
constexpr unsigned char kFill = 0xa5;  // 0xa5a5...: stray bits, never a valid tag word

[[noreturn]] void die(const char* what, std::uint64_t detail) {
  std::fprintf(stderr, "fuzz_heap: %s (%llu)\n", what, static_cast<unsigned long long>(detail));
  std::abort();
}

struct AlignedBuffer {
  explicit AlignedBuffer(std::size_t n)
      : size(n), p(static_cast<std::byte*>(::operator new (n, std::align_val_t{64}))) {
    std::memset(p, 0, n);
  }
  ~AlignedBuffer() { ::operator delete (p, std::align_val_t{64}); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  std::size_t size;
  std::byte* p;
};

std::uint32_t u32_at(const std::uint8_t* p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

struct Live {
  std::uint64_t size;
  std::uint64_t generation;
  friend bool operator==(const Live&, const Live&) = default;
};
using Chunks = std::map<std::uint64_t, Live>;

class Driver {
 public:
  Driver(std::span<std::byte> control, std::span<std::byte> arena)
      : heap_(control, arena, "fuzz"), arena_(arena) {}

  void run_op(std::uint8_t kind, std::uint32_t a, std::uint32_t b);
  // Starts trusting the heap as it is now (fresh, or accepted by check()
  // or a repair): the model is what the chain holds. Trusted already (a
  // repair of a heap the model trusted): what it saw freed stays stale and
  // the counter must not have gone back.
  void trust() {
    model_ = chain();
    const std::uint64_t counter = heap_.control().last_generation;
    for (const auto& [off, l] : model_) {
      if (l.generation > counter) die("an accepted heap's counter is behind a tag", off);
    }
    if (trusted_) {
      if (counter < max_generation_) die("a repair lowered the generation counter", counter);
    } else {
      // A fresh start: handles freed before the heap was scribbled say
      // nothing about it now (a scribble may have lowered the counter).
      retired_.clear();
      retired_set_.clear();
    }
    max_generation_ = counter;
    trusted_ = true;
  }

 private:
  std::uint64_t word(std::uint64_t off) const {
    std::uint64_t w;
    std::memcpy(&w, arena_.data() + off, 8);
    return w;
  }
  std::uint64_t generation(std::uint64_t off) const {
    if (off > arena_.size() || arena_.size() - off < kLine) return 0;
    std::uint64_t g;
    std::memcpy(&g, arena_.data() + off + offsetof(ChunkTag, generation), 8);
    return g;
  }

  // The chain as this target reads it, independently of heap_layout: its
  // allocated chunks and whether `probe` is a boundary. False if the chain
  // is broken. At most size/64 steps.
  bool walk(Chunks& allocated, std::uint64_t probe, bool& probe_is_boundary) const {
    allocated.clear();
    probe_is_boundary = false;
    for (std::uint64_t off = 0; off < arena_.size();) {
      if (off == probe) probe_is_boundary = true;
      const std::uint64_t w = word(off);
      const std::uint64_t size = w & ~std::uint64_t{63};
      if ((w & 62) != 0 || size < kLine || size > arena_.size() - off) return false;
      if (w & 1) allocated[off] = Live{size, generation(off)};
      off += size;
    }
    return true;
  }
  Chunks chain() const {
    Chunks c;
    bool unused;
    if (!walk(c, ~std::uint64_t{0}, unused)) die("an accepted heap has a broken chain", 0);
    return c;
  }

  // After every operation on a trusted heap: the chain holds exactly the model.
  void verify_model() const {
    if (trusted_ && chain() != model_) die("allocated chunks differ from the model", model_.size());
  }

  HeapHandle handle_for(std::uint8_t kind, std::uint32_t a, std::uint32_t b) const;
  void check_span(std::span<std::byte> s, const HeapHandle& h) const;
  void on_accepted_handle(const HeapHandle& h, bool freed);
  void check_stats(const shmkit::HeapStats& st) const;
  void allocate(std::uint64_t n);
  void check_after_repair();
  void scribble(std::uint8_t mode, std::uint32_t a, std::uint32_t b);

  HeapArena heap_;
  std::span<std::byte> arena_;
  bool trusted_ = false;
  Chunks model_;  // allocated chunks, while trusted_
  // While trusted_: handles freed (stale: never accepted again), and the
  // largest generation handed out or found (the next must be above it).
  std::vector<HeapHandle> retired_;
  std::set<std::pair<std::uint64_t, std::uint64_t>> retired_set_;
  std::uint64_t max_generation_ = 0;
};

// kind >> 3 & 3 picks how the handle is made:
//   0: offset a, generation b (raw; kind & 0x80: another heap's name)
//   1: line a (a little past the arena too), the generation in that tag
//   2: the (a mod n)-th allocated chunk on the chain, its generation
//   3: line a, generation b
// except that kind & 0x60 == 0x60 (with any of 1-3) reuses the (a mod n)-th
// handle this model saw freed, if any: a stale handle.
HeapHandle Driver::handle_for(std::uint8_t kind, std::uint32_t a, std::uint32_t b) const {
  const std::uint64_t lines = arena_.size() / kLine;
  if ((kind & 0x60) == 0x60 && ((kind >> 3) & 3) != 0 && !retired_.empty()) {
    return retired_[a % retired_.size()];
  }
  HeapHandle h{"fuzz", 0, b};
  switch ((kind >> 3) & 3) {
    case 0:
      h.offset = a;
      if (kind & 0x80) h.heap = "other";
      break;
    case 1:
      h.offset = (a % (lines + 2)) * kLine;
      h.generation = generation(h.offset);
      break;
    case 2: {
      Chunks c;
      bool unused;
      (void)walk(c, ~std::uint64_t{0}, unused);  // what a broken chain had up to the break
      if (c.empty()) break;
      auto it = c.begin();
      std::advance(it, static_cast<std::ptrdiff_t>(a % c.size()));
      h.offset = it->first;
      h.generation = it->second.generation;
      break;
    }
    default:
      h.offset = (a % (lines + 2)) * kLine;
      break;
  }
  return h;
}

void Driver::check_span(std::span<std::byte> s, const HeapHandle& h) const {
  const std::byte* base = arena_.data();
  if (s.data() != base + h.offset + kLine) die("span does not start after the handle's tag", h.offset);
  if (h.offset % kLine != 0 || s.size() % kLine != 0) die("span not 64-aligned", h.offset);
  if (h.offset >= arena_.size() || s.size() > arena_.size() - h.offset - kLine) {
    die("span leaves the arena", h.offset);
  }
  if (!s.empty()) {  // touch both ends: ASan checks them
    volatile std::byte first = s.front(), last = s.back();
    (void)first;
    (void)last;
  }
}

void Driver::on_accepted_handle(const HeapHandle& h, bool freed) {
  if (!trusted_) return;
  Chunks c;
  bool boundary;
  if (!walk(c, h.offset, boundary)) die("a trusted heap has a broken chain", h.offset);
  if (!boundary) {
    // Tag-like bytes inside some chunk: a forged handle (see the top).
    if (freed) trusted_ = false;
    return;
  }
  auto it = model_.find(h.offset);
  if (it == model_.end() || it->second.generation != h.generation) {
    die("a handle to a free or stale chunk was accepted", h.offset);
  }
  if (retired_set_.count({h.offset, h.generation}) != 0) {
    die("a freed object's handle was accepted (its generation was handed out again)", h.offset);
  }
  if (freed) {
    model_.erase(it);
    if (retired_.size() < kMaxRetired) {
      retired_.push_back(h);
      retired_set_.insert({h.offset, h.generation});
    }
  }
}

void Driver::check_stats(const shmkit::HeapStats& st) const {
  const std::uint64_t lines = arena_.size() / kLine;
  if (st.arena_bytes != arena_.size()) die("stats: wrong arena size", st.arena_bytes);
  if (st.live_objects + st.free_chunks > lines) die("stats: more chunks than lines", st.free_chunks);
  if (st.used_bytes > arena_.size()) die("stats: used more than the arena", st.used_bytes);
  if (st.largest_free + kLine > arena_.size()) die("stats: free more than the arena", st.largest_free);
  if (trusted_) {
    std::uint64_t used = 0;
    for (const auto& [off, l] : model_) used += l.size;
    if (st.live_objects != model_.size() || st.used_bytes != used) {
      die("stats disagree with the model", st.live_objects);
    }
  }
}

void Driver::allocate(std::uint64_t n) {
  const shmkit::detail::HeapChunk c = heap_.allocate_chunk(n, 4242);
  if (c.offset % kLine != 0 || c.size % kLine != 0) die("allocation not 64-aligned", c.offset);
  if (c.offset >= arena_.size() || c.size > arena_.size() - c.offset) {
    die("allocation leaves the arena", c.offset);
  }
  if (c.size < kLine || c.size - kLine < n) die("allocation smaller than asked", c.size);
  if (word(c.offset) != (c.size | 1) || generation(c.offset) != c.generation) {
    die("allocation's tag does not say what was returned", c.offset);
  }
  // As Heap::allocate does: zero it, then the caller writes it (a pattern
  // that never reads as a tag, so no later handle lands inside it).
  std::memset(arena_.data() + c.offset + kLine, kFill, c.size - kLine);
  if (trusted_) {
    for (const auto& [off, l] : model_) {
      if (off < c.offset + c.size && c.offset < off + l.size) die("allocation overlaps a live chunk", off);
    }
    if (c.generation <= max_generation_) die("a generation was handed out again", c.generation);
    if (heap_.control().last_generation != c.generation) {
      die("the generation counter does not say what allocate returned", c.generation);
    }
    max_generation_ = c.generation;
    model_[c.offset] = Live{c.size, c.generation};
  }
}

void Driver::check_after_repair() {
  // Repair merges free chunks and recounts; it never frees or moves a live one.
  verify_model();
  try {
    heap_.check();
  } catch (const std::runtime_error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    die("check() rejects what repair() left", 0);
  }
  trust();
}

// kind >> 3 & 3: 0 a byte at a, 1 the word of tag line a, 2 the generation
// of tag line a, 3 control counter a % 5. The value is b (kind & 0x80 with
// mode 3: ~b, to reach the top of the generation counter).
void Driver::scribble(std::uint8_t mode, std::uint32_t a, std::uint32_t b) {
  const std::uint64_t lines = arena_.size() / kLine;
  std::byte* base = arena_.data();
  switch (mode & 3) {
    case 0:
      base[a % arena_.size()] = static_cast<std::byte>(b);
      break;
    case 1: {
      const std::uint64_t w = b;
      std::memcpy(base + (a % lines) * kLine, &w, 8);
      break;
    }
    case 2: {
      const std::uint64_t g = b;
      std::memcpy(base + (a % lines) * kLine + offsetof(ChunkTag, generation), &g, 8);
      break;
    }
    default: {
      HeapControl& ctl = heap_.control();
      std::uint64_t* fields[] = {&ctl.rover, &ctl.used_bytes, &ctl.live_objects, &ctl.owner_deaths_recovered,
                                 &ctl.last_generation};
      *fields[a % 5] = (mode & 4) != 0 ? ~std::uint64_t{b} : b;
      break;
    }
  }
  trusted_ = false;
}

// kind & 7: 0 resolve, 1 free (handles: handle_for), 2 allocate (kind >> 3
// & 3: a % 512, a % (arena + 128), a, a:b as 64 bits), 3 check, 4 stats,
// 5 repair after an owner died, 6 scribble, 7 allocate a % 256 + 1.
void Driver::run_op(std::uint8_t kind, std::uint32_t a, std::uint32_t b) {
  try {
    switch (kind & 7) {
      case 0: {
        const HeapHandle h = handle_for(kind, a, b);
        check_span(heap_.resolve(h), h);
        on_accepted_handle(h, false);
        break;
      }
      case 1: {
        const HeapHandle h = handle_for(kind, a, b);
        heap_.free_chunk(h);
        on_accepted_handle(h, true);
        break;
      }
      case 2: {
        std::uint64_t n = a;
        switch ((kind >> 3) & 3) {
          case 0:
            n = a % 512;
            break;
          case 1:
            n = a % (arena_.size() + 128);
            break;
          case 2:
            break;
          default:
            n = (std::uint64_t{a} << 32) | b;
            break;
        }
        allocate(n);
        break;
      }
      case 3:
        heap_.check();
        if (!trusted_) trust();
        break;
      case 4:
        check_stats(heap_.walk(false));
        break;
      case 5:
        heap_.recover_owner_death();
        check_after_repair();
        break;
      case 6:
        scribble(static_cast<std::uint8_t>(((kind >> 3) & 3) | ((kind >> 5) & 4)), a, b);
        break;
      default:
        allocate(a % 256 + 1);
        break;
    }
  } catch (const std::system_error& e) {  // before runtime_error, its base
    if (e.code().value() != ENOMEM) {
      die("system_error other than ENOMEM", static_cast<std::uint64_t>(e.code().value()));
    }
  } catch (const std::runtime_error& e) {
    if (trusted_) {
      std::fprintf(stderr, "%s\n", e.what());
      die("a trusted heap reported corruption", kind);
    }
  } catch (const std::invalid_argument&) {
    // A handle that names no live chunk, or allocate(0).
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    die("unexpected exception type", kind);
  }
  verify_model();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < kHeaderBytes) return 0;
  const bool fresh = (data[0] & 1) != 0;
  std::size_t lines = data[2] | (std::size_t{data[3]} << 8);
  lines = lines == 0 ? 1 : (lines > kMaxLines ? kMaxLines : lines);
  const std::size_t ops = std::min<std::size_t>({data[1], kMaxOps, (size - kHeaderBytes) / kOpBytes});
  const std::uint8_t* script = data + kHeaderBytes;
  const std::uint8_t* image = script + ops * kOpBytes;
  const std::size_t image_size = std::min<std::size_t>(size - kHeaderBytes - ops * kOpBytes, lines * kLine);

  AlignedBuffer control(sizeof(HeapControl));
  AlignedBuffer arena(lines * kLine);
  const std::span<std::byte> control_span(control.p, control.size);
  const std::span<std::byte> arena_span(arena.p, arena.size);
  if (fresh) {
    shmkit::detail::init_heap_layout(control_span, arena_span);
  } else {
    // The counters as another process left them; the mutex stays zero (the
    // layout functions never touch it: locking is the Heap's).
    std::memcpy(control.p + offsetof(HeapControl, rover), data + 4, 40);
    std::memcpy(arena.p, image, image_size);
  }
  static_assert(offsetof(HeapControl, owner_deaths_recovered) == offsetof(HeapControl, rover) + 24);
  static_assert(offsetof(HeapControl, last_generation) == offsetof(HeapControl, rover) + 32);

  Driver d(control_span, arena_span);
  if (fresh) d.trust();
  for (std::size_t i = 0; i < ops; ++i) {
    const std::uint8_t* op = script + i * kOpBytes;
    d.run_op(op[0], u32_at(op + 1), u32_at(op + 5));
  }
  return 0;
}
