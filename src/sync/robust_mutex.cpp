// src/sync/robust_mutex.cpp — out-of-line parts of RobustMutex (identity, the
// liveness check, the slow paths). RecursiveMutex's are recursive_mutex.cpp.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <system_error>

#include "shmkit/detail/process.hpp"
#include "shmkit/sync/futex.hpp"
#include "shmkit/sync/robust_mutex.hpp"

namespace shmkit {
namespace detail {
namespace {
// A fork child is a new thread (and maybe, after unshare, in a new PID
// namespace): it must not take its parent's identity for its own.
void clear_thread_identity_in_child() noexcept { tls_robust_identity = RobustIdentity{0, 0, 0}; }

void register_fork_handler() noexcept {
  static std::once_flag once;
  std::call_once(once, [] { ::pthread_atfork(nullptr, nullptr, clear_thread_identity_in_child); });
}

std::uint32_t own_pid_namespace() noexcept {
  struct stat st {};
  if (::stat("/proc/self/ns/pid", &st) != 0) return 0;
  return static_cast<std::uint32_t>(st.st_ino);
}
}  // namespace

const RobustIdentity& fetch_robust_identity() noexcept {
  register_fork_handler();
  RobustIdentity id{};
  id.tid = static_cast<std::uint32_t>(::syscall(SYS_gettid));
  // Host-absolute (normalised for this process's time namespace; 0 when it
  // cannot be: see shmkit/detail/process.hpp), so every locker compares it alike.
  id.start = static_cast<std::uint32_t>(process::thread_start_time());
  id.pid_ns = own_pid_namespace();
  tls_robust_identity = id;
  return tls_robust_identity;
}
void throw_robust_lock_error(const char* name, LockResult r) {
  const bool relock = r == LockResult::deadlock;
  throw std::system_error(
      relock ? EDEADLK : ENOTRECOVERABLE, std::generic_category(),
      std::string("shmkit: RobustLockable::lock: ") + (name ? name : "RobustMutex") + ": " + to_string(r) +
          (relock ? " (its word names the calling thread as the holder)" : " (recreate the mutex)"));
}
}  // namespace detail

const char* to_string(LockResult r) noexcept {
  switch (r) {
    case LockResult::acquired:
      return "acquired";
    case LockResult::owner_died:
      return "owner_died";
    case LockResult::not_recoverable:
      return "not_recoverable";
    case LockResult::deadlock:
      return "deadlock";
    case LockResult::busy:
      return "busy";
    case LockResult::timed_out:
      return "timed_out";
  }
  return "?";
}

// The liveness check. Called only on slow paths (a held lock found by
// try_lock or by an expiring wait), never on the uncontended path.
bool RobustMutex::owner_is_dead(const detail::RobustIdentity& me, std::uint64_t seen) const noexcept {
  const auto tid = static_cast<std::uint32_t>(seen & kTidMask);
  if (tid == 0 || tid == kNotRecoverable) return false;
  // A thread id of another PID namespace means nothing here: never judge it.
  // (The namespace is written just after the CAS that takes the word: in
  // that window it is the previous owner's, which matters only to a lock
  // shared across namespaces, where owner death is not judged anyway.)
  const std::uint32_t ns = pid_ns_.load(std::memory_order_relaxed);
  if (ns != 0 && ns != me.pid_ns) return false;
  // Our own thread id with another start time (the caller has ruled out its
  // own identity): the id names us now, and one id names one live task, so
  // the thread that took the lock under it has exited (an earlier thread
  // whose id was given to us).
  if (tid == me.tid) return true;
  // Dead: no such id, a zombie, or a live task with another start time (the
  // id was reused). Start 0: the owner's start was unknown, not judged by it.
  return process::has_exited(static_cast<pid_t>(tid), seen >> 32, 0xffffffffu);
}

bool RobustMutex::take_over(const detail::RobustIdentity& me, std::uint64_t seen) noexcept {
  // (3) acquire, as (1): if the dead owner had released before dying the
  // word would not be `seen`; otherwise its stores are visible because it
  // has exited (see owner_is_dead). Keep kWaiters: others may sleep.
  if (!word_.compare_exchange_strong(seen, identity_word(me) | kOwnerDied | (seen & kWaiters),
                                     std::memory_order_acquire, std::memory_order_relaxed)) {
    return false;
  }
  note_namespace(me);
  return true;
}

LockResult RobustMutex::try_lock_held(const detail::RobustIdentity& me, std::uint64_t seen) noexcept {
  for (;;) {
    if ((seen & kLowHalf & ~std::uint64_t{kWaiters}) == kNotRecoverable) {
      return LockResult::not_recoverable;
    }
    if (is_mine(seen, me)) return LockResult::deadlock;
    if (seen == 0) {
      if (try_take(me, seen)) return LockResult::acquired;  // released meanwhile
      continue;
    }
    if (!owner_is_dead(me, seen)) return LockResult::busy;
    if (take_over(me, seen)) return LockResult::owner_died;
    seen = word_.load(std::memory_order_relaxed);
  }
}

// Spins for the budget, then sleeps on the futex half of the word in slices
// of kLostWakeRecheck up to `deadline` (time_point::max(): none). After each
// slice that expires with the lock still held by the same owner, and once
// more at the deadline, it checks the owner's liveness.
LockResult RobustMutex::lock_until(std::chrono::steady_clock::time_point deadline) noexcept {
  using Clock = std::chrono::steady_clock;
  constexpr std::uint64_t kOwnerBits = ~std::uint64_t{kWaiters};  // who, not who sleeps
  const detail::RobustIdentity& me = detail::robust_identity();
  std::uint64_t v = word_.load(std::memory_order_relaxed);
  for (std::uint32_t i = 0, n = detail::spin_iterations(); i < n && v != 0 && (v & kWaiters) == 0; ++i) {
    detail::cpu_relax();
    v = word_.load(std::memory_order_relaxed);
  }
  bool waited = false;  // once we have slept, we take the word with kWaiters
  for (;;) {
    if ((v & kLowHalf & kOwnerBits) == kNotRecoverable) return LockResult::not_recoverable;
    if (v == 0) {
      // (1) acquire, as in lock(). A thread that slept keeps kWaiters set:
      // others may still be sleeping (as Mutex keeps state 2).
      if (word_.compare_exchange_weak(v, identity_word(me) | (waited ? kWaiters : 0),
                                      std::memory_order_acquire, std::memory_order_relaxed)) {
        note_namespace(me);
        return LockResult::acquired;
      }
      continue;
    }
    if (is_mine(v, me)) return LockResult::deadlock;
    if ((v & kWaiters) == 0) {
      if (!word_.compare_exchange_weak(v, v | kWaiters, std::memory_order_relaxed,
                                       std::memory_order_relaxed)) {
        continue;
      }
      v |= kWaiters;
    }
    const Clock::time_point now = Clock::now();
    if (now >= deadline) {
      if (owner_is_dead(me, v) && take_over(me, v)) return LockResult::owner_died;
      const std::uint64_t seen = word_.load(std::memory_order_relaxed);
      if (seen == 0) {  // released meanwhile: one more try
        v = seen;
        continue;
      }
      return LockResult::timed_out;
    }
    // No overflow: deadline > now here.
    const Clock::time_point slice_end = deadline - now > kLostWakeRecheck ? now + kLostWakeRecheck : deadline;
    waited = true;
    if (futex_wait_until(futex_word(), static_cast<std::uint32_t>(v), slice_end) == FutexResult::timed_out &&
        slice_end < deadline) {
      const std::uint64_t seen = word_.load(std::memory_order_relaxed);
      if (seen != 0 && ((seen ^ v) & kOwnerBits) == 0 && owner_is_dead(me, seen) && take_over(me, seen)) {
        return LockResult::owner_died;
      }
    }
    v = word_.load(std::memory_order_relaxed);
  }
}

}  // namespace shmkit
