// shmkit/sync/barrier.hpp — Barrier: a process-shared, reusable barrier for a
// fixed number of parties, living in a block (CPython's
// multiprocessing.Barrier, i.e. threading.Barrier across processes).
//
// Contract
//   * Construct in place with the number of parties (>= 1) before use.
//     wait() blocks until `parties` callers have arrived, then releases them
//     all; exactly one of them gets BarrierResult::passed_last. The barrier
//     then starts the next generation by itself.
//   * wait_for/wait_until (CLOCK_MONOTONIC): a waiter that times out breaks
//     the barrier (returns timed_out); every other waiter of that generation,
//     and every later arrival, gets broken until reset() (CPython's
//     BrokenBarrierError). abort() breaks it on purpose.
//   * reset() starts a fresh generation; call it only when no process is
//     waiting (e.g. after everyone saw broken).
//   * Everything a party wrote before wait() is visible to every party after
//     it returns passed/passed_last (acq_rel on the arrival counter, release
//     /acquire on the generation).
//   * Crash behaviour: a party that dies before arriving leaves the others
//     waiting; with timed waits they time out and break the barrier.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <type_traits>

#include "shmkit/detail/sync_common.hpp"
#include "shmkit/sync/futex.hpp"

namespace shmkit {

enum class BarrierResult : std::uint8_t { passed, passed_last, broken, timed_out };

class Barrier {
 public:
  // state_ = generation << 1 | broken. Waiters of generation g sleep on
  // state_ == g<<1. The last arrival moves it to (g+1)<<1; a timeout or
  // abort() moves it to g<<1|1 (broken) — whichever CAS wins decides.
  // arrived_ counts arrivals in the current generation.
  explicit Barrier(std::uint32_t parties) noexcept : parties_(parties == 0 ? 1 : parties) {}
  // Lives at a fixed place in a block that other processes map.
  Barrier(const Barrier&) = delete;
  Barrier& operator=(const Barrier&) = delete;

  BarrierResult wait() noexcept { return wait_impl(nullptr); }

  template <class Rep, class Period>
  BarrierResult wait_for(const std::chrono::duration<Rep, Period>& timeout) noexcept {
    const auto d = detail::deadline_after(timeout);
    return wait_impl(&d);
  }

  template <class Clock, class Duration>
  BarrierResult wait_until(const std::chrono::time_point<Clock, Duration>& deadline) noexcept {
    const auto d = detail::to_steady(deadline);
    return wait_impl(&d);
  }

  // Breaks the barrier: current and future waiters get broken until reset().
  void abort() noexcept;
  void reset() noexcept;

  bool broken() const noexcept { return (state_.load(std::memory_order_acquire) & 1u) != 0; }
  std::uint32_t parties() const noexcept { return parties_; }
  // Arrivals in the current generation (racy, diagnostics: CPython's n_waiting).
  std::uint32_t n_waiting() const noexcept { return arrived_.load(std::memory_order_relaxed); }

 private:
  BarrierResult wait_impl(const std::chrono::steady_clock::time_point* deadline) noexcept;

  FutexWord state_{0};
  FutexWord arrived_{0};
  std::uint32_t parties_;
};

static_assert(std::is_standard_layout_v<Barrier>, "Barrier lives in shared memory");
static_assert(sizeof(Barrier) == 12);

}  // namespace shmkit
