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
//     time: the low 32 bits) (or, alone on its side, with a plain store:
//     see below). That CAS is the only read-modify-write of a push or pop
//     when a side is shared: tail (head) is a hint, which the claimant
//     then sets to p + 1 with a plain store. Every position below a hint is
//     taken, and a
//     claimant starts at the hint and walks forward over taken positions
//     (their words say so), so a claimant stalled or dead between its claim
//     and its hint store holds up no one else; a hint may step back (a slow
//     claimant's store after a faster one's), never by a lap. So a claim is
//     recorded in the instant it is made: there is no unrecorded claim, and
//     no record a late writer could overwrite. Each item is written and
//     read by exactly one process; FIFO per producer; linearisable at the
//     slot CASes.
//   * Sole claimant (the hot path of one producer and one consumer): the
//     first thread to push (pop) records itself as its side's owner
//     (owner word: kOwned and its claimant identity; a per-thread token).
//     While it is alone it claims without any read-modify-write: it stores
//     the position in its side's busy word (a reservation: position and,
//     through the owner word, identity), runs the light fence (a compiler
//     barrier; see detail/common.hpp), reads the owner word again and
//     stores the claim word with a plain store. A second thread or process
//     on that side marks the side shared for good (kRevoked) and issues the
//     heavy fence (membarrier) once per handle before it claims: either it
//     sees the reservation and keeps off that position, or the owner sees
//     the mark and claims that position by CAS like everyone. So the
//     reservation is recorded before the claim, and counts as the claim:
//     held while its owner lives (consumers wait at a reserved producer
//     position, producers a lap on at a reserved consumer position, the
//     other side's claimants walk past it), stepped over and counted by
//     unblock() once the owner is proven dead. Without membarrier (old
//     kernels, TSan builds) nobody becomes owner and every claim is the CAS.
//     Hot path, against the plain Vyukov queue (one CAS on tail, a store to
//     the slot): no locked instruction; stores to the slot word (claim,
//     publish or release), the busy word and tail (head) on the side's own
//     line; nothing else (no /proc, no fence: a process computes its
//     identity once, and after fork()). Not reentrant from a signal
//     handler that interrupts the owner thread's own push (pop).
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
//     exactly the item in the dead claimant's hands (a dead sole owner's
//     reservation counts as its claim), counted once in the block
//     (losses()): `producer_claims_skipped` (an item whose push never
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
//     word makes try_ calls return false rather than loop (no walk goes
//     past two laps); a forged claim naming a dead process can make
//     unblock() skip or release that slot (a peer that can write the block
//     could corrupt the data anyway), one naming a live one holds that
//     slot; neither touches memory outside it.
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
#include "shmkit/lockfree/detail/claimant.hpp"
#include "shmkit/lockfree/detail/common.hpp"
#include "shmkit/typed_block.hpp"

