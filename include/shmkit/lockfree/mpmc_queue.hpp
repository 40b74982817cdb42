// shmkit/lockfree/mpmc_queue.hpp — MpmcQueue<T>: a bounded multi-producer
// multi-consumer queue in a named block (Dmitry Vyukov's bounded queue, as in
// rigtorp/MPMCQueue and xenium's vyukov_bounded_queue, with the claim made
// on the slot), usable by unrelated processes, that survives a claimant
// killed mid-operation and waits for one that is only stopped.
//
// Contract
//   * Any number of producers and consumers, in any processes (of one PID
//     namespace: claimants are judged by pid and start time). Capacity: a
//     power of two >= 2 fixed at create(). T: trivially copyable.
//   * Algorithm: slot i holds one 64-bit word. For position p (a counter,
//     slot p & mask, below 2^62), the word p means "free for the producer
//     of p", p + 1 "full, for the consumer of p", and the consumer hands the
//     slot to the next lap with p + capacity. A claimant takes its position
//     with one CAS of that word, from p (producer) or p + 1 (consumer), to a
//     claim word that names it: bit 63, its role, the low 7 bits of p's lap
//     (p / capacity) and its identity (pid: 22 bits, pid_max's limit; start
//     time: the low 32 bits). Only then does it move tail (head) from p to
//     p + 1 with a CAS; anyone who finds the slot at tail (head) claimed for
//     that lap moves it for it (helping), so a claimant stalled or dead
//     between the two CASes holds up no one else. So a claim is recorded in
//     the instant it is made: there is no unrecorded claim, and no record a
//     late writer could overwrite. Each item is written and read by exactly
//     one process; FIFO per producer; linearisable at the slot CASes.
//   * Hot path, against the plain Vyukov queue: one more CAS per push (the
//     slot claim; tail's CAS stays) and per pop (likewise); nothing else
//     (no /proc, no fence, no extra store: a process computes its identity
//     once, and after fork()).
//   * Progress: try_push/try_pop are lock-free (a CAS loop that retries only
//     when another side made progress) but not wait-free: a claimant stalled
//     between its claim and its publish (release) holds that one slot: the
//     consumers of a producer's slot see the queue empty there, the
//     producers of a consumer's slot one lap on see it full, for as long as
//     it is alive and stopped. push/pop spin, then sleep on a shared futex
//     word in slices of kLostWakeRecheck (a notifier killed before its wake
//     costs a sleeper one slice); *_for/*_until return false at the
//     deadline, so a caller that must not wait on a stalled peer bounds its
//     wait. Nothing throws after create/attach.
//   * Crash semantics. Killed (any signal that ends the process, at any
//     instruction): a claim whose claimant is proven dead (no such pid, a
//     zombie, or the pid now names a process with another start time) is
//     stepped over by any survivor that waits (push/pop/..._for/..._until,
//     between sleep slices) or calls unblock(), within one slice: a dead
//     producer's slot is marked skipped (consumers release it unread), a
//     dead consumer's slot is handed to the next lap. What is lost is
//     exactly the item in the dead claimant's hands, counted once in the
//     block (losses()): `producer_claims_skipped` (an item whose push never
//     returned true) and `consumer_claims_released` (an item its dead
//     consumer had claimed: never returned, or returned just before the
//     death). A producer that dies after publishing, or a consumer after
//     releasing, loses nothing. Stopped (SIGSTOP, a frozen cgroup, a
//     debugger, a throttled or slow process), for any length of time: it is
//     alive, never stepped over, and its slot waits for it; when it
//     resumes it finishes its own operation (its push delivered once, its
//     pop returning the item it claimed) and nothing is counted lost. Also
//     counted alive, and so waited for: a claimant that /proc hides from
//     the survivor (hidepid, another user's), and one whose identity could
//     not be read (pid field 0). A survivor that uses only try_ calls must
//     call unblock() itself when it finds the queue empty (or full) for
//     long.
//   * Untrusted block: positions are masked before addressing; a forged
//     word makes try_ calls return false rather than loop; a forged claim
//     naming a dead process can make unblock() skip or release that slot (a
//     peer that can write the block could corrupt the data anyway), one
//     naming a live one holds that slot; neither touches memory outside it.
#pragma once

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>
#include <pthread.h>
#include <span>
#include <string>
#include <string_view>
#include <unistd.h>

