// tests/test_sync_common.hpp — helpers shared by the sync and atomic tests.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <new>
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

}  // namespace shmkit::test
