// Cross-process tests of Mutex, RecursiveMutex, Semaphore, Condition, Event,
// Barrier and the futex layer: real fork()ed processes, each attaching the
// named block again (so the words sit at different addresses per process).
#include <gtest/gtest.h>

#include <sched.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <fstream>
#include <iterator>
#include <limits>
#include <mutex>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <thread>
#include <vector>

#include "shmkit/sync/barrier.hpp"
#include "shmkit/sync/condition.hpp"
#include "shmkit/sync/event.hpp"
#include "shmkit/sync/futex.hpp"
#include "shmkit/sync/mutex.hpp"
#include "shmkit/sync/recursive_mutex.hpp"
#include "shmkit/sync/robust_mutex.hpp"
#include "shmkit/sync/semaphore.hpp"
#include "test_sync_common.hpp"

namespace shmkit::test {
namespace {

constexpr int kProcs = 4;
constexpr int kIncrements = 20000;

// ------------------------------------------------------------ N x M counting
template <class L>
struct LockOps;
template <>
struct LockOps<Mutex> {
  static void lock(Mutex& m) { m.lock(); }
  static void unlock(Mutex& m) { m.unlock(); }
};
template <>
struct LockOps<RecursiveMutex> {
  static void lock(RecursiveMutex& m) {
    m.lock();
    m.lock();  // exercise recursion inside the loop
  }
  static void unlock(RecursiveMutex& m) {
    (void)m.unlock();
    (void)m.unlock();
  }
};
template <>
struct LockOps<RobustMutex> {
  static void lock(RobustMutex& m) {
    if (m.lock() != LockResult::acquired) std::abort();
  }
  static void unlock(RobustMutex& m) { (void)m.unlock(); }
};
template <>
struct LockOps<Semaphore> {
  static void lock(Semaphore& s) { s.acquire(); }
  static void unlock(Semaphore& s) { (void)s.release(); }
};

template <class L>
struct Counted {
  L lock;
  std::uint64_t counter;
};

template <class L>
void construct(void* p) {
  if constexpr (std::is_same_v<L, Semaphore>) {
    new (p) Counted<L>{Semaphore(1, 1), 0};
  } else if constexpr (std::is_same_v<L, RobustMutex>) {
    auto* c = static_cast<Counted<L>*>(p);
    new (&c->lock) RobustMutex();
    c->counter = 0;
  }
  // Mutex and RecursiveMutex: the zero-filled block is already unlocked.
}

template <class L>
class CountTest : public ::testing::Test {};
using LockTypes = ::testing::Types<Mutex, RecursiveMutex, RobustMutex, Semaphore>;
TYPED_TEST_SUITE(CountTest, LockTypes);

TYPED_TEST(CountTest, NProcessesTimesMIncrementsIsExact) {
  using L = TypeParam;
  NamedBlock block(4096, "count");
  construct<L>(block.shm.data());
  std::vector<pid_t> kids;
  for (int i = 0; i < kProcs; ++i) {
    kids.push_back(fork_child([&] {
      auto shm = SharedMemory::attach(block.name);  // own mapping, own address
      auto* c = static_cast<Counted<L>*>(shm.data());
      for (int k = 0; k < kIncrements; ++k) {
        LockOps<L>::lock(c->lock);
        std::uint64_t v = c->counter;
        c->counter = v + 1;
        LockOps<L>::unlock(c->lock);
      }
      return 0;
    }));
  }
  for (pid_t k : kids) {
    auto st = wait_child(k, 60s);
    EXPECT_TRUE(st.ok()) << st.describe();
  }
  EXPECT_EQ(block.as<Counted<L>>()->counter, std::uint64_t{kProcs} * kIncrements);
}

// ------------------------------------------------------------ Mutex
struct MutexShared {
  Mutex m;
  Event locked;
  Event release;
};

TEST(Mutex, ZeroFilledIsUnlockedAndStandardLockable) {
  NamedBlock block(4096);
  auto* m = block.as<Mutex>();
  EXPECT_FALSE(m->is_locked());
  {
    std::scoped_lock g(*m);
    EXPECT_TRUE(m->is_locked());
    EXPECT_FALSE(m->try_lock());
  }
  std::unique_lock<Mutex> ul(*m, std::defer_lock);
  EXPECT_TRUE(ul.try_lock_for(10ms));
  ul.unlock();
  EXPECT_TRUE(ul.try_lock_until(std::chrono::system_clock::now() + 10ms));
}

TEST(Mutex, TimedVariantsTimeOutWhileAnotherProcessHolds) {
  NamedBlock block(4096);
  auto* s = new (block.shm.data()) MutexShared{};
  pid_t kid = fork_child([&] {
    s->m.lock();
    s->locked.set();
    s->release.wait();
    s->m.unlock();
    return 0;
  });
  s->locked.wait();
  EXPECT_FALSE(s->m.try_lock());
  auto t0 = Clock::now();
  EXPECT_FALSE(s->m.try_lock_for(50ms));
  EXPECT_GE(ms_since(t0), 49.0);
  t0 = Clock::now();
  EXPECT_FALSE(s->m.try_lock_until(Clock::now() + 30ms));
  EXPECT_GE(ms_since(t0), 29.0);
  EXPECT_FALSE(s->m.try_lock_until(std::chrono::system_clock::now() + 20ms));
  EXPECT_FALSE(s->m.try_lock_for(0ms));
  EXPECT_FALSE(s->m.try_lock_for(-5ms));
  s->release.set();
  EXPECT_TRUE(s->m.try_lock_for(10s));
  s->m.unlock();
  EXPECT_TRUE(wait_child(kid).ok());
}

TEST(Mutex, SleepingWaiterInAnotherProcessIsWoken) {
  NamedBlock block(4096);
  auto* m = block.as<Mutex>();
  m->lock();
  pid_t kid = fork_child([&] {
    auto shm = SharedMemory::attach(block.name);
    auto* mm = static_cast<Mutex*>(shm.data());
    mm->lock();  // sleeps: the parent holds it
    mm->unlock();
    return 0;
  });
  // The child announced itself as a sleeper (word 2): then unlock must wake it.
  ASSERT_TRUE(eventually([&] { return m->native_handle().load() == Mutex::kContended; }));
  m->unlock();
  auto st = wait_child(kid, 10s);
  EXPECT_TRUE(st.ok()) << st.describe();
}

TEST(Mutex, OwnerDeathTimesOutCleanly) {
  // Documented: Mutex has no owner; a holder that dies leaves it locked and
  // try_lock_for times out instead of hanging.
  NamedBlock block(4096);
  auto* m = block.as<Mutex>();
  auto st = run_child([&] {
    m->lock();
    ::raise(SIGKILL);
    return 0;
  });
  EXPECT_EQ(st.signal, SIGKILL);
  auto t0 = Clock::now();
  EXPECT_FALSE(m->try_lock_for(100ms));
  EXPECT_GE(ms_since(t0), 99.0);
  EXPECT_LT(ms_since(t0), 2000.0);
  EXPECT_TRUE(m->is_locked());
}

TEST(Mutex, UnlockByAnotherProcessReleases) {
  // Like CPython's Lock (a semaphore): no owner.
  NamedBlock block(4096);
  auto* m = block.as<Mutex>();
  m->lock();
  EXPECT_TRUE(run_child([&] {
                m->unlock();
                return 0;
              }).ok());
  EXPECT_TRUE(m->try_lock());
  m->unlock();
  m->unlock();  // unlocking a free Mutex is a no-op
  EXPECT_FALSE(m->is_locked());
}

// ------------------------------------------------------------ RecursiveMutex
struct RecShared {
  RecursiveMutex m;
  Event locked;
  Event release;
};

TEST(RecursiveMutex, RecursionAndOwnership) {
  NamedBlock block(4096);
  auto* s = new (block.shm.data()) RecShared{};
  s->m.lock();
  EXPECT_TRUE(s->m.try_lock());
  EXPECT_TRUE(s->m.try_lock_for(1ms));
  EXPECT_TRUE(s->m.try_lock_until(Clock::now()));
  EXPECT_TRUE(s->m.try_lock_until(std::chrono::system_clock::now()));
  EXPECT_EQ(s->m.level(), 5u);
  EXPECT_TRUE(s->m.unlock());
  EXPECT_EQ(s->m.level(), 4u);
  // Another process cannot take it, nor unlock it.
  EXPECT_TRUE(run_child([&] {
                if (s->m.try_lock()) return 1;
                if (s->m.try_lock_for(20ms)) return 2;
                if (s->m.unlock()) return 3;  // non-owner: refused
                if (s->m.owned_by_me()) return 4;
                return 0;
              }).ok());
  EXPECT_EQ(s->m.level(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(s->m.unlock());
  EXPECT_FALSE(s->m.unlock());  // free: refused, nothing changes
  EXPECT_EQ(s->m.level(), 0u);
  EXPECT_TRUE(run_child([&] {
                if (!s->m.try_lock()) return 1;
                return s->m.unlock() ? 0 : 2;
              }).ok());
}

TEST(RecursiveMutex, NonOwnerUnlockCannotCorrupt) {
  NamedBlock block(4096);
  auto* s = new (block.shm.data()) RecShared{};
  pid_t kid = fork_child([&] {
    s->m.lock();
    s->m.lock();
    s->locked.set();
    s->release.wait();
    if (s->m.level() != 2) return 1;
    if (!s->m.unlock() || !s->m.unlock()) return 2;
    return 0;
  });
  s->locked.wait();
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(s->m.unlock());
  EXPECT_FALSE(s->m.try_lock());
  // A thread of this process is another owner candidate too.
  std::thread([&] { EXPECT_FALSE(s->m.unlock()); }).join();
  auto t0 = Clock::now();
  EXPECT_FALSE(s->m.try_lock_for(30ms));
  EXPECT_GE(ms_since(t0), 29.0);
  s->release.set();
  EXPECT_TRUE(wait_child(kid).ok());
  EXPECT_TRUE(s->m.try_lock_for(5s));
  EXPECT_TRUE(s->m.unlock());
}

TEST(RecursiveMutex, ForkChildIsANewOwner) {
  // The cached thread id is refreshed in a fork child: a child forked while
  // the parent holds the lock is not taken for the owner.
  NamedBlock block(4096);
  auto* s = new (block.shm.data()) RecShared{};
  s->m.lock();
  EXPECT_TRUE(run_child([&] { return (s->m.owned_by_me() || s->m.try_lock()) ? 1 : 0; }).ok());
  EXPECT_TRUE(s->m.unlock());
}

TEST(RecursiveMutex, OwnerDeathTimesOutCleanly) {
  NamedBlock block(4096);
  auto* s = new (block.shm.data()) RecShared{};
  auto st = run_child([&] {
    s->m.lock();
    ::raise(SIGKILL);
    return 0;
  });
  EXPECT_EQ(st.signal, SIGKILL);
  auto t0 = Clock::now();
  EXPECT_FALSE(s->m.try_lock_for(100ms));
  EXPECT_GE(ms_since(t0), 99.0);
  EXPECT_LT(ms_since(t0), 2000.0);
}

// ------------------------------------------------------------ futex
TEST(Futex, ResultsAndCrossProcessWake) {
  NamedBlock block(4096);
  auto* w = block.as<FutexWord>();
  EXPECT_EQ(futex_wait(*w, 7), FutexResult::value_mismatch);
  auto t0 = Clock::now();
  EXPECT_EQ(futex_wait_for(*w, 0, 30ms), FutexResult::timed_out);
  EXPECT_GE(ms_since(t0), 29.0);
  EXPECT_EQ(futex_wait_until(*w, 0, Clock::now() - 1s), FutexResult::timed_out);
  EXPECT_EQ(futex_wake(*w), 0);
  EXPECT_EQ(futex_wait(*w, 5, FutexScope::process_private), FutexResult::value_mismatch);
  EXPECT_EQ(futex_wait_for(*w, 0, 1ms, FutexScope::process_private), FutexResult::timed_out);
}

TEST(Futex, SharedWakeReachesAnotherProcessEvenWithoutValueChange) {
  NamedBlock block(4096);
  auto* w = block.as<FutexWord>();
  auto* woken = reinterpret_cast<std::atomic<std::uint32_t>*>(block.as<char>() + 64);
  pid_t kid = fork_child([&] {
    auto shm = SharedMemory::attach(block.name);
    auto* ww = static_cast<FutexWord*>(shm.data());
    auto* flag = reinterpret_cast<std::atomic<std::uint32_t>*>(static_cast<char*>(shm.data()) + 64);
    // Loop until the value changes: every wake without a change is spurious
    // from the waiter's point of view, and must be survived.
    int wakes = 0;
    while (ww->load() == 0) {
      if (futex_wait(*ww, 0) == FutexResult::woken) ++wakes;
      flag->fetch_add(1);
    }
    return wakes >= 1 ? 0 : 1;
  });
  // Wake it several times without changing the value (spurious wake-ups).
  for (int i = 0; i < 3; ++i) {
    const std::uint32_t before = woken->load();
    ASSERT_TRUE(eventually([&] { return futex_wake(*w) == 1; }));
    ASSERT_TRUE(eventually([&] { return woken->load() > before; }));
  }
  w->store(1);
  futex_wake_all(*w);
  auto st = wait_child(kid, 10s);
  EXPECT_TRUE(st.ok()) << st.describe();
}

// ------------------------------------------------------------ Semaphore
TEST(Semaphore, ZeroFilledIsZeroAndTimedAcquireTimesOut) {
  NamedBlock block(4096);
  auto* s = block.as<Semaphore>();
  EXPECT_EQ(s->value(), 0u);
  EXPECT_FALSE(s->try_acquire());
  auto t0 = Clock::now();
  EXPECT_FALSE(s->try_acquire_for(30ms));
  EXPECT_GE(ms_since(t0), 29.0);
  EXPECT_FALSE(s->try_acquire_until(std::chrono::system_clock::now() + 10ms));
  EXPECT_TRUE(s->release(2));
  EXPECT_TRUE(s->try_acquire());
  EXPECT_TRUE(s->try_acquire_for(0ms));
  EXPECT_FALSE(s->try_acquire());
}

TEST(Semaphore, BoundedReleaseRefusesOverflow) {
  NamedBlock block(4096);
  auto* s = new (block.shm.data()) Semaphore(1, 2);
  EXPECT_TRUE(s->release());
  EXPECT_FALSE(s->release());
  EXPECT_EQ(s->value(), 2u);
  EXPECT_FALSE(s->release(5));
  EXPECT_EQ(s->max_value(), 2u);
}

TEST(Semaphore, ReleaseWakesSleepersInOtherProcesses) {
  NamedBlock block(4096);
  auto* s = block.as<Semaphore>();
  auto* done = reinterpret_cast<std::atomic<std::uint32_t>*>(block.as<char>() + 64);
  std::vector<pid_t> kids;
  for (int i = 0; i < 3; ++i) {
    kids.push_back(fork_child([&] {
      auto shm = SharedMemory::attach(block.name);
      auto* ss = static_cast<Semaphore*>(shm.data());
      ss->acquire();
      reinterpret_cast<std::atomic<std::uint32_t>*>(static_cast<char*>(shm.data()) + 64)->fetch_add(1);
      return 0;
    }));
  }
  EXPECT_EQ(done->load(), 0u);
  s->release(1);
  ASSERT_TRUE(eventually([&] { return done->load() == 1; }));
  s->release(2);
  for (pid_t k : kids) EXPECT_TRUE(wait_child(k, 10s).ok());
  EXPECT_EQ(done->load(), 3u);
  EXPECT_EQ(s->value(), 0u);
}

TEST(Semaphore, LimitsConcurrency) {
  NamedBlock block(4096);
  struct S {
    Semaphore sem;
    std::atomic<std::uint32_t> inside;
    std::atomic<std::uint32_t> max_inside;
  };
  auto* s = new (block.shm.data()) S{Semaphore(2), {0}, {0}};
  std::vector<pid_t> kids;
  for (int i = 0; i < kProcs; ++i) {
    kids.push_back(fork_child([&] {
      for (int k = 0; k < 3000; ++k) {
        s->sem.acquire();
        std::uint32_t n = s->inside.fetch_add(1) + 1;
        std::uint32_t m = s->max_inside.load();
        while (n > m && !s->max_inside.compare_exchange_weak(m, n)) {
        }
        s->inside.fetch_sub(1);
        s->sem.release();
      }
      return 0;
    }));
  }
  for (pid_t k : kids) EXPECT_TRUE(wait_child(k, 60s).ok());
  EXPECT_LE(s->max_inside.load(), 2u);
  EXPECT_EQ(s->sem.value(), 2u);
}

// ------------------------------------------------------------ Event
TEST(Event, SetWakesEveryWaitingProcess) {
  NamedBlock block(4096);
  auto* e = block.as<Event>();
  auto* data = reinterpret_cast<std::uint64_t*>(block.as<char>() + 64);
  std::vector<pid_t> kids;
  for (int i = 0; i < 3; ++i) {
    kids.push_back(fork_child([&] {
      auto shm = SharedMemory::attach(block.name);
      auto* ee = static_cast<Event*>(shm.data());
      ee->wait();
      // The write before set() is visible after wait().
      return *reinterpret_cast<std::uint64_t*>(static_cast<char*>(shm.data()) + 64) == 42 ? 0 : 1;
    }));
  }
  ASSERT_TRUE(eventually([&] { return e->native_state() == Event::kClearWaiters; }));
  *data = 42;
  e->set();
  for (pid_t k : kids) EXPECT_TRUE(wait_child(k, 10s).ok());
  EXPECT_TRUE(e->is_set());
  EXPECT_TRUE(e->wait_for(0ms));
  e->clear();
  EXPECT_FALSE(e->is_set());
}

TEST(Event, TimedWaitReturnsFlag) {
  NamedBlock block(4096);
  auto* e = block.as<Event>();
  auto t0 = Clock::now();
  EXPECT_FALSE(e->wait_for(30ms));
  EXPECT_GE(ms_since(t0), 29.0);
  EXPECT_FALSE(e->wait_until(std::chrono::system_clock::now() + 10ms));
  EXPECT_TRUE(run_child([&] {
                e->set();
                return 0;
              }).ok());
  EXPECT_TRUE(e->wait_for(10s));
  EXPECT_TRUE(e->wait_until(Clock::now()));
}

// ------------------------------------------------------------ Condition
struct CondShared {
  Mutex m;
  Condition cv;
  std::uint32_t turn;  // protected by m
  std::uint32_t rounds;
};

TEST(Condition, PingPongBetweenProcesses) {
  NamedBlock block(4096);
  auto* s = new (block.shm.data()) CondShared{};
  constexpr std::uint32_t kRounds = 2000;
  pid_t kid = fork_child([&] {
    auto shm = SharedMemory::attach(block.name);
    auto* c = static_cast<CondShared*>(shm.data());
    std::unique_lock lk(c->m);
    for (std::uint32_t i = 0; i < kRounds; ++i) {
      c->cv.wait(lk, [&] { return c->turn == 1; });
      c->turn = 0;
      ++c->rounds;
      c->cv.notify_all();
    }
    return 0;
  });
  {
    std::unique_lock lk(s->m);
    for (std::uint32_t i = 0; i < kRounds; ++i) {
      s->turn = 1;
      s->cv.notify_all();
      ASSERT_TRUE(s->cv.wait_for(lk, 10s, [&] { return s->turn == 0; }));
    }
  }
  EXPECT_TRUE(wait_child(kid, 30s).ok());
  EXPECT_EQ(s->rounds, kRounds);
}

TEST(Condition, SpuriousNotifiesDoNotBreakPredicateWaits) {
  NamedBlock block(4096);
  auto* s = new (block.shm.data()) CondShared{};
  auto* stage = reinterpret_cast<std::atomic<std::uint32_t>*>(block.as<char>() + 64);
  pid_t kid = fork_child([&] {
    std::unique_lock lk(s->m);
    stage->store(1);
    s->cv.wait(lk, [&] { return s->turn == 7; });
    return s->turn == 7 ? 0 : 1;
  });
  ASSERT_TRUE(eventually([&] { return stage->load() == 1; }));
  // Notify many times without making the predicate true.
  for (int i = 0; i < 200; ++i) {
    std::scoped_lock g(s->m);
    s->turn = static_cast<std::uint32_t>(i % 7);
    s->cv.notify_all();
  }
  {
    std::scoped_lock g(s->m);
    s->turn = 7;
  }
  s->cv.notify_one();
  EXPECT_TRUE(wait_child(kid, 10s).ok());
}

// A notify_one whose wake goes to a waiter that is SIGKILLed before it
// returns: the kernel hands the wake to nobody else. The first waiter is
// made unable to run between the wake and the kill (it shares the parent's
// only CPU at SCHED_IDLE; the parent does not block in between), as in
// LostWake.* (test_sync_robust.cpp). Condition waits sleep in slices of
// kLostWakeRecheck and re-read the sequence, so the second waiter sees the
// notify within a slice instead of sleeping forever.
TEST(Condition, NotifyAbsorbedByAKilledWaiterIsNotLost) {
  NamedBlock block(4096);
  struct S {
    Mutex m;
    Condition cv;
    std::atomic<std::uint32_t> go{0};
    std::atomic<std::uint32_t> second_got{0};
  };
  // The first waiter wakes once per slice too, and on a loaded machine it
  // can get the CPU between the notify and the kill; then the wake was not
  // absorbed and the attempt proves nothing: try again (a few times).
  bool pinned = false;
  for (int attempt = 0; attempt < 5 && !pinned; ++attempt) {
    auto* s = new (block.shm.data()) S{};
    PinnedToOneCpu pin;
    ASSERT_TRUE(pin.ok());
    auto waiter = [s] {
      std::unique_lock lk(s->m);
      s->cv.wait(lk, [s] { return s->go.load() != 0; });
    };
    const pid_t first = fork_child([&] {
      sched_param p{};
      if (::sched_setscheduler(0, SCHED_IDLE, &p) != 0) return 2;
      waiter();
      return 0;
    });
    // The first waiter asleep in the kernel (first in the futex queue),
    // then the second.
    ASSERT_TRUE(eventually([&] { return asleep_in_kernel(first); }, 10s, 1ms));
    const pid_t second = fork_child([&] {
      waiter();
      s->second_got = 1;
      return 0;
    });
    ASSERT_TRUE(eventually([&] { return asleep_in_kernel(second); }, 10s, 1ms));
    s->go = 1;
    s->cv.notify_one();  // wakes the first (it cannot run)
    ASSERT_EQ(::kill(first, SIGKILL), 0);
    const ExitStatus st = wait_child(first, 10s);
    pin.release();
    pinned = st.signal == SIGKILL;
    EXPECT_TRUE(eventually([&] { return s->second_got.load() == 1; }, 3s, 1ms))
        << "the second waiter still sleeps: the notify died with the first";
    EXPECT_TRUE(wait_child(second, 5s).ok());
    s->~S();
  }
  EXPECT_TRUE(pinned) << "the first waiter ran before it was killed, 5 times";
}

TEST(Condition, TimedWaitTimesOutWithLockHeld) {
  NamedBlock block(4096);
  auto* s = new (block.shm.data()) CondShared{};
  std::unique_lock lk(s->m);
  auto t0 = Clock::now();
  EXPECT_FALSE(s->cv.wait_for(lk, 30ms));
  EXPECT_GE(ms_since(t0), 29.0);
  EXPECT_TRUE(lk.owns_lock());
  EXPECT_TRUE(s->m.is_locked());
  EXPECT_FALSE(s->cv.wait_until(lk, std::chrono::system_clock::now() + 10ms, [] { return false; }));
}

TEST(Condition, WorksWithRobustMutexAcrossProcesses) {
  NamedBlock block(4096);
  struct S {
    RobustMutex m;
    Condition cv;
    std::uint32_t turn;
  };
  auto* s = static_cast<S*>(block.shm.data());
  new (&s->m) RobustMutex();
  constexpr int kRounds = 500;
  pid_t kid = fork_child([&] {
    if (s->m.lock() != LockResult::acquired) return 1;
    for (int i = 0; i < kRounds; ++i) {
      while (s->turn != 1) {
        if (s->cv.wait(s->m) != LockResult::acquired) return 2;
      }
      s->turn = 0;
      s->cv.notify_one();
    }
    (void)s->m.unlock();
    return 0;
  });
  ASSERT_EQ(s->m.lock(), LockResult::acquired);
  for (int i = 0; i < kRounds; ++i) {
    s->turn = 1;
    s->cv.notify_one();
    while (s->turn != 0) {
      auto r = s->cv.wait_for(s->m, 10s);
      ASSERT_EQ(r.lock, LockResult::acquired);
      ASSERT_FALSE(r.timed_out);
    }
  }
  auto r = s->cv.wait_for(s->m, 10ms);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.lock, LockResult::acquired);
  EXPECT_TRUE(s->m.unlock());
  EXPECT_TRUE(wait_child(kid, 30s).ok());
}

// ------------------------------------------------------------ Barrier
TEST(Barrier, ManyRoundsAcrossProcesses) {
  NamedBlock block(4096);
  struct S {
    Barrier b;
    std::atomic<std::uint32_t> last_count;
    std::atomic<std::uint32_t> slots[kProcs];
  };
  auto* s = new (block.shm.data()) S{Barrier(kProcs), {0}, {}};
  constexpr std::uint32_t kRounds = 300;
  std::vector<pid_t> kids;
  for (int i = 0; i < kProcs; ++i) {
    kids.push_back(fork_child([&, i] {
      auto shm = SharedMemory::attach(block.name);
      auto* ss = static_cast<S*>(shm.data());
      for (std::uint32_t r = 1; r <= kRounds; ++r) {
        ss->slots[i].store(r, std::memory_order_relaxed);
        auto res = ss->b.wait_for(20s);
        if (res == BarrierResult::passed_last)
          ss->last_count.fetch_add(1);
        else if (res != BarrierResult::passed)
          return 10 + static_cast<int>(res);
        // After the barrier every party has written round r (or r+1 if fast).
        for (int j = 0; j < kProcs; ++j) {
          if (ss->slots[j].load(std::memory_order_relaxed) < r) return 2;
        }
        // A second barrier, so nobody writes r+1 before all checked r.
        res = ss->b.wait_for(20s);
        if (res == BarrierResult::passed_last)
          ss->last_count.fetch_add(1);
        else if (res != BarrierResult::passed)
          return 20 + static_cast<int>(res);
      }
      return 0;
    }));
  }
  for (pid_t k : kids) {
    auto st = wait_child(k, 60s);
    EXPECT_TRUE(st.ok()) << st.describe();
  }
  EXPECT_EQ(s->last_count.load(), 2 * kRounds);  // exactly one per generation
}

// More callers than parties. CPython (threading.Barrier
// semantics) makes the (parties+1)-th caller wait for the next round; no
// party ever passes a round alone. parties = 2, three callers, and the race
// the old code lost made deterministic: C is stopped (ptrace, single
// steps) just before its first atomic read-modify-write in wait_for, i.e.
// after it has looked at the barrier and before it is counted. A and B then
// fill and complete round 1; C goes on. C must wait for round 2 (the old
// code counted it in round 2 but let it pass at once, alone, as it had seen
// round 1's word), and pass only when a fourth caller arrives.
TEST(Barrier, ExtraCallerWaitsForTheNextRound) {
#if !defined(__x86_64__)
  GTEST_SKIP() << "finds the lock prefix of an x86-64 instruction";
#else
  NamedBlock block(4096);
  auto* b = new (block.shm.data()) Barrier(2);
  const pid_t c = fork_child([&] {
    if (::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) != 0) return 50;
    ::raise(SIGSTOP);
    const BarrierResult r = b->wait_for(20s);
    return r == BarrierResult::passed || r == BarrierResult::passed_last ? 0 : 10 + static_cast<int>(r);
  });
  int status = 0;
  ASSERT_EQ(::waitpid(c, &status, 0), c);
  if (!WIFSTOPPED(status)) {
    GTEST_SKIP() << "ptrace is not available here: " << wait_child(c).describe();
  }
  // Single-step C up to its first lock-prefixed instruction (0xF0): the
  // atomic RMW that counts it in (a fetch_add or a CAS on the arrival word).
  bool at_rmw = false;
  for (int step = 0; step < 1'000'000 && !at_rmw; ++step) {
    ASSERT_EQ(::ptrace(PTRACE_SINGLESTEP, c, nullptr, nullptr), 0);
    ASSERT_EQ(::waitpid(c, &status, 0), c);
    ASSERT_TRUE(WIFSTOPPED(status)) << "C ended while stepped";
    user_regs_struct regs{};
    ASSERT_EQ(::ptrace(PTRACE_GETREGS, c, nullptr, &regs), 0);
    errno = 0;
    const long text = ::ptrace(PTRACE_PEEKTEXT, c, reinterpret_cast<void*>(regs.rip), nullptr);
    ASSERT_EQ(errno, 0);
    at_rmw = (text & 0xff) == 0xf0;
  }
  ASSERT_TRUE(at_rmw) << "C never reached an atomic instruction";
  // A and B (this process) fill round 1 while C is held.
  const pid_t a = fork_child([&] {
    const BarrierResult r = b->wait_for(20s);
    return r == BarrierResult::passed ? 0 : 10 + static_cast<int>(r);
  });
  ASSERT_TRUE(eventually([&] { return b->n_waiting() == 1; }, 20s));
  EXPECT_EQ(b->wait_for(20s), BarrierResult::passed_last);
  auto st = wait_child(a, 20s);
  EXPECT_TRUE(st.ok()) << "A: " << st.describe();
  ASSERT_EQ(::ptrace(PTRACE_DETACH, c, nullptr, nullptr), 0);
  // C is the first caller of round 2: it goes to sleep in the kernel, in
  // its wait, and stays there (it did not pass a round of two alone).
  bool c_gone = false;
  ASSERT_TRUE(eventually(
      [&] {
        c_gone = ::waitpid(c, &status, WNOHANG) == c;
        return c_gone || asleep_in_futex(c);
      },
      20s, 1ms))
      << "C never went to sleep in its wait";
  EXPECT_FALSE(c_gone) << "the third caller passed a round of two alone";
  EXPECT_EQ(::waitpid(c, &status, WNOHANG), 0) << "the third caller passed a round of two alone";
  EXPECT_FALSE(b->broken());
  const BarrierResult mine = b->wait_for(20s);  // the fourth caller: completes round 2
  EXPECT_EQ(mine, BarrierResult::passed_last);
  st = wait_child(c, 20s);
  EXPECT_TRUE(st.ok()) << "C: " << st.describe();
#endif
}

// The same under load: three processes, parties = 2, 6000 waits in all
// (3000 full rounds; the processes share the calls, so none is left at the
// end without a partner). Nobody may leave a round before both its parties
// arrived: when the d-th caller leaves, at least 2 * ceil(d / 2) calls have
// arrived. No wait may be broken or time out.
TEST(Barrier, ThreeCallersOnTwoPartiesNeverPassAlone) {
  NamedBlock block(4096);
  struct S {
    Barrier b;
    std::atomic<std::uint64_t> claimed;
    std::atomic<std::uint64_t> arrived;
    std::atomic<std::uint64_t> left;
    std::atomic<std::uint32_t> last;
  };
  auto* s = new (block.shm.data()) S{Barrier(2), {0}, {0}, {0}, {0}};
  constexpr std::uint64_t kCalls = 6000;
  std::vector<pid_t> kids;
  for (int i = 0; i < 3; ++i) {
    kids.push_back(fork_child([&] {
      auto shm = SharedMemory::attach(block.name);
      auto* ss = static_cast<S*>(shm.data());
      while (ss->claimed.fetch_add(1) < kCalls) {
        ss->arrived.fetch_add(1);
        const BarrierResult r = ss->b.wait_for(5s);
        const std::uint64_t d = ss->left.fetch_add(1) + 1;
        if (r == BarrierResult::passed_last)
          ss->last.fetch_add(1);
        else if (r != BarrierResult::passed)
          return 10 + static_cast<int>(r);
        if (ss->arrived.load() < 2 * ((d + 1) / 2)) return 2;  // passed alone
      }
      return 0;
    }));
  }
  for (pid_t k : kids) {
    auto st = wait_child(k, 60s);
    EXPECT_TRUE(st.ok()) << st.describe() << " (2: a caller passed alone; 12: broken; 13: timed out)";
  }
  EXPECT_EQ(s->last.load(), kCalls / 2);  // one per round
}

TEST(Barrier, TimeoutBreaksItAndResetRepairs) {
  NamedBlock block(4096);
  auto* b = new (block.shm.data()) Barrier(2);
  auto t0 = Clock::now();
  EXPECT_EQ(b->wait_for(30ms), BarrierResult::timed_out);
  EXPECT_GE(ms_since(t0), 29.0);
  EXPECT_TRUE(b->broken());
  EXPECT_EQ(b->wait(), BarrierResult::broken);
  b->reset();
  EXPECT_FALSE(b->broken());
  pid_t kid = fork_child([&] { return b->wait_for(10s) == BarrierResult::timed_out ? 1 : 0; });
  auto r = b->wait_for(10s);
  EXPECT_TRUE(r == BarrierResult::passed || r == BarrierResult::passed_last);
  EXPECT_TRUE(wait_child(kid).ok());
}

TEST(Barrier, AbortWakesWaitersWithBroken) {
  NamedBlock block(4096);
  auto* b = new (block.shm.data()) Barrier(3);
  pid_t kid = fork_child([&] { return b->wait() == BarrierResult::broken ? 0 : 1; });
  ASSERT_TRUE(eventually([&] { return b->n_waiting() == 1; }));
  b->abort();
  EXPECT_TRUE(wait_child(kid, 10s).ok());
  EXPECT_EQ(b->wait_until(std::chrono::system_clock::now() + 1s), BarrierResult::broken);
}

// ------------------------------------------------------------ "forever" deadlines
// A regression: try_lock_for(hours::max()) and friends overflowed the
// deadline arithmetic into the past and returned false at once. Every timed
// call must treat an out-of-range timeout as "wait until it happens".

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

// Forks one waiter per "forever" spelling; each runs op(timeout) and exits 0
// if it returned true (got what it waited for), 1 if it gave up.
template <class Op>
std::vector<pid_t> fork_forever_waiters(const Op& op) {
  using namespace std::chrono;
  std::vector<pid_t> kids;
  auto fork_one = [&](auto timeout) { kids.push_back(fork_child([=] { return op(timeout) ? 0 : 1; })); };
  fork_one(hours::max());
  fork_one(seconds::max());
  fork_one(nanoseconds::max());
  fork_one(duration<double>::max());
  fork_one(steady_clock::time_point::max());
  fork_one(system_clock::time_point::max());
  fork_one(time_point_cast<seconds>(system_clock::now()) + years(300));  // the year ~2300
  return kids;
}

// The waiters must all be inside their call, asleep in the kernel (not
// merely "some time later"), and still there; then release() lets them
// through and every one must succeed.
template <class Release>
void expect_waiting_then_released(const std::vector<pid_t>& kids, Release release) {
  std::vector<bool> gone(kids.size());
  for (std::size_t i = 0; i < kids.size(); ++i) {
    int status = 0;
    bool asleep = false;
    (void)eventually(
        [&] {
          gone[i] = ::waitpid(kids[i], &status, WNOHANG) == kids[i];
          asleep = !gone[i] && asleep_in_futex(kids[i]);
          return gone[i] || asleep;
        },
        20s, 1ms);
    EXPECT_FALSE(gone[i]) << "waiter " << i << " returned at once: its \"forever\" deadline was in the past";
    EXPECT_TRUE(gone[i] || asleep) << "waiter " << i << " never went to sleep in its call";
  }
  for (std::size_t i = 0; i < kids.size(); ++i) {
    int status = 0;
    if (gone[i]) continue;
    gone[i] = ::waitpid(kids[i], &status, WNOHANG) == kids[i];
    EXPECT_FALSE(gone[i]) << "waiter " << i << " left its \"forever\" wait before the release";
  }
  release();
  for (std::size_t i = 0; i < kids.size(); ++i) {
    if (gone[i]) continue;
    auto st = wait_child(kids[i], 20s);
    EXPECT_TRUE(st.ok()) << "waiter " << i << ": " << st.describe();
  }
}

TEST(Deadlines, SaturateInsteadOfOverflowing) {
  using namespace std::chrono;
  using TP = steady_clock::time_point;
  const TP now = steady_clock::now();
  EXPECT_EQ(detail::deadline_after(hours::max()), TP::max());
  EXPECT_EQ(detail::deadline_after(nanoseconds::max()), TP::max());
  EXPECT_EQ(detail::deadline_after(duration<double>::max()), TP::max());
  EXPECT_EQ(detail::deadline_after(duration<double>(std::numeric_limits<double>::infinity())), TP::max());
  EXPECT_LE(detail::deadline_after(hours::min()), now);
  EXPECT_LE(detail::deadline_after(-hours(1)), now);
  const TP zero = detail::deadline_after(seconds(0));
  EXPECT_LE(zero, steady_clock::now());
  const TP nan = detail::deadline_after(duration<double>(std::numeric_limits<double>::quiet_NaN()));
  EXPECT_LE(nan, steady_clock::now());
  EXPECT_GE(detail::deadline_after(hours::min()), TP{});  // never before the epoch
  // Ordinary values are unchanged (rounded up to ticks).
  const TP t = detail::deadline_after(now, milliseconds(1500));
  EXPECT_EQ(t - now, milliseconds(1500));
  EXPECT_EQ(detail::deadline_after(now, duration<double>(0.5)) - now, milliseconds(500));
  EXPECT_EQ(detail::deadline_after(now, duration<long long, std::ratio<1, 3>>(3)) - now, seconds(1));
  EXPECT_EQ(detail::to_steady(steady_clock::time_point::max()), TP::max());
  EXPECT_EQ(detail::to_steady(time_point<steady_clock, hours>::max()), TP::max());
  EXPECT_EQ(detail::to_steady(system_clock::time_point::max()), TP::max());
  EXPECT_EQ(detail::to_steady(time_point<system_clock, hours>::max()), TP::max());
  EXPECT_GT(detail::to_steady(time_point_cast<seconds>(system_clock::now()) + years(300)), now + years(250));
  EXPECT_EQ(detail::to_steady(steady_clock::time_point::min()), TP{});
  EXPECT_EQ(detail::to_steady(system_clock::time_point::min()), TP{});
  EXPECT_EQ(detail::to_steady(time_point<system_clock, hours>::min()), TP{});
  const auto sys = detail::to_steady(system_clock::now() + seconds(10));
  EXPECT_GT(sys, now + seconds(9));
  EXPECT_LT(sys, now + seconds(11));
}

TEST(Deadlines, FutexWaitForMaxWaitsForTheWake) {
  NamedBlock block(4096);
  auto* w = new (block.shm.data()) FutexWord(0);
  const pid_t kid = fork_child([&] {
    while (w->load() == 0) {
      if (futex_wait_for(*w, 0, std::chrono::nanoseconds::max()) == FutexResult::timed_out) return 1;
    }
    return 0;
  });
  expect_waiting_then_released(std::vector<pid_t>{kid}, [&] {
    w->store(1);
    futex_wake_all(*w);
  });
}

TEST(Deadlines, MutexTimedLockWithForeverWaits) {
  NamedBlock block(4096);
  auto* m = new (block.shm.data()) Mutex();
  m->lock();
  auto kids = fork_forever_waiters(Overloaded{[m]<class R, class P>(std::chrono::duration<R, P> d) {
                                                if (!m->try_lock_for(d)) return false;
                                                m->unlock();
                                                return true;
                                              },
                                              [m]<class C, class D>(std::chrono::time_point<C, D> t) {
                                                if (!m->try_lock_until(t)) return false;
                                                m->unlock();
                                                return true;
                                              }});
  expect_waiting_then_released(kids, [&] { m->unlock(); });
}

TEST(Deadlines, RecursiveMutexTimedLockWithForeverWaits) {
  NamedBlock block(4096);
  auto* m = new (block.shm.data()) RecursiveMutex();
  m->lock();
  auto kids = fork_forever_waiters(Overloaded{[m]<class R, class P>(std::chrono::duration<R, P> d) {
                                                if (!m->try_lock_for(d)) return false;
                                                return m->unlock();
                                              },
                                              [m]<class C, class D>(std::chrono::time_point<C, D> t) {
                                                if (!m->try_lock_until(t)) return false;
                                                return m->unlock();
                                              }});
  expect_waiting_then_released(kids, [&] { EXPECT_TRUE(m->unlock()); });
}

TEST(Deadlines, RobustMutexTimedLockWithForeverWaits) {
  NamedBlock block(4096);
  auto* m = new (block.shm.data()) RobustMutex();
  ASSERT_EQ(m->lock(), LockResult::acquired);
  auto kids =
      fork_forever_waiters(Overloaded{[m]<class R, class P>(std::chrono::duration<R, P> d) {
                                        return m->try_lock_for(d) == LockResult::acquired && m->unlock();
                                      },
                                      [m]<class C, class D>(std::chrono::time_point<C, D> t) {
                                        return m->try_lock_until(t) == LockResult::acquired && m->unlock();
                                      }});
  expect_waiting_then_released(kids, [&] { EXPECT_TRUE(m->unlock()); });
}

TEST(Deadlines, SemaphoreTimedAcquireWithForeverWaits) {
  NamedBlock block(4096);
  auto* sem = new (block.shm.data()) Semaphore(0);
  auto kids = fork_forever_waiters(Overloaded{
      [sem]<class R, class P>(std::chrono::duration<R, P> d) { return sem->try_acquire_for(d); },
      [sem]<class C, class D>(std::chrono::time_point<C, D> t) { return sem->try_acquire_until(t); }});
  expect_waiting_then_released(kids,
                               [&] { EXPECT_TRUE(sem->release(static_cast<std::uint32_t>(kids.size()))); });
  EXPECT_EQ(sem->value(), 0u);
}

TEST(Deadlines, EventTimedWaitWithForeverWaits) {
  NamedBlock block(4096);
  auto* ev = new (block.shm.data()) Event();
  auto kids = fork_forever_waiters(
      Overloaded{[ev]<class R, class P>(std::chrono::duration<R, P> d) { return ev->wait_for(d); },
                 [ev]<class C, class D>(std::chrono::time_point<C, D> t) { return ev->wait_until(t); }});
  expect_waiting_then_released(kids, [&] { ev->set(); });
}

TEST(Deadlines, ConditionTimedWaitWithForeverWaits) {
  NamedBlock block(4096);
  struct S {
    Mutex m;
    Condition cv;
    std::atomic<std::uint32_t> go;
  };
  auto* s = new (block.shm.data()) S{};
  auto ready = [s] { return s->go.load() != 0; };
  auto kids = fork_forever_waiters(Overloaded{[s, ready]<class R, class P>(std::chrono::duration<R, P> d) {
                                                std::scoped_lock lock(s->m);
                                                return s->cv.wait_for(s->m, d, ready);
                                              },
                                              [s, ready]<class C, class D>(std::chrono::time_point<C, D> t) {
                                                std::scoped_lock lock(s->m);
                                                return s->cv.wait_until(s->m, t, ready);
                                              }});
  expect_waiting_then_released(kids, [&] {
    std::scoped_lock lock(s->m);
    s->go.store(1);
    s->cv.notify_all();
  });
}

TEST(Deadlines, BarrierTimedWaitWithForeverWaits) {
  NamedBlock block(4096);
  auto* b = new (block.shm.data()) Barrier(8);  // seven waiters and us
  auto passed = [](BarrierResult r) { return r == BarrierResult::passed || r == BarrierResult::passed_last; };
  auto kids = fork_forever_waiters(Overloaded{
      [b, passed]<class R, class P>(std::chrono::duration<R, P> d) { return passed(b->wait_for(d)); },
      [b, passed]<class C, class D>(std::chrono::time_point<C, D> t) { return passed(b->wait_until(t)); }});
  ASSERT_EQ(kids.size(), 7u);
  expect_waiting_then_released(kids, [&] { EXPECT_EQ(b->wait(), BarrierResult::passed_last); });
}

// Zero, negative and past deadlines still mean "try once": false at once
// while the resource is taken, true when it is free.
TEST(Deadlines, ZeroAndNegativeTimeoutsTryOnce) {
  using namespace std::chrono;
  NamedBlock block(4096);
  struct S {
    Mutex m;
    RecursiveMutex rm;
    Semaphore sem;
    Event ev;
    Barrier b;
  };
  auto* s = new (block.shm.data()) S{{}, {}, Semaphore(0), {}, Barrier(2)};
  const auto t0 = Clock::now();
  {
    s->m.lock();
    const bool held = run_child([&] {
                        return !s->m.try_lock_for(0s) && !s->m.try_lock_for(-1s) &&
                                       !s->m.try_lock_for(hours::min()) &&
                                       !s->m.try_lock_until(steady_clock::time_point::min()) &&
                                       !s->m.try_lock_until(system_clock::time_point::min()) &&
                                       !s->m.try_lock_until(system_clock::now() - 1s)
                                   ? 0
                                   : 1;
                      }).ok();
    EXPECT_TRUE(held);
    s->m.unlock();
    EXPECT_TRUE(s->m.try_lock_for(0s));
    s->m.unlock();
    EXPECT_TRUE(s->m.try_lock_for(hours::min()));
    s->m.unlock();
  }
  {
    s->rm.lock();
    const bool held = run_child([&] {
                        return !s->rm.try_lock_for(0s) && !s->rm.try_lock_for(-1s) &&
                                       !s->rm.try_lock_until(system_clock::time_point::min())
                                   ? 0
                                   : 1;
                      }).ok();
    EXPECT_TRUE(held);
    EXPECT_TRUE(s->rm.unlock());
    EXPECT_TRUE(s->rm.try_lock_for(-1s));
    EXPECT_TRUE(s->rm.unlock());
  }
  EXPECT_FALSE(s->sem.try_acquire_for(0s));
  EXPECT_FALSE(s->sem.try_acquire_for(hours::min()));
  EXPECT_FALSE(s->sem.try_acquire_until(system_clock::time_point::min()));
  EXPECT_TRUE(s->sem.release());
  EXPECT_TRUE(s->sem.try_acquire_for(-1s));
  EXPECT_FALSE(s->ev.wait_for(0s));
  EXPECT_FALSE(s->ev.wait_for(hours::min()));
  EXPECT_FALSE(s->ev.wait_until(steady_clock::time_point::min()));
  s->ev.set();
  EXPECT_TRUE(s->ev.wait_for(-1s));
  EXPECT_EQ(s->b.wait_for(hours::min()), BarrierResult::timed_out);
  EXPECT_LT(ms_since(t0), 10'000.0);  // nothing waited for long
}

}  // namespace
}  // namespace shmkit::test
