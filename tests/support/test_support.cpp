#include "test_support.hpp"

#include "platform/platform.hpp"  // src/

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <exception>
#include <fcntl.h>
#include <fstream>
#include <iterator>
#include <linux/futex.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace shmkit::test {

const std::string& name_prefix() {
  // Computed once in the test process; forked children inherit the value.
  static const std::string prefix = "shmkit_t" + std::to_string(::getpid()) + "_";
  return prefix;
}

std::string unique_name(std::string_view tag) {
  static std::atomic<unsigned> counter{0};
  std::string name = name_prefix() + std::to_string(counter.fetch_add(1));
  if (!tag.empty()) {
    name += '_';
    name += tag;
  }
  return name;
}

std::vector<std::string> list_blocks(std::string_view prefix) {
  std::vector<std::string> names;
  DIR* dir = ::opendir("/dev/shm");
  if (dir == nullptr) return names;
  while (dirent* e = ::readdir(dir)) {
    std::string_view n = e->d_name;
    if (n.starts_with(prefix)) names.emplace_back(n);
  }
  ::closedir(dir);
  return names;
}

std::string ExitStatus::describe() const {
  if (timed_out) return "timed out (killed by the test)";
  if (exited) return "exited with code " + std::to_string(code);
  if (signal != 0) return std::string("killed by signal ") + strsignal(signal);
  return "unknown status";
}

pid_t fork_child(const std::function<int()>& fn) {
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("fork");
    std::abort();
  }
  if (pid == 0) {
    int rc = 99;
    try {
      rc = fn();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child %d: exception: %s\n", ::getpid(), e.what());
    } catch (...) {
      std::fprintf(stderr, "child %d: unknown exception\n", ::getpid());
    }
    std::fflush(nullptr);
    ::_exit(rc);
  }
  return pid;
}

ExitStatus wait_child(pid_t pid, std::chrono::milliseconds timeout) {
  ExitStatus st;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) {
      std::perror("waitpid");
      return st;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      st.timed_out = true;
      st.signal = SIGKILL;
      return st;
    }
    std::this_thread::sleep_for(1ms);
  }
  if (WIFEXITED(status)) {
    st.exited = true;
    st.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    st.signal = WTERMSIG(status);
  }
  return st;
}

ExitStatus run_child(const std::function<int()>& fn, std::chrono::milliseconds timeout) {
  return wait_child(fork_child(fn), timeout);
}

ProcessResult run_process(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    std::perror("pipe2");
    std::abort();
  }
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    std::fprintf(stderr, "exec %s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(err[1]);
  ProcessResult result;
  // Drain both pipes until both close or the deadline passes.
  auto deadline = std::chrono::steady_clock::now() + timeout;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_fds = 2;
  while (open_fds > 0) {
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    int n = ::poll(fds, 2, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
      if (got > 0) {
        sinks[i]->append(buf, static_cast<std::size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) ::close(f.fd);
  }
  auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  result.status = wait_child(pid, std::max(left, std::chrono::milliseconds(1)));
  return result;
}

ProcessResult run_python(std::string_view script, const std::vector<std::string>& args,
                         std::chrono::milliseconds timeout) {
  std::vector<std::string> argv{python_path(), interop_dir() + "/" + std::string(script)};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv, timeout);
}

std::string python_path() { return SHMKIT_TEST_PYTHON; }
std::string interop_dir() { return SHMKIT_TEST_INTEROP_DIR; }
std::string peer_path() { return SHMKIT_TEST_PEER; }

std::string to_hex(const void* data, std::size_t n) { return platform::hex(data, n); }

bool block_exists(std::string_view name) { return ::access(platform::dev_shm_path(name).c_str(), F_OK) == 0; }

pid_t current_tid() { return static_cast<pid_t>(::syscall(SYS_gettid)); }

namespace {

// The number /proc/TID/syscall shows for futex(2). A native program's own
// SYS_futex; under qemu-user the host's (the emulator makes the host's
// call: 202 on x86-64 for an aarch64 program's 98). Learnt once per
// process: a thread sleeps in futex(2) on a word of ours, and the line whose
// first argument is that word's address gives the number. SYS_futex if no
// such line shows (the file is unreadable, or the emulator maps addresses).
long reported_futex_nr() {
  static const long nr = [] {
    static std::atomic<std::uint32_t> word{0};
    std::atomic<pid_t> tid{0};
    std::thread sleeper([&] {
      tid.store(current_tid());
      while (word.load() == 0) ::syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, nullptr, nullptr, 0);
    });
    long found = SYS_futex;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (const pid_t id = tid.load(); id != 0) {
        std::ifstream f("/proc/self/task/" + std::to_string(id) + "/syscall");
        std::string n, arg1;
        if (!(f >> n)) break;
        if (n != "running" && (f >> arg1) &&
            std::strtoull(arg1.c_str(), nullptr, 16) == reinterpret_cast<std::uintptr_t>(&word)) {
          found = std::strtol(n.c_str(), nullptr, 10);
          break;
        }
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    word.store(1);
    ::syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
    sleeper.join();
    return found;
  }();
  return nr;
}

}  // namespace

// The task entries (/proc/TID/task/TID/...) say the same as /proc/TID/...,
// and qemu-user does not fake them for the emulated process's own id.
bool asleep_in_futex(pid_t tid, const void* word) {
  const std::string task = "/proc/" + std::to_string(tid) + "/task/" + std::to_string(tid);
  {
    std::ifstream f(task + "/stat");
    std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const auto close = stat.rfind(')');
    if (close == std::string::npos || close + 2 >= stat.size() || stat[close + 2] != 'S') return false;
  }
  // "NR ARG1 ..." while blocked in a system call, "running" otherwise.
  std::ifstream f(task + "/syscall");
  std::string nr, arg1;
  if (!(f >> nr)) return true;  // not readable here: state S is what we know
  if (nr != std::to_string(reported_futex_nr())) return false;
  if (word == nullptr) return true;
  if (!(f >> arg1)) return false;
  return std::strtoull(arg1.c_str(), nullptr, 16) == reinterpret_cast<std::uintptr_t>(word);
}

bool wait_asleep_in_futex(pid_t tid, const void* word, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!asleep_in_futex(tid, word)) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return true;
}

char task_state(pid_t pid) {
  const int fd = ::open(("/proc/" + std::to_string(pid) + "/stat").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[512];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return 0;
  const std::string stat(buf, static_cast<std::size_t>(n));
  const auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() ? stat[close + 2] : 0;
}

void Victim::resume() const { ::kill(pid, SIGCONT); }

Victim::~Victim() {
  if (!reaped) {
    ::kill(pid, SIGKILL);
    (void)wait_child(pid, 10s);
  }
}

}  // namespace shmkit::test
