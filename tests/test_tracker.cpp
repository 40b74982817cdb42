// The resource tracker with real processes and SIGKILL: a tracked block is
// unlinked once all its registrants are dead, never while one lives
// (CPython's gh-82300), and reused pids fool it neither way.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <functional>
#include <mutex>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <utility>
#include <vector>

#include "forge_registration.hpp"
#include "shmkit/shareable_list.hpp"
#include "shmkit/shared_memory.hpp"
#include "shmkit/tracker.hpp"
#include "shmkit/typed_block.hpp"
#include "test_support.hpp"

// Test seams: this binary's own shm_open and shm_unlink (the library, linked
// statically, calls these instead of glibc's). Unarmed they do what glibc
// does; armed for a name, they run a hook right after the real call, to
// stage what another process could do in that instant.
namespace {
std::function<void()> g_after_shm_open;    // armed: runs once, after an shm_open of g_hook_name
std::function<void()> g_after_shm_unlink;  // armed: runs once, after an shm_unlink of g_hook_name
std::string g_hook_name;

std::string shm_path(const char* name) {
  while (*name == '/') ++name;
  return std::string("/dev/shm/") + name;
}
bool hooked(const char* name) {
  while (*name == '/') ++name;
  return !g_hook_name.empty() && g_hook_name == name;
}
}  // namespace

extern "C" int shm_open(const char* name, int oflag, mode_t mode) {
  const int fd = ::open(shm_path(name).c_str(), oflag | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd >= 0 && g_after_shm_open && hooked(name)) std::exchange(g_after_shm_open, nullptr)();
  return fd;
}

extern "C" int shm_unlink(const char* name) {
  const int rc = ::unlink(shm_path(name).c_str());
  if (rc == 0 && g_after_shm_unlink && hooked(name)) std::exchange(g_after_shm_unlink, nullptr)();
  return rc;
}

namespace shmkit::test {
namespace {

using namespace std::chrono_literals;

SharedMemory::Options tracked() {
  SharedMemory::Options o;
  o.track = true;
  return o;
}

bool registered_by(const std::string& block, pid_t pid) {
  for (const auto& r : tracker::registrations()) {
    if (r.block == block && r.pid == pid) return true;
  }
  return false;
}

// Every test process uses a registry of its own, removed at the end, so the
// suite neither leaves the per-user registry behind nor sees other programs'
// registrations.
class Tracker : public testing::Test {
 public:
  static void SetUpTestSuite() { ::setenv("SHMKIT_TRACKER_REGISTRY", unique_name("registry").c_str(), 1); }
  static void TearDownTestSuite() { ::shm_unlink(("/" + tracker::registry_name()).c_str()); }
};

// A child that creates (or attaches) a tracked block, reports, then waits
// to be killed.
pid_t child_holding(const std::string& name, bool create, int ready_fd) {
  return fork_child([=] {
    auto shm = create ? SharedMemory::create(name, 4096, tracked()) : SharedMemory::attach(name, tracked());
    char c = 'r';
    if (::write(ready_fd, &c, 1) != 1) return 1;
    for (;;) ::pause();
  });
}

void wait_ready(int fd) {
  char c;
  ASSERT_EQ(::read(fd, &c, 1), 1);
}

TEST_F(Tracker, StartTimeIdentifiesAProcess) {
  EXPECT_GT(tracker::process_start_time(::getpid()), 0u);
  EXPECT_EQ(tracker::process_start_time(::getpid()), tracker::process_start_time(::getpid()));
  pid_t pid = fork_child([] { return 0; });
  auto start = tracker::process_start_time(pid);  // may be 0 if it already exited
  wait_child(pid);
  EXPECT_EQ(tracker::process_start_time(pid), 0u);
  (void)start;
}

TEST_F(Tracker, CreatorKilledBlockIsRemoved) {
  auto name = unique_name("killed");
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  pid_t creator = child_holding(name, true, p[1]);
  wait_ready(p[0]);
  ASSERT_TRUE(block_exists(name));
  ASSERT_TRUE(registered_by(name, creator));
  ::kill(creator, SIGKILL);
  wait_child(creator);
  EXPECT_TRUE(eventually([&] { return !block_exists(name); }, 10s, 5ms))
      << "the watcher did not unlink " << name;
  EXPECT_TRUE(eventually([&] { return !registered_by(name, creator); }, 10s, 5ms));
  ::close(p[0]);
  ::close(p[1]);
}

// gh-82300: CPython's tracker unlinks a block its process attached even
// though other processes still use it. Here a live registrant keeps it.
TEST_F(Tracker, LiveRegistrantKeepsTheBlockAfterTheCreatorDies) {
  auto name = unique_name("shared");
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  pid_t creator = child_holding(name, true, p[1]);
  wait_ready(p[0]);
  pid_t user = child_holding(name, false, p[1]);
  wait_ready(p[0]);
  ::kill(creator, SIGKILL);
  wait_child(creator);
  // The creator's watcher has swept once its registration is gone.
  ASSERT_TRUE(eventually([&] { return !registered_by(name, creator); }, 10s, 5ms));
  EXPECT_TRUE(block_exists(name)) << "unlinked although a live process registered it";
  EXPECT_TRUE(registered_by(name, user));
  ::kill(user, SIGKILL);
  wait_child(user);
  EXPECT_TRUE(eventually([&] { return !block_exists(name); }, 10s, 5ms));
  ::close(p[0]);
  ::close(p[1]);
}

TEST_F(Tracker, ExplicitUnlinkUnregisters) {
  auto name = unique_name("explicit");
  auto shm = SharedMemory::create(name, 64, tracked());
  EXPECT_TRUE(registered_by(name, ::getpid()));
  shm.unlink();
  EXPECT_FALSE(registered_by(name, ::getpid()));
  tracker::register_block(name);  // registering a missing block is harmless
  tracker::unregister_block(name);
  EXPECT_FALSE(registered_by(name, ::getpid()));
}

// A tracked create makes the block unnamed, registers it and links it to
// its name: an existing name fails with EEXIST as O_EXCL would, leaves the
// existing block alone, and leaves no registration behind; one we already
// had (we attached the block) stays.
TEST_F(Tracker, TrackedCreateOfAnExistingNameFailsCleanly) {
  auto name = unique_name("exists");
  auto theirs = SharedMemory::create(name, 128);
  std::memset(theirs.data(), 0x42, theirs.size());
  try {
    (void)SharedMemory::create(name, 64, tracked());
    ADD_FAILURE() << "created over an existing block";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), EEXIST) << e.what();
  }
  EXPECT_EQ(list_blocks(name), std::vector<std::string>{name}) << "another block was left";
  EXPECT_FALSE(registered_by(name, ::getpid()));
  for (const auto& r : tracker::registrations()) EXPECT_NE(r.block.rfind(name, 0), 0u) << r.block;

