// shmkit/sync/event.hpp — Event: a process-shared flag processes can wait
// for (CPython's multiprocessing.Event), living in a block.
//
// Contract
//   * A zero-filled block is a clear Event. set() sets the flag and wakes every
//     waiter; clear() resets it; wait() returns once the flag is set (at once
//     if it is); wait_for/wait_until (CLOCK_MONOTONIC) return the flag's value
//     when they give up, as CPython's wait(timeout).
//   * Everything written before set() is visible to a waiter that returns
//     true (release/acquire).
//   * Progress: set/clear/is_set are lock-free; wait sleeps in a shared
//     FUTEX_WAIT. A set() followed at once by clear() may be missed by a
//     waiter that had not yet woken (as CPython's Event).
//   * Timeouts saturate: wait_for(duration::max()) and wait_until of a time
//     point beyond the clock's range wait forever; zero or negative: look once.
//   * Crash behaviour: no owner; a dead process leaves the flag as it was. A
//     setter killed between its store and its wake costs a sleeper at most
//     kLostWakeRecheck: sleeps are bounded slices that re-check the flag.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <type_traits>

#include "shmkit/detail/sync_common.hpp"
#include "shmkit/sync/futex.hpp"

namespace shmkit {

class Event {
 public:
  // The word's states:
  //   0  clear, nobody sleeping     wait: 0 -> 2 (CAS) then sleep; set: -> 1
  //   1  set                        clear: 1 -> 0 (CAS)
  //   2  clear, maybe sleepers      set: -> 1 then FUTEX_WAKE(all)
  static constexpr std::uint32_t kClear = 0;
  static constexpr std::uint32_t kSet = 1;
  static constexpr std::uint32_t kClearWaiters = 2;

  constexpr Event() noexcept = default;
  // Lives at a fixed place in a block that other processes map.
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  bool is_set() const noexcept {
    return word_.load(std::memory_order_acquire) == kSet;  // (2) acquire, pairs with (1)
  }

  // The raw word (kClear, kSet, kClearWaiters), for diagnostics and tests.
  std::uint32_t native_state() const noexcept { return word_.load(std::memory_order_relaxed); }

  void set() noexcept {
    // (1) release, pairs with (2) acquire in is_set/wait.
    if (word_.exchange(kSet, std::memory_order_release) == kClearWaiters) futex_wake_all(word_);
  }

  void clear() noexcept {
    std::uint32_t expected = kSet;
    // relaxed: clearing publishes nothing; a 2 (sleepers) stays 2.
    word_.compare_exchange_strong(expected, kClear, std::memory_order_relaxed);
  }

  void wait() noexcept { (void)wait_impl(nullptr); }

  template <class Rep, class Period>
  [[nodiscard]] bool wait_for(const std::chrono::duration<Rep, Period>& timeout) noexcept {
    const auto d = detail::deadline_after(timeout);
    return wait_impl(&d);
  }

  template <class Clock, class Duration>
  [[nodiscard]] bool wait_until(const std::chrono::time_point<Clock, Duration>& deadline) noexcept {
    const auto d = detail::to_steady(deadline);
    return wait_impl(&d);
  }

 private:
  bool wait_impl(const std::chrono::steady_clock::time_point* deadline) noexcept {
    for (;;) {
      std::uint32_t v = word_.load(std::memory_order_acquire);  // (2) acquire, pairs with (1)
      if (v == kSet) return true;
      if (v == kClear && !word_.compare_exchange_strong(v, kClearWaiters, std::memory_order_relaxed)) {
        continue;  // it changed under us: look again
      }
      // Bounded sleeps (a setter killed between its store and its wake must
      // not strand us), up to the deadline or forever.
      const FutexResult r = futex_wait_slice(
          word_, kClearWaiters, deadline ? *deadline : std::chrono::steady_clock::time_point::max());
      if (r == FutexResult::timed_out) return is_set();
    }
  }

  FutexWord word_{kClear};
};

static_assert(std::is_standard_layout_v<Event>, "Event lives in shared memory");
static_assert(sizeof(Event) == 4);

}  // namespace shmkit
