// ByteQueue with a peer stopped or killed at each numbered step of push and
// pop (the byteq_* fault points), with messages in the ring and out of line.
// A victim process SIGSTOPs (or SIGKILLs) itself at the point; the survivor
// pushes and pops around it; a stopped victim then gets SIGCONT and
// finishes its own call. Checked each time:
//   * every message whose push returned is popped exactly once and intact,
//     except the one a killed victim held (counted once in losses());
//   * a stopped claimant is never stepped over (losses stay 0) and does not
//     hold up messages behind its own: the survivor pops past it;
//   * nothing is wedged afterwards: several laps of the ring go through.
// Every wait is on an observed state (stopped, exited); no assertion is
// about time. Links shmkit_fault (the points compiled in).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "byte_queue_common.hpp"
#include "fault_support.hpp"
#include "shmkit/detail/fault.hpp"

namespace shmkit {
void PrintTo(const ByteQueueLosses& l, std::ostream* os) {
  *os << "{producer_claims_skipped " << l.producer_claims_skipped << ", consumer_claims_released "
      << l.consumer_claims_released << ", corrupt_records " << l.corrupt_records << "}";
}
}  // namespace shmkit

namespace shmkit::test {
namespace {

using namespace std::chrono_literals;
using fault::Action;
using fault::Point;

struct Case {
  Point point;
  Action action;
  bool out_of_line;
  unsigned keep = 2;  // out-of-line blocks each handle keeps for reuse (0: single-use blocks)
};
void PrintTo(const Case& c, std::ostream* os) {
  *os << point_name(c.point) << (c.action == Action::stop ? " stop" : " kill")
      << (c.out_of_line ? (c.keep != 0 ? " ool reused" : " ool single-use") : "");
}
bool is_push(Point p) {
  return p == Point::byteq_push_won || p == Point::byteq_push_written || p == Point::byteq_push_published;
}
// Whether the victim's own message is lost when it dies at `p`.
bool kill_loses(Point p) { return p != Point::byteq_push_published && p != Point::byteq_pop_released; }

constexpr std::uint32_t kParent = 1, kVictimOrigin = 2;
constexpr std::size_t kThreshold = 600;  // out of line above this

std::size_t victim_length(const Case& c) { return c.out_of_line ? 5000 : 300; }

class ByteQueueStep : public testing::TestWithParam<Case> {};

TEST_P(ByteQueueStep, StallOrDieHereThenSurvivorsCheck) {
  const Case c = GetParam();
  const std::string name = unique_name("bq_walk");
  QueueUnlinker u{name};
  auto q = ByteQueue::create(name, 4096, ByteQueue::Options{.out_of_line_threshold = kThreshold});
  q.keep_out_of_line_blocks(c.keep);
  std::map<std::pair<std::uint32_t, std::uint32_t>, int> seen;
  auto take = [&](const ByteMessage& m) {
    const Decoded d = decode(m.bytes());
    EXPECT_TRUE(d.intact) << "a corrupted message (origin " << d.origin << " seq " << d.seq << ")";
    ++seen[{d.origin, d.seq}];
  };
  const auto victim_msg = make_message(kVictimOrigin, 0, victim_length(c));
  if (!is_push(c.point)) {
    ASSERT_TRUE(q.try_push(std::span<const std::byte>(victim_msg)));
  }

  Victim v([&] {
    auto mine = ByteQueue::attach(name);
    mine.keep_out_of_line_blocks(c.keep);
    fault::arm(c.point, 1, c.action);
    if (is_push(c.point)) {
      mine.push(std::span<const std::byte>(victim_msg));
      return 0;
    }
    ByteMessage m = mine.pop();
    const Decoded d = decode(m.bytes());
    return d.intact && d.origin == kVictimOrigin && m.size() == victim_length(c) ? 0 : 5;
  });
  if (c.action == Action::stop) {
    ASSERT_TRUE(eventually([&] { return task_state(v.pid) == 'T' || task_state(v.pid) == 'Z'; }, 20s, 1ms));
    ASSERT_EQ(task_state(v.pid), 'T') << "the victim exited without stopping at " << point_name(c.point);
  } else {
    const ExitStatus st = v.wait();
    ASSERT_EQ(st.signal, SIGKILL) << "the victim did not die at " << point_name(c.point) << ": "
                                  << st.describe();
  }

  // The survivor: messages of its own, pushed and popped around the victim's
  // record (a lap's worth: 64 cells, 6 per message).
  std::uint32_t pushed = 0;
  for (; pushed < 4; ++pushed) {
    const auto m = make_message(kParent, pushed, 300);
    ASSERT_TRUE(q.push_for(std::span<const std::byte>(m), 10s)) << "push " << pushed << " wedged";
  }
  for (std::uint32_t i = 0; i < pushed; ++i) {
    ByteMessage m;
    ASSERT_TRUE(q.pop_for(m, 10s)) << "message " << i << " stranded behind the victim's record";
    take(m);
    if (decode(m.bytes()).origin == kVictimOrigin) --i;  // the victim's, delivered first
  }

  if (c.action == Action::stop) {
    EXPECT_EQ(q.unblock(), ByteUnblock::none) << "a live (stopped) claimant was stepped over";
    EXPECT_EQ(q.losses(), ByteQueueLosses{});
    ::kill(v.pid, SIGCONT);
    const ExitStatus st = v.wait();
    EXPECT_TRUE(st.ok()) << "the resumed victim: " << st.describe();
  } else if (kill_loses(c.point) && is_push(c.point)) {
    // The dead producer's claim is stepped over by a waiting survivor. (A
    // dead consumer's record lies behind head: it is released when a
    // producer comes round to its cells, in the laps below.)
    ASSERT_TRUE(eventually([&] {
      (void)q.unblock();
      const auto l = q.losses();
      return l.producer_claims_skipped + l.consumer_claims_released == 1;
    }));
  }
  // Drain: the victim's message if it is still queued (pushed by it, or a
  // pop it never made).
  for (ByteMessage m; q.pop_for(m, 300ms);) take(m);

  const bool victim_lost = c.action == Action::kill && kill_loses(c.point);
  const bool victim_popped_by_itself = !is_push(c.point) && !victim_lost;
  const bool in_seen = seen.count({kVictimOrigin, 0}) != 0;
  if (victim_lost || victim_popped_by_itself) {
    EXPECT_FALSE(in_seen) << "the victim's message was delivered to the survivor too";
  } else {
    EXPECT_EQ((seen[{kVictimOrigin, 0}]), 1) << "the victim's committed message was lost or doubled";
  }
  for (std::uint32_t i = 0; i < pushed; ++i) EXPECT_EQ((seen[{kParent, i}]), 1) << "survivor message " << i;
  // Not wedged: laps of pushes and pops, in order (the first lap comes round
  // to a dead consumer's cells and releases them).
  for (std::uint32_t round = 0; round < 4; ++round) {
    for (std::uint32_t i = 0; i < 6; ++i) {
      const auto m = make_message(3, round * 10 + i, 500);
      ASSERT_TRUE(q.push_for(std::span<const std::byte>(m), 5s))
          << "wedged: round " << round << " push " << i;
    }
    for (std::uint32_t i = 0; i < 6; ++i) {
      ByteMessage m;
      ASSERT_TRUE(q.pop_for(m, 5s)) << "wedged: round " << round << " pop " << i;
      EXPECT_EQ(decode(m.bytes()).seq, round * 10 + i);
    }
  }
  const ByteQueueLosses l = q.losses();
  if (victim_lost) {
    EXPECT_EQ(l.producer_claims_skipped + l.consumer_claims_released, 1u);
    EXPECT_EQ(l.producer_claims_skipped, is_push(c.point) ? 1u : 0u);
  } else {
    EXPECT_EQ(l, ByteQueueLosses{});
  }
  EXPECT_EQ(l.corrupt_records, 0u);
  if (c.out_of_line && !is_push(c.point)) {
    // The survivor made the victim's block. Its next long message goes
    // through intact, in that block if the victim gave it back (or its
    // dead claim was released), else in a new one; once the survivor lets
    // go of its blocks, none is left (a dead holder's included).
    const auto again = make_message(kParent, 99, victim_length(c));
    ASSERT_TRUE(q.push_for(std::span<const std::byte>(again), 5s));
    ByteMessage m;
    ASSERT_TRUE(q.pop_for(m, 5s));
    const Decoded d = decode(m.bytes());
    EXPECT_TRUE(d.intact && d.origin == kParent && d.seq == 99 && m.size() == again.size());
    m = ByteMessage();
    q.drop_out_of_line_blocks();
    EXPECT_EQ(out_of_line_left(name), std::vector<std::string>{}) << "a block outlived its producer's handle";
  } else if (c.out_of_line && (c.action == Action::stop || c.point == Point::byteq_push_published)) {
    // The victim made it and published it: its consumer (the survivor)
    // unlinks it, the victim having let go of it (it ended) or died. A
    // producer killed before publishing leaves its block until the
    // queue's unlink (documented).
    EXPECT_EQ(out_of_line_left(name), std::vector<std::string>{}) << "the victim's published block is left";
  }
}

std::vector<Case> cases() {
  std::vector<Case> out;
  for (Point p : {Point::byteq_push_won, Point::byteq_push_written, Point::byteq_push_published,
                  Point::byteq_pop_won, Point::byteq_pop_copied, Point::byteq_pop_released}) {
    for (Action a : {Action::kill, Action::stop}) {
      out.push_back({p, a, false});
      for (unsigned keep : {2u, 0u}) out.push_back({p, a, true, keep});
    }
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Walk, ByteQueueStep, testing::ValuesIn(cases()), [](const auto& info) {
  std::string n = point_name(info.param.point) + (info.param.action == Action::stop ? "_stop" : "_kill") +
                  (info.param.out_of_line ? (info.param.keep != 0 ? "_ool_reused" : "_ool_single") : "");
  return n;
});

// A producer stopped mid-message does not hold up the others: a consumer
// takes every later message around it, and producers go on until the ring
// comes round to its cells (then full: documented), then it resumes.
// A consumer process takes A, the first message of the 64-cell queue
// `name` (at cell 0), and is killed holding it: its record, and its block
// if it has one, stay claimed. Then one-cell messages (seq 100 on) fill the
// ring up to A's cells; `fillers` says how many.
void kill_a_consumer_holding_a_then_fill(const std::string& name, ByteQueue& q, std::uint32_t& fillers) {
  Victim consumer([&] {
    auto mine = ByteQueue::attach(name);
    fault::arm(Point::byteq_pop_copied, 1, Action::kill);
    ByteMessage m;
    (void)mine.try_pop(m);
    return 3;
  });
  ASSERT_EQ(consumer.wait().signal, SIGKILL);
  fillers = 0;
  while (q.try_push(std::span<const std::byte>(make_message(kParent, 100 + fillers, 40)))) ++fillers;
  ASSERT_GT(fillers, 60u);
}

// A survivor stopped between seeing a dead consumer's claim and taking it
// over, resumed after another survivor released that record and the ring
// came round with a new record in the same cells, whose reused block a live
// consumer holds: the stale survivor touches nothing. (Had it acted on the
// claim it read, it would have given the held block back, and the next
// long message would have been written over the bytes the consumer holds.)
TEST(ByteQueueStop, AStaleSurvivorNeverTouchesALaterRecordsBlock) {
  const std::string name = unique_name("bq_stale");
  QueueUnlinker u{name};
  auto q = ByteQueue::create(name, 4096, ByteQueue::Options{.out_of_line_threshold = 1000});  // 64 cells
  ASSERT_TRUE(q.try_push(std::span<const std::byte>(make_message(kParent, 0, 5000))));        // A, at cell 0
  std::uint32_t fillers = 0;
  ASSERT_NO_FATAL_FAILURE(kill_a_consumer_holding_a_then_fill(name, q, fillers));
  Victim survivor([&] {  // sees A's dead claim, then stalls
    auto mine = ByteQueue::attach(name);
    fault::arm(Point::byteq_unblock_seen, 1, Action::stop);
    (void)mine.unblock();
    return 0;
  });
  ASSERT_TRUE(eventually([&] { return task_state(survivor.pid) == 'T'; }, 20s, 1ms));
  EXPECT_EQ(q.unblock(), ByteUnblock::released_consumer);  // A released, its block given back
  for (std::uint32_t i = 0; i < fillers; ++i) {
    ByteMessage m;
    ASSERT_TRUE(q.try_pop(m));
    EXPECT_EQ(decode(m.bytes()).seq, 100 + i);
  }
  // B: in A's cells, in A's block (reused), held by us.
  ASSERT_TRUE(q.try_push(std::span<const std::byte>(make_message(kParent, 1, 5000))));
  ByteMessage b;
  ASSERT_TRUE(q.try_pop(b));
  ASSERT_TRUE(b.out_of_line());
  EXPECT_EQ(out_of_line_left(name), std::vector<std::string>{name + ".o0"}) << "A's block was not reused";
  survivor.resume();
  EXPECT_TRUE(survivor.wait().ok());
  // C: B's block is still held, so C gets another; B's bytes are untouched.
  ASSERT_TRUE(q.try_push(std::span<const std::byte>(make_message(kParent, 2, 5000))));
  ByteMessage c;
  ASSERT_TRUE(q.try_pop(c));
  const Decoded db = decode(b.bytes()), dc = decode(c.bytes());
  EXPECT_TRUE(db.intact && db.seq == 1) << "the held message was written over";
  EXPECT_TRUE(dc.intact && dc.seq == 2);
  EXPECT_EQ(q.losses(), (ByteQueueLosses{0, 1, 0}));
}

// A consumer killed holding a record pins its cells for a lap. Producers
// that only try (try_push) never run unblock(): a consumer waiting for a
// message frees the dead record for them (unblock's producers' side, at
// most every ByteQueue::kProducersSideEvery), and their message reaches it.
TEST(ByteQueueStop, AWaitingConsumerFreesADeadConsumersCellsForProducersThatOnlyTry) {
  const std::string name = unique_name("bq_freeing");
  QueueUnlinker u{name};
  auto q = ByteQueue::create(name, 4096);                                             // 64 cells
  ASSERT_TRUE(q.try_push(std::span<const std::byte>(make_message(kParent, 0, 40))));  // A, at cell 0
  std::uint32_t fillers = 0;
  ASSERT_NO_FATAL_FAILURE(kill_a_consumer_holding_a_then_fill(name, q, fillers));
  for (std::uint32_t i = 0; i < fillers; ++i) {
    ByteMessage m;
    ASSERT_TRUE(q.try_pop(m));
  }
  // Empty, and full for producers: A's cell is the next one they need.
  const auto last = make_message(kParent, 1, 40);
  ASSERT_FALSE(q.try_push(std::span<const std::byte>(last)));
  std::atomic<bool> stop{false};
  std::thread producer([&] {
    auto mine = ByteQueue::attach(name);
    while (!stop.load() && !mine.try_push(std::span<const std::byte>(last))) std::this_thread::sleep_for(1ms);
  });
  ByteMessage got;
  const bool popped = q.pop_for(got, 20s);
  stop = true;
  producer.join();
  ASSERT_TRUE(popped) << "the waiting consumer never freed the dead consumer's cells";
  EXPECT_EQ(decode(got.bytes()).seq, 1u);
  EXPECT_EQ(q.losses().consumer_claims_released, 1u);
}

TEST(ByteQueueStop, StalledProducerIsLookedPastUntilTheRingComesRound) {
  const std::string name = unique_name("bq_lookpast");
  QueueUnlinker u{name};
  auto q = ByteQueue::create(name, 4096);
  Victim v([&] {
    auto mine = ByteQueue::attach(name);
    fault::arm(Point::byteq_push_written, 1, Action::stop);
    const auto m = make_message(kVictimOrigin, 0, 100);
    mine.push(std::span<const std::byte>(m));
    return 0;
  });
  ASSERT_TRUE(eventually([&] { return task_state(v.pid) == 'T'; }, 20s, 1ms));
  // 100 messages of 2 cells through a 64-cell ring: several laps would be
  // needed, but the stalled record pins its 2 cells, so after one lap the
  // producer finds it full; each pop in between frees room.
  std::uint32_t popped = 0, pushed = 0;
  for (; pushed < 100; ++pushed) {
    const auto m = make_message(kParent, pushed, 60);
    if (!q.try_push(std::span<const std::byte>(m))) break;
    ByteMessage got;
    ASSERT_TRUE(q.try_pop(got)) << "message " << pushed << " not taken around the stalled record";
    EXPECT_EQ(decode(got.bytes()).seq, pushed);
    ++popped;
  }
  EXPECT_GE(pushed, 25u) << "producers were held up before the ring came round";
  EXPECT_LT(pushed, 100u) << "the ring came round over a live claimant's cells";
  EXPECT_EQ(q.unblock(), ByteUnblock::none);
  ::kill(v.pid, SIGCONT);
  EXPECT_TRUE(v.wait().ok());
  ByteMessage got;
  ASSERT_TRUE(q.pop_for(got, 5s));
  EXPECT_EQ(decode(got.bytes()).origin, kVictimOrigin);
  for (; pushed < 100; ++pushed) {
    const auto m = make_message(kParent, pushed, 60);
    ASSERT_TRUE(q.push_for(std::span<const std::byte>(m), 5s));
    ASSERT_TRUE(q.pop_for(got, 5s));
    EXPECT_EQ(decode(got.bytes()).seq, pushed);
  }
  EXPECT_EQ(q.losses(), ByteQueueLosses{});
}

// Consumers look past up to kMaxPassed records still being written; behind
// more, a waiting consumer sleeps until its deadline (it once spun past
// it: has_message() saw the message try_pop would not take).
TEST(ByteQueueStop, BehindMoreStalledProducersThanItLooksPastAConsumerSleepsToItsDeadline) {
  for (const int stalled : {ByteQueue::kMaxPassed, ByteQueue::kMaxPassed + 1}) {
    SCOPED_TRACE(stalled);
    const std::string name = unique_name("bq_manystalled");
    QueueUnlinker u{name};
    auto q = ByteQueue::create(name, 4096);
    std::vector<std::unique_ptr<Victim>> victims;
    for (int i = 0; i < stalled; ++i) {
      victims.push_back(std::make_unique<Victim>([&] {
        auto mine = ByteQueue::attach(name);
        fault::arm(Point::byteq_push_written, 1, Action::stop);
        (void)mine.try_push(std::string_view("stalled"));
        return 0;
      }));
      ASSERT_TRUE(eventually([&] { return task_state(victims.back()->pid) == 'T'; }, 20s, 1ms));
    }
    ASSERT_TRUE(q.try_push(std::string_view("published")));
    ByteMessage got;
    const auto t0 = std::chrono::steady_clock::now();
    const bool popped = q.pop_for(got, 300ms);
    const auto took = std::chrono::steady_clock::now() - t0;
    if (stalled <= ByteQueue::kMaxPassed) {
      ASSERT_TRUE(popped);
      EXPECT_EQ(got.view(), "published");
    } else {
      EXPECT_FALSE(popped);
      EXPECT_FALSE(q.has_message());
      EXPECT_LT(took, 5s) << "pop_for ran past its deadline";
    }
    for (auto& v : victims) {
      ::kill(v->pid, SIGCONT);
      EXPECT_TRUE(v->wait().ok());
    }
    for (int i = 0; i < stalled + (popped ? 0 : 1); ++i) ASSERT_TRUE(q.pop_for(got, 5s)) << i;
    EXPECT_EQ(q.losses(), ByteQueueLosses{});
  }
}

}  // namespace
}  // namespace shmkit::test

namespace shmkit::test {
namespace {

// Random SIGKILLs: two producers and two consumers (processes) push and
// pop self-checking messages of assorted lengths (some out of line) while
// the parent kills one of them at a random moment each round and starts a
// replacement. At the end: no message torn or delivered twice, FIFO per
// producer incarnation as each consumer saw it, and every message whose
// push returned (recorded by its producer) delivered, but for at most one
// per killed process (the one in its hands), as losses() counts.
TEST(ByteQueueStorm, RandomKillsLoseAtMostTheMessageInTheDeadHands) {
  constexpr int kRounds = 40;
  constexpr std::uint32_t kMaxSeq = 1 << 16;
  const std::string name = unique_name("bq_storm");
  QueueUnlinker u{name};
  auto q = ByteQueue::create(name, 8192, ByteQueue::Options{.out_of_line_threshold = 1500});
  struct State {
    std::atomic<std::uint32_t> next[2];  // producer p's next sequence number (recorded after push)
    std::atomic<std::uint8_t> seen[2][kMaxSeq];
    std::atomic<int> bad;
    std::atomic<int> stop;
    std::atomic<std::uint32_t> incarnation[2];  // origin = producer + 2 * incarnation
  };
  Shared<State> s;
  std::mt19937 rng(static_cast<unsigned>(::getpid()));
  auto producer = [&](int p) {
    return fork_child([&, p] {
      auto mine = ByteQueue::attach(name);
      const std::uint32_t origin = static_cast<std::uint32_t>(p) + 2 * s->incarnation[p].fetch_add(1);
      while (!s->stop.load()) {
        const std::uint32_t seq = s->next[p].load();
        if (seq + 1 >= kMaxSeq) return 0;
        const auto m = make_message(origin, seq, seq % 9 == 0 ? 2000 : length_for(seq, 700));
        if (!mine.push_for(std::span<const std::byte>(m), 50ms)) continue;
        s->next[p].store(seq + 1);
      }
      return 0;
    });
  };
  auto consumer = [&] {
    return fork_child([&] {
      auto mine = ByteQueue::attach(name);
      std::map<std::uint32_t, std::int64_t> last;  // per producer incarnation
      while (!s->stop.load()) {
        ByteMessage m;
        if (!mine.pop_for(m, 50ms)) continue;
        const Decoded d = decode(m.bytes());
        auto [it, fresh] = last.try_emplace(d.origin, -1);
        if (!d.intact || d.seq >= kMaxSeq || static_cast<std::int64_t>(d.seq) <= it->second) {
          std::fprintf(stderr, "bad: intact %d origin %u seq %u after %lld\n", d.intact, d.origin, d.seq,
                       static_cast<long long>(it->second));
          s->bad.fetch_add(1);
          continue;
        }
        it->second = d.seq;
        s->seen[d.origin % 2][d.seq].fetch_add(1);
      }
      return 0;
    });
  };
  std::vector<pid_t> crew = {producer(0), producer(1), consumer(), consumer()};
  int producer_kills = 0, consumer_kills = 0;
  std::set<std::uint32_t> resent[2];  // a producer killed after its push returned, before it recorded it
  for (int round = 0; round < kRounds; ++round) {
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20000));
    const int victim = static_cast<int>(rng() % 4);
    ::kill(crew[victim], SIGKILL);
    (void)wait_child(crew[victim], 10s);
    if (victim < 2) resent[victim].insert(s->next[victim].load());
    (victim < 2 ? producer_kills : consumer_kills)++;
    crew[victim] = victim < 2 ? producer(victim) : consumer();
  }
  std::this_thread::sleep_for(200ms);
  s->stop.store(1);
  for (pid_t p : crew) EXPECT_TRUE(wait_child(p, 20s).ok());
  // What is still queued (and dead claims stepped over by a waiting survivor).
  for (ByteMessage m; q.pop_for(m, 200ms);) {
    const Decoded d = decode(m.bytes());
    ASSERT_TRUE(d.intact && d.seq < kMaxSeq);
    s->seen[d.origin % 2][d.seq].fetch_add(1);
  }
  EXPECT_EQ(s->bad.load(), 0) << "torn, foreign or out-of-order messages";
  int missing = 0;
  for (int p = 0; p < 2; ++p) {
    const std::uint32_t recorded = s->next[p].load();
    EXPECT_GT(recorded, 100u) << "producer " << p << " made no progress";
    for (std::uint32_t i = 0; i < kMaxSeq; ++i) {
      const int n = s->seen[p][i].load();
      ASSERT_LE(n, resent[p].count(i) ? 2 : 1) << "producer " << p << " message " << i << " delivered twice";
      if (i < recorded && n == 0) ++missing;
    }
  }
  const ByteQueueLosses l = q.losses();
  EXPECT_LE(missing, consumer_kills) << "messages lost beyond the one in each dead consumer's hands";
  EXPECT_LE(l.producer_claims_skipped, static_cast<std::uint64_t>(producer_kills));
  EXPECT_LE(l.consumer_claims_released, static_cast<std::uint64_t>(consumer_kills));
  EXPECT_EQ(l.corrupt_records, 0u);
  std::printf("storm: %d producer kills, %d consumer kills, %d missing, losses {%llu, %llu}\n",
              producer_kills, consumer_kills, missing,
              static_cast<unsigned long long>(l.producer_claims_skipped),
              static_cast<unsigned long long>(l.consumer_claims_released));
}

}  // namespace
}  // namespace shmkit::test
