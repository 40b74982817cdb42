// shmkit/sync/condition.hpp — Condition: a process-shared condition variable
// living in a block (CPython's multiprocessing.Condition), usable with Mutex,
// RecursiveMutex (one level), RobustMutex and any BasicLockable.
//
// Contract
//   * A zero-filled block is a Condition. wait(lock) must be called with
//     `lock` held (a Mutex, std::unique_lock<Mutex>, RobustLockable, ...); it
//     releases it, sleeps until notified, and re-locks before returning.
//     Wake-ups may be spurious: wait in a loop or use the predicate overloads
//     (CPython's wait_for(predicate, timeout)). wait() releases ONE level of
//     a RecursiveMutex (CPython releases all): hold it once when waiting, or
//     the notifier can never get in.
//   * wait_until/wait_for (CLOCK_MONOTONIC) return false if the deadline
//     passed; the lock is held again either way, unless re-locking throws
//     (RobustLockable::lock() on a not-recoverable mutex): the exception
//     then propagates with the lock not held.
//   * With a RobustMutex directly: wait(RobustMutex&) returns the LockResult
//     of the re-lock (owner_died must be handled as in robust_mutex.hpp;
//     not_recoverable means the lock is NOT held on return).
//   * notify_one/notify_all may be called with or without the lock; a notify
//     wakes only waiters that started waiting before it (those that read the
//     sequence before the notify's increment). A waiter can miss a notify
//     only if 2^32 notifies happen while it is between reading the sequence
//     and sleeping.
//   * Crash behaviour: a waiter that dies leaves only a stale waiter count
//     (notifies then make one extra syscall); a dead notifier wakes nobody.
//     Waiters sleep in slices of kLostWakeRecheck (futex.hpp) and re-read
//     the sequence after each: a notify_one whose wake went to a waiter
//     killed before it returned (the wake is absorbed by the dead process)
//     reaches the other waiters within one slice instead of never. Then
//     more waiters than notified may return (allowed: wake-ups may be
//     spurious). Timed waits return true when the sequence moved.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <utility>

#include "shmkit/detail/sync_common.hpp"
#include "shmkit/sync/futex.hpp"
#include "shmkit/sync/robust_mutex.hpp"

namespace shmkit {

struct RobustWaitResult {
  LockResult lock;  // of the re-lock: acquired, owner_died or not_recoverable
  bool timed_out;   // the deadline passed before a notify
};

class Condition {
 public:
  // seq_: bumped by every notify; a waiter sleeps while it holds the value it
  //       read before releasing the lock.
  // waiters_: waiters between registering and returning; a notify with none
  //       skips the FUTEX_WAKE syscall.
  constexpr Condition() noexcept = default;
  // Lives at a fixed place in a block that other processes map.
  Condition(const Condition&) = delete;
  Condition& operator=(const Condition&) = delete;

  template <class Lock>
  void wait(Lock& lock) noexcept(noexcept(lock.lock())) {
    const std::uint32_t s = enter();
    lock.unlock();
    (void)sleep_while(s, std::nullopt);
    leave();
    lock.lock();
  }

  template <class Lock, class Predicate>
  void wait(Lock& lock, Predicate pred) {
    static_assert(!std::is_same_v<Lock, RobustMutex>,
                  "a predicate wait would drop owner_died: use RobustLockable, or "
                  "wait(RobustMutex&) in a loop");
    while (!pred()) wait(lock);
  }

  template <class Lock, class Clock, class Duration>
  bool wait_until(Lock& lock,
                  const std::chrono::time_point<Clock, Duration>& deadline) noexcept(noexcept(lock.lock())) {
    const std::uint32_t s = enter();
    lock.unlock();
    const bool notified = sleep_while(s, detail::to_steady(deadline));
    leave();
    lock.lock();
    return notified;
  }

  template <class Lock, class Rep, class Period>
  bool wait_for(Lock& lock,
                const std::chrono::duration<Rep, Period>& timeout) noexcept(noexcept(lock.lock())) {
    return wait_until(lock, detail::deadline_after(timeout));
  }

  // Returns pred() at the end, as CPython's wait_for(predicate, timeout).
  template <class Lock, class Clock, class Duration, class Predicate>
  bool wait_until(Lock& lock, const std::chrono::time_point<Clock, Duration>& deadline, Predicate pred) {
    static_assert(!std::is_same_v<Lock, RobustMutex>,
                  "a predicate wait would drop owner_died: use RobustLockable");
    const auto d = detail::to_steady(deadline);
    while (!pred()) {
      if (!wait_until(lock, d)) return pred();
    }
    return true;
  }