#include "shmkit/detail/fault.hpp"
#include "shmkit/detail/process.hpp"
#include "shmkit/lockfree/detail/common.hpp"
#include "shmkit/typed_block.hpp"

namespace shmkit {

namespace lockfree_detail {

// A process's identity as a claimant, as it sits in the low 54 bits of a
// claim word: pid in bits 32-53 (pids stay below 2^22, Linux's
// PID_MAX_LIMIT), the low 32 bits of its start time (clock ticks after
// boot) below. A pid field of 0 means "unknown": never judged dead.
inline constexpr std::uint64_t kClaimantPidLimit = std::uint64_t{1} << 22;
inline constexpr std::uint64_t kClaimantIdMask = (kClaimantPidLimit << 32) - 1;

// This process's identity, computed once (0: not yet).
inline std::atomic<std::uint64_t> g_claimant_id{0};

inline std::uint64_t make_claimant_id(pid_t pid, std::uint64_t start) noexcept {
  const auto p = static_cast<std::uint64_t>(static_cast<std::uint32_t>(pid));
  return (p < kClaimantPidLimit ? p << 32 : 0) | (start & 0xffffffffu);
}

// Slow path of claimant_id(): computes it once per process; a forked child
// computes its own (the atfork handler clears the cache).
[[gnu::noinline, gnu::cold]] inline std::uint64_t compute_claimant_id() noexcept {
  static const bool registered = [] {
    return ::pthread_atfork(nullptr, nullptr, [] { g_claimant_id.store(0, std::memory_order_relaxed); }) == 0;
  }();
  (void)registered;
  const pid_t pid = ::getpid();
  const std::uint64_t id = make_claimant_id(pid, process::start_time(pid));
  // relaxed: a per-process cache of a value every thread computes alike.
  g_claimant_id.store(id, std::memory_order_relaxed);
  return id;
}

inline std::uint64_t claimant_id() noexcept {
  const std::uint64_t id = g_claimant_id.load(std::memory_order_relaxed);
  return id != 0 ? id : compute_claimant_id();
}

// Whether the process a claim names has certainly exited: no such pid, a
// zombie, or a different start time (the pid was reused), judged by
// process::has_exited (shmkit/detail/process.hpp). Not when /proc hides the process (hidepid,
// another user's), nor when the identity is unknown (pid field 0): a
// survivor then waits rather than step over a claimant that may still
// write.
inline bool claimant_dead(std::uint64_t id) noexcept {
  const auto pid = static_cast<pid_t>((id & kClaimantIdMask) >> 32);
  if (pid <= 0) return false;
  return process::has_exited(pid, id & 0xffffffffu, 0xffffffffu);
}

}  // namespace lockfree_detail

struct MpmcControl {
  alignas(lockfree_detail::kFalseSharingRange) std::atomic<std::uint64_t> tail;  // producers' next position
  alignas(lockfree_detail::kFalseSharingRange) std::atomic<std::uint64_t> head;  // consumers' next position
  alignas(lockfree_detail::kFalseSharingRange) lockfree_detail::WaitSlot not_empty;
  lockfree_detail::WaitSlot not_full;
  // What survivors stepped over (MpmcQueue::losses()); written only then.
  alignas(lockfree_detail::kFalseSharingRange) std::atomic<std::uint64_t> producer_claims_skipped;
  std::atomic<std::uint64_t> consumer_claims_released;

  MpmcControl() = default;
  // Lives in a block at a fixed place: copying or moving it means nothing.
  MpmcControl(const MpmcControl&) = delete;
  MpmcControl& operator=(const MpmcControl&) = delete;
};
static_assert(offsetof(MpmcControl, head) - offsetof(MpmcControl, tail) >=
                  lockfree_detail::kFalseSharingRange,
              "producer and consumer positions must not share a cache line (pair)");
static_assert(std::is_standard_layout_v<MpmcControl>, "MpmcControl is read by other processes");
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

template <class T>
struct MpmcSlot {
  std::atomic<std::uint64_t> seq;  // a position state or a claim word (see the contract)
  T value;
};

// The slot layout's version, in the header's param[1]: 1 had no claim
// records, 2 recorded claims in two more words after the CAS; blocks of
// either are refused at attach (their words mean other things).
inline constexpr std::uint64_t kMpmcLayout = 3;

// What survivors stepped over in a queue's life (see the contract).
struct MpmcLosses {
  std::uint64_t producer_claims_skipped = 0;   // claimed by a dead producer, never published
  std::uint64_t consumer_claims_released = 0;  // claimed by a dead consumer, never released
  friend bool operator==(const MpmcLosses&, const MpmcLosses&) = default;
};

// What one unblock() did.
enum class MpmcUnblock : std::uint8_t {
  none,               // nothing held up by a dead claimant
  skipped_producer,   // a dead producer's slot was marked skipped
  released_consumer,  // a dead consumer's slot was handed to the next lap
};

template <class T>
class MpmcQueue {
  SHMKIT_LOCKFREE_CHECK_ELEMENT(T);
  using Slot = MpmcSlot<T>;
  static_assert(std::is_standard_layout_v<Slot>, "a slot is read by other processes");

