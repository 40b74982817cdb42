// tests/storm/mpmc.cpp — MpmcQueueStorm: an MpmcQueue whose producers and
// consumers are SIGKILLed at random, also inside a claim: never a torn item,
// per-producer order, no duplicates, losses only where mpmc_queue.hpp
// documents them (dead claims), timed calls return.
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
#include "shmkit/lockfree/mpmc_queue.hpp"

namespace shmkit::test {
namespace {

// ============================================================ MPMC

constexpr int kMpmcProducers = 2;
constexpr int kMpmcConsumers = 2;
constexpr std::uint64_t kMpmcCapacity = 64;
constexpr std::uint64_t kWindow = std::uint64_t{1} << 17;  // seen[] entries per producer
constexpr std::uint64_t kQuota = kWindow / 2;              // items per producer per round
constexpr std::uint64_t kProbeOrigin = 0xfeed;

// Producer p pushes items (seq, p) with seq increasing; every pop marks
// seen[p][seq % kWindow]. Each round the parent pauses everyone, drains the
// queue, and checks the round's range of every producer: each item seen
// once, or lost only as the header allows.
struct MpmcStormState {
  CrewControl crew;
  std::atomic<std::uint64_t>
      epoch;  // the queue's name suffix: stays 0 (dead claims are stepped over, the queue is never recreated)
  std::atomic<std::uint64_t> next_seq[kMpmcProducers];   // recorded after each accepted push
  std::atomic<std::uint64_t> quota_end[kMpmcProducers];  // a producer idles at this seq
  std::atomic<std::uint8_t> seen[kMpmcProducers][kWindow];
  std::atomic<std::uint64_t> popped;
  std::atomic<std::uint64_t> timeouts;
};

std::string mpmc_name(const std::string& base, std::uint64_t epoch) {
  return base + "_e" + std::to_string(epoch);
}

int mpmc_producer(const std::string& state_name, const std::string& base, int p) {
  Attached<MpmcStormState> block(state_name);
  MpmcStormState& s = *block;
  std::uint64_t epoch = s.epoch.load();
  auto q = MpmcQueue<MpmcItem>::attach(mpmc_name(base, epoch));
  std::uint64_t next = s.next_seq[p].load();  // the parent set where this incarnation starts
  while (checkpoint(s.crew, p)) {
    if (s.epoch.load() != epoch) {
      epoch = s.epoch.load();
      q = MpmcQueue<MpmcItem>::attach(mpmc_name(base, epoch));
    }
    if (next >= s.quota_end[p].load()) {
      // Done for this round (keeps a round's items within seen[]'s window).
      (void)futex_wait_for(s.crew.phase, s.crew.phase.load(), std::chrono::milliseconds(5));
      continue;
    }
    if (!q.push_for(MpmcItem::make(next, static_cast<std::uint64_t>(p)), kTimedCall)) {
      s.timeouts.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    ++next;
    s.next_seq[p].store(next, std::memory_order_release);
    s.crew.progress[p].fetch_add(1, std::memory_order_relaxed);
  }
  return 0;
}

// One consumer's checks of an item; `last` is its per-producer high mark.
bool mpmc_accept(MpmcStormState& s, std::array<std::int64_t, kMpmcProducers>& last, const MpmcItem& it,
                 const char* who) {
  FailureLog& log = s.crew.log;
  if (!it.intact() || it.origin >= kMpmcProducers) {
    log.report("%s popped a torn or foreign item (seq %llu, origin %llu)", who,
               static_cast<unsigned long long>(it.seq), static_cast<unsigned long long>(it.origin));
    return false;
  }
  const std::size_t p = static_cast<std::size_t>(it.origin);
  if (static_cast<std::int64_t>(it.seq) <= last[p]) {
    log.report("%s popped producer %zu's item %llu after its item %lld: per-producer FIFO broken", who, p,
               static_cast<unsigned long long>(it.seq), static_cast<long long>(last[p]));
    return false;
  }
  last[p] = static_cast<std::int64_t>(it.seq);
  s.seen[p][it.seq % kWindow].fetch_add(1, std::memory_order_relaxed);
  s.popped.fetch_add(1, std::memory_order_relaxed);
  return true;
}

int mpmc_consumer(const std::string& state_name, const std::string& base, int slot) {
  Attached<MpmcStormState> block(state_name);
  MpmcStormState& s = *block;
  std::uint64_t epoch = s.epoch.load();
  auto q = MpmcQueue<MpmcItem>::attach(mpmc_name(base, epoch));
  std::array<std::int64_t, kMpmcProducers> last;
  last.fill(-1);
  while (checkpoint(s.crew, slot)) {
    if (s.epoch.load() != epoch) {
      epoch = s.epoch.load();
      q = MpmcQueue<MpmcItem>::attach(mpmc_name(base, epoch));
    }
    MpmcItem it;
    if (!q.pop_for(it, kTimedCall)) {
      s.timeouts.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    if (!mpmc_accept(s, last, it, "consumer")) return 2;
    s.crew.progress[slot].fetch_add(1, std::memory_order_relaxed);
  }
  return 0;
}

TEST(Storm, MpmcQueueStorm) {
  const int rounds = storm_rounds();
  const std::uint64_t seed = storm_seed();
  SCOPED_TRACE("SHMKIT_STORM_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  StateBlock<MpmcStormState> block("storm_mpmcst");
  MpmcStormState& s = *block;
  const std::string base = unique_name("storm_mpmc");
  UnlinkAtExit queue_guard{mpmc_name(base, 0)};
  auto q = MpmcQueue<MpmcItem>::create(queue_guard.name, kMpmcCapacity);
  std::array<std::uint64_t, kMpmcProducers> round_start{};
  for (int p = 0; p < kMpmcProducers; ++p) s.quota_end[p].store(kQuota);

  auto is_producer = [](int slot) { return slot < kMpmcProducers; };
  Crew crew(s.crew, kMpmcProducers + kMpmcConsumers, [&](int slot) {
    return guarded(s.crew.log, is_producer(slot) ? "mpmc producer" : "mpmc consumer", [&] {
      return is_producer(slot) ? mpmc_producer(block.name(), base, slot)
                               : mpmc_consumer(block.name(), base, slot);
    });
  });
  crew.start_all();
  ASSERT_TRUE(crew.await_started({0, 1, 2, 3}, "first push or pop by every child"));

  std::array<std::int64_t, kMpmcProducers> parent_last;
  parent_last.fill(-1);
  std::uint64_t producer_kills = 0, consumer_kills = 0, lost = 0, lost_allowed = 0;
  std::uint64_t stalls = 0, probes = 0, skipped_total = 0, released_total = 0;
  // A killed producer's item at its recorded seq that was delivered: it
  // died after its push and before recording it.
  std::uint64_t published_unrecorded = 0;
  MpmcLosses reported{};
  const auto t0 = Clock::now();

  // After a pause (or the stop): drains (stepping over dead claims), checks
  // each producer's range for the round and what the queue reported lost.
  auto settle_round = [&](const std::vector<int>& victims) -> testing::AssertionResult {
    std::uint64_t round_consumer_kills = 0;
    std::array<bool, kMpmcProducers> producer_killed{};
    for (int v : victims) {
      if (is_producer(v)) {
        producer_killed[static_cast<std::size_t>(v)] = true;
      } else {
        ++round_consumer_kills;
      }
    }
    // Everyone is parked or dead. A producer killed between its claim and
    // its publish, or a consumer killed between its claim and its release,
    // must not stall the queue (the header): the parent drains it, running
    // unblock() as a survivor that only uses try_ calls must, until it is
    // empty and a full lap of probes goes round. Every claimant here is
    // SIGKILLed, never stopped, so every claim left behind is a dead one.
    MpmcItem it;
    testing::AssertionResult bad = testing::AssertionSuccess();
    const bool settled = eventually(
        [&] {
          while (q.try_pop(it)) {
            if (it.origin == kProbeOrigin) continue;  // a probe a previous pass left
            if (!mpmc_accept(s, parent_last, it, "parent")) {
              bad = testing::AssertionFailure() << s.crew.log.describe();
              return true;
            }
          }
          if (q.unblock() != MpmcUnblock::none || !q.empty()) return false;
          std::uint64_t pushed = 0;
          while (pushed < kMpmcCapacity && q.try_push(MpmcItem::make(pushed, kProbeOrigin))) ++pushed;
          for (std::uint64_t i = 0; i < pushed; ++i) {
            if (!q.try_pop(it) || it.origin != kProbeOrigin || it.seq != i || !it.intact()) {
              bad = testing::AssertionFailure()
                    << "probe " << i << " of " << pushed << " did not come back in order";
              return true;
            }
          }
          probes += pushed;
          if (pushed == kMpmcCapacity) return true;
          (void)q.unblock();
          return false;
        },
        std::chrono::milliseconds(10'000), std::chrono::milliseconds(2));
    if (!bad) return bad;
    if (!settled) {
      ++stalls;
      return testing::AssertionFailure() << "the queue stayed stalled after the kills (size " << q.size()
                                         << "): a dead claimant was not stepped over";
    }
    const MpmcLosses now = q.losses();
    const std::uint64_t skipped = now.producer_claims_skipped - reported.producer_claims_skipped;
    const std::uint64_t released = now.consumer_claims_released - reported.consumer_claims_released;
    reported = now;
    skipped_total += skipped;
    released_total += released;
    std::uint64_t round_producer_kills = 0;
    for (bool k : producer_killed) round_producer_kills += k ? 1 : 0;
    // Each dead producer held at most one claim, each dead consumer at most
    // one; the queue counts each stepped-over claim once.
    if (skipped > round_producer_kills || released > round_consumer_kills) {
      return testing::AssertionFailure()
             << "the queue reported " << skipped << " skipped producer claims and " << released
             << " released consumer claims after " << round_producer_kills << " producer and "
             << round_consumer_kills << " consumer kills";
    }
    // Every item of the round: seen once; or unseen, which only a consumer
    // killed with it in hand or a stall explains; or the one item a killed
    // producer may have pushed without recording it.
    std::uint64_t round_lost = 0;
    for (int p = 0; p < kMpmcProducers; ++p) {
      const std::uint64_t recorded = s.next_seq[p].load();
      const bool killed = producer_killed[static_cast<std::size_t>(p)];
      const std::uint64_t end = recorded + (killed ? 1 : 0);
      for (std::uint64_t seq = round_start[static_cast<std::size_t>(p)]; seq < end; ++seq) {
        auto& cell = s.seen[p][seq % kWindow];
        const std::uint8_t n = cell.load();
        if (n > 1) {
          return testing::AssertionFailure()
                 << "producer " << p << "'s item " << seq << " was popped " << int{n} << " times";
        }
        if (n == 0 && !(killed && seq == recorded)) ++round_lost;
        if (n == 1 && killed && seq == recorded) ++published_unrecorded;
        cell.store(0);
      }
      for (std::uint64_t k = 0; k < kWindow; ++k) {
        if (s.seen[p][k].load() != 0) {
          return testing::AssertionFailure() << "an item of producer " << p << " with seq = " << k << " mod "
                                             << kWindow << " was popped, but was "
                                             << "never pushed in this round";
        }
      }
      // A killed producer's successor skips the unrecorded number.
      round_start[static_cast<std::size_t>(p)] = end;
      s.next_seq[p].store(end);
      s.quota_end[p].store(end + kQuota);
    }
    // Lost: only items in a killed consumer's hands (popped, or claimed
    // and released by a survivor: those the queue reported).
    const std::uint64_t allowed = round_consumer_kills;
    lost += round_lost;
    lost_allowed += allowed;
    if (round_lost > allowed) {
      return testing::AssertionFailure() << round_lost << " items lost in one round, but only "
                                         << round_consumer_kills << " consumers were killed";
    }
    if (released > round_lost + round_producer_kills) {
      return testing::AssertionFailure()
             << "the queue reported " << released << " items lost with dead consumers, but only "
             << round_lost << " went missing";
    }
    return testing::AssertionSuccess();
  };

  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    random_delay(rng);
    const std::vector<int> victims = crew.pick_victims(rng);
    ASSERT_TRUE(crew.kill(victims));
    for (int v : victims) (is_producer(v) ? producer_kills : consumer_kills) += 1;
    ASSERT_TRUE(crew.pause());
    ASSERT_TRUE(settle_round(victims));
    for (int v : victims) crew.start(v);
    const std::uint64_t popped = s.popped.load();
    crew.resume();
    ASSERT_TRUE(crew.await_looped(victims, "first loop by a restarted child"));
    ASSERT_TRUE(crew.wait_until([&] { return s.popped.load() > popped; }, "item popped after the restart"));
  }
  ASSERT_TRUE(crew.pause());
  ASSERT_TRUE(settle_round({}));
  ASSERT_TRUE(crew.stop_all());
  EXPECT_EQ(s.crew.log.count.load(), 0u) << s.crew.log.describe();
  EXPECT_TRUE(q.empty());

  std::ostringstream line;
  line << "MpmcQueueStorm: " << rounds << " rounds, " << producer_kills + consumer_kills << " kills ("
       << producer_kills << " producer, " << consumer_kills << " consumer), " << s.popped.load()
       << " items popped, " << lost << " lost (" << lost_allowed << " allowed by the crash semantics), "
       << skipped_total << " dead producer claims skipped and " << released_total
       << " dead consumer claims released (reported by the queue), " << published_unrecorded
       << " items pushed by a producer killed before it recorded them, " << stalls << " stalls, " << probes
       << " probes, " << s.timeouts.load() << " timed calls returned empty-handed, seed " << seed << ", "
       << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count() << " ms";
  print_summary(line.str());
  RecordProperty("rounds", rounds);
  RecordProperty("kills", static_cast<int>(producer_kills + consumer_kills));
  RecordProperty("lost", static_cast<int>(lost));
  RecordProperty("skipped", static_cast<int>(skipped_total));
  RecordProperty("released", static_cast<int>(released_total));
  EXPECT_EQ(stalls, 0u);
  EXPECT_GT(s.popped.load(), 0u);
  // The crash windows (the wide items widen the queue's own), each hit a
  // few times per 100 rounds at best, so required at the nightly size: a
  // consumer killed with an item popped but not yet marked (the loss the
  // header allows), a producer killed after its push, before recording it;
  // inside the queue, a producer killed between its claim and its publish,
  // a consumer between its claim and its release, each repaired by a
  // survivor once its claimant is proven dead (what losses() counts; every
  // claimant here is SIGKILLed, none stopped).
  const bool nightly = rounds >= kNightlyRounds;
  expect_window_hit("MpmcQueueStorm", "consumer killed with a popped item in hand", lost, nightly, rounds);
  expect_window_hit("MpmcQueueStorm", "producer killed after its push, before recording it",
                    published_unrecorded, nightly, rounds);
  expect_window_hit("MpmcQueueStorm", "producer killed between its claim and its publish", skipped_total,
                    nightly, rounds);
  expect_window_hit("MpmcQueueStorm", "consumer killed between its claim and its release", released_total,
                    nightly, rounds);
}

}  // namespace
}  // namespace shmkit::test
