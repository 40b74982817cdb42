// tests/test_lockfree_common.hpp — the lock-free stress bodies, run either
// as real processes (test_lockfree_process, label "process") or as threads
// of one process (test_lockfree_threads, label "threads", run under TSan).
// Workers report through an anonymous shared block; every body checks its
// data item by item (sequence numbers and checksums), not just counts.
#pragma once

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "shmkit/lockfree/broadcast_ring.hpp"
#include "shmkit/lockfree/mpmc_queue.hpp"
#include "shmkit/lockfree/seqlock.hpp"
#include "shmkit/lockfree/spsc_queue.hpp"
#include "shmkit/shared_memory.hpp"
#include "test_support.hpp"

namespace shmkit::test {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr std::uint64_t kScale = 100;  // sanitizers: 100x fewer items
#else
inline constexpr std::uint64_t kScale = 1;
#endif

// Runs each body as a forked process or as a thread; returns when all have
// finished. Fails the test (and names the worker) if any returns non-zero.
inline void run_all(bool processes, const std::vector<std::function<int()>>& bodies,
                    std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  if (processes) {
    std::vector<pid_t> pids;
    for (const auto& b : bodies) pids.push_back(fork_child(b));
    for (std::size_t i = 0; i < pids.size(); ++i) {
      ExitStatus st = wait_child(pids[i], timeout);
      EXPECT_TRUE(st.ok()) << "worker " << i << ": " << st.describe();
    }
  } else {
    std::vector<int> rc(bodies.size(), -1);
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < bodies.size(); ++i) {
      threads.emplace_back([&, i] {
        try {
          rc[i] = bodies[i]();
        } catch (const std::exception& e) {
          std::fprintf(stderr, "worker %zu threw: %s\n", i, e.what());
          rc[i] = 99;
        }
      });
    }
    for (auto& t : threads) t.join();
    for (std::size_t i = 0; i < rc.size(); ++i) EXPECT_EQ(rc[i], 0) << "worker " << i;
  }
}

// A zeroed anonymous block shared with forked children (and threads).
template <class T>
struct Shared {
  Shared() : shm(SharedMemory::anonymous(sizeof(T))), p(new (shm.data()) T{}) {}
  SharedMemory shm;
  T* p;
  T* operator->() const { return p; }
};

// Unlinks a named block at scope exit.
struct Unlinker {
  std::string name;
  ~Unlinker() {
    try {
      SharedMemory::unlink(name);
    } catch (...) {
    }
  }
};

// Polls `pred` (yielding, no sleeps) until it holds or `timeout` passes.
template <class Pred>
bool eventually_true(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

inline std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return x;
}

// ---------------------------------------------------------------- SPSC
// A producer pushes 0..n-1 (singly and in batches), the consumer checks
// value == expected (FIFO: no loss, no duplication) and a checksum.
inline void spsc_stream(bool processes, std::uint64_t n, std::uint64_t capacity) {
  const std::string name = unique_name("spsc");
  Unlinker u{name};
  auto q = SpscQueue<std::uint64_t>::create(name, capacity);
  struct Out {
    std::atomic<std::uint64_t> received, checksum, errors;
  };
  Shared<Out> out;
  auto producer = [&]() -> int {
    auto p = SpscQueue<std::uint64_t>::attach(name);
    std::uint64_t batch[64];
    std::uint64_t i = 0;
    while (i < n) {
      if ((i / 4096) % 2 == 0) {
        p.push(i++);
      } else {
        const std::uint64_t k = std::min<std::uint64_t>(64, n - i);
        for (std::uint64_t j = 0; j < k; ++j) batch[j] = i + j;
        p.push(std::span<const std::uint64_t>(batch, k));
        i += k;
      }
    }
    return 0;
  };
  auto consumer = [&]() -> int {
    auto c = SpscQueue<std::uint64_t>::attach(name);
    std::uint64_t expect = 0, sum = 0, errors = 0;
    std::uint64_t buf[32];
    while (expect < n) {
      std::size_t k = 1;
      if ((expect / 5000) % 2 == 0) {
        if (!c.pop_for(buf[0], std::chrono::seconds(10))) return 3;
      } else {
        k = c.pop_for(std::span<std::uint64_t>(buf, 32), std::chrono::seconds(10));
        if (k == 0) return 4;
      }
      for (std::size_t j = 0; j < k; ++j) {
        if (buf[j] != expect) ++errors;
        sum += mix(buf[j]);
        ++expect;
      }
    }
    out->received = expect;
    out->checksum = sum;
    out->errors = errors;
    return errors == 0 ? 0 : 5;
  };
  run_all(processes, {producer, consumer});
  std::uint64_t want = 0;
  for (std::uint64_t i = 0; i < n; ++i) want += mix(i);
  EXPECT_EQ(out->received.load(), n);
  EXPECT_EQ(out->errors.load(), 0u);
  EXPECT_EQ(out->checksum.load(), want);
  EXPECT_TRUE(q.empty());
}

