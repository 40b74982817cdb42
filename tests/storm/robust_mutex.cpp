// tests/storm/robust_mutex.cpp — RobustMutexStorm: a journaled multi-word
// update under a RobustMutex whose holders are SIGKILLed at random: owner
// death is always reported, the torn update is seen and rolled forward, no
// update lost or invented.
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
#include "shmkit/sync/robust_mutex.hpp"

namespace shmkit::test {
namespace {

// ============================================================ RobustMutex

constexpr int kMutexWorkers = 4;
constexpr int kDataWords = 8;

// The protected data: version v is committed when words[k] == word_value(v, k)
// for every k. An update writes the version it is making into the journal,
// then the words one by one, then the version, then clears the journal, so
// a holder killed anywhere leaves either a consistent state or a journal
// from which the next holder can roll the update forward.
struct MutexStormState {
  CrewControl crew;
  RobustMutex mutex;
  // Protected by `mutex`. std::atomic only so that each store is one store
  // the compiler keeps in program order (a SIGKILL can cut between any two).
  std::atomic<std::uint64_t> version;
  std::atomic<std::uint64_t> journal;  // the version being written; 0: none
  std::atomic<std::uint64_t> words[kDataWords];
  std::atomic<std::int32_t> holder;  // pid inside the critical section, 0 outside
  // Statistics (relaxed).
  std::atomic<std::uint64_t> committed;        // updates counted after unlock
  std::atomic<std::uint64_t> owner_died;       // lock() results owner_died
  std::atomic<std::uint64_t> torn_rolled;      // ... that found a half-written update
  std::atomic<std::uint64_t> journal_rolled;   // ... that found a journal, words untouched
  std::atomic<std::uint64_t> clean_recovered;  // ... that found no update in flight
  std::atomic<std::uint64_t> timed_out;        // timed lock calls that returned timed_out
};

std::uint64_t word_value(std::uint64_t version, int k) {
  return mix(version * kDataWords + static_cast<std::uint64_t>(k) + 0x5bd1e995u);
}

bool words_match(const MutexStormState& s, std::uint64_t version) {
  for (int k = 0; k < kDataWords; ++k) {
    if (s.words[k].load(std::memory_order_relaxed) != word_value(version, k)) return false;
  }
  return true;
}

// The next holder after an owner death: check the state is one a dead holder
// can leave, roll a journaled update forward, count what was seen.
bool repair_after_owner_death(MutexStormState& s, FailureLog& log) {
  const std::uint64_t v = s.version.load(std::memory_order_relaxed);
  const std::uint64_t j = s.journal.load(std::memory_order_relaxed);
  if (j == 0) {
    if (!words_match(s, v)) {
      log.report("owner died with no update in flight, yet the words do not match version %llu",
                 static_cast<unsigned long long>(v));
      return false;
    }
    s.clean_recovered.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  // Killed after writing the journal: v + 1 (words partly written), or after
  // committing the version but before clearing the journal: v.
  if (j != v + 1 && j != v) {
    log.report("journal names version %llu but version is %llu", static_cast<unsigned long long>(j),
               static_cast<unsigned long long>(v));
    return false;
  }
  bool torn = false;
  for (int k = 0; k < kDataWords; ++k) {
    const std::uint64_t w = s.words[k].load(std::memory_order_relaxed);
    if (w == word_value(v, k)) continue;
    if (w != word_value(j, k)) {
      log.report("word %d is neither version %llu's nor version %llu's: corrupted", k,
                 static_cast<unsigned long long>(v), static_cast<unsigned long long>(j));
      return false;
    }
    torn = true;
  }
  (torn ? s.torn_rolled : s.journal_rolled).fetch_add(1, std::memory_order_relaxed);
  // Roll forward; idempotent, so a repairer killed here is repaired in turn.
  for (int k = 0; k < kDataWords; ++k) {
    s.words[k].store(word_value(j, k), std::memory_order_release);
  }
  s.version.store(j, std::memory_order_release);
  s.journal.store(0, std::memory_order_release);
  return true;
}

LockResult lock_some_way(MutexStormState& s, std::mt19937_64& rng) {
  // Every entry point: a SIGKILL may land in any of them, and owner death
  // must be reported by each.
  switch (rng() % 4) {
    case 0:
      return s.mutex.lock();
    case 1:
      for (;;) {
        const LockResult r = s.mutex.try_lock();
        if (r != LockResult::busy) return r;
        ::sched_yield();
      }
    case 2:
      for (;;) {
        const LockResult r = s.mutex.try_lock_for(std::chrono::microseconds(rng() % 2000));
        if (r != LockResult::timed_out) return r;
        s.timed_out.fetch_add(1, std::memory_order_relaxed);
      }
    default:
      for (;;) {
        const LockResult r = s.mutex.try_lock_until(std::chrono::system_clock::now() +
                                                    std::chrono::microseconds(rng() % 2000));
        if (r != LockResult::timed_out) return r;
        s.timed_out.fetch_add(1, std::memory_order_relaxed);
      }
  }
}

int mutex_worker(const std::string& name, int slot, std::uint64_t seed) {
  Attached<MutexStormState> block(name);
  MutexStormState& s = *block;
  FailureLog& log = s.crew.log;
  std::mt19937_64 rng(seed);
  const std::int32_t me = static_cast<std::int32_t>(::getpid());
  while (checkpoint(s.crew, slot)) {
    const LockResult r = lock_some_way(s, rng);
    if (!holds_lock(r)) {
      log.report("lock returned %s: only acquired or owner_died are possible here", to_string(r));
      return 2;
    }
    const std::int32_t inside = s.holder.load();
    if (r == LockResult::acquired) {
      if (inside != 0) {
        log.report("acquired (no owner death reported) while pid %d was inside", inside);
        return 3;
      }
      if (s.journal.load() != 0 || !words_match(s, s.version.load())) {
        log.report(
            "acquired normally but the data is torn (version %llu, journal %llu): "
            "an owner death went unreported",
            static_cast<unsigned long long>(s.version.load()),
            static_cast<unsigned long long>(s.journal.load()));
        return 4;
      }
    } else {
      s.owner_died.fetch_add(1, std::memory_order_relaxed);
      if (inside == me) {
        log.report("owner_died names this live process as the dead owner");
        return 5;
      }
      if (!repair_after_owner_death(s, log)) return 6;
      if (!s.mutex.make_consistent()) {
        log.report("make_consistent() failed after owner_died");
        return 7;
      }
    }
    s.holder.store(me);
    // The update, word by word, with pauses that widen the window in which
    // a kill leaves it half-written.
    const std::uint64_t next = s.version.load(std::memory_order_relaxed) + 1;
    s.journal.store(next, std::memory_order_release);
    for (int k = 0; k < kDataWords; ++k) {
      s.words[k].store(word_value(next, k), std::memory_order_release);
      busy_pause(rng, 32);
    }
    s.version.store(next, std::memory_order_release);
    s.journal.store(0, std::memory_order_release);
    if (s.holder.load() != me) {
      log.report("pid %d entered the critical section while this process held the lock", s.holder.load());
      return 8;
    }
    s.holder.store(0);
    if (!s.mutex.unlock()) {
      log.report("unlock() refused by the owner");
      return 9;
    }
    s.committed.fetch_add(1, std::memory_order_relaxed);
    s.crew.progress[slot].fetch_add(1, std::memory_order_relaxed);
    busy_pause(rng, 256);  // outside the lock: let the others in
  }
  return 0;
}

// The parent's turn, while every survivor is parked outside the lock: it
// locks like any worker (told owner_died if a victim died holding the lock,
// and repairing then), and checks the invariant and the update accounting:
// no update lost, none invented. Every counted update is in the version; the
// only uncounted ones belong to killed holders (committed before the count,
// or rolled forward by the next holder): at most one per kill.
testing::AssertionResult parent_turn(MutexStormState& s, std::uint64_t kills, std::uint64_t* parent_repairs) {
  const LockResult r = s.mutex.try_lock_for(std::chrono::seconds(10));
  if (!holds_lock(r)) {
    return testing::AssertionFailure()
           << "the parent could not lock with every worker parked: " << to_string(r);
  }
  if (r == LockResult::owner_died) {
    ++*parent_repairs;
    s.owner_died.fetch_add(1);
    if (!repair_after_owner_death(s, s.crew.log)) {
      return testing::AssertionFailure() << "parent repair: " << s.crew.log.describe();
    }
    if (!s.mutex.make_consistent()) {
      return testing::AssertionFailure() << "make_consistent() failed";
    }
  } else if (s.holder.load() != 0) {
    return testing::AssertionFailure() << "acquired (no owner death) but pid " << s.holder.load()
                                       << " is marked inside the critical section";
  }
  s.holder.store(0);
  const std::uint64_t version = s.version.load();
  const std::uint64_t committed = s.committed.load();
  testing::AssertionResult result = testing::AssertionSuccess();
  if (s.journal.load() != 0 || !words_match(s, version)) {
    result = testing::AssertionFailure() << "the protected data is torn at rest (version " << version
                                         << ", journal " << s.journal.load() << ")";
  } else if (version < committed) {
    result = testing::AssertionFailure() << "version " << version << " < " << committed
                                         << " counted updates: committed updates were lost";
  } else if (version > committed + kills) {
    result = testing::AssertionFailure() << "version " << version << " > " << committed
                                         << " counted updates + " << kills << " kills: updates invented";
  }
  if (!s.mutex.unlock()) return testing::AssertionFailure() << "the parent's unlock() failed";
  return result;
}

// Why survivors did not park: is the lock they wait for in fact free?
std::string mutex_diagnosis(MutexStormState& s) {
  const LockResult r = s.mutex.try_lock();
  if (holds_lock(r)) {
    if (r == LockResult::owner_died) (void)s.mutex.make_consistent();
    (void)s.mutex.unlock();
    return std::string("the mutex is free (parent's try_lock: ") + to_string(r) +
           "), yet a survivor sleeps in lock(): a lost wake-up";
  }
  return std::string("parent's try_lock: ") + to_string(r) + ", holder field pid " +
         std::to_string(s.holder.load());
}

TEST(Storm, RobustMutexStorm) {
  const int rounds = storm_rounds();
  const std::uint64_t seed = storm_seed();
  SCOPED_TRACE("SHMKIT_STORM_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  StateBlock<MutexStormState> block("storm_mutex");
  MutexStormState& s = *block;
  for (int k = 0; k < kDataWords; ++k) s.words[k].store(word_value(0, k));

  Crew crew(s.crew, kMutexWorkers, [&](int slot) {
    return guarded(s.crew.log, "mutex worker",
                   [&] { return mutex_worker(block.name(), slot, child_seed(rng)); });
  });
  crew.start_all();
  ASSERT_TRUE(crew.await_started({0, 1, 2, 3}, "first update by every worker"));

  const auto t0 = Clock::now();
  std::uint64_t kills = 0, parent_repairs = 0;
  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    random_delay(rng);
    const std::vector<int> victims = crew.pick_victims(rng);
    ASSERT_TRUE(crew.kill(victims));
    kills += victims.size();
    // Every survivor must reach its checkpoint with no one else working: a
    // survivor asleep in lock() that no unlock or owner death will wake
    // (which the others' traffic would otherwise hide) fails here.
    ASSERT_TRUE(crew.pause([&] { return mutex_diagnosis(s); }));
    ASSERT_TRUE(parent_turn(s, kills, &parent_repairs));
    for (int v : victims) crew.start(v);
    crew.resume();
    // Every worker, survivors included, must update again.
    std::array<std::uint64_t, kMutexWorkers> before{};
    for (int w = 0; w < kMutexWorkers; ++w) before[w] = s.crew.progress[w].load();
    ASSERT_TRUE(crew.wait_until(
        [&] {
          for (int w = 0; w < kMutexWorkers; ++w) {
            const bool restarted = std::find(victims.begin(), victims.end(), w) != victims.end();
            if (s.crew.progress[w].load() <= (restarted ? 0 : before[w])) return false;
          }
          return true;
        },
        "update by every worker after the kill"));
  }
  ASSERT_TRUE(crew.stop_all());
  EXPECT_EQ(s.crew.log.count.load(), 0u) << s.crew.log.describe();

  // Every worker unlocked before exiting, and the owner deaths were all
  // consumed by later lockers: the parent gets the lock plainly.
  std::uint64_t late_repairs = 0;
  ASSERT_EQ(s.mutex.try_lock(), LockResult::acquired);
  ASSERT_TRUE(s.mutex.unlock());
  ASSERT_TRUE(parent_turn(s, kills, &late_repairs));
  EXPECT_EQ(late_repairs, 0u);
  const std::uint64_t committed = s.committed.load();
  // Usable by an unrelated mapping of the block, too.
  const ExitStatus other = run_child([&] {
    auto shm = SharedMemory::attach(block.name());
    auto& t = *static_cast<MutexStormState*>(shm.data());
    if (t.mutex.lock() != LockResult::acquired) return 1;
    return t.mutex.unlock() ? 0 : 2;
  });
  EXPECT_TRUE(other.ok()) << other.describe();

  const std::uint64_t died = s.owner_died.load();
  const std::uint64_t torn = s.torn_rolled.load();
  std::ostringstream line;
  line << "RobustMutexStorm: " << rounds << " rounds, " << kills << " kills, " << died
       << " owner-died recoveries (" << parent_repairs << " by the parent; " << torn
       << " torn updates rolled forward, " << s.journal_rolled.load() << " journal-only, "
       << s.clean_recovered.load() << " clean), " << committed << " updates, " << s.timed_out.load()
       << " timed locks returned timed_out, seed " << seed << ", "
       << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count() << " ms";
  print_summary(line.str());
  RecordProperty("rounds", rounds);
  RecordProperty("kills", static_cast<int>(kills));
  RecordProperty("owner_died_recoveries", static_cast<int>(died));
  RecordProperty("torn_updates_rolled_forward", static_cast<int>(torn));
  EXPECT_GT(died, 0u) << "no kill landed while a worker held the lock in " << rounds << " rounds";
  EXPECT_GT(torn, 0u) << "no kill landed inside an update in " << rounds << " rounds";
}

}  // namespace
}  // namespace shmkit::test
