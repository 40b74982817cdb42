// Identities across time namespaces: /proc shows a task's start time
// shifted by the READER's boot-time offset, so a process that runs under
// `unshare --time --boottime N` must still be judged alive by everyone else
// (RobustMutex's owner check, the tracker's liveness and gc, and the
// claimant check MpmcQueue shares with them: tracker::task_has_exited).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <poll.h>
#include <sched.h>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "shmkit/shared_memory.hpp"
#include "shmkit/sync/robust_mutex.hpp"
#include "shmkit/tracker.hpp"
#include "test_support.hpp"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

namespace shmkit::test {
namespace {

using namespace std::chrono_literals;

// A process started with pipes on its stdin, stdout and stderr.
struct Spawned {
  pid_t pid = -1;
  int in = -1, out = -1, err = -1;
};

Spawned spawn(const std::vector<std::string>& argv) {
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2: " << std::strerror(errno);
    return {};
  }
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    std::fprintf(stderr, "exec %s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  return Spawned{pid, in[1], out[0], err[0]};
}

// Reads `fd` up to a newline, EOF or the timeout.
std::string read_line(int fd, std::chrono::milliseconds timeout) {
  std::string line;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return line;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char c;
    const ssize_t n = ::read(fd, &c, 1);
    if (n <= 0 || c == '\n') return line;
    line += c;
  }
}

std::string read_all(int fd) {
  std::string s;
  char buf[512];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) s.append(buf, static_cast<std::size_t>(n));
  return s;
}