  auto mine = SharedMemory::attach(name, tracked());
  EXPECT_THROW((void)SharedMemory::create(name, 64, tracked()), std::system_error);
  EXPECT_TRUE(registered_by(name, ::getpid())) << "the attach's registration was lost";
  tracker::collect_garbage(false);
  EXPECT_TRUE(block_exists(name));
  EXPECT_EQ(static_cast<unsigned char*>(mine.data())[0], 0x42);
  mine.unlink();
  EXPECT_FALSE(registered_by(name, ::getpid()));
}

// A tracked block appears under its name already sized: an observer polling
// the name never sees it at 0 bytes (the temporary name takes that state).
TEST_F(Tracker, TrackedCreateNeverShowsAnEmptyBlock) {
  auto name = unique_name("sized");
  std::atomic<bool> stop{false};
  std::atomic<int> empty_seen{0}, seen{0};
  std::thread watcher([&] {
    const std::string path = "/dev/shm/" + name;
    while (!stop.load()) {
      struct stat st {};
      if (::stat(path.c_str(), &st) == 0) {
        ++seen;
        if (st.st_size == 0) ++empty_seen;
      }
    }
  });
  for (int i = 0; i < 200; ++i) {
    auto shm = SharedMemory::create(name, 1 << 16, tracked());
    shm.unlink();
  }
  stop = true;
  watcher.join();
  EXPECT_EQ(empty_seen.load(), 0) << "of " << seen.load() << " sightings";
}

// Forged entries written straight into the registry: a live pid with the
// wrong start time (a reused pid) does not keep a block alive, and the
// right start time does.
TEST_F(Tracker, ReusedPidNeitherKeepsNorKills) {
  // Make sure the registry exists.
  auto anchor = SharedMemory::create(unique_name("anchor"), 64, tracked());
  const std::uint64_t my_start = tracker::process_start_time(::getpid());

  auto dead = unique_name("reused");
  auto b1 = SharedMemory::create(dead, 64);
  forge_registration(dead, ::getpid(), my_start + 12345);  // "our" pid, but another process's start time
  auto report = tracker::collect_garbage(true);
  bool listed = false;
  for (auto& u : report.unlinked) listed |= u == dead;
  EXPECT_TRUE(listed) << "dry run does not list the block of a reused pid";
  EXPECT_TRUE(block_exists(dead));  // dry run changed nothing
  report = tracker::collect_garbage(false);
  EXPECT_FALSE(block_exists(dead)) << "a reused pid kept a dead registrant's block alive";

  auto live = unique_name("live");
  auto b2 = SharedMemory::create(live, 64);
  forge_registration(live, ::getpid(), my_start);  // truly us
  tracker::collect_garbage(false);
  EXPECT_TRUE(block_exists(live)) << "a live registrant's block was unlinked";
  b2.unlink();
  tracker::forget_block(live, b2.inode());
  anchor.unlink();
}

