// Heap: allocation across processes, handles as strings, no overlap, and
// the heap surviving processes killed while they allocate.
#include <gtest/gtest.h>

#include <csignal>
#include <cstring>
#include <random>
#include <set>
#include <thread>
#include <unistd.h>

#include "shmkit/heap.hpp"
#include "shmkit/typed_block.hpp"
#include "shmkit/value.hpp"
#include "test_support.hpp"
#include "typed/heap_layout.hpp"

namespace shmkit::test {
namespace {

// The bytes of a heap's block as another process sees them: its control
// area (the typed block's prefix) and its arena (the payload).
struct HeapBytes {
  detail::HeapControl* ctl;
  std::byte* arena;
};
HeapBytes bytes_of(const Heap& heap) {
  auto buf = heap.mapping()->buf();
  BlockHeader h;
  std::memcpy(&h, buf.data(), sizeof h);
  return {reinterpret_cast<detail::HeapControl*>(buf.data() + BlockHeader::kSize),
          buf.data() + h.payload_offset};
}
void store_word(std::byte* tag, std::uint64_t w) { std::memcpy(tag, &w, sizeof w); }

// A child that takes the heap's lock and dies holding it: the next locker
// in this process gets owner-died and runs the heap's repair.
void die_holding_the_lock(const Heap& heap) {
  pid_t pid = fork_child([&] {
    (void)bytes_of(heap).ctl->mutex.lock();
    return 0;  // exits holding it
  });
  ASSERT_TRUE(wait_child(pid).ok());
}

bool says(const std::exception& e, const std::string& what) {
  return std::string(e.what()).find(what) != std::string::npos;
}

TEST(Heap, HandlesRoundTripAsStrings) {
  HeapHandle h{"some_heap", 4096, 7};
  EXPECT_EQ(h.to_string(), "heap:some_heap:4096:7");
  EXPECT_EQ(HeapHandle::parse(h.to_string()), h);
  EXPECT_EQ(HeapHandle::parse("heap::64:1").heap, "");
  const HeapHandle max{"h", 64, ~std::uint64_t{0}};  // generations are 64-bit
  EXPECT_EQ(max.to_string(), "heap:h:64:18446744073709551615");
  EXPECT_EQ(HeapHandle::parse(max.to_string()), max);
  for (const char* bad : {"", "heap:", "heap:x:1", "heap:x:a:1", "heap:x:1:", "heap:x:-1:1", "nope:x:1:1",
                          "heap:a/b:64:1", "heap:x:64:18446744073709551616"}) {
    EXPECT_THROW(HeapHandle::parse(bad), std::invalid_argument) << bad;
  }
}

TEST(Heap, AllocateFreeReuseAndStats) {
  auto heap = Heap::create(unique_name("heap"), 64 * 1024);
  EXPECT_EQ(heap.arena_bytes(), 64u * 1024);
  auto a = heap.allocate(100);
  EXPECT_GE(a.bytes.size(), 100u);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a.bytes.data()) % 64, 0u);
  for (std::byte b : a.bytes) EXPECT_EQ(b, std::byte{0});
  std::memset(a.bytes.data(), 0xab, a.bytes.size());
  auto b = heap.allocate(10);
  auto st = heap.stats();
  EXPECT_EQ(st.live_objects, 2u);
  heap.deallocate(a.handle);
  EXPECT_THROW(heap.resolve(a.handle), std::invalid_argument);     // freed
  EXPECT_THROW(heap.deallocate(a.handle), std::invalid_argument);  // double free refused
  auto c = heap.allocate(100);  // first fit may reuse a's chunk: zeroed again
  for (std::byte x : c.bytes) EXPECT_EQ(x, std::byte{0});
  if (c.handle.offset == a.handle.offset) {
    EXPECT_NE(c.handle.generation, a.handle.generation);
    EXPECT_THROW(heap.resolve(a.handle), std::invalid_argument);  // stale handle
  }
  heap.deallocate(b.handle);
  heap.deallocate(c.handle);
  st = heap.stats();
  EXPECT_EQ(st.live_objects, 0u);
  EXPECT_EQ(st.used_bytes, 0u);
  EXPECT_NO_THROW(heap.check());
  heap.unlink();
}