namespace shmkit {

struct MpmcControl {
  // Each side's line: its position hint and its sole-claimant record (see
  // the contract): owner (0: none yet; kOwned | the owner's claimant
  // identity; kRevoked added when a second claimant came), the owning
  // thread's token, and busy (position + 1 the owner has reserved, 0: none).
  alignas(lockfree_detail::kFalseSharingRange) std::atomic<std::uint64_t> tail;  // producers' next position
  std::atomic<std::uint64_t> producer_owner;
  std::atomic<std::uint64_t> producer_token;
  std::atomic<std::uint64_t> producer_busy;
  alignas(lockfree_detail::kFalseSharingRange) std::atomic<std::uint64_t> head;  // consumers' next position
  std::atomic<std::uint64_t> consumer_owner;
  std::atomic<std::uint64_t> consumer_token;
  std::atomic<std::uint64_t> consumer_busy;
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
// records, 2 recorded claims in two more words after the CAS, 3 moved
// tail/head by CAS and helping; blocks of any are refused at attach (their
// words or positions mean other things).
inline constexpr std::uint64_t kMpmcLayout = 4;

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
  // The owner words (MpmcControl::producer_owner / consumer_owner).
  static constexpr std::uint64_t kOwned = std::uint64_t{1} << 62;
  static constexpr std::uint64_t kRevoked = std::uint64_t{1} << 63;
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
    // relaxed: the owner word and token are compared with our own values;
    // (10)/(11) order what follows.
    const std::uint64_t own = ctl_->producer_owner.load(std::memory_order_relaxed);
    if (own == (me | kOwned) && ctl_->producer_token.load(std::memory_order_relaxed) == thread_token()) {
      // The sole producer: no other producer claims while this holds.
      const std::uint64_t pos = ctl_->tail.load(std::memory_order_relaxed);  // exact: only we move it
      Slot& s = slots_[pos & mask_];
      std::uint64_t w = s.seq.load(std::memory_order_acquire);  // (1)
      if (w == pos) {
        // (10) the reservation, then the light fence, then the owner word
        // again: pairs with (11) (a second producer's owner-word store,
        // heavy fence, then its reads of busy): either it sees pos reserved
        // and keeps off pos, or we see it came and claim by CAS.
        ctl_->producer_busy.store(pos + 1, std::memory_order_relaxed);
        lockfree_detail::light_fence(asym_);
        const bool alone = ctl_->producer_owner.load(std::memory_order_relaxed) == own;
        // (5) release as the CAS below: a plain store when alone.
        if (alone) {
          s.seq.store(claim_word(pos, 0, me), std::memory_order_release);
        } else if (!s.seq.compare_exchange_strong(w, claim_word(pos, 0, me), std::memory_order_release,
                                                  std::memory_order_relaxed)) {
          ctl_->producer_busy.store(0, std::memory_order_release);
          return try_push_shared(value, me);
        }
        SHMKIT_FAULT_POINT(mpmc_push_won);
        ctl_->tail.store(pos + 1, std::memory_order_release);  // (6)
        SHMKIT_FAULT_POINT(mpmc_push_claimed);
        std::memcpy(&s.value, &value, sizeof(T));
        s.seq.store(pos + 1, std::memory_order_release);  // (2)
        SHMKIT_FAULT_POINT(mpmc_push_published);
        ctl_->producer_busy.store(0, std::memory_order_release);
        lockfree_detail::notify(ctl_->not_empty, asym_);
        return true;
      }
      if (look_producer(pos, w) == Look::blocked) return false;  // full
    } else if ((own & kRevoked) == 0 || !std::atomic_ref<bool>(fenced_).load(std::memory_order_acquire)) {
      if (join(ctl_->producer_owner, ctl_->producer_token, me)) return try_push(value);
    }
    return try_push_shared(value, me);
  }

