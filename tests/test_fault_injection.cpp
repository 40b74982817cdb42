// The fault-injection walk: for every numbered kill point in
// shmkit/detail/fault.hpp, a victim process SIGKILLs itself exactly there,
// then the survivors check what the headers promise for that moment:
//   * nothing hangs: every survivor call is timed or bounded, and the whole
//     check runs under the suite's watchdog;
//   * every committed value is intact, and the one in flight is either old,
//     new, or reported as torn by the primitive's own protocol
//     (OwnerDiedError, an "initialising" block, an error naming the item);
//   * afterwards, `shmkit gc --yes` and the tracker leave no block of the
//     scenario in /dev/shm.
// The victim must die by SIGKILL: a victim that exits normally never reached
// its point, and the case fails (so the walk also proves the points are
// where fault.hpp says). This binary links shmkit_fault, the library built
// with the points compiled in; each point is its own ctest case.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "fault_support.hpp"
#include "shmkit/detail/fault.hpp"
#include "shmkit/heap.hpp"
#include "shmkit/lockfree/broadcast_ring.hpp"
#include "shmkit/lockfree/byte_queue.hpp"
#include "shmkit/lockfree/mpmc_queue.hpp"
#include "shmkit/lockfree/seqlock.hpp"
#include "shmkit/lockfree/spsc_queue.hpp"
#include "shmkit/manager.hpp"
#include "shmkit/shareable_list.hpp"
#include "shmkit/shared_memory.hpp"
#include "shmkit/tracker.hpp"
#include "shmkit/typed_block.hpp"
#include "shmkit/value.hpp"
#include "test_support.hpp"

namespace shmkit::fault {
// Test names and failure messages show the point by name.
void PrintTo(const PointInfo& p, std::ostream* os) { *os << p.name; }
}  // namespace shmkit::fault

namespace shmkit::test {
namespace {

using namespace std::chrono_literals;
using fault::Point;
using Clock = std::chrono::steady_clock;

SharedMemory::Options tracked() {
  SharedMemory::Options o;
  o.track = true;
  return o;
}

// Runs `op` in a forked victim with `point` armed (its nth pass kills it)
// and checks that it died there, by its own SIGKILL.
void die_at(Point point, const std::function<void()>& op, std::uint32_t nth = 1) {
  const ExitStatus st = run_child(
      [&] {
        fault::arm(point, nth);
        op();
        return 42;  // only reached if the point was not
      },
      30s);
  ASSERT_FALSE(st.timed_out) << "the victim hung before reaching " << point_name(point);
  ASSERT_EQ(st.signal, SIGKILL) << "the victim did not die at " << point_name(point) << ": " << st.describe();
}

// The block's size, or nothing if the name does not exist (one stat: the
// tracker may remove the block at any moment).
std::optional<std::size_t> size_of(const std::string& name) {
  struct stat st {};
  if (::stat(("/dev/shm/" + name).c_str(), &st) != 0) return std::nullopt;
  return static_cast<std::size_t>(st.st_size);
}

// `shmkit gc --yes` (the ordinary build of the command, same registry), then
// waits for the tracker watchers: no block starting with `prefix` may remain
// except those in `keep` (blocks the survivor still owns).
void expect_nothing_left(const std::string& prefix, const std::vector<std::string>& keep = {}) {
#ifdef SHMKIT_TEST_CLI
  const ProcessResult gc = run_process({SHMKIT_TEST_CLI, "gc", "--yes"});
  EXPECT_TRUE(gc.status.ok()) << "shmkit gc --yes: " << gc.status.describe() << "\n" << gc.err;
#else
  (void)tracker::collect_garbage(false);
#endif
  auto left = [&] {
    std::vector<std::string> out;
    for (const std::string& b : list_blocks(prefix)) {
      if (std::find(keep.begin(), keep.end(), b) == keep.end()) out.push_back(b);
    }
    return out;
  };
  (void)eventually([&] { return left().empty(); }, 10s, 5ms);
  for (const std::string& b : left()) {
    ADD_FAILURE() << "left in /dev/shm after the kill and gc: " << b;
    ::shm_unlink(("/" + b).c_str());
  }
}

// A millisecond stopwatch for "it returned within its bound" checks (bounds
// generous enough for a loaded CI machine: these catch hangs, not slowness).
struct Stopwatch {
  Clock::time_point t0 = Clock::now();
  long ms() const {
    return static_cast<long>(
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count());
  }
};

// ------------------------------------------------------------ creation

// A tracked create killed at `point`: the name never shows a 0-byte block,
// and whatever the victim made is gone once it and its watcher (or gc) are
// (an unnamed file dies with its process; a named one is registered).
// Run twice: first in a process whose tracker registry does not exist yet
// (the victim dies creating the registry itself, which must not leave a
// half-made registry behind), then with the registry in place.
void tracked_create(Point point) {
  for (int pass = 0; pass < 2; ++pass) {
    const std::string name = unique_name("fi_create");
    die_at(point, [&] { (void)SharedMemory::create(name, 4096, tracked()); });
    if (const auto size = size_of(name)) {
      EXPECT_EQ(*size, 4096u) << "a tracked create exposed a partial block";
    }
    expect_nothing_left(name);
    // The name is free again and the tracker works: a survivor creates it.
    auto again = SharedMemory::create(name, 64, tracked());
    again.unlink();
  }
}

// An untracked typed create killed before it published its header: a
// survivor's attach neither hangs nor reads it, it says why.
void untracked_typed_create(Point point) {
  const std::string name = unique_name("fi_typed");
  die_at(point, [&] { (void)Value<std::int64_t>::create(name, 7); });
  ASSERT_TRUE(block_exists(name));  // untracked: the caller owns its lifetime
  Stopwatch sw;
  try {
    (void)Value<std::int64_t>::attach(name);
    ADD_FAILURE() << "attached a block whose creator died before publishing it";
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    EXPECT_TRUE(what.find("not initialised") != std::string::npos || what.find("empty") != std::string::npos)
        << what;
  }
  EXPECT_LT(sw.ms(), 5000) << "attach waited past its init_timeout";
  SharedMemory::unlink(name);
}

// A tracked typed create killed between writing and publishing its header.
void tracked_typed_create() {
  const std::string name = unique_name("fi_typed_tracked");
  BlockSpec spec;
  spec.type = TypeFingerprint::of<std::uint64_t>();
  spec.count = 4;
  spec.payload_size = 4 * sizeof(std::uint64_t);
  die_at(Point::typed_initialising, [&] {
    (void)create_typed_block(
        name, spec,
        [](std::span<std::byte>, std::span<std::byte> p) { std::memset(p.data(), 0xab, p.size()); },
        tracked());
  });
  AttachOptions opt;
  opt.init_timeout = 200ms;
  Stopwatch sw;
  try {
    (void)attach_typed_block(name, BlockKind::user, spec.type, opt);
    ADD_FAILURE() << "attached an unpublished typed block";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("not initialised"), std::string::npos) << e.what();
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), ENOENT) << e.what();  // the watcher already removed it
  }
  EXPECT_LT(sw.ms(), 5000);
  expect_nothing_left(name);
}