// A block re-created under the same name after its registrant died is not
// the registered block: the tracker leaves it alone (inode check).
TEST_F(Tracker, RecreatedNameIsLeftAlone) {
  auto name = unique_name("recreated");
  auto anchor = SharedMemory::create(unique_name("anchor2"), 64, tracked());
  {
    auto first = SharedMemory::create(name, 64);
    forge_registration(name, ::getpid(), tracker::process_start_time(::getpid()) + 999);  // a dead registrant
  }
  SharedMemory::unlink(name);
  auto second = SharedMemory::create(name, 64);  // new inode, untracked
  tracker::collect_garbage(false);
  EXPECT_TRUE(block_exists(name));
  second.unlink();
  anchor.unlink();
}

// ------------------------------------------------------------ use, never ownership

// An attach registers use, never ownership: a block nobody registered as its
// creator (CPython made it, or an untracked shmkit handle) is never unlinked
// by the tracker. Here a forged dead *user* of such a block: gc drops the
// registration and leaves the block; a forged dead creator's block goes.
TEST_F(Tracker, GcNeverUnlinksABlockOnlyAttached) {
  auto anchor = SharedMemory::create(unique_name("anchor4"), 64, tracked());  // the registry exists
  const std::uint64_t dead_start = tracker::process_start_time(::getpid()) + 4711;
  auto attached = unique_name("attached");
  auto a = SharedMemory::create(attached, 64);  // someone else's block
  forge_registration(attached, ::getpid(), dead_start, tracker::current_pid_namespace(), /*created=*/false);
  auto created = unique_name("created");
  auto c = SharedMemory::create(created, 64);
  forge_registration(created, ::getpid(), dead_start, tracker::current_pid_namespace(), /*created=*/true);
  for (bool dry : {true, false}) {
    const auto report = tracker::collect_garbage(dry);
    const auto listed = [&](const std::string& n) {
      return std::any_of(report.unlinked.begin(), report.unlinked.end(), [&](auto& b) { return b == n; });
    };
    EXPECT_FALSE(listed(attached)) << (dry ? "dry run" : "gc") << " would unlink a block only attached";
    EXPECT_TRUE(listed(created)) << (dry ? "dry run" : "gc") << " misses a dead creator's block";
    EXPECT_TRUE(std::any_of(report.dropped.begin(), report.dropped.end(), [&](auto& r) {
      return r.block == attached && !r.created;
    })) << "the dead user's registration is not dropped";
  }
  EXPECT_TRUE(block_exists(attached)) << "gc unlinked a block that no shmkit process created";
  EXPECT_FALSE(block_exists(created));
  for (const auto& r : tracker::registrations())
    EXPECT_NE(r.block, attached) << "the dead user's registration stayed";
  a.unlink();
  anchor.unlink();
}

// A shmkit creator and a shmkit user: the creator's registration says so,
// the user's does not; when the creator goes first (unregistering, as a
// clean MPI leader does, or dying), the user keeps the block alive and its
// death then removes it: creation passes to the file's remaining users.
TEST_F(Tracker, CreationPassesToTheRemainingUsersOfTheFile) {
  auto name = unique_name("passes");
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  pid_t creator = child_holding(name, true, p[1]);
  wait_ready(p[0]);
  pid_t user = child_holding(name, false, p[1]);
  wait_ready(p[0]);
  bool creator_seen = false, user_seen = false;
  for (const auto& r : tracker::registrations()) {
    if (r.block != name) continue;
    if (r.pid == creator) creator_seen = r.created;
    if (r.pid == user) user_seen = !r.created;
  }
  EXPECT_TRUE(creator_seen) << "the creator's registration is not marked created";
  EXPECT_TRUE(user_seen) << "the attacher's registration is marked created";
  ::kill(creator, SIGKILL);
  wait_child(creator);
  ASSERT_TRUE(eventually([&] { return !registered_by(name, creator); }, 10s, 5ms));
  EXPECT_TRUE(block_exists(name));
  ::kill(user, SIGKILL);
  wait_child(user);
  EXPECT_TRUE(eventually([&] { return !block_exists(name); }, 10s, 5ms))
      << "a shmkit-created block leaked once its creator died before its user";
  if (block_exists(name)) SharedMemory::unlink(name);
  ::close(p[0]);
  ::close(p[1]);
}

// A CPython program (the stdlib's multiprocessing.shared_memory, no shmkit)
// that runs tests/interop/stdlib_creator.py: stdin and stdout are pipes.
struct StdlibCreator {
  pid_t pid = -1;
  int to = -1;    // its stdin
  int from = -1;  // its stdout
};

StdlibCreator start_stdlib_creator(const std::string& kind, const std::string& name) {
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) return {};
  const std::string python = python_path(), script = interop_dir() + "/stdlib_creator.py";
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::unsetenv("PYTHONPATH");  // the stdlib's modules, never shmkit's
    const char* argv[] = {python.c_str(), script.c_str(), kind.c_str(), name.c_str(), nullptr};
    ::execv(argv[0], const_cast<char* const*>(argv));
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  return {pid, in[1], out[0]};
}

