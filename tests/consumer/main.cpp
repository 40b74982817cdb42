// Built against the *installed* shmkit: creates, attaches, checks, unlinks;
// then a tracked block, watched by the installed shmkit-watcher.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <shmkit/shared_memory.hpp>
#include <shmkit/tracker.hpp>
#include <string>
#include <unistd.h>

int main() {
  auto a = shmkit::SharedMemory::create(4096);
  std::memcpy(a.data(), "consumer", 8);
  auto b = shmkit::SharedMemory::attach(a.name());
  bool same = std::memcmp(b.data(), "consumer", 8) == 0 && b.size() == 4096;
  a.unlink();

  // A registry of our own (not the user's), and the installed watcher.
  const std::string registry = "shmkit_consumer_registry_" + std::to_string(::getpid());
  ::setenv("SHMKIT_TRACKER_REGISTRY", registry.c_str(), 1);
  ::setenv("SHMKIT_WATCHER", SHMKIT_CONSUMER_WATCHER, 1);
  bool tracked = false;
  try {
    shmkit::SharedMemory::Options o;
    o.track = true;
    auto t = shmkit::SharedMemory::create(4096, o);
    tracked = shmkit::tracker::watcher_path() == SHMKIT_CONSUMER_WATCHER;
    t.unlink();
  } catch (const std::exception& e) {
    std::printf("consumer: tracked create failed: %s\n", e.what());
  }
  shmkit::SharedMemory::unlink(registry);
  std::printf("consumer: %s\n", same && tracked ? "ok" : "MISMATCH");
  return same && tracked ? 0 : 1;
}
