// shmkit/lockfree/detail/common.hpp — what the lock-free structures share:
// cache-line constants, the sleep/wake protocol on a shared futex word, the
// asymmetric fence that keeps the wake check off the fast path, and the
// attach-time validation of a ring's header.
//
// Sleep/wake protocol (one WaitSlot per "condition", e.g. not-empty):
//   sleeper:  s = seq.load  (1) acquire, pairs with (4) release
//             sleepers.store(1)
//             heavy_fence()  (2) seq_cst-equivalent, pairs with (3)
//             re-check the condition; if still false, futex_wait(seq, s)
//             for at most kLostWakeRecheck, then start over
//   notifier: publish (a release store of an index or a slot sequence)
//             light_fence()  (3) pairs with (2)
//             if sleepers.load(relaxed): sleepers = 0; seq.fetch_add(1) (4);
//             futex_wake_all(seq)
// (2)/(3) forbid the store-buffer outcome "the sleeper misses the published
// item AND the notifier misses sleepers == 1", so no wake-up is lost. The
// notifier's fence is where the cost would be: with membarrier(2)
// GLOBAL_EXPEDITED registered, light_fence() is only a compiler barrier and
// heavy_fence() makes the kernel run a full barrier on every CPU that runs a
// registered process (the classic asymmetric-fence pairing, as in liburcu
// and folly::asymmetricHeavyBarrier). Without membarrier (old kernel) both
// are std::atomic_thread_fence (seq_cst), which is correct and costs a full
// fence per notify. Under TSan (which models neither) both are an acq_rel
// RMW on one process-wide word, and the heavy side still issues the
// membarrier for registered peers. The pairing holds whatever either side's
// registration did: the heavy side issues GLOBAL_EXPEDITED whenever the
// kernel has it, registered or not (src/lockfree/fence.cpp,
// AsymmetricFence.*).
// A sleeper that dies leaves sleepers == 1: the next notify clears it with
// one futex_wake syscall, after which the fast path is syscall-free again.
// A notifier that dies between (its publish) and (4) leaves the sleeper
// without a wake: every sleep is therefore a slice of kLostWakeRecheck
// (shmkit/sync/futex.hpp) after which the sleeper re-checks, so such a kill
// costs it at most one slice (a sleeper with nothing to wait for wakes once
// per slice: ~100 cheap wake-ups a second).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "shmkit/detail/sync_common.hpp"
#include "shmkit/sync/futex.hpp"
#include "shmkit/sync/spin.hpp"
#include "shmkit/typed_block.hpp"