TEST(Heap, FullHeapIsENOMEMAndFreeingMakesRoom) {
  auto heap = Heap::anonymous(4096);
  std::vector<Heap::Allocation> all;
  try {
    for (;;) all.push_back(heap.allocate(100));
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), ENOMEM);
    EXPECT_NE(std::string(e.what()).find("full"), std::string::npos) << e.what();
  }
  ASSERT_GT(all.size(), 10u);
  for (auto& a : all) heap.deallocate(a.handle);
  // Lazy merging: after freeing everything one allocation of ~all of it fits.
  auto big = heap.allocate(4096 - 64);
  EXPECT_GE(big.bytes.size(), 4096u - 64);
  EXPECT_NO_THROW(heap.check());
}

TEST(Heap, ForgedHandlesNeverEscapeTheArena) {
  auto heap = Heap::anonymous(8192);
  auto a = heap.allocate(64);
  std::mt19937_64 rng(7);
  for (int i = 0; i < 5000; ++i) {
    HeapHandle h{"", rng() % (1ull << (rng() % 40)), static_cast<std::uint32_t>(rng() % 4)};
    if (i % 3 == 0) h.offset &= ~std::uint64_t{63};
    try {
      auto bytes = heap.resolve(h);
      // Accepted: it must be a real allocation inside the arena.
      EXPECT_EQ(h.offset, a.handle.offset);
      EXPECT_EQ(h.generation, a.handle.generation);
      EXPECT_LE(bytes.size(), 8192u);
    } catch (const std::invalid_argument&) {
    }
  }
  HeapHandle other = a.handle;
  other.heap = "another";
  EXPECT_THROW(heap.resolve(other), std::invalid_argument);
}

// A regression: generations lived in the chunk tags, so a merge (which turns a
// tag into interior bytes) and the zero fill of the next allocation over it
// reset a freed object's generation; a later split at that offset handed out
// generation 1 again, and the freed object's stale handle resolved to, and
// freed, the new object. Generations now come from one heap-wide counter.
TEST(Heap, AStaleHandleNeverNamesAnObjectReallocatedAtItsOffset) {
  auto heap = Heap::create(unique_name("heapaba"), 512);  // four 128-byte chunks
  auto p = heap.allocate(64);                             // [0, 128)
  auto a = heap.allocate(64);                             // [128, 256)
  auto q = heap.allocate(64);
  auto r = heap.allocate(64);
  ASSERT_EQ(a.handle.offset, 128u);
  heap.deallocate(p.handle);
  heap.deallocate(a.handle);
  // [0, 256) merges into one chunk and is handed out whole: a's tag is now
  // payload, zero-filled.
  auto big = heap.allocate(150);
  ASSERT_EQ(big.handle.offset, 0u);
  heap.deallocate(big.handle);
  // Split again: the second allocation lands at a's offset.
  auto first = heap.allocate(64);
  auto b = heap.allocate(64);
  ASSERT_EQ(b.handle.offset, a.handle.offset) << "the allocator no longer re-splits here";
  std::memset(b.bytes.data(), 0x42, b.bytes.size());
  EXPECT_NE(b.handle.generation, a.handle.generation);
  EXPECT_THROW(heap.resolve(a.handle), std::invalid_argument);     // not b
  EXPECT_THROW(heap.deallocate(a.handle), std::invalid_argument);  // nor frees b
  auto still = heap.resolve(b.handle);
  for (std::byte x : still) ASSERT_EQ(x, std::byte{0x42});
  EXPECT_EQ(heap.stats().live_objects, 4u);
  for (const auto& h : {first.handle, b.handle, q.handle, r.handle}) heap.deallocate(h);
  EXPECT_NO_THROW(heap.check());
  heap.unlink();
}

