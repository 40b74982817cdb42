// tests/byte_queue_common.hpp — what the ByteQueue tests share: messages
// that carry their origin, sequence number and a checkable byte pattern, a
// guard that unlinks a queue (block, doorbell, out-of-line blocks), the
// out-of-line blocks left in /dev/shm, and the producers/consumers storm
// (processes or threads).
#pragma once

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "shmkit/lockfree/byte_queue.hpp"
#include "test_lockfree_common.hpp"
#include "test_support.hpp"

namespace shmkit::test {

struct QueueUnlinker {
  std::string name;
  ~QueueUnlinker() {
    try {
      ByteQueue::unlink(name);
    } catch (...) {
    }
  }
};

inline bool dev_shm_has(const std::string& name) {
  struct stat st {};
  return ::stat(("/dev/shm/" + name).c_str(), &st) == 0;
}

// The out-of-line blocks "<queue>.o0" .. "<queue>.o63" that exist now.
inline std::vector<std::string> out_of_line_left(const std::string& queue) {
  std::vector<std::string> left;
  for (int i = 0; i < 64; ++i) {
    if (dev_shm_has(queue + ".o" + std::to_string(i))) left.push_back(queue + ".o" + std::to_string(i));
  }
  return left;
}

inline std::uint8_t pattern_byte(std::uint32_t origin, std::uint32_t seq, std::size_t i) {
  return static_cast<std::uint8_t>((origin * 131u + seq * 31u + i * 7u) & 0xff);
}

// [origin u32][seq u32][length - 8 pattern bytes]; length >= 8.
inline std::vector<std::byte> make_message(std::uint32_t origin, std::uint32_t seq, std::size_t length) {
  std::vector<std::byte> m(std::max<std::size_t>(length, 8));
  std::memcpy(m.data(), &origin, 4);
  std::memcpy(m.data() + 4, &seq, 4);
  for (std::size_t i = 8; i < m.size(); ++i) m[i] = std::byte{pattern_byte(origin, seq, i)};
  return m;
}

struct Decoded {
  std::uint32_t origin = 0, seq = 0;
  bool intact = false;
};

inline Decoded decode(std::span<const std::byte> m) {
  Decoded d;
  if (m.size() < 8) return d;
  std::memcpy(&d.origin, m.data(), 4);
  std::memcpy(&d.seq, m.data() + 4, 4);
  d.intact = true;
  for (std::size_t i = 8; i < m.size(); ++i) {
    if (m[i] != std::byte{pattern_byte(d.origin, d.seq, i)}) {
      d.intact = false;
      break;
    }
  }
  return d;
}

// Message lengths that exercise one cell, several, and the wrap.
inline std::size_t length_for(std::uint32_t seq, std::size_t max) {
  static constexpr std::size_t kLengths[] = {8, 40, 48, 49, 100, 200, 333, 64, 500, 1000, 17, 129};
  return std::min(kLengths[seq % std::size(kLengths)] + (seq % 5), max);
}

// Many producers and consumers; each message checked and counted once.
inline void storm(bool processes, int producers, int consumers, std::uint32_t per_producer,
                  std::size_t ring) {
  const std::string name = unique_name("bq_storm");
  QueueUnlinker u{name};
  auto q = ByteQueue::create(name, ring, ByteQueue::Options{.out_of_line_threshold = 900});
  struct Seen {
    std::atomic<std::uint32_t> count[4][4096];
    std::atomic<int> bad;
    std::atomic<std::uint32_t> consumed;
  };
  Shared<Seen> seen;
  ASSERT_LE(per_producer, 4096u);
  const std::uint32_t total = per_producer * static_cast<std::uint32_t>(producers);
  std::vector<std::function<int()>> bodies;
  for (int p = 0; p < producers; ++p) {
    bodies.push_back([&, p] {
      auto mine = ByteQueue::attach(name);
      for (std::uint32_t s = 0; s < per_producer; ++s) {
        const auto m = make_message(static_cast<std::uint32_t>(p), s, length_for(s, 2000));
        mine.push(std::span<const std::byte>(m));
      }
      return 0;
    });
  }
  for (int c = 0; c < consumers; ++c) {
    bodies.push_back([&] {
      auto mine = ByteQueue::attach(name);
      std::map<std::uint32_t, std::int64_t> last;
      for (;;) {
        if (seen->consumed.load() >= total) return 0;
        ByteMessage m;
        if (!mine.pop_for(m, 50ms)) continue;
        const Decoded d = decode(m.bytes());
        if (!d.intact || d.origin >= 4 || d.seq >= 4096 || m.size() != length_for(d.seq, 2000)) {
          std::fprintf(stderr, "bad message: intact %d origin %u seq %u size %zu (expected %zu) ool %d\n",
                       d.intact, d.origin, d.seq, m.size(), length_for(d.seq, 2000), m.out_of_line());
          seen->bad.fetch_add(1);
        } else {
          seen->count[d.origin][d.seq].fetch_add(1);
          auto [it, fresh] = last.try_emplace(d.origin, -1);
          if (static_cast<std::int64_t>(d.seq) <= it->second) {  // FIFO per producer
            std::fprintf(stderr, "out of order: origin %u seq %u after %lld\n", d.origin, d.seq,
                         static_cast<long long>(it->second));
            seen->bad.fetch_add(1);
          }
          it->second = d.seq;
        }
        seen->consumed.fetch_add(1);
      }
    });
  }
  run_all(processes, bodies, 120s);
  EXPECT_EQ(seen->bad.load(), 0);
  for (int p = 0; p < producers; ++p) {
    for (std::uint32_t s = 0; s < per_producer; ++s) {
      ASSERT_EQ(seen->count[p][s].load(), 1u) << "producer " << p << " message " << s;
    }
  }
  EXPECT_EQ(q.losses(), ByteQueueLosses{});
  EXPECT_TRUE(out_of_line_left(name).empty());
}

}  // namespace shmkit::test