std::string link_of(const std::string& path) {
  char buf[128] = {};
  const ssize_t n = ::readlink(path.c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

std::string file_of(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The holder runs in a time namespace whose boot clock is a day ahead of
// ours: its /proc shows every start time 8,640,000 ticks later than ours.
TEST(TimeNamespace, HolderInAnotherTimeNamespaceIsJudgedAlive) {
  if (::access("/proc/self/ns/time", F_OK) != 0) {
    GTEST_SKIP() << "this kernel has no time namespaces (/proc/self/ns/time missing)";
  }
  const std::string name = unique_name("timens");
  Spawned peer =
      spawn({"unshare", "--fork", "--time", "--boottime", "86400", peer_path(), "robust-hold", name});
  ASSERT_GT(peer.pid, 0);
  const std::string line = read_line(peer.out, 20s);
  if (line.rfind("held ", 0) != 0) {
    ::close(peer.in);
    int status = 0;
    ::waitpid(peer.pid, &status, 0);
    const std::string err = read_all(peer.err);
    ::close(peer.out);
    ::close(peer.err);
    try {
      SharedMemory::unlink(name);
    } catch (...) {
    }
    if (err.find("Operation not permitted") != std::string::npos) {
      GTEST_SKIP() << "unshare --time refused here (EPERM): " << err;
    }
    FAIL() << "the peer under unshare --time did not take the lock: '" << line << "', stderr: " << err;
  }
  pid_t holder = 0;
  unsigned long long holder_start = 0;
  ASSERT_EQ(std::sscanf(line.c_str(), "held %d %llu", &holder, &holder_start), 2) << line;

  // The premise: the holder really is in another time namespace, a day ahead.
  EXPECT_NE(link_of("/proc/" + std::to_string(holder) + "/ns/time"), link_of("/proc/self/ns/time"));
  const std::string offsets = file_of("/proc/" + std::to_string(holder) + "/timens_offsets");
  EXPECT_NE(offsets.find("86400"), std::string::npos) << offsets;

  {
    auto shm = SharedMemory::attach(name);
    auto* m = static_cast<RobustMutex*>(shm.data());
    // Both sides agree on the holder's start time (host terms).
    EXPECT_NE(holder_start, 0u);
    EXPECT_EQ(tracker::process_start_time(holder), holder_start);
    EXPECT_EQ(m->native_handle().load() & RobustMutex::kTidMask, static_cast<std::uint64_t>(holder));
    EXPECT_EQ(m->native_handle().load() >> 32, holder_start & 0xffffffffu);
    // The claimant check MpmcQueue uses, and RobustMutex's own.
    EXPECT_FALSE(tracker::task_has_exited(holder, holder_start));
    EXPECT_FALSE(tracker::task_has_exited(holder, holder_start & 0xffffffffu, 0xffffffffu));
    // Inside the holder's critical section: never owner_died.
    EXPECT_EQ(m->try_lock(), LockResult::busy);
    EXPECT_EQ(m->try_lock_for(30ms), LockResult::timed_out);

    // The tracker: the registrant is alive, and gc keeps its block.
    bool found = false;
    for (const auto& r : tracker::registrations()) {
      if (r.block != name) continue;
      found = true;
      EXPECT_EQ(r.pid, holder);
      EXPECT_EQ(r.start_time, holder_start);
      EXPECT_TRUE(r.judged);
      EXPECT_TRUE(r.alive) << "a live registrant in another time namespace judged dead";
    }
    EXPECT_TRUE(found) << "the holder's registration of " << name << " is missing";
    const tracker::GcReport dry = tracker::collect_garbage(true);
    EXPECT_EQ(std::count(dry.unlinked.begin(), dry.unlinked.end(), name), 0);
    for (const auto& r : dry.dropped) EXPECT_NE(r.block, name);
    (void)tracker::collect_garbage(false);
    EXPECT_TRUE(block_exists(name)) << "gc unlinked a block its live creator holds";
  }

  // The holder unlocks and exits cleanly. Its watcher (started by it, in its
  // time namespace) judges it dead only now and removes the block it
  // created; the watcher holds the holder's stderr, so reading that to EOF
  // waits for the watcher to finish.
  ::close(peer.in);
  int status = 0;
  ASSERT_EQ(::waitpid(peer.pid, &status, 0), peer.pid);
  const std::string err = read_all(peer.err);
  ::close(peer.out);
  ::close(peer.err);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status << ": " << err;
  EXPECT_FALSE(block_exists(name)) << "the holder's watcher did not remove its block: " << err;
  try {
    SharedMemory::unlink(name);  // its watcher may have done it already
  } catch (...) {
  }
}

// A boot-time offset that is not a whole number of clock ticks (written in
// nanoseconds, as a checkpoint/restore tool may) cannot be subtracted
// exactly, and a process between unshare(CLONE_NEWTIME) and its next fork
// cannot learn its own offset at all: such processes record start time 0
// (unknown) and judge by ids alone. Neither side ever takes the other for
// dead while it runs: not its lock's owner, not its tracker registration.
TEST(TimeNamespace, OffsetInFractionsOfATickIsJudgedByIdAloneNeverDead) {
  if (::access("/proc/self/ns/time", F_OK) != 0) {
    GTEST_SKIP() << "this kernel has no time namespaces (/proc/self/ns/time missing)";
  }
  auto shm = SharedMemory::anonymous(4096);
  auto* m = new (shm.data()) RobustMutex();
  struct Shared {
    std::atomic<int> held, release;
    std::atomic<pid_t> holder;
    std::atomic<std::uint64_t> self_start_after_unshare;
    std::atomic<int> judged_parent_dead;  // 0 not yet, 1 alive, 2 dead
  };
  auto* sh = new (static_cast<char*>(shm.data()) + 64) Shared{};
  const pid_t parent = ::getpid();
  const std::uint64_t parent_start = tracker::process_start_time(parent);
  ASSERT_NE(parent_start, 0u);
  const std::string name = unique_name("timens_frac");
  const pid_t child = fork_child([&]() -> int {
    if (::unshare(CLONE_NEWTIME) != 0) return errno == EPERM ? 40 : 41;
    // Our own namespace is no longer the one timens_offsets describes.
    sh->self_start_after_unshare = tracker::process_start_time(::getpid());
    FILE* f = std::fopen("/proc/self/timens_offsets", "w");
    if (f == nullptr) return 42;
    const bool written = std::fprintf(f, "boottime 86400 5000000\n") > 0;  // a day and 5 ms
    if (std::fclose(f) != 0 || !written) return 43;
    const pid_t g = ::fork();
    if (g < 0) return 44;
    if (g == 0) {  // in the new time namespace
      SharedMemory::Options tracked;
      tracked.track = true;
      auto block = SharedMemory::create(name, 4096, tracked);  // registered, with start 0
      if (m->lock() != LockResult::acquired) ::_exit(45);
      sh->judged_parent_dead = tracker::task_has_exited(parent, parent_start) ? 2 : 1;
      sh->holder = ::getpid();
      sh->held = 1;
      while (sh->release.load() == 0) std::this_thread::sleep_for(1ms);
      ::_exit(m->unlock() ? 0 : 46);
    }
    int status = 0;
    if (::waitpid(g, &status, 0) != g) return 47;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 48;
  });
  const auto child_ended = [&] {  // (not reaped: wait_child reports it)
    siginfo_t info{};
    return ::waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
           info.si_pid == child;
  };
  const bool held =
      eventually([&] { return sh->held.load() == 1 || child_ended(); }, 20s, 1ms) && sh->held.load() == 1;
  if (!held) {
    const ExitStatus st = wait_child(child, 5s);
    if (st.exited && st.code == 40) GTEST_SKIP() << "unshare(CLONE_NEWTIME) refused (EPERM)";
    FAIL() << "the holder never took the lock: " << st.describe();
  }
  EXPECT_EQ(sh->self_start_after_unshare.load(), 0u) << "a process that cannot learn its offset "
                                                        "reported a start time";
  EXPECT_EQ(sh->judged_parent_dead.load(), 1) << "the holder judged its live parent dead";
  const pid_t holder = sh->holder.load();
  EXPECT_EQ(m->native_handle().load() & RobustMutex::kTidMask, static_cast<std::uint64_t>(holder));
  EXPECT_EQ(m->native_handle().load() >> 32, 0u) << "the holder recorded a start it cannot know";
  EXPECT_FALSE(tracker::task_has_exited(holder, tracker::process_start_time(holder)));
  EXPECT_EQ(m->try_lock(), LockResult::busy);
  EXPECT_EQ(m->try_lock_for(30ms), LockResult::timed_out);
  // Its registration: judged by its pid alone, alive; gc keeps its block.
  bool found = false;
  for (const auto& r : tracker::registrations()) {
    if (r.block != name) continue;
    found = true;
    EXPECT_EQ(r.pid, holder);
    EXPECT_EQ(r.start_time, 0u);
    EXPECT_TRUE(r.judged && r.alive) << "a live registrant with an unknown start judged dead";
  }
  EXPECT_TRUE(found) << "the holder's registration of " << name << " is missing";
  (void)tracker::collect_garbage(false);
  EXPECT_TRUE(block_exists(name)) << "gc unlinked a block its live creator holds";
  sh->release = 1;
  const ExitStatus st = wait_child(child, 20s);
  EXPECT_TRUE(st.ok()) << st.describe();
  EXPECT_EQ(m->try_lock(), LockResult::acquired);
  EXPECT_TRUE(m->unlock());
  // Once it has exited, its watcher removes the block it created.
  EXPECT_TRUE(eventually([&] { return !block_exists(name); }, 10s, 10ms));
  try {
    SharedMemory::unlink(name);
  } catch (...) {
  }
}

}  // namespace
}  // namespace shmkit::test
