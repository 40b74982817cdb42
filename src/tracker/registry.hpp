// src/tracker/registry.hpp — the tracker's registry: the entry layout of the
// typed block "shmkit.registry.<uid>" (shmkit/tracker.hpp), this process's
// mapping of it, its lock, and the judging and sweeping of registrations.
// Internal: the public API (tracker.cpp) and the watcher (watcher.cpp) share
// it. Every function that reads or writes entries expects the caller to hold
// the registry lock (Locked) unless it says otherwise.
#pragma once

#include <sys/mman.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>

#include "shmkit/shared_memory.hpp"
#include "shmkit/sync/robust_mutex.hpp"
#include "shmkit/tracker.hpp"
#include "shmkit/typed_block.hpp"
#include "sync/robust_guard.hpp"

namespace shmkit::tracker::detail {

// One registration (layout version 3; version 1 had no PID namespace,
// version 2 no role). `state` makes a half-written entry recognisable after
// a writer died holding the lock: 0 free, 1 being written, 2 in use.
struct Entry {
  std::uint32_t state;
  std::uint32_t pid;  // in the registrant's PID namespace
  std::uint64_t start_time;
  // The registered file: the sweep unlinks only that very file. kReserved
  // (0, no tmpfs inode) marks a name the registrant is about to create (a
  // random temporary name, see SharedMemory::create): any file under it is
  // the registrant's (the manager's fresh names). kNoInode: the name did
  // not exist.
  std::uint64_t inode;
  std::uint64_t pidns_inode;  // the registrant's /proc/self/ns/pid
  std::uint64_t pidns_device;
  // kCreated: the registrant created this file (or reserved the name to
  // create it), or inherited that from its creator (pass_creation); only
  // such a file is ever unlinked by the tracker. Anything else (kUse, or a
  // value no shmkit writes) registers use: the block is kept while the
  // registrant lives, never removed for it.
  std::uint32_t role;
  std::uint32_t unused;  // zero
  char name[256];        // NUL-terminated
};
static_assert(std::is_standard_layout_v<Entry> && sizeof(Entry) == 304);
constexpr std::uint32_t kFree = 0, kWriting = 1, kUsed = 2;
constexpr std::uint32_t kUse = 0, kCreated = 1;
constexpr std::uint64_t kReserved = 0, kNoInode = ~std::uint64_t{0};

struct Control {
  RobustMutex mutex;  // guards every entry
};

struct Registry {
  SharedMemory shm;     // a registrant's, by name
  void* raw = nullptr;  // the watcher's: mapped from the descriptor it was given
  std::size_t raw_size = 0;
  Control* ctl = nullptr;
  Entry* entries = nullptr;
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;
  ~Registry() {
    if (raw != nullptr) ::munmap(raw, raw_size);
  }
};

}  // namespace shmkit::tracker::detail

// The fingerprint's name stays "shmkit::tracker::Entry/v3": it is part of
// the registry's on-block layout, not of the C++ namespace.
template <>
struct shmkit::TypeName<shmkit::tracker::detail::Entry> {
  static constexpr std::string_view value = "shmkit::tracker::Entry/v3";
};

namespace shmkit::tracker::detail {

std::string entry_name(const Entry& e);
// entry_name(e) == name, without building the string (the registration
// paths compare every used entry's name).
inline bool entry_name_is(const Entry& e, std::string_view name) {
  return std::string_view(e.name, ::strnlen(e.name, sizeof e.name)) == name;
}
bool created(const Entry& e);
// Whether `e` registers the file `inode` of its name: the same inode, or
// `inode` is a reservation (any file under the name is the reserver's).
bool same_file(const Entry& e, std::uint64_t inode);
// Of the name, now (0 if it does not exist; tmpfs never gives inode 0).
std::uint64_t inode_of(std::string_view block);

// This process's mapping of the registry, opened (and, with `create`,
// created) on first use; nullptr if it does not exist and !create.
Registry* registry(bool create);
// The watcher's registry: the very file its registrant registered in (open
// descriptor `fd`, even if its name has gone since), validated as
// registry() does.
std::unique_ptr<Registry> registry_from_fd(int fd, const std::string& name);

// Holds the registry lock; after a dead owner, clears half-written entries.
struct Locked : shmkit::detail::RepairingGuard {
  explicit Locked(Registry& r)
      : RepairingGuard(
            r.ctl->mutex,
            [&r] {
              for (std::size_t i = 0; i < kMaxEntries; ++i) {
                if (r.entries[i].state != kUsed) r.entries[i].state = kFree;
                r.entries[i].name[sizeof r.entries[i].name - 1] = '\0';
              }
            },
            [] { return std::string("shmkit: tracker registry"); }) {}
};

// What this process knows of itself: its pid, start time and PID namespace,
// and whether its /proc shows its own namespace's pids (a process in a new
// PID namespace without its own /proc mount sees another namespace's pids
// there, and must not judge by them).
struct Self {
  pid_t pid = 0;
  std::uint64_t start = 0;
  PidNamespace ns;
  bool proc_is_ours = false;
};
Self self();

inline PidNamespace ns_of(const Entry& e) { return PidNamespace{e.pidns_inode, e.pidns_device}; }

// A registrant known to be dead (the watcher's, told by its pidfd).
struct Known {
  pid_t pid;
  std::uint64_t start;
  PidNamespace ns;
  bool matches(const Entry& e) const {
    return static_cast<pid_t>(e.pid) == pid && e.start_time == start && ns_of(e) == ns;
  }
};

enum class Liveness { alive, dead, unknown };

// Judged only in the registrant's own PID namespace, by a process whose
// /proc is that namespace's; `dead`, if given, is known dead.
Liveness liveness(const Entry& e, const Self& me, const Known* dead);
Registration registration_of(const Entry& e, Liveness l);
// The watcher's line for a block it unlinked.
std::string leak_message(const std::string& block);
// A creating registration of `block`'s file `inode` goes away while other
// registrations of that file stay: they inherit the creation. Under the lock.
void pass_creation(Registry& r, const std::string& block, std::uint64_t inode);
// Drops dead registrations (all, or only the `dead` registrant's) and
// unlinks the blocks a shmkit process created that they leave with no live
// or unjudged registrant (see registry.cpp). Under the lock.
void sweep(Registry& r, GcReport& report, bool dry_run, const Known* dead, bool warn);

}  // namespace shmkit::tracker::detail
