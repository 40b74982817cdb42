// shmkit/lockfree/mpmc_queue.hpp — MpmcQueue<T>: a bounded multi-producer
// multi-consumer queue in a named block (Dmitry Vyukov's bounded queue, as in
// rigtorp/MPMCQueue and xenium's vyukov_bounded_queue), usable by unrelated
// processes, that survives a claimant killed mid-operation.
//
// Contract
//   * Any number of producers and consumers, in any processes (of one PID
//     namespace: claimants are judged alive by pid and start time). Capacity:
//     a power of two >= 2 fixed at create(). T: trivially copyable.
//   * Algorithm: slot i holds a sequence number. For position p (a 64-bit
//     counter, slot p & mask), seq == p means "free for the producer of p",
//     seq == p + 1 "full, for the consumer of p", and the consumer hands the
//     slot to the next lap with seq = p + capacity. A producer claims p with
//     a CAS on tail only after seeing seq == p; a consumer claims p with a CAS
//     on head after seeing seq == p + 1. Each item is thus written and read
//     by exactly one process; FIFO per producer; linearisable at the CASes.
//   * Claims are recorded: right after its CAS a claimant stores its identity
//     (pid, start time) and the claim (position, role) in the slot, then
//     checks the slot's seq once more (an asymmetric-fence pairing, see
//     unblock()). Bits 62/63 of seq are flags no position reaches: kFenced (a
//     survivor is about to step over an unrecorded claim) and kSkipped (a
//     dead producer's slot: its consumer releases it without reading).
//   * Progress: try_push/try_pop are lock-free (a CAS loop that retries only
//     when another side made progress) but not wait-free: a producer stalled
//     between its CAS and its publishing store delays consumers of that slot
//     (they see it empty) for as long as it is alive. push/pop spin, then
//     sleep on a shared futex word in slices of kLostWakeRecheck (a notifier
//     killed before its wake costs a sleeper one slice); *_for/*_until return
//     false at the deadline. Nothing throws after create/attach.
//   * Crash semantics (Aeron's log-buffer unblocker is the model). A claimant
//     killed between its claim and its publish/release is found by any
//     survivor that waits (push/pop/…_for/…_until, between sleep slices) or
//     calls unblock(): a producer's slot is marked skipped (consumers step
//     over it), a consumer's slot is handed to the next lap. Each is counted
//     once in the block, readable with losses(): `producer_claims_skipped`
//     (items never published: a dead producer's item is lost) and
//     `consumer_claims_released` (items a dead consumer had claimed and never
//     returned: lost, or processed by it just before it died). A claim not
//     yet recorded (killed in the few instructions between the CAS and the
//     record) is stepped over after kUnrecordedClaimGrace; if its claimant
//     was only delayed, its check sees the step-over and it retries with a
//     new position (its item is not lost; the skip is still counted). So no
//     survivor waits on a dead claimant for more than about
//     kUnrecordedClaimGrace plus one slice. A stopped (SIGSTOP) claimant is
//     alive: its slot waits for it; so does one that /proc hides from the
//     survivor (hidepid), which then behaves as a stall until the claimant
//     is gone. Outside those windows a kill loses nothing committed. A
//     survivor that uses only try_ calls must call unblock() itself when it
//     finds the queue empty (or full) for long.
//   * Untrusted block: positions are masked before addressing; a forged
//     sequence number makes try_ calls return false rather than loop; a
//     forged claim record can make unblock() skip or release a slot (that
//     peer could corrupt the data anyway), never touch memory outside it.
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
#include "shmkit/lockfree/detail/common.hpp"
#include "shmkit/tracker.hpp"
#include "shmkit/typed_block.hpp"

namespace shmkit {

namespace lockfree_detail {

// A process's identity as a claimant: pid in the high 32 bits, the low 32
// bits of its start time (clock ticks since boot) below. 0: unknown.
inline std::atomic<std::uint64_t> g_claimant_id{0};

inline std::uint64_t make_claimant_id(pid_t pid, std::uint64_t start) noexcept {
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(pid)) << 32) | (start & 0xffffffffu);
}

// Slow path of claimant_id(): computes it once per process; a forked child
// computes its own (the atfork handler clears the cache).
[[gnu::noinline, gnu::cold]] inline std::uint64_t compute_claimant_id() noexcept {
  static const bool registered = [] {
    return ::pthread_atfork(nullptr, nullptr, [] { g_claimant_id.store(0, std::memory_order_relaxed); }) == 0;
  }();
  (void)registered;
  const pid_t pid = ::getpid();
  const std::uint64_t id = make_claimant_id(pid, tracker::process_start_time(pid));
  // relaxed: a per-process cache of a value every thread computes alike.
  g_claimant_id.store(id, std::memory_order_relaxed);
  return id;
}

