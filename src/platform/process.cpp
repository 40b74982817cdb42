// src/platform/process.cpp — process liveness (shmkit/detail/process.hpp),
// over /proc/<id>/task/<id>/stat as platform.hpp reads it.
//
// Why the task entry and not /proc/<id>/stat (the kernel gives the same
// state and start time in both: the thread group leader's, or the thread's
// for a thread id): qemu-user, which runs a foreign-architecture program
// (binfmt_misc, a multi-arch container), answers an emulated process's own
// /proc/self/stat and /proc/<its pid>/stat itself, with a start time of its
// own reckoning (seen one tick off the kernel's) and no state. A registrant
// or claimant that recorded that number would be taken for a reused pid by
// every other process, which reads the kernel's, and lose its blocks or its
// claims while alive. qemu passes the task entries through to the kernel.
#include "shmkit/detail/process.hpp"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "platform/platform.hpp"

namespace shmkit::process {
namespace {

// The start time read from /proc/<pid>/stat's format at `path`, in host
// terms (normalised for this process's time namespace, platform.hpp); 0 if
// unreadable, unknown (not normalisable), or the process has exited (a
// zombie, 'Z', or dead, 'X').
std::uint64_t start_time_at(const char* path) noexcept {
  const platform::TaskStat t = platform::read_task_stat(path);
  return t.readable && !t.exited ? t.start : 0;
}

}  // namespace

std::uint64_t start_time(pid_t pid) noexcept {
  if (pid <= 0) return 0;
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/task/%d/stat", static_cast<int>(pid), static_cast<int>(pid));
  return start_time_at(path);
}

// /proc/self names this process even where /proc shows another PID
// namespace's ids; its link says which id that /proc gives it.
std::uint64_t self_start_time() noexcept {
  char link[24] = {};
  const ssize_t n = ::readlink("/proc/self", link, sizeof link - 1);
  char* end = nullptr;
  const long id = n > 0 ? std::strtol(link, &end, 10) : 0;
  if (id <= 0 || end != link + n) return start_time_at("/proc/self/stat");
  char path[64];
  std::snprintf(path, sizeof path, "/proc/self/task/%ld/stat", id);
  return start_time_at(path);
}

// The calling thread is alive: its reading is its start (0 when unknown).
std::uint64_t thread_start_time() noexcept {
  return platform::read_task_stat("/proc/thread-self/stat").start;
}

bool has_exited(pid_t tid, std::uint64_t start, std::uint64_t start_mask) noexcept {
  if (tid <= 0) return false;
  // kill(tid, 0) looks the id up in our namespace (a thread id works as well
  // as a process id): ESRCH means no such task, so it has exited and its
  // stores are all done (exit is a full barrier in the kernel).
  if (::kill(tid, 0) != 0 && errno == ESRCH) return true;
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/task/%d/stat", static_cast<int>(tid), static_cast<int>(tid));
  const platform::TaskStat t = platform::read_task_stat(path);
  if (!t.readable) return false;  // hidepid or no /proc: cannot tell
  if (t.exited) return true;      // a zombie: killed, not yet reaped (it keeps its id)
  // A live task with that id: the same one, unless the id was reused. Both
  // starts are host-absolute (read_task_stat normalises for the reader's
  // time namespace; the recorder normalised its own): t.start 0 means this
  // reader cannot normalise, and then it does not judge by the start.
  return (start & start_mask) != 0 && t.start != 0 && (t.start & start_mask) != (start & start_mask);
}

}  // namespace shmkit::process
