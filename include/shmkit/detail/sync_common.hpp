// shmkit/detail/sync_common.hpp — internals shared by the sync headers:
// a CPU pause for spin loops, and saturating deadline arithmetic (timeouts
// and time points on any clock to a CLOCK_MONOTONIC deadline, never
// overflowing: "forever" stays forever).
#pragma once

#include <chrono>
#include <cmath>
#include <ctime>
#include <ratio>
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

// Every deadline is taken on CLOCK_MONOTONIC (steady_clock on Linux).
//
// Deadlines saturate: "wait forever" is a legitimate request
// (try_lock_for(hours::max()), try_lock_until(time_point::max()), a
// system_clock time in the year 2500), and plain chrono arithmetic would
// overflow (signed overflow: undefined behaviour, in practice a deadline in
// the past, so "forever" returned false at once). Every conversion below is
// clamped instead:
//   * a duration too long for steady_clock's nanoseconds, or a deadline
//     beyond its range, becomes steady_clock::time_point::max(), which every
//     wait in shmkit treats as "no deadline" (it still sleeps in bounded
//     slices where its protocol needs them);
//   * a zero, negative or NaN timeout, or a deadline already passed, becomes
//     a deadline in the past (never before the clock's epoch, so that
//     `deadline - now` cannot overflow either): the call tries once.
// Use deadline_after/to_steady (or saturating_ceil) for every deadline; never
// write `now() + timeout`.

// d in steady_clock ticks, rounded up (a timeout never ends early), clamped
// to the representable range. NaN counts as zero.
template <class Rep, class Period>
std::chrono::steady_clock::duration saturating_ceil(std::chrono::duration<Rep, Period> d) noexcept {
  using Ticks = std::chrono::steady_clock::duration;
  // Range check in long double: no overflow (at worst inf), exact enough at
  // the int64 boundary (64-bit mantissa on x86-64, 113 on aarch64).
  const long double x =
      std::chrono::duration_cast<std::chrono::duration<long double, Ticks::period>>(d).count();
  if (x != x) return Ticks::zero();
  if (x >= static_cast<long double>(Ticks::max().count())) return Ticks::max();
  if (x <= static_cast<long double>(Ticks::min().count())) return Ticks::min();
  using Factor = std::ratio_divide<Period, Ticks::period>;
  if constexpr (std::is_integral_v<Rep> && (Factor::num == 1 || Factor::den == 1)) {
    // One multiplication or one division: in range once the result is.
    return std::chrono::ceil<Ticks>(d);
  } else {
    // A floating count or a ratio like 1/3 (whose exact cast multiplies
    // before it divides and could overflow on the way).
    return Ticks(static_cast<Ticks::rep>(std::ceil(x)));
  }
}

// a + b, clamped to [time_point{} (the epoch), time_point::max()].
inline std::chrono::steady_clock::time_point saturating_add(std::chrono::steady_clock::time_point a,
                                                            std::chrono::steady_clock::duration b) noexcept {
  using TP = std::chrono::steady_clock::time_point;
  std::chrono::steady_clock::rep sum;
  if (__builtin_add_overflow(a.time_since_epoch().count(), b.count(), &sum)) {
    return b.count() > 0 ? TP::max() : TP{};
  }
  return sum < 0 ? TP{} : TP(std::chrono::steady_clock::duration(sum));
}

// A time point on any clock as a steady_clock deadline. A steady_clock time
// point is taken as is (rounded up to ticks); another clock's is converted
// once, by its distance from that clock's now. Saturating, as above.
template <class Clock, class Duration>
std::chrono::steady_clock::time_point to_steady(const std::chrono::time_point<Clock, Duration>& tp) noexcept {
  using TP = std::chrono::steady_clock::time_point;
  using Ticks = std::chrono::steady_clock::duration;
  if constexpr (std::is_same_v<Clock, std::chrono::steady_clock>) {
    return saturating_add(TP{}, saturating_ceil(tp.time_since_epoch()));
  } else {
    const Ticks target = saturating_ceil(tp.time_since_epoch());
    if (target == Ticks::max()) return TP::max();  // beyond any clock's reach: forever
    const Ticks now = saturating_ceil(Clock::now().time_since_epoch());
    Ticks::rep left;
    if (__builtin_sub_overflow(target.count(), now.count(), &left)) {
      return target.count() > now.count() ? TP::max() : TP{};
    }
    return saturating_add(std::chrono::steady_clock::now(), Ticks(left));
  }
}

// The deadline `d` after `from` (default: now). A negative or zero timeout
// means "try once" (a deadline already passed); one beyond steady_clock's
// range means forever (time_point::max()).
template <class Rep, class Period>
std::chrono::steady_clock::time_point deadline_after(std::chrono::steady_clock::time_point from,
                                                     std::chrono::duration<Rep, Period> d) noexcept {
  return saturating_add(from, saturating_ceil(d));
}
template <class Rep, class Period>
std::chrono::steady_clock::time_point deadline_after(std::chrono::duration<Rep, Period> d) noexcept {
  return deadline_after(std::chrono::steady_clock::now(), d);
}

// An absolute CLOCK_MONOTONIC timespec for futex and pthread_mutex_clocklock
// (a time point before the clock's epoch becomes the epoch: already passed).
inline timespec to_timespec(std::chrono::steady_clock::time_point tp) noexcept {
  auto since_epoch = tp.time_since_epoch();
  if (since_epoch.count() < 0) since_epoch = {};
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(secs.count());
  ts.tv_nsec =
      static_cast<long>(std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch - secs).count());
  return ts;
}

}  // namespace shmkit::detail