  // A slot word with bit 63 clear is a position state; kSkipped marks a
  // dead producer's slot ((p + 1) | kSkipped: its consumer releases it
  // unread). With bit 63 set it is a claim: kind, lap, claimant identity.
  static constexpr std::uint64_t kClaim = std::uint64_t{1} << 63;
  static constexpr std::uint64_t kSkipped = std::uint64_t{1} << 62;
  static constexpr std::uint64_t kByConsumer = std::uint64_t{1} << 62;  // in a claim word
  static constexpr std::uint64_t kOfSkipped = std::uint64_t{1} << 61;  // a consumer's claim of a skipped slot
  static constexpr unsigned kLapShift = 54;
  static constexpr std::uint64_t kLapMask = 0x7f;
  static_assert(lockfree_detail::kClaimantIdMask < (std::uint64_t{1} << kLapShift));

  static constexpr bool is_claim(std::uint64_t w) noexcept { return (w & kClaim) != 0; }
  static constexpr bool by_consumer(std::uint64_t w) noexcept { return (w & kByConsumer) != 0; }
  static constexpr std::uint64_t claim_lap(std::uint64_t w) noexcept { return (w >> kLapShift) & kLapMask; }

 public:
  using value_type = T;
  static constexpr BlockKind kKind = BlockKind::mpmc_queue;

  static MpmcQueue create(std::string_view name, std::uint64_t capacity) {
    if (capacity < 2) {
      // p + 1 would mean both "full for p" and "free for p + 1".
      throw std::invalid_argument("shmkit: cannot create block \"" + std::string(name) + "\": capacity " +
                                  std::to_string(capacity) + " is not a power of two >= 2 (MpmcQueue)");
    }
    BlockSpec spec = lockfree_detail::ring_spec<T, MpmcControl>(kKind, capacity, sizeof(Slot), name);
    spec.param[1] = kMpmcLayout;
    TypedBlock b =
        create_typed_block(name, spec, [capacity](std::span<std::byte> prefix, std::span<std::byte> payload) {
          new (prefix.data()) MpmcControl();
          auto* slots = reinterpret_cast<Slot*>(payload.data());
          for (std::uint64_t i = 0; i < capacity; ++i) {
            // relaxed: published by create_typed_block's release of kReady.
            slots[i].seq.store(i, std::memory_order_relaxed);
          }
        });
    return MpmcQueue(std::move(b));
  }

  static MpmcQueue attach(std::string_view name, const AttachOptions& options = AttachOptions()) {
    return MpmcQueue(
        checked(lockfree_detail::attach_ring<T, MpmcControl>(name, kKind, sizeof(Slot), options)));
  }

  // Adopts a block whose typed header the caller already validated for
  // kind MpmcQueue and element T (open_typed_region / attach_typed_block), e.g.
  // an anonymous block shared with forked children; checks the ring's own
  // fields as attach() does.
  static MpmcQueue from_block(TypedBlock block) {
    return MpmcQueue(checked(lockfree_detail::adopt_ring<MpmcControl>(std::move(block), sizeof(Slot))));
  }

  MpmcQueue(MpmcQueue&&) noexcept = default;
  MpmcQueue& operator=(MpmcQueue&&) noexcept = default;

  const std::string& name() const noexcept { return block_.shm.name(); }
  void unlink() { block_.shm.unlink(); }
  std::uint64_t capacity() const noexcept { return mask_ + 1; }

