// shmkit/sync/barrier.hpp — Barrier: a process-shared, reusable barrier for a
// fixed number of parties, living in a block (CPython's
// multiprocessing.Barrier, i.e. threading.Barrier across processes).
//
// Contract
//   * Construct in place with the number of parties, 1 to kMaxParties (0 is
//     taken as 1, more than kMaxParties as kMaxParties), before use.
//     wait() blocks until `parties` callers have arrived, then releases them
//     all; exactly one of them gets BarrierResult::passed_last. The barrier
//     then starts the next round by itself.
//   * More callers than parties (CPython's semantics): callers are served in
//     arrival order, `parties` per round. The (parties+1)-th caller belongs
//     to the next round and waits until that round fills, even while the
//     current one is still being released; no round ever completes with
//     fewer than `parties` arrivals, so no party passes alone.
//   * wait_for/wait_until (CLOCK_MONOTONIC; timeouts saturate, so
//     duration::max() waits forever, zero or negative looks once): a waiter
//     that times out breaks the barrier (returns timed_out); every other
//     waiter, of this round or a later one, and every later arrival, gets
//     broken until reset() (CPython's BrokenBarrierError). abort() breaks it
//     on purpose.
//   * reset() starts a fresh round; call it only when no process is waiting
//     (e.g. after everyone saw broken).
//   * Everything a party wrote before wait() is visible to every party of
//     its round after it returns passed/passed_last (acq_rel on the arrival
//     counter, release/acquire on the round word).
//   * Progress: arrival is lock-free (a CAS loop); waiting sleeps in bounded
//     futex slices (kLostWakeRecheck) that re-check the round word.
//   * Crash behaviour: a party that dies before arriving leaves the others
//     waiting; with timed waits they time out and break the barrier. A last
//     arrival killed between completing the round and its wake costs the
//     others at most one slice.
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
  // The words (12 bytes, all 32-bit):
  //   state_    round << 1 | broken. `round` (mod rounds()) is the round now
  //             filling; every waiter sleeps on this word. The last arrival
  //             of round r moves it to r+1; a timeout or abort() sets the
  //             broken bit: whichever CAS comes first decides.
  //   arrived_  the ticket of the next arrival (mod parties * rounds()).
  //             Ticket t is arrival t % parties of round t / parties; the
  //             ticket parties-1 of a round is its last arrival.
  //   parties_  fixed at construction.
  // Invariant: rounds complete in ticket order, so state_'s round is never
  // ahead of the round of the next ticket.
  static constexpr std::uint32_t kMaxParties = 1u << 24;

  explicit Barrier(std::uint32_t parties) noexcept
      : parties_(parties == 0 ? 1 : (parties > kMaxParties ? kMaxParties : parties)) {}
  // Lives at a fixed place in a block that other processes map.
  Barrier(const Barrier&) = delete;
  Barrier& operator=(const Barrier&) = delete;

  BarrierResult wait() noexcept { return wait_impl(std::chrono::steady_clock::time_point::max()); }

  template <class Rep, class Period>
  BarrierResult wait_for(const std::chrono::duration<Rep, Period>& timeout) noexcept {
    return wait_impl(detail::deadline_after(timeout));
  }

  template <class Clock, class Duration>
  BarrierResult wait_until(const std::chrono::time_point<Clock, Duration>& deadline) noexcept {
    return wait_impl(detail::to_steady(deadline));
  }

  // Breaks the barrier: current and future waiters get broken until reset().
  void abort() noexcept;
  void reset() noexcept;

  bool broken() const noexcept { return (state_.load(std::memory_order_acquire) & 1u) != 0; }
  std::uint32_t parties() const noexcept { return parties_; }
  // Arrivals in the round now filling, at most parties() (racy, diagnostics:
  // CPython's n_waiting).
  std::uint32_t n_waiting() const noexcept;

 private:
  // time_point::max(): no deadline.
  BarrierResult wait_impl(std::chrono::steady_clock::time_point deadline) noexcept;
  // How many rounds the words count before wrapping: parties * rounds()
  // tickets fit 32 bits, rounds() fit state_'s 31.
  std::uint64_t rounds() const noexcept;

  FutexWord state_{0};
  FutexWord arrived_{0};
  std::uint32_t parties_;
};

static_assert(std::is_standard_layout_v<Barrier>, "Barrier lives in shared memory");
static_assert(sizeof(Barrier) == 12);

}  // namespace shmkit
