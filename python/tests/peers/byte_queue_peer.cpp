// byte_queue_peer — the C++ side of python/tests/test_mpqueues.py's
// cross-language tests: an unrelated process that exchanges byte messages
// with Python over a shmkit::ByteQueue, with the C++ library only.
// Message contents follow one pattern both sides check: byte i of a message
// of n bytes is (i + 13 * n) mod 256.
//   byte_queue_peer echo IN OUT N          attach both; N times: pop from IN
//                                          (60 s at most), check it, push it to OUT
//   byte_queue_peer send-new NAME RING THRESHOLD SIZE...
//                                          create NAME (left for the test),
//                                          push one message of each SIZE
// Exit 0 on success, 1 with a message on stderr otherwise.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>  // (byte_queue.hpp uses std::exchange without it)
#include <vector>

#include "shmkit/lockfree/byte_queue.hpp"

namespace {

std::vector<std::byte> pattern(std::size_t n) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i + 13 * n) & 0xff);
  return v;
}

void check(std::span<const std::byte> b) {
  const std::size_t n = b.size();
  for (std::size_t i = 0; i < n; ++i) {
    if (b[i] != static_cast<std::byte>((i + 13 * n) & 0xff)) {
      throw std::runtime_error("message of " + std::to_string(n) + " bytes: wrong byte at " +
                               std::to_string(i));
    }
  }
}

int run(int argc, char** argv) {
  const std::string_view cmd = argc > 1 ? argv[1] : "";
  if (cmd == "echo" && argc == 5) {
    auto in = shmkit::ByteQueue::attach(argv[2]);
    auto out = shmkit::ByteQueue::attach(argv[3]);
    const long n = std::strtol(argv[4], nullptr, 10);
    for (long i = 0; i < n; ++i) {
      shmkit::ByteMessage m;
      if (!in.pop_for(m, std::chrono::seconds(60))) throw std::runtime_error("echo: no message in 60 s");
      check(m.bytes());
      out.push(m.bytes());
    }
    return 0;
  }
  if (cmd == "send-new" && argc >= 5) {
    shmkit::ByteQueue::Options options;
    options.out_of_line_threshold = std::strtoull(argv[4], nullptr, 10);
    auto q = shmkit::ByteQueue::create(argv[2], std::strtoull(argv[3], nullptr, 10), options);
    for (int i = 5; i < argc; ++i) q.push(pattern(std::strtoull(argv[i], nullptr, 10)));
    return 0;
  }
  std::fprintf(stderr, "usage: byte_queue_peer echo IN OUT N | send-new NAME RING THRESHOLD SIZE...\n");
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "byte_queue_peer: %s\n", e.what());
    return 1;
  }
}
