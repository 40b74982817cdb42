// shmkit_test_peer — an unrelated process for the cross-process tests
// (exec'd, so it shares nothing with the test but what it is handed).
//   peer write NAME OFFSET TEXT     attach NAME, copy TEXT to OFFSET
//   peer read NAME OFFSET LEN       attach NAME, print LEN bytes at OFFSET
//   peer size NAME                  attach NAME, print its size
//   peer recv-write SOCKFD TEXT     receive an anonymous block on SOCKFD,
//                                   copy TEXT to offset 0, print its size
// Exit 0 on success, 1 with a message on stderr otherwise.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>

#include "shmkit/shared_memory.hpp"

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
