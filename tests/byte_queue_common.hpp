// tests/byte_queue_common.hpp — what the ByteQueue tests share: messages
// that carry their origin, sequence number and a checkable byte pattern, and
// a guard that unlinks a queue (block, doorbell, out-of-line blocks).
#pragma once

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstring>
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

}  // namespace shmkit::test
