// tests/test_sync_common.hpp — helpers shared by the sync and atomic tests.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <new>
#include <sched.h>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

#include "shmkit/shared_memory.hpp"
#include "test_support.hpp"

namespace shmkit::test {

using Clock = std::chrono::steady_clock;

// A named block that is unlinked when the test ends (children attach to it
// by name, so each maps it at its own address).
struct NamedBlock {
  explicit NamedBlock(std::size_t size, std::string_view tag = "sync")
      : name(unique_name(tag)), shm(SharedMemory::create(name, size)) {}
  ~NamedBlock() {
    try {
      SharedMemory::unlink(name);
    } catch (...) {
    }
  }
  template <class T>
  T* as() const {
    return static_cast<T*>(shm.data());
  }
  std::string name;
  SharedMemory shm;
};

inline ExitStatus kill_and_wait(pid_t pid) {
  ::kill(pid, SIGKILL);
  return wait_child(pid);
}

inline double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Whether `pid` sleeps in the kernel (state S in /proc/PID/stat).
inline bool asleep_in_kernel(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'S';
}

// Pins the calling process to the first CPU it may use, for the lifetime of
// the object, so that a SCHED_IDLE child forked meanwhile shares that CPU and
// cannot run while the parent does not block. The affinity is restored on
// destruction (before the parent waits on anything that needs the child).
class PinnedToOneCpu {
 public:
  PinnedToOneCpu() {
    ok_ = ::sched_getaffinity(0, sizeof saved_, &saved_) == 0;
    if (!ok_) return;
    int cpu = 0;
    while (cpu < CPU_SETSIZE && !CPU_ISSET(cpu, &saved_)) ++cpu;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    ok_ = ::sched_setaffinity(0, sizeof one, &one) == 0;
  }
  ~PinnedToOneCpu() { release(); }
  PinnedToOneCpu(const PinnedToOneCpu&) = delete;
  PinnedToOneCpu& operator=(const PinnedToOneCpu&) = delete;
  bool ok() const { return ok_; }
  void release() {
    if (ok_) ::sched_setaffinity(0, sizeof saved_, &saved_);
    ok_ = false;
  }

 private:
  cpu_set_t saved_{};
  bool ok_ = false;
};

}  // namespace shmkit::test
