// src/sync/semaphore.cpp — Semaphore's slow paths.
#include "shmkit/sync/semaphore.hpp"
#include "shmkit/sync/spin.hpp"

#include <climits>
#include <cstdint>

namespace shmkit {

bool Semaphore::acquire_slow(const std::chrono::steady_clock::time_point* deadline) noexcept {
  // Spins for the calibrated time budget (spin.hpp), as Mutex.
  for (std::uint32_t i = 0, n = detail::spin_iterations(); i < n; ++i) {
    detail::cpu_relax();
    if (count_.load(std::memory_order_relaxed) > 0 && try_acquire()) return true;
  }
  // (3) seq_cst, with (4): a store-load (Dekker) pair with release()'s (2)
  // and (5). Either release() sees our waiters_ increment and wakes, or our
  // re-check of count_ below (and the kernel's check in FUTEX_WAIT) sees its
  // increment. acquire/release cannot order a store before a later load.
  waiters_.fetch_add(1, std::memory_order_seq_cst);
  bool got = false;
  for (;;) {
    std::uint32_t c = count_.load(std::memory_order_seq_cst);  // (4)
    while (c > 0) {
      // (1) acquire, pairs with (2) release.
      if (count_.compare_exchange_weak(c, c - 1, std::memory_order_acquire, std::memory_order_relaxed)) {
        got = true;
        break;
      }
    }
    if (got) break;
    // Bounded sleeps, with a deadline or without: see kLostWakeRecheck.
    const FutexResult r =
        futex_wait_slice(count_, 0, deadline ? *deadline : std::chrono::steady_clock::time_point::max());
    if (r == FutexResult::timed_out) {
      got = try_acquire();
      break;
    }
  }
  waiters_.fetch_sub(1, std::memory_order_relaxed);
  return got;
}

bool Semaphore::release(std::uint32_t n) noexcept {
  if (n == 0) return true;
  std::uint32_t c = count_.load(std::memory_order_relaxed);
  for (;;) {
    if ((max_ != 0 && (c > max_ || n > max_ - c)) || c > UINT32_MAX - n) return false;
    // (2) release, pairs with (1) acquire; seq_cst for the Dekker pair with
    // (3)/(4) (see acquire_slow).
    if (count_.compare_exchange_weak(c, c + n, std::memory_order_seq_cst, std::memory_order_relaxed)) {
      break;
    }
  }
  if (waiters_.load(std::memory_order_seq_cst) != 0) {  // (5)
    futex_wake(count_, n > static_cast<std::uint32_t>(INT32_MAX) ? INT32_MAX : static_cast<int>(n));
  }
  return true;
}

}  // namespace shmkit
