// tests/support/forge_registration.hpp — writes a registration straight into
// the tracker's registry block (white-box), to stage what real processes
// rarely produce on cue: a dead registrant whose watcher died too, or a pid
// reused by another process.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <sys/stat.h>

#include "shmkit/shared_memory.hpp"
#include "shmkit/tracker.hpp"
#include "shmkit/typed_block.hpp"

namespace shmkit::test {

// The registry's entry layout, version 2 (src/tracker.cpp).
struct RawRegistration {
  std::uint32_t state, pid;
  std::uint64_t start_time, inode, pidns_inode, pidns_device;
  char name[256];
};
static_assert(sizeof(RawRegistration) == 296);

// A registration of the file now under `block` by (pid, start) of PID
// namespace `ns` (by default this process's).
inline void forge_registration(const std::string& block, pid_t pid, std::uint64_t start,
                               tracker::PidNamespace ns = tracker::current_pid_namespace()) {
  auto shm = SharedMemory::attach(tracker::registry_name());
  const auto* h = static_cast<const BlockHeader*>(shm.data());
  auto* entries = reinterpret_cast<RawRegistration*>(static_cast<std::byte*>(shm.data()) + h->payload_offset);
  struct stat st {};
  ASSERT_EQ(::stat(("/dev/shm/" + block).c_str(), &st), 0);
  for (std::size_t i = 0; i < tracker::kMaxEntries; ++i) {
    if (entries[i].state == 0) {
      entries[i].pid = static_cast<std::uint32_t>(pid);
      entries[i].start_time = start;
      entries[i].inode = st.st_ino;
      entries[i].pidns_inode = ns.inode;
      entries[i].pidns_device = ns.device;
      std::memset(entries[i].name, 0, sizeof entries[i].name);
      std::memcpy(entries[i].name, block.data(), block.size());
      entries[i].state = 2;
      return;
    }
  }
  FAIL() << "registry full";
}

}  // namespace shmkit::test
