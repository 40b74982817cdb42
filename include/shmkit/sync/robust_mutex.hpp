// shmkit/sync/robust_mutex.hpp — RobustMutex: a process-shared lock that
// survives the death of its owner (glibc's PTHREAD_PROCESS_SHARED +
// PTHREAD_MUTEX_ROBUST mutex underneath; glibc registers its robust list, we
// never call set_robust_list ourselves).
//
// Contract
//   * Construct it once, in place, in the block (placement-new) before any
//     other process uses it; a zero-filled block is NOT a RobustMutex.
//     Destroy it only when no process uses it.
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
//                        this at once (never a hang). The data is lost as far
//                        as the lock knows: recreate the block/mutex.
//       deadlock         NOT acquired: the caller already holds it (a bug).
//       busy / timed_out NOT acquired: try_lock / the timed variants.
//     The data is never touched by shmkit: owner death only changes what the
//     next locker is told. Recovery is never silent and never made impossible
//     except by that explicit unlock-without-repair.
//   * unlock() returns false (and changes nothing) if the caller is not the
//     owner. Deadlines are CLOCK_MONOTONIC (pthread_mutex_clocklock).
//   * The owner is a thread: a thread that exits holding the lock counts as
//     a dead owner too, and a fork child does not inherit ownership.
//   * Lockable interface: RobustLockable (below) wraps a RobustMutex with a
//     repair function called on owner death, so std::scoped_lock,
//     std::unique_lock and Condition can use it. Do not instantiate
//     std::lock_guard/std::unique_lock on RobustMutex itself: they would
//     drop the LockResult (the standard library's calls are exempt from
//     [[nodiscard]] warnings) and so make the mutex not recoverable by
//     accident after an owner death.
//   * glibc 2.36 leaves a not-recoverable mutex locked by the caller of
//     pthread_mutex_trylock; try_lock() undoes that (src/sync_mutex.cpp), so
//     not_recoverable is reported by every call, never turned into a hang.
//   * Progress: lock blocks in the kernel (robust futex); the dead owner's
//     entry is released by the kernel when its thread exits, however it dies.
//     glibc and the kernel lose a wake-up when a waiter is woken and killed
//     before it re-takes the lock while a third thread takes it on the fast
//     path (which drops the "waiters" bit): the other sleepers would sleep
//     on a free lock forever. So waits are slices of kLostWakeRecheck
//     (futex.hpp): such a loss costs at most that delay (test_storm found
//     it; Storm.RobustMutexStorm checks it).
//   * Never throws (only the constructor may, if pthread_mutex_init fails).
#pragma once

#include <pthread.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <type_traits>
#include <utility>

#include "shmkit/detail/sync_common.hpp"

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
// Maps a pthread_mutex_*lock return code to a LockResult (aborts with a
// message on codes that can only mean a bug: EINVAL, EAGAIN, ...).
LockResult robust_lock_result(int rc) noexcept;
}  // namespace detail

class RobustMutex {
 public:
  // Initialises the pthread mutex: PTHREAD_PROCESS_SHARED,
  // PTHREAD_MUTEX_ROBUST, PTHREAD_MUTEX_ERRORCHECK (relock -> deadlock,
  // foreign unlock -> false; glibc's robust path checks the owner anyway, so
  // the error checking costs nothing). Throws std::system_error on failure.
  RobustMutex();
  // pthread_mutex_destroy: only when no process uses it any more.
  ~RobustMutex();
  // Lives at a fixed place in a block, and glibc's robust list links it by
  // address: copying or moving it would corrupt that list.
  RobustMutex(const RobustMutex&) = delete;
  RobustMutex& operator=(const RobustMutex&) = delete;

  [[nodiscard]] LockResult lock() noexcept {
    // The uncontended path is glibc's own CAS; waiting is lock_until in
    // slices (see lock_until in src/sync_mutex.cpp).
    const int rc = ::pthread_mutex_trylock(&mutex_);
    if (rc == 0) [[likely]] return LockResult::acquired;
    if (rc == EBUSY) return lock_until(std::chrono::steady_clock::time_point::max());
    return lock_result(rc);  // owner_died, or not_recoverable (glibc fix-up)
  }

  // busy if another holds it; deadlock if the caller holds it.
  [[nodiscard]] LockResult try_lock() noexcept {
    const int rc = ::pthread_mutex_trylock(&mutex_);
    if (rc == 0) [[likely]] return LockResult::acquired;
    return lock_result(rc);
  }

  template <class Rep, class Period>
  [[nodiscard]] LockResult try_lock_for(const std::chrono::duration<Rep, Period>& timeout) noexcept {
    return lock_until(detail::deadline_after(timeout));
  }

  template <class Clock, class Duration>
  [[nodiscard]] LockResult try_lock_until(
      const std::chrono::time_point<Clock, Duration>& deadline) noexcept {
    return lock_until(detail::to_steady(deadline));
  }

  // After owner_died, once the data is repaired: the mutex becomes normal
  // again. Returns false if the caller does not hold it in that state.
  bool make_consistent() noexcept { return ::pthread_mutex_consistent(&mutex_) == 0; }

  // Releases the lock; false (nothing changed) if the caller is not the owner.
  bool unlock() noexcept { return ::pthread_mutex_unlock(&mutex_) == 0; }

  pthread_mutex_t* native_handle() noexcept { return &mutex_; }

 private:
  LockResult lock_until(std::chrono::steady_clock::time_point deadline) noexcept;
  // The LockResult of a pthread_mutex_*lock return code.
  // Works around glibc (2.36 at least): pthread_mutex_trylock on a
  // not-recoverable robust mutex returns ENOTRECOVERABLE but leaves the
  // low-level lock word holding the caller's tid, so every later locker
  // would block forever. We release that word (see src/sync_mutex.cpp).
  LockResult lock_result(int rc) noexcept;

  pthread_mutex_t mutex_;
};

static_assert(std::is_standard_layout_v<RobustMutex>, "RobustMutex lives in shared memory");
static_assert(std::is_standard_layout_v<pthread_mutex_t>);

// A Lockable/TimedLockable view of a RobustMutex, for std::scoped_lock,
// std::unique_lock and Condition. It lives in one process (not in the block).
// On owner death it calls repair(mutex) while holding the lock; repair must
// fix or validate the data and call mutex.make_consistent() (else the mutex
// becomes not recoverable at unlock). repair must not throw.
//   lock():   blocks until held; aborts with a message if the mutex is not
//             recoverable or already held by the caller (both are bugs).
//   try_lock*/unlock: false instead of aborting.
template <class Repair>
class RobustLockable {
 public:
  RobustLockable(RobustMutex& mutex, Repair repair) : mutex_(&mutex), repair_(std::move(repair)) {}

  void lock() noexcept {
    const LockResult r = mutex_->lock();
    if (r == LockResult::acquired) [[likely]] return;
    if (r == LockResult::owner_died) {
      repair_(*mutex_);
      return;
    }
    std::fprintf(stderr, "shmkit: RobustLockable::lock: %s (a bug: see robust_mutex.hpp)\n",
                 to_string(r));
    std::abort();
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
};

}  // namespace shmkit
