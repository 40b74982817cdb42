// SIGKILL a producer, consumer, reader or writer of a lock-free structure in
// the middle of a stream: the survivors' timed calls return, a replacement
// attaches and continues, and nothing committed is lost or duplicated (the
// crash semantics written in each header).
#include <csignal>
#include <sys/wait.h>

#include "test_lockfree_common.hpp"

namespace shmkit::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

ExitStatus kill9(pid_t pid) {
  ::kill(pid, SIGKILL);
  return wait_child(pid, 10s);
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

constexpr std::uint64_t kBefore = 200'000 / kScale;  // items through before the kill
constexpr std::uint64_t kAfter = 50'000 / kScale;    // items after the restart

TEST(LockfreeKill, SpscProducerKilledThenRestarted) {
  const std::string name = unique_name("kp");
  Unlinker u{name};
  auto q = SpscQueue<std::uint64_t>::create(name, 1024);
  pid_t producer = fork_child([&] {
    auto p = SpscQueue<std::uint64_t>::attach(name);
    for (std::uint64_t i = p.producer_index();; ++i) p.push(i);
    return 0;
  });
  std::uint64_t expect = 0, v = 0;
  while (expect < kBefore) {
    ASSERT_TRUE(q.pop_for(v, 10s));
    ASSERT_EQ(v, expect++);
  }
  EXPECT_EQ(kill9(producer).signal, SIGKILL);
  // The survivor drains what was committed, then its timed pop returns.
  auto t0 = Clock::now();
  while (q.pop_for(v, 100ms)) {
    ASSERT_EQ(v, expect++);
    t0 = Clock::now();
  }
  EXPECT_LT(ms_since(t0), 2000);
  EXPECT_EQ(expect, q.producer_index()) << "everything committed was delivered";
  // A new producer continues from the shared tail.
  pid_t again = fork_child([&] {
    auto p = SpscQueue<std::uint64_t>::attach(name);
    const std::uint64_t start = p.producer_index();
    for (std::uint64_t i = start; i < start + kAfter; ++i) p.push(i);
    return 0;
  });
  const std::uint64_t end = expect + kAfter;
  while (expect < end) {
    ASSERT_TRUE(q.pop_for(v, 10s));
    ASSERT_EQ(v, expect++) << "lost or duplicated across the restart";
  }
  EXPECT_TRUE(wait_child(again).ok());
  EXPECT_FALSE(q.pop_for(v, 10ms));
}

TEST(LockfreeKill, SpscConsumerKilledThenRestarted) {
  const std::string name = unique_name("kc");
  Unlinker u{name};
  auto q = SpscQueue<std::uint64_t>::create(name, 1024);
  struct Out {
    std::atomic<std::uint64_t> progress;  // items the consumer finished with
    std::atomic<std::uint64_t> first;     // the restarted consumer's first item
  };
  Shared<Out> out;
  auto consumer = [&]() -> int {
    auto c = SpscQueue<std::uint64_t>::attach(name);
    std::uint64_t expect = c.consumer_index();
    bool first = true;
    for (;;) {
      std::uint64_t v = c.pop();
      if (first) out->first = v;
      first = false;
      if (v != expect) return 5;
      out->progress.store(++expect);
    }
  };
  pid_t c1 = fork_child(consumer);
  std::uint64_t next = 0;
  while (out->progress.load() < kBefore) ASSERT_TRUE(q.push_for(next++, 10s));
  EXPECT_EQ(kill9(c1).signal, SIGKILL);
  // The survivor fills the ring, then its timed push returns.
  auto t0 = Clock::now();
  while (q.push_for(next, 100ms)) {
    ++next;
    t0 = Clock::now();
  }
  EXPECT_LT(ms_since(t0), 2000);
  const std::uint64_t head = q.consumer_index();
  const std::uint64_t done = out->progress.load();
  // The killed consumer had finished `done` items; at most the one it was
  // holding is committed-popped but unreported.
  EXPECT_TRUE(head == done || head == done + 1) << head << " vs " << done;
  EXPECT_EQ(next - head, q.capacity());
  // A new consumer resumes exactly at head.
  out->progress = 0;
  pid_t c2 = fork_child(consumer);
  const std::uint64_t end = next + kAfter;
  while (next < end) ASSERT_TRUE(q.push_for(next++, 10s));
  ASSERT_TRUE(eventually_true([&] { return out->progress.load() == end; }));
  EXPECT_EQ(out->first.load(), head) << "the restarted consumer must start at the shared head";
  EXPECT_EQ(kill9(c2).signal, SIGKILL) << "it was still waiting (pop), i.e. it did not fail";
}

TEST(LockfreeKill, MpmcSleepingConsumerKilled) {
  const std::string name = unique_name("mk");
  Unlinker u{name};
  auto q = MpmcQueue<std::uint64_t>::create(name, 256);
  struct Out {
    std::atomic<std::uint64_t> got[2];
    std::atomic<std::uint64_t> last[2];
  };
  Shared<Out> out;
  auto consumer = [&](int id) {
    return [&, id]() -> int {
      auto c = MpmcQueue<std::uint64_t>::attach(name);
      std::uint64_t prev = 0;
      for (;;) {
        std::uint64_t v = c.pop();
        if (v <= prev && prev != 0) return 5;  // FIFO from one producer
        prev = v;
        out->last[id] = v;
        out->got[id].fetch_add(1);
      }
    };
  };
  pid_t a = fork_child(consumer(0));
  pid_t b = fork_child(consumer(1));
  std::uint64_t next = 1;
  for (; next <= kBefore; ++next) ASSERT_TRUE(q.push_for(next, 10s));
  ASSERT_TRUE(eventually_true([&] { return out->got[0].load() + out->got[1].load() == kBefore; }));
  // Both consumers are now in pop() on an empty queue: past the spin, asleep
  // on the futex. Wait until the kernel says so, then kill one of them there.
  ASSERT_TRUE(eventually_true([&] { return q.empty(); }));
  EXPECT_TRUE(wait_asleep_in_futex(a, nullptr, 20s)) << "consumer a never slept in pop()";
  EXPECT_TRUE(wait_asleep_in_futex(b, nullptr, 20s)) << "consumer b never slept in pop()";
  EXPECT_EQ(kill9(a).signal, SIGKILL);
  const std::uint64_t b_before = out->got[1].load();
  for (std::uint64_t end = next + kAfter; next < end; ++next) ASSERT_TRUE(q.push_for(next, 10s));
  ASSERT_TRUE(eventually_true([&] { return out->got[1].load() == b_before + kAfter; }))
      << "the surviving consumer must receive everything pushed after the kill";
  EXPECT_EQ(out->last[1].load(), next - 1);
  EXPECT_EQ(kill9(b).signal, SIGKILL);
}

// Producer 0 is killed with a claim in flight (its slot claimed, never
// published), which a kill at a random moment rarely does: the test stops it
// (SIGSTOP) at random moments, drains what it published, and kills it when
// the drained queue still counts an item (size() > 0 while try_pop() finds
// none ready): its claim. Then producer 1 streams through the same queue: the
// dead claim is stepped over (no stall), nothing is lost or duplicated, and
// the queue reports exactly that one claim.
TEST(LockfreeKill, BroadcastWriterKilledThenReplaced) {
  const std::string name = unique_name("bw");
  Unlinker u{name};
  auto ring = BroadcastRing<Tick>::create(name, 4096);
  auto reader = ring.reader_at(0);
  pid_t w1 = fork_child([&] {
    auto w = BroadcastRing<Tick>::attach(name);
    for (std::uint64_t i = w.write_index();; ++i) {
      w.push(Tick::make(i));
      if (i % 64 == 0) std::this_thread::yield();  // let the reader keep up a bit
    }
    return 0;
  });
  std::uint64_t expect = 0, read = 0, lost = 0, wrong = 0;
  Tick t;
  auto consume = [&](std::chrono::milliseconds timeout) {
    BroadcastResult r = reader.read_for(t, timeout);
    if (r.status == BroadcastStatus::lapped) {
      lost += r.lost;
      expect += r.lost;
    } else if (r.status == BroadcastStatus::ok) {
      if (!t.consistent() || t.i != expect) ++wrong;
      ++expect;
      ++read;
    }
    return r.status != BroadcastStatus::empty;
  };
  while (expect < kBefore) ASSERT_TRUE(consume(10s));
  EXPECT_EQ(kill9(w1).signal, SIGKILL);
  auto t0 = Clock::now();
  while (consume(100ms)) t0 = Clock::now();
  EXPECT_LT(ms_since(t0), 2000);
  EXPECT_EQ(reader.cursor(), ring.write_index()) << "caught up with every committed item";
  pid_t w2 = fork_child([&] {
    auto w = BroadcastRing<Tick>::attach(name);
    const std::uint64_t start = w.write_index();
    for (std::uint64_t i = start; i < start + kAfter; ++i) w.push(Tick::make(i));
    return 0;
  });
  EXPECT_TRUE(wait_child(w2).ok());
  const std::uint64_t end = ring.write_index();
  while (expect < end) ASSERT_TRUE(consume(10s));
  EXPECT_EQ(wrong, 0u);
  EXPECT_EQ(read + lost, end) << "read + lost == written, across the writer's death";
}

TEST(LockfreeKill, BroadcastReaderKilledAndResumed) {
  const std::string name = unique_name("br");
  Unlinker u{name};
  auto ring = BroadcastRing<Tick>::create(name, 65536);
  struct Out {
    std::atomic<std::uint64_t> saved;  // the reader's cursor, saved after each item
    std::atomic<std::uint64_t> wrong;
    std::atomic<std::uint64_t> first;
  };
  Shared<Out> out;
  out->first = ~0ull;
  auto reader_body = [&]() -> int {
    auto r = BroadcastRing<Tick>::attach(name);
    auto rd = r.reader_at(out->saved.load());
    bool first = true;
    for (;;) {
      Tick t;
      BroadcastResult res = rd.read_for(t, 10s);
      if (res.status != BroadcastStatus::ok) return 3;  // capacity is ample: no lap
      if (first) out->first = t.i;
      first = false;
      if (!t.consistent() || t.i != rd.cursor() - 1) out->wrong.fetch_add(1);
      out->saved.store(rd.cursor());
    }
  };
  pid_t r1 = fork_child(reader_body);
  std::uint64_t i = 0;
  for (; i < 20'000 / kScale; ++i) ring.push(Tick::make(i));
  ASSERT_TRUE(eventually_true([&] { return out->saved.load() >= 10'000 / kScale; }));
  EXPECT_EQ(kill9(r1).signal, SIGKILL);
  const std::uint64_t resume = out->saved.load();
  pid_t r2 = fork_child(reader_body);
  for (; i < 40'000 / kScale; ++i) ring.push(Tick::make(i));
  ASSERT_TRUE(eventually_true([&] { return out->saved.load() == i; }));
  EXPECT_EQ(out->first.load(), resume) << "the restarted reader resumes at its saved cursor";
  EXPECT_EQ(out->wrong.load(), 0u);
  EXPECT_EQ(kill9(r2).signal, SIGKILL);
}

TEST(LockfreeKill, SeqLockWriterKilledThenReplaced) {
  const std::string name = unique_name("sw");
  Unlinker u{name};
  auto s = SeqLock<Quote>::create(name, Quote::make(0));
  pid_t w1 = fork_child([&] {
    auto w = SeqLock<Quote>::attach(name);
    for (std::uint64_t v = 1;; ++v) w.store(Quote::make(v));
    return 0;
  });
  std::uint64_t last = 0;
  while (last < 1000) {
    Quote q = s.read();
    ASSERT_TRUE(q.consistent());
    ASSERT_GE(q.w[0], last);
    last = q.w[0];
  }
  EXPECT_EQ(kill9(w1).signal, SIGKILL);
  // Killed between stores (a value) or inside one (nullopt): bounded either way.
  auto t0 = Clock::now();
  auto o = s.read_for(50ms);
  EXPECT_LT(ms_since(t0), 2000);
  if (o) {
    EXPECT_TRUE(o->consistent());
  }
  pid_t w2 = fork_child([&] {
    auto w = SeqLock<Quote>::attach(name);
    w.store(Quote::make(1'000'000'000));
    return 0;
  });
  EXPECT_TRUE(wait_child(w2).ok());
  Quote q = s.read();
  EXPECT_TRUE(q.consistent());
  EXPECT_EQ(q.w[0], 1'000'000'000u);
  EXPECT_EQ(s.version() % 2, 0u);
}

// A consumer killed and replaced by a handle the supervisor already had (one
// consumer at a time, through any handle): that handle's cached tail is
// from before the others consumed. Found by test_storm: try_pop used to
// trust a cache behind head and popped garbage from an empty queue, moving
// head past tail.
TEST(LockfreeKill, SpscIdleHandleTakesOverAsConsumer) {
  const std::string name = unique_name("takeover");
  Unlinker u{name};
  auto supervisor = SpscQueue<std::uint64_t>::create(name, 4);
  const ExitStatus st = run_child([&] {
    auto q = SpscQueue<std::uint64_t>::attach(name);
    std::uint64_t v = 0;
    for (std::uint64_t i = 0; i < 6; ++i) {
      if (!q.try_push(100 + i) || !q.try_pop(v) || v != 100 + i) return 1;
    }
    return 0;
  });
  ASSERT_TRUE(st.ok()) << st.describe();
  std::uint64_t v = 0;
  EXPECT_FALSE(supervisor.try_pop(v)) << "popped " << v << " from an empty queue";
  std::uint64_t batch[4];
  EXPECT_EQ(supervisor.try_pop(std::span<std::uint64_t>(batch)), 0u);
  EXPECT_EQ(supervisor.consumer_index(), supervisor.producer_index());
  ASSERT_TRUE(supervisor.try_push(7));
  ASSERT_TRUE(supervisor.try_pop(v));
  EXPECT_EQ(v, 7u);
}

// The consumer's look-ahead remembers, in its handle, how far the marks it
// read were published. Another consumer (another process) then takes over,
// consumes part of what this one saw, the producer refills the freed slots
// with the next lap, and the first handle consumes again: it must return
// the items at the current head, never the lap it saw before, and stop at
// what is really there. Then a consumer killed mid-stream: its successor's
// look-ahead starts from the head the dead one stored.
TEST(LockfreeKill, SpscLookAheadSurvivesAnotherConsumer) {
  const std::string name = unique_name("lookahead");
  Unlinker u{name};
  constexpr std::uint64_t kCap = 64;
  auto q = SpscQueue<std::uint64_t>::create(name, kCap);
  for (std::uint64_t i = 0; i < kCap; ++i) ASSERT_TRUE(q.try_push(i));
  std::uint64_t v = 0;
  ASSERT_TRUE(q.try_pop(v));  // sees items 0..31 published (look-ahead)
  ASSERT_EQ(v, 0u);
  // Another process consumes items 1..40 and refills: items 64..103 land in
  // the slots of items 0..39.
  ExitStatus st = run_child([&] {
    auto other = SpscQueue<std::uint64_t>::attach(name);
    std::uint64_t w = 0;
    for (std::uint64_t i = 1; i <= 40; ++i) {
      if (!other.try_pop(w) || w != i) return 1;
    }
    for (std::uint64_t i = kCap; i < kCap + 40; ++i) {
      if (!other.try_push(i)) return 2;
    }
    return 0;
  });
  ASSERT_TRUE(st.ok()) << st.describe();
  for (std::uint64_t i = 41; i < kCap + 40; ++i) {
    ASSERT_TRUE(q.try_pop(v)) << "item " << i;
    ASSERT_EQ(v, i);
  }
  EXPECT_FALSE(q.try_pop(v)) << "popped " << v << " from an empty queue";
  // A consumer killed while looking ahead: the next one continues from head.
  for (std::uint64_t i = 0; i < kCap; ++i) ASSERT_TRUE(q.try_push(1000 + i));
  const pid_t pid = fork_child([&] {
    auto c = SpscQueue<std::uint64_t>::attach(name);
    std::uint64_t w = 0;
    for (int i = 0; i < 10; ++i) (void)c.try_pop(w);
    for (;;) ::pause();
    return 0;
  });
  std::this_thread::sleep_for(50ms);
  (void)kill9(pid);
  const std::uint64_t head = q.consumer_index();
  for (std::uint64_t i = head; i < q.producer_index(); ++i) {
    ASSERT_TRUE(q.try_pop(v));
    ASSERT_EQ(v, 1000 + (i - (kCap + 40)));
  }
  EXPECT_FALSE(q.try_pop(v));
}

// Batch pops and peek() find how many items are published with a probe of
// the batch's last mark and a binary search: every count from 0 to past the
// batch size, wrapping the ring, returns exactly what is there, in order.
TEST(LockfreeKill, SpscBatchPopFindsExactlyWhatIsPublished) {
  const std::string name = unique_name("batchsearch");
  Unlinker u{name};
  auto q = SpscQueue<std::uint64_t>::create(name, 64);
  auto c = SpscQueue<std::uint64_t>::attach(name);  // a consumer handle of its own
  std::uint64_t next = 0, expect = 0;
  std::uint64_t out[32];
  for (std::uint64_t k = 0; k <= 40; ++k) {
    for (std::uint64_t i = 0; i < k; ++i) ASSERT_TRUE(q.try_push(next++));
    const std::span<const std::uint64_t> seen = c.peek(32);
    EXPECT_LE(seen.size(), std::min<std::uint64_t>(k, 32));
    const std::size_t n = c.try_pop(std::span<std::uint64_t>(out));
    ASSERT_EQ(n, std::min<std::uint64_t>(k, 32)) << "k = " << k;
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(out[i], expect++);
    std::uint64_t v = 0;
    while (c.try_pop(v)) ASSERT_EQ(v, expect++);
    ASSERT_EQ(expect, next);
  }
}

}  // namespace
}  // namespace shmkit::test