// ------------------------------------------------------------ attach / unlink

// A survivor's tracked block that a victim attaches (tracked) and dies in:
// the block and its bytes survive (gh-82300: a dead attacher never unlinks
// what a live process registered); the victim's registration goes.
void attach(Point point) {
  const std::string name = unique_name("fi_attach");
  auto shm = SharedMemory::create(name, 4096, tracked());
  std::memset(shm.data(), 0x5a, shm.size());
  die_at(point, [&] { (void)SharedMemory::attach(name, tracked()); });
  (void)tracker::collect_garbage(false);
  EXPECT_TRUE(block_exists(name)) << "a dead attacher's cleanup removed a block a live process uses";
  auto again = SharedMemory::attach(name);
  const auto* b = static_cast<const unsigned char*>(again.data());
  EXPECT_TRUE(std::all_of(b, b + again.size(), [](unsigned char c) { return c == 0x5a; }));
  for (const auto& r : tracker::registrations()) {
    EXPECT_TRUE(r.alive) << "a dead registration of " << r.block << " by " << r.pid << " survived gc";
  }
  expect_nothing_left(name, {name});
  shm.unlink();
  expect_nothing_left(name);
}

// A victim killed inside unlink(), after the name went: the survivor's
// mapping is intact, the name is free, and the victim's stale registration
// never removes a new block created under the same name.
void unlink_removed() {
  const std::string name = unique_name("fi_unlink");
  auto shm = SharedMemory::create(name, 4096, tracked());
  std::memset(shm.data(), 0x33, shm.size());
  die_at(Point::unlink_removed, [&] { SharedMemory::attach(name, tracked()).unlink(); });
  EXPECT_FALSE(block_exists(name));
  const auto* b = static_cast<const unsigned char*>(shm.data());
  EXPECT_TRUE(std::all_of(b, b + shm.size(), [](unsigned char c) { return c == 0x33; }));
  tracker::unregister_block(name);              // only the victim's stale entry is left
  auto fresh = SharedMemory::create(name, 64);  // someone else's block now
  (void)tracker::collect_garbage(false);
  EXPECT_TRUE(block_exists(name)) << "a stale registration removed a re-created block";
  fresh.unlink();
  expect_nothing_left(name);
}

// ------------------------------------------------------------ the registry

// A victim killed while writing a registry entry (the first registration of
// a tracked create): the registry's next user repairs it, and nothing leaks.
void registry_writing() {
  tracked_create(Point::registry_writing);
  const std::string name = unique_name("fi_registry");
  auto shm = SharedMemory::create(name, 64, tracked());  // the registry works
  bool mine = false;
  for (const auto& r : tracker::registrations()) mine |= r.block == name && r.pid == ::getpid();
  EXPECT_TRUE(mine);
  shm.unlink();
  expect_nothing_left(name);
}

