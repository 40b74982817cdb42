// shmkit/sync/mutex.hpp — Mutex: a process-shared lock that is one 32-bit
// futex word living inside shared memory (CPython's multiprocessing.Lock).
//
// Contract
//   * Place it in a block (placement-new, or rely on zero fill: a zero-filled
//     block IS an unlocked Mutex). Any process or thread mapping the block may
//     lock and unlock it; the block may be mapped at different addresses.
//   * Lockable and TimedLockable: std::scoped_lock, std::unique_lock work.
//     Python's acquire(block, timeout) is try_lock() / try_lock_for(timeout).
//     Deadlines are CLOCK_MONOTONIC (steady_clock); other clocks are converted.
//     Timeouts saturate (detail::deadline_after): try_lock_for(hours::max())
//     and try_lock_until(time_point::max()) wait until they get the lock; a
//     zero or negative timeout tries once.
//   * No owner is recorded (as CPython's Lock, a semaphore): unlock() by a
//     thread that did not lock is allowed and releases it; unlock() of an
//     unlocked Mutex is a no-op. Not recursive: relocking deadlocks (use a
//     timed variant or RecursiveMutex). Not fair: a running locker may barge
//     ahead of a sleeping waiter (throughput over FIFO order).
//   * Progress: try_lock is wait-free; lock spins for a calibrated time
//     budget (spin.hpp), then sleeps in the kernel (shared FUTEX_WAIT); it
//     never busy-waits forever.
//   * Crash behaviour: if the holder dies, the Mutex stays locked forever;
//     lock() then blocks forever and try_lock_for/try_lock_until time out
//     cleanly (tested). For recovery from a dead owner use RobustMutex. A
//     waiter killed just after being woken delays the next sleeper by at
//     most kLostWakeRecheck (futex.hpp), never strands it.
//   * Never throws; never touches the word after the releasing store (the
//     wake that may follow uses only its address).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <type_traits>

#include "shmkit/detail/sync_common.hpp"
#include "shmkit/sync/futex.hpp"
#include "shmkit/sync/spin.hpp"

namespace shmkit {

class Mutex {
 public:
  // The lock word's states (glibc lowlevellock.h, Drepper's "mutex3"):
  //   value  meaning                         transitions
  //   0      free                            lock: 0 -> 1 (CAS)
  //   1      locked, nobody sleeping         contended lock: x -> 2 (XCHG), unlock: -> 0
  //   2      locked, maybe sleepers          unlock: -> 0 then FUTEX_WAKE(1)
  // Invariant: a thread sleeps in FUTEX_WAIT only while the word is 2, so an
  // unlock that saw 1 may skip the wake; 2 may be stale (a spurious wake).
  static constexpr std::uint32_t kFree = 0;
  static constexpr std::uint32_t kLocked = 1;
  static constexpr std::uint32_t kContended = 2;
  // Spinning before sleeping is bounded by time, not a count: the budget
  // is spin_policy() (spin.hpp), calibrated on the CPU at the first
  // contended lock (SHMKIT_SPIN_NS overrides it). Measured on the 2-core
  // AMD EPYC VM, 2 pinned processes: 100 spins (glibc's adaptive default)
  // lost ~30% of contended throughput to pthread (the spinner's loads steal
  // the line from the holder); 0-20 PAUSEs (0-360 ns) matched or beat it.
  // The spin also stops as soon as sleepers exist (word 2).

  constexpr Mutex() noexcept = default;
  // Lives at a fixed place in a block that other processes map: a copy or a
  // move would be a different lock, so both are deleted.
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() noexcept {
    std::uint32_t expected = kFree;
    // (1) acquire, pairs with (3) release: the critical section of the
    // previous holder happens-before ours.
    if (word_.compare_exchange_strong(expected, kLocked, std::memory_order_acquire,
                                      std::memory_order_relaxed)) [[likely]] {
      return;
    }
    lock_slow();
  }

  [[nodiscard]] bool try_lock() noexcept {
    std::uint32_t expected = kFree;
    // (1) acquire, as in lock().
    return word_.compare_exchange_strong(expected, kLocked, std::memory_order_acquire,
                                         std::memory_order_relaxed);
  }

  template <class Rep, class Period>
  [[nodiscard]] bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) noexcept {
    return try_lock() || lock_until(detail::deadline_after(timeout));
  }

  template <class Clock, class Duration>
  [[nodiscard]] bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline) noexcept {
    return try_lock() || lock_until(detail::to_steady(deadline));
  }

  void unlock() noexcept {
    // (3) release, pairs with (1)/(2) acquire. After this exchange the word
    // belongs to the next holder: only its address is used below.
    if (word_.exchange(kFree, std::memory_order_release) == kContended) {
      futex_wake(word_, 1);
    }
  }

  // Diagnostics only (racy by nature): true if the word says locked.
  bool is_locked() const noexcept { return word_.load(std::memory_order_relaxed) != kFree; }

  // The futex word, for building other primitives (Condition uses none).
  const FutexWord& native_handle() const noexcept { return word_; }

 private:
  // Spins up to the spin budget while the lock looks taken; true if acquired.
  bool spin() noexcept {
    for (std::uint32_t i = 0, n = detail::spin_iterations(); i < n; ++i) {
      detail::cpu_relax();
      std::uint32_t v = word_.load(std::memory_order_relaxed);
      if (v == kFree) {
        // (2) acquire, pairs with (3) release.
        if (word_.compare_exchange_weak(v, kLocked, std::memory_order_acquire, std::memory_order_relaxed)) {
          return true;
        }
      } else if (v == kContended) {
        return false;  // sleepers already queued: join them, do not starve them
      }
    }
    return false;
  }

  void lock_slow() noexcept {
    if (spin()) return;
    // (2) acquire, pairs with (3) release. Setting 2 announces a sleeper; we
    // keep 2 even when we acquire, because others may still be sleeping.
    // Bounded sleeps: see kLostWakeRecheck (a woken waiter killed before
    // it took the lock must not leave the others asleep on a free lock).
    while (word_.exchange(kContended, std::memory_order_acquire) != kFree) {
      futex_wait_for(word_, kContended, kLostWakeRecheck);
    }
  }

  // Bounded sleeps up to the deadline, as lock_slow(): a timed lock with a
  // far (or saturated "forever") deadline must survive a lost wake too.
  bool lock_until(std::chrono::steady_clock::time_point deadline) noexcept {
    if (spin()) return true;
    for (;;) {
      // (2) acquire, as in lock_slow().
      if (word_.exchange(kContended, std::memory_order_acquire) == kFree) return true;
      if (futex_wait_slice(word_, kContended, deadline) == FutexResult::timed_out) {
        // One last look: a wake may have raced with the timeout. The word
        // stays 2 if we give up, which costs at most one spurious wake.
        std::uint32_t expected = kFree;
        return word_.compare_exchange_strong(expected, kContended, std::memory_order_acquire,
                                             std::memory_order_relaxed);
      }
    }
  }

  FutexWord word_{kFree};
};

static_assert(std::is_standard_layout_v<Mutex>, "Mutex lives in shared memory");
static_assert(sizeof(Mutex) == 4, "Mutex is exactly one futex word");
static_assert(alignof(Mutex) == 4);

}  // namespace shmkit
