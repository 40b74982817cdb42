// shmkit_test_peer — an unrelated process for the cross-process tests
// (exec'd, so it shares nothing with the test but what it is handed).
//   peer write NAME OFFSET TEXT     attach NAME, copy TEXT to OFFSET
//   peer read NAME OFFSET LEN       attach NAME, print LEN bytes at OFFSET
//   peer size NAME                  attach NAME, print its size
//   peer recv-write SOCKFD TEXT     receive an anonymous block on SOCKFD,
//                                   copy TEXT to offset 0, print its size
//   peer array-negate NAME          attach Array<int32_t> NAME, negate each element
//   peer value-set NAME X           attach Value<double> NAME, set it to X
//   peer heap-value-add HANDLE N    attach Value<int64_t> by heap handle, add N
//   peer robust-hold NAME           create NAME (4096 bytes, tracked: a tracker
//                                   registration), lock a RobustMutex at its
//                                   offset 0, print "held PID START" (its own pid
//                                   and tracker::process_start_time), hold the
//                                   lock until stdin closes, then unlock (exit 0
//                                   if the lock was acquired and released)
// Exit 0 on success, 1 with a message on stderr otherwise.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unistd.h>

#include "shmkit/array.hpp"
#include "shmkit/shared_memory.hpp"
#include "shmkit/sync/robust_mutex.hpp"
#include "shmkit/tracker.hpp"
#include "shmkit/value.hpp"

namespace {

std::size_t to_size(const char* s) { return static_cast<std::size_t>(std::strtoull(s, nullptr, 10)); }

int run(int argc, char** argv) {
  std::string_view cmd = argc > 1 ? argv[1] : "";
  if (cmd == "write" && argc == 5) {
    auto shm = shmkit::SharedMemory::attach(argv[2]);
    std::string_view text = argv[4];
    std::size_t at = to_size(argv[3]);
    if (at + text.size() > shm.size()) throw std::out_of_range("write past the end");
    std::memcpy(shm.buf().data() + at, text.data(), text.size());
    return 0;
  }
  if (cmd == "read" && argc == 5) {
    auto shm = shmkit::SharedMemory::attach(argv[2]);
    std::size_t at = to_size(argv[3]), len = to_size(argv[4]);
    if (at + len > shm.size()) throw std::out_of_range("read past the end");
    std::fwrite(shm.buf().data() + at, 1, len, stdout);
    return 0;
  }
  if (cmd == "size" && argc == 3) {
    auto shm = shmkit::SharedMemory::attach(argv[2]);
    std::printf("%zu\n", shm.size());
    return 0;
  }
  if (cmd == "recv-write" && argc == 4) {
    auto shm = shmkit::SharedMemory::receive_fd(std::atoi(argv[2]));
    std::string_view text = argv[3];
    if (text.size() > shm.size()) throw std::out_of_range("write past the end");
    std::memcpy(shm.buf().data(), text.data(), text.size());
    std::printf("%zu\n", shm.size());
    return 0;
  }
  if (cmd == "array-negate" && argc == 3) {
    auto a = shmkit::Array<std::int32_t>::attach(argv[2]);
    a.update([](std::span<std::int32_t> v) {
      for (auto& x : v) x = -x;
    });
    return 0;
  }
  if (cmd == "value-set" && argc == 4) {
    shmkit::Value<double>::attach(argv[2]).set_value(std::strtod(argv[3], nullptr));
    return 0;
  }
  if (cmd == "heap-value-add" && argc == 4) {
    auto v = shmkit::Value<std::int64_t>::attach(shmkit::HeapHandle::parse(argv[2]));
    v.fetch_add(std::strtoll(argv[3], nullptr, 10));
    return 0;
  }
  if (cmd == "robust-hold" && argc == 3) {
    shmkit::SharedMemory::Options tracked;
    tracked.track = true;
    auto shm = shmkit::SharedMemory::create(argv[2], 4096, tracked);
    auto* m = new (shm.data()) shmkit::RobustMutex();
    const shmkit::LockResult r = m->lock();
    if (r != shmkit::LockResult::acquired) {
      std::fprintf(stderr, "peer: lock: %s\n", shmkit::to_string(r));
      return 1;
    }
    std::printf("held %d %llu\n", static_cast<int>(::getpid()),
                static_cast<unsigned long long>(shmkit::tracker::process_start_time(::getpid())));
    std::fflush(stdout);
    char c;
    while (::read(0, &c, 1) > 0) {
    }
    return m->unlock() ? 0 : 1;
  }
  std::fprintf(stderr, "peer: bad arguments\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "peer: %s\n", e.what());
    return 1;
  }
}
