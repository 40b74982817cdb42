// src/tracker/tracker.cpp — the tracker's public API (shmkit/tracker.hpp):
// where the registry and the watcher are, registering and unregistering
// blocks, snapshots and garbage collection. The registry is registry.cpp,
// the watcher watcher.cpp.
#include "shmkit/tracker.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <optional>
#include <set>
#include <stdexcept>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

#include "platform/platform.hpp"
#include "platform/printable.hpp"
#include "shmkit/detail/fault.hpp"
#include "shmkit/sync/robust_mutex.hpp"
#include "shmkit/typed_block.hpp"
#include "tracker/registry.hpp"
#include "tracker/watcher.hpp"

namespace shmkit::tracker {

using namespace detail;  // the registry's internals (registry.hpp, watcher.hpp)

std::string registry_name() {
  if (const char* env = std::getenv("SHMKIT_TRACKER_REGISTRY"); env != nullptr && *env != '\0') {
    SharedMemory::validate_name(env);
    return env;
  }
  return "shmkit.registry." + std::to_string(::geteuid());
}

std::string watcher_path() {
  if (const char* env = std::getenv("SHMKIT_WATCHER"); env != nullptr && *env != '\0') return env;
  std::string tried;
  for (const char* candidate : {
#ifdef SHMKIT_WATCHER_INSTALLED
           SHMKIT_WATCHER_INSTALLED,
#endif
#ifdef SHMKIT_WATCHER_BUILT
           SHMKIT_WATCHER_BUILT,
#endif
           static_cast<const char*>(nullptr)}) {
    if (candidate == nullptr) break;
    if (::access(candidate, X_OK) == 0) return candidate;
    tried += std::string(tried.empty() ? "" : ", ") + candidate;
  }
  throw std::system_error(ENOENT, std::generic_category(),
                          "shmkit: tracker: cannot find the watcher program: SHMKIT_WATCHER is not set, "
                          "and none of [" +
                              tried + "] is executable");
}

PidNamespace current_pid_namespace() { return self().ns; }

namespace {
// Registers `block` with `inode` for this process, as its creator or a user;
// true if the entry is new (false: an existing registration of ours, of
// that file, was refreshed, and made creating if `creator`). A registration
// of a file under a name this process reserved (reserve_block) is of the
// file it created. The watcher is started first: a process that has
// registered anything has a watcher, and a failure to start one registers
// nothing.
bool add(std::string_view block, std::uint64_t inode, bool creator) {
  using shmkit::detail::printable_quoted;
  SharedMemory::validate_name(block);
  Registry* r = registry(true);
  const Self me = self();
  ensure_watcher(*r, me);
  bool added = false;
  Locked lock(*r);
  const auto mine = [&](const Entry& e) {
    return e.state == kUsed && static_cast<pid_t>(e.pid) == me.pid && e.start_time == me.start &&
           ns_of(e) == me.ns && entry_name_is(e, block);
  };
  if (!creator && inode != kReserved) {
    for (std::size_t i = 0; i < kMaxEntries && !creator; ++i) {
      creator = mine(r->entries[i]) && r->entries[i].inode == kReserved && created(r->entries[i]);
    }
  }
  for (int pass = 0; pass < 2; ++pass) {
    std::size_t free_slot = kMaxEntries;
    for (std::size_t i = 0; i < kMaxEntries; ++i) {
      Entry& e = r->entries[i];
      if (mine(e) && e.inode == inode) {
        if (creator) e.role = kCreated;  // one aligned word: either value is whole
        free_slot = kMaxEntries + 1;     // already registered
        break;
      }
      if (e.state != kUsed && free_slot == kMaxEntries) free_slot = i;
    }
    if (free_slot == kMaxEntries + 1) break;
    if (free_slot < kMaxEntries) {
      Entry& e = r->entries[free_slot];
      e.state = kWriting;
      e.pid = static_cast<std::uint32_t>(me.pid);
      e.start_time = me.start;
      e.inode = inode;
      e.pidns_inode = me.ns.inode;
      e.pidns_device = me.ns.device;
      e.role = creator ? kCreated : kUse;
      e.unused = 0;
      std::memset(e.name, 0, sizeof e.name);
      SHMKIT_FAULT_POINT(registry_writing);
      std::memcpy(e.name, block.data(), block.size());
      e.state = kUsed;
      added = true;
      break;
    }
    if (pass == 1) {
      throw std::system_error(ENOSPC, std::generic_category(),
                              "shmkit: tracker registry is full (" + std::to_string(kMaxEntries) +
                                  " registrations); cannot track " + printable_quoted(block));
    }
    GcReport ignored;  // full: drop the dead and retry once
    sweep(*r, ignored, false, nullptr, true);
  }
  return added;
}
}  // namespace

void register_block(std::string_view block, std::uint64_t inode) {
  if (inode == kReserved || inode == kNoInode) {
    throw std::invalid_argument("shmkit: tracker: inode " + std::to_string(inode) + " of " +
                                platform::quoted(block) + " is not a tmpfs inode");
  }
  (void)add(block, inode, false);
}

void register_block(std::string_view block) {
  const std::uint64_t inode = inode_of(block);
  (void)add(block, inode == 0 ? kNoInode : inode, false);
}

bool register_created(std::string_view block, std::uint64_t inode) {
  if (inode == kReserved || inode == kNoInode) {
    throw std::invalid_argument("shmkit: tracker: inode " + std::to_string(inode) + " of " +
                                platform::quoted(block) + " is not a tmpfs inode");
  }
  return add(block, inode, true);
}

void reserve_block(std::string_view block) { (void)add(block, kReserved, true); }

namespace {
// Frees the entries of `block` (only this process's if only_self; only
// those of the file `inode` unless it is nullopt). A creating entry freed
// while the file is still registered by others passes its creation to them
// (pass_creation): an unregistering creator does not turn a block it made
// into one the tracker would never remove. A freed reservation passes
// nothing.
void remove_where(std::string_view block, bool only_self, std::optional<std::uint64_t> inode) {
  Registry* r = registry(false);
  if (r == nullptr) return;
  const Self me = self();
  const std::string name(block);
  // Dropping every registration of one file (forget_block: all processes'
  // registrations of that inode) leaves nobody to pass its creation to:
  // pass_creation would scan the registry again and find nothing.
  const bool may_pass = !(inode && !only_self && *inode != kReserved);
  Locked lock(*r);
  std::set<std::uint64_t> created_files;
  for (std::size_t i = 0; i < kMaxEntries; ++i) {
    Entry& e = r->entries[i];
    if (e.state != kUsed || !entry_name_is(e, block)) continue;
    if (inode && e.inode != *inode) continue;
    if (only_self && (static_cast<pid_t>(e.pid) != me.pid || e.start_time != me.start || ns_of(e) != me.ns)) {
      continue;
    }
    // A dropped reservation passes nothing: its name may be someone
    // else's file now (the manager drops it on EEXIST); the file made
    // under it has a registration of its own (add()).
    if (may_pass && created(e) && e.inode != kReserved) created_files.insert(e.inode);
    e.state = kFree;
  }
  for (const std::uint64_t file : created_files) pass_creation(*r, name, file);
}
}  // namespace

void unregister_block(std::string_view block) { remove_where(block, true, std::nullopt); }
void unregister_block(std::string_view block, std::uint64_t inode) { remove_where(block, true, inode); }
void forget_block(std::string_view block, std::uint64_t inode) { remove_where(block, false, inode); }

std::vector<Registration> registrations() {
  std::vector<Registration> out;
  Registry* r = registry(false);
  if (r == nullptr) return out;
  const Self me = self();
  Locked lock(*r);
  for (std::size_t i = 0; i < kMaxEntries; ++i) {
    const Entry& e = r->entries[i];
    if (e.state != kUsed) continue;
    out.push_back(registration_of(e, liveness(e, me, nullptr)));
  }
  return out;
}

GcReport collect_garbage(bool dry_run) {
  GcReport report;
  Registry* r = registry(false);
  if (r == nullptr) return report;
  Locked lock(*r);
  sweep(*r, report, dry_run, nullptr, false);
  return report;
}

// The liveness forwards kept for source and binary compatibility
// (tracker.hpp); the judge is the platform layer's.
std::uint64_t process_start_time(pid_t pid) { return process::start_time(pid); }
bool task_has_exited(pid_t tid, std::uint64_t start, std::uint64_t start_mask) noexcept {
  return process::has_exited(tid, start, start_mask);
}

}  // namespace shmkit::tracker
