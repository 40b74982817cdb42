// tests/storm/heap.cpp — HeapStorm: allocators write self-checking objects
// into a shared Heap and record their handles while they are SIGKILLed at
// random; after each round the heap checks, every recorded object is intact
// and none overlap, leaks stay within one object per killed process.
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
#include "shmkit/heap.hpp"

namespace shmkit::test {
namespace {

// ============================================================ Heap

constexpr int kHeapWorkers = 3;
constexpr int kRecordsPerWorker = 64;
constexpr std::size_t kHeapArena = 8 << 20;  // live objects < 200 KiB; room for leaks

// A worker's record of one of its objects. The fields are written first,
// then `published`; a worker unpublishes before it frees. So a record the
// parent sees published names an object that its worker allocated and
// filled, whenever the worker died.
struct ObjectRecord {
  std::atomic<std::uint64_t> published;
  std::atomic<std::uint64_t> offset;
  std::atomic<std::uint64_t> generation;
  std::atomic<std::uint64_t> size;  // bytes asked for, a multiple of 8
  std::atomic<std::uint64_t> seed;
};

HeapHandle handle_of(const ObjectRecord& rec, const std::string& heap_name) {
  return {heap_name, rec.offset.load(), rec.generation.load()};
}

struct HeapStormState {
  CrewControl crew;
  ObjectRecord records[kHeapWorkers][kRecordsPerWorker];
  std::atomic<std::uint64_t> allocations;
  std::atomic<std::uint64_t> frees;
};

// An object's words: its offset, generation and seed, then a stream from the
// seed. An overlapping allocation, or a repair that handed out a live chunk,
// breaks it.
std::uint64_t pattern_word(std::uint64_t offset, std::uint64_t generation, std::uint64_t seed,
                           std::size_t i) {
  switch (i) {
    case 0:
      return offset;
    case 1:
      return generation;
    case 2:
      return seed;
    default:
      return mix(seed + i * 0x9e3779b97f4a7c15ull);
  }
}

void fill_object(std::span<std::byte> bytes, std::uint64_t offset, std::uint64_t generation,
                 std::uint64_t seed, std::size_t size) {
  for (std::size_t i = 0; i < size / 8; ++i) {
    const std::uint64_t w = pattern_word(offset, generation, seed, i);
    std::memcpy(bytes.data() + 8 * i, &w, 8);
  }
}

// Index of the first word of the recorded object that is wrong, or -1.
long check_record(std::span<const std::byte> bytes, const ObjectRecord& rec) {
  const std::uint64_t size = rec.size.load();
  if (bytes.size() < size) return 0;
  for (std::size_t i = 0; i < size / 8; ++i) {
    std::uint64_t w;
    std::memcpy(&w, bytes.data() + 8 * i, 8);
    if (w != pattern_word(rec.offset.load(), rec.generation.load(), rec.seed.load(), i)) {
      return static_cast<long>(i);
    }
  }
  return -1;
}

int heap_worker(const std::string& state_name, const std::string& heap_name, int slot, std::uint64_t seed) {
  Attached<HeapStormState> block(state_name);
  HeapStormState& s = *block;
  FailureLog& log = s.crew.log;
  Heap heap = Heap::attach(heap_name);
  std::mt19937_64 rng(seed);
  ObjectRecord* mine = s.records[slot];
  while (checkpoint(s.crew, slot)) {
    int live = 0;
    int empty = -1;
    for (int i = 0; i < kRecordsPerWorker; ++i) {
      if (mine[i].published.load(std::memory_order_relaxed) != 0) {
        ++live;
      } else if (empty < 0 || rng() % 4 == 0) {
        empty = i;
      }
    }
    if (empty >= 0 && (live == 0 || rng() % 2 == 0)) {
      const std::size_t size = 8 * (3 + rng() % 125);  // 24..1016 bytes
      Heap::Allocation a = heap.allocate(size);
      if (a.bytes.size() < size) {
        log.report("allocate(%zu) returned only %zu bytes", size, a.bytes.size());
        return 2;
      }
      for (std::size_t i = 0; i < a.bytes.size(); ++i) {
        if (a.bytes[i] != std::byte{0}) {
          log.report(
              "new object at offset %llu is not zero-filled at byte %zu (0x%02x): "
              "overlaps a live object?",
              static_cast<unsigned long long>(a.handle.offset), i, static_cast<unsigned>(a.bytes[i]));
          return 3;
        }
      }
      const std::uint64_t object_seed = rng();
      fill_object(a.bytes, a.handle.offset, a.handle.generation, object_seed, size);
      ObjectRecord& rec = mine[empty];
      rec.offset.store(a.handle.offset, std::memory_order_relaxed);
      rec.generation.store(a.handle.generation, std::memory_order_relaxed);
      rec.size.store(size, std::memory_order_relaxed);
      rec.seed.store(object_seed, std::memory_order_relaxed);
      // release: the record's fields before `published` (the parent reads it
      // only while this child is parked or dead, but a kill may cut here).
      rec.published.store(1, std::memory_order_release);
      s.allocations.fetch_add(1, std::memory_order_relaxed);
    } else {
      int pick = static_cast<int>(rng() % kRecordsPerWorker);
      while (mine[pick].published.load(std::memory_order_relaxed) == 0) {
        pick = (pick + 1) % kRecordsPerWorker;
      }
      ObjectRecord& rec = mine[pick];
      const HeapHandle h = handle_of(rec, heap_name);
      const std::span<std::byte> bytes = heap.resolve(h);
      const long bad = check_record(bytes, rec);
      if (bad >= 0) {
        log.report("own object %s corrupted at word %ld before free", h.to_string().c_str(), bad);
        return 4;
      }
      rec.published.store(0, std::memory_order_release);
      heap.deallocate(h);
      s.frees.fetch_add(1, std::memory_order_relaxed);
    }
    s.crew.progress[slot].fetch_add(1, std::memory_order_relaxed);
  }
  return 0;
}

struct LiveObject {
  std::uint64_t begin;  // chunk offset (its tag)
  std::uint64_t end;    // one past the chunk
  int slot;
};

// The parent's check of a quiescent heap (every worker parked or dead):
// the chain is valid, every published object resolves and self-checks, no
// two overlap, and the counters agree with the records up to the leaks the
// header allows (an object allocated or being freed by a killed worker).
testing::AssertionResult verify_heap(const Heap& heap, HeapStormState& s, std::uint64_t kills,
                                     std::uint64_t* leaked_out) {
  try {
    heap.check();
  } catch (const std::exception& e) {
    return testing::AssertionFailure() << "heap.check(): " << e.what();
  }
  std::vector<LiveObject> live;
  std::uint64_t recorded_bytes = 0;
  for (int w = 0; w < kHeapWorkers; ++w) {
    for (int i = 0; i < kRecordsPerWorker; ++i) {
      ObjectRecord& rec = s.records[w][i];
      if (rec.published.load(std::memory_order_acquire) == 0) continue;
      const HeapHandle h = handle_of(rec, heap.name());
      std::span<std::byte> bytes;
      try {
        bytes = heap.resolve(h);
      } catch (const std::exception& e) {
        return testing::AssertionFailure() << "worker " << w << "'s recorded object " << h.to_string()
                                           << " does not resolve: " << e.what();
      }
      const long bad = check_record(bytes, rec);
      if (bad >= 0) {
        return testing::AssertionFailure()
               << "worker " << w << "'s object " << h.to_string() << " is corrupted at word " << bad
               << " (overwritten by an overlapping allocation?)";
      }
      live.push_back({h.offset, h.offset + Heap::kChunkTag + bytes.size(), w});
      recorded_bytes += Heap::kChunkTag + bytes.size();
    }
  }
  std::sort(live.begin(), live.end(),
            [](const LiveObject& a, const LiveObject& b) { return a.begin < b.begin; });
  for (std::size_t i = 1; i < live.size(); ++i) {
    if (live[i].begin < live[i - 1].end) {
      return testing::AssertionFailure()
             << "objects overlap: chunk [" << live[i - 1].begin << ", " << live[i - 1].end << ") of worker "
             << live[i - 1].slot << " and chunk at " << live[i].begin << " of worker " << live[i].slot;
    }
  }
  const HeapStats st = heap.stats();
  if (st.live_objects < live.size()) {
    return testing::AssertionFailure() << "stats() counts " << st.live_objects
                                       << " live objects, fewer than the " << live.size() << " recorded";
  }
  const std::uint64_t leaked = st.live_objects - live.size();
  if (leaked > kills) {
    return testing::AssertionFailure() << leaked << " allocated objects are recorded by nobody, "
                                       << "more than one per killed worker (" << kills << " kills)";
  }
  if (st.used_bytes < recorded_bytes || st.used_bytes > st.arena_bytes) {
    return testing::AssertionFailure()
           << "stats().used_bytes " << st.used_bytes << " is not between the recorded objects' "
           << recorded_bytes << " and the arena's " << st.arena_bytes;
  }
  if (st.free_chunks > 0 && st.largest_free + Heap::kChunkTag > st.arena_bytes - st.used_bytes) {
    return testing::AssertionFailure()
           << "stats().largest_free " << st.largest_free << " does not fit in the free bytes "
           << st.arena_bytes - st.used_bytes;
  }
  *leaked_out = leaked;
  return testing::AssertionSuccess();
}

// Why survivors did not park: can another process take the heap lock now?
// (Asked from a child, with a bound: the parent must not hang on it.)
std::string heap_lock_diagnosis(const std::string& heap_name) {
  const ExitStatus st = run_child(
      [&] {
        (void)Heap::attach(heap_name).stats();  // takes the heap's lock
        return 0;
      },
      std::chrono::seconds(5));
  if (st.ok()) {
    return "the heap lock is free (another process took it at once), yet a survivor sleeps "
           "in its lock(): a lost wake-up";
  }
  return "another process could not take the heap lock either: " + st.describe();
}

TEST(Storm, HeapStorm) {
  const int rounds = storm_rounds();
  const std::uint64_t seed = storm_seed();
  SCOPED_TRACE("SHMKIT_STORM_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  StateBlock<HeapStormState> block("storm_heaprec");
  HeapStormState& s = *block;
  const std::string heap_name = unique_name("storm_heap");
  UnlinkAtExit heap_guard{heap_name};
  Heap heap = Heap::create(heap_name, kHeapArena);

  Crew crew(s.crew, kHeapWorkers, [&](int slot) {
    return guarded(s.crew.log, "heap worker",
                   [&] { return heap_worker(block.name(), heap_name, slot, child_seed(rng)); });
  });
  crew.start_all();
  ASSERT_TRUE(crew.await_started({0, 1, 2}, "first heap operation by every worker"));

  const auto t0 = Clock::now();
  std::uint64_t kills = 0, reclaimed = 0, leaked = 0;
  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    random_delay(rng);
    const std::vector<int> victims = crew.pick_victims(rng);
    ASSERT_TRUE(crew.kill(victims));
    kills += victims.size();
    ASSERT_TRUE(crew.pause([&] { return heap_lock_diagnosis(heap_name); }));
    // Survivors' objects intact, the dead's published objects intact too.
    ASSERT_TRUE(verify_heap(heap, s, kills, &leaked));
    // The parent takes over the dead workers' objects and frees them (a free
    // from another process than the allocator's); the handle is stale after.
    for (int v : victims) {
      for (ObjectRecord& rec : s.records[v]) {
        if (rec.published.load() == 0) continue;
        const HeapHandle h = handle_of(rec, heap_name);
        ASSERT_NO_THROW(heap.deallocate(h)) << h.to_string();
        EXPECT_THROW((void)heap.resolve(h), std::invalid_argument)
            << "a freed object's handle " << h.to_string() << " still resolves";
        rec.published.store(0);
        ++reclaimed;
      }
    }
    for (int v : victims) crew.start(v);
    crew.resume();
    ASSERT_TRUE(crew.await_started(victims, "first heap operation by a restarted worker"));
  }
  ASSERT_TRUE(crew.stop_all());
  EXPECT_EQ(s.crew.log.count.load(), 0u) << s.crew.log.describe();
  ASSERT_TRUE(verify_heap(heap, s, kills, &leaked));
  // Free everything recorded: what stays allocated is exactly the leak.
  for (auto& worker : s.records) {
    for (ObjectRecord& rec : worker) {
      if (rec.published.load() == 0) continue;
      ASSERT_NO_THROW(heap.deallocate(handle_of(rec, heap_name)));
      rec.published.store(0);
    }
  }
  ASSERT_NO_THROW(heap.check());
  const HeapStats st = heap.stats();
  EXPECT_EQ(st.live_objects, leaked) << "objects left once every recorded one was freed";
  EXPECT_LE(st.live_objects, kills);
  // The heap still serves a large allocation after the storm.
  EXPECT_NO_THROW(heap.deallocate(heap.allocate(64 * 1024).handle));

  std::ostringstream line;
  line << "HeapStorm: " << rounds << " rounds, " << kills << " kills, " << st.owner_deaths_recovered
       << " owner-death repairs of the heap lock, " << s.allocations.load() << " allocations, "
       << s.frees.load() << " frees, " << reclaimed << " objects of dead workers freed by the parent, "
       << leaked << " leaked, seed " << seed << ", "
       << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count() << " ms";
  print_summary(line.str());
  RecordProperty("rounds", rounds);
  RecordProperty("kills", static_cast<int>(kills));
  RecordProperty("owner_deaths_recovered", static_cast<int>(st.owner_deaths_recovered));
  RecordProperty("leaked", static_cast<int>(leaked));
  EXPECT_GT(st.owner_deaths_recovered, 0u)
      << "no kill landed inside the heap lock in " << rounds << " rounds: the repair never ran";
}

}  // namespace
}  // namespace shmkit::test
