// src/sync_barrier.cpp — Barrier's wait, abort and reset.
#include "shmkit/sync/barrier.hpp"

namespace shmkit {

BarrierResult Barrier::wait_impl(const std::chrono::steady_clock::time_point* deadline) noexcept {
  // (1) acquire, pairs with (3)/(4) release: a broken or new generation is seen
  // together with what led to it.
  std::uint32_t s = state_.load(std::memory_order_acquire);
  if (s & 1u) return BarrierResult::broken;
  // (2) acq_rel: arrivals form a release sequence on arrived_, so the last
  // arrival's acquire sees every earlier party's writes; it republishes them
  // with (3).
  const std::uint32_t n = arrived_.fetch_add(1, std::memory_order_acq_rel) + 1;
  if (n >= parties_) {
    arrived_.store(0, std::memory_order_relaxed);  // ordered before (3) by program order
    // (3) release, pairs with (1)/(5) acquire in the waiters.
    if (state_.compare_exchange_strong(s, s + 2, std::memory_order_release,
                                       std::memory_order_relaxed)) {
      futex_wake_all(state_);
      return BarrierResult::passed_last;
    }
    return BarrierResult::broken;  // a timeout or abort() won the race
  }
  for (;;) {
    const std::uint32_t v = state_.load(std::memory_order_acquire);  // (5)
    if (v != s) return (v == (s | 1u)) ? BarrierResult::broken : BarrierResult::passed;
    const FutexResult r = deadline ? futex_wait_until(state_, s, *deadline) : futex_wait(state_, s);
    if (r == FutexResult::timed_out) {
      std::uint32_t expected = s;
      // (4) release: break this generation, unless it completed meanwhile.
      if (state_.compare_exchange_strong(expected, s | 1u, std::memory_order_acq_rel,
                                         std::memory_order_acquire)) {
        futex_wake_all(state_);
        return BarrierResult::timed_out;
      }
      // expected now holds the new state: loop and report it.
    }
  }
}

void Barrier::abort() noexcept {
  std::uint32_t s = state_.load(std::memory_order_relaxed);
  // (4) release, as a timeout.
  while (!(s & 1u) &&
         !state_.compare_exchange_weak(s, s | 1u, std::memory_order_release,
                                       std::memory_order_relaxed)) {
  }
  futex_wake_all(state_);
}

void Barrier::reset() noexcept {
  const std::uint32_t s = state_.load(std::memory_order_relaxed);
  arrived_.store(0, std::memory_order_relaxed);
  // (3) release: next generation, not broken.
  state_.store(((s >> 1) + 1) << 1, std::memory_order_release);
  futex_wake_all(state_);
}

}  // namespace shmkit
