// shmkit/sync/recursive_mutex.hpp — RecursiveMutex: a process-shared lock its
// owner may take again (CPython's multiprocessing.RLock), living in a block.
//
// Contract
//   * A zero-filled block is an unlocked RecursiveMutex. Lockable and
//     TimedLockable (std::scoped_lock, std::unique_lock); acquire(timeout) is
//     try_lock_for. Deadlines are CLOCK_MONOTONIC.
//   * The owner is the kernel thread id (gettid), unique across all processes
//     of one PID namespace while the thread lives. Processes in different PID
//     namespaces (containers) must not share a RecursiveMutex. The id is
//     cached per thread and refreshed in a fork child (pthread_atfork).
//   * Each lock() by the owner adds one level (up to 2^32-1); the lock is
//     released when unlock() has been called as many times.
//   * Unlock by a non-owner (CPython raises AssertionError/RuntimeError): here
//     unlock() returns false and leaves the lock exactly as it was; it never
//     throws and never releases someone else's lock. unlock() returns true
//     when it dropped one level. std::unique_lock ignores the result.
//   * Progress and fairness as Mutex (bounded spin, then shared FUTEX_WAIT).
//   * Crash behaviour: if the owner dies the lock stays held; other lockers'
//     try_lock_for/try_lock_until time out cleanly, lock() blocks forever.
//     Should the dead owner's thread id be reused by a new thread, that
//     thread would be taken for the owner: use RobustMutex when holders may
//     die.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <type_traits>

#include "shmkit/sync/mutex.hpp"

namespace shmkit {
namespace detail {
// The calling thread's kernel id, cached; 0 means "not fetched yet".
inline thread_local std::uint32_t tls_thread_id = 0;
// gettid(), stored into tls_thread_id; registers (once) a pthread_atfork child
// handler that clears the cache of the thread that forked.
std::uint32_t fetch_thread_id() noexcept;
inline std::uint32_t current_thread_id() noexcept {
  std::uint32_t id = tls_thread_id;
  return id != 0 ? id : fetch_thread_id();
}
}  // namespace detail

class RecursiveMutex {
 public:
  // State: (mutex_ word, owner_, count_)
  //   free                 (0, 0, 0)
  //   held by thread t     (1|2, t, n >= 1)   count_ is touched by t only
  // owner_ is written only by the holder, and read without the lock by
  // threads asking "is it me?": a thread sees its own id there only if it
  // wrote it itself and has not cleared it (coherence), so relaxed suffices.
  constexpr RecursiveMutex() noexcept = default;
  // Lives at a fixed place in a block shared with other processes.
  RecursiveMutex(const RecursiveMutex&) = delete;
  RecursiveMutex& operator=(const RecursiveMutex&) = delete;

  void lock() noexcept {
    const std::uint32_t me = detail::current_thread_id();
    if (owner_.load(std::memory_order_relaxed) == me) {
      ++count_;
      return;
    }
    mutex_.lock();  // acquire, pairs with mutex_.unlock()'s release
    take(me);
  }

  [[nodiscard]] bool try_lock() noexcept {
    const std::uint32_t me = detail::current_thread_id();
    if (owner_.load(std::memory_order_relaxed) == me) {
      ++count_;
      return true;
    }
    if (!mutex_.try_lock()) return false;
    take(me);
    return true;
  }

  template <class Rep, class Period>
  [[nodiscard]] bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) noexcept {
    return try_lock_until(detail::deadline_after(timeout));
  }

  template <class Clock, class Duration>
  [[nodiscard]] bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline) noexcept {
    const std::uint32_t me = detail::current_thread_id();
    if (owner_.load(std::memory_order_relaxed) == me) {
      ++count_;
      return true;
    }
    if (!mutex_.try_lock_until(deadline)) return false;
    take(me);
    return true;
  }

  // Drops one level. false (and no change at all) if the caller is not the
  // owner, including when the lock is free.
  bool unlock() noexcept {
    if (owner_.load(std::memory_order_relaxed) != detail::current_thread_id()) return false;
    if (--count_ == 0) {
      owner_.store(0, std::memory_order_relaxed);  // published by the release below
      mutex_.unlock();                             // release
    }
    return true;
  }

  // True if the calling thread holds the lock.
  bool owned_by_me() const noexcept {
    return owner_.load(std::memory_order_relaxed) == detail::current_thread_id();
  }
  // Recursion depth; meaningful only to the owner.
  std::uint32_t level() const noexcept { return owned_by_me() ? count_ : 0; }

 private:
  void take(std::uint32_t me) noexcept {
    owner_.store(me, std::memory_order_relaxed);
    count_ = 1;
  }

  Mutex mutex_;
  std::atomic<std::uint32_t> owner_{0};
  std::uint32_t count_ = 0;
};

static_assert(std::is_standard_layout_v<RecursiveMutex>, "RecursiveMutex lives in shared memory");
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
static_assert(sizeof(RecursiveMutex) == 12);

}  // namespace shmkit