  [[nodiscard]] bool try_push(const T& value) noexcept {
    const std::uint64_t me = lockfree_detail::claimant_id();
    // relaxed: the position is only a hint; the slot's word (1) decides.
    std::uint64_t pos = ctl_->tail.load(std::memory_order_relaxed);
    for (;;) {
      Slot& s = slots_[pos & mask_];
      // (1) acquire: pairs with (4) and (8); the consumer of the previous
      // lap has finished reading the slot.
      std::uint64_t w = s.seq.load(std::memory_order_acquire);
      if (w == pos) {
        // (5) release: pairs with (7); whoever reads our claim also sees
        // the tail we read before it (what help() and unblock() rely on).
        if (s.seq.compare_exchange_weak(w, claim_word(pos, 0, me), std::memory_order_release,
                                        std::memory_order_relaxed)) {
          SHMKIT_FAULT_POINT(mpmc_push_won);
          advance(ctl_->tail, pos);
          SHMKIT_FAULT_POINT(mpmc_push_claimed);
          std::memcpy(&s.value, &value, sizeof(T));
          // (2) release: pairs with (3); the value is written before the
          // consumer sees pos + 1. A plain store: no one else writes a slot
          // a live claimant holds.
          s.seq.store(pos + 1, std::memory_order_release);
          SHMKIT_FAULT_POINT(mpmc_push_published);
          lockfree_detail::notify(ctl_->not_empty, asym_);
          return true;
        }
        continue;  // another producer took it (or a spurious failure): look again
      }
      if (is_claim(w)) {
        const std::uint64_t lap = lap_of(pos);
        if (!by_consumer(w) && claim_lap(w) == lap) {
          pos = help(ctl_->tail, pos, s, w);  // pos is claimed; tail not yet past it
          continue;
        }
        if (claim_lap(w) == ((lap - 1) & kLapMask)) return false;  // full: the previous lap's claim
      } else if (static_cast<std::int64_t>((w & ~kSkipped) - pos) < 0) {
        return false;  // full: the slot still holds the previous lap's item
      }
      const std::uint64_t now = ctl_->tail.load(std::memory_order_relaxed);
      if (now == pos) return false;  // forged word: no producer moved on
      pos = now;
    }
  }

  [[nodiscard]] bool try_pop(T& out) noexcept {
    const std::uint64_t me = lockfree_detail::claimant_id();
    std::uint64_t pos = ctl_->head.load(std::memory_order_relaxed);
    for (;;) {
      Slot& s = slots_[pos & mask_];
      // (3) acquire: pairs with (2) (and with (8) for a skipped slot).
      std::uint64_t w = s.seq.load(std::memory_order_acquire);
      const bool item = w == pos + 1;
      if (item || w == ((pos + 1) | kSkipped)) {
        // A dead producer's skipped slot is claimed like an item and
        // released unread (its loss was counted when it was marked).
        const std::uint64_t kind = item ? kByConsumer : kByConsumer | kOfSkipped;
        if (s.seq.compare_exchange_weak(w, claim_word(pos, kind, me), std::memory_order_release,
                                        std::memory_order_relaxed)) {  // (5) as above
          SHMKIT_FAULT_POINT(mpmc_pop_won);
          advance(ctl_->head, pos);
          SHMKIT_FAULT_POINT(mpmc_pop_claimed);
          if (item) std::memcpy(&out, &s.value, sizeof(T));
          // (4) release: pairs with (1); our read is done before the next
          // lap's producer writes.
          s.seq.store(pos + mask_ + 1, std::memory_order_release);
          SHMKIT_FAULT_POINT(mpmc_pop_released);
          lockfree_detail::notify(ctl_->not_full, asym_);
          if (item) return true;
          pos = ctl_->head.load(std::memory_order_relaxed);
        }
        continue;
      }
      if (is_claim(w)) {
        const std::uint64_t lap = lap_of(pos);
        if (by_consumer(w) && claim_lap(w) == lap) {
          pos = help(ctl_->head, pos, s, w);  // pos is claimed; head not yet past it
          continue;
        }
        // Empty: pos's producer is writing, or the previous lap's consumer
        // still reads the slot (pos's producer has not claimed it).
        if (by_consumer(w) ? claim_lap(w) == ((lap - 1) & kLapMask) : claim_lap(w) == lap) return false;
      } else if (static_cast<std::int64_t>((w & ~kSkipped) - (pos + 1)) < 0) {
        return false;  // empty (the slot waits for pos's producer)
      }
      const std::uint64_t now = ctl_->head.load(std::memory_order_relaxed);
      if (now == pos) return false;  // forged word
      pos = now;
    }
  }