// ------------------------------------------------------------ Value

struct Pair {
  std::uint64_t a, b;  // a == b in every committed value
};

// A victim killed in set_value() holding a RobustMutex: the next accessor is
// told (OwnerDiedError, once), the value is the old or the new one, never a
// mix, and the object works on. With the default RecursiveMutex the lock
// stays held forever (documented): a timed lock says so instead of hanging.
void value_store(Point point) {
  const std::string name = unique_name("fi_value");
  auto v = Value<Pair, RobustMutex>::create(name, Pair{1, 1});
  die_at(point, [&] { Value<Pair, RobustMutex>::attach(name).set_value(Pair{2, 2}); });
  Stopwatch sw;
  EXPECT_THROW((void)v.value(), OwnerDiedError);
  EXPECT_LT(sw.ms(), 5000);
  const Pair now = v.value();
  EXPECT_EQ(now.a, now.b) << "a torn value";
  EXPECT_EQ(now.a, point == Point::object_locked ? 1u : 2u);
  v.set_value(Pair{3, 3});
  EXPECT_EQ(v.value().a, 3u);
  v.unlink();

  const std::string plain = unique_name("fi_value_rmutex");
  auto r = Value<std::int64_t>::create(plain, 5);
  die_at(point, [&] { Value<std::int64_t>::attach(plain).set_value(6); });
  auto& lock = r.get_lock();
  EXPECT_FALSE(lock.try_lock_for(50ms)) << "a killed holder's RecursiveMutex was released";
  EXPECT_EQ(r.get_obj(), point == Point::object_locked ? 5 : 6);
  r.unlink();
  expect_nothing_left(name);
  expect_nothing_left(plain);
}

// ------------------------------------------------------------ ShareableList

// A victim killed inside set(0, ...): items 1.. are untouched; item 0 may be
// torn (documented), which reading turns into a value of either format or
// a clear error, never a crash or a read outside the block; set() repairs.
void list_set(Point point) {
  const std::string name = unique_name("fi_list");
  auto list = ShareableList::create(
      name, {Item{std::string("hello")}, Item{std::int64_t{7}}, Item{2.5}, Item{Bytes("xyz")}});
  die_at(point, [&] { ShareableList::attach(name).set(0, Item{std::int64_t{12345}}); });
  auto other = ShareableList::attach(name);
  EXPECT_EQ(other.get(1), Item{std::int64_t{7}});
  EXPECT_EQ(other.get(2), Item{2.5});
  EXPECT_EQ(other.get(3), Item{Bytes("xyz")});
  try {
    const Item torn = other.get(0);
    EXPECT_TRUE(std::holds_alternative<std::string>(torn) || std::holds_alternative<std::int64_t>(torn) ||
                std::holds_alternative<double>(torn) || std::holds_alternative<Bytes>(torn) ||
                std::holds_alternative<bool>(torn) || std::holds_alternative<std::monostate>(torn));
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("item 0"), std::string::npos) << e.what();
  }
  other.set(0, Item{std::string("again")});
  EXPECT_EQ(list.get(0), Item{std::string("again")});
  list.shm().unlink();
  expect_nothing_left(name);
}

// ------------------------------------------------------------ Heap

// A victim killed inside allocate()/deallocate() holding the heap's lock:
// the next locker repairs the chain (owner_deaths_recovered), check() passes,
// the survivor's objects are intact, and allocation works on.
void heap(Point point) {
  const std::string name = unique_name("fi_heap");
  Heap h = Heap::create(name, 64 * 1024);
  auto keep = h.allocate(200);
  std::memset(keep.bytes.data(), 0x77, 200);
  auto to_free = h.allocate(100);
  const std::string handle = to_free.handle.to_string();
  die_at(point, [&] {
    Heap mine = Heap::attach(name);
    if (point == Point::heap_free_marked) {
      mine.deallocate(HeapHandle::parse(handle));
    } else {
      (void)mine.allocate(300);
    }
  });
  Stopwatch sw;
  auto next = h.allocate(64);  // takes the lock: repairs after the dead owner
  EXPECT_LT(sw.ms(), 5000);
  EXPECT_EQ(h.stats().owner_deaths_recovered, 1u);
  EXPECT_NO_THROW(h.check());
  const auto kept = h.resolve(keep.handle);
  EXPECT_TRUE(
      std::all_of(kept.begin(), kept.begin() + 200, [](std::byte c) { return c == std::byte{0x77}; }));
  if (point == Point::heap_free_marked) {
    EXPECT_THROW((void)h.resolve(to_free.handle), std::invalid_argument) << "the free was committed";
  } else {
    EXPECT_NO_THROW((void)h.resolve(to_free.handle));
  }
  // Objects never overlap: the new one is outside the kept one.
  const auto* kb = kept.data();
  EXPECT_TRUE(next.bytes.data() >= kb + kept.size() || next.bytes.data() + next.bytes.size() <= kb);
  h.unlink();
  expect_nothing_left(name);
}

