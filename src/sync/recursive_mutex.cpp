// src/sync/recursive_mutex.cpp — out-of-line part of RecursiveMutex: the
// thread id cache (shmkit/sync/recursive_mutex.hpp).
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <mutex>

#include "shmkit/sync/recursive_mutex.hpp"

namespace shmkit::detail {
namespace {
// A fork child is a new thread: it must not take its parent's id for its
// own.
void clear_thread_id_in_child() noexcept { tls_thread_id = 0; }

void register_fork_handler() noexcept {
  static std::once_flag once;
  std::call_once(once, [] { ::pthread_atfork(nullptr, nullptr, clear_thread_id_in_child); });
}
}  // namespace

std::uint32_t fetch_thread_id() noexcept {
  register_fork_handler();
  tls_thread_id = static_cast<std::uint32_t>(::syscall(SYS_gettid));
  return tls_thread_id;
}

}  // namespace shmkit::detail