namespace shmkit::lockfree_detail {

// Two cache lines: adjacent-line prefetchers (Intel) pull lines in pairs, so
// indices written by different sides sit 128 bytes apart.
inline constexpr std::size_t kFalseSharingRange = 128;

#if defined(__SANITIZE_THREAD__)
inline constexpr bool kTsan = true;
#else
inline constexpr bool kTsan = false;
#endif

// Registers this process for membarrier GLOBAL_EXPEDITED once; true when the
// asymmetric fence can be used (always false under TSan).
bool asymmetric_fence_available() noexcept;
// The heavy side: membarrier(GLOBAL_EXPEDITED) when available, else a
// seq_cst fence.
void heavy_fence() noexcept;

#if defined(__SANITIZE_THREAD__)
// TSan does not model fences: stand in for both sides with an acq_rel RMW on
// one process-wide word. RMWs on one location are totally ordered, so of the
// sleeper's and the notifier's RMW the later one synchronizes with the
// earlier one, which forbids the same store-buffer outcome (threads only:
// TSan builds test the algorithms with threads).
inline std::atomic<std::uint32_t> tsan_fence_word{0};
inline void tsan_fence() noexcept { tsan_fence_word.fetch_add(0, std::memory_order_acq_rel); }
#endif

// A 64-bit value that names this process image among the processes sharing
// a block: drawn from the pid and the clock at first use and drawn again in
// every fork child (pthread_atfork), so a child never passes for its parent.
// SpscQueue's producer records it to know that nobody else produced since
// its last push, and compares it on every push: reading it is one relaxed
// load of a process-local word, inline (process_token_word, 0 until the
// first call in this process image draws it; src/lockfree/fence.cpp).
extern std::atomic<std::uint64_t> process_token_word;
std::uint64_t draw_process_token() noexcept;
inline std::uint64_t process_token() noexcept {
  // relaxed: a process-local value; the atfork handler redraws it in a fork
  // child before any of the child's code can read it.
  const std::uint64_t t = process_token_word.load(std::memory_order_relaxed);
  return t != 0 ? t : draw_process_token();
}

// The light side; `asym` is asymmetric_fence_available() cached by the handle.
inline void light_fence([[maybe_unused]] bool asym) noexcept {
#if defined(__SANITIZE_THREAD__)
  tsan_fence();
#else
  if (asym) {
    std::atomic_signal_fence(std::memory_order_seq_cst);  // compiler barrier only
  } else {
    // seq_cst: the store-buffer pairing (2)/(3) needs a full fence when the
    // heavy side cannot interrupt us.
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
#endif
}

using detail::cpu_relax;  // x86 PAUSE, aarch64 YIELD, else a compiler barrier

// A condition other processes may sleep on. 4-byte futex words, on a line of
// their own (they are read by the notifier on every operation, written only
// when someone sleeps).
struct alignas(64) WaitSlot {
  FutexWord seq{0};       // bumped by each wake; the futex word
  FutexWord sleepers{0};  // 1 while a sleeper may be (or was) waiting
};
static_assert(sizeof(WaitSlot) == 64, "a WaitSlot fills one cache line");

// Notifier side, after its fence (3): for a notifier that checks more than
// one word after one fence (notify() is the usual form).
inline void wake_sleepers(WaitSlot& w) noexcept {
  // relaxed: ordered by the caller's (3).
  if (w.sleepers.load(std::memory_order_relaxed) != 0) {
    w.sleepers.store(0, std::memory_order_relaxed);
    // (4) release: pairs with (1); a sleeper that reads the new seq also
    // sees what was published before it.
    w.seq.fetch_add(1, std::memory_order_release);
    futex_wake_all(w.seq);
  }
}

// Notifier side; call after the release store that publishes.
inline void notify(WaitSlot& w, bool asym) noexcept {
  light_fence(asym);  // (3) pairs with (2)
  wake_sleepers(w);
}

// Runs `attempt` (a try_ operation returning true on success) until it
// succeeds or `deadline` passes (nullopt: no deadline). Spins for the
// calibrated wait budget (spin.hpp: kWaitSpinFactor x the lock budget, 18 us
// by default, in time whatever the CPU), then sleeps on w.seq in slices of at most kLostWakeRecheck,
// re-checking after each (no sleep is unbounded). Returns whether an attempt succeeded.
// A full fence on this side alone: for structures whose notifiers do not
// use the asymmetric pairing (their handles pass asym = false to notify()).
inline void full_fence() noexcept {
#if defined(__SANITIZE_THREAD__)
  tsan_fence();
#else
  std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}

// The sleeping half of wait_until(), for callers that spin their own way.
// `asym`: whether the notifiers pair with us through the asymmetric fence
// (they pass asym = true to notify(): a compiler barrier on their side, so
// the sleeper issues the heavy fence, membarrier); false when they run a
// full fence themselves, so a full fence here is enough (no system call,
// no interrupt of the other CPUs: what a VM makes expensive).
template <class Attempt, class Stalled>
bool sleep_until(WaitSlot& w, Attempt&& attempt,
                 std::optional<std::chrono::steady_clock::time_point> deadline, Stalled&& stalled,
                 bool asym = true) noexcept {
  for (;;) {
    // (1) acquire: pairs with (4).
    const std::uint32_t s = w.seq.load(std::memory_order_acquire);
    w.sleepers.store(1, std::memory_order_relaxed);
    if (asym) {
      heavy_fence();  // (2) pairs with (3)
    } else {
      full_fence();  // (2) pairs with (3), a full fence there too
    }
    if (attempt()) return true;
    // Bounded slices (kLostWakeRecheck, as the locks): a notifier killed
    // between its publishing store and its wake leaves seq unchanged and
    // nobody to bump it; the sleeper finds the item at its next re-check
    // instead of sleeping forever. While seq still holds `s` no notifier
    // has bumped it, so sleepers is still 1 and the pairing (2)/(3) still
    // stands: the re-check needs no new heavy fence (an idle sleeper costs
    // one futex wake-up per slice, no membarrier). A notifier killed
    // between clearing sleepers and (4) leaves sleepers 0: later notifiers
    // then skip the wake, and these re-checks still find their items
    // within a slice. `stalled` runs between slices: it lets a structure
    // look for a dead peer blocking the condition.
    for (;;) {
      const auto now = std::chrono::steady_clock::now();
      if (deadline && now >= *deadline) return false;
      const auto slice_end = now + kLostWakeRecheck;
      (void)futex_wait_until(w.seq, s, deadline && *deadline < slice_end ? *deadline : slice_end);
      stalled();
      // (1) as above. Moved: a notifier saw us; redo the handshake.
      if (w.seq.load(std::memory_order_acquire) != s) break;
      if (attempt()) return true;
    }
  }
}
template <class Attempt, class Stalled>
bool wait_until(WaitSlot& w, Attempt&& attempt, std::optional<std::chrono::steady_clock::time_point> deadline,
                Stalled&& stalled) noexcept {
  for (std::uint32_t i = 0, n = detail::wait_spin_iterations(); i < n; ++i) {
    if (attempt()) return true;
    cpu_relax();
  }
  return sleep_until(w, attempt, deadline, stalled);
}
template <class Attempt>
bool wait_until(WaitSlot& w, Attempt&& attempt,
                std::optional<std::chrono::steady_clock::time_point> deadline) noexcept {
  return wait_until(w, attempt, deadline, [] {});
}

inline bool is_power_of_two(std::uint64_t x) noexcept { return x != 0 && (x & (x - 1)) == 0; }

[[noreturn]] inline void bad_block(std::string_view name, const std::string& why) {
  throw std::invalid_argument("shmkit: block \"" + std::string(name) + "\": " + why);
}

// Attach-time checks of a ring (the typed header was validated already; the
// snapshot `h` is what we trust from now on): capacity a power of two, the
// slot size recorded in param[0] ours, payload exactly count * slot_size
// (overflow-safe), prefix large enough for the control block.
inline void validate_ring(const BlockHeader& h, std::uint64_t slot_size, std::size_t control_size,
                          std::string_view name) {
  if (!is_power_of_two(h.count)) {
    bad_block(name, "capacity " + std::to_string(h.count) + " is not a power of two");
  }
  if (h.param[0] != slot_size) {
    bad_block(name, "slot size " + std::to_string(h.param[0]) + ", expected " + std::to_string(slot_size));
  }
  if (h.count > std::numeric_limits<std::uint64_t>::max() / slot_size ||
      h.payload_size != h.count * slot_size) {
    bad_block(name, "payload of " + std::to_string(h.payload_size) + " bytes does not hold " +
                        std::to_string(h.count) + " slots of " + std::to_string(slot_size));
  }
  if (h.prefix_size < control_size) {
    bad_block(name, "prefix of " + std::to_string(h.prefix_size) + " bytes is smaller than " +
                        std::to_string(control_size));
  }
}

inline void check_capacity(std::uint64_t capacity, std::uint64_t slot_size, std::string_view name) {
  if (!is_power_of_two(capacity) || capacity > (std::uint64_t{1} << 40) / slot_size) {
    throw std::invalid_argument("shmkit: cannot create block \"" + std::string(name) + "\": capacity " +
                                std::to_string(capacity) + " is not a power of two in [1, 2^40 / slot size]");
  }
}

// What every ring (SpscQueue, MpmcQueue, BroadcastRing) does to create,
// attach and adopt its block: `capacity` slots of `slot_size` bytes in the
// payload, the Control struct in the prefix, the slot size in param[0].
template <class T, class Control>
BlockSpec ring_spec(BlockKind kind, std::uint64_t capacity, std::uint64_t slot_size, std::string_view name) {
  check_capacity(capacity, slot_size, name);
  BlockSpec spec;
  spec.kind = kind;
  spec.type = TypeFingerprint::of<T>();
  spec.count = capacity;
  spec.prefix_size = sizeof(Control);
  spec.payload_size = capacity * slot_size;
  spec.param[0] = slot_size;
  return spec;
}
template <class T, class Control>
TypedBlock attach_ring(std::string_view name, BlockKind kind, std::uint64_t slot_size,
                       const AttachOptions& options) {
  TypedBlock b = attach_typed_block(name, kind, TypeFingerprint::of<T>(), options);
  validate_ring(b.header, slot_size, sizeof(Control), name);
  return b;
}
// A block whose typed header the caller validated already (e.g. an
// anonymous block shared with forked children): the ring's own checks.
template <class Control>
TypedBlock adopt_ring(TypedBlock block, std::uint64_t slot_size) {
  validate_ring(block.header, slot_size, sizeof(Control),
                block.shm.name().empty() ? "(anonymous)" : block.shm.name());
  return block;
}

// Copies a trivially copyable value as atomic 64-bit words, so that a
// concurrent writer is a defined (if useless) race that the caller detects
// with a sequence number. Words are in shared memory, 8-byte aligned.
// Orders: each word store is a release and each word load an acquire. That
// is what a seqlock needs without fences (H.-J. Boehm, "Can seqlocks get
// along with programming language memory models?", 2012): a reader whose
// acquire load reads a word stored after the writer's "odd" sequence store
// then re-reads a sequence number at least that odd one, and so rejects the
// copy. On x86-64 both compile to plain MOVs (no cost over relaxed); on
// AArch64 they are LDAR/STLR. TSan understands them (it does not model
// fences).
template <class T>
inline constexpr std::size_t kWords = (sizeof(T) + 7) / 8;

// Word by word straight from/to the object (no bounce through a local
// array: 8-byte stores read back as 16-byte vectors defeat store forwarding
// and cost more than the copy itself). The last word may be partial.
template <class T>
inline void store_words(std::uint64_t* dst, const T& value) noexcept {
  const auto* src = reinterpret_cast<const unsigned char*>(&value);
#pragma GCC unroll 16
  for (std::size_t i = 0; i < sizeof(T) / 8; ++i) {
    std::uint64_t w;
    __builtin_memcpy(&w, src + 8 * i, 8);
    std::atomic_ref<std::uint64_t>(dst[i]).store(w, std::memory_order_release);
  }
  if constexpr (sizeof(T) % 8 != 0) {
    std::uint64_t w = 0;
    __builtin_memcpy(&w, src + 8 * (sizeof(T) / 8), sizeof(T) % 8);
    std::atomic_ref<std::uint64_t>(dst[sizeof(T) / 8]).store(w, std::memory_order_release);
  }
}

template <class T>
inline void load_words(const std::uint64_t* src, T& out) noexcept {
  auto* dst = reinterpret_cast<unsigned char*>(&out);
  auto word = [src](std::size_t i) {
    return std::atomic_ref<std::uint64_t>(const_cast<std::uint64_t&>(src[i])).load(std::memory_order_acquire);
  };
#pragma GCC unroll 16
  for (std::size_t i = 0; i < sizeof(T) / 8; ++i) {
    const std::uint64_t w = word(i);
    __builtin_memcpy(dst + 8 * i, &w, 8);
  }
  if constexpr (sizeof(T) % 8 != 0) {
    const std::uint64_t w = word(sizeof(T) / 8);
    __builtin_memcpy(dst + 8 * (sizeof(T) / 8), &w, sizeof(T) % 8);
  }
}

template <class T>
inline std::optional<std::chrono::steady_clock::time_point> deadline_after(T timeout) noexcept {
  return detail::deadline_after(timeout);  // saturating: duration::max() waits forever
}

}  // namespace shmkit::lockfree_detail

// Readable rejection of element types that cannot live in shared memory.
#define SHMKIT_LOCKFREE_CHECK_ELEMENT(T)                                                   \
  static_assert(std::is_trivially_copyable_v<T>,                                           \
                "shmkit lock-free structures copy elements as bytes between processes: T " \
                "must be trivially copyable (no pointers to the heap, no std::string)");   \
  static_assert(!std::is_const_v<T> && !std::is_volatile_v<T>,                             \
                "use a plain (non-const, non-volatile) element type")