inline std::uint64_t claimant_id() noexcept {
  const std::uint64_t id = g_claimant_id.load(std::memory_order_relaxed);
  return id != 0 ? id : compute_claimant_id();
}

// Whether the process a claim names may still run. Dead: no such pid, a
// zombie, or a different start time (the pid was reused). When /proc hides
// the process (hidepid, another user's) it counts as alive: a survivor then
// waits rather than step over a claimant that may still write.
inline bool claimant_alive(std::uint64_t id) noexcept {
  const auto pid = static_cast<pid_t>(id >> 32);
  if (pid <= 0) return false;
  return !tracker::task_has_exited(pid, id & 0xffffffffu, 0xffffffffu);
}

}  // namespace lockfree_detail

struct MpmcControl {
  alignas(lockfree_detail::kFalseSharingRange) std::atomic<std::uint64_t> tail;  // producers claim
  alignas(lockfree_detail::kFalseSharingRange) std::atomic<std::uint64_t> head;  // consumers claim
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
  std::atomic<std::uint64_t> seq;
  std::atomic<std::uint64_t> claim;     // 2 * position + role + 1 of the last recorded claim; 0: none
  std::atomic<std::uint64_t> claimant;  // that claimant's identity (pid, start time)
  T value;
};

// The slot layout's version, in the header's param[1] (1 was the layout
// without claim records; its blocks are refused at attach).
inline constexpr std::uint64_t kMpmcLayout = 2;

// What survivors stepped over in a queue's life (see the contract).
struct MpmcLosses {
  std::uint64_t producer_claims_skipped = 0;   // claimed, never published
  std::uint64_t consumer_claims_released = 0;  // claimed by a dead consumer, never returned
  friend bool operator==(const MpmcLosses&, const MpmcLosses&) = default;
};

// What one unblock() did.
enum class MpmcUnblock : std::uint8_t {
  none,               // nothing stalled by a dead claimant
  skipped_producer,   // a dead producer's slot was marked skipped
  released_consumer,  // a dead consumer's slot was handed to the next lap
};

template <class T>
class MpmcQueue {
  SHMKIT_LOCKFREE_CHECK_ELEMENT(T);
  using Slot = MpmcSlot<T>;
  static_assert(std::is_standard_layout_v<Slot>, "a slot is read by other processes");

  static constexpr std::uint64_t kSkipped = std::uint64_t{1} << 63;
  static constexpr std::uint64_t kFenced = std::uint64_t{1} << 62;
  static constexpr std::uint64_t kProducer = 0, kConsumer = 1;
  static constexpr std::uint64_t tag(std::uint64_t pos, std::uint64_t role) noexcept {
    return 2 * pos + role + 1;
  }

 public:
  using value_type = T;
  static constexpr BlockKind kKind = BlockKind::mpmc_queue;
  // How long a survivor waits on a claim that was never recorded (its
  // claimant died in the instructions between its CAS and its record, or is
  // that slow) before stepping over it.
  static constexpr std::chrono::milliseconds kUnrecordedClaimGrace{500};

  static MpmcQueue create(std::string_view name, std::uint64_t capacity) {
    if (capacity < 2) {
      // seq == p + 1 would mean both "full for p" and "free for p + 1".
      throw std::invalid_argument("shmkit: cannot create block \"" + std::string(name) +
                                  "\": capacity " + std::to_string(capacity) +
                                  " is not a power of two >= 2 (MpmcQueue)");
    }
    BlockSpec spec =
        lockfree_detail::ring_spec<T, MpmcControl>(kKind, capacity, sizeof(Slot), name);
    spec.param[1] = kMpmcLayout;
    TypedBlock b = create_typed_block(
        name, spec, [capacity](std::span<std::byte> prefix, std::span<std::byte> payload) {
          new (prefix.data()) MpmcControl();
          auto* slots = reinterpret_cast<Slot*>(payload.data());
          for (std::uint64_t i = 0; i < capacity; ++i) {
            // relaxed: published by create_typed_block's release of kReady.
            slots[i].seq.store(i, std::memory_order_relaxed);
            slots[i].claim.store(0, std::memory_order_relaxed);
            slots[i].claimant.store(0, std::memory_order_relaxed);
          }
        });
    return MpmcQueue(std::move(b));
  }