 private:
  // try_push once producers share the queue (or as a fallback): claims by
  // CAS, keeping off a position the former sole producer reserved.
  bool try_push_shared(const T& value, std::uint64_t me) noexcept {
    // (9) acquire, every load of tail/head: pairs with (6); every position
    // below the hint read was claimed before (the scan relies on it).
    std::uint64_t pos = ctl_->tail.load(std::memory_order_acquire);
    for (std::uint64_t steps = 0;;) {
      Slot& s = slots_[pos & mask_];
      // (1) acquire: pairs with (4) and (8); the consumer of the previous
      // lap has finished reading the slot.
      std::uint64_t w = s.seq.load(std::memory_order_acquire);
      Look look = look_producer(pos, w);
      if (look == Look::mine && reserved(ctl_->producer_busy, pos)) look = Look::taken;
      if (look == Look::mine) {
        // (5) release: pairs with (1), (3) and (7); whoever reads our claim
        // sees every claim below pos (the hint and scan we came by).
        if (s.seq.compare_exchange_weak(w, claim_word(pos, 0, me), std::memory_order_release,
                                        std::memory_order_relaxed)) {
          SHMKIT_FAULT_POINT(mpmc_push_won);
          // (6) release: pairs with (9). A plain store, no CAS: the hint
          // may step back (a claimant slower than the one after it), never
          // by a lap, and never past an unclaimed position.
          ctl_->tail.store(pos + 1, std::memory_order_release);
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
      if (look == Look::blocked) return false;   // full
      if (++steps > scan_limit()) return false;  // a forged block: never loop
      pos = next_position(ctl_->tail, pos, look);
      if (pos == 0) return false;  // a stale view the hint does not resolve
    }
  }

  bool try_pop_shared(T& out, std::uint64_t me) noexcept {
    std::uint64_t pos = ctl_->head.load(std::memory_order_acquire);  // (9)
    for (std::uint64_t steps = 0;;) {
      Slot& s = slots_[pos & mask_];
      // (3) acquire: pairs with (2) (and with (8) for a skipped slot).
      std::uint64_t w = s.seq.load(std::memory_order_acquire);
      Look look = look_consumer(pos, w);
      if (look == Look::mine && reserved(ctl_->consumer_busy, pos)) look = Look::taken;
      if (look == Look::mine || look == Look::mine_skipped) {
        // A dead producer's skipped slot is claimed like an item and
        // released unread (its loss was counted when it was marked).
        const bool item = look == Look::mine;
        const std::uint64_t kind = item ? kByConsumer : kByConsumer | kOfSkipped;
        if (s.seq.compare_exchange_weak(w, claim_word(pos, kind, me), std::memory_order_release,
                                        std::memory_order_relaxed)) {  // (5) as above
          SHMKIT_FAULT_POINT(mpmc_pop_won);
          ctl_->head.store(pos + 1, std::memory_order_release);  // (6) as above
          SHMKIT_FAULT_POINT(mpmc_pop_claimed);
          if (item) std::memcpy(&out, &s.value, sizeof(T));
          // (4) release: pairs with (1); our read is done before the next
          // lap's producer writes.
          s.seq.store(pos + mask_ + 1, std::memory_order_release);
          SHMKIT_FAULT_POINT(mpmc_pop_released);
          lockfree_detail::notify(ctl_->not_full, asym_);
          if (item) return true;
          if (++steps > scan_limit()) return false;
          ++pos;
        }
        continue;
      }
      if (look == Look::blocked) return false;  // empty
      if (++steps > scan_limit()) return false;
      pos = next_position(ctl_->head, pos, look);
      if (pos == 0) return false;
    }
  }

 public:
  [[nodiscard]] bool try_pop(T& out) noexcept {
    const std::uint64_t me = lockfree_detail::claimant_id();
    const std::uint64_t own = ctl_->consumer_owner.load(std::memory_order_relaxed);  // as in try_push
    if (own == (me | kOwned) && ctl_->consumer_token.load(std::memory_order_relaxed) == thread_token()) {
      const std::uint64_t pos = ctl_->head.load(std::memory_order_relaxed);  // exact: only we move it
      Slot& s = slots_[pos & mask_];
      std::uint64_t w = s.seq.load(std::memory_order_acquire);  // (3)
      if (w == pos + 1) {
        ctl_->consumer_busy.store(pos + 1, std::memory_order_relaxed);  // (10) as in try_push
        lockfree_detail::light_fence(asym_);
        const bool alone = ctl_->consumer_owner.load(std::memory_order_relaxed) == own;
        const std::uint64_t claim = claim_word(pos, kByConsumer, me);
        if (alone) {
          s.seq.store(claim, std::memory_order_release);  // (5)
        } else if (!s.seq.compare_exchange_strong(w, claim, std::memory_order_release,
                                                  std::memory_order_relaxed)) {
          ctl_->consumer_busy.store(0, std::memory_order_release);
          return try_pop_shared(out, me);
        }
        SHMKIT_FAULT_POINT(mpmc_pop_won);
        ctl_->head.store(pos + 1, std::memory_order_release);  // (6)
        SHMKIT_FAULT_POINT(mpmc_pop_claimed);
        std::memcpy(&out, &s.value, sizeof(T));
        s.seq.store(pos + mask_ + 1, std::memory_order_release);  // (4)
        SHMKIT_FAULT_POINT(mpmc_pop_released);
        ctl_->consumer_busy.store(0, std::memory_order_release);
        lockfree_detail::notify(ctl_->not_full, asym_);
        return true;
      }
      if (look_consumer(pos, w) == Look::blocked) return false;  // empty
    } else if ((own & kRevoked) == 0 || !std::atomic_ref<bool>(fenced_).load(std::memory_order_acquire)) {
      if (join(ctl_->consumer_owner, ctl_->consumer_token, me)) return try_pop(out);
    }
    return try_pop_shared(out, me);
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

  // Finds the first position consumers have not taken (from head) and the
  // first producers have not (from tail), and steps over a claim there whose
  // claimant is proven dead: a producer's at the consumers' position, a
  // consumer's of the previous lap at the producers'. For callers that use
  // only try_ calls (the blocking forms call it themselves). Not on any fast
  // path: it may read /proc and scan up to a lap of slot words.
  MpmcUnblock unblock() noexcept {
    {
      const std::uint64_t h = ctl_->head.load(std::memory_order_acquire);  // (9)
      std::uint64_t q = h;
      std::uint64_t w = 0;
      const bool open = first_open(h, true, q, w);
      if (open && w == q && reserved(ctl_->producer_busy, q) && owner_dead(ctl_->producer_owner)) {
        // The sole producer reserved q and died before its claim store:
        // its reservation is its claim (exact: busy names the position).
        raise(ctl_->tail, q + 1);
        std::uint64_t expected = w;
        if (slots_[q & mask_].seq.compare_exchange_strong(expected, (q + 1) | kSkipped,
                                                          std::memory_order_acq_rel,
                                                          std::memory_order_relaxed)) {  // (8)
          ctl_->producer_claims_skipped.fetch_add(1, std::memory_order_relaxed);
          clear_reservation(ctl_->producer_busy, q);
          lockfree_detail::notify(ctl_->not_empty, asym_);
          return MpmcUnblock::skipped_producer;
        }
      }
      if (open && is_claim(w) && !by_consumer(w) && claim_lap(w) == lap_of(q) &&
          lockfree_detail::claimant_dead(w) && pin_index(ctl_->head, h, q, slots_[q & mask_], w)) {
        // A dead producer's claim of q itself (see pin_index). Producers
        // may have passed q already; if it died before moving the tail
        // hint, move it, so the skipped mark below, like any publish, comes
        // after a tail store above q.
        raise(ctl_->tail, q + 1);
        Slot& s = slots_[q & mask_];
        std::uint64_t expected = w;
        // (8) release: pairs with (3)/(1); acq_rel as every RMW here.
        if (s.seq.compare_exchange_strong(expected, (q + 1) | kSkipped, std::memory_order_acq_rel,
                                          std::memory_order_relaxed)) {
          ctl_->producer_claims_skipped.fetch_add(1, std::memory_order_relaxed);
          lockfree_detail::notify(ctl_->not_empty, asym_);
          return MpmcUnblock::skipped_producer;
        }
      }
    }
    const std::uint64_t t = ctl_->tail.load(std::memory_order_acquire);  // (9)
    std::uint64_t q = t;
    std::uint64_t w = 0;
    const bool open = first_open(t, false, q, w);
    if (open && q >= capacity() && w == q - capacity() + 1 && reserved(ctl_->consumer_busy, q - capacity()) &&
        owner_dead(ctl_->consumer_owner)) {
      // The sole consumer reserved p = q - capacity and died before its
      // claim store: as if it died holding the claim.
      raise(ctl_->head, q - capacity() + 1);
      std::uint64_t expected = w;
      if (slots_[q & mask_].seq.compare_exchange_strong(expected, q, std::memory_order_acq_rel,
                                                        std::memory_order_relaxed)) {  // (8)
        ctl_->consumer_claims_released.fetch_add(1, std::memory_order_relaxed);
        clear_reservation(ctl_->consumer_busy, q - capacity());
        lockfree_detail::notify(ctl_->not_full, asym_);
        return MpmcUnblock::released_consumer;
      }
    }
    if (open && q >= capacity() && is_claim(w) && by_consumer(w) && claim_lap(w) == lap_of(q - capacity()) &&
        lockfree_detail::claimant_dead(w) && pin_index(ctl_->tail, t, q, slots_[q & mask_], w)) {
      // A dead consumer's claim of p = q - capacity (see pin_index). Move
      // the head hint past p if it died before, then hand the slot to the
      // next lap.
      const std::uint64_t p = q - capacity();
      raise(ctl_->head, p + 1);
      Slot& s = slots_[q & mask_];
      std::uint64_t expected = w;
      if (s.seq.compare_exchange_strong(expected, q, std::memory_order_acq_rel,
                                        std::memory_order_relaxed)) {  // (8)
        // A consumer that died stepping over a skipped slot lost nothing new.
        if ((w & kOfSkipped) == 0) ctl_->consumer_claims_released.fetch_add(1, std::memory_order_relaxed);
        lockfree_detail::notify(ctl_->not_full, asym_);
        return MpmcUnblock::released_consumer;
      }
    }
    return MpmcUnblock::none;
  }

  // Totals over the queue's life, all processes.
  MpmcLosses losses() const noexcept {
    return {ctl_->producer_claims_skipped.load(std::memory_order_relaxed),
            ctl_->consumer_claims_released.load(std::memory_order_relaxed)};
  }

  // A snapshot (positions move concurrently): from each hint, the walk over
  // the positions its side has taken, so a claim whose claimant has not
  // stored the hint yet (or never will: dead) counts as taken. Not on any
  // fast path: it may read up to a lap of slot words.
  std::uint64_t size() const noexcept {
    const std::uint64_t h = ctl_->head.load(std::memory_order_acquire);  // (9)
    const std::uint64_t t = ctl_->tail.load(std::memory_order_acquire);  // (9)
    std::uint64_t qh = h, qt = t, w = 0;
    if (!first_open(h, true, qh, w)) qh = h;
    if (!first_open(t, false, qt, w)) qt = t;
    return qt > qh ? std::min<std::uint64_t>(qt - qh, capacity()) : 0;
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

  // What a slot word says about position pos, to one side.
  enum class Look : std::uint8_t {
    mine,          // the word is the state this side claims from
    mine_skipped,  // (consumer) a dead producer's skipped slot: claim and release it
    taken,         // this side is past pos: look further
    blocked,       // pos waits for the other side (full / empty), or a claim holds it
    stale,         // a lap this view cannot place: read the hint again
  };

  // Producer's view. Position states are exact; a claim carries 7 lap bits,
  // enough to place it: a hint read is never a lap behind the positions in
  // use when it is read (see the contract).
  Look look_producer(std::uint64_t pos, std::uint64_t w) const noexcept {
    if (w == pos) return Look::mine;
    if (!is_claim(w)) {
      const std::uint64_t v = w & ~kSkipped;
      if (v > pos) return Look::taken;    // published, skipped or consumed
      if (v < pos) return Look::blocked;  // full: the previous lap's item
      return Look::stale;                 // a forged word
    }
    const std::uint64_t lap = lap_of(pos);
    if (claim_lap(w) == lap) return Look::taken;                       // pos's producer or consumer holds it
    if (claim_lap(w) == ((lap - 1) & kLapMask)) return Look::blocked;  // full: the previous lap's claimant
    return Look::stale;
  }

  // Consumer's view.
  Look look_consumer(std::uint64_t pos, std::uint64_t w) const noexcept {
    if (w == pos + 1) return Look::mine;
    if (w == ((pos + 1) | kSkipped)) return Look::mine_skipped;
    if (!is_claim(w)) return (w & ~kSkipped) > pos + 1 ? Look::taken : Look::blocked;  // consumed / empty
    const std::uint64_t lap = lap_of(pos);
    if (by_consumer(w)) {
      if (claim_lap(w) == lap) return Look::taken;  // pos's consumer reads it
      // Empty: the previous lap's consumer still reads the slot.
      return claim_lap(w) == ((lap - 1) & kLapMask) ? Look::blocked : Look::stale;
    }
    if (claim_lap(w) == lap) return Look::blocked;  // empty: pos's producer writes it
    return claim_lap(w) == ((lap + 1) & kLapMask) ? Look::taken : Look::stale;  // the next lap's producer
  }

  // Scans bounded by two laps: no honest scan is that long.
  std::uint64_t scan_limit() const noexcept { return 2 * (mask_ + 1) + 2; }

  // After `look` (taken or stale) at pos: the hint when it is ahead, else the
  // next position (taken) or 0 (stale: give up; 0 is never a next position).
  static std::uint64_t next_position(std::atomic<std::uint64_t>& index, std::uint64_t pos,
                                     Look look) noexcept {
    const std::uint64_t h = index.load(std::memory_order_acquire);  // (9)
    if (h > pos) return h;
    return look == Look::taken ? pos + 1 : 0;
  }

  // Walks from `from` (a hint just read) over the positions one side has
  // taken (reserved ones included), at most a lap: on true, q is the first
  // it has not and w that slot's word.
  bool first_open(std::uint64_t from, bool consumer, std::uint64_t& q, std::uint64_t& w) const noexcept {
    q = from;
    for (std::uint64_t i = 0; i <= mask_ + 1; ++i, ++q) {
      w = slots_[q & mask_].seq.load(std::memory_order_acquire);  // (7) acquire: pairs with (5)
      const Look look = consumer ? look_consumer(q, w) : look_producer(q, w);
      // A sole claimant's reservation is its claim: taken, as the shared
      // claimants see it.
      if (look == Look::mine && reserved(consumer ? ctl_->consumer_busy : ctl_->producer_busy, q)) continue;
      if (look != Look::taken) return true;
    }
    return false;
  }

  // Slot `s` of q held the claim w, with `index` read as `from` before the
  // walk to q. Makes the index read q (CAS from `from`, as a helper), then
  // reads the slot and the index again: still w and q means w claims q's
  // own lap, not one 128 laps away. Why: the index never holds a value v
  // once a value >= v + capacity was stored after it in happens-before
  // order (a store of v is made holding position v - 1, or after seeing it
  // taken, and the lap after v cannot start until v - 1 is released), and
  // a claim of q + k * capacity, k >= 1, could only be read after such a
  // store.
  static bool pin_index(std::atomic<std::uint64_t>& index, std::uint64_t from, std::uint64_t q, Slot& s,
                        std::uint64_t w) noexcept {
    if (q != from && !index.compare_exchange_strong(from, q, std::memory_order_acq_rel,
                                                    std::memory_order_relaxed)) {  // (6)
      return false;  // moved meanwhile: the next call looks again
    }
    if (s.seq.load(std::memory_order_acquire) != w) return false;  // (7)
    return index.load(std::memory_order_acquire) == q;             // (9)
  }

  // Makes the index at least `to` (a CAS loop, off the fast path): the hint
  // a dead claimant did not store.
  static void raise(std::atomic<std::uint64_t>& index, std::uint64_t to) noexcept {
    std::uint64_t now = index.load(std::memory_order_acquire);  // (9)
    while (now < to && !index.compare_exchange_weak(now, to, std::memory_order_acq_rel,
                                                    std::memory_order_acquire)) {  // (6)
    }
  }

  // A token for the calling thread, unique among the process's live
  // threads (the address of a thread-local).
  static std::uint64_t thread_token() noexcept {
    static thread_local char token;
    return reinterpret_cast<std::uintptr_t>(&token);
  }

  // Whether pos is the position a side's sole claimant reserved (busy).
  static bool reserved(const std::atomic<std::uint64_t>& busy, std::uint64_t pos) noexcept {
    // (11) acquire: after the heavy fence; see (10).
    return busy.load(std::memory_order_acquire) == pos + 1;
  }
  static void clear_reservation(std::atomic<std::uint64_t>& busy, std::uint64_t pos) noexcept {
    std::uint64_t expected = pos + 1;
    (void)busy.compare_exchange_strong(expected, 0, std::memory_order_acq_rel, std::memory_order_relaxed);
  }
  // Whether the side's recorded sole claimant is proven dead.
  static bool owner_dead(const std::atomic<std::uint64_t>& owner) noexcept {
    const std::uint64_t o = owner.load(std::memory_order_acquire);
    return (o & kOwned) != 0 && lockfree_detail::claimant_dead(o & lockfree_detail::kClaimantIdMask);
  }

  // The calling thread is not its side's sole claimant: becomes it when the
  // side has none yet (true: retry on the fast path); else marks the side
  // shared for good and, once per handle, issues the heavy fence (11): a
  // store to the owner word, then membarrier, then this handle's later
  // reads of busy; pairs with (10).
  bool join(std::atomic<std::uint64_t>& owner, std::atomic<std::uint64_t>& token, std::uint64_t me) noexcept {
    std::uint64_t o = owner.load(std::memory_order_acquire);
    if (o == 0 && asym_ &&
        owner.compare_exchange_strong(o, me | kOwned, std::memory_order_acq_rel, std::memory_order_acquire)) {
      token.store(thread_token(), std::memory_order_release);
      return true;
    }
    if ((o & kRevoked) == 0) owner.fetch_or(kRevoked, std::memory_order_acq_rel);
    if (!std::atomic_ref<bool>(fenced_).load(std::memory_order_acquire)) {
      lockfree_detail::heavy_fence();
      std::atomic_ref<bool>(fenced_).store(true, std::memory_order_release);
    }
    return false;
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
  alignas(std::atomic_ref<bool>::required_alignment) bool fenced_ = false;  // (11) issued by this handle
};

}  // namespace shmkit