// ------------------------------------------------------------ queues

struct Msg {
  std::uint64_t seq;
  std::uint64_t check;  // ~seq
};
Msg msg(std::uint64_t i) { return Msg{i, ~i}; }

// SPSC: a producer killed before publishing (its mark) loses only its
// unpublished item; one killed after the mark but before advancing tail has
// committed it, and the next producer steps over it; a consumer killed
// before advancing head has consumed nothing: the next consumer gets every
// committed item exactly once, in order.
void spsc(Point point) {
  const std::string name = unique_name("fi_spsc");
  auto q = SpscQueue<Msg>::create(name, 16);
  for (std::uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(q.try_push(msg(i)));
  const bool pushing = point == Point::spsc_push_written || point == Point::spsc_push_marked;
  if (pushing) {
    die_at(point, [&] { (void)SpscQueue<Msg>::attach(name).try_push(msg(10)); });
  } else {
    die_at(point, [&] {
      Msg m{};
      (void)SpscQueue<Msg>::attach(name).try_pop(m);
    });
  }
  const std::uint64_t committed = point == Point::spsc_push_marked ? 11 : 10;
  if (point == Point::spsc_push_marked) {
    // The victim died between its mark and its tail store: tail still says
    // 10, and producer_index() counts the marked item.
    auto raw = SharedMemory::attach(name);
    const auto* ctl =
        reinterpret_cast<const SpscControl*>(static_cast<const std::byte*>(raw.data()) + BlockHeader::kSize);
    EXPECT_EQ(ctl->tail.load(), 10u);
    EXPECT_EQ(q.producer_index(), 11u);
    EXPECT_EQ(q.size(), 11u);
  }
  for (std::uint64_t i = 0; i < committed; ++i) {
    Msg m{};
    ASSERT_TRUE(q.pop_for(m, 1s)) << "committed item " << i << " lost";
    EXPECT_EQ(m.seq, i);
    EXPECT_EQ(m.check, ~i);
  }
  EXPECT_TRUE(q.empty()) << q.size();  // head may be past the raw tail now
  Msg m{};
  Stopwatch sw;
  EXPECT_FALSE(q.pop_for(m, 50ms)) << "an unpublished item became visible";
  EXPECT_LT(sw.ms(), 5000);
  ASSERT_TRUE(q.try_push(msg(99)));  // the next producer continues after the last committed item
  EXPECT_EQ(q.producer_index(), committed + 1);
  ASSERT_TRUE(q.try_pop(m));
  EXPECT_EQ(m.seq, 99u);
  EXPECT_FALSE(q.try_pop(m));
  q.unlink();
  expect_nothing_left(name);
}

// MPMC: a claimant killed between its claim (recorded or not yet: the
// *_won points) and its publish/release no longer stalls the queue. A
// survivor that waits steps over the dead claim within a bounded time and
// the queue counts exactly that one loss; everything committed is delivered
// once, in order.
void mpmc(Point point) {
  const std::string name = unique_name("fi_mpmc");
  auto q = MpmcQueue<Msg>::create(name, 16);
  for (std::uint64_t i = 0; i < 5; ++i) ASSERT_TRUE(q.try_push(msg(i)));
  if (point == Point::mpmc_push_claimed || point == Point::mpmc_push_won) {
    die_at(point, [&] { (void)MpmcQueue<Msg>::attach(name).try_push(msg(5)); });
    for (std::uint64_t i = 6; i < 9; ++i) ASSERT_TRUE(q.try_push(msg(i)));
    Stopwatch sw;
    for (std::uint64_t i : {0, 1, 2, 3, 4, 6, 7, 8}) {
      Msg m{};
      ASSERT_TRUE(q.pop_for(m, 10s)) << "item " << i << " stranded behind a dead producer's claim";
      EXPECT_EQ(m.seq, i);
      EXPECT_EQ(m.check, ~i);
    }
    EXPECT_LT(sw.ms(), 5000) << "stepping over the dead claim took too long";
    EXPECT_EQ(q.losses(), (MpmcLosses{1, 0})) << "the dead producer's claim is reported once";
  } else {
    die_at(point, [&] {
      Msg m{};
      (void)MpmcQueue<Msg>::attach(name).try_pop(m);
    });
    for (std::uint64_t i = 1; i < 5; ++i) {  // item 0 died with its consumer
      Msg m{};
      ASSERT_TRUE(q.pop_for(m, 1s));
      EXPECT_EQ(m.seq, i);
      EXPECT_EQ(m.check, ~i);
    }
    // A full lap of pushes reaches the dead consumer's slot: the timed push
    // there hands it on instead of finding the queue full forever.
    Stopwatch sw;
    for (std::uint64_t i = 10; i < 10 + q.capacity(); ++i) {
      ASSERT_TRUE(q.push_for(msg(i), 10s)) << "push " << i << " blocked by a dead consumer's slot";
    }
    EXPECT_LT(sw.ms(), 5000);
    for (std::uint64_t i = 10; i < 10 + q.capacity(); ++i) {
      Msg m{};
      ASSERT_TRUE(q.pop_for(m, 1s));
      EXPECT_EQ(m.seq, i);
      EXPECT_EQ(m.check, ~i);
    }
    EXPECT_EQ(q.losses(), (MpmcLosses{0, 1})) << "the dead consumer's item is reported once";
  }
  Msg m{};
  EXPECT_FALSE(q.pop_for(m, 50ms));
  q.unlink();
  expect_nothing_left(name);
}

// ------------------------------------------------------------ stranded sleepers

// Whether `pid` is asleep in the kernel (state S): past its spin, in a futex
// wait. A sleeper that is only spinning is R.
bool asleep(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'S';
}

// A sleeper child blocked in an untimed call; a victim publishes what it
// waits for and is killed before its wake. The sleeper must return (it
// re-checks after each bounded slice) well inside the bound.
void sleeper_not_stranded(Point point, const std::function<int()>& sleeper,
                          const std::function<void()>& victim) {
  const pid_t child = fork_child(sleeper);
  ASSERT_TRUE(eventually([&] { return asleep(child); }, 10s, 1ms)) << "the sleeper never slept";
  die_at(point, victim);
  Stopwatch sw;
  const ExitStatus st = wait_child(child, 10s);
  EXPECT_FALSE(st.timed_out) << "the sleeper was stranded by a notifier killed at " << point_name(point);
  EXPECT_TRUE(st.ok()) << st.describe();
  EXPECT_LT(sw.ms(), 5000);
}

// Consumer asleep in pop() on an empty queue; the victim's push publishes.
// ByteQueue: a producer killed before publishing loses only its message
// (stepped over once, counted); one killed after publishing loses nothing; a
// consumer killed holding a message loses only that one. The survivors get
// every other message intact, and the ring turns laps afterwards.
void byteq(Point point) {
  const std::string name = unique_name("fi_byteq");
  auto q = ByteQueue::create(name, 4096);
  auto message = [](std::uint64_t i) { return std::string(100 + i, static_cast<char>('a' + i)); };
  for (std::uint64_t i = 0; i < 3; ++i) ASSERT_TRUE(q.try_push(message(i)));
  const bool pushing = point == Point::byteq_push_won || point == Point::byteq_push_written ||
                       point == Point::byteq_push_published;
  if (pushing) {
    die_at(point, [&] { (void)ByteQueue::attach(name).try_push(message(3)); });
  } else {
    die_at(point, [&] {
      ByteMessage m;
      (void)ByteQueue::attach(name).try_pop(m);
    });
  }
  const bool lost = point != Point::byteq_push_published && point != Point::byteq_pop_released;
  std::vector<std::uint64_t> expect;
  for (std::uint64_t i = pushing ? 0 : 1; i < 3; ++i) expect.push_back(i);
  if (pushing && !lost) expect.push_back(3);
  for (std::uint64_t i : expect) {
    ByteMessage m;
    ASSERT_TRUE(q.pop_for(m, 10s)) << "message " << i << " stranded";
    EXPECT_EQ(m.view(), message(i));
  }
  if (lost && pushing) {
    ASSERT_TRUE(eventually([&] {
      (void)q.unblock();
      return q.losses().producer_claims_skipped == 1;
    }));
  }
  ByteMessage m;
  EXPECT_FALSE(q.pop_for(m, 100ms));
  for (std::uint64_t i = 0; i < 40; ++i) {
    const std::string text = message(i % 20);
    ASSERT_TRUE(q.push_for(std::as_bytes(std::span(text)), 5s)) << "wedged at " << i;
    ASSERT_TRUE(q.pop_for(m, 5s));
    EXPECT_EQ(m.view(), message(i % 20));
  }
  const auto l = q.losses();
  EXPECT_EQ(l.producer_claims_skipped + l.consumer_claims_released, lost ? 1u : 0u);
  q.unlink();
  expect_nothing_left(name);
}

// A survivor that saw a dead consumer's claim dies before taking it over:
// the next survivor releases the record (the dead consumer's message is the
// one lost, counted once) and the ring turns laps afterwards.
void byteq_unblock_seen() {
  const std::string name = unique_name("fi_byteq_ub");
  auto q = ByteQueue::create(name, 4096);  // 64 cells; these messages take 2
  auto message = [](std::uint64_t i) { return std::string(100 + i % 10, static_cast<char>('a' + i % 26)); };
  for (std::uint64_t i = 0; i < 3; ++i) ASSERT_TRUE(q.try_push(message(i)));
  die_at(Point::byteq_pop_copied, [&] {  // a consumer dies holding message 0
    ByteMessage m;
    (void)ByteQueue::attach(name).try_pop(m);
  });
  ByteMessage m;
  for (std::uint64_t i = 1; i < 3; ++i) {
    ASSERT_TRUE(q.try_pop(m));
    EXPECT_EQ(m.view(), message(i));
  }
  // Round the ring to the dead consumer's cells (a producer finds them
  // there only a lap later), then a survivor dies having seen its claim.
  std::uint64_t filled = 3;
  while (q.try_push(message(filled))) ++filled;
  die_at(Point::byteq_unblock_seen, [&] { (void)ByteQueue::attach(name).unblock(); });
  EXPECT_EQ(q.unblock(), ByteUnblock::released_consumer);
  for (std::uint64_t i = 3; i < filled; ++i) {
    ASSERT_TRUE(q.pop_for(m, 5s)) << "message " << i << " stranded";
    EXPECT_EQ(m.view(), message(i));
  }
  for (std::uint64_t i = 0; i < 100; ++i) {
    const std::string text = message(i);
    ASSERT_TRUE(q.push_for(std::as_bytes(std::span(text)), 5s)) << "wedged at " << i;
    ASSERT_TRUE(q.pop_for(m, 5s));
    EXPECT_EQ(m.view(), message(i));
  }
  EXPECT_EQ(q.losses(), (ByteQueueLosses{0, 1, 0}));
  q.unlink();
  expect_nothing_left(name);
}

void mpmc_push_published() {
  const std::string name = unique_name("fi_mpmc_pub");
  auto q = MpmcQueue<Msg>::create(name, 16);
  sleeper_not_stranded(
      Point::mpmc_push_published,
      [&] {
        const Msg m = MpmcQueue<Msg>::attach(name).pop();
        return m.seq == 7 && m.check == ~std::uint64_t{7} ? 0 : 3;
      },
      [&] { (void)MpmcQueue<Msg>::attach(name).try_push(msg(7)); });
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.losses(), MpmcLosses{});
  q.unlink();
  expect_nothing_left(name);
}