// Both sides pause now and then (busy, up to ~300 us: longer than the spin
// phase), so the other side goes to sleep on the futex over and over; a lost
// wake-up shows as a timed-out pop_for (or a hung push, caught by run_all).
inline void busy_pause(std::uint64_t& rng) {
  rng = rng * 6364136223846793005ull + 1442695040888963407ull;
  if ((rng >> 33) % 40 != 0) return;
  const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds((rng >> 40) % 300);
  while (std::chrono::steady_clock::now() < until) {
  }
}

// The control block (at BlockHeader::kSize) of the queue type, for the
// tests that watch its WaitSlots.
template <template <class> class Queue>
using QueueControl = std::conditional_t<std::is_same_v<Queue<std::uint64_t>, SpscQueue<std::uint64_t>>,
                                        SpscControl, MpmcControl>;

// A producer and a consumer with random pauses on a 4-slot queue, so that
// each side sleeps now and then. Every sleep is a bounded slice (a lost wake
// costs one slice, then the sleeper re-checks), so items would flow even
// with a notify that did nothing: at kForced points each side therefore
// waits until the other is asleep in futex(2) (the consumer in pop on an
// empty queue, the producer in push on a full one), then does its operation
// and checks that it bumped the sleeper's word, i.e. that its notify saw the
// sleeper and woke it.
template <template <class> class Queue>
inline void sleep_wake_stress(bool processes, std::uint64_t n) {
  using Control = QueueControl<Queue>;
  const std::string name = unique_name("sw");
  Unlinker u{name};
  auto q = Queue<std::uint64_t>::create(name, 4);
  // Forced sleeps: the producer's before items k*step, the consumer's
  // before pop k*step + step/2 (step/2 > capacity, so the two never wait
  // for each other at once).
  constexpr std::uint64_t kForced = 8;
  const std::uint64_t step = n / kForced;
  EXPECT_GT(step, 2 * 4u + 2);
  struct Ids {
    std::atomic<pid_t> producer, consumer;
    std::atomic<std::uint64_t> forced_wakes;
  };
  Shared<Ids> ids;
  auto control = [&](SharedMemory& raw) {
    return reinterpret_cast<Control*>(static_cast<std::byte*>(raw.data()) + BlockHeader::kSize);
  };
  auto producer = [&]() -> int {
    ids->producer = current_tid();
    auto p = Queue<std::uint64_t>::attach(name);
    auto raw = SharedMemory::attach(name);
    auto& word = control(raw)->not_empty.seq;
    std::uint64_t rng = 1;
    for (std::uint64_t i = 0; i < n; ++i) {
      const bool forced = i % step == 0 && i / step < kForced;
      std::uint32_t before = 0;
      if (forced) {
        // The consumer has everything before i: it is (or will be) asleep in pop.
        if (!eventually([&] { return ids->consumer.load() != 0; })) return 5;
        if (!wait_asleep_in_futex(ids->consumer.load())) return 6;
        before = word.load();
      }
      p.push(i);  // untimed: relies on the consumer's wake-up
      if (forced) {
        if (word.load() == before) return 7;  // the notify missed the sleeping consumer
        ids->forced_wakes.fetch_add(1);
      }
      busy_pause(rng);
    }
    return 0;
  };
  auto consumer = [&]() -> int {
    ids->consumer = current_tid();
    auto c = Queue<std::uint64_t>::attach(name);
    auto raw = SharedMemory::attach(name);
    auto& word = control(raw)->not_full.seq;
    std::uint64_t rng = 2;
    for (std::uint64_t i = 0; i < n; ++i) {
      const bool forced = i % step == step / 2 && i / step < kForced;
      std::uint32_t before = 0;
      if (forced) {
        // The producer fills the 4 slots and sleeps in push.
        if (!eventually([&] { return ids->producer.load() != 0; })) return 5;
        if (!wait_asleep_in_futex(ids->producer.load())) return 6;
        before = word.load();
      }
      std::uint64_t v;
      if (!c.pop_for(v, std::chrono::seconds(5))) return 3;  // a lost wake-up
      if (v != i) return 4;
      if (forced) {
        if (word.load() == before) return 7;  // the notify missed the sleeping producer
        ids->forced_wakes.fetch_add(1);
      }
      busy_pause(rng);
    }
    return 0;
  };
  run_all(processes, {producer, consumer});
  EXPECT_EQ(ids->forced_wakes.load(), 2 * kForced) << "forced sleeps whose wake was seen";
  EXPECT_TRUE(q.empty());
}

