// src/tracker/watcher.cpp — the tracker's watcher (watcher.hpp): starting
// this process's shmkit-watcher (posix_spawn, the "ok" handshake) and the
// program's own main loop (wait for the registrant's death, then sweep).
#include "tracker/watcher.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "platform/platform.hpp"
#include "shmkit/detail/process.hpp"
#include "tracker/registry.hpp"

extern char** environ;

namespace shmkit::tracker::detail {
namespace {

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

// ------------------------------------------------------------ the watcher

std::mutex g_watcher_mutex;  // guards g_watched_for and the spawn
pid_t g_watched_for = 0;     // the pid whose watcher this process started

// A close-on-exec duplicate of `fd` numbered 10 or more, so that
// posix_spawn's dup2 onto 3 or 4 is never a same-number no-op that would
// leave close-on-exec set.
int high_dup(int fd) {
  const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 10);
  if (moved < 0) platform::throw_errno(errno, "shmkit: tracker: fcntl(F_DUPFD_CLOEXEC) failed");
  return moved;
}

// A descriptor (high_dup) of the file `reg` maps, for the watcher. The
// handle's own descriptor may have been closed behind our back (a daemon
// that closes every descriptor after fork, as the manager's server does) and
// its number reused: then the name is opened again, if it still names that
// file.
int registry_descriptor(const Registry& reg) {
  const auto same = [&](int fd) {
    struct stat st {};
    return fd >= 0 && ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
           static_cast<std::uint64_t>(st.st_ino) == reg.shm.inode();
  };
  if (same(reg.shm.fd())) return high_dup(reg.shm.fd());
  const int fd =
      ::open(platform::dev_shm_path(reg.shm.name()).c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (!same(fd)) {
    if (fd >= 0) ::close(fd);
    throw std::system_error(EBADF, std::generic_category(),
                            "shmkit: tracker registry " + platform::quoted(reg.shm.name()) +
                                ": this process closed its descriptor and the name no longer names "
                                "the registry it uses; no watcher can be started for it");
  }
  const int moved = high_dup(fd);
  ::close(fd);
  return moved;
}

// Starts this process's watcher (see watcher.hpp) and waits for its
// "ok". Throws std::system_error naming the program on any failure.
void start_watcher(const Self& me, Registry& reg) {
  const std::string path = watcher_path();
  const std::string registry = reg.shm.name();
  const std::string what = "shmkit: tracker: watcher " + platform::quoted(path);
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) platform::throw_errno(errno, what + ": pipe2 failed");
  int rd = p[0], wr = -1, regfd = -1;
  try {
    wr = high_dup(p[1]);
    ::close(p[1]);
    p[1] = -1;
    regfd = registry_descriptor(reg);
  } catch (...) {
    for (int fd : {rd, p[1], wr}) {
      if (fd >= 0) ::close(fd);
    }
    throw;
  }
  std::vector<std::string> args{path,
                                std::to_string(detail::kWatcherProtocol),
                                registry,
                                std::to_string(me.pid),
                                std::to_string(me.start),
                                std::to_string(me.ns.inode),
                                std::to_string(me.ns.device)};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  ::posix_spawn_file_actions_init(&fa);
  ::posix_spawnattr_init(&attr);
  ::posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  ::posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  ::posix_spawn_file_actions_adddup2(&fa, wr, 3);
  ::posix_spawn_file_actions_adddup2(&fa, regfd, 4);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
  ::posix_spawn_file_actions_addclosefrom_np(&fa, 5);  // the program closes the rest too
#endif
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  ::posix_spawnattr_setsigmask(&attr, &none);
  ::posix_spawnattr_setsigdefault(&attr, &all);  // ignored signals would stay ignored across exec
  ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t child = 0;
  const int rc = ::posix_spawn(&child, path.c_str(), &fa, &attr, argv.data(), environ);
  ::posix_spawn_file_actions_destroy(&fa);
  ::posix_spawnattr_destroy(&attr);
  ::close(wr);
  ::close(regfd);
  if (rc != 0) {
    ::close(rd);
    platform::throw_errno(rc, what + ": cannot start it");
  }
  // Its first act is to fork the watcher and exit.
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  // The answer, bounded: the watcher writes it before it waits for us.
  std::string answer;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      ::close(rd);
      platform::throw_errno(ETIMEDOUT, what + ": no answer within 30 s");
    }
    pollfd pf{rd, POLLIN, 0};
    const int pr = ::poll(&pf, 1, static_cast<int>(std::min<long long>(left.count(), 1000)));
    if (pr < 0 && errno != EINTR) break;
    if (pr <= 0) continue;
    char buf[512];
    const ssize_t n = ::read(rd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    answer.append(buf, static_cast<std::size_t>(n));
  }
  ::close(rd);
  if (answer.rfind("ok", 0) != 0) {
    while (!answer.empty() && answer.back() == '\n') answer.pop_back();
    throw std::system_error(
        EPROTO, std::generic_category(),
        what + (answer.empty() ? std::string(": exited without answering") : ": " + answer));
  }
}