// Producer asleep in push() on a full queue; the victim's pop frees a slot.
void mpmc_pop_released() {
  const std::string name = unique_name("fi_mpmc_rel");
  auto q = MpmcQueue<Msg>::create(name, 16);
  for (std::uint64_t i = 0; i < 16; ++i) ASSERT_TRUE(q.try_push(msg(i)));
  sleeper_not_stranded(
      Point::mpmc_pop_released,
      [&] {
        MpmcQueue<Msg>::attach(name).push(msg(99));
        return 0;
      },
      [&] {
        Msg m{};
        (void)MpmcQueue<Msg>::attach(name).try_pop(m);
      });
  for (std::uint64_t i = 1; i <= 16; ++i) {  // item 0 was popped (committed) by the victim
    Msg m{};
    ASSERT_TRUE(q.try_pop(m));
    EXPECT_EQ(m.seq, i == 16 ? 99 : i);
  }
  EXPECT_EQ(q.losses(), MpmcLosses{});
  q.unlink();
  expect_nothing_left(name);
}

// SPSC: the consumer asleep in pop() / the producer asleep in push(); the
// victim (a replacement on the other side) publishes / frees a slot.
void spsc_sleeper(Point point) {
  const std::string name = unique_name("fi_spsc_wake");
  auto q = SpscQueue<Msg>::create(name, 16);
  if (point == Point::spsc_push_published) {
    sleeper_not_stranded(
        point,
        [&] {
          const Msg m = SpscQueue<Msg>::attach(name).pop();
          return m.seq == 5 && m.check == ~std::uint64_t{5} ? 0 : 3;
        },
        [&] { (void)SpscQueue<Msg>::attach(name).try_push(msg(5)); });
    EXPECT_TRUE(q.empty());
  } else {
    for (std::uint64_t i = 0; i < 16; ++i) ASSERT_TRUE(q.try_push(msg(i)));
    sleeper_not_stranded(
        point,
        [&] {
          SpscQueue<Msg>::attach(name).push(msg(99));
          return 0;
        },
        [&] {
          Msg m{};
          (void)SpscQueue<Msg>::attach(name).try_pop(m);
        });
    for (std::uint64_t i = 1; i <= 16; ++i) {
      Msg m{};
      ASSERT_TRUE(q.try_pop(m));
      EXPECT_EQ(m.seq, i == 16 ? 99 : i);
    }
  }
  q.unlink();
  expect_nothing_left(name);
}