  static MpmcQueue attach(std::string_view name, const AttachOptions& options = AttachOptions()) {
    return MpmcQueue(checked(lockfree_detail::attach_ring<T, MpmcControl>(name, kKind, sizeof(Slot), options)));
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
    // relaxed: the position is only a hint; the slot's seq (1) decides.
    std::uint64_t pos = ctl_->tail.load(std::memory_order_relaxed);
    for (;;) {
      Slot& s = slots_[pos & mask_];
      // (1) acquire: pairs with (4); the consumer of the previous lap has
      // finished reading the slot.
      const std::uint64_t seq = s.seq.load(std::memory_order_acquire);
      const auto diff = static_cast<std::int64_t>(seq - pos);
      if (diff == 0) {
        // relaxed: the slot's seq, not tail, carries the data.
        if (ctl_->tail.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          SHMKIT_FAULT_POINT(mpmc_push_won);
          if (!record_claim(s, pos, kProducer, pos)) {
            // A survivor stepped over our unrecorded claim: take a new one.
            pos = ctl_->tail.load(std::memory_order_relaxed);
            continue;
          }
          SHMKIT_FAULT_POINT(mpmc_push_claimed);
          std::memcpy(&s.value, &value, sizeof(T));
          // (2) release: pairs with (3); the value is written before the
          // consumer sees seq == pos + 1.
          s.seq.store(pos + 1, std::memory_order_release);
          SHMKIT_FAULT_POINT(mpmc_push_published);
          lockfree_detail::notify(ctl_->not_empty, asym_);
          return true;
        }
      } else if (diff < 0) {
        return false;  // full: the slot still holds the previous lap's item
      } else {
        const std::uint64_t now = ctl_->tail.load(std::memory_order_relaxed);
        if (now == pos) return false;  // forged seq (or flags): no producer moved on
        pos = now;
      }
    }
  }

