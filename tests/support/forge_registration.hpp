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
#include "shmkit/sync/robust_mutex.hpp"
#include "shmkit/tracker.hpp"
#include "shmkit/typed_block.hpp"

namespace shmkit::test {

// The registry's entry layout, version 3 (src/tracker/registry.hpp).
struct RawRegistration {
  std::uint32_t state, pid;
  std::uint64_t start_time, inode, pidns_inode, pidns_device;
  std::uint32_t role, unused;  // role 1: created, 0: use
  char name[256];
};
static_assert(sizeof(RawRegistration) == 304);

// Creates an empty registry (layout version 3) named `name`, as the tracker
// would: for a test process that has already opened another registry (the
// tracker keeps the first one it opens).
inline void make_registry(const std::string& name) {
  BlockSpec spec;
  spec.kind = BlockKind::registry;
  spec.type.size = sizeof(RawRegistration);
  spec.type.align = alignof(RawRegistration);
  spec.type.name_hash = fnv1a("shmkit::tracker::Entry/v3");
  spec.count = tracker::kMaxEntries;
  spec.prefix_size = sizeof(RobustMutex);  // the registry's lock
  spec.payload_size = tracker::kMaxEntries * sizeof(RawRegistration);
  spec.param[0] = tracker::kRegistryVersion;
  (void)create_typed_block(name, spec, [](std::span<std::byte> prefix, std::span<std::byte>) {
    ::new (prefix.data()) RobustMutex();
  });
}

// A registration of the file now under `block` by (pid, start) of PID
// namespace `ns` (by default this process's), as its creator (the tracker
// unlinks such a file once the registrant is dead) or, `created` false, a
// user that attached it.
inline void forge_registration(const std::string& block, pid_t pid, std::uint64_t start,
                               tracker::PidNamespace ns = tracker::current_pid_namespace(),
                               bool created = true) {
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
      entries[i].role = created ? 1 : 0;
      entries[i].unused = 0;
      std::memset(entries[i].name, 0, sizeof entries[i].name);
      std::memcpy(entries[i].name, block.data(), block.size());
      entries[i].state = 2;
      return;
    }
  }
  FAIL() << "registry full";
}

}  // namespace shmkit::test