// A reader asleep in read_for() (a long timeout: it must return with the
// item long before it); the victim writer publishes.
void broadcast_published() {
  const std::string name = unique_name("fi_ring_pub");
  auto ring = BroadcastRing<Msg>::create(name, 16);
  sleeper_not_stranded(
      Point::broadcast_published,
      [&] {
        auto mine = BroadcastRing<Msg>::attach(name);
        auto r = mine.reader();
        Msg m{};
        const BroadcastResult res = r.read_for(m, 60s);
        return res.status == BroadcastStatus::ok && m.seq == 3 ? 0 : 3;
      },
      [&] { BroadcastRing<Msg>::attach(name).push(msg(3)); });
  EXPECT_EQ(ring.write_index(), 1u);
  ring.unlink();
  expect_nothing_left(name);
}

// A reader asleep in read() behind a dead writer's odd sequence; the
// repairing writer (the victim) stores and dies before its wake.
void seqlock_stored() {
  const std::string name = unique_name("fi_seqlock");
  auto sl = SeqLock<Msg>::create(name, msg(1));
  {
    // A writer killed mid-store, without a kill point: the sequence odd.
    auto raw = SharedMemory::attach(name);
    auto* ctl = reinterpret_cast<SeqLockControl*>(static_cast<std::byte*>(raw.data()) + BlockHeader::kSize);
    ctl->seq.fetch_or(1);
  }
  Msg stale{};
  ASSERT_FALSE(sl.try_read(stale));
  sleeper_not_stranded(
      Point::seqlock_stored,
      [&] {
        const Msg m = SeqLock<Msg>::attach(name).read();
        return m.seq == 2 && m.check == ~std::uint64_t{2} ? 0 : 3;
      },
      [&] { SeqLock<Msg>::attach(name).store(msg(2)); });
  Msg now{};
  ASSERT_TRUE(sl.try_read(now));
  EXPECT_EQ(now.seq, 2u);
  sl.unlink();
  expect_nothing_left(name);
}