// Every allocation in a heap's lifetime gets a generation never handed out
// before, whatever merges and splits happen, and in every process.
TEST(Heap, GenerationsNeverRepeatInAHeapsLifetime) {
  auto name = unique_name("heapgen");
  auto heap = Heap::create(name, 8192);
  std::set<std::uint64_t> seen;
  std::vector<HeapHandle> live;
  std::mt19937 rng(13);
  for (int i = 0; i < 20000; ++i) {
    if (live.empty() || (rng() % 2 == 0 && live.size() < 40)) {
      try {
        auto a = heap.allocate(1 + rng() % 700);
        ASSERT_TRUE(seen.insert(a.handle.generation).second)
            << "generation " << a.handle.generation << " handed out twice (op " << i << ")";
        live.push_back(a.handle);
      } catch (const std::system_error&) {  // full: free something
      }
    } else {
      auto k = rng() % live.size();
      heap.deallocate(live[k]);
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(k));
    }
  }
  // Another process continues the same sequence.
  const std::uint64_t last = *seen.rbegin();
  ExitStatus st = run_child([&] {
    auto h = Heap::attach(name);
    auto a = h.allocate(10);
    return a.handle.generation > last ? 0 : 1;
  });
  EXPECT_TRUE(st.ok()) << st.describe();
  auto after = heap.allocate(10);
  EXPECT_GT(after.handle.generation, last + 1);
  heap.unlink();
}

// The generation counter is the one thing about generations not derived
// from the chain: check() reports it behind an allocated tag (it would hand
// that generation out again), and the repair after a dead owner raises it,
// never lowers it.
TEST(Heap, AGenerationCounterBehindTheChainIsReportedAndRepaired) {
  auto heap = Heap::create(unique_name("heapgenctl"), 4096);
  auto a = heap.allocate(100);
  auto b = heap.allocate(100);
  HeapBytes raw = bytes_of(heap);
  ASSERT_EQ(raw.ctl->last_generation, b.handle.generation);
  raw.ctl->last_generation = a.handle.generation;  // behind b
  try {
    heap.check();
    ADD_FAILURE() << "check() accepted a generation counter behind an allocated chunk";
  } catch (const std::runtime_error& e) {
    EXPECT_TRUE(says(e, "generation counter")) << e.what();
  }
  die_holding_the_lock(heap);
  EXPECT_NO_THROW(heap.check());
  EXPECT_EQ(raw.ctl->last_generation, b.handle.generation);
  auto c = heap.allocate(100);
  EXPECT_GT(c.handle.generation, b.handle.generation);
  // Exhausted (only a foreign write gets there): refused, nothing changed.
  raw.ctl->last_generation = ~std::uint64_t{0};
  try {
    (void)heap.allocate(10);
    ADD_FAILURE() << "allocated with an exhausted generation counter";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), ENOMEM);
    EXPECT_TRUE(says(e, "generation")) << e.what();
  }
  EXPECT_EQ(heap.stats().live_objects, 3u);
  raw.ctl->last_generation = c.handle.generation;
  EXPECT_NO_THROW(heap.check());
  heap.unlink();
}

// Format 1 heaps (32-bit generations in the tags) are refused by attach.
TEST(Heap, AttachRefusesAnotherHeapLayoutVersion) {
  auto name = unique_name("heapv1");
  auto heap = Heap::create(name, 4096);
  auto buf = heap.mapping()->buf();
  auto* h = reinterpret_cast<BlockHeader*>(buf.data());
  EXPECT_EQ(h->param[0], 2u);
  h->param[0] = 0;  // what version 1 recorded
  try {
    (void)Heap::attach(name);
    ADD_FAILURE() << "attached a heap of layout version 1";
  } catch (const std::invalid_argument& e) {
    EXPECT_TRUE(says(e, "heap layout version 0")) << e.what();
    EXPECT_TRUE(says(e, name)) << e.what();
  }
  heap.unlink();
}