  template <class Lock, class Rep, class Period, class Predicate>
  bool wait_for(Lock& lock, const std::chrono::duration<Rep, Period>& timeout, Predicate pred) {
    return wait_until(lock, detail::deadline_after(timeout), std::move(pred));
  }

  // RobustMutex used directly: the re-lock's result is returned.
  [[nodiscard]] LockResult wait(RobustMutex& mutex) noexcept {
    const std::uint32_t s = enter();
    (void)mutex.unlock();
    (void)sleep_while(s, std::nullopt);
    leave();
    return mutex.lock();
  }

  template <class Clock, class Duration>
  [[nodiscard]] RobustWaitResult wait_until(
      RobustMutex& mutex, const std::chrono::time_point<Clock, Duration>& deadline) noexcept {
    const std::uint32_t s = enter();
    (void)mutex.unlock();
    const bool notified = sleep_while(s, detail::to_steady(deadline));
    leave();
    return {mutex.lock(), !notified};
  }

  template <class Rep, class Period>
  [[nodiscard]] RobustWaitResult wait_for(RobustMutex& mutex,
                                          const std::chrono::duration<Rep, Period>& timeout) noexcept {
    return wait_until(mutex, detail::deadline_after(timeout));
  }

  // The wait split in steps, for a caller that must run code between bounded
  // sleeps (the Python binding releases the GIL and checks for Ctrl-C):
  //   const std::uint32_t t = c.begin_wait();   // registers; lock still held
  //   lock.unlock();
  //   while (!c.wait_slice(t, slice_deadline)) { ...check signals, deadline... }
  //   c.end_wait();                             // always, once per begin_wait
  //   lock.lock();
  // wait_slice sleeps at most until `deadline` (and kLostWakeRecheck) and
  // returns true once a notify has come since begin_wait.
  [[nodiscard]] std::uint32_t begin_wait() noexcept { return enter(); }
  [[nodiscard]] bool wait_slice(std::uint32_t ticket,
                                std::chrono::steady_clock::time_point deadline) noexcept {
    return sleep_while(ticket, deadline);
  }
  void end_wait() noexcept { leave(); }

  void notify_one() noexcept { notify(1); }
  void notify_all() noexcept { notify(INT32_MAX); }
  // Wakes up to n waiters (CPython's notify(n)).
  void notify(int n) noexcept {
    // (1) seq_cst: a Dekker pair with (3)+(4): either this notify sees the
    // waiter's registration (2)->(3) and wakes, or the waiter read the new
    // sequence (and so does not sleep on the old one). The release part
    // also publishes the notifier's writes to the woken waiter's (4).
    seq_.fetch_add(1, std::memory_order_seq_cst);
    if (waiters_.load(std::memory_order_seq_cst) != 0) futex_wake(seq_, n);  // (2)
  }

 private:
  // Sleeps while seq_ == s, in slices of kLostWakeRecheck: a notify whose
  // FUTEX_WAKE went to a waiter killed before it returned bumped seq_ but
  // woke nobody else; the next slice sees the new sequence. False if
  // `deadline` passed first.
  bool sleep_while(std::uint32_t s, std::optional<std::chrono::steady_clock::time_point> deadline) noexcept {
    for (;;) {
      // (5) acquire: pairs with the release part of (1).
      if (seq_.load(std::memory_order_acquire) != s) return true;
      const auto now = std::chrono::steady_clock::now();
      if (deadline && now >= *deadline) return false;
      const auto slice_end = now + kLostWakeRecheck;
      (void)futex_wait_until(seq_, s, deadline && *deadline < slice_end ? *deadline : slice_end);
    }
  }

  std::uint32_t enter() noexcept {
    waiters_.fetch_add(1, std::memory_order_seq_cst);  // (3) see notify()
    return seq_.load(std::memory_order_seq_cst);       // (4) see notify()
  }
  void leave() noexcept { waiters_.fetch_sub(1, std::memory_order_relaxed); }

  FutexWord seq_{0};
  FutexWord waiters_{0};
};

static_assert(std::is_standard_layout_v<Condition>, "Condition lives in shared memory");
static_assert(sizeof(Condition) == 8);

}  // namespace shmkit
