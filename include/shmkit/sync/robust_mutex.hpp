// shmkit/sync/robust_mutex.hpp — RobustMutex: a process-shared lock that
// survives the death of its owner, and keeps no pointer in the block.
//
// Contract
//   * Construct it once, in place, in the block (placement-new) before any
//     other process uses it (a zero-filled block is also a free RobustMutex).
//     It is 16 bytes: a 64-bit lock word holding the owner's thread id and
//     flags (its low half, the futex word) and the owner's start time (its
//     high half), taken in one CAS, then the owners' PID namespace. Nothing
//     in it is a pointer: a peer that rewrites it can make
//     lockers wait (timed calls still return) or report a false owner death,
//     never make a process write outside the block (the trust boundary; see
//     the README). glibc's robust mutex, which shmkit used before, keeps its
//     robust-list links inside the shared pthread_mutex_t, and a peer that
//     rewrites them makes the holder's unlock write to an address of the
//     peer's choice in the holder's own memory.
//   * The owner is a thread; lock() returns a LockResult that must be looked
//     at ([[nodiscard]]):
//       acquired         the lock is held, the data is as the last holder left it
//       owner_died       the lock is held, but its previous holder died holding
//                        it: the protected data may be half-written. Repair or
//                        validate it, then call make_consistent(). Unlocking
//                        without make_consistent() marks the mutex not
//                        recoverable for good.
//       not_recoverable  NOT acquired: a holder unlocked after owner death
//                        without make_consistent(). Every later lock reports
//                        this at once (never a hang). Recreate the mutex.
//       deadlock         NOT acquired: the caller already holds it (a bug).
//       busy / timed_out NOT acquired: try_lock / the timed variants.
//     The data is never touched by shmkit: owner death only changes what the
//     next locker is told. Recovery is never silent and never made impossible
//     except by that explicit unlock-without-repair.
//   * unlock() returns false (and changes nothing) if the caller is not the
//     owner. Deadlines are CLOCK_MONOTONIC and saturate ("forever" is forever).
//   * Owner death is found by the lockers, not by the kernel: a locker that
//     finds the lock held checks whether the owner's thread still lives —
//     kill(tid, 0), then /proc/TID/stat for a zombie or a reused thread id
//     (start time). A blocked lock() checks after every kLostWakeRecheck
//     slice (futex.hpp), so a dead owner is found within about 10-20 ms; a
//     try_lock() or an expiring timed call that finds the lock held checks at
//     once (a few microseconds of system calls). A thread that exits holding
//     the lock counts as dead; a fork child does not inherit ownership.
//   * Limits of the liveness check (documented, tested where testable):
//       - Owner and lockers must share one PID namespace: a locker in
//         another namespace cannot judge the owner's thread id, so it never
//         declares it dead (it waits; its timed calls time out).
//       - A holder that calls exec(2) keeps its thread id and start time, so
//         it is taken for alive: do not exec while holding the lock.
//       - /proc mounted with hidepid hides other users' threads: a zombie
//         owner is then found only once its parent reaps it.
//   * Progress: lock spins for the calibrated time budget (spin.hpp), then
//     sleeps on the futex in slices of kLostWakeRecheck: a wake-up lost to a waiter killed after it was woken
//     costs at most one slice (Storm.RobustMutexStorm, LostWake.*).
//   * Works under ThreadSanitizer: every transition is an atomic operation
//     on the word with the orders given below (glibc's robust mutex was taken
//     by pthread_mutex_clocklock, which GCC 12's and clang 14's TSan do not
//     intercept, so TSan reported races on the data it guarded).
//   * Lockable interface: RobustLockable (below) wraps a RobustMutex with a
//     repair function called on owner death, so std::scoped_lock,
//     std::unique_lock and Condition can use it. Do not instantiate
//     std::lock_guard/std::unique_lock on RobustMutex itself: they would
//     drop the LockResult (the standard library's calls are exempt from
//     [[nodiscard]] warnings) and so make the mutex not recoverable by
//     accident after an owner death.
//   * Identity: the owner is the whole (thread id, start time) pair held in
//     the word, never the thread id alone. A thread id reused by a new
//     thread (of this process or another) is a different thread: a word
//     with the caller's thread id and another start time names a dead
//     earlier task, so the caller is told owner_died (it takes the lock
//     over), never deadlock, and its unlock()/make_consistent() on such a
//     word are refused. (Start times have clock-tick resolution, 10 ms: an
//     id reused within the same tick as the first task's start is not
//     told apart.)
//   * Time namespaces: start times are host-absolute. /proc shows a task's
//     start time shifted by the READER's boot-time offset; every reader
//     subtracts its own (shmkit/detail/process.hpp), so an owner and a locker in
//     different time namespaces (unshare --time --boottime N) agree, and a
//     live owner is never judged dead for it. A thread that cannot
//     normalise its start exactly (a boot-time offset that is not a whole
//     number of clock ticks, or one it cannot read) records start 0
//     (unknown: judged by its thread id alone, so its death is found while
//     its id is not reused), and a locker that cannot normalise judges by
//     the id alone (a live task with that id is taken for the owner).
//   * RobustMutex never throws; RobustLockable::lock() throws (below).
#pragma once