// ---------------------------------------------------------------- MPMC
// P producers push (id << 48 | seq); C consumers pop until they get a
// sentinel. Every item is marked in a seen[] table (exactly once), and each
// consumer checks per-producer FIFO (sequence numbers it sees from one
// producer increase).
inline void mpmc_stream(bool processes, int producers, int consumers, std::uint64_t per_producer,
                        std::uint64_t capacity) {
  const std::string name = unique_name("mpmc");
  Unlinker u{name};
  auto q = MpmcQueue<std::uint64_t>::create(name, capacity);
  constexpr std::uint64_t kSentinel = ~std::uint64_t{0};
  const std::size_t seen_bytes = static_cast<std::size_t>(producers * per_producer);
  SharedMemory seen_shm = SharedMemory::anonymous(seen_bytes);
  auto* seen = static_cast<std::uint8_t*>(seen_shm.data());
  struct Out {
    std::atomic<std::uint64_t> fifo_errors, bad_items, popped;
  };
  Shared<Out> out;
  std::vector<std::function<int()>> bodies;
  for (int p = 0; p < producers; ++p) {
    bodies.push_back([&, p]() -> int {
      auto h = MpmcQueue<std::uint64_t>::attach(name);
      for (std::uint64_t i = 0; i < per_producer; ++i) {
        if (!h.push_for((std::uint64_t(p) << 48) | i, std::chrono::seconds(10))) return 3;
      }
      return 0;
    });
  }
  for (int c = 0; c < consumers; ++c) {
    bodies.push_back([&]() -> int {
      auto h = MpmcQueue<std::uint64_t>::attach(name);
      std::vector<std::int64_t> last(static_cast<std::size_t>(producers), -1);
      std::uint64_t popped = 0;
      for (;;) {
        std::uint64_t v;
        if (!h.pop_for(v, std::chrono::seconds(10))) return 4;
        if (v == kSentinel) break;
        const std::uint64_t p = v >> 48, i = v & ((std::uint64_t{1} << 48) - 1);
        if (p >= static_cast<std::uint64_t>(producers) || i >= per_producer) {
          out->bad_items.fetch_add(1);
          continue;
        }
        if (static_cast<std::int64_t>(i) <= last[p]) out->fifo_errors.fetch_add(1);
        last[p] = static_cast<std::int64_t>(i);
        std::atomic_ref<std::uint8_t>(seen[p * per_producer + i]).fetch_add(1);
        ++popped;
      }
      out->popped.fetch_add(popped);
      return 0;
    });
  }
  // The last body pushes the sentinels once the producers' items are all
  // popped (so no consumer stops early).
  bodies.push_back([&]() -> int {
    auto h = MpmcQueue<std::uint64_t>::attach(name);
    const std::uint64_t total = static_cast<std::uint64_t>(producers) * per_producer;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    for (;;) {
      // Count items marked so far (cheap enough every few ms).
      std::uint64_t marked = 0;
      for (std::size_t k = 0; k < seen_bytes; ++k) {
        marked += std::atomic_ref<std::uint8_t>(seen[k]).load(std::memory_order_relaxed) != 0;
      }
      if (marked == total) break;
      if (std::chrono::steady_clock::now() > deadline) return 6;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    for (int c = 0; c < consumers; ++c) {
      if (!h.push_for(kSentinel, std::chrono::seconds(10))) return 7;
    }
    return 0;
  });
  run_all(processes, bodies, std::chrono::seconds(90));
  std::uint64_t once = 0, dup = 0;
  for (std::size_t k = 0; k < seen_bytes; ++k) {
    once += seen[k] == 1;
    dup += seen[k] > 1;
  }
  EXPECT_EQ(once, seen_bytes) << "items lost or duplicated";
  EXPECT_EQ(dup, 0u);
  EXPECT_EQ(out->fifo_errors.load(), 0u) << "per-producer FIFO order broken";
  EXPECT_EQ(out->bad_items.load(), 0u);
  EXPECT_EQ(out->popped.load(), seen_bytes);
  EXPECT_TRUE(q.empty());
}

// ---------------------------------------------------------------- SeqLock
// A 256-byte self-checking quote: word 0 is the version v, word k is
// mix(v + k). A torn read mixes two versions and fails the check.
struct Quote {
  std::uint64_t w[32];
  static Quote make(std::uint64_t v) {
    Quote q;
    q.w[0] = v;
    for (std::uint64_t k = 1; k < 32; ++k) q.w[k] = mix(v + k);
    return q;
  }
  bool consistent() const {
    for (std::uint64_t k = 1; k < 32; ++k) {
      if (w[k] != mix(w[0] + k)) return false;
    }
    return true;
  }
};
static_assert(sizeof(Quote) == 256);

// The writer stores v = 1, 2, ... until every reader has seen at least 50
// different values (or max_writes), then a final value; readers read until
// they see it. Every value read must be self-consistent and versions never
// go backwards.
inline void seqlock_torn(bool processes, std::uint64_t max_writes, int readers) {
  const std::string name = unique_name("seq");
  Unlinker u{name};
  auto s = SeqLock<Quote>::create(name, Quote::make(0));
  constexpr std::uint64_t kFinal = std::uint64_t{1} << 62;
  constexpr std::uint64_t kWantDistinct = 50;
  struct Out {
    std::atomic<std::uint64_t> torn, backwards, reads, distinct, started, satisfied, writes;
  };
  Shared<Out> out;
  std::vector<std::function<int()>> bodies;
  bodies.push_back([&]() -> int {
    auto w = SeqLock<Quote>::attach(name);
    // Start once every reader is reading, so the stores overlap the reads.
    while (out->started.load() < static_cast<std::uint64_t>(readers)) std::this_thread::yield();
    std::uint64_t v = 1;
    for (; v <= max_writes &&
           out->satisfied.load(std::memory_order_relaxed) < static_cast<std::uint64_t>(readers);
         ++v) {
      w.store(Quote::make(v));
      // A short busy pause (no sleep): back-to-back stores can starve
      // readers whose copy is longer than the gap (see seqlock.hpp); real
      // quotes do not change every few nanoseconds.
      for (int i = 0; i < 256; ++i) lockfree_detail::cpu_relax();
    }
    out->writes = v - 1;
    w.store(Quote::make(kFinal));
    return 0;
  });
  for (int r = 0; r < readers; ++r) {
    bodies.push_back([&, r]() -> int {
      auto h = SeqLock<Quote>::attach(name);
      auto snap = h.reader();
      out->started.fetch_add(1);
      std::uint64_t last = 0, reads = 0, distinct = 0;
      bool satisfied = false;
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      while (last != kFinal) {
        Quote q;
        if (r % 3 == 0) {
          q = h.read();
        } else if (r % 3 == 2) {
          q = snap.read();  // the snapshot reader
        } else {
          auto o = h.read_for(std::chrono::seconds(10));
          if (!o) return 3;
          q = *o;
        }
        ++reads;
        if (!q.consistent()) out->torn.fetch_add(1);
        if (q.w[0] < last) out->backwards.fetch_add(1);
        if (q.w[0] != last) ++distinct;
        last = q.w[0];
        if (!satisfied && distinct >= kWantDistinct) {
          satisfied = true;
          out->satisfied.fetch_add(1);
        }
        if (std::chrono::steady_clock::now() > deadline) return 4;
      }
      out->reads.fetch_add(reads);
      out->distinct.fetch_add(distinct);
      return 0;
    });
  }
  run_all(processes, bodies);
  EXPECT_EQ(out->torn.load(), 0u) << "a reader returned a torn value";
  EXPECT_EQ(out->backwards.load(), 0u) << "a reader saw an older value after a newer one";
  EXPECT_GT(out->distinct.load(), 2 * static_cast<std::uint64_t>(readers)) << "no concurrency happened";
  Quote q;
  ASSERT_TRUE(s.try_read(q));
  EXPECT_EQ(q.w[0], kFinal);
  EXPECT_EQ(s.version(), 2 * (out->writes.load() + 1));
}

// ---------------------------------------------------------------- Broadcast
// 32-byte self-checking items; the writer pushes 0..n-1 as fast as it can.
// Each reader starts at 0 and checks: an ok item is the one it expected; a
// lap moves `expected` by `lost`; at the end read + lost == n exactly. One
// reader is slow (it pauses every item), so it is lapped.
struct Tick {
  std::uint64_t i, a, b, c;
  static Tick make(std::uint64_t i) { return {i, mix(i), ~i, mix(i ^ 0x5555)}; }
  bool consistent() const { return a == mix(i) && b == ~i && c == mix(i ^ 0x5555); }
};

inline void broadcast_lapping(bool processes, std::uint64_t n, std::uint64_t capacity) {
  const std::string name = unique_name("bcast");
  Unlinker u{name};
  auto ring = BroadcastRing<Tick>::create(name, capacity);
  constexpr int kReaders = 3;  // reader 0 is slow
  struct Out {
    std::atomic<std::uint64_t> read[kReaders], lost[kReaders], laps[kReaders], wrong[kReaders], started;
  };
  Shared<Out> out;
  std::vector<std::function<int()>> bodies;
  bodies.push_back([&]() -> int {
    auto w = BroadcastRing<Tick>::attach(name);
    // Start once every reader is attached (they start at cursor 0 anyway).
    while (out->started.load() < kReaders) std::this_thread::yield();
    for (std::uint64_t i = 0; i < n; ++i) w.push(Tick::make(i));
    return 0;
  });
  for (int r = 0; r < kReaders; ++r) {
    bodies.push_back([&, r]() -> int {
      auto h = BroadcastRing<Tick>::attach(name);
      auto reader = h.reader_at(0);
      out->started.fetch_add(1);
      std::uint64_t expect = 0, read = 0, lost = 0, laps = 0, wrong = 0;
      while (expect < n) {
        Tick t;
        BroadcastResult res = reader.read_for(t, std::chrono::seconds(10));
        if (res.status == BroadcastStatus::empty) return 3;
        if (res.status == BroadcastStatus::lapped) {
          ++laps;
          lost += res.lost;
          expect += res.lost;
          continue;
        }
        if (!t.consistent() || t.i != expect) ++wrong;
        ++expect;
        ++read;
        if (r == 0 && read % 16 == 0) {
          // Slow reader: a busy pause (no sleeping needed for correctness).
          const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(50);
          while (std::chrono::steady_clock::now() < until) {
          }
        }
      }
      if (reader.cursor() != n) ++wrong;
      out->read[r] = read;
      out->lost[r] = lost;
      out->laps[r] = laps;
      out->wrong[r] = wrong;
      return 0;
    });
  }
  run_all(processes, bodies);
  for (int r = 0; r < kReaders; ++r) {
    EXPECT_EQ(out->wrong[r].load(), 0u) << "reader " << r << " got a torn or unexpected item";
    EXPECT_EQ(out->read[r].load() + out->lost[r].load(), n)
        << "reader " << r << ": read + lost must equal written";
  }
  EXPECT_GT(out->laps[0].load(), 0u) << "the slow reader was never lapped";
  EXPECT_GT(out->lost[0].load(), 0u);
  EXPECT_EQ(ring.write_index(), n);
}

}  // namespace shmkit::test
