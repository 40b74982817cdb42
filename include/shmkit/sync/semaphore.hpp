// shmkit/sync/semaphore.hpp — Semaphore: a process-shared counting semaphore
// living in a block (CPython's multiprocessing.Semaphore / BoundedSemaphore).
//
// Contract
//   * A zero-filled block is a Semaphore with value 0 and no bound. Construct
//     in place for another initial value or a bound (max_value, 0 = none).
//   * acquire() takes one unit, blocking while the value is 0; try_acquire,
//     try_acquire_for/until (CLOCK_MONOTONIC) give up (timeouts saturate:
//     duration::max() waits forever, zero or negative tries once). release(n) adds n
//     units and wakes up to n sleepers; with a bound it returns false and
//     changes nothing if the value would exceed it (CPython's ValueError).
//   * Any process may release; there is no owner. Not FIFO: a running
//     acquirer may take a unit before a woken sleeper (which then sleeps again).
//   * Progress: try_acquire is lock-free; acquire spins briefly, then sleeps
//     in a shared FUTEX_WAIT on the count.
//   * Crash behaviour: a unit taken by a process that dies is never returned
//     (as with CPython's and POSIX semaphores); waiters time out cleanly with
//     the timed variants. The count itself is never corrupted. A waiter
//     killed just after being woken delays the next sleeper by at most
//     kLostWakeRecheck (futex.hpp), never strands it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <type_traits>

#include "shmkit/detail/sync_common.hpp"
#include "shmkit/sync/futex.hpp"

namespace shmkit {

class Semaphore {
 public:
  // count_: the value (the futex word; sleepers wait while it is 0).
  // waiters_: processes inside the slow path; release skips FUTEX_WAKE at 0.
  // max_: the bound, 0 for none; written once at construction.

  constexpr Semaphore() noexcept = default;
  constexpr explicit Semaphore(std::uint32_t initial, std::uint32_t max_value = 0) noexcept
      : count_(initial), max_(max_value) {}
  // Lives at a fixed place in a block that other processes map.
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;

  [[nodiscard]] bool try_acquire() noexcept {
    std::uint32_t c = count_.load(std::memory_order_relaxed);
    while (c > 0) {
      // (1) acquire, pairs with (2) release: what the releaser did before
      // release() happens-before what we do after acquiring.
      if (count_.compare_exchange_weak(c, c - 1, std::memory_order_acquire, std::memory_order_relaxed)) {
        return true;
      }
    }
    return false;
  }

  void acquire() noexcept {
    if (try_acquire()) return;
    (void)acquire_slow(nullptr);
  }

  template <class Rep, class Period>
  [[nodiscard]] bool try_acquire_for(const std::chrono::duration<Rep, Period>& timeout) noexcept {
    if (try_acquire()) return true;
    const auto deadline = detail::deadline_after(timeout);
    return acquire_slow(&deadline);
  }

  template <class Clock, class Duration>
  [[nodiscard]] bool try_acquire_until(const std::chrono::time_point<Clock, Duration>& deadline) noexcept {
    if (try_acquire()) return true;
    const auto d = detail::to_steady(deadline);
    return acquire_slow(&d);
  }

  // Adds n units (n >= 1). false if a bound is set and would be exceeded.
  bool release(std::uint32_t n = 1) noexcept;

  // The value now (racy by nature, for diagnostics and CPython's get_value()).
  std::uint32_t value() const noexcept { return count_.load(std::memory_order_relaxed); }
  std::uint32_t max_value() const noexcept { return max_; }

 private:
  bool acquire_slow(const std::chrono::steady_clock::time_point* deadline) noexcept;

  FutexWord count_{0};
  FutexWord waiters_{0};
  std::uint32_t max_ = 0;
};

static_assert(std::is_standard_layout_v<Semaphore>, "Semaphore lives in shared memory");
static_assert(sizeof(Semaphore) == 12);

}  // namespace shmkit
