// src/sync/robust_guard.hpp — holds a RobustMutex for a scope, for shmkit's own
// structures in shared memory that can repair themselves after a process died
// holding their lock (the Heap, the tracker registry). Internal.
//
// After a dead owner, repair() runs under the lock, then the mutex is marked
// consistent. If repair() throws, the mutex is still marked consistent and
// released, and the exception propagates. Any other failure to lock throws
// std::system_error whose message is describe() (called only then) plus the
// lock result: ENOTRECOVERABLE for not recoverable, EDEADLK for deadlock (the
// word names the calling thread: a bug, or a word a peer forged). Never
// aborts: a forged lock word in a block costs the caller an exception.
#pragma once

#include <cerrno>
#include <string>
#include <system_error>
#include <utility>

#include "shmkit/sync/robust_mutex.hpp"

namespace shmkit::detail {

class RepairingGuard {
 public:
  template <class Repair, class Describe>
  RepairingGuard(RobustMutex& mutex, Repair&& repair, Describe&& describe) : mutex_(mutex) {
    const LockResult r = mutex_.lock();
    if (r == LockResult::acquired) [[likely]]
      return;
    if (r != LockResult::owner_died) {
      throw std::system_error(r == LockResult::deadlock ? EDEADLK : ENOTRECOVERABLE, std::generic_category(),
                              std::forward<Describe>(describe)() + ": its lock " + to_string(r));
    }
    try {
      std::forward<Repair>(repair)();
    } catch (...) {
      mutex_.make_consistent();
      mutex_.unlock();
      throw;
    }
    mutex_.make_consistent();
  }
  ~RepairingGuard() { mutex_.unlock(); }
  RepairingGuard(const RepairingGuard&) = delete;
  RepairingGuard& operator=(const RepairingGuard&) = delete;

 private:
  RobustMutex& mutex_;
};

}  // namespace shmkit::detail