#include <atomic>
#include <bit>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <type_traits>
#include <utility>

#include "shmkit/detail/sync_common.hpp"
#include "shmkit/sync/futex.hpp"
#include "shmkit/sync/spin.hpp"

namespace shmkit {

enum class LockResult : std::uint8_t {
  acquired,
  owner_died,       // acquired; the previous owner died holding it
  not_recoverable,  // not acquired, and never will be
  deadlock,         // not acquired: the caller holds it already
  busy,             // not acquired: try_lock found it held
  timed_out,        // not acquired: the deadline passed
};

// True for the two results in which the caller holds the lock.
constexpr bool holds_lock(LockResult r) noexcept {
  return r == LockResult::acquired || r == LockResult::owner_died;
}

const char* to_string(LockResult r) noexcept;

namespace detail {
// Who the calling thread is, as a RobustMutex records it: its thread id,
// the low 32 bits of its start time (/proc/thread-self/stat field 22, in
// clock ticks after the host's boot, normalised for time namespaces; 0 if
// unknown: /proc cannot be read, or the boot-time offset is not usable) and
// its PID namespace's inode (0 if unknown). Computed once per thread; a
// fork child computes its own.
struct RobustIdentity {
  std::uint32_t tid;
  std::uint32_t start;
  std::uint32_t pid_ns;
};
inline thread_local RobustIdentity tls_robust_identity{0, 0, 0};
const RobustIdentity& fetch_robust_identity() noexcept;
// Throws std::system_error for RobustLockable::lock()'s failure `r`:
// EDEADLK for deadlock, ENOTRECOVERABLE otherwise; the message names `name`.
[[noreturn]] void throw_robust_lock_error(const char* name, LockResult r);
inline const RobustIdentity& robust_identity() noexcept {
  const RobustIdentity& id = tls_robust_identity;
  return id.tid != 0 ? id : fetch_robust_identity();
}
}  // namespace detail

class RobustMutex {
 public:
  // The lock word is 64 bits, so the owner's identity is taken in the same
  // CAS as the lock (no window in which a dead owner's start time is not
  // there yet). Its low half is the futex word the kernel waits on; its
  // high half is the low 32 bits of the owner thread's start time (0:
  // unknown). The low half's bits are shmkit's own:
  //   bits 0-29  owner's thread id (0: free)
  //   bit 30     kOwnerDied: taken over from a dead owner, make_consistent()
  //              not yet called (unlock then makes it not recoverable)
  //   bit 31     kWaiters: someone may sleep on the word; unlock wakes one
  //   kNotRecoverable (every tid bit set, which no thread id reaches:
  //              pid_max <= 2^22) is final.
  // Invariant: a thread sleeps in FUTEX_WAIT only on a value with kWaiters
  // set, so an unlock that cleared a word without it may skip the wake.
  static constexpr std::uint32_t kTidMask = 0x3fffffffu;
  static constexpr std::uint32_t kOwnerDied = 0x40000000u;
  static constexpr std::uint32_t kWaiters = 0x80000000u;
  static constexpr std::uint32_t kNotRecoverable = kTidMask;
  static constexpr std::uint64_t kLowHalf = 0xffffffffu;

