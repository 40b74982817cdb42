// tests/storm/spsc.cpp — SpscQueueStorm: an SpscQueue whose producer and
// consumer are SIGKILLed at random: never a torn item, the producer's order
// kept, no duplicates, losses only where spsc_queue.hpp documents them,
// timed calls return.
// The harness and what every storm checks: harness.hpp.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <new>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "harness.hpp"
#include "shmkit/lockfree/spsc_queue.hpp"

namespace shmkit::test {
namespace {

// ============================================================ SPSC

constexpr std::uint64_t kSpscCapacity = 256;
constexpr std::size_t kSpscBatch = 16;
constexpr int kSpscProducer = 0;
constexpr int kSpscConsumer = 1;

// Item seq == its queue position: the producer of position p pushes seq p,
// so the consumer checks no loss and no duplicate by seq == position alone.
struct SpscStormState {
  CrewControl crew;
  std::atomic<std::uint64_t> pushed;               // producer: positions it saw accepted
  std::atomic<std::uint64_t> consumed;             // consumer: positions it checked
  std::atomic<std::uint64_t> producers;            // incarnations (the items' origin)
  std::atomic<std::uint64_t> consumed_unrecorded;  // ... consumed without recording (its business)
  // Crash windows hit: restarts that found what the dead one had done past
  // its last record (a consumer: head moved; a producer: items published).
  std::atomic<std::uint64_t> consumer_died_unrecorded;
  std::atomic<std::uint64_t> producer_died_unrecorded;
  std::atomic<std::uint64_t> timeouts;  // timed calls that returned false
};

// Now and then, between an operation and its record, a pause: it widens
// the window "done in the queue, not yet recorded" that a kill must land in
// for a restarted side to find the queue ahead of the record.
void record_window(std::mt19937_64& rng) {
  if (rng() % 64 == 0) busy_pause(rng, 2000);
}

int spsc_producer(const std::string& state_name, const std::string& queue_name, std::uint64_t seed) {
  Attached<SpscStormState> block(state_name);
  SpscStormState& s = *block;
  FailureLog& log = s.crew.log;
  auto q = SpscQueue<StormItem>::attach(queue_name);
  std::mt19937_64 rng(seed);
  const std::uint64_t origin = s.producers.fetch_add(1) + 1;
  // The new producer continues from producer_index() (tail, and the items
  // a dead producer marked after its last tail store). A dead one may have
  // published up to one batch it did not record.
  std::uint64_t next = q.producer_index();
  const std::uint64_t recorded = s.pushed.load();
  if (next < recorded || next > recorded + kSpscBatch) {
    log.report("restarted producer finds tail %llu, the last one recorded %llu pushed",
               static_cast<unsigned long long>(next), static_cast<unsigned long long>(recorded));
    return 2;
  }
  if (q.consumer_index() > next) {
    log.report("head %llu is past tail %llu", static_cast<unsigned long long>(q.consumer_index()),
               static_cast<unsigned long long>(next));
    return 3;
  }
  if (next > recorded) s.producer_died_unrecorded.fetch_add(1);
  s.pushed.store(next);
  std::array<StormItem, kSpscBatch> batch;
  while (checkpoint(s.crew, kSpscProducer)) {
    std::uint64_t n = 0;
    if (rng() % 4 == 0) {
      const std::size_t k = 1 + rng() % kSpscBatch;
      for (std::size_t i = 0; i < k; ++i) batch[i] = StormItem::make(next + i, origin);
      n = q.push_for(std::span<const StormItem>(batch.data(), k), kTimedCall);
    } else {
      n = q.push_for(StormItem::make(next, origin), kTimedCall) ? 1 : 0;
    }
    if (n == 0) {
      s.timeouts.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    next += n;
    record_window(rng);
    s.pushed.store(next, std::memory_order_release);
    s.crew.progress[kSpscProducer].fetch_add(1, std::memory_order_relaxed);
  }
  return 0;
}

bool spsc_check_item(FailureLog& log, const StormItem& it, std::uint64_t position) {
  if (!it.intact()) {
    log.report("torn item at position %llu (seq %llu)", static_cast<unsigned long long>(position),
               static_cast<unsigned long long>(it.seq));
    return false;
  }
  if (it.seq != position) {
    log.report("position %llu delivered item %llu: %s", static_cast<unsigned long long>(position),
               static_cast<unsigned long long>(it.seq),
               it.seq < position ? "a duplicate" : "items were lost");
    return false;
  }
  return true;
}

int spsc_consumer(const std::string& state_name, const std::string& queue_name, std::uint64_t seed) {
  Attached<SpscStormState> block(state_name);
  SpscStormState& s = *block;
  FailureLog& log = s.crew.log;
  auto q = SpscQueue<StormItem>::attach(queue_name);
  std::mt19937_64 rng(seed);
  // The new consumer resumes at the shared head: what the dead one had
  // consumed (head store) but not recorded is gone for us (the header: its
  // business), what it had only copied comes again.
  std::uint64_t expect = q.consumer_index();
  const std::uint64_t recorded = s.consumed.load();
  if (expect < recorded || expect > recorded + kSpscBatch) {
    log.report("restarted consumer finds head %llu, the last one recorded %llu consumed",
               static_cast<unsigned long long>(expect), static_cast<unsigned long long>(recorded));
    return 2;
  }
  s.consumed_unrecorded.fetch_add(expect - recorded);
  if (expect > recorded) s.consumer_died_unrecorded.fetch_add(1);
  s.consumed.store(expect);
  std::array<StormItem, kSpscBatch> buf;
  while (checkpoint(s.crew, kSpscConsumer)) {
    std::size_t n = 0;
    if (rng() % 4 == 0) {
      n = q.pop_for(std::span<StormItem>(buf.data(), 1 + rng() % kSpscBatch), kTimedCall);
    } else {
      n = q.pop_for(buf[0], kTimedCall) ? 1 : 0;
    }
    if (n == 0) {
      s.timeouts.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    for (std::size_t i = 0; i < n; ++i) {
      if (!spsc_check_item(log, buf[i], expect)) return 3;
      ++expect;
    }
    record_window(rng);
    s.consumed.store(expect, std::memory_order_release);
    s.crew.progress[kSpscConsumer].fetch_add(1, std::memory_order_relaxed);
  }
  return 0;
}

TEST(Storm, SpscQueueStorm) {
  const int rounds = storm_rounds();
  const std::uint64_t seed = storm_seed();
  SCOPED_TRACE("SHMKIT_STORM_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  StateBlock<SpscStormState> block("storm_spscst");
  SpscStormState& s = *block;
  const std::string queue_name = unique_name("storm_spsc");
  UnlinkAtExit queue_guard{queue_name};
  auto q = SpscQueue<StormItem>::create(queue_name, kSpscCapacity);

  Crew crew(s.crew, 2, [&](int slot) {
    return guarded(s.crew.log, slot == kSpscProducer ? "spsc producer" : "spsc consumer", [&] {
      return slot == kSpscProducer ? spsc_producer(block.name(), queue_name, child_seed(rng))
                                   : spsc_consumer(block.name(), queue_name, child_seed(rng));
    });
  });
  crew.start_all();
  ASSERT_TRUE(crew.await_started({kSpscProducer, kSpscConsumer}, "first push and pop"));

  const auto t0 = Clock::now();
  std::uint64_t producer_kills = 0, consumer_kills = 0;
  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    random_delay(rng);
    const std::vector<int> victims = crew.pick_victims(rng);
    ASSERT_TRUE(crew.kill(victims));
    for (int v : victims) (v == kSpscProducer ? producer_kills : consumer_kills) += 1;
    // While one side is dead the other's timed calls return (it loops on
    // them); the replacement attaches and the stream flows again.
    const std::uint64_t consumed = s.consumed.load();
    for (int v : victims) crew.start(v);
    ASSERT_TRUE(crew.await_started(victims, "first operation by a restarted side"));
    ASSERT_TRUE(
        crew.wait_until([&] { return s.consumed.load() > consumed; }, "item delivered after the restart"));
  }
  ASSERT_TRUE(crew.stop_all());
  EXPECT_EQ(s.crew.log.count.load(), 0u) << s.crew.log.describe();

  // Both sides stopped cleanly: the indices are exactly what they recorded,
  // and a fresh consumer drains the rest of the stream in order.
  EXPECT_EQ(q.producer_index(), s.pushed.load());
  EXPECT_EQ(q.consumer_index(), s.consumed.load());
  std::uint64_t expect = q.consumer_index();
  {
    auto drain = SpscQueue<StormItem>::attach(queue_name);
    StormItem it;
    while (drain.try_pop(it)) {
      ASSERT_TRUE(it.intact()) << "torn item at position " << expect;
      ASSERT_EQ(it.seq, expect) << "lost or duplicated at position " << expect;
      ++expect;
    }
  }
  EXPECT_EQ(expect, q.producer_index()) << "committed items missing at the end";
  EXPECT_TRUE(q.empty());
  EXPECT_GT(expect, 0u);

  // The creator's handle, idle since create() while other processes
  // produced and consumed, takes over each side in turn (one producer and
  // one consumer at a time, as the header allows): a supervisor replacing a
  // dead worker with the handle it already has. Its process-local caches of
  // the other side's index are stale; they must not matter.
  {
    StormItem it;
    EXPECT_FALSE(q.try_pop(it)) << "the creator's handle popped an item from an empty queue (seq " << it.seq
                                << "): its stale cache of tail was trusted";
    EXPECT_EQ(q.consumer_index(), q.producer_index()) << "head moved past tail";
    ASSERT_TRUE(q.try_push(StormItem::make(expect, 0)));
    auto other = SpscQueue<StormItem>::attach(queue_name);
    ASSERT_TRUE(other.try_pop(it));
    EXPECT_TRUE(it.intact() && it.seq == expect) << "the creator's handle as producer";
  }

  std::ostringstream line;
  line << "SpscQueueStorm: " << rounds << " rounds, " << producer_kills + consumer_kills << " kills ("
       << producer_kills << " producer, " << consumer_kills << " consumer), " << expect << " items in order, "
       << s.consumed_unrecorded.load()
       << " consumed by a dead consumer before it recorded them; kills after the queue moved, before "
       << "the record: " << s.consumer_died_unrecorded.load() << " consumer, "
       << s.producer_died_unrecorded.load() << " producer; " << s.timeouts.load()
       << " timed calls returned empty-handed, seed " << seed << ", "
       << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count() << " ms";
  print_summary(line.str());
  RecordProperty("rounds", rounds);
  RecordProperty("kills", static_cast<int>(producer_kills + consumer_kills));
  RecordProperty("items", static_cast<int>(expect));
  // The crash windows: a side killed after the queue took its operation and
  // before it recorded it, whose successor must resume from the queue's
  // index (widened by record_window(): required at any size).
  expect_window_hit("SpscQueueStorm", "consumer killed after its pop, before recording it",
                    s.consumer_died_unrecorded.load(), true, rounds);
  expect_window_hit("SpscQueueStorm", "producer killed after its push, before recording it",
                    s.producer_died_unrecorded.load(), true, rounds);
}

}  // namespace
}  // namespace shmkit::test
