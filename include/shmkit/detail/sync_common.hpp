// shmkit/detail/sync_common.hpp — internals shared by the sync headers:
// a CPU pause for spin loops and clock conversion for try_lock_until.
#pragma once

#include <chrono>
#include <ctime>
#include <type_traits>

namespace shmkit::detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#else
  asm volatile("" ::: "memory");
#endif
}

// Every deadline is taken on CLOCK_MONOTONIC (steady_clock on Linux). A time
// point on another clock is converted once, by its distance from now.
template <class Clock, class Duration>
std::chrono::steady_clock::time_point to_steady(
    const std::chrono::time_point<Clock, Duration>& tp) noexcept {
  if constexpr (std::is_same_v<Clock, std::chrono::steady_clock>) {
    return std::chrono::time_point_cast<std::chrono::steady_clock::duration>(tp);
  } else {
    return std::chrono::steady_clock::now() +
           std::chrono::ceil<std::chrono::steady_clock::duration>(tp - Clock::now());
  }
}

template <class Rep, class Period>
std::chrono::steady_clock::time_point deadline_after(
    std::chrono::duration<Rep, Period> d) noexcept {
  // A negative or zero timeout means "try once" (a deadline already passed).
  return std::chrono::steady_clock::now() +
         std::chrono::ceil<std::chrono::steady_clock::duration>(d);
}

// An absolute CLOCK_MONOTONIC timespec for futex and pthread_mutex_clocklock
// (a time point before the clock's epoch becomes the epoch: already passed).
inline timespec to_timespec(std::chrono::steady_clock::time_point tp) noexcept {
  auto since_epoch = tp.time_since_epoch();
  if (since_epoch.count() < 0) since_epoch = {};
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(secs.count());
  ts.tv_nsec = static_cast<long>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch - secs).count());
  return ts;
}

}  // namespace shmkit::detail
