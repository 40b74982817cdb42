// ByteQueue with threads (run under TSan by the tsan preset: label
// "threads"): producers and consumers as threads of one process, and
// threads sharing one producer handle, whose kept out-of-line blocks sit
// behind one mutex. Every message checked byte by byte.
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "byte_queue_common.hpp"

namespace shmkit::test {
namespace {

using namespace std::chrono_literals;

TEST(ByteQueueThreads, TwoProducersThreeConsumers) { storm(false, 2, 3, 4000, 4096); }

// Threads sharing one producer handle (its kept blocks behind one mutex)
// while consumers hold messages for a while: every message arrives intact,
// once, and none changes while it is held.
TEST(ByteQueueThreads, SharingAProducerHandleNeverWriteAHeldBlock) {
  const std::string name = unique_name("bq_shared");
  QueueUnlinker u{name};
  auto q = ByteQueue::create(name, 1 << 14, ByteQueue::Options{.out_of_line_threshold = 1000});
  constexpr std::uint32_t kPerThread = 300 / kScale + 20;
  std::atomic<int> bad{0};
  std::atomic<std::uint32_t> consumed{0};
  std::vector<std::thread> threads;
  for (std::uint32_t p = 0; p < 3; ++p) {
    threads.emplace_back([&, p] {
      for (std::uint32_t s = 0; s < kPerThread; ++s) {
        const auto m = make_message(p, s, 3000 + 700 * (s % 3));
        q.push(std::span<const std::byte>(m));
      }
    });
  }
  for (int c = 0; c < 2; ++c) {
    threads.emplace_back([&] {
      auto mine = ByteQueue::attach(name);
      std::vector<ByteMessage> held;  // up to 3 at a time, checked again before dropping
      while (consumed.load() < 3 * kPerThread) {
        ByteMessage m;
        if (!mine.pop_for(m, 50ms)) continue;
        consumed.fetch_add(1);
        if (!decode(m.bytes()).intact || !m.out_of_line()) bad.fetch_add(1);
        held.push_back(std::move(m));
        if (held.size() == 3) {
          for (const auto& h : held) {
            if (!decode(h.bytes()).intact) bad.fetch_add(1);
          }
          held.clear();
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(consumed.load(), 3 * kPerThread);
  EXPECT_LE(out_of_line_left(name).size(), 2u);
  q.drop_out_of_line_blocks();
  EXPECT_EQ(out_of_line_left(name), std::vector<std::string>{});
  EXPECT_EQ(q.losses(), ByteQueueLosses{});
}

}  // namespace
}  // namespace shmkit::test