  constexpr RobustMutex() noexcept = default;
  ~RobustMutex() = default;
  // Lives at a fixed place in a block that other processes map: a copy or a
  // move would be a different lock, so both are deleted.
  RobustMutex(const RobustMutex&) = delete;
  RobustMutex& operator=(const RobustMutex&) = delete;

  [[nodiscard]] LockResult lock() noexcept {
    std::uint64_t seen = 0;
    if (try_take(detail::robust_identity(), seen)) [[likely]]
      return LockResult::acquired;
    return lock_until(std::chrono::steady_clock::time_point::max());
  }

  // busy if a live thread holds it; deadlock if the caller holds it;
  // owner_died (acquired) if its holder is dead.
  [[nodiscard]] LockResult try_lock() noexcept {
    const detail::RobustIdentity& me = detail::robust_identity();
    std::uint64_t seen = 0;
    if (try_take(me, seen)) [[likely]]
      return LockResult::acquired;
    return try_lock_held(me, seen);
  }

  template <class Rep, class Period>
  [[nodiscard]] LockResult try_lock_for(const std::chrono::duration<Rep, Period>& timeout) noexcept {
    return lock_until(detail::deadline_after(timeout));
  }

  template <class Clock, class Duration>
  [[nodiscard]] LockResult try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline) noexcept {
    return lock_until(detail::to_steady(deadline));
  }

  // After owner_died, once the data is repaired: the mutex becomes normal
  // again. Returns false if the caller does not hold it in that state.
  bool make_consistent() noexcept {
    const std::uint64_t v = word_.load(std::memory_order_relaxed);
    if (!is_mine(v, detail::robust_identity()) || (v & kOwnerDied) == 0) return false;
    // Only the owner changes kOwnerDied; others may only add kWaiters.
    word_.fetch_and(~std::uint64_t{kOwnerDied}, std::memory_order_relaxed);
    return true;
  }

  // Releases the lock; false (nothing changed) if the caller is not the owner.
  bool unlock() noexcept {
    const std::uint64_t v = word_.load(std::memory_order_relaxed);
    if (!is_mine(v, detail::robust_identity()) || (v & kLowHalf) == kNotRecoverable) return false;
    // (2) release, pairs with (1)/(3) acquire. After this exchange the word
    // belongs to the next holder: only its address is used below.
    const std::uint64_t old =
        word_.exchange((v & kOwnerDied) ? kNotRecoverable : 0, std::memory_order_release);
    if (old & kOwnerDied) {
      futex_wake_all(futex_word());  // everyone is told not_recoverable
    } else if (old & kWaiters) {
      futex_wake(futex_word(), 1);
    }
    return true;
  }

  // The 64-bit lock word, for diagnostics and tests (forging it is what a
  // hostile peer could do; see the contract).
  std::atomic<std::uint64_t>& native_handle() noexcept { return word_; }