// ------------------------------------------------------------ manager

// The manager's server killed while creating a block for a client: the
// client's call fails within its timeout (never hangs), and the server's
// tracker watcher unlinks what it made. The death must be the armed one:
// the server made its block (both points lie right after that create: an
// inotify watch on /dev/shm sees the name appear) and then died of SIGKILL
// (its wait status, peeked with WNOWAIT so that shutdown() still reaps it).
// Any other death (a crash, an abort, an exit, a kill before the create)
// fails the scenario.
void manager(Point point) {
  SharedMemoryManager::Options o;
  o.timeout = 3s;
  o.name_prefix = unique_name("fi_mgr") + "_";
  SharedMemoryManager mgr("@" + unique_name("fi_sock"), "fault-key", o);
  fault::arm(point);  // the server is forked from here and inherits it
  mgr.start();
  fault::disarm();  // this process never runs server code, but be exact
  const pid_t server = mgr.server_pid();
  const int watch_fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  ASSERT_GE(watch_fd, 0) << "inotify_init1: " << std::strerror(errno);
  ASSERT_GE(::inotify_add_watch(watch_fd, "/dev/shm", IN_CREATE | IN_MOVED_TO), 0)
      << "inotify_add_watch: " << std::strerror(errno);
  Stopwatch sw;
  EXPECT_THROW((void)mgr.create_shared_memory(4096), std::system_error);
  EXPECT_LT(sw.ms(), 6000);
  // The client sees the connection close while the server is still
  // exiting: wait for it to become a zombie, without reaping it.
  siginfo_t info{};
  const bool ended = eventually(
      [&] {
        info = siginfo_t{};
        return ::waitid(P_PID, static_cast<id_t>(server), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
               info.si_pid == server;
      },
      5s, 1ms);
  EXPECT_TRUE(ended) << "the server did not die at " << point_name(point);
  if (ended) {
    EXPECT_TRUE(info.si_code == CLD_KILLED && info.si_status == SIGKILL)
        << "the server died, but not of the armed SIGKILL at " << point_name(point) << ": si_code "
        << info.si_code << ", status " << info.si_status << " (" << strsignal(info.si_status) << ")";
  }
  bool created = false;
  alignas(inotify_event) char buf[4096];
  for (ssize_t n; (n = ::read(watch_fd, buf, sizeof buf)) > 0;) {
    for (ssize_t at = 0; at < n;) {
      const auto* e = reinterpret_cast<const inotify_event*>(buf + at);
      if (e->len > 0 && std::string(e->name).starts_with(o.name_prefix)) created = true;
      at += static_cast<ssize_t>(sizeof(inotify_event) + e->len);
    }
  }
  ::close(watch_fd);
  EXPECT_TRUE(created) << "the server died before creating its block: not at " << point_name(point);
  EXPECT_THROW(mgr.shutdown(), std::system_error);
  expect_nothing_left(o.name_prefix);
}

// ------------------------------------------------------------ the walk

const std::map<Point, std::function<void()>>& scenarios() {
  static const std::map<Point, std::function<void()>> table = {
      {Point::create_registered, [] { tracked_create(Point::create_registered); }},
      {Point::create_opened,
       [] {
         tracked_create(Point::create_opened);
         untracked_typed_create(Point::create_opened);
       }},
      {Point::create_sized,
       [] {
         tracked_create(Point::create_sized);
         untracked_typed_create(Point::create_sized);
       }},
      {Point::create_published, [] { tracked_create(Point::create_published); }},
      {Point::attach_opened, [] { attach(Point::attach_opened); }},
      {Point::attach_mapped, [] { attach(Point::attach_mapped); }},
      {Point::unlink_removed, [] { unlink_removed(); }},
      {Point::typed_initialising,
       [] {
         tracked_typed_create();
         untracked_typed_create(Point::typed_initialising);
       }},
      {Point::registry_writing, [] { registry_writing(); }},
      {Point::object_locked, [] { value_store(Point::object_locked); }},
      {Point::object_written, [] { value_store(Point::object_written); }},
      {Point::list_set_data, [] { list_set(Point::list_set_data); }},
      {Point::list_set_format, [] { list_set(Point::list_set_format); }},
      {Point::heap_alloc_split, [] { heap(Point::heap_alloc_split); }},
      {Point::heap_alloc_committed, [] { heap(Point::heap_alloc_committed); }},
      {Point::heap_free_marked, [] { heap(Point::heap_free_marked); }},
      {Point::spsc_push_written, [] { spsc(Point::spsc_push_written); }},
      {Point::spsc_pop_copied, [] { spsc(Point::spsc_pop_copied); }},
      {Point::spsc_push_marked, [] { spsc(Point::spsc_push_marked); }},
      {Point::mpmc_push_claimed, [] { mpmc(Point::mpmc_push_claimed); }},
      {Point::mpmc_pop_claimed, [] { mpmc(Point::mpmc_pop_claimed); }},
      {Point::mpmc_push_won, [] { mpmc(Point::mpmc_push_won); }},
      {Point::mpmc_pop_won, [] { mpmc(Point::mpmc_pop_won); }},
      {Point::mpmc_push_published, [] { mpmc_push_published(); }},
      {Point::mpmc_pop_released, [] { mpmc_pop_released(); }},
      {Point::broadcast_published, [] { broadcast_published(); }},
      {Point::seqlock_stored, [] { seqlock_stored(); }},
      {Point::spsc_push_published, [] { spsc_sleeper(Point::spsc_push_published); }},
      {Point::spsc_pop_released, [] { spsc_sleeper(Point::spsc_pop_released); }},
      {Point::manager_created, [] { manager(Point::manager_created); }},
      {Point::manager_recorded, [] { manager(Point::manager_recorded); }},
      {Point::byteq_push_won, [] { byteq(Point::byteq_push_won); }},
      {Point::byteq_push_written, [] { byteq(Point::byteq_push_written); }},
      {Point::byteq_push_published, [] { byteq(Point::byteq_push_published); }},
      {Point::byteq_pop_won, [] { byteq(Point::byteq_pop_won); }},
      {Point::byteq_pop_copied, [] { byteq(Point::byteq_pop_copied); }},
      {Point::byteq_pop_released, [] { byteq(Point::byteq_pop_released); }},
      {Point::byteq_unblock_seen, [] { byteq_unblock_seen(); }},
  };
  return table;
}

TEST(FaultInjection, EveryPointHasAScenario) {
  ASSERT_EQ(fault::points().size(), fault::kPointCount - 1);
  for (const auto& info : fault::points()) {
    EXPECT_TRUE(scenarios().count(info.point)) << "no scenario kills at " << info.name;
    EXPECT_EQ(fault::point_named(info.name), info.point);
  }
}

TEST(FaultInjection, ArmedPointsCountPassesAndOnlyTheNthKills) {
  // Two tracked creates pass create_opened twice; armed for the 2nd, the
  // victim survives the first (its block exists) and dies in the second.
  const std::string first = unique_name("fi_nth_a");
  const std::string second = unique_name("fi_nth_b");
  die_at(
      Point::create_opened,
      [&] {
        const auto before = fault::hits(Point::create_opened);
        auto a = SharedMemory::create(first, 64, tracked());
        if (fault::hits(Point::create_opened) != before + 1) ::_exit(3);
        (void)SharedMemory::create(second, 64, tracked());
      },
      2);
  expect_nothing_left(first);
  expect_nothing_left(second);
}

class FaultPoint : public testing::TestWithParam<fault::PointInfo> {};

TEST_P(FaultPoint, KillHereThenSurvivorsCheckAndNothingIsLeft) {
  const auto& info = GetParam();
  SCOPED_TRACE(std::string(info.name) + ": " + std::string(info.state));
  auto it = scenarios().find(info.point);
  ASSERT_NE(it, scenarios().end()) << "no scenario for " << info.name;
  it->second();
}

INSTANTIATE_TEST_SUITE_P(Walk, FaultPoint, testing::ValuesIn(fault::points().begin(), fault::points().end()),
                         [](const testing::TestParamInfo<fault::PointInfo>& p) {
                           return std::string(p.param.name);
                         });

}  // namespace
}  // namespace shmkit::test
