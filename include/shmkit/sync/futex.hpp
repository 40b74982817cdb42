// shmkit/sync/futex.hpp — wait and wake on a 32-bit word in shared memory.
//
// Contract
//   * The word is a std::atomic<std::uint32_t> (4 bytes, always lock-free,
//     address-free), usually inside a SharedMemory block. FutexScope::shared
//     (the default) works between processes that map the same block at any
//     address; FutexScope::process_private is faster but wakes only threads of
//     the calling process (it is what std::atomic::wait, abseil and folly use,
//     and it does NOT work across processes).
//   * futex_wait* block only while the word equals `expected` (checked
//     atomically by the kernel). Every wake-up may be spurious: callers re-check
//     their condition in a loop. Deadlines are absolute CLOCK_MONOTONIC
//     (std::chrono::steady_clock on Linux), so retries after EINTR never drift.
//   * Never throws, never allocates. A futex call that fails for a reason that
//     can only be a bug (EFAULT, EINVAL, ENOSYS) aborts with a message.
//   * Crash behaviour: a process that dies while waiting leaves nothing behind;
//     a wake aimed at it is absorbed by the kernel (the caller's wake count
//     says how many were woken).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "shmkit/detail/sync_common.hpp"

namespace shmkit {

using FutexWord = std::atomic<std::uint32_t>;
static_assert(sizeof(FutexWord) == 4, "futex words are exactly 4 bytes");
static_assert(FutexWord::is_always_lock_free, "a futex word must be lock-free");

enum class FutexScope : std::uint8_t {
  shared,           // any process mapping the word (no FUTEX_PRIVATE_FLAG)
  process_private,  // this process only (FUTEX_PRIVATE_FLAG)
};

enum class FutexResult : std::uint8_t {
  woken,           // returned after a wake (or spuriously): re-check the word
  value_mismatch,  // the word did not hold `expected` when the kernel looked
  timed_out,       // the deadline passed
  interrupted,     // a signal handler ran (EINTR)
};

// Blocks while word == expected, until woken.
FutexResult futex_wait(const FutexWord& word, std::uint32_t expected,
                       FutexScope scope = FutexScope::shared) noexcept;

// As futex_wait, giving up at `deadline` (CLOCK_MONOTONIC).
// time_point::max() is no deadline at all (see detail::deadline_after).
FutexResult futex_wait_until(const FutexWord& word, std::uint32_t expected,
                             std::chrono::steady_clock::time_point deadline,
                             FutexScope scope = FutexScope::shared) noexcept;

// How long a sleeper in a wake-one protocol (Mutex, Semaphore, RobustMutex)
// sleeps before it looks at the word again. A waiter that is woken and then
// killed before it acts takes the one wake meant for the next sleeper with
// it, and nothing in the kernel hands it on (the robust-futex exit rescue
// only covers a lock word left at 0); re-checking turns that loss into at
// most this much delay instead of a hang. Waiting longer than this costs
// one extra wake-up per interval.
inline constexpr std::chrono::milliseconds kLostWakeRecheck{10};

// One bounded sleep towards `deadline` (time_point::max(): none): waits
// while word == expected, at most until min(deadline, now +
// kLostWakeRecheck). timed_out only once `deadline` itself has passed; the
// end of a slice reads as `woken` (re-check and call again). The building
// block of every blocking loop that must survive a lost wake-up.
inline FutexResult futex_wait_slice(const FutexWord& word, std::uint32_t expected,
                                    std::chrono::steady_clock::time_point deadline,
                                    FutexScope scope = FutexScope::shared) noexcept {
  const auto now = std::chrono::steady_clock::now();
  if (now >= deadline) return FutexResult::timed_out;
  // deadline > now here, so deadline - now cannot overflow.
  const bool last = deadline - now <= kLostWakeRecheck;
  const FutexResult r = futex_wait_until(word, expected, last ? deadline : now + kLostWakeRecheck, scope);
  return (r == FutexResult::timed_out && !last) ? FutexResult::woken : r;
}

template <class Rep, class Period>
FutexResult futex_wait_for(const FutexWord& word, std::uint32_t expected,
                           std::chrono::duration<Rep, Period> timeout,
                           FutexScope scope = FutexScope::shared) noexcept {
  // Saturating: duration::max() waits until woken, never "already past".
  return futex_wait_until(word, expected, detail::deadline_after(timeout), scope);
}

// Wakes up to `count` waiters on `word` (count >= 1); returns how many woke.
// Only the word's address is used: it is safe to call after the releasing
// store even if the word's block may be unmapped by another thread meanwhile.
int futex_wake(const FutexWord& word, int count = 1, FutexScope scope = FutexScope::shared) noexcept;
// Wakes every waiter on `word`.
int futex_wake_all(const FutexWord& word, FutexScope scope = FutexScope::shared) noexcept;

}  // namespace shmkit