// Everything the creator writes until it closes stdout (30 s at most).
std::string read_until_eof(int fd) {
  std::string text;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[256];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  return text;
}

// One line (without its newline), 30 s at most.
std::string read_line(int fd) {
  std::string line;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char c;
    if (::read(fd, &c, 1) != 1) break;
    if (c == '\n') break;
    line += c;
  }
  return line;
}

// CPython's own multiprocessing.shared_memory creates the block and keeps
// using it; a shmkit process attaches with track=true (the default of
// shmkit's Python package) and exits cleanly; its watcher sweeps. The block
// must still be there, and the stdlib creator's unlink() must succeed (it
// raised FileNotFoundError when the watcher unlinked the block: gh-82300,
// the bug shmkit's tracker exists to fix). As a raw block and as a
// ShareableList exchange.
TEST_F(Tracker, StdlibCreatorsBlockOutlivesATrackedShmkitAttacher) {
  for (const std::string kind : {"shm", "list"}) {
    SCOPED_TRACE(kind);
    const auto name = unique_name("stdlib_" + kind);
    StdlibCreator py = start_stdlib_creator(kind, name);
    ASSERT_GT(py.pid, 0);
    ASSERT_EQ(read_line(py.from), "made") << "the CPython creator did not start";
    ASSERT_TRUE(block_exists(name));
    const pid_t peer = fork_child([&] {
      if (kind == "shm") {
        auto shm = SharedMemory::attach(name, tracked());
        std::memcpy(static_cast<char*>(shm.data()) + 6, "shmkit", 6);
      } else {
        auto sl = ShareableList::attach(SharedMemory::attach(name, tracked()));
        if (sl.get(1) != Item(std::string("stdlib"))) return 4;
        sl.set(0, Item(std::int64_t{42}));
      }
      return registered_by(name, ::getpid()) ? 0 : 5;  // then a clean exit: close, no unlink
    });
    const ExitStatus st = wait_child(peer);
    EXPECT_TRUE(st.ok()) << "the shmkit attacher: " << st.describe();
    // Its watcher has swept (under the registry lock, with any unlink) once
    // its registration is gone.
    EXPECT_TRUE(eventually([&] { return !registered_by(name, peer); }, 10s, 5ms));
    EXPECT_TRUE(block_exists(name)) << "shmkit's watcher unlinked a block CPython created and still uses";
    ASSERT_EQ(::write(py.to, "go\n", 3), 3);
    ::close(py.to);
    const std::string said = read_until_eof(py.from);
    ::close(py.from);
    const ExitStatus done = wait_child(py.pid);
    EXPECT_TRUE(done.ok()) << "the CPython creator: " << done.describe() << "; said: " << said;
    EXPECT_NE(said.find("unlinked"), std::string::npos) << said;
    if (block_exists(name)) SharedMemory::unlink(name);
  }
}

// ------------------------------------------------------------ the watcher

// Processes (other than this one) that map, or hold a descriptor of, the
// file with inode `ino` on device `dev`: "pid:how" strings.
std::vector<std::string> holders_of(dev_t dev, ino_t ino) {
  std::vector<std::string> out;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return out;
  char want_dev[32];
  std::snprintf(want_dev, sizeof want_dev, "%02x:%02x", ::major(dev), ::minor(dev));
  while (dirent* d = ::readdir(proc)) {
    const pid_t pid = static_cast<pid_t>(std::atoi(d->d_name));
    if (pid <= 0 || pid == ::getpid()) continue;
    const std::string base = std::string("/proc/") + d->d_name;
    if (FILE* maps = std::fopen((base + "/maps").c_str(), "r")) {
      char line[4096];
      while (std::fgets(line, sizeof line, maps) != nullptr) {
        char devs[32] = {};
        unsigned long inode = 0;
        if (std::sscanf(line, "%*s %*s %*s %31s %lu", devs, &inode) == 2 && inode == ino &&
            std::strcmp(devs, want_dev) == 0) {
          out.push_back(std::to_string(pid) + ":maps " + line);
          break;
        }
      }
      std::fclose(maps);
    }
    if (DIR* fds = ::opendir((base + "/fd").c_str())) {
      while (dirent* f = ::readdir(fds)) {
        struct stat st {};
        if (f->d_name[0] != '.' && ::stat((base + "/fd/" + f->d_name).c_str(), &st) == 0 &&
            st.st_dev == dev && st.st_ino == ino) {
          out.push_back(std::to_string(pid) + ":fd " + f->d_name);
        }
      }
      ::closedir(fds);
    }
  }
  ::closedir(proc);
  return out;
}

