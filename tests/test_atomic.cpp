// shmkit/atomic.hpp across processes.
#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "shmkit/atomic.hpp"
#include "test_sync_common.hpp"

namespace shmkit::test {
namespace {

static_assert(std::is_standard_layout_v<Atomic<std::uint64_t>>);
static_assert(sizeof(Atomic<std::uint64_t>) == 8);
static_assert(sizeof(Atomic<std::uint32_t>) == 4);
static_assert(!std::is_copy_constructible_v<Atomic<int>>);
static_assert(!std::is_move_constructible_v<Atomic<int>>);
static_assert(!std::is_copy_constructible_v<WaitableAtomic<int>>);

struct Block {
  Atomic<std::uint64_t> counter;
  Atomic<std::int32_t> small;
  WaitableAtomic<std::uint64_t> w;
  alignas(8) std::uint64_t raw;  // used through AtomicRef
};

TEST(Atomic, FetchAddFromManyProcessesIsExact) {
  NamedBlock block(4096, "atomic");
  auto* b = new (block.shm.data()) Block{};
  constexpr int kProcs = 4, kIters = 100000;
  std::vector<pid_t> kids;
  for (int i = 0; i < kProcs; ++i) {
    kids.push_back(fork_child([&] {
      auto shm = SharedMemory::attach(block.name);  // another address
      auto* bb = static_cast<Block*>(shm.data());
      AtomicRef<std::uint64_t> raw(bb->raw);
      for (int k = 0; k < kIters; ++k) {
        bb->counter.fetch_add(1, memory_order::relaxed);
        raw.fetch_add(2, memory_order::relaxed);
        bb->small.fetch_sub(1, memory_order::relaxed);
      }
      return 0;
    }));
  }
  for (pid_t k : kids) EXPECT_TRUE(wait_child(k, 60s).ok());
  EXPECT_EQ(b->counter.load(), std::uint64_t{kProcs} * kIters);
  EXPECT_EQ(b->raw, 2ull * kProcs * kIters);
  EXPECT_EQ(b->small.load(), -kProcs * kIters);
}

TEST(Atomic, ZeroFilledIsZero) {
  NamedBlock block(4096, "atomic");
  auto* b = reinterpret_cast<Block*>(block.shm.data());
  EXPECT_EQ(b->counter.load(), 0u);
  std::uint64_t expected = 0;
  EXPECT_TRUE(b->counter.compare_exchange_strong(expected, 5));
  EXPECT_EQ(b->counter.exchange(6), 5u);
}

TEST(WaitableAtomic, EightByteWaitIsWokenAcrossProcesses) {
  NamedBlock block(4096, "atomic");
  auto* b = new (block.shm.data()) Block{};
  constexpr std::uint64_t kBig = 0x1'0000'0001ull;  // differs only above 32 bits
  pid_t kid = fork_child([&] {
    auto shm = SharedMemory::attach(block.name);
    auto* bb = static_cast<Block*>(shm.data());
    std::uint64_t v = bb->w.wait(0);
    if (v != 1) return 1;
    bb->w.value().store(kBig);
    bb->w.notify_all();
    return 0;
  });
  b->w.value().store(1);
  b->w.notify_one();
  auto t0 = Clock::now();
  EXPECT_TRUE(b->w.wait_for(1, 10s));
  EXPECT_EQ(b->w.value().load(), kBig);
  EXPECT_LT(ms_since(t0), 5000.0);
  EXPECT_TRUE(wait_child(kid, 10s).ok());
  t0 = Clock::now();
  EXPECT_FALSE(b->w.wait_for(kBig, 30ms));
  EXPECT_GE(ms_since(t0), 29.0);
  EXPECT_FALSE(b->w.wait_until(kBig, std::chrono::system_clock::now() + 5ms));
  EXPECT_TRUE(b->w.wait_for(7, 0ms));  // differs already
}

}  // namespace
}  // namespace shmkit::test
