// shmkit/atomic.hpp — atomics for shared memory, on Boost.Atomic's
// inter-process atomics (boost::atomics::ipc_atomic / ipc_atomic_ref).
//
// Contract
//   * Atomic<T> and AtomicRef<T> are address-free: they work between
//     processes that map a block at different addresses. Only types whose
//     atomic is always lock-free are accepted (static_assert): a lock-based
//     fallback would use a process-private lock, which is wrong in shared
//     memory. T must be trivially copyable.
//   * Atomic<T> lives in a block (placement-new, or zero fill for integers:
//     zero bytes are the value 0). Copy and move are deleted (a copy is a
//     different atomic). Operations are Boost's (std::atomic-like: load,
//     store, exchange, compare_exchange_*, fetch_add, ...), all lock-free and
//     inlined: no cost over a raw std::atomic on the same memory.
//   * Blocking waits. Boost 1.74's wait/notify is a real shared futex only
//     for 4-byte types; for 8-byte types it polls with 1 us sleeps. So
//     WaitableAtomic<T> pairs the value with a separate 32-bit futex word
//     (an epoch) and waits on that, for any T: wait(old) returns once the
//     value differs from old (spurious-wakeup safe), with timed variants.
//     notify_* must follow the store that changed the value.
//   * Crash behaviour: an atomic has no owner; a process that dies leaves
//     the last value it stored. A waiter of a dead notifier times out with
//     the timed variants.
#pragma once

#include <atomic>
#include <boost/atomic/ipc_atomic.hpp>
#include <boost/atomic/ipc_atomic_ref.hpp>
#include <chrono>
#include <cstdint>
#include <type_traits>

#include "shmkit/detail/sync_common.hpp"
#include "shmkit/sync/futex.hpp"

namespace shmkit {

using memory_order = boost::memory_order;

template <class T>
class Atomic : public boost::atomics::ipc_atomic<T> {
  using Base = boost::atomics::ipc_atomic<T>;
  static_assert(std::is_trivially_copyable_v<T>, "Atomic<T> needs a trivially copyable T");
  static_assert(Base::is_always_lock_free,
                "Atomic<T> in shared memory must be always lock-free (no address-free "
                "lock-based fallback exists)");

 public:
  using value_type = T;
  using Base::Base;
  using Base::operator=;
  Atomic() noexcept : Base(T{}) {}
  // Lives at a fixed place in a block: a copy or move would be another atomic.
  Atomic(const Atomic&) = delete;
  Atomic& operator=(const Atomic&) = delete;
};

template <class T>
class AtomicRef : public boost::atomics::ipc_atomic_ref<T> {
  using Base = boost::atomics::ipc_atomic_ref<T>;
  static_assert(std::is_trivially_copyable_v<T>, "AtomicRef<T> needs a trivially copyable T");
  static_assert(Base::is_always_lock_free, "AtomicRef<T> in shared memory must be lock-free");

 public:
  using value_type = T;
  // The object must be aligned to required_alignment (checked by Boost in
  // debug builds).
  static constexpr std::size_t required_alignment = Base::required_alignment;
  using Base::Base;
  using Base::operator=;
};

// A value plus a 32-bit futex word for blocking waits across processes.
template <class T>
class WaitableAtomic {
 public:
  WaitableAtomic() noexcept = default;
  explicit WaitableAtomic(T initial) noexcept : value_(initial) {}
  // Lives at a fixed place in a block that other processes map.
  WaitableAtomic(const WaitableAtomic&) = delete;
  WaitableAtomic& operator=(const WaitableAtomic&) = delete;

  Atomic<T>& value() noexcept { return value_; }
  const Atomic<T>& value() const noexcept { return value_; }

  // Blocks until load(order) != old; returns the new value.
  T wait(T old, memory_order order = memory_order::acquire) const noexcept {
    for (;;) {
      const std::uint32_t e = enter();
      const T v = value_.load(order);
      if (v != old) {
        leave();
        return v;
      }
      futex_wait(epoch_, e);
      leave();
    }
  }

  // As wait(); returns false if the deadline passed with the value still old.
  template <class Clock, class Duration>
  bool wait_until(T old, const std::chrono::time_point<Clock, Duration>& deadline,
                  memory_order order = memory_order::acquire) const noexcept {
    const auto d = detail::to_steady(deadline);
    for (;;) {
      const std::uint32_t e = enter();
      if (value_.load(order) != old) {
        leave();
        return true;
      }
      const FutexResult r = futex_wait_until(epoch_, e, d);
      leave();
      if (r == FutexResult::timed_out) return value_.load(order) != old;
    }
  }

  template <class Rep, class Period>
  bool wait_for(T old, const std::chrono::duration<Rep, Period>& timeout,
                memory_order order = memory_order::acquire) const noexcept {
    return wait_until(old, detail::deadline_after(timeout), order);
  }

  void notify_one() noexcept { notify(1); }
  void notify_all() noexcept { notify(INT32_MAX); }

 private:
  // (1)/(2) seq_cst: a store-load (Dekker) pair with notify's (3)/(4): either
  // the notifier sees our registration and wakes us, or we read its epoch
  // (and the value stored before it) and do not sleep on the old epoch.
  std::uint32_t enter() const noexcept {
    waiters_.fetch_add(1, std::memory_order_seq_cst);  // (1)
    return epoch_.load(std::memory_order_seq_cst);     // (2)
  }
  void leave() const noexcept { waiters_.fetch_sub(1, std::memory_order_relaxed); }
  void notify(int n) noexcept {
    epoch_.fetch_add(1, std::memory_order_seq_cst);                            // (3)
    if (waiters_.load(std::memory_order_seq_cst) != 0) futex_wake(epoch_, n);  // (4)
  }

  Atomic<T> value_;
  mutable FutexWord epoch_{0};
  mutable FutexWord waiters_{0};
};

}  // namespace shmkit