// In the watcher: waits for the registrant (`fd`: its pidfd, or -1) to die.
// Slices of a second, so no wait is unbounded.
void wait_for_death(int fd, pid_t pid, std::uint64_t start, bool proc_is_ours) {
  for (;;) {
    if (fd >= 0) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 1000) == 1) return;
      continue;
    }
    // No pidfd (kernel < 5.3): poll /proc, or the pid itself.
    if (proc_is_ours ? process::has_exited(pid, start) : (::kill(pid, 0) != 0 && errno == ESRCH)) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

void say(int fd, const std::string& text) {
  if (fd >= 0) (void)!::write(fd, text.data(), text.size());
}

// In the watcher, after its sweep (never under the registry lock): writes
// `text` on stderr, the registrant's, only if it takes it within a second;
// false if it did not (a reader that stopped reading keeps no watcher).
bool tell(const std::string& text) {
  pollfd p{2, POLLOUT, 0};
  if (::poll(&p, 1, 1000) != 1 || (p.revents & POLLOUT) == 0) return false;
  return ::write(2, text.data(), text.size()) == static_cast<ssize_t>(text.size());
}

}  // namespace

void ensure_watcher(Registry& registry, const Self& me) {
  std::lock_guard g(g_watcher_mutex);
  if (g_watched_for == me.pid) return;
  start_watcher(me, registry);
  g_watched_for = me.pid;
}

int watcher_main(int argc, char** argv) {
  constexpr int kAnswer = 3, kRegistry = 4;
  // Nothing inherited but stdin/stdout/stderr, the answer pipe and the
  // registry.
#ifdef SYS_close_range
  if (::syscall(SYS_close_range, 5u, ~0u, 0u) != 0)
#endif
  {
    for (int fd = 5; fd < 1024; ++fd) ::close(fd);
  }
  if (argc != 7 || std::atoi(argv[1]) != kWatcherProtocol) {
    say(kAnswer, "error: protocol mismatch (this watcher speaks " + std::to_string(kWatcherProtocol) +
                     "; was it built from another shmkit version?)\n");
    return 2;
  }
  const pid_t pid = static_cast<pid_t>(std::strtol(argv[3], nullptr, 10));
  const std::uint64_t start = std::strtoull(argv[4], nullptr, 10);
  const PidNamespace ns{std::strtoull(argv[5], nullptr, 10), std::strtoull(argv[6], nullptr, 10)};
  // Detach: the registrant reaps our parent now, and we are nobody's child.
  const pid_t watcher = ::fork();
  if (watcher < 0) {
    say(kAnswer, std::string("error: fork failed: ") + std::strerror(errno) + "\n");
    return 1;
  }
  if (watcher > 0) ::_exit(0);
  ::setsid();
  // Outlive a Ctrl-C or hangup meant for the registrant's group.
  ::signal(SIGINT, SIG_IGN);
  ::signal(SIGTERM, SIG_IGN);
  ::signal(SIGHUP, SIG_IGN);
  // Its stderr is the registrant's, whose reader (mpirun, a terminal, a pipe
  // to `head`) may be gone by the time the registrant has died: a write
  // there fails with EPIPE instead of killing the watcher in mid-sweep.
  ::signal(SIGPIPE, SIG_IGN);
  const Self me = self();
  if (me.ns != ns) {
    say(kAnswer,
        "error: the registrant is in another PID namespace than its watcher "
        "(did it unshare(CLONE_NEWPID)?)\n");
    ::_exit(1);
  }
  int fd = pidfd_open(pid);
  // The registrant waits for our answer: the pid is still its, unless it was
  // killed meanwhile (then its start time no longer matches, or it is gone).
  bool gone = fd < 0 && errno == ESRCH;
  if (me.proc_is_ours && process::has_exited(pid, start)) gone = true;
  std::unique_ptr<Registry> r;
  try {
    r = registry_from_fd(kRegistry, argv[2]);
  } catch (const std::exception& e) {
    say(kAnswer, std::string("error: ") + e.what() + "\n");
    ::_exit(1);
  }
  ::close(kRegistry);  // the mapping stays
  say(kAnswer, "ok\n");
  ::close(kAnswer);
  if (!gone) wait_for_death(fd, pid, start, me.proc_is_ours);
  if (fd >= 0) ::close(fd);
  GcReport report;
  try {
    Locked lock(*r);
    const Known dead{pid, start, ns};
    sweep(*r, report, false, &dead, false);
  } catch (const std::exception& e) {
    (void)tell(std::string("shmkit tracker: ") + e.what() + "\n");
    return 1;
  }
  // Told once the registry is unlocked: a stderr that blocks (a full pipe)
  // holds up nobody's sweep or registration.
  for (const auto& block : report.unlinked) {
    if (!tell(leak_message(block))) break;
  }
  return 0;
}

}  // namespace shmkit::tracker::detail