// Found by fuzz_heap: a rover (the allocation hint in the control area) that
// is 64-aligned and inside the arena but not a chunk boundary — left by a
// writer killed between a merge and moving the rover, or written by another
// process — made allocate read interior bytes as a tag and hand out a chunk
// inside a free one, while check() accepted the heap. check() now rejects
// it, naming the offset, and the repair after an owner death resets it.
TEST(Heap, CheckRejectsARoverThatIsNotAChunkBoundary) {
  auto heap = Heap::create(unique_name("heaprover"), 4096);
  auto a = heap.allocate(60);
  auto b = heap.allocate(60);
  auto c = heap.allocate(60);
  heap.deallocate(a.handle);
  heap.deallocate(b.handle);
  // a and b merged (one store to a's word); the rover still names b.
  HeapBytes raw = bytes_of(heap);
  store_word(raw.arena + a.handle.offset, 128 + 128);
  raw.ctl->rover = b.handle.offset;
  try {
    heap.check();
    ADD_FAILURE() << "check() accepted a rover inside a free chunk";
  } catch (const std::runtime_error& e) {
    EXPECT_TRUE(says(e, "corrupt at arena offset " + std::to_string(b.handle.offset))) << e.what();
    EXPECT_TRUE(says(e, "rover")) << e.what();
  }
  die_holding_the_lock(heap);
  EXPECT_NO_THROW(heap.check());  // repaired: rover reset, counters recounted
  EXPECT_EQ(heap.stats().owner_deaths_recovered, 1u);
  EXPECT_EQ(heap.resolve(c.handle).size(), c.bytes.size());
  heap.unlink();
}

// Found while writing fuzz_heap: a tag marked allocated with stray low bits
// was accepted by resolve() and deallocate() while check() rejected the
// chain. Both now refuse it as not a live object.
TEST(Heap, ResolveRejectsATagThatCheckRejects) {
  auto heap = Heap::create(unique_name("heapstray"), 4096);
  auto a = heap.allocate(100);
  HeapBytes raw = bytes_of(heap);
  std::uint64_t w;
  std::memcpy(&w, raw.arena + a.handle.offset, sizeof w);
  store_word(raw.arena + a.handle.offset, w | 4);
  EXPECT_THROW(heap.resolve(a.handle), std::invalid_argument);
  EXPECT_THROW(heap.deallocate(a.handle), std::invalid_argument);
  try {
    heap.check();
    ADD_FAILURE() << "check() accepted a tag with stray bits";
  } catch (const std::runtime_error& e) {
    EXPECT_TRUE(says(e, "corrupt at arena offset " + std::to_string(a.handle.offset))) << e.what();
    EXPECT_TRUE(says(e, "stray bits")) << e.what();
  }
  heap.unlink();
}

// A repair that finds the chain corrupt still resets the rover (first), so
// that allocate does not follow a stale one; the corruption is reported,
// naming the offset, and the lock stays usable.
TEST(Heap, RepairOfACorruptChainReportsItAndResetsTheRover) {
  auto heap = Heap::create(unique_name("heapbadchain"), 4096);
  auto a = heap.allocate(100);
  auto b = heap.allocate(100);
  HeapBytes raw = bytes_of(heap);
  raw.ctl->rover = b.handle.offset + 64;                                       // inside b
  store_word(raw.arena + b.handle.offset, (4096 - b.handle.offset + 64) | 1);  // past the end
  die_holding_the_lock(heap);
  try {
    (void)heap.stats();
    ADD_FAILURE() << "the repair accepted a chunk running past the arena";
  } catch (const std::runtime_error& e) {
    EXPECT_TRUE(says(e, "corrupt at arena offset " + std::to_string(b.handle.offset))) << e.what();
  }
  EXPECT_EQ(raw.ctl->rover, 0u);
  EXPECT_THROW(heap.check(), std::runtime_error);  // still corrupt; still locks
  EXPECT_NO_THROW(heap.resolve(a.handle));
  heap.unlink();
}

