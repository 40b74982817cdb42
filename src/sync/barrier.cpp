// src/sync/barrier.cpp — Barrier's wait, abort and reset.
#include "shmkit/sync/barrier.hpp"

#include <algorithm>

namespace shmkit {

std::uint64_t Barrier::rounds() const noexcept {
  return std::min<std::uint64_t>(std::uint64_t{1} << 31, (std::uint64_t{1} << 32) / parties_);
}

BarrierResult Barrier::wait_impl(std::chrono::steady_clock::time_point deadline) noexcept {
  // (1) acquire, pairs with (4) release: a broken barrier is seen together
  // with what led to it.
  if (state_.load(std::memory_order_acquire) & 1u) return BarrierResult::broken;
  const std::uint64_t n_rounds = rounds();
  const std::uint64_t n_tickets = parties_ * n_rounds;
  // (2) acq_rel: the tickets form a release sequence on arrived_ (every
  // update is a read-modify-write), so the last arrival of a round acquires
  // every earlier party's writes; it republishes them with (3).
  std::uint32_t t = arrived_.load(std::memory_order_relaxed);
  while (!arrived_.compare_exchange_weak(t, static_cast<std::uint32_t>((t + std::uint64_t{1}) % n_tickets),
                                         std::memory_order_acq_rel, std::memory_order_relaxed)) {
  }
  const std::uint64_t round = t / parties_;
  const bool last = t % parties_ == parties_ - 1;
  const auto next_round = static_cast<std::uint32_t>((round + 1) % n_rounds);
  // Our round is over once state_'s round is 1 to n_rounds/2 ahead of it
  // (modular: a later round's waiter sees rounds before its own as behind).
  auto over = [&](std::uint32_t v) {
    const std::uint64_t ahead = ((v >> 1) + n_rounds - round) % n_rounds;
    return ahead != 0 && ahead <= n_rounds / 2;
  };
  for (;;) {
    // (5) acquire, pairs with (3)/(4) release (and, through the release
    // sequence of CASes on state_, with every earlier round's (3)).
    std::uint32_t v = state_.load(std::memory_order_acquire);
    if (v & 1u) return BarrierResult::broken;
    if (last && (v >> 1) == round) {
      // Our round is the one filling and we complete it. (3) release,
      // pairs with (5) in its waiters.
      if (state_.compare_exchange_strong(v, next_round << 1, std::memory_order_acq_rel,
                                         std::memory_order_relaxed)) {
        futex_wake_all(state_);
        return BarrierResult::passed_last;
      }
      continue;  // broken meanwhile: look again
    }
    if (!last && over(v)) return BarrierResult::passed;
    // Bounded slices: a last arrival killed between (3) and its wake costs
    // us one slice, not forever.
    if (futex_wait_slice(state_, v, deadline) == FutexResult::timed_out) {
      // (4) release: break the barrier, unless state_ moved meanwhile (then
      // look again: our round may be over, or the barrier broken).
      if (state_.compare_exchange_strong(v, v | 1u, std::memory_order_acq_rel, std::memory_order_relaxed)) {
        futex_wake_all(state_);
        return BarrierResult::timed_out;
      }
    }
  }
}

std::uint32_t Barrier::n_waiting() const noexcept {
  const std::uint64_t n_tickets = parties_ * rounds();
  const std::uint64_t first = (state_.load(std::memory_order_relaxed) >> 1) * std::uint64_t{parties_};
  const std::uint64_t n = (arrived_.load(std::memory_order_relaxed) + n_tickets - first) % n_tickets;
  return static_cast<std::uint32_t>(std::min<std::uint64_t>(n, parties_));
}

void Barrier::abort() noexcept {
  std::uint32_t s = state_.load(std::memory_order_relaxed);
  // (4) release, as a timeout.
  while (!(s & 1u) &&
         !state_.compare_exchange_weak(s, s | 1u, std::memory_order_release, std::memory_order_relaxed)) {
  }
  futex_wake_all(state_);
}

void Barrier::reset() noexcept {
  const std::uint32_t s = state_.load(std::memory_order_relaxed);
  const auto round = static_cast<std::uint32_t>(((s >> 1) + std::uint64_t{1}) % rounds());
  // The first ticket of the fresh round, then the round: relaxed then (3)
  // release, so an arrival that sees the new round takes a ticket of it
  // (no process waits during reset(): the contract).
  arrived_.store(static_cast<std::uint32_t>(round * std::uint64_t{parties_}), std::memory_order_relaxed);
  state_.store(round << 1, std::memory_order_release);
  futex_wake_all(state_);
}

}  // namespace shmkit
