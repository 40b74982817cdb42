// src/sync_mutex.cpp — out-of-line parts of Mutex, RecursiveMutex and
// RobustMutex.
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <system_error>

#include "shmkit/sync/recursive_mutex.hpp"
#include "shmkit/sync/futex.hpp"
#include "shmkit/sync/robust_mutex.hpp"

namespace shmkit {
namespace detail {
namespace {
void clear_thread_id_in_child() noexcept { tls_thread_id = 0; }
}  // namespace

std::uint32_t fetch_thread_id() noexcept {
  static std::once_flag once;
  std::call_once(once, [] { ::pthread_atfork(nullptr, nullptr, clear_thread_id_in_child); });
  tls_thread_id = static_cast<std::uint32_t>(::syscall(SYS_gettid));
  return tls_thread_id;
}

LockResult robust_lock_result(int rc) noexcept {
  switch (rc) {
    case 0: return LockResult::acquired;
    case EOWNERDEAD: return LockResult::owner_died;
    case ENOTRECOVERABLE: return LockResult::not_recoverable;
    case EDEADLK: return LockResult::deadlock;
    case EBUSY: return LockResult::busy;
    case ETIMEDOUT: return LockResult::timed_out;
    default:
      std::fprintf(stderr, "shmkit: RobustMutex: pthread lock returned %d (a bug)\n", rc);
      std::abort();
  }
}
}  // namespace detail

const char* to_string(LockResult r) noexcept {
  switch (r) {
    case LockResult::acquired: return "acquired";
    case LockResult::owner_died: return "owner_died";
    case LockResult::not_recoverable: return "not_recoverable";
    case LockResult::deadlock: return "deadlock";
    case LockResult::busy: return "busy";
    case LockResult::timed_out: return "timed_out";
  }
  return "?";
}

RobustMutex::RobustMutex() {
  pthread_mutexattr_t attr;
  int rc = ::pthread_mutexattr_init(&attr);
  if (rc == 0) rc = ::pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  if (rc == 0) rc = ::pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  if (rc == 0) rc = ::pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
  if (rc == 0) rc = ::pthread_mutex_init(&mutex_, &attr);
  ::pthread_mutexattr_destroy(&attr);
  if (rc != 0) throw std::system_error(rc, std::generic_category(), "shmkit: RobustMutex init");
}

LockResult RobustMutex::lock_result(int rc) noexcept {
  if (rc == ENOTRECOVERABLE) {
    // glibc's trylock took the low-level lock (CAS 0 -> tid) before seeing
    // __owner == PTHREAD_MUTEX_NOTRECOVERABLE, and its "unlock if oldval ==
    // id" test compares the CAS's old value (0), so it never unlocks. If the
    // word holds our tid, nobody else can own it: give it back as lll_unlock
    // would, waking the lockers that queued behind it (robust pshared mutexes
    // use shared futexes). __data.__lock is part of glibc's public ABI
    // (bits/struct_mutex.h).
    constexpr std::uint32_t kTidMask = 0x3fffffff;  // FUTEX_TID_MASK
    constexpr std::uint32_t kWaiters = 0x80000000;  // FUTEX_WAITERS
    auto* word = reinterpret_cast<FutexWord*>(&mutex_.__data.__lock);
    const std::uint32_t v = word->load(std::memory_order_relaxed);
    if ((v & kTidMask) == detail::current_thread_id()) {
      // release: we never entered a critical section, but lockers that see
      // 0 must also see __owner == NOTRECOVERABLE (written before).
      const std::uint32_t old = word->exchange(0, std::memory_order_release);
      if (old & kWaiters) futex_wake_all(*word);
    }
  }
  return detail::robust_lock_result(rc);
}

RobustMutex::~RobustMutex() { ::pthread_mutex_destroy(&mutex_); }

// Waits in slices of kLostWakeRecheck up to `deadline` (time_point::max():
// no deadline). Each new pthread_mutex_clocklock sets the futex "waiters"
// bit again, so a wake-up lost to a waiter killed after being woken (see
// the header) costs at most one slice.
LockResult RobustMutex::lock_until(std::chrono::steady_clock::time_point deadline) noexcept {
  using Clock = std::chrono::steady_clock;
  for (;;) {
    const Clock::time_point now = Clock::now();
    const Clock::time_point slice_end =
        deadline - now > kLostWakeRecheck ? now + kLostWakeRecheck : deadline;
    const timespec ts = detail::to_timespec(slice_end);
    int rc;
    do {
      rc = ::pthread_mutex_clocklock(&mutex_, CLOCK_MONOTONIC, &ts);
    } while (rc == EINTR);
    if (rc == ETIMEDOUT && slice_end < deadline) continue;
    return lock_result(rc);
  }
}

}  // namespace shmkit
