// MpmcQueue with a claimant that is stopped, not killed: "a stalled peer is
// alive". For every numbered step of push and pop (the mpmc_* fault points)
// a victim process SIGSTOPs itself there (fault::Action::stop) and stays
// stopped for longer than any grace a survivor ever allowed, while the
// survivor pops and pushes around it; then it gets SIGCONT and finishes its
// own call. The same walk runs with SIGKILL at each step. Checked each time:
//   * nothing committed is lost or delivered twice: every item whose push
//     returned true is popped exactly once (by the survivor or the victim),
//     except the one a killed victim held;
//   * a live (stopped) claimant is never stepped over: the loss counters
//     stay 0 for a stop, and count exactly the one dead claim for a kill;
//   * nothing is wedged afterwards: a full lap of timed pushes and pops on
//     the empty queue goes through.
// And the case of two stopped producers, one resuming late over the slot
// the other now owns (a late claimant must never overwrite a live peer's
// claim). Every wait is on an observed state (the victim stopped, asleep,
// exited); no assertion is about time. Links shmkit_fault (the points
// compiled in).
#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <map>
#include <ostream>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "fault_support.hpp"
#include "shmkit/detail/fault.hpp"
#include "shmkit/lockfree/mpmc_queue.hpp"
#include "shmkit/shared_memory.hpp"
#include "test_lockfree_common.hpp"

namespace shmkit {
// Failure messages show the counters by name.
void PrintTo(const MpmcLosses& l, std::ostream* os) {
  *os << "{producer_claims_skipped " << l.producer_claims_skipped << ", consumer_claims_released "
      << l.consumer_claims_released << "}";
}
}  // namespace shmkit

