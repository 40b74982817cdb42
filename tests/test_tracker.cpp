// The resource tracker with real processes and SIGKILL: a tracked block is
// unlinked once all its registrants are dead, never while one lives
// (CPython's gh-82300), and reused pids fool it neither way.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <sys/mman.h>
#include <cstring>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "shmkit/shared_memory.hpp"
#include "shmkit/tracker.hpp"
#include "shmkit/typed_block.hpp"
#include "forge_registration.hpp"
#include "test_support.hpp"

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
  static void SetUpTestSuite() {
    ::setenv("SHMKIT_TRACKER_REGISTRY", unique_name("registry").c_str(), 1);
  }
  static void TearDownTestSuite() {
    ::shm_unlink(("/" + tracker::registry_name()).c_str());
  }
};

// A child that creates (or attaches) a tracked block, reports, then waits
// to be killed.
pid_t child_holding(const std::string& name, bool create, int ready_fd) {
  return fork_child([=] {
    auto shm = create ? SharedMemory::create(name, 4096, tracked())
                      : SharedMemory::attach(name, tracked());
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
  EXPECT_TRUE(eventually([&] { return !block_exists(name); }, 10s, 5ms)) << "the watcher did not unlink " << name;
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
  tracker::forget_block(live);
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

}  // namespace
}  // namespace shmkit::test
