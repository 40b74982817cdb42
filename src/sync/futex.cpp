// src/sync/futex.cpp — the futex system calls behind shmkit/sync/futex.hpp.
#include "shmkit/sync/futex.hpp"

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shmkit/detail/sync_common.hpp"

namespace shmkit {
namespace {

long sys_futex(const FutexWord& word, int op, std::uint32_t val, const timespec* ts,
               std::uint32_t val3) noexcept {
  // The kernel reads the word as a plain u32; std::atomic<uint32_t> has the
  // same size and representation (static_asserts in the header).
  auto* addr = const_cast<std::uint32_t*>(reinterpret_cast<const std::uint32_t*>(&word));
  return ::syscall(SYS_futex, addr, op, val, ts, nullptr, val3);
}

int op_with_scope(int op, FutexScope scope) noexcept {
  return scope == FutexScope::process_private ? (op | FUTEX_PRIVATE_FLAG) : op;
}

[[noreturn]] void futex_bug(const char* what, int err) noexcept {
  std::fprintf(stderr, "shmkit: %s failed with errno %d: a bug (bad address or operation)\n", what, err);
  std::abort();
}

FutexResult wait_impl(const FutexWord& word, std::uint32_t expected, const timespec* abs,
                      FutexScope scope) noexcept {
  // FUTEX_WAIT_BITSET takes an absolute timeout on CLOCK_MONOTONIC (no
  // FUTEX_CLOCK_REALTIME flag), unlike FUTEX_WAIT's relative one.
  long rc = sys_futex(word, op_with_scope(FUTEX_WAIT_BITSET, scope), expected, abs, FUTEX_BITSET_MATCH_ANY);
  if (rc == 0) return FutexResult::woken;
  switch (errno) {
    case EAGAIN:
      return FutexResult::value_mismatch;
    case ETIMEDOUT:
      return FutexResult::timed_out;
    case EINTR:
      return FutexResult::interrupted;
    default:
      futex_bug("FUTEX_WAIT_BITSET", errno);
  }
}

}  // namespace

FutexResult futex_wait(const FutexWord& word, std::uint32_t expected, FutexScope scope) noexcept {
  return wait_impl(word, expected, nullptr, scope);
}

FutexResult futex_wait_until(const FutexWord& word, std::uint32_t expected,
                             std::chrono::steady_clock::time_point deadline, FutexScope scope) noexcept {
  if (deadline.time_since_epoch().count() < 0) return FutexResult::timed_out;
  // The saturated "forever" (detail::deadline_after): no timeout at all.
  if (deadline == std::chrono::steady_clock::time_point::max()) {
    return wait_impl(word, expected, nullptr, scope);
  }
  const timespec ts = detail::to_timespec(deadline);
  return wait_impl(word, expected, &ts, scope);
}

int futex_wake(const FutexWord& word, int count, FutexScope scope) noexcept {
  long rc = sys_futex(word, op_with_scope(FUTEX_WAKE, scope), static_cast<std::uint32_t>(count), nullptr, 0);
  if (rc < 0) {
    // EFAULT here means the block was unmapped between the releasing store
    // and the wake (allowed by the contract): nobody can be waiting on it.
    if (errno == EFAULT) return 0;
    futex_bug("FUTEX_WAKE", errno);
  }
  return static_cast<int>(rc);
}

int futex_wake_all(const FutexWord& word, FutexScope scope) noexcept {
  return futex_wake(word, INT_MAX, scope);
}

}  // namespace shmkit
