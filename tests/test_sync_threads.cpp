// The lock algorithms with threads of one process, for ThreadSanitizer (which
// cannot see across processes). Same objects, same shared (non-private)
// futexes, placed in a shared block as in production.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "shmkit/atomic.hpp"
#include "shmkit/sync/barrier.hpp"
#include "shmkit/sync/condition.hpp"
#include "shmkit/sync/event.hpp"
#include "shmkit/sync/mutex.hpp"
#include "shmkit/sync/recursive_mutex.hpp"
#include "shmkit/sync/robust_mutex.hpp"
#include "shmkit/sync/semaphore.hpp"
#include "test_sync_common.hpp"

namespace shmkit::test {
namespace {

constexpr int kThreads = 4;
constexpr int kIters = 5000;

template <class Body>
void run_threads(int n, Body body) {
  std::vector<std::thread> ts;
  for (int i = 0; i < n; ++i) ts.emplace_back([&body, i] { body(i); });
  for (auto& t : ts) t.join();
}

struct Data {
  std::uint64_t counter;  // plain: TSan reports a race if a lock fails
};

TEST(Threads, MutexCounts) {
  auto shm = SharedMemory::anonymous(4096);
  auto* m = new (shm.data()) Mutex();
  auto* d = new (static_cast<char*>(shm.data()) + 64) Data{0};
  run_threads(kThreads, [&](int i) {
    for (int k = 0; k < kIters; ++k) {
      if (i == 0 && k % 2) {
        while (!m->try_lock_for(1ms)) {
        }
      } else {
        m->lock();
      }
      ++d->counter;
      m->unlock();
    }
  });
  EXPECT_EQ(d->counter, std::uint64_t{kThreads} * kIters);
}

TEST(Threads, RecursiveMutexCounts) {
  auto shm = SharedMemory::anonymous(4096);
  auto* m = new (shm.data()) RecursiveMutex();
  auto* d = new (static_cast<char*>(shm.data()) + 64) Data{0};
  run_threads(kThreads, [&](int) {
    for (int k = 0; k < kIters; ++k) {
      std::scoped_lock g(*m);
      std::unique_lock g2(*m);
      ++d->counter;
      EXPECT_EQ(m->level(), 2u);
    }
    EXPECT_FALSE(m->unlock());
  });
  EXPECT_EQ(d->counter, std::uint64_t{kThreads} * kIters);
}

TEST(Threads, RobustMutexCountsAndReportsThreadDeath) {
  auto shm = SharedMemory::anonymous(4096);
  auto* m = new (shm.data()) RobustMutex();
  auto* d = new (static_cast<char*>(shm.data()) + 64) Data{0};
  run_threads(kThreads, [&](int) {
    for (int k = 0; k < kIters; ++k) {
      if (m->lock() != LockResult::acquired) std::abort();
      ++d->counter;
      (void)m->unlock();
    }
  });
  EXPECT_EQ(d->counter, std::uint64_t{kThreads} * kIters);
  // A thread that exits holding it: the next locker is told.
  std::thread([&] { ASSERT_EQ(m->lock(), LockResult::acquired); }).join();
  EXPECT_EQ(m->lock(), LockResult::owner_died);
  EXPECT_TRUE(m->make_consistent());
  EXPECT_TRUE(m->unlock());
  EXPECT_EQ(m->try_lock(), LockResult::acquired);
  EXPECT_TRUE(m->unlock());
}

TEST(Threads, SemaphoreAsLockCounts) {
  auto shm = SharedMemory::anonymous(4096);
  auto* s = new (shm.data()) Semaphore(1, 1);
  auto* d = new (static_cast<char*>(shm.data()) + 64) Data{0};
  run_threads(kThreads, [&](int i) {
    for (int k = 0; k < kIters; ++k) {
      if (i == 0) {
        while (!s->try_acquire_for(1ms)) {
        }
      } else {
        s->acquire();
      }
      ++d->counter;
      EXPECT_TRUE(s->release());
    }
  });
  EXPECT_EQ(d->counter, std::uint64_t{kThreads} * kIters);
}

TEST(Threads, ConditionProducerConsumer) {
  auto shm = SharedMemory::anonymous(4096);
  struct S {
    Mutex m;
    Condition not_empty;
    Condition not_full;
    std::uint32_t items;
    std::uint64_t produced;
    std::uint64_t consumed;
  };
  auto* s = new (shm.data()) S{};
  constexpr int kPerProducer = 2000;
  run_threads(4, [&](int i) {
    std::unique_lock lk(s->m);
    for (int k = 0; k < kPerProducer; ++k) {
      if (i < 2) {
        s->not_full.wait(lk, [&] { return s->items < 4; });
        ++s->items;
        ++s->produced;
        s->not_empty.notify_one();
      } else {
        s->not_empty.wait(lk, [&] { return s->items > 0; });
        --s->items;
        ++s->consumed;
        s->not_full.notify_one();
      }
    }
  });
  EXPECT_EQ(s->produced, 2u * kPerProducer);
  EXPECT_EQ(s->consumed, 2u * kPerProducer);
}

TEST(Threads, EventPublishesData) {
  auto shm = SharedMemory::anonymous(4096);
  auto* e = new (shm.data()) Event();
  auto* d = new (static_cast<char*>(shm.data()) + 64) Data{0};
  std::vector<std::thread> ts;
  std::atomic<int> ok{0};
  for (int i = 0; i < 3; ++i) {
    ts.emplace_back([&] {
      e->wait();
      if (d->counter == 99) ok.fetch_add(1);
    });
  }
  d->counter = 99;
  e->set();
  for (auto& t : ts) t.join();
  EXPECT_EQ(ok.load(), 3);
}

TEST(Threads, BarrierRounds) {
  auto shm = SharedMemory::anonymous(4096);
  auto* b = new (shm.data()) Barrier(kThreads);
  auto* slots = new (static_cast<char*>(shm.data()) + 64) std::uint64_t[kThreads]{};
  std::atomic<int> last{0};
  std::atomic<int> bad{0};
  run_threads(kThreads, [&](int i) {
    for (std::uint64_t r = 1; r <= 200; ++r) {
      slots[i] = r;  // plain: the barrier must order it
      if (b->wait() == BarrierResult::passed_last) last.fetch_add(1);
      for (int j = 0; j < kThreads; ++j) {
        if (slots[j] != r) bad.fetch_add(1);
      }
      if (b->wait() == BarrierResult::passed_last) last.fetch_add(1);
    }
  });
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(last.load(), 400);
}

TEST(Threads, AtomicAndWaitableAtomic) {
  auto shm = SharedMemory::anonymous(4096);
  auto* a = new (shm.data()) Atomic<std::uint64_t>();
  auto* w = new (static_cast<char*>(shm.data()) + 64) WaitableAtomic<std::uint64_t>();
  run_threads(kThreads, [&](int) {
    for (int k = 0; k < kIters; ++k) a->fetch_add(1, memory_order::relaxed);
  });
  EXPECT_EQ(a->load(), std::uint64_t{kThreads} * kIters);
  // Ping-pong through wait/notify on an 8-byte value.
  std::thread t([&] {
    for (std::uint64_t v = 1; v <= 2000; v += 2) {
      w->wait(v - 1);
      w->value().store(v + 1);
      w->notify_all();
    }
  });
  for (std::uint64_t v = 0; v < 2000; v += 2) {
    w->value().store(v + 1);
    w->notify_one();
    w->wait(v + 1);
  }
  t.join();
  EXPECT_EQ(w->value().load(), 2000u);
  EXPECT_FALSE(w->wait_for(2000, 10ms));
}

}  // namespace
}  // namespace shmkit::test