  [[nodiscard]] bool try_pop(T& out) noexcept {
    std::uint64_t pos = ctl_->head.load(std::memory_order_relaxed);
    for (;;) {
      Slot& s = slots_[pos & mask_];
      // (3) acquire: pairs with (2) (and with (6) for a skipped slot).
      const std::uint64_t seq = s.seq.load(std::memory_order_acquire);
      const auto diff = static_cast<std::int64_t>(seq - (pos + 1));
      if (diff == 0) {
        if (ctl_->head.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          SHMKIT_FAULT_POINT(mpmc_pop_won);
          if (!record_claim(s, pos, kConsumer, pos + 1)) {
            // A survivor released our unrecorded claim (and counted the
            // item lost): take the next one.
            pos = ctl_->head.load(std::memory_order_relaxed);
            continue;
          }
          SHMKIT_FAULT_POINT(mpmc_pop_claimed);
          std::memcpy(&out, &s.value, sizeof(T));
          // (4) release: pairs with (1); our read is done before the next
          // lap's producer writes.
          s.seq.store(pos + mask_ + 1, std::memory_order_release);
          SHMKIT_FAULT_POINT(mpmc_pop_released);
          lockfree_detail::notify(ctl_->not_full, asym_);
          return true;
        }
      } else if (seq == ((pos + 1) | kSkipped)) {
        // A dead producer's slot: claim it like an item and release it
        // unread (its loss was counted when it was marked).
        if (ctl_->head.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          if (record_claim(s, pos, kConsumer, (pos + 1) | kSkipped)) {
            s.seq.store(pos + mask_ + 1, std::memory_order_release);  // (4) as above
            lockfree_detail::notify(ctl_->not_full, asym_);
          }
          pos = ctl_->head.load(std::memory_order_relaxed);
        }
      } else if (diff < 0) {
        return false;  // empty (or the slot's producer has not published)
      } else {
        const std::uint64_t now = ctl_->head.load(std::memory_order_relaxed);
        if (now == pos) return false;  // forged seq
        pos = now;
      }
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
  // dead claimant in their way costs them a bounded time.
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

  // Looks once at the slot at head (a producer's unpublished claim) and the
  // one at tail (a consumer's unreleased claim of the previous lap); steps
  // over a claim whose claimant is dead, or that was never recorded and has
  // been seen for kUnrecordedClaimGrace by this thread. For callers that use
  // only try_ calls (the blocking forms call it themselves). Not on any fast
  // path: it may read /proc.
  MpmcUnblock unblock() noexcept {
    const std::uint64_t h = ctl_->head.load(std::memory_order_acquire);
    const std::uint64_t t = ctl_->tail.load(std::memory_order_acquire);
    if (t != h && t - h <= capacity() &&
        unblock_at(h, kProducer, h, (h + 1) | kSkipped, ctl_->producer_claims_skipped, ctl_->not_empty)) {
      return MpmcUnblock::skipped_producer;
    }
    const std::uint64_t p = t - capacity();  // the previous lap at tail
    if (t >= capacity() && h > p) {
      const std::uint64_t seq = slots_[p & mask_].seq.load(std::memory_order_acquire);
      if (seq == p + 1 &&
          unblock_at(p, kConsumer, p + 1, p + capacity(), ctl_->consumer_claims_released, ctl_->not_full)) {
        return MpmcUnblock::released_consumer;
      }
      // A consumer that died stepping over a skipped slot lost nothing new.
      if (seq == ((p + 1) | kSkipped)) {
        std::atomic<std::uint64_t> uncounted{0};
        if (unblock_at(p, kConsumer, (p + 1) | kSkipped, p + capacity(), uncounted, ctl_->not_full)) {
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

  // A snapshot (positions move concurrently).
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

  // Records our claim of `pos` in `s`, then checks that no survivor is
  // stepping over it: (5) our record, light fence, re-read of seq pairs with
  // unblock's fence-bit CAS, heavy fence, read of the record (7): of the two
  // sides at least one sees the other (store-buffer pairing, as in
  // lockfree_detail's sleep/wake protocol). `expect` is the seq our CAS saw.
  // False: a survivor stepped over the claim; the slot is no longer ours.
  bool record_claim(Slot& s, std::uint64_t pos, std::uint64_t role, std::uint64_t expect) noexcept {
    // relaxed: ordered before the claim by its release.
    s.claimant.store(lockfree_detail::claimant_id(), std::memory_order_relaxed);
    // (5) release: pairs with (7); a survivor that reads this claim reads
    // our identity with it.
    s.claim.store(tag(pos, role), std::memory_order_release);
    lockfree_detail::light_fence(asym_);  // pairs with unblock_at's heavy_fence
    std::uint64_t seq = s.seq.load(std::memory_order_acquire);
    for (;;) {
      if (seq == expect) return true;
      // A survivor's tentative fence: take our slot back (its commit CAS
      // then fails).
      if (seq == (expect | kFenced)) {
        if (s.seq.compare_exchange_strong(seq, expect, std::memory_order_acq_rel)) return true;
        continue;  // seq reloaded by the failed CAS
      }
      return false;  // stepped over (or forged: give the slot up)
    }
  }

  // Steps over the claim of `pos` by `role` if its claimant is dead, or if
  // it is unrecorded and this thread has watched it for the grace period:
  // CAS seq from `stuck` to `target` (directly when the dead claimant is
  // recorded; through the kFenced handshake when it is not). Counts once.
  bool unblock_at(std::uint64_t pos, std::uint64_t role, std::uint64_t stuck, std::uint64_t target,
                  std::atomic<std::uint64_t>& counter, lockfree_detail::WaitSlot& wake) noexcept {
    Slot& s = slots_[pos & mask_];
    if (s.seq.load(std::memory_order_acquire) != stuck) return false;
    // (7) acquire: pairs with (5).
    if (s.claim.load(std::memory_order_acquire) == tag(pos, role)) {
      if (lockfree_detail::claimant_alive(s.claimant.load(std::memory_order_relaxed))) return false;
      std::uint64_t expected = stuck;
      // (6) release: pairs with (3)/(1); acq_rel as every RMW here.
      if (!s.seq.compare_exchange_strong(expected, target, std::memory_order_acq_rel)) return false;
    } else {
      // Unrecorded: wait out the grace period (watched per thread).
      struct Watch {
        const void* slot = nullptr;
        std::uint64_t stuck = 0;
        std::chrono::steady_clock::time_point since{};
      };
      thread_local Watch watch[2];
      Watch& w = watch[role];
      const auto now = std::chrono::steady_clock::now();
      if (w.slot != &s || w.stuck != stuck) {
        w = Watch{&s, stuck, now};
        return false;
      }
      if (now - w.since < kUnrecordedClaimGrace) return false;
      w = Watch{};
      std::uint64_t expected = stuck;
      if (!s.seq.compare_exchange_strong(expected, stuck | kFenced, std::memory_order_acq_rel)) return false;
      lockfree_detail::heavy_fence();  // pairs with record_claim's light fence
      if (s.claim.load(std::memory_order_acquire) == tag(pos, role)) {
        // Recorded meanwhile: its claimant is alive (or will be judged so
        // next time); give the slot back unless it took it back already.
        expected = stuck | kFenced;
        (void)s.seq.compare_exchange_strong(expected, stuck, std::memory_order_acq_rel);
        return false;
      }
      expected = stuck | kFenced;
      if (!s.seq.compare_exchange_strong(expected, target, std::memory_order_acq_rel)) return false;
    }
    counter.fetch_add(1, std::memory_order_relaxed);
    lockfree_detail::notify(wake, asym_);
    return true;
  }

  bool push_until_opt(const T& value, std::optional<std::chrono::steady_clock::time_point> deadline) noexcept {
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
  bool asym_;
};

}  // namespace shmkit
