// The C++ API the Python binding (python/src) stands on, tested from C++:
// StandaloneSync (a primitive alone in a named block), Condition's split
// wait, SpscQueue's zero-copy peek/consume, and SeqLock::from_block. Real
// processes for everything shared; unique names, all unlinked.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "shmkit/lockfree/seqlock.hpp"
#include "shmkit/lockfree/spsc_queue.hpp"
#include "shmkit/sync/standalone.hpp"
#include "test_support.hpp"

namespace shmkit::test {
namespace {

TEST(StandaloneSync, CreateAttachAcrossProcessesAndKindChecked) {
  const std::string name = unique_name("standalone");
  auto sem = StandaloneSync<Semaphore>::create(name, SharedMemory::Options(), 0u, 2u);
  EXPECT_EQ(sem.get().max_value(), 2u);
  const pid_t kid = fork_child([&] {
    auto mine = StandaloneSync<Semaphore>::attach(name);
    return mine.get().release(2) ? 0 : 1;
  });
  ASSERT_TRUE(wait_child(kid).ok());
  EXPECT_TRUE(sem.get().try_acquire());
  EXPECT_TRUE(sem.get().try_acquire());
  EXPECT_FALSE(sem.get().try_acquire());
  // Another primitive, or another kind of block, under that name is refused.
  EXPECT_THROW(StandaloneSync<Mutex>::attach(name), std::invalid_argument);
  const std::string q = unique_name("notsync");
  auto queue = SpscQueue<std::uint32_t>::create(q, 4);
  EXPECT_THROW(StandaloneSync<Semaphore>::attach(q), std::invalid_argument);
  queue.unlink();
  sem.unlink();
}

TEST(StandaloneSync, RobustMutexOwnerDeathSeenByAttacher) {
  const std::string name = unique_name("robust");
  auto m = StandaloneSync<RobustMutex>::create(name, SharedMemory::Options());
  const pid_t kid = fork_child([&] {
    auto mine = StandaloneSync<RobustMutex>::attach(name);
    return mine.get().lock() == LockResult::acquired ? 0 : 1;  // exits holding it
  });
  ASSERT_TRUE(wait_child(kid).ok());
  EXPECT_EQ(m.get().try_lock_for(std::chrono::seconds(5)), LockResult::owner_died);
  EXPECT_TRUE(m.get().make_consistent());
  EXPECT_TRUE(m.get().unlock());
  m.unlink();
}

TEST(ConditionSplitWait, SlicesSeeANotifyFromAnotherProcess) {
  const std::string name = unique_name("cond");
  auto c = StandaloneSync<Condition>::create(name, SharedMemory::Options());
  const std::uint32_t ticket = c.get().begin_wait();
  // No notify yet: a slice ends without one.
  EXPECT_FALSE(c.get().wait_slice(ticket, std::chrono::steady_clock::now() + 5ms));
  const pid_t kid = fork_child([&] {
    StandaloneSync<Condition>::attach(name).get().notify_one();
    return 0;
  });
  bool notified = false;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!notified && std::chrono::steady_clock::now() < deadline) {
    notified = c.get().wait_slice(ticket, deadline);
  }
  c.get().end_wait();
  EXPECT_TRUE(notified);
  ASSERT_TRUE(wait_child(kid).ok());
  c.unlink();
}

TEST(SpscPeek, ZeroCopyBatchesStopAtTheRingEndAndConsumeFreesSlots) {
  const std::string name = unique_name("peek");
  auto q = SpscQueue<std::uint64_t>::create(name, 8);
  const pid_t kid = fork_child([&] {
    auto producer = SpscQueue<std::uint64_t>::attach(name);
    for (std::uint64_t i = 0; i < 6; ++i) producer.push(i);
    return 0;
  });
  ASSERT_TRUE(wait_child(kid).ok());
  std::span<const std::uint64_t> batch = q.peek(4);
  ASSERT_EQ(batch.size(), 4u);
  for (std::uint64_t i = 0; i < 4; ++i) EXPECT_EQ(batch[i], i);
  // Peeked items are not consumed: the producer sees only 2 free slots.
  for (std::uint64_t i = 6; i < 8; ++i) EXPECT_TRUE(q.try_push(i));
  EXPECT_FALSE(q.try_push(8));
  q.consume(batch.size());
  for (std::uint64_t i = 8; i < 12; ++i) EXPECT_TRUE(q.try_push(i));
  batch = q.peek(100);  // from slot 4 to the end of the ring
  ASSERT_EQ(batch.size(), 4u);
  EXPECT_EQ(batch[0], 4u);
  q.consume(batch.size());
  batch = q.peek(100);  // wraps to the start
  ASSERT_EQ(batch.size(), 4u);
  EXPECT_EQ(batch[3], 11u);
  q.consume(batch.size());
  EXPECT_TRUE(q.peek(1).empty());
  q.unlink();
}

TEST(SeqLockFromBlock, AdoptsAValidatedBlockAndRefusesAnotherSize) {
  const std::string name = unique_name("seq");
  auto s = SeqLock<std::uint64_t>::create(name, 7);
  auto b = attach_typed_block(name, BlockKind::seqlock, TypeFingerprint::of<std::uint64_t>());
  auto adopted = SeqLock<std::uint64_t>::from_block(std::move(b));
  EXPECT_EQ(adopted.read(), 7u);
  struct Big {
    std::uint64_t w[4];
  };
  auto b2 = attach_typed_block(name, BlockKind::seqlock, TypeFingerprint::of<std::uint64_t>());
  EXPECT_THROW(SeqLock<Big>::from_block(std::move(b2)), std::invalid_argument);
  s.unlink();
}

}  // namespace
}  // namespace shmkit::test
