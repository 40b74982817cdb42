// shmkit/tracker.hpp — the resource tracker: blocks created or attached with
// SharedMemory::Options::track are unlinked once every process that
// registered them has died, and never while one of them lives.
//
// Design (and why)
//   * CPython's resource_tracker is a process per Python program that
//     unlinks, at exit, every block that program created *or attached*,
//     even if other programs still use it (gh-82300, open since 2019). Its
//     bookkeeping is per tracker, so it cannot know about the others.
//   * shmkit keeps one registry per user: a typed block
//     "shmkit.registry.<uid>" (mode 0600) holding (block name, pid, process
//     start time) entries under a RobustMutex. A registration is keyed by
//     pid *and* start time (/proc/<pid>/stat field 22), so a reused pid is
//     never mistaken for the registrant: liveness is "that pid exists and
//     started at that time".
//   * Each process that registers anything gets one watcher process
//     (forked once, setsid, all other descriptors closed) holding the read
//     end of a pipe whose write end only the registrant holds. When the
//     registrant dies, by exit or SIGKILL, the pipe reads EOF; the watcher
//     removes the registrant's entries and unlinks every block that no live
//     process has registered, printing "shmkit tracker: unlinked leaked
//     block 'NAME'" to stderr, then exits. A block another live process
//     registered survives (the gh-82300 scenario).
//   * A tracked create leaves no window where a kill leaks the block: the
//     block is made unnamed (O_TMPFILE), sized, registered under its name
//     with its inode, and only then linked to the name
//     (SharedMemory::create_filled). A kill before the link frees it with
//     the process; after it, the registration covers it. A tracked block
//     never appears under its name at 0 bytes. The registry itself is
//     created the same way, fully initialised before it has a name.
//   * collect_garbage() does the same sweep on demand for every dead
//     registrant (`shmkit gc`), which also covers a watcher that was itself
//     killed. SharedMemory::unlink() removes the block's registrations.
//   * Crash behaviour: every registry change is made under the RobustMutex;
//     a process killed while holding it leaves at most its own half-written
//     entry, which the next locker (told owner-died) validates and repairs.
//   * The registry holds kMaxEntries registrations; registering beyond that
//     throws std::system_error(ENOSPC).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace shmkit::tracker {

constexpr std::size_t kMaxEntries = 1024;

// The registry block's name: $SHMKIT_TRACKER_REGISTRY if set (to isolate a
// test or a group of programs), else "shmkit.registry.<euid>". Read once,
// at a process's first tracker call.
std::string registry_name();

// Registers `block` for the calling process (idempotent) and makes sure this
// process has a watcher. Throws std::system_error if the registry cannot be
// opened or is full.
void register_block(std::string_view block);
// reserve_block registers a name this process is about to create: a fresh
// random name nobody else uses (the SharedMemoryManager's), so the sweep
// unlinks whatever file is under it once the process dies.
// register_created (for SharedMemory::create_filled) registers `block` as
// the file with inode `inode`, not yet linked to that name; true if the
// entry is new, false if it refreshed a registration of this process.
void reserve_block(std::string_view block);
bool register_created(std::string_view block, std::uint64_t inode);
// Removes the calling process's registration of `block` (no-op if none).
void unregister_block(std::string_view block);
// Removes every registration of `block` (it was unlinked).
void forget_block(std::string_view block);

struct Registration {
  std::string block;
  pid_t pid = 0;
  std::uint64_t start_time = 0;  // clock ticks since boot (/proc/<pid>/stat)
  bool alive = false;
};
// A snapshot of the registry (empty if it does not exist yet).
std::vector<Registration> registrations();

// The start time of process `pid`: 0 if it does not exist or has exited
// (a zombie not yet reaped counts as exited).
std::uint64_t process_start_time(pid_t pid);

struct GcReport {
  std::vector<std::string> unlinked;  // blocks whose registrants are all dead
  std::vector<Registration> dropped;  // dead registrations removed
};
// Sweeps the registry: drops registrations of dead processes and unlinks
// blocks left with no live registrant. With dry_run nothing changes and the
// report says what would.
GcReport collect_garbage(bool dry_run);

}  // namespace shmkit::tracker