  // Batch forms: as many as fit / are there, one by one (each item is its
  // own linearisation point). Return the count.
  [[nodiscard]] std::size_t try_push(std::span<const T> items) noexcept {
    std::size_t n = 0;
    while (n < items.size() && try_push(items[n])) ++n;
    return n;
  }
  [[nodiscard]] std::size_t try_pop(std::span<T> out) noexcept {
    std::size_t n = 0;
    while (n < out.size() && try_pop(out[n])) ++n;
    return n;
  }

  // Blocking and timed forms. Between sleep slices they run unblock(), so a
  // dead claimant in their way costs them at most a slice; a live one
  // (stopped, slow) is waited for, until the deadline of a timed form.
  void push(const T& value) noexcept { (void)push_until_opt(value, std::nullopt); }
  [[nodiscard]] bool push_until(const T& value, std::chrono::steady_clock::time_point deadline) noexcept {
    return push_until_opt(value, deadline);
  }
  template <class Rep, class Period>
  [[nodiscard]] bool push_for(const T& value, std::chrono::duration<Rep, Period> timeout) noexcept {
    return push_until(value, *lockfree_detail::deadline_after(timeout));
  }
  T pop() noexcept {
    T out{};  // always written below (the untimed wait returns only on success)
    (void)pop_until_opt(out, std::nullopt);
    return out;
  }
  [[nodiscard]] bool pop_until(T& out, std::chrono::steady_clock::time_point deadline) noexcept {
    return pop_until_opt(out, deadline);
  }
  template <class Rep, class Period>
  [[nodiscard]] bool pop_for(T& out, std::chrono::duration<Rep, Period> timeout) noexcept {
    return pop_until(out, *lockfree_detail::deadline_after(timeout));
  }

  // Looks once at the slot at head (a producer's unpublished claim holds up
  // consumers there) and at the one a lap behind tail (a consumer's
  // unreleased claim holds up producers there); steps over a claim whose
  // claimant is proven dead. For callers that use only try_ calls (the
  // blocking forms call it themselves). Not on any fast path: it may read
  // /proc.
  MpmcUnblock unblock() noexcept {
    // (9) acquire, each load of head/tail here and in help(): pairs with
    // (6); a claim word read after it is of that position, not of one a
    // multiple of 128 laps away (the lap bits would match).
    const std::uint64_t h = ctl_->head.load(std::memory_order_acquire);
    Slot& hs = slots_[h & mask_];
    // (7) acquire: pairs with (5).
    const std::uint64_t hw = hs.seq.load(std::memory_order_acquire);
    if (is_claim(hw) && !by_consumer(hw) && claim_lap(hw) == lap_of(h) &&
        lockfree_detail::claimant_dead(hw) && ctl_->head.load(std::memory_order_acquire) == h) {
      // A dead producer's claim of h (head still at h, so of h and no
      // other lap). It may have died before moving tail: move it.
      advance(ctl_->tail, h);
      std::uint64_t expected = hw;
      // (8) release: pairs with (3)/(1); acq_rel as every RMW here.
      if (hs.seq.compare_exchange_strong(expected, (h + 1) | kSkipped, std::memory_order_acq_rel,
                                         std::memory_order_relaxed)) {
        ctl_->producer_claims_skipped.fetch_add(1, std::memory_order_relaxed);
        lockfree_detail::notify(ctl_->not_empty, asym_);
        return MpmcUnblock::skipped_producer;
      }
    }
    const std::uint64_t t = ctl_->tail.load(std::memory_order_acquire);  // (9)
    if (t >= capacity()) {
      const std::uint64_t p = t - capacity();  // the previous lap at tail
      Slot& ts = slots_[p & mask_];
      const std::uint64_t tw = ts.seq.load(std::memory_order_acquire);  // (7)
      if (is_claim(tw) && by_consumer(tw) && claim_lap(tw) == lap_of(p) &&
          lockfree_detail::claimant_dead(tw) && ctl_->tail.load(std::memory_order_acquire) == t) {
        // A dead consumer's claim of p. It may have died before moving
        // head: move it, then hand the slot to the next lap.
        advance(ctl_->head, p);
        std::uint64_t expected = tw;
        if (ts.seq.compare_exchange_strong(expected, p + capacity(), std::memory_order_acq_rel,
                                           std::memory_order_relaxed)) {  // (8)
          // A consumer that died stepping over a skipped slot lost nothing new.
          if ((tw & kOfSkipped) == 0) ctl_->consumer_claims_released.fetch_add(1, std::memory_order_relaxed);
          lockfree_detail::notify(ctl_->not_full, asym_);
          return MpmcUnblock::released_consumer;
        }
      }
    }
    return MpmcUnblock::none;
  }

