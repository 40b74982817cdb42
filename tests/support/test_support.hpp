// tests/support/test_support.hpp — what every shmkit test binary shares.
//
//  * A watchdog (in test_main.cpp): each test gets SHMKIT_TEST_TIMEOUT
//    seconds (default 120); past that the process prints the test's name and
//    exits 124, so a deadlock fails instead of hanging CI.
//  * unique_name(): block names private to this test process, all under
//    name_prefix(); after the last test, a leak check fails the run if any
//    /dev/shm entry with that prefix is left (and removes it).
//  * Real processes: fork_child/wait_child/run_child (a child that outlives
//    its timeout is SIGKILLed and reported), run_process for exec, and
//    run_python for the CPython peer scripts in tests/interop.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <thread>
#include <vector>

namespace shmkit::test {

using namespace std::chrono_literals;

// "shmkit_t<pid>_" of the test process (children share their parent's).
const std::string& name_prefix();
// name_prefix() + a counter + "_" + tag: unique per call.
std::string unique_name(std::string_view tag = "");
// Names of the entries in /dev/shm that start with `prefix`.
std::vector<std::string> list_blocks(std::string_view prefix);

struct ExitStatus {
  bool exited = false;  // normal exit; `code` is valid
  int code = -1;
  int signal = 0;          // killed by this signal
  bool timed_out = false;  // we killed it after the timeout
  bool ok() const { return exited && code == 0; }
  std::string describe() const;
};

// fork(); the child runs `fn` and _exit()s with its result. An exception in
// the child prints what() to stderr and exits 99. The child never returns
// into GoogleTest.
pid_t fork_child(const std::function<int()>& fn);
// Waits for `pid` up to `timeout`; then SIGKILLs it and reports timed_out.
ExitStatus wait_child(pid_t pid, std::chrono::milliseconds timeout = 30s);
ExitStatus run_child(const std::function<int()>& fn, std::chrono::milliseconds timeout = 30s);

// The state letter of /proc/<pid>/stat (R, S, T, Z...); 0 if unreadable.
char task_state(pid_t pid);

// A forked child that is SIGKILLed and reaped at scope exit unless wait()
// reaped it before (a failed assertion never leaves a stopped process).
struct Victim {
  pid_t pid = -1;
  bool reaped = false;
  explicit Victim(const std::function<int()>& fn) : pid(fork_child(fn)) {}
  Victim(const Victim&) = delete;
  Victim& operator=(const Victim&) = delete;
  ExitStatus wait(std::chrono::milliseconds timeout = 20s) {
    reaped = true;
    return wait_child(pid, timeout);
  }
  void resume() const;  // SIGCONT
  ~Victim();
};

struct ProcessResult {
  ExitStatus status;
  std::string out;  // stdout
  std::string err;  // stderr
};
// fork + execv(argv[0], argv), capturing stdout and stderr.
ProcessResult run_process(const std::vector<std::string>& argv, std::chrono::milliseconds timeout = 60s);
// The CPython peer: SHMKIT_PYTHON tests/interop/<script> args...
ProcessResult run_python(std::string_view script, const std::vector<std::string>& args,
                         std::chrono::milliseconds timeout = 60s);

// Paths fixed at configure time.
std::string python_path();  // the interpreter used as the CPython peer
std::string interop_dir();  // tests/interop in the source tree
std::string peer_path();    // the exec'd helper binary (tests/support/peer.cpp)

// Lowercase hex of `bytes` (for messages and python arguments).
std::string to_hex(const void* data, std::size_t n);

// Whether /dev/shm/<name> exists (one lookup, so a block another process
// is removing is either seen or not, never half).
bool block_exists(std::string_view name);

// The calling thread's kernel id (its pid in a single-threaded process):
// what asleep_in_futex() takes for a thread.
pid_t current_tid();

// Whether thread (or process) `tid` is asleep in the kernel in a futex wait:
// state S in /proc/TID/stat and, where /proc/TID/syscall can be read (the
// same process, a child, or ptrace rights), blocked in futex(2) -- and, if
// `word` is given (an address in that thread's own address space), on that
// word. A premise check: "the waiter is inside the call, asleep", instead of
// sleeping a while and assuming it.
// The futex number it expects is the one /proc reports for this process's
// own futex(2) calls, learnt once (a probe thread): the host's under
// qemu-user, which makes the host's system call for the emulated one.
bool asleep_in_futex(pid_t tid, const void* word = nullptr);
// Polls asleep_in_futex() (every 100 us) until it holds or `timeout`
// passes; true if it held.
bool wait_asleep_in_futex(pid_t tid, const void* word = nullptr, std::chrono::milliseconds timeout = 10s);

// Polls `pred` until it holds or `timeout` passes; between polls it yields
// the CPU (pause 0: for events between running processes) or sleeps
// `pause` (for work done by another process on its own schedule, such as
// a tracker watcher). True if pred() held.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = 10s, std::chrono::milliseconds pause = 0ms) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    if (pause.count() == 0) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(pause);
    }
  }
  return true;
}

}  // namespace shmkit::test