// A regression: a forked watcher kept every mapping its registrant had at
// the fork, so an unlinked 256 MiB block stayed allocated while the
// registrant lived. After unlink + close, no process may hold the block.
TEST_F(Tracker, UnlinkedTrackedBlockIsFreedWhileTheRegistrantLives) {
  constexpr std::size_t kSize = std::size_t{256} << 20;
  struct statvfs vfs {};
  ASSERT_EQ(::statvfs("/dev/shm", &vfs), 0);
  if (static_cast<std::size_t>(vfs.f_bavail) * vfs.f_frsize < 4 * kSize) {
    GTEST_SKIP() << "/dev/shm has less than 1 GiB free";
  }
  auto name = unique_name("big");
  const ExitStatus st = run_child([&] {
    auto shm = SharedMemory::create(name, kSize, tracked());  // reserved: the memory is allocated
    std::memset(shm.data(), 0x11, 4096);
    struct stat sb {};
    if (::fstat(shm.fd(), &sb) != 0) return 2;
    shm.unlink();
    shm.close();
    const auto held = holders_of(sb.st_dev, sb.st_ino);
    for (const auto& h : held) std::fprintf(stderr, "still held after unlink+close: %s\n", h.c_str());
    return held.empty() ? 0 : 1;
  });
  EXPECT_TRUE(st.ok()) << "the unlinked 256 MiB block is still mapped or open (by the watcher?): "
                       << st.describe();
}

// The process whose *initial* environment (what exec gave it) holds
// `entry` ("NAME=value"), other than this one; 0 if none.
pid_t process_with_environ(const std::string& entry) {
  pid_t found = 0;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return 0;
  while (dirent* d = ::readdir(proc)) {
    const pid_t pid = static_cast<pid_t>(std::atoi(d->d_name));
    if (pid <= 0 || pid == ::getpid()) continue;
    int fd = ::open((std::string("/proc/") + d->d_name + "/environ").c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    std::string env;
    char buf[4096];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) env.append(buf, static_cast<std::size_t>(n));
    ::close(fd);
    if (env.find(std::string(1, '\0') + entry + std::string(1, '\0')) != std::string::npos ||
        env.rfind(entry + std::string(1, '\0'), 0) == 0) {
      found = pid;
      break;
    }
  }
  ::closedir(proc);
  return found;
}