// Thousands of objects from several processes at once, each filled with its
// owner's pattern, then verified: no overlap, handles valid everywhere.
TEST(Heap, ManyProcessesManyObjectsNoOverlap) {
  auto name = unique_name("heapmp");
  auto heap = Heap::create(name, 4 << 20);
  constexpr int kProcs = 4, kObjects = 1500;
  std::vector<pid_t> kids;
  for (int p = 0; p < kProcs; ++p) {
    kids.push_back(fork_child([&, p] {
      auto h = Heap::attach(name);
      std::mt19937 rng(p);
      std::vector<Heap::Allocation> mine;
      for (int i = 0; i < kObjects; ++i) {
        auto a = h.allocate(16 + rng() % 300);
        std::memset(a.bytes.data(), p + 1, a.bytes.size());
        mine.push_back(a);
        if (rng() % 3 == 0) {  // free a random earlier one
          auto k = rng() % mine.size();
          h.deallocate(mine[k].handle);
          mine.erase(mine.begin() + static_cast<std::ptrdiff_t>(k));
        }
      }
      // Every survivor still holds only this process's pattern.
      for (auto& a : mine) {
        auto b = h.resolve(HeapHandle::parse(a.handle.to_string()));
        for (std::byte x : b) {
          if (x != std::byte(p + 1)) return 2;
        }
      }
      return 0;
    }));
  }
  for (pid_t k : kids) {
    auto st = wait_child(k, std::chrono::seconds(120));
    EXPECT_TRUE(st.ok()) << st.describe();
  }
  EXPECT_NO_THROW(heap.check());
  auto st = heap.stats();
  EXPECT_GT(st.live_objects, 0u);
  heap.unlink();
}

// Values in the heap, handed to an exec'd process as a string.
TEST(Heap, ValuesInTheHeapCrossExecAsHandles) {
  auto name = unique_name("heapval");
  auto heap = Heap::create(name, 1 << 16);
  auto v = Value<std::int64_t>::create(heap, 100);
  ASSERT_TRUE(v.handle());
  auto r = run_process({peer_path(), "heap-value-add", v.handle()->to_string(), "23"});
  ASSERT_TRUE(r.status.ok()) << r.status.describe() << r.err;
  EXPECT_EQ(v.value(), 123);
  // Wrong type through a handle: a clear error.
  EXPECT_THROW(Value<double>::attach(heap, *v.handle()), std::invalid_argument);
  v.destroy();
  EXPECT_THROW(Value<std::int64_t>::attach(heap, *v.handle()), std::invalid_argument);
  heap.unlink();
}

// Processes killed at random while allocating and freeing: the heap stays a
// valid chain, the survivors' objects are intact, allocation goes on, and
// the dead owner of the heap lock is recovered from.
TEST(Heap, SurvivesAllocatorsKilledAtRandom) {
  // Each killed child leaks what it held (expected): room for all rounds.
  auto heap = Heap::anonymous(16 << 20);
  auto keep = heap.allocate(256);
  std::memset(keep.bytes.data(), 0x5c, keep.bytes.size());
  std::mt19937 rng(2026);
  // At least 40 rounds, and on until a kill has landed inside the heap lock
  // (the case the test is for; on a loaded machine a round's kill may land
  // between operations many times in a row), up to kMaxRounds.
  constexpr int kRounds = 40;
  constexpr int kMaxRounds = 400;
  int round = 0;
  for (; round < kMaxRounds && (round < kRounds || heap.stats().owner_deaths_recovered == 0); ++round) {
    pid_t pid = fork_child([&] {
      std::mt19937 r(static_cast<unsigned>(::getpid()));
      std::vector<HeapHandle> mine;
      for (;;) {
        mine.push_back(heap.allocate(32 + r() % 512).handle);
        if (mine.size() > 50 || r() % 2 == 0) {
          auto k = r() % mine.size();
          heap.deallocate(mine[k]);
          mine.erase(mine.begin() + static_cast<std::ptrdiff_t>(k));
        }
      }
      return 0;
    });
    std::this_thread::sleep_for(std::chrono::microseconds(200 + rng() % 3000));
    ::kill(pid, SIGKILL);
    auto st = wait_child(pid);
    ASSERT_EQ(st.signal, SIGKILL) << st.describe();
    ASSERT_NO_THROW(heap.check()) << "round " << round;
    auto a = heap.allocate(128);  // still allocates
    heap.deallocate(a.handle);
  }
  for (std::byte x : heap.resolve(keep.handle)) ASSERT_EQ(x, std::byte{0x5c});
  auto st = heap.stats();
  // Leaks from the dead are expected; the chain must still be whole.
  EXPECT_LE(st.used_bytes, st.arena_bytes);
  EXPECT_GE(st.owner_deaths_recovered, 1u) << "no kill landed inside the heap lock in " << round << " rounds";
  RecordProperty("owner_deaths_recovered", static_cast<int>(st.owner_deaths_recovered));
}

}  // namespace
}  // namespace shmkit::test