 private:
  // The uncontended path: 0 -> our identity. On failure `seen` holds the word.
  bool try_take(const detail::RobustIdentity& me, std::uint64_t& seen) noexcept {
    seen = 0;
    // (1) acquire, pairs with (2) release in unlock(): the previous holder's
    // critical section happens-before ours.
    if (!word_.compare_exchange_strong(seen, identity_word(me), std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
      return false;
    }
    note_namespace(me);
    return true;
  }

  static std::uint64_t identity_word(const detail::RobustIdentity& me) noexcept {
    return (std::uint64_t{me.start} << 32) | me.tid;
  }
  // Whether `v` names the caller: its thread id AND its start time (a word
  // with the caller's id and another start names a dead earlier thread).
  static bool is_mine(std::uint64_t v, const detail::RobustIdentity& me) noexcept {
    return (v & kTidMask) == me.tid && (v >> 32) == me.start;
  }
  // The owners' PID namespace, written by each new owner after its CAS (a
  // plain store only when it changes: all owners usually share one).
  void note_namespace(const detail::RobustIdentity& me) noexcept {
    if (pid_ns_.load(std::memory_order_relaxed) != me.pid_ns) {
      pid_ns_.store(me.pid_ns, std::memory_order_relaxed);
    }
  }
  // The low half of word_, where the kernel's futex looks (little-endian:
  // the low half is at the lower address).
  FutexWord& futex_word() noexcept {
    static_assert(std::endian::native == std::endian::little,
                  "RobustMutex's futex word is the low half of a 64-bit word (little-endian)");
    // Only the kernel reads through this reference (the futex calls take its
    // address); C++ code accesses the word as the 64-bit atomic it is.
    void* low_half = &word_;
    return *static_cast<FutexWord*>(low_half);
  }

  LockResult try_lock_held(const detail::RobustIdentity& me, std::uint64_t seen) noexcept;
  LockResult lock_until(std::chrono::steady_clock::time_point deadline) noexcept;
  // Takes over `seen` (held by a dead owner); true if this thread now owns it.
  bool take_over(const detail::RobustIdentity& me, std::uint64_t seen) noexcept;
  // True if the thread in `seen` (not the caller: !is_mine) is gone (never
  // for a thread of another PID namespace).
  bool owner_is_dead(const detail::RobustIdentity& me, std::uint64_t seen) const noexcept;

  std::atomic<std::uint64_t> word_{0};
  std::atomic<std::uint32_t> pid_ns_{0};
  std::uint32_t reserved_ = 0;
};

static_assert(std::is_standard_layout_v<RobustMutex>, "RobustMutex lives in shared memory");
static_assert(sizeof(RobustMutex) == 16, "RobustMutex is a 64-bit lock word and a namespace");
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(sizeof(std::atomic<std::uint64_t>) == 8 && alignof(std::atomic<std::uint64_t>) == 8);

// A Lockable/TimedLockable view of a RobustMutex, for std::scoped_lock,
// std::unique_lock and Condition. It lives in one process (not in the block).
// On owner death it calls repair(mutex) while holding the lock; repair must
// fix or validate the data and call mutex.make_consistent() (else the mutex
// becomes not recoverable at unlock). repair must not throw.
//   lock():   blocks until held. If the mutex is not recoverable, or names
//             the caller as its holder (a relock: a bug, or a word a peer
//             forged), it throws std::system_error: ENOTRECOVERABLE or
//             EDEADLK, whose message names the lock (the `name` given to
//             the constructor) and the result. It never aborts the process:
//             a peer that forges the word cannot kill a process that locks
//             through std::scoped_lock. (Condition::wait with a
//             RobustLockable lets the exception out, the lock not held.)
//   try_lock*/unlock: false instead of throwing.
template <class Repair>
class RobustLockable {
 public:
  // `name` (a string literal, or anything that outlives this view) names
  // the lock in lock()'s exceptions.
  RobustLockable(RobustMutex& mutex, Repair repair, const char* name = "RobustMutex")
      : mutex_(&mutex), repair_(std::move(repair)), name_(name) {}

  void lock() {
    const LockResult r = mutex_->lock();
    if (r == LockResult::acquired) [[likely]]
      return;
    if (r == LockResult::owner_died) {
      repair_(*mutex_);
      return;
    }
    detail::throw_robust_lock_error(name_, r);
  }
  [[nodiscard]] bool try_lock() noexcept { return handle(mutex_->try_lock()); }
  template <class Rep, class Period>
  [[nodiscard]] bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) noexcept {
    return handle(mutex_->try_lock_for(timeout));
  }
  template <class Clock, class Duration>
  [[nodiscard]] bool try_lock_until(const std::chrono::time_point<Clock, Duration>& d) noexcept {
    return handle(mutex_->try_lock_until(d));
  }
  bool unlock() noexcept { return mutex_->unlock(); }

  RobustMutex& mutex() const noexcept { return *mutex_; }

 private:
  bool handle(LockResult r) noexcept {
    if (r == LockResult::acquired) return true;
    if (r == LockResult::owner_died) {
      repair_(*mutex_);
      return true;
    }
    return false;
  }

  RobustMutex* mutex_;
  Repair repair_;
  const char* name_;
};

}  // namespace shmkit
