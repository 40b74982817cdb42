// The lock-free algorithms with threads of one process: what TSan checks
// (it cannot see across processes). The same bodies run as processes in
// test_lockfree_process.cpp.
#include "test_lockfree_common.hpp"

namespace shmkit::test {
namespace {

TEST(LockfreeThreads, SpscStreamSmallRing) { spsc_stream(false, 1'000'000 / kScale, 64); }
TEST(LockfreeThreads, SpscStreamLargeRing) { spsc_stream(false, 2'000'000 / kScale, 65536); }
TEST(LockfreeThreads, SpscSleepWake) { sleep_wake_stress<SpscQueue>(false, 20'000 / (kScale > 1 ? 10 : 1)); }
TEST(LockfreeThreads, MpmcSleepWake) { sleep_wake_stress<MpmcQueue>(false, 20'000 / (kScale > 1 ? 10 : 1)); }
TEST(LockfreeThreads, Mpmc2x2) { mpmc_stream(false, 2, 2, 500'000 / kScale, 256); }
TEST(LockfreeThreads, Mpmc3x1TinyRing) { mpmc_stream(false, 3, 1, 100'000 / kScale, 4); }
TEST(LockfreeThreads, SeqLockNeverTorn) { seqlock_torn(false, 200'000 / kScale, 3); }
TEST(LockfreeThreads, BroadcastLappingIsExact) { broadcast_lapping(false, 1'000'000 / kScale, 1024); }

// Blocking calls with nobody on the other side return at their deadline.
TEST(LockfreeThreads, TimedCallsReturn) {
  const std::string a = unique_name("to"), b = unique_name("to"), c = unique_name("to");
  Unlinker ua{a}, ub{b}, uc{c};
  auto s = SpscQueue<int>::create(a, 2);
  auto m = MpmcQueue<int>::create(b, 2);
  int v = 0;
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(s.pop_for(v, std::chrono::milliseconds(30)));
  EXPECT_FALSE(m.pop_for(v, std::chrono::milliseconds(30)));
  ASSERT_TRUE(s.try_push(1));
  ASSERT_TRUE(s.try_push(2));
  EXPECT_FALSE(s.try_push(3));
  EXPECT_FALSE(s.push_for(3, std::chrono::milliseconds(30)));
  ASSERT_TRUE(m.try_push(1));
  ASSERT_TRUE(m.try_push(2));
  EXPECT_FALSE(m.push_for(3, std::chrono::milliseconds(30)));
  auto ring = BroadcastRing<int>::create(c, 8);
  auto rd = ring.reader();
  EXPECT_EQ(rd.read_for(v, std::chrono::milliseconds(30)).status, BroadcastStatus::empty);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GE(ms, 5 * 30 - 1);
  EXPECT_LT(ms, 5000);
  ASSERT_TRUE(s.try_pop(v));
  EXPECT_EQ(v, 1);
  const int batch[3] = {7, 8, 9};
  EXPECT_EQ(s.push_for(std::span<const int>(batch, 3), std::chrono::milliseconds(20)), 1u);  // one slot free
  int outb[4];
  EXPECT_EQ(s.try_pop(std::span<int>(outb, 4)), 2u);
  EXPECT_EQ(outb[0], 2);
  EXPECT_EQ(outb[1], 7);
  ASSERT_TRUE(m.try_pop(v));
  EXPECT_EQ(v, 1);
}

// A sleeping consumer is woken by a push from another thread (the futex
// path, not the spin). Every sleep is a bounded slice, so the consumer would
// get its item even from a push that never woke it: the test therefore checks
// the wake itself. Premise: the consumer is asleep in futex(2) on the queue's
// not-empty word before the push. Then: the push bumped that word (its notify
// saw the sleeper), and a witness thread asleep on the same word with a
// deadline far beyond any slice was woken (the notify called futex_wake);
// only then the consumer's value.
TEST(LockfreeThreads, SleeperIsWoken) {
  const std::string a = unique_name("wake");
  Unlinker ua{a};
  auto q = SpscQueue<std::uint64_t>::create(a, 4);
  auto raw = SharedMemory::attach(a);
  auto* ctl = reinterpret_cast<SpscControl*>(static_cast<std::byte*>(raw.data()) + BlockHeader::kSize);
  auto& word = ctl->not_empty.seq;
  std::atomic<pid_t> consumer_tid{0};
  std::atomic<bool> got{false};
  std::thread consumer([&] {
    consumer_tid = current_tid();
    auto c = SpscQueue<std::uint64_t>::attach(a);
    std::uint64_t v = c.pop();
    got = v == 42;
  });
  ASSERT_TRUE(eventually([&] { return consumer_tid.load() != 0; }));
  // The consumer's own mapping of the block is another address: check the
  // futex, not the word, for it.
  ASSERT_TRUE(wait_asleep_in_futex(consumer_tid.load())) << "the consumer never slept in pop()";
  const std::uint32_t before = word.load();
  std::atomic<pid_t> witness_tid{0};
  std::atomic<int> witness_woken{0};  // 1: woken by a wake, 2: timed out
  std::thread witness([&] {
    witness_tid = current_tid();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    for (;;) {
      const FutexResult r = futex_wait_until(word, before, deadline);
      if (r == FutexResult::timed_out) {
        witness_woken = 2;
        return;
      }
      if (word.load() != before) {  // (a spurious return leaves the word as it was)
        witness_woken = 1;
        return;
      }
    }
  });
  ASSERT_TRUE(eventually([&] { return witness_tid.load() != 0; }));
  ASSERT_TRUE(wait_asleep_in_futex(witness_tid.load(), &word)) << "the witness never slept";
  q.push(42);
  const bool bumped = word.load() != before;
  EXPECT_TRUE(bumped) << "push() did not bump the not-empty word: its notify missed the sleeper";
  if (!bumped) {  // release the witness ourselves, so the test ends now
    word.fetch_add(1);
    futex_wake_all(word);
  }
  witness.join();
  consumer.join();
  EXPECT_TRUE(!bumped || witness_woken.load() == 1) << "push() bumped the word but never woke its sleepers";
  EXPECT_TRUE(got.load());
}

}  // namespace
}  // namespace shmkit::test