namespace shmkit::test {
namespace {

using namespace std::chrono_literals;
using fault::Action;
using fault::Point;

// Longer than any grace an MpmcQueue survivor ever gave an unrecorded claim
// (500 ms) before stepping over it.
constexpr auto kPastGrace = 1200ms;
constexpr std::uint64_t kCap = 4;

std::uint64_t item(std::uint64_t origin, std::uint64_t seq) { return origin << 32 | seq; }
constexpr std::uint64_t kParent = 1, kVictim = 2, kSecond = 3;

bool stopped(pid_t pid) { return task_state(pid) == 'T'; }
bool asleep(pid_t pid) { return task_state(pid) == 'S'; }

// What a victim's call returned (written by the victim before it exits).
struct Report {
  std::atomic<int> calling;          // 1: about to call
  std::atomic<int> done;             // 1: the call returned
  std::atomic<int> ok;               // its result
  std::atomic<std::uint64_t> value;  // the item popped
};
struct Reports {
  Report first, second;
};

// How often each item was delivered, and the survivor's own pops in order.
struct Ledger {
  std::map<std::uint64_t, int> seen;
  std::vector<std::uint64_t> parent_order;
  void take(std::uint64_t v, bool by_parent = true) {
    ++seen[v];
    if (by_parent) parent_order.push_back(v);
  }
  int count(std::uint64_t v) const {
    auto it = seen.find(v);
    return it == seen.end() ? 0 : it->second;
  }
  // Pops until a timed pop finds nothing for `wait`.
  void drain(MpmcQueue<std::uint64_t>& q, std::chrono::milliseconds wait) {
    std::uint64_t v = 0;
    while (q.pop_for(v, wait)) take(v);
  }
};

// After everything: the queue is empty and a full lap of timed pushes and
// pops goes through (nothing is left wedged), in order, with no new loss.
void expect_not_wedged(MpmcQueue<std::uint64_t>& q) {
  const MpmcLosses before = q.losses();
  std::uint64_t v = 0;
  EXPECT_FALSE(q.try_pop(v)) << "an item appeared after the drain: " << std::hex << v;
  for (std::uint64_t round = 0; round < 3; ++round) {
    for (std::uint64_t i = 0; i < q.capacity(); ++i) {
      ASSERT_TRUE(q.push_for(item(9, round * 100 + i), 2s)) << "the empty queue is wedged: push " << i;
    }
    for (std::uint64_t i = 0; i < q.capacity(); ++i) {
      ASSERT_TRUE(q.pop_for(v, 2s)) << "the queue is wedged: pop " << i;
      EXPECT_EQ(v, item(9, round * 100 + i));
    }
  }
  EXPECT_FALSE(q.try_pop(v));
  EXPECT_EQ(q.losses(), before);
}

// The survivor's per-origin order is FIFO (each origin is one producer).
void expect_fifo(const Ledger& l) {
  std::map<std::uint64_t, std::int64_t> last;
  for (std::uint64_t v : l.parent_order) {
    const std::uint64_t origin = v >> 32;
    const auto seq = static_cast<std::int64_t>(v & 0xffffffffu);
    auto [it, fresh] = last.try_emplace(origin, -1);
    EXPECT_GT(seq, it->second) << "origin " << origin << " out of order";
    it->second = seq;
  }
}

struct WalkCase {
  Point point;
  Action action;
};
void PrintTo(const WalkCase& c, std::ostream* os) {
  *os << point_name(c.point) << (c.action == Action::stop ? " stop" : " kill");
}
bool is_push_point(Point p) {
  return p == Point::mpmc_push_won || p == Point::mpmc_push_claimed || p == Point::mpmc_push_published;
}
// Whether a victim stopped/killed at `p` still holds its claim (not yet
// published/released).
bool holds_claim(Point p) { return p != Point::mpmc_push_published && p != Point::mpmc_pop_released; }

// Brings the victim to its point: stopped there (stop) or dead there (kill).
void reach_point(Victim& v, const WalkCase& c) {
  if (c.action == Action::stop) {
    ASSERT_TRUE(eventually([&] { return stopped(v.pid) || task_state(v.pid) == 'Z'; }, 20s, 1ms))
        << "the victim never reached " << point_name(c.point);
    ASSERT_TRUE(stopped(v.pid)) << "the victim exited without stopping at " << point_name(c.point);
  } else {
    const ExitStatus st = v.wait();
    ASSERT_EQ(st.signal, SIGKILL) << "the victim did not die at " << point_name(c.point) << ": "
                                  << st.describe();
  }
}

// A producer stopped (or killed) at a step of try_push; the survivor pops
// past its slot and pushes a lap round onto it, each for longer than any
// grace; then the victim resumes and finishes.
void producer_stalled_or_killed(const WalkCase& c) {
  const std::string name = unique_name("stop_p");
  Unlinker u{name};
  auto q = MpmcQueue<std::uint64_t>::create(name, kCap);
  Shared<Reports> r;
  std::vector<std::uint64_t> to_push;
  for (std::uint64_t i = 0; i < kCap + 2; ++i) to_push.push_back(item(kParent, i));
  std::size_t pushed = 0;
  ASSERT_TRUE(q.try_push(to_push[pushed++]));

  Victim v([&] {
    auto mine = MpmcQueue<std::uint64_t>::attach(name);
    fault::arm(c.point, 1, c.action);
    r->first.ok.store(mine.try_push(item(kVictim, 0)) ? 1 : 0);
    r->first.done.store(1);
    return 0;
  });
  reach_point(v, c);
  if (testing::Test::HasFatalFailure()) return;

  // Survivor, past any grace: a consumer, then a producer a lap round.
  Ledger l;
  l.drain(q, kPastGrace);
  while (pushed < to_push.size() && q.push_for(to_push[pushed], kPastGrace)) ++pushed;
  if (c.action == Action::stop) {
    EXPECT_EQ(r->first.done.load(), 0);
    EXPECT_TRUE(stopped(v.pid)) << "the victim is no longer stopped";
    EXPECT_EQ(q.losses(), MpmcLosses{}) << "a live, stopped producer's claim was stepped over";
    v.resume();
    const ExitStatus st = v.wait();
    ASSERT_TRUE(st.ok()) << st.describe();
    ASSERT_EQ(r->first.done.load(), 1);
  }
  l.drain(q, 1s);
  while (pushed < to_push.size()) {
    ASSERT_TRUE(q.push_for(to_push[pushed++], 5s)) << "push after the victim resumed or died";
    l.drain(q, 1s);
  }

  for (std::uint64_t x : to_push) EXPECT_EQ(l.count(x), 1) << "parent item " << (x & 0xffff);
  const std::uint64_t victims = item(kVictim, 0);
  if (c.action == Action::stop) {
    // Its push either went through (then delivered once) or reported
    // failure (then never delivered): never "pushed" and lost.
    EXPECT_EQ(l.count(victims), r->first.ok.load()) << "pushed: " << r->first.ok.load();
    EXPECT_EQ(r->first.ok.load(), 1) << "a stalled producer's claim should wait for it";
    EXPECT_EQ(q.losses(), MpmcLosses{});
  } else if (holds_claim(c.point)) {
    EXPECT_EQ(l.count(victims), 0);  // died before publishing
    EXPECT_EQ(q.losses(), (MpmcLosses{1, 0})) << "the dead producer's claim is reported once";
  } else {
    EXPECT_EQ(l.count(victims), 1);  // published before it died
    EXPECT_EQ(q.losses(), MpmcLosses{});
  }
  EXPECT_EQ(l.seen.size(), to_push.size() + static_cast<std::size_t>(l.count(victims) != 0));
  expect_fifo(l);
  expect_not_wedged(q);
}

// A consumer stopped (or killed) at a step of try_pop with the oldest item
// claimed; the survivor pops the rest and pushes a lap round onto the
// victim's slot, each for longer than any grace; then the victim resumes.
void consumer_stalled_or_killed(const WalkCase& c) {
  const std::string name = unique_name("stop_c");
  Unlinker u{name};
  auto q = MpmcQueue<std::uint64_t>::create(name, kCap);
  Shared<Reports> r;
  std::vector<std::uint64_t> to_push;
  for (std::uint64_t i = 0; i < kCap + 3; ++i) to_push.push_back(item(kParent, i));
  std::size_t pushed = 0;
  ASSERT_TRUE(q.try_push(to_push[pushed++]));
  ASSERT_TRUE(q.try_push(to_push[pushed++]));

  Victim v([&] {
    auto mine = MpmcQueue<std::uint64_t>::attach(name);
    fault::arm(c.point, 1, c.action);
    std::uint64_t x = 0;
    const bool ok = mine.try_pop(x);
    r->first.value.store(x);
    r->first.ok.store(ok ? 1 : 0);
    r->first.done.store(1);
    return 0;
  });
  reach_point(v, c);
  if (testing::Test::HasFatalFailure()) return;

  Ledger l;
  l.drain(q, kPastGrace);
  while (pushed < to_push.size() && q.push_for(to_push[pushed], kPastGrace)) ++pushed;
  if (c.action == Action::stop) {
    EXPECT_EQ(r->first.done.load(), 0);
    EXPECT_TRUE(stopped(v.pid)) << "the victim is no longer stopped";
    EXPECT_EQ(q.losses(), MpmcLosses{}) << "a live, stopped consumer's claim was released";
    v.resume();
    const ExitStatus st = v.wait();
    ASSERT_TRUE(st.ok()) << st.describe();
    ASSERT_EQ(r->first.done.load(), 1);
    if (r->first.ok.load() != 0) l.take(r->first.value.load(), false);
  }
  l.drain(q, 1s);
  while (pushed < to_push.size()) {
    ASSERT_TRUE(q.push_for(to_push[pushed++], 5s)) << "push after the victim resumed or died";
    l.drain(q, 1s);
  }

  const std::uint64_t claimed = to_push[0];  // the item the victim claimed
  if (c.action == Action::stop) {
    EXPECT_EQ(r->first.ok.load(), 1);
    EXPECT_EQ(r->first.value.load(), claimed) << "the resumed consumer took another item than its claim";
    for (std::uint64_t x : to_push) EXPECT_EQ(l.count(x), 1) << "item " << (x & 0xffff);
    EXPECT_EQ(q.losses(), MpmcLosses{});
  } else {
    EXPECT_EQ(l.count(claimed), 0);  // the victim had it (popped, or died with it)
    for (std::size_t i = 1; i < to_push.size(); ++i) EXPECT_EQ(l.count(to_push[i]), 1) << "item " << i;
    EXPECT_EQ(q.losses(), (MpmcLosses{0, holds_claim(c.point) ? 1u : 0u}));
  }
  EXPECT_EQ(l.seen.size(), to_push.size() - (c.action == Action::kill ? 1 : 0));
  expect_fifo(l);
  expect_not_wedged(q);
}

class MpmcStep : public testing::TestWithParam<WalkCase> {};

TEST_P(MpmcStep, StallOrDieHereThenSurvivorsCheck) {
  const WalkCase c = GetParam();
  if (is_push_point(c.point)) {
    producer_stalled_or_killed(c);
  } else {
    consumer_stalled_or_killed(c);
  }
}

std::vector<WalkCase> walk_cases() {
  std::vector<WalkCase> out;
  for (const auto& info : fault::points()) {
    if (!info.name.starts_with("mpmc_")) continue;
    out.push_back({info.point, Action::stop});
    out.push_back({info.point, Action::kill});
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Walk, MpmcStep, testing::ValuesIn(walk_cases()),
                         [](const testing::TestParamInfo<WalkCase>& p) {
                           return point_name(p.param.point) +
                                  (p.param.action == Action::stop ? "_stop" : "_kill");
                         });

TEST(MpmcStop, TheWalkCoversEveryMpmcStep) {
  // push: won, claimed, published; pop: won, claimed, released.
  EXPECT_EQ(walk_cases().size(), 12u);
}

// Two producers stopped over one slot. P stops inside its first claim; a
// survivor waits past any grace; the slot's next lap goes to Q, which stops
// inside its claim too. P resumes first: it must not overwrite Q's claim,
// and its own push either completes or fails cleanly. Then Q resumes. Every
// item whose push returned true is delivered once, nothing is counted lost
// (nobody died), and the queue is not wedged.
TEST(MpmcStop, LateProducerNeverOverwritesALiveClaim) {
  const std::string name = unique_name("stop_pq");
  Unlinker u{name};
  auto q = MpmcQueue<std::uint64_t>::create(name, 2);
  Shared<Reports> r;
  Ledger l;

  Victim p([&] {
    auto mine = MpmcQueue<std::uint64_t>::attach(name);
    fault::arm(Point::mpmc_push_won, 1, Action::stop);
    r->first.ok.store(mine.try_push(item(kVictim, 0)) ? 1 : 0);
    r->first.done.store(1);
    return 0;
  });
  ASSERT_TRUE(eventually([&] { return stopped(p.pid); }, 20s, 1ms)) << "P never stopped in its claim";
  l.drain(q, kPastGrace);  // a consumer waits past any grace
  ASSERT_TRUE(q.try_push(item(kParent, 0)));

  Victim second([&] {
    auto mine = MpmcQueue<std::uint64_t>::attach(name);
    fault::arm(Point::mpmc_push_claimed, 1, Action::stop);
    r->second.calling.store(1);
    r->second.ok.store(mine.push_for(item(kSecond, 0), 60s) ? 1 : 0);
    r->second.done.store(1);
    return 0;
  });
  // Q either holds the slot's next lap (stopped in its claim) or waits for
  // P's slot in its push (asleep).
  ASSERT_TRUE(
      eventually([&] { return stopped(second.pid) || (r->second.calling.load() == 1 && asleep(second.pid)); },
                 20s, 1ms));

  p.resume();
  const ExitStatus pst = p.wait();
  ASSERT_TRUE(pst.ok()) << pst.describe();
  l.drain(q, kPastGrace);
  // By now Q has claimed (once P's item was popped) and is stopped there.
  ASSERT_TRUE(eventually([&] { return stopped(second.pid); }, 20s, 1ms)) << "Q never stopped in its claim";
  EXPECT_EQ(q.losses(), MpmcLosses{}) << "a stopped producer's claim was stepped over";
  second.resume();
  const ExitStatus qst = second.wait();
  ASSERT_TRUE(qst.ok()) << qst.describe();
  l.drain(q, 1s);

  EXPECT_EQ(l.count(item(kParent, 0)), 1);
  EXPECT_EQ(l.count(item(kVictim, 0)), r->first.ok.load()) << "P's push returned " << r->first.ok.load();
  EXPECT_EQ(l.count(item(kSecond, 0)), r->second.ok.load()) << "Q's push returned " << r->second.ok.load();
  EXPECT_EQ(r->second.ok.load(), 1) << "Q's timed push gave up";
  EXPECT_EQ(q.losses(), MpmcLosses{}) << "nobody died, yet the queue reports losses";
  expect_not_wedged(q);
}

// A consumer stopped (or killed) while it steps over a dead producer's slot
// (its claim of a skipped slot): its late resumption loses nothing; its
// death is not counted as a lost item.
TEST(MpmcStop, ConsumerStalledOnADeadProducersSlot) {
  for (Action action : {Action::stop, Action::kill}) {
    SCOPED_TRACE(action == Action::stop ? "stop" : "kill");
    const std::string name = unique_name("stop_skip");
    Unlinker u{name};
    auto q = MpmcQueue<std::uint64_t>::create(name, kCap);
    Shared<Reports> r;
    {
      Victim dead([&] {
        auto mine = MpmcQueue<std::uint64_t>::attach(name);
        fault::arm(Point::mpmc_push_claimed);
        (void)mine.try_push(item(kVictim, 0));
        return 0;
      });
      ASSERT_EQ(dead.wait().signal, SIGKILL);
    }
    ASSERT_TRUE(q.try_push(item(kParent, 0)));
    ASSERT_TRUE(eventually([&] { return q.unblock() == MpmcUnblock::skipped_producer; }, 10s, 1ms));
    EXPECT_EQ(q.losses(), (MpmcLosses{1, 0}));

    Victim v([&] {
      auto mine = MpmcQueue<std::uint64_t>::attach(name);
      fault::arm(Point::mpmc_pop_won, 1, action);
      std::uint64_t x = 0;
      const bool ok = mine.try_pop(x);
      r->first.value.store(x);
      r->first.ok.store(ok ? 1 : 0);
      r->first.done.store(1);
      return 0;
    });
    if (action == Action::stop) {
      ASSERT_TRUE(eventually([&] { return stopped(v.pid); }, 20s, 1ms));
    } else {
      ASSERT_EQ(v.wait().signal, SIGKILL);
    }
    Ledger l;
    l.drain(q, kPastGrace);
    std::uint64_t next = 1;
    while (next <= kCap && q.push_for(item(kParent, next), kPastGrace)) ++next;
    if (action == Action::stop) {
      EXPECT_EQ(q.losses(), (MpmcLosses{1, 0}));
      v.resume();
      ASSERT_TRUE(v.wait().ok());
      if (r->first.ok.load() != 0) l.take(r->first.value.load(), false);
    }
    l.drain(q, 1s);
    for (; next <= kCap; ++next) {
      ASSERT_TRUE(q.push_for(item(kParent, next), 5s)) << next;
      l.drain(q, 1s);
    }
    for (std::uint64_t i = 0; i <= kCap; ++i) EXPECT_EQ(l.count(item(kParent, i)), 1) << i;
    EXPECT_EQ(l.count(item(kVictim, 0)), 0);
    EXPECT_EQ(q.losses(), (MpmcLosses{1, 0})) << "stepping over a skipped slot lost nothing more";
    expect_not_wedged(q);
  }
}

// The sole-claimant fast path (mpmc_queue.hpp): a process alone on its side
// claims with plain stores after recording a reservation (busy). A kill
// between that record and its claim store leaves the slot untouched and
// only the reservation naming the position; no fault point sits there, so
// the test writes that state itself for a real claimant: the child became
// the sole producer (consumer) with its first call, then stopped. While it
// lives the reserved position holds its side (a second claimant keeps off
// it, nothing is stepped over); once it is dead a survivor steps over it
// and counts it, as a dead claim.
MpmcControl& control_of(SharedMemory& raw) {
  return *reinterpret_cast<MpmcControl*>(static_cast<std::byte*>(raw.data()) + 128);
}

TEST(MpmcStop, SoleProducersReservationHeldWhileAliveSteppedOverWhenDead) {
  const std::string name = unique_name("stop_rp");
  Unlinker u{name};
  auto q = MpmcQueue<std::uint64_t>::create(name, kCap);
  Victim v([&] {
    auto mine = MpmcQueue<std::uint64_t>::attach(name);
    if (!mine.try_push(item(kVictim, 0))) return 3;  // the first producer: now the sole one
    ::raise(SIGSTOP);
    return 0;
  });
  ASSERT_TRUE(eventually([&] { return stopped(v.pid); }, 20s, 1ms));
  SharedMemory raw = SharedMemory::attach(name);
  MpmcControl& c = control_of(raw);
  ASSERT_NE(c.producer_owner.load() & (std::uint64_t{1} << 62), 0u)
      << "the victim did not become the sole producer";
  ASSERT_EQ(c.tail.load(), 1u);
  c.producer_busy.store(2);  // reserved position 1, its slot untouched

  Ledger l;
  l.drain(q, 100ms);
  EXPECT_EQ(l.count(item(kVictim, 0)), 1);
  EXPECT_EQ(q.unblock(), MpmcUnblock::none) << "a live claimant's reservation was stepped over";
  // A second producer keeps off the reserved position; consumers wait there.
  for (std::uint64_t i = 0; i + 1 < kCap; ++i) ASSERT_TRUE(q.push_for(item(kParent, i), 5s)) << i;
  std::uint64_t x = 0;
  EXPECT_FALSE(q.pop_for(x, kPastGrace)) << "popped past a live reservation: " << std::hex << x;
  EXPECT_EQ(q.losses(), MpmcLosses{});

  ::kill(v.pid, SIGKILL);
  ASSERT_EQ(v.wait().signal, SIGKILL);
  l.drain(q, 5s);
  for (std::uint64_t i = 0; i + 1 < kCap; ++i) EXPECT_EQ(l.count(item(kParent, i)), 1) << i;
  EXPECT_EQ(q.losses(), (MpmcLosses{1, 0})) << "the dead sole producer's reservation is counted once";
  EXPECT_EQ(c.producer_busy.load(), 0u);
  expect_fifo(l);
  expect_not_wedged(q);
}

TEST(MpmcStop, SoleConsumersReservationHeldWhileAliveSteppedOverWhenDead) {
  const std::string name = unique_name("stop_rc");
  Unlinker u{name};
  auto q = MpmcQueue<std::uint64_t>::create(name, kCap);
  for (std::uint64_t i = 0; i < 3; ++i) ASSERT_TRUE(q.try_push(item(kParent, i)));
  Victim v([&] {
    auto mine = MpmcQueue<std::uint64_t>::attach(name);
    std::uint64_t y = 0;
    if (!mine.try_pop(y) || y != item(kParent, 0)) return 3;  // the first consumer: now the sole one
    ::raise(SIGSTOP);
    return 0;
  });
  ASSERT_TRUE(eventually([&] { return stopped(v.pid); }, 20s, 1ms));
  SharedMemory raw = SharedMemory::attach(name);
  MpmcControl& c = control_of(raw);
  ASSERT_NE(c.consumer_owner.load() & (std::uint64_t{1} << 62), 0u)
      << "the victim did not become the sole consumer";
  ASSERT_EQ(c.head.load(), 1u);
  c.consumer_busy.store(2);  // reserved position 1 (item 1), not yet claimed

  // A second consumer keeps off the reserved item; producers wait a lap on.
  Ledger l;
  l.drain(q, 100ms);
  EXPECT_EQ(l.count(item(kParent, 1)), 0) << "popped a live consumer's reserved item";
  EXPECT_EQ(l.count(item(kParent, 2)), 1);
  std::uint64_t next = 3;
  while (q.push_for(item(kParent, next), kPastGrace)) ++next;
  // Positions 3 and 4 went in; 5 is the reserved item's slot a lap on.
  EXPECT_EQ(next, 5u) << "producers went past a live consumer's reservation";
  EXPECT_EQ(q.unblock(), MpmcUnblock::none);
  EXPECT_EQ(q.losses(), MpmcLosses{});

  ::kill(v.pid, SIGKILL);
  ASSERT_EQ(v.wait().signal, SIGKILL);
  ASSERT_TRUE(eventually([&] { return q.unblock() == MpmcUnblock::released_consumer; }, 10s, 1ms));
  EXPECT_EQ(q.losses(), (MpmcLosses{0, 1})) << "the dead sole consumer's reserved item is counted once";
  EXPECT_EQ(c.consumer_busy.load(), 0u);
  l.drain(q, 1s);
  for (std::uint64_t i = 3; i < next; ++i) EXPECT_EQ(l.count(item(kParent, i)), 1) << i;
  EXPECT_EQ(l.count(item(kParent, 1)), 0);
  expect_fifo(l);
  expect_not_wedged(q);
}

// A producer streaming into a large queue is stopped inside a push with its
// claim in flight (the nth pass of mpmc_push_claimed, not a random stop that
// may land between pushes), then killed. Everything it published before
// comes out once and in order, its one claim is stepped over and counted,
// and a new producer streams through the same slots.
TEST(MpmcStop, ProducerKilledMidStreamWithAClaimInFlight) {
  const std::string name = unique_name("stop_ms");
  Unlinker u{name};
  auto q = MpmcQueue<std::uint64_t>::create(name, 1024);
  constexpr std::uint64_t kStopAt = 20'000;  // the victim stops inside its push of item kStopAt - 1
  constexpr std::uint64_t kAfterwards = 20'000;
  Victim v([&] {
    auto mine = MpmcQueue<std::uint64_t>::attach(name);
    fault::arm(Point::mpmc_push_claimed, kStopAt, Action::stop);
    for (std::uint64_t i = 0;; ++i) mine.push(item(kVictim, i));
    return 0;
  });
  Ledger l;
  std::uint64_t x = 0;
  // Consume while it streams, until it has stopped itself at its claim.
  while (!stopped(v.pid)) {
    if (q.pop_for(x, 10ms)) l.take(x);
    ASSERT_LT(l.parent_order.size(), kStopAt) << "the victim went past its armed push";
  }
  while (q.try_pop(x)) l.take(x);
  EXPECT_EQ(q.size(), 1u) << "the stopped victim's claim is in flight";
  EXPECT_EQ(q.losses(), MpmcLosses{}) << "a stopped claimant was stepped over";
  ::kill(v.pid, SIGKILL);
  ASSERT_EQ(v.wait().signal, SIGKILL);

  Victim second([&] {
    auto mine = MpmcQueue<std::uint64_t>::attach(name);
    for (std::uint64_t i = 0; i < kAfterwards; ++i) {
      if (!mine.push_for(item(kSecond, i), 10s)) return 3;  // the dead claim is stepped over
    }
    return 0;
  });
  std::uint64_t from_second = 0;
  while (from_second < kAfterwards) {
    ASSERT_TRUE(q.pop_for(x, 10s)) << "stalled after " << from_second << " of the second producer's items";
    l.take(x);
    if (x >> 32 == kSecond) ++from_second;
  }
  EXPECT_TRUE(second.wait().ok());
  l.drain(q, 100ms);
  for (std::uint64_t i = 0; i + 1 < kStopAt; ++i) ASSERT_EQ(l.count(item(kVictim, i)), 1) << i;
  EXPECT_EQ(l.count(item(kVictim, kStopAt - 1)), 0) << "the item in flight cannot have been published";
  for (std::uint64_t i = 0; i < kAfterwards; ++i) ASSERT_EQ(l.count(item(kSecond, i)), 1) << i;
  EXPECT_EQ(l.parent_order.size(), kStopAt - 1 + kAfterwards) << "an item was delivered twice";
  EXPECT_EQ(q.losses(), (MpmcLosses{1, 0})) << "the dead producer's claim is counted once";
  expect_fifo(l);
  expect_not_wedged(q);
}

}  // namespace
}  // namespace shmkit::test