  // Totals over the queue's life, all processes.
  MpmcLosses losses() const noexcept {
    return {ctl_->producer_claims_skipped.load(std::memory_order_relaxed),
            ctl_->consumer_claims_released.load(std::memory_order_relaxed)};
  }

  // A snapshot (positions move concurrently; each may trail its claims by
  // the claimants between their two CASes).
  std::uint64_t size() const noexcept {
    const std::uint64_t h = ctl_->head.load(std::memory_order_acquire);
    const std::uint64_t t = ctl_->tail.load(std::memory_order_acquire);
    return t > h ? std::min<std::uint64_t>(t - h, capacity()) : 0;
  }
  bool empty() const noexcept { return size() == 0; }

 private:
  explicit MpmcQueue(TypedBlock b) noexcept
      : block_(std::move(b)),
        ctl_(reinterpret_cast<MpmcControl*>(block_.prefix.data())),
        slots_(reinterpret_cast<Slot*>(block_.payload.data())),
        mask_(block_.header.count - 1),
        // count is a validated power of two >= 2: its bit index is log2.
        lap_shift_(static_cast<unsigned>(__builtin_ctzll(block_.header.count))),
        asym_(lockfree_detail::asymmetric_fence_available()) {}

  static TypedBlock checked(TypedBlock b) {
    // Not a ?: of the two: its type would be a temporary std::string.
    std::string_view name = b.shm.name();
    if (name.empty()) name = "(anonymous)";
    if (b.header.param[1] != kMpmcLayout) {
      lockfree_detail::bad_block(name, "MpmcQueue slot layout " + std::to_string(b.header.param[1]) +
                                           ", expected " + std::to_string(kMpmcLayout));
    }
    if (b.header.count < 2) lockfree_detail::bad_block(name, "MpmcQueue capacity below 2");
    return b;
  }

  std::uint64_t lap_of(std::uint64_t pos) const noexcept { return (pos >> lap_shift_) & kLapMask; }
  std::uint64_t claim_word(std::uint64_t pos, std::uint64_t kind, std::uint64_t me) const noexcept {
    return kClaim | kind | (lap_of(pos) << kLapShift) | me;
  }

  // Moves tail (head) from `pos` to pos + 1 unless someone did already.
  // (6) release: pairs with (9); a reader of the new position sees the
  // claim that allowed it.
  static void advance(std::atomic<std::uint64_t>& index, std::uint64_t pos) noexcept {
    std::uint64_t expected = pos;
    (void)index.compare_exchange_strong(expected, pos + 1, std::memory_order_release,
                                        std::memory_order_relaxed);
  }

  // Slot `s` of `pos` holds the claim `w` for pos's lap, and tail (head)
  // seemed not past pos: its claimant has not moved it yet. Moves it for
  // it, once the index is read again as pos and the claim after it (9), so
  // the claim is of pos itself. Returns the position to look at next.
  static std::uint64_t help(std::atomic<std::uint64_t>& index, std::uint64_t pos, Slot& s,
                            std::uint64_t w) noexcept {
    std::uint64_t now = index.load(std::memory_order_acquire);  // (9)
    if (now != pos) return now;
    if (s.seq.load(std::memory_order_acquire) != w) return pos;  // (7): changed; look again
    if (index.compare_exchange_strong(now, pos + 1, std::memory_order_release,
                                      std::memory_order_relaxed)) {  // (6)
      return pos + 1;
    }
    return now;
  }

  bool push_until_opt(const T& value,
                      std::optional<std::chrono::steady_clock::time_point> deadline) noexcept {
    return lockfree_detail::wait_until(
        ctl_->not_full, [&] { return try_push(value); }, deadline, [&] { (void)unblock(); });
  }
  bool pop_until_opt(T& out, std::optional<std::chrono::steady_clock::time_point> deadline) noexcept {
    return lockfree_detail::wait_until(
        ctl_->not_empty, [&] { return try_pop(out); }, deadline, [&] { (void)unblock(); });
  }

  TypedBlock block_;
  MpmcControl* ctl_;
  Slot* slots_;
  std::uint64_t mask_;  // from the validated header snapshot, never re-read
  unsigned lap_shift_;  // log2(capacity)
  bool asym_;
};

}  // namespace shmkit