std::string exe_of(pid_t pid) {
  char buf[4096];
  const ssize_t n = ::readlink(("/proc/" + std::to_string(pid) + "/exe").c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

// A regression: a forked watcher ran in a copy of the registrant, where a
// lock another thread held at the fork stays held forever (here a library's
// atfork child handler needs one). An exec'd watcher runs none of the
// registrant's code: the tracked create returns, and the watcher is its own
// program.
std::mutex g_fork_time_lock;
TEST_F(Tracker, WatcherIsItsOwnProgramAndNeedsNoLockOfTheRegistrant) {
  auto name = unique_name("atfork");
  const std::string marker = "SHMKIT_TEST_WATCHER_MARK=" + unique_name("mark");
  pid_t pid = fork_child([&] {
    // A library's fork handler (as malloc replacements and loggers have).
    ::pthread_atfork(nullptr, nullptr, [] { std::lock_guard g(g_fork_time_lock); });
    std::atomic<bool> held{false}, stop{false};
    std::thread holder([&] {
      std::lock_guard g(g_fork_time_lock);
      held = true;
      while (!stop) std::this_thread::sleep_for(1ms);
    });
    while (!held) std::this_thread::yield();
    ::putenv(const_cast<char*>(marker.c_str()));  // what an exec'd watcher starts with
    int rc = 0;
    {
      auto shm = SharedMemory::create(name, 4096, tracked());
      const pid_t watcher = process_with_environ(marker);
      const std::string self = exe_of(::getpid());
      if (watcher == 0) {
        std::fprintf(stderr, "no exec'd watcher found\n");
        rc = 2;
      } else if (exe_of(watcher) == self) {
        std::fprintf(stderr, "watcher %d runs %s, the test binary\n", watcher, self.c_str());
        rc = 3;
      }
    }
    stop = true;
    holder.join();
    return rc;  // exits registered: the watcher unlinks the block
  });
  const ExitStatus st = wait_child(pid, 20s);
  EXPECT_TRUE(st.ok()) << (st.timed_out ? "the tracked create hung (fork-time lock in the watcher's fork)"
                                        : st.describe());
  EXPECT_TRUE(eventually([&] { return !block_exists(name); }, 10s, 5ms))
      << "the watcher did not unlink " << name;
  if (block_exists(name)) SharedMemory::unlink(name);
}

// ------------------------------------------------------------ PID namespaces

// gh-82300's pod case: a process in another PID namespace
// (a container sharing /dev/shm) registers a block; its pid means another
// process, or none, here. Neither gc nor a watcher in this namespace may
// judge it, while the registrant lives; its own namespace's watcher still
// cleans up after it.
TEST_F(Tracker, AnotherPidNamespacesRegistrationIsNeverJudged) {
  auto name = unique_name("pidns");
  int ready[2], release[2];
  ASSERT_EQ(::pipe2(ready, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(release, O_CLOEXEC), 0);
  pid_t outer = fork_child([&] {
    ::close(ready[0]);
    ::close(release[1]);
    if (::unshare(CLONE_NEWPID | CLONE_NEWNS) != 0) return errno == EPERM ? 77 : 1;
    pid_t init = ::fork();  // pid 1 of the new namespace, with its own /proc, as a container's
    if (init == 0) {
      if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
          ::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
        ::_exit(78);
      }
      pid_t user = ::fork();  // the registrant: pid 2 there
      if (user == 0) {
        try {
          auto shm = SharedMemory::create(name, 4096, tracked());
          char c = 'r';
          if (::write(ready[1], &c, 1) != 1) ::_exit(1);
          ::close(ready[1]);
          (void)!::read(release[0], &c, 1);  // until the test lets go
        } catch (const std::exception& e) {
          std::fprintf(stderr, "in the namespace: %s\n", e.what());
          ::_exit(1);
        }
        ::_exit(0);
      }
      ::close(ready[1]);
      // Reap everything (the registrant, its watcher once orphaned): pid
      // 1's exit would kill the namespace's other processes.
      int status = 0, rc = 0;
      for (pid_t p; (p = ::wait(&status)) > 0 || errno == EINTR;) {
        if (p == user && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) rc = 1;
      }
      ::_exit(rc);
    }
    ::close(ready[1]);
    int status = 0;
    if (init < 0 || ::waitpid(init, &status, 0) != init) return 1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
  });
  ::close(ready[1]);
  ::close(release[0]);
  char c = 0;
  pollfd p{ready[0], POLLIN, 0};
  const bool got = ::poll(&p, 1, 30000) == 1 && ::read(ready[0], &c, 1) == 1;
  if (!got) {
    ::close(release[1]);
    const ExitStatus st = wait_child(outer);
    ::close(ready[0]);
    if (st.exited && st.code == 77) GTEST_SKIP() << "unshare(CLONE_NEWPID) is not permitted here (EPERM)";
    if (st.exited && st.code == 78) GTEST_SKIP() << "cannot mount /proc in a new mount namespace";
    FAIL() << "the registrant in the new namespace did not start: " << st.describe();
  }
  ASSERT_TRUE(block_exists(name));

  // gc in this namespace.
  (void)tracker::collect_garbage(false);
  EXPECT_TRUE(block_exists(name)) << "gc unlinked a block registered in another PID namespace";

  // A watcher's judgement in this namespace: a local registrant of the same
  // block dies, and its watcher sweeps.
  if (block_exists(name)) {
    int lp[2];
    ASSERT_EQ(::pipe(lp), 0);
    pid_t local = child_holding(name, false, lp[1]);
    wait_ready(lp[0]);
    ::kill(local, SIGKILL);
    wait_child(local);
    EXPECT_TRUE(eventually([&] { return !registered_by(name, local); }, 10s, 5ms));
    EXPECT_TRUE(block_exists(name)) << "a watcher unlinked a block registered in another PID namespace";
    ::close(lp[0]);
    ::close(lp[1]);
  }

  // Let the registrant go: the watcher of its own namespace unlinks it.
  ::close(release[1]);
  const ExitStatus st = wait_child(outer);
  EXPECT_TRUE(st.ok()) << st.describe();
  EXPECT_TRUE(eventually([&] { return !block_exists(name); }, 10s, 5ms))
      << "the watcher in the registrant's namespace did not unlink " << name;
  if (block_exists(name)) SharedMemory::unlink(name);
  ::close(ready[0]);
}

// An entry forged as another namespace's, with a pid and start time that
// would read as dead here: gc keeps its block and reports it not judged.
TEST_F(Tracker, OtherNamespaceEntriesAreReportedNotJudged) {
  auto anchor = SharedMemory::create(unique_name("anchor3"), 64, tracked());  // the registry exists
  auto name = unique_name("foreign");
  auto block = SharedMemory::create(name, 64);
  tracker::PidNamespace other = tracker::current_pid_namespace();
  ASSERT_NE(other.inode, 0u);
  other.inode += 1;
  forge_registration(name, ::getpid(), tracker::process_start_time(::getpid()) + 4242, other);
  for (bool dry : {true, false}) {
    const auto report = tracker::collect_garbage(dry);
    EXPECT_TRUE(
        std::none_of(report.unlinked.begin(), report.unlinked.end(), [&](auto& b) { return b == name; }));
    EXPECT_TRUE(
        std::none_of(report.dropped.begin(), report.dropped.end(), [&](auto& r) { return r.block == name; }));
    EXPECT_TRUE(std::any_of(report.not_judged.begin(), report.not_judged.end(), [&](auto& r) {
      return r.block == name && r.pid_namespace == other && !r.judged;
    }));
    EXPECT_TRUE(block_exists(name));
  }
  bool listed = false;
  for (const auto& r : tracker::registrations()) {
    if (r.block != name) continue;
    listed = true;
    EXPECT_FALSE(r.judged);
    EXPECT_FALSE(r.alive);
    EXPECT_EQ(r.inode, block.inode());
  }
  EXPECT_TRUE(listed);
  block.unlink();
  tracker::forget_block(name, block.inode());
  for (const auto& r : tracker::registrations()) EXPECT_NE(r.block, name);
  anchor.unlink();
}

// ------------------------------------------------------------ the watcher program

// The watcher holds nothing of the registrant but what it needs: stdin and
// stdout on /dev/null, stderr, the registry and a pidfd. A descriptor the
// registrant left inheritable (no O_CLOEXEC) is not among them.
TEST_F(Tracker, WatcherInheritsNoDescriptorItDoesNotNeed) {
  auto name = unique_name("fds");
  const std::string marker = "SHMKIT_TEST_WATCHER_MARK=" + unique_name("mark");
  const ExitStatus st = run_child([&] {
    auto other = SharedMemory::create(unique_name("other"), 4096);
    const int leaky = ::dup(other.fd());  // inheritable
    struct stat ost {};
    ::fstat(other.fd(), &ost);
    other.unlink();
    ::putenv(const_cast<char*>(marker.c_str()));
    auto shm = SharedMemory::create(name, 4096, tracked());
    const pid_t watcher = process_with_environ(marker);
    if (watcher == 0) return 2;
    int bad = 0;
    const std::string dir = "/proc/" + std::to_string(watcher) + "/fd";
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return 3;
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      const int fd = std::atoi(e->d_name);
      char target[512] = {};
      (void)!::readlink((dir + "/" + e->d_name).c_str(), target, sizeof target - 1);
      struct stat fst {};
      (void)::stat((dir + "/" + e->d_name).c_str(), &fst);
      const std::string t = target;
      bool ok = (fd <= 1 && t == "/dev/null") || fd == 2 || t == "anon_inode:[pidfd]" ||
                t == "/dev/shm/" + tracker::registry_name();
      if (fst.st_ino == ost.st_ino && fst.st_dev == ost.st_dev) ok = false;
      if (!ok) {
        std::fprintf(stderr, "watcher fd %d -> %s\n", fd, target);
        ++bad;
      }
    }
    ::closedir(d);
    ::close(leaky);
    shm.unlink();
    return bad == 0 ? 0 : 1;
  });
  EXPECT_TRUE(st.ok()) << st.describe();
}

// No watcher program: a tracked create fails with a system_error naming the
// path, and registers nothing (there is no unwatched fallback).
TEST_F(Tracker, MissingWatcherFailsClearlyAndRegistersNothing) {
  auto name = unique_name("nowatcher");
  const ExitStatus st = run_child([&] {
    ::setenv("SHMKIT_WATCHER", "/nonexistent/shmkit-watcher", 1);
    try {
      (void)SharedMemory::create(name, 4096, tracked());
      return 1;
    } catch (const std::system_error& e) {
      if (std::string(e.what()).find("/nonexistent/shmkit-watcher") == std::string::npos) {
        std::fprintf(stderr, "message does not name the path: %s\n", e.what());
        return 2;
      }
    }
    if (block_exists(name) || registered_by(name, ::getpid())) return 3;
    try {
      auto plain = SharedMemory::create(name, 64);  // untracked still works
      plain.unlink();
    } catch (const std::exception&) {
      return 4;
    }
    return 0;
  });
  EXPECT_TRUE(st.ok()) << st.describe();
}

// ------------------------------------------------------------ name/inode races

// A regression: attach registered whatever file was under the name when it
// registered, not the file it opened. Here another process replaces the
// block right after the attacher's shm_open; when the attacher dies, its
// watcher must leave the replacement (which nobody tracks) alone.
TEST_F(Tracker, TrackedAttachRegistersTheFileItOpened) {
  auto name = unique_name("swapped");
  auto original = SharedMemory::create(name, 4096);
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  pid_t attacher = fork_child([&] {
    g_hook_name = name;
    bool swapped = false;
    g_after_shm_open = [&] {  // "another process" re-creates the name
      SharedMemory::unlink(name);
      (void)SharedMemory::create(name, 8192);
      swapped = true;
    };
    auto shm = SharedMemory::attach(name, tracked());
    char c = swapped ? 'r' : 'n';
    if (::write(p[1], &c, 1) != 1) return 1;
    for (;;) ::pause();
  });
  char c = 0;
  ASSERT_EQ(::read(p[0], &c, 1), 1);
  ASSERT_EQ(c, 'r') << "the staged re-creation did not run (attach no longer calls shm_open?)";
  ::kill(attacher, SIGKILL);
  wait_child(attacher);
  EXPECT_TRUE(eventually([&] { return !registered_by(name, attacher); }, 10s, 5ms));
  EXPECT_TRUE(block_exists(name)) << "the dead attacher's watcher unlinked a block it never attached";
  if (block_exists(name)) SharedMemory::unlink(name);
  ::close(p[0]);
  ::close(p[1]);
}

// A regression: unlink() dropped every registration of the name, so a block
// another process created under it just after our shm_unlink lost its
// registration, and leaked when that process died.
TEST_F(Tracker, UnlinkDropsOnlyItsOwnFilesRegistrations) {
  auto name = unique_name("unlinked");
  int go[2], done[2];
  ASSERT_EQ(::pipe(go), 0);
  ASSERT_EQ(::pipe(done), 0);
  pid_t other = fork_child([&] {  // the process that re-creates the name
    char c;
    if (::read(go[0], &c, 1) != 1) return 1;
    auto shm = SharedMemory::create(name, 4096, tracked());
    if (::write(done[1], &c, 1) != 1) return 1;
    for (;;) ::pause();
  });
  auto mine = SharedMemory::create(name, 4096, tracked());
  g_hook_name = name;
  bool staged = false;
  g_after_shm_unlink = [&] {  // between our shm_unlink and the registry update
    char c = 'g';
    staged = ::write(go[1], &c, 1) == 1 && ::read(done[0], &c, 1) == 1;
  };
  mine.unlink();
  g_hook_name.clear();
  ASSERT_TRUE(staged);
  ASSERT_TRUE(block_exists(name));
  EXPECT_TRUE(registered_by(name, other))
      << "unlink() dropped another process's registration of its new block";
  ::kill(other, SIGKILL);
  wait_child(other);
  EXPECT_TRUE(eventually([&] { return !block_exists(name); }, 10s, 5ms))
      << "the re-created block leaked after its registrant died";
  if (block_exists(name)) SharedMemory::unlink(name);
  for (int fd : {go[0], go[1], done[0], done[1]}) ::close(fd);
}

// A watcher SIGKILLed in the middle of its sweep (the OOM killer, a batch
// system tearing down a job's cgroup) must leave what it had not unlinked
// to the next sweep: the dead registrations stay in the registry until
// their blocks are gone, so `shmkit gc` (collect_garbage) finds and removes
// the rest. The watcher is caught mid-sweep by stopping it at random
// moments until some, but not all, of the blocks are gone.
TEST_F(Tracker, WatcherKilledInTheMiddleOfItsSweepLeavesTheRestToGc) {
  constexpr int kBlocks = 400;
  bool caught = false;
  for (int attempt = 0; attempt < 20 && !caught; ++attempt) {
    const std::string prefix = unique_name("midsweep");
    const std::string marker = "SHMKIT_TEST_WATCHER_MARK=" + prefix;
    int p[2];
    ASSERT_EQ(::pipe(p), 0);
    const pid_t registrant = fork_child([&] {
      ::putenv(const_cast<char*>(marker.c_str()));  // the watcher starts with it
      std::vector<SharedMemory> blocks;
      for (int i = 0; i < kBlocks; ++i) {
        blocks.push_back(SharedMemory::create(prefix + "_" + std::to_string(i), 4096, tracked()));
      }
      char c = 'r';
      if (::write(p[1], &c, 1) != 1) return 1;
      for (;;) ::pause();
    });
    ::close(p[1]);
    char c = 0;
    ASSERT_EQ(::read(p[0], &c, 1), 1);
    ::close(p[0]);
    const pid_t watcher = process_with_environ(marker);
    ASSERT_NE(watcher, 0) << "no watcher found for the registrant";
    ASSERT_EQ(::kill(registrant, SIGKILL), 0);
    (void)wait_child(registrant, 10s);
    // Let the watcher run in short bursts; between bursts it is stopped and
    // the blocks are counted.
    std::size_t left = kBlocks;
    for (int burst = 0; burst < 20000; ++burst) {
      ASSERT_EQ(::kill(watcher, SIGSTOP), 0);
      ASSERT_TRUE(eventually([&] { return task_state(watcher) == 'T'; }, 5s, 1ms));
      left = list_blocks(prefix + "_").size();
      if (left > 0 && left < static_cast<std::size_t>(kBlocks)) {
        ::kill(watcher, SIGKILL);
        caught = true;
        break;
      }
      ::kill(watcher, SIGCONT);
      if (left == 0) break;  // the sweep ended between two looks: try again
      const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(20 + burst % 80);
      while (std::chrono::steady_clock::now() < until) {
      }
    }
    if (!caught) {
      (void)eventually([&] { return list_blocks(prefix + "_").empty(); }, 10s, 5ms);
      for (const auto& b : list_blocks(prefix + "_")) ::shm_unlink(("/" + b).c_str());
      continue;
    }
    // The watcher died holding the registry lock, half way: the next sweep
    // repairs the lock and removes every block the dead registrant created.
    (void)tracker::collect_garbage(false);
    const auto rest = list_blocks(prefix + "_");
    EXPECT_TRUE(rest.empty()) << rest.size() << " of the " << left
                              << " blocks the killed watcher had not unlinked were lost to gc";
    for (const auto& b : rest) ::shm_unlink(("/" + b).c_str());
  }
  EXPECT_TRUE(caught) << "never caught the watcher in the middle of its sweep";
}

}  // namespace
}  // namespace shmkit::test
