// Built against the *installed* shmkit: creates, attaches, checks, unlinks.
#include <cstdio>
#include <cstring>
#include <shmkit/shared_memory.hpp>

int main() {
  auto a = shmkit::SharedMemory::create(4096);
  std::memcpy(a.data(), "consumer", 8);
  auto b = shmkit::SharedMemory::attach(a.name());
  bool same = std::memcmp(b.data(), "consumer", 8) == 0 && b.size() == 4096;
  a.unlink();
  std::printf("consumer: %s\n", same ? "ok" : "MISMATCH");
  return same ? 0 : 1;
}
